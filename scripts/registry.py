"""The model registry: one SageMaker model package group per project (pipeline.names), one version
per model that passed the gate (Train registers it PendingManualApproval), Approved when the last
environment deployed and tested it (EndpointTest there), and what `make status` lists.

Small functions taking a SageMaker client; no client is made here.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# The keys promote reads back, and the status it requires, are defined once, beside it.
from pipeline.promote import APPROVED, MODEL_VERSION_KEY, SOURCE_DIR_KEY

_VERSION_ARN = re.compile(r"^arn:aws[a-z-]*:sagemaker:[a-z0-9-]+:\d{12}:model-package/[^/]+/\d+$")

PENDING = "PendingManualApproval"
REJECTED = "Rejected"
# CustomerMetadataProperties: keys and values the pipeline writes (the shared contract of issue 9).
COMMIT_KEY = "commit"
TRAINING_JOB_KEY = "training-job"
METRIC_NAME_KEY = "metric-name"
METRIC_VALUE_KEY = "metric-value"
DATA_VERSION_KEY = "data-version"
# SageMaker API reference, CustomerMetadataProperties: values of 1 to 256 characters.
METADATA_VALUE_MAX = 256


@dataclass(frozen=True)
class Registered:
    """A version of the group: its ARN and SageMaker's ModelPackageVersion."""

    arn: str
    version: int


def is_version_arn(arn: str) -> bool:
    """Whether `arn` names a model package version (`arn:PARTITION:sagemaker:REGION:ACCOUNT:model-package/GROUP/N`)."""
    return _VERSION_ARN.match(arn) is not None


def version_of(arn: str) -> int:
    """The version number a versioned model package's ARN ends in (`model-package/GROUP/N`)."""
    tail = arn.rsplit("/", 1)[-1]
    if not tail.isdigit():
        raise ValueError(f"'{arn}' is not the ARN of a model package version")
    return int(tail)


def version_metadata(
    *,
    commit: str,
    training_job: str,
    metric_name: str,
    metric_value: float,
    data_version: str,
    source_dir: str | None,
) -> dict[str, str]:
    """The version's CustomerMetadataProperties; `source-dir` only in script mode. The endpoint
    stack's ModelVersion is the training job's name, recorded as `model-version`."""
    metadata = {
        COMMIT_KEY: commit,
        TRAINING_JOB_KEY: training_job,
        METRIC_NAME_KEY: metric_name,
        METRIC_VALUE_KEY: f"{metric_value:.4f}",
        DATA_VERSION_KEY: data_version,
        MODEL_VERSION_KEY: training_job,
    }
    if source_dir is not None:
        metadata[SOURCE_DIR_KEY] = source_dir
    for key, value in metadata.items():
        if not value or len(value) > METADATA_VALUE_MAX:
            raise ValueError(f"model package metadata {key} must be 1 to {METADATA_VALUE_MAX} characters: '{value}'")
    return metadata


def register_version(
    sagemaker, group: str, *, image: str, model_data_url: str, metadata: Mapping[str, str], description: str
) -> Registered:
    """Create the group's next version, PendingManualApproval, serving `model_data_url` with `image`."""
    answer = sagemaker.create_model_package(
        ModelPackageGroupName=group,
        ModelPackageDescription=description[:1024],
        InferenceSpecification={"Containers": [{"Image": image, "ModelDataUrl": model_data_url}]},
        ModelApprovalStatus=PENDING,
        CustomerMetadataProperties=dict(metadata),
    )
    arn = answer["ModelPackageArn"]
    return Registered(arn=arn, version=version_of(arn))


def set_status(sagemaker, arn: str, status: str, reason: str) -> None:
    """Record what happened to a version: Approved or Rejected, and why (ApprovalDescription)."""
    if status not in (APPROVED, REJECTED):
        raise ValueError(f"a version is set {APPROVED} or {REJECTED}, not {status}")
    sagemaker.update_model_package(ModelPackageArn=arn, ModelApprovalStatus=status, ApprovalDescription=reason[:1024])


def recent_versions(sagemaker, group: str, limit: int = 5) -> list[dict[str, Any]]:
    """The group's newest `limit` versions, newest first, each described (status, metadata, created)."""
    listed = sagemaker.list_model_packages(
        ModelPackageGroupName=group, SortBy="CreationTime", SortOrder="Descending", MaxResults=limit
    )
    return [
        sagemaker.describe_model_package(ModelPackageName=summary["ModelPackageArn"])
        for summary in listed.get("ModelPackageSummaryList", [])[:limit]
    ]
