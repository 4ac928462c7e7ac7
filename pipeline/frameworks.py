"""SageMaker frameworks: where each one's images live, and its container contract.

A `Framework` knows its image URIs (per region and version, from a table copied from the
SageMaker Python SDK's own image registry, written by pipeline.images, see each table's ``_source``), its ECR repository,
how the training container takes hyperparameters and code, and the environment the serving
container needs. Everything else in the generator asks the framework instead of assuming one.
scikit-learn, XGBoost, PyTorch and TensorFlow, each in script mode (the SageMaker Python SDK's
`Framework` estimators and `FrameworkModel`s).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

# The script-mode settings the SageMaker containers read; user hyperparameters may not use them.
RESERVED_HYPERPARAMETER_PREFIX = "sagemaker_"
CONTAINER_LOG_LEVEL = 20  # logging.INFO, as the SageMaker SDK sets it
# Where the serving container finds code that was repacked into model.tar.gz under code/ (the SDK's
# FrameworkModel._script_mode_env_vars: "/opt/ml/model/code" once repacked_model_data is set).
REPACKED_CODE_DIR = "/opt/ml/model/code"
# The package's data files, beside this module (installed as files, never zipped). Not
# importlib.resources: its import costs ~6 ms of every synth (make bench).
DATA_DIR = Path(__file__).parent / "data"
SCOPES = ("training", "inference")


def _python_order(py_version: str | None) -> tuple[int, ...]:
    """py3 < py37 < py38 < py310 (the digits after 'py' are major then minor); none first."""
    digits = (py_version or "")[2:]
    return (int(digits[0]), int(digits[1:] or 0)) if digits.isdigit() else (0,)


@cache
def _table(file_name: str) -> dict[str, Any]:
    text = (DATA_DIR / file_name).read_text()
    table: dict[str, Any] = json.loads(text)
    return table


def _version_order(version: str) -> tuple[int, ...]:
    """1.2 < 1.10.0 < 2.0: the numbers of a version, in order."""
    return tuple(int(part) for part in version.replace("-", ".").split(".") if part.isdigit())


@dataclass(frozen=True)
class Framework:
    """A framework whose code runs in SageMaker's prebuilt container in script mode."""

    name: str  # as written in pipeline.yml (model.framework)
    title: str  # for people: "scikit-learn"
    table_file: str  # data/<file>: pipeline.images' table (versions, scopes, images, registry accounts)
    # Versions the table holds that this pipeline does not offer, and why (see where it is set).
    withheld: tuple[str, ...] = ()
    # The oldest version offered (older ones are withheld, see where it is set).
    oldest: str | None = None
    # The first version whose serving needs the inference code repacked into model.tar.gz under
    # code/ (None: never; the container fetches SAGEMAKER_SUBMIT_DIRECTORY from S3 instead).
    repack_from: str | None = None
    # TensorFlow Serving: no SAGEMAKER_PROGRAM; the container runs code/inference.py by that name.
    serving_program: str | None = None
    # The training job's `model_dir` hyperparameter, as the SDK's TensorFlow estimator passes it.
    passes_model_dir: bool = False

    @property
    def _data(self) -> dict[str, Any]:
        return _table(self.table_file)

    def _choices(self, version: str, scope: str, processor: str) -> list[dict[str, str]]:
        """A version's images of one scope that run on `processor`; an image the table lists with no
        processor (xgboost's) runs on any, as the SDK's config means."""
        images = self._data["versions"].get(version, {}).get(scope, {}).get("images", [])
        return [dict(image) for image in images if image["processor"] in (processor, None)]

    def _image(self, version: str, scope: str, processor: str = "cpu") -> dict[str, str]:
        """The image of a version, scope and processor: of several Pythons, the newest (the
        pipeline pins no py_version; the SDK asks for one, and its newest is what it documents)."""
        choices = self._choices(version, scope, processor)
        if not choices:
            raise LookupError(f"{self.title} {version} has no {processor} {scope} image")
        return max(choices, key=lambda image: _python_order(image["py_version"]))

    def processors(self, version: str, scope: str) -> list[str]:
        """The processors (cpu, gpu) a version has images of for a scope."""
        return [each for each in ("cpu", "gpu") if self._choices(version, scope, each)]

    def repositories(self, version: str) -> list[str]:
        """The ECR repositories of a version's images, training and serving (one name in every region)."""
        return sorted(
            {
                self._image(version, scope, processor)["repository"]
                for scope in SCOPES
                for processor in self.processors(version, scope)
            }
        )

    def versions(self) -> list[str]:
        """Versions published for both training and inference."""
        return [
            version
            for version, scopes in self._data["versions"].items()
            if all(scopes.get(scope, {}).get("images") for scope in SCOPES)
            and version not in self.withheld
            and (self.oldest is None or _version_order(version) >= _version_order(self.oldest))
        ]

    def registry_accounts(self, version: str) -> dict[str, str]:
        """Region -> the AWS account that hosts a version's images there (regions where every
        training and serving image of it is published, from the same account)."""
        maps = [
            self._data["registries"][self._image(version, scope, processor)["registries"]]
            for scope in SCOPES
            for processor in self.processors(version, scope)
        ]
        first, *rest = maps
        return {
            region: account for region, account in first.items() if all(other.get(region) == account for other in rest)
        }

    def regions(self, version: str | None = None) -> list[str]:
        """Commercial regions where a version's images (or, without one, any version's) are published."""
        versions = [version] if version is not None else self.versions()
        return sorted({region for each in versions for region in self.registry_accounts(each)})

    def image_tag(self, version: str, scope: str = "training", processor: str = "cpu") -> str:
        """The image tag of a version, e.g. ``1.2-1-cpu-py3``."""
        tag: str = self._image(version, scope, processor)["tag"]
        return tag

    def serves_on(self, version: str, processor: str) -> bool:
        """Whether the version has a serving image for the processor (Serverless Inference needs cpu)."""
        return bool(self._choices(version, "inference", processor))

    def trains_on(self, version: str, processor: str) -> bool:
        """Whether the version has a training image for the processor."""
        return bool(self._choices(version, "training", processor))

    def image_uri(self, region: str, version: str, scope: str = "training", processor: str = "cpu") -> str:
        """The image SageMaker runs a version with in `region`, for a scope (training, inference)
        and processor (the SDK's URI)."""
        account = self.registry_accounts(version)[region]
        image = self._image(version, scope, processor)
        return f"{account}.dkr.ecr.{region}.amazonaws.com/{image['repository']}:{image['tag']}"

    def repacks(self, version: str) -> bool:
        """Whether serving needs the inference code inside model.tar.gz (under code/): the SDK
        repacks for PyTorch >= 1.2 (its TorchServe/MMS images) and for TensorFlow Serving."""
        return self.repack_from is not None and _version_order(version) >= _version_order(self.repack_from)

    @property
    def reserved_hyperparameters(self) -> tuple[str, ...]:
        """Hyperparameter names the framework's own settings take besides the sagemaker_ ones."""
        return ("model_dir",) if self.passes_model_dir else ()

    def training_hyperparameters(
        self, user: dict[str, object], entry_point: str, code_uri: str, region: str, job_output: str = ""
    ) -> dict[str, str]:
        """The training job's HyperParameters: the user's plus the script-mode settings, each
        JSON-encoded as the SageMaker SDK does (the container decodes them back to types).

        sagemaker/estimator.py Framework.hyperparameters: sagemaker_program, _submit_directory,
        _container_log_level, _region. TensorFlow (sagemaker/tensorflow/estimator.py,
        TensorFlow.hyperparameters) adds ``model_dir``: by default ``_default_s3_path("model")``,
        i.e. ``<output_path>/<job name>/model``, which the script receives as ``--model_dir``
        (for checkpoints); the model to serve still goes to SM_MODEL_DIR (/opt/ml/model).
        `job_output` is that ``<output_path>/<job name>``."""
        values: dict[str, object] = dict(user)
        values.update(
            sagemaker_program=entry_point,
            sagemaker_submit_directory=code_uri,
            sagemaker_region=region,
            sagemaker_container_log_level=CONTAINER_LOG_LEVEL,
        )
        if self.passes_model_dir:
            values["model_dir"] = f"{job_output}/model"
        return {key: json.dumps(value) for key, value in values.items()}

    def serving_environment(
        self, entry_point: object, code_uri: object, region: object, version: str = ""
    ) -> dict[str, object]:
        """The serving container's environment: which script holds the inference handlers and
        where its code is (values may be CloudFormation expressions).

        sagemaker/model.py FrameworkModel._script_mode_env_vars: SAGEMAKER_PROGRAM, and
        SAGEMAKER_SUBMIT_DIRECTORY = the uploaded code's S3 URI, or /opt/ml/model/code once the
        code was repacked into model.tar.gz. TensorFlow Serving (sagemaker/tensorflow/model.py
        TensorFlowModel._get_container_env) takes only SAGEMAKER_TFS_NGINX_LOGLEVEL; its container
        (aws/sagemaker-tensorflow-serving-container, container/sagemaker/serve.py) runs
        /opt/ml/model/code/inference.py when there is one, and installs code/requirements.txt."""
        if self.serving_program is not None:
            return {"SAGEMAKER_TFS_NGINX_LOGLEVEL": "info"}  # the SDK's LOG_LEVEL_MAP[logging.INFO]
        return {
            "SAGEMAKER_PROGRAM": entry_point,
            "SAGEMAKER_SUBMIT_DIRECTORY": REPACKED_CODE_DIR if self.repacks(version) else code_uri,
            "SAGEMAKER_REGION": region,
            "SAGEMAKER_CONTAINER_LOG_LEVEL": str(CONTAINER_LOG_LEVEL),
        }


