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

    def _image(self, version: str, scope: str) -> dict[str, str]:
        """The one image of a version and scope (script mode here uses CPU images of one Python)."""
        (image,) = self._data["versions"][version][scope]["images"]
        return dict(image)

    @property
    def repository(self) -> str:
        """The ECR repository name of the framework's images (the same in every region)."""
        (name,) = {image["repository"] for image in self._images()}
        return name

    def _images(self) -> list[dict[str, str]]:
        return [self._image(version, scope) for version in self.versions() for scope in ("training", "inference")]

    def versions(self) -> list[str]:
        """Versions published for both training and inference."""
        return [
            version
            for version, scopes in self._data["versions"].items()
            if {"training", "inference"} <= set(scopes) and version not in self.withheld
        ]

    def registry_accounts(self, version: str) -> dict[str, str]:
        """Region -> the AWS account that hosts a version's images there (regions with both its
        training and its inference image)."""
        maps = [
            self._data["registries"][self._image(version, scope)["registries"]] for scope in ("training", "inference")
        ]
        training, inference = maps
        return {region: account for region, account in training.items() if inference.get(region) == account}

    def regions(self, version: str | None = None) -> list[str]:
        """Commercial regions where a version's images (or, without one, any version's) are published."""
        versions = [version] if version is not None else self.versions()
        return sorted({region for each in versions for region in self.registry_accounts(each)})

    def image_tag(self, version: str) -> str:
        """The image tag of a version, e.g. ``1.2-1-cpu-py3``."""
        tag: str = self._image(version, "training")["tag"]
        return tag

    @property
    def cpu_images(self) -> bool:
        """Whether its serving images are CPU builds (the table's processor is cpu): what Serverless
        Inference, which has no GPUs, can run."""
        return all(self._image(version, "inference")["processor"] == "cpu" for version in self.versions())

    def image_uri(self, region: str, version: str) -> str:
        """The image SageMaker trains and serves this version with in `region` (the SDK's URI)."""
        account = self.registry_accounts(version)[region]
        image = self._image(version, "training")
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
