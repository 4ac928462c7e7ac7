"""SageMaker frameworks: where each one's images live, and its container contract.

A `Framework` knows its image URIs (per region and version, from a table copied from the
SageMaker Python SDK's own image registry, written by pipeline.images, see each table's ``_source``), its ECR repository,
how the training container takes hyperparameters and code, and the environment the serving
container needs. Everything else in the generator asks the framework instead of assuming one.
scikit-learn in script mode is the only one so far.
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


@dataclass(frozen=True)
class Framework:
    """A framework whose code runs in SageMaker's prebuilt container in script mode."""

    name: str  # as written in pipeline.yml (model.framework)
    title: str  # for people: "scikit-learn"
    table_file: str  # data/<file>: pipeline.images' table (versions, scopes, images, registry accounts)
    # Versions the table holds that this pipeline does not offer, and why (see where it is set).
    withheld: tuple[str, ...] = ()

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
            if all(scopes.get(scope, {}).get("images") for scope in SCOPES) and version not in self.withheld
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

    def training_hyperparameters(
        self, user: dict[str, object], entry_point: str, code_uri: str, region: str
    ) -> dict[str, str]:
        """The training job's HyperParameters: the user's plus the script-mode settings, each
        JSON-encoded as the SageMaker SDK does (the container decodes them back to types)."""
        values: dict[str, object] = dict(user)
        values.update(
            sagemaker_program=entry_point,
            sagemaker_submit_directory=code_uri,
            sagemaker_region=region,
            sagemaker_container_log_level=CONTAINER_LOG_LEVEL,
        )
        return {key: json.dumps(value) for key, value in values.items()}

    def serving_environment(self, entry_point: object, code_uri: object, region: object) -> dict[str, object]:
        """The serving container's environment: which script holds the inference handlers and
        where its code is (values may be CloudFormation expressions)."""
        return {
            "SAGEMAKER_PROGRAM": entry_point,
            "SAGEMAKER_SUBMIT_DIRECTORY": code_uri,
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

FRAMEWORKS: dict[str, Framework] = {framework.name: framework for framework in (SKLEARN,)}


def all_regions() -> list[str]:
    """Every region some framework publishes images in (the config's first check of a region)."""
    return sorted({region for framework in FRAMEWORKS.values() for region in framework.regions()})
