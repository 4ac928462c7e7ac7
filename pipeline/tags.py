"""The tags every stack and resource of a project carries: the config's own, plus the project's.

One helper for every place that tags something (the pipeline stack's resources, the endpoint
stacks, the change sets `make deploy` creates, training jobs), so none of them can forget one,
and the rules a tag from the config must follow to be accepted by every one of them.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from troposphere import Tags

    from pipeline.config import PipelineConfig

PROJECT_TAG = "sagemaker-cd:project"

# At most 50 tags per resource, in every service this project tags (tags starting with aws:, such
# as CloudFormation's own, do not count). The project adds at most 5 of its own to one resource:
# sagemaker-cd:project everywhere; a training job adds its commit, run reason, data version and
# inputs hash (scripts/train.py); an endpoint stack's model, endpoint config and endpoint add
# sagemaker-cd:environment and sagemaker-cd:model-version; a bucket its purpose.
# tests/test_config_malformed.py checks this against the templates and the training job request.
TAGS_PER_RESOURCE = 50
OWN_TAGS_AT_MOST = 5
MAX_CONFIG_TAGS = TAGS_PER_RESOURCE - OWN_TAGS_AT_MOST
# The tightest lengths among the services tagged: CodeBuild takes keys of 1-127 characters and
# values of up to 255 (the others 128 and 256); CloudFormation's stack tags (the config's tags are
# also the stacks' tags) take no empty value.
TAG_KEY_MAX = 127
TAG_VALUE_MAX = 255
# aws: is AWS's, in any case; sagemaker-cd: is this project's (a config tag would overwrite it).
RESERVED_TAG_PREFIXES = ("aws:", "sagemaker-cd:")
# The pattern SageMaker, IAM, CloudWatch Logs and CodeBuild give keys and values:
# [\p{L}\p{Z}\p{N}_.:/=+\-@]* -- letters, separators (spaces), numbers and these.
_TAG_PUNCTUATION = frozenset("_.:/=+-@")
_TAG_CHARACTERS_HINT = "letters, digits, spaces and _ . : / = + - @"


def aws_length(text: str) -> int:
    """A string's length as AWS's (Java) services count it: UTF-16 code units."""
    return len(text.encode("utf-16-le")) // 2


def allowed_in_tags(char: str) -> bool:
    """Whether a tag key or value may hold `char` (the pattern above)."""
    return char in _TAG_PUNCTUATION or unicodedata.category(char)[0] in "LZN"


def _bad_character(text: str) -> str | None:
    return next((char for char in text if not allowed_in_tags(char)), None)


def tag_key_problem(key: str) -> str | None:
    """Why a config tag key would be refused by some service it lands in, or None."""
    if not key:
        return "a tag key cannot be empty"
    if aws_length(key) > TAG_KEY_MAX:
        return f"the tag key is {aws_length(key)} characters, over CodeBuild's {TAG_KEY_MAX}"
    reserved = next((p for p in RESERVED_TAG_PREFIXES if key.lower().startswith(p)), None)
    if reserved:
        return f"tag keys starting with {reserved} are reserved"
    bad = _bad_character(key)
    if bad is not None:
        return f"the tag key holds {bad!r}; tag keys may hold {_TAG_CHARACTERS_HINT}"
    return None


def tag_value_problem(value: str) -> str | None:
    """Why a config tag value would be refused by some service it lands in, or None."""
    if not value:
        return "a tag value cannot be empty (CloudFormation refuses empty stack tag values)"
    if aws_length(value) > TAG_VALUE_MAX:
        return f"the tag value is {aws_length(value)} characters, over CodeBuild's {TAG_VALUE_MAX}"
    bad = _bad_character(value)
    if bad is not None:
        return f"the tag value holds {bad!r}; tag values may hold {_TAG_CHARACTERS_HINT}"
    return None


def project_tags(config: PipelineConfig, extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The config's tags, then the project tag, then `extra` (later keys win), in that order."""
    return {**config.tags, PROJECT_TAG: config.project, **(extra or {})}


def cfn_tags(tags: Mapping[str, object]) -> Tags:
    """Tags as a CloudFormation resource property (values may be intrinsic functions)."""
    from troposphere import Tags

    return Tags(dict(tags))


def tag_list(tags: Mapping[str, str]) -> list[dict[str, str]]:
    """Tags as the AWS APIs take them: [{"Key": ..., "Value": ...}]."""
    return [{"Key": key, "Value": str(value)} for key, value in tags.items()]
