"""Where the SageMaker scikit-learn framework images live, per commercial region and version.

The table in ``data/sklearn_images.json`` is copied from the SageMaker Python SDK's own image
registry (see its ``_source``), so the URIs we emit are the ones the SDK would use.
"""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources


@lru_cache(maxsize=1)
def _table() -> dict:
    text = resources.files("pipeline").joinpath("data/sklearn_images.json").read_text()
    return json.loads(text)


def supported_versions() -> list[str]:
    """Framework versions published for both training and inference."""
    return list(_table()["versions"])


def supported_regions() -> list[str]:
    """Commercial regions where the images are published."""
    return sorted(_table()["registries"])


def registry_accounts() -> dict[str, str]:
    """Region -> the AWS account that hosts the images in that region."""
    return dict(_table()["registries"])


def repository() -> str:
    """The ECR repository name of the scikit-learn images."""
    return _table()["repository"]


def image_tag(version: str) -> str:
    """The image tag for a framework version, e.g. ``1.2-1-cpu-py3``."""
    return _table()["tag_format"].format(version=version)
