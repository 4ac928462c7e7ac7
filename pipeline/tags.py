"""The tags every stack and resource of a project carries: the config's own, plus the project's.

One helper for every place that tags something (the pipeline stack's resources, the endpoint
stacks, the change sets `make deploy` creates, training jobs), so none of them can forget one.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from troposphere import Tags

if TYPE_CHECKING:
    from pipeline.config import PipelineConfig

PROJECT_TAG = "sagemaker-cd:project"


def project_tags(config: PipelineConfig, extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The config's tags, then the project tag, then `extra` (later keys win), in that order."""
    return {**config.tags, PROJECT_TAG: config.project, **(extra or {})}


def cfn_tags(tags: Mapping[str, object]) -> Tags:
    """Tags as a CloudFormation resource property (values may be intrinsic functions)."""
    return Tags(dict(tags))


def tag_list(tags: Mapping[str, str]) -> list[dict[str, str]]:
    """Tags as the AWS APIs take them: [{"Key": ..., "Value": ...}]."""
    return [{"Key": key, "Value": str(value)} for key, value in tags.items()]