# The Python and scikit-learn inside an image version, for `make local` to say when this machine's
# differ. 1.2-1: aws/sagemaker-scikit-learn-container docker/1.2-1/base/Dockerfile.cpu
# (PYTHON_VERSION=3.9, `pip install scikit-learn==1.2.1`). Other versions: not recorded here.
IMAGE_RUNTIMES: dict[str, dict[str, str]] = {"1.2-1": {"python": "3.9", "scikit-learn": "1.2.1"}}


# 0.20.0 is in sagemaker-core's table but was never offered here (the hand-made table this one
# replaced left it out, and the SDK's docs moved their examples off it: sagemaker-python-sdk PR #3125);
# withheld so that regenerating the table does not widen what pipeline.yml accepts.
SKLEARN = Framework(name="sklearn", title="scikit-learn", table_file="images/sklearn.json", withheld=("0.20.0",))
# XGBoost in framework (script) mode: one image per version for training and serving, CPU and GPU
# alike (the table names no processor). Serving fetches the code from S3 as scikit-learn does:
# sagemaker/xgboost/model.py XGBoostModel.prepare_container_def repacks only with network isolation.
XGBOOST = Framework(name="xgboost", title="XGBoost", table_file="images/xgboost.json")
# PyTorch: from 1.2 the serving images are MMS/TorchServe based and the SDK repacks the inference code
# into model.tar.gz (sagemaker/pytorch/model.py: `_upload_code(..., repack=self._is_mms_version())`,
# _LOWEST_MMS_VERSION = "1.2"); before 1.2 the code comes from S3.
PYTORCH = Framework(name="pytorch", title="PyTorch", table_file="images/pytorch.json", repack_from="1.2")
# TensorFlow: script mode begins at 1.11 (the sagemaker-tensorflow-scriptmode and -serving images;
# older versions are the SDK's removed legacy mode, sagemaker/tensorflow/legacy_training.rst), withheld.
# Serving is TensorFlow Serving: the SavedModel under <model.tar.gz>/<version number>/, the handlers
# in code/inference.py, repacked into model.tar.gz (sagemaker/tensorflow/model.py
# prepare_container_def: `sagemaker.utils.repack_model(...)` when there is an entry point).
TENSORFLOW = Framework(
    name="tensorflow",
    title="TensorFlow",
    table_file="images/tensorflow.json",
    oldest="1.11",
    repack_from="1.11",
    serving_program="inference.py",
    passes_model_dir=True,
)

FRAMEWORKS: dict[str, Framework] = {framework.name: framework for framework in (SKLEARN, XGBOOST, PYTORCH, TENSORFLOW)}


def all_regions() -> list[str]:
    """Every region some framework publishes images in (the config's first check of a region)."""
    return sorted({region for framework in FRAMEWORKS.values() for region in framework.regions()})
