"""The pipeline's one config file (`pipeline.yml`), read once into typed, validated objects.

`load_config(path)` returns a `PipelineConfig` or raises `ConfigError` carrying one line per
problem ("pipeline.yml: model.training.instance_type: ..."). Nothing here calls AWS.
"""

from __future__ import annotations

import json
import math
import re
import stat
import unicodedata
from collections.abc import Iterator, Mapping
from functools import cache
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    StrictBool,
    ValidationError,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from pipeline import monitoring, strict_yaml
from pipeline.algorithms import ALGORITHMS, Algorithm
from pipeline.frameworks import FRAMEWORKS, RESERVED_HYPERPARAMETER_PREFIX, Framework, all_regions
from pipeline.instances import processor
from pipeline.names import ENVIRONMENT_NAME_MAX, Names, problem
from pipeline.payloads import case_files, folder_problems, read_case
from pipeline.tags import MAX_CONFIG_TAGS, aws_length, tag_key_problem, tag_value_problem

# CodeBuild's TimeoutInMinutes tops out at 2160 (36 h); the train action waits for the job.
CODEBUILD_MAX_TIMEOUT_MINUTES = 2160
# Time the train action needs besides the job itself: packaging, upload, instance start-up.
TRAIN_OVERHEAD_MINUTES = 30

# SageMaker's CreateTrainingJob (botocore: HyperParameters, HyperParameterKey/Value; MetricName,
# MetricRegex; S3Uri) and CodePipeline's action configuration values (ActionConfigurationValue).
HYPERPARAMETERS_MAX = 100
HYPERPARAMETER_KEY_MAX = 256
HYPERPARAMETER_VALUE_MAX = 2500
METRIC_REGEX_MAX = 500
S3_URI_MAX = 1024
ACTION_CONFIGURATION_VALUE_MAX = 1000
# An address SNS can mail: the WHATWG (HTML) e-mail syntax with a dotted domain, RFC 5321's lengths.
EMAIL_MAX = 254

_INSTANCE_TYPE = r"^ml\.[a-z0-9]+\.[a-z0-9]+$"
_EMAIL = re.compile(
    r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+"
)
_CONNECTION_ARN = re.compile(
    r"arn:aws[a-z-]*:(codestar-connections|codeconnections):[a-z0-9-]+:\d{12}:connection/[0-9a-f-]{36}", re.ASCII
)
_S3_URI = re.compile(r"s3://([^/]*)(/.*)?", re.DOTALL)
_S3_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
# The characters S3 calls safe in object keys (letters, digits, ! - _ . * ' ( )) less the IAM
# wildcard *, plus / between folders and = (Hive-style partitions, key=value/).
_S3_KEY_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!-_.'()/=")
_GIT_REF_BAD = re.compile(r"(\.\.|[\s~^:?*\[\\]|@\{|#\{|^[/.-]|/$|//|/\.|\.$|\.lock$|\.lock/|^@$|^$)")
# Characters no value in the config may hold: control and invisible formatting characters,
# unpaired surrogates, line and paragraph separators. They break the one-line messages, the
# templates' strings and the AWS APIs' patterns, and they hide what a value really is.
_HIDDEN = frozenset(("Cc", "Cf", "Cs", "Zl", "Zp"))
_SHOWN_CHARS = 60


# Not `default_factory=list`/`dict`: pydantic asks each factory for its signature, and a builtin's
# comes from parsing its text signature with tokenize, whose regex compiles in ~12 ms (a tenth of
# make bench's CPU). A Python function answers from its code object.
def _empty_list() -> list:
    """A new empty list: a field's default."""
    return []


def _empty_dict() -> dict:
    """A new empty mapping: a field's default."""
    return {}


class ConfigError(Exception):
    """A config that cannot be used; `problems` holds one readable line per problem."""

    def __init__(self, problems: list[str]):
        super().__init__("\n".join(problems))
        self.problems = problems


class _Strict(BaseModel):
    # Unknown keys are typos until proven otherwise. Strict: no value changes type on the way in
    # (true is not 1, 1 is not true, "5" and 5.0 are not 5); numbers are finite.
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


def _clip(text: str) -> str:
    return text if len(text) <= _SHOWN_CHARS else text[:_SHOWN_CHARS] + "..."


def _shown(value: object) -> str:
    """A value as the config wrote it, for a message: the text 'x', the number 5, true, a list."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "nothing (null)"
    if isinstance(value, float) and not math.isfinite(value):
        return ".nan" if math.isnan(value) else ".inf" if value > 0 else "-.inf"
    if isinstance(value, (int, float)):
        return f"the number {_clip(repr(value))}"
    if isinstance(value, str):
        return f"the text '{_clip(value)}'"
    if isinstance(value, (list, tuple)):
        return "a list"
    if isinstance(value, Mapping):
        return "a mapping"
    return f"a {type(value).__name__}"


def _repo_path(value: str) -> str:
    """A path inside the repository: relative, / between folders, never out through '..'."""
    if not value or value.startswith("/") or "\\" in value or re.match(r"[A-Za-z]:", value):
        raise ValueError(f"'{_clip(value)}' is not a relative path inside the repository (use / between folders)")
    if ".." in value.split("/"):
        raise ValueError(f"'{_clip(value)}' leads out of the repository ('..'); name a path inside it")
    return value


RepoPath = Annotated[str, AfterValidator(_repo_path)]


InstanceType = Annotated[
    str, Field(pattern=_INSTANCE_TYPE, description="A SageMaker ML instance type, e.g. ml.m5.large")
]


class GitHubSource(_Strict):
    """The GitHub repository and branch whose commits drive the pipeline."""

    owner: str = Field(pattern=r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})$", description="GitHub user or organisation")
    repo: str = Field(pattern=r"^[A-Za-z0-9._-]{1,100}$", description="Repository name")
    branch: str = Field(
        default="main", max_length=ACTION_CONFIGURATION_VALUE_MAX, description="Branch whose commits run the pipeline"
    )
    connection_arn: str | None = Field(
        default=None,
        description="An existing CodeStar/CodeConnections connection ARN; omit to have the stack create one",
    )

    @field_validator("branch")
    @classmethod
    def _branch_is_a_git_ref(cls, value: str) -> str:
        if _GIT_REF_BAD.search(value):
            reason = " ('#{' starts a CodePipeline variable)" if "#{" in value else ""
            raise ValueError(f"'{_clip(value)}' is not a valid git branch name{reason}")
        return value

    @field_validator("connection_arn")
    @classmethod
    def _connection_arn_shape(cls, value: str | None) -> str | None:
        if value is not None and not _CONNECTION_ARN.fullmatch(value):
            raise ValueError(
                f"'{_clip(value)}' is not a CodeStar/CodeConnections connection ARN "
                "(arn:aws:codestar-connections:REGION:ACCOUNT:connection/UUID)"
            )
        return value

    @property
    def full_repository_id(self) -> str:
        """owner/repo, as the source action wants it."""
        return f"{self.owner}/{self.repo}"


class Source(_Strict):
    """Where the pipeline's commits come from."""

    github: GitHubSource


class Training(_Strict):
    """The SageMaker training job's resources."""

    instance_type: InstanceType = "ml.m5.large"
    instance_count: int = Field(default=1, ge=1, le=100)
    volume_gb: int = Field(default=10, ge=1, le=16384)
    max_runtime_minutes: int = Field(default=60, ge=1)
    spot: StrictBool = Field(default=False, description="Use managed spot training")
    max_wait_minutes: int | None = Field(
        default=None, ge=1, description="Spot only: how long to wait for spot capacity plus training"
    )
    reuse: StrictBool = Field(
        default=True,
        description="Reuse the model of an earlier job of this project trained on the same inputs "
        "(code, data, image, hyperparameters, resources, gate) that passed the gate; false: always train",
    )

    @model_validator(mode="after")
    def _spot_wait(self) -> Training:
        if self.max_wait_minutes is not None and not self.spot:
            raise ValueError("max_wait_minutes applies only when spot is true")
        if self.spot and self.max_wait_minutes is not None and self.max_wait_minutes < self.max_runtime_minutes:
            raise ValueError("max_wait_minutes must be at least max_runtime_minutes")
        if self.job_wait_minutes + TRAIN_OVERHEAD_MINUTES > CODEBUILD_MAX_TIMEOUT_MINUTES:
            raise ValueError(
                f"the train action waits for the job, and CodeBuild stops a build after "
                f"{CODEBUILD_MAX_TIMEOUT_MINUTES} minutes: keep the job's wait at or under "
                f"{CODEBUILD_MAX_TIMEOUT_MINUTES - TRAIN_OVERHEAD_MINUTES} minutes"
            )
        return self

    @property
    def job_wait_minutes(self) -> int:
        """The longest the job can take, spot waits included."""
        if self.spot:
            return self.max_wait_minutes or self.max_runtime_minutes * 2
        return self.max_runtime_minutes

    @property
    def codebuild_timeout_minutes(self) -> int:
        """The train CodeBuild project's timeout: the job's longest run plus packaging and start-up."""
        return self.job_wait_minutes + TRAIN_OVERHEAD_MINUTES


def _hyperparameter_name(name: str) -> str:
    if not name:
        raise ValueError("a hyperparameter needs a name")
    if name.startswith(RESERVED_HYPERPARAMETER_PREFIX):
        raise ValueError(f"names starting with {RESERVED_HYPERPARAMETER_PREFIX} are reserved for the container")
    if aws_length(name) > HYPERPARAMETER_KEY_MAX:
        raise ValueError(f"the name is {aws_length(name)} characters, over SageMaker's {HYPERPARAMETER_KEY_MAX}")
    return name


def _hyperparameter_value(value: Any) -> Any:
    # The SageMaker SDK's script-mode convention (pipeline.frameworks): each value JSON-encoded.
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"expected a finite number, got {_shown(value)}")
    if not isinstance(value, (bool, int, float, str)):
        raise ValueError(f"expected text, a number or true/false, got {_shown(value)}")
    encoded = json.dumps(value)
    if aws_length(encoded) > HYPERPARAMETER_VALUE_MAX:
        raise ValueError(
            f"is {aws_length(encoded):,} characters once JSON-encoded for the training job, over SageMaker's "
            f"{HYPERPARAMETER_VALUE_MAX:,}"
        )
    return value


HyperName = Annotated[str, AfterValidator(_hyperparameter_name)]
HyperValue = Annotated[
    Any,
    AfterValidator(_hyperparameter_value),
    WithJsonSchema({"type": ["string", "number", "integer", "boolean"]}),
]


def _published_version(images: Framework | None, value: str) -> str:
    """`value` when the framework's or algorithm's table publishes it for training and inference."""
    if images is not None and value not in images.versions():
        known = ", ".join(images.versions())
        raise ValueError(f"'{value}' is not a published {images.title} image version (one of: {known})")
    return value


class Channel(_Strict):
    """One training channel of a built-in algorithm: what it holds and where under the training data."""

    content_type: str = Field(description="The channel's ContentType, e.g. text/csv or application/x-image")
    folder: str | None = Field(
        default=None, description="Folder under the training data the channel reads (default: NAME/)"
    )

    @field_validator("folder")
    @classmethod
    def _folder_shape(cls, value: str | None) -> str | None:
        if value is None:
            return value
        if not value.endswith("/") or value.startswith("/"):
            raise ValueError(f"'{_clip(value)}' must be a folder: no leading '/', ending in '/' (e.g. train/)")
        reason = _s3_prefix_problem(value)
        if reason:
            raise ValueError(reason)
        return value


ChannelName = Annotated[str, Field(pattern=r"^[A-Za-z0-9\.\-_]{1,64}$")]


class AlgorithmConfig(_Strict):
    """A SageMaker built-in algorithm (pipeline.algorithms): it trains and serves in SageMaker's image."""

    name: str = Field(description=f"One of: {', '.join(ALGORITHMS)}")
    version: str = Field(description="The algorithm image's version, e.g. 1.7-1 for XGBoost, 1 for the others")
    channels: dict[ChannelName, Channel] | None = Field(
        default=None,
        description="Channel name -> content type and folder; default: the algorithm's usual channels",
        json_schema_extra={"maxProperties": 8},
    )

    @field_validator("name")
    @classmethod
    def _known_algorithm(cls, value: str) -> str:
        if value not in ALGORITHMS:
            raise ValueError(
                f"'{value}' is not a built-in algorithm this pipeline delivers (one of: {', '.join(ALGORITHMS)})"
            )
        return value

    @field_validator("version")
    @classmethod
    def _known_version(cls, value: str, info: ValidationInfo) -> str:
        return _published_version(ALGORITHMS.get(info.data.get("name", "")), value)  # none: reported under name

    @model_validator(mode="after")
    def _channels_fit(self) -> AlgorithmConfig:
        reason = ALGORITHMS[self.name].channel_problem(self.content_types)
        if reason:
            raise ValueError(f"channels: {reason}")
        return self

    @property
    def content_types(self) -> dict[str, str]:
        """Channel name -> content type, the defaults when the config names no channels."""
        if self.channels is None:
            return dict(ALGORITHMS[self.name].default_channels)
        return {name: channel.content_type for name, channel in self.channels.items()}

    @property
    def folders(self) -> dict[str, str]:
        """Channel name -> the folder under the training data it reads (NAME/ unless set)."""
        given = self.channels or {}
        return {name: (given[name].folder if name in given else None) or f"{name}/" for name in self.content_types}


class Container(_Strict):
    """Your own image (README: Your own container): built from a Dockerfile in the repo by the
    BuildImage stage, pushed to the project's ECR repository tagged by commit, and used to train
    and to serve (or, with serving_dockerfile, a second image to serve)."""

    dockerfile: RepoPath = Field(default="Dockerfile", description="The Dockerfile (in the repo) of the image")
    context: RepoPath = Field(default=".", description="The build context folder (in the repo)")
    serving_dockerfile: RepoPath | None = Field(
        default=None, description="A second Dockerfile for the serving image; default: serve with the training image"
    )
    keep_images: int = Field(
        default=100,
        ge=2,
        le=1000,
        description="The repository keeps the newest this many images (one per commit, two with serving_dockerfile) "
        "and expires older ones; keep enough that every environment's serving image stays",
    )

    def image_tag(self, commit: str, scope: str) -> str:
        """The tag of the image a commit built for a scope (training, inference): the commit id, and
        `<commit>-serving` for a separate serving image."""
        return f"{commit}-serving" if scope == "inference" and self.serving_dockerfile else commit


# The fields of script mode (a framework's image runs your code), which an own container and a
# built-in algorithm (SageMaker's own code) replace.
SCRIPT_MODE_FIELDS = ("framework", "framework_version", "source_dir", "entry_point", "inference_entry_point")


class ModelConfig(_Strict):
    """The model's code and how SageMaker trains it: script mode, your own container, or a built-in algorithm."""

    container: Container | None = Field(
        default=None, description="Your own image instead of a framework's (no framework fields with it)"
    )
    framework: str = Field(default="sklearn", description=f"One of: {', '.join(FRAMEWORKS)}")
    framework_version: str = "1.2-1"
    source_dir: RepoPath = Field(default="model", description="Folder (in the repo) packaged as the script-mode source")
    entry_point: RepoPath = Field(default="train.py", max_length=255, description="Training script, inside source_dir")
    inference_entry_point: RepoPath = Field(
        default="inference.py", max_length=255, description="Inference handlers, inside source_dir"
    )
    algorithm: AlgorithmConfig | None = Field(
        default=None,
        description="A SageMaker built-in algorithm instead of script mode (no framework, source_dir or entry points)",
    )
    hyperparameters: dict[HyperName, HyperValue] = Field(default_factory=_empty_dict)
    training: Training = Field(default_factory=Training)

    @model_validator(mode="after")
    def _algorithm_or_script_mode(self) -> ModelConfig:
        if self.algorithm is not None and self.container is not None:
            raise ValueError("algorithm runs in SageMaker's image and container in your own: keep one of the two")
        both = [field for field in SCRIPT_MODE_FIELDS if field in self.model_fields_set]
        if self.algorithm is not None and both:
            one = len(both) == 1
            raise ValueError(
                f"algorithm runs SageMaker's own code, so {' and '.join(both)} {'does' if one else 'do'} not "
                f"apply: remove {'it' if one else 'them'} or the algorithm"
            )
        return self

    @field_validator("framework")
    @classmethod
    def _known_framework(cls, value: str) -> str:
        if value not in FRAMEWORKS:
            raise ValueError(f"'{value}' is not a framework this pipeline delivers (one of: {', '.join(FRAMEWORKS)})")
        return value

    @field_validator("framework_version")
    @classmethod
    def _known_version(cls, value: str, info: ValidationInfo) -> str:
        # No framework: reported under model.framework.
        return _published_version(FRAMEWORKS.get(info.data.get("framework", "")), value)

    @field_validator("inference_entry_point")
    @classmethod
    def _serving_program(cls, value: str, info: ValidationInfo) -> str:
        framework = FRAMEWORKS.get(info.data.get("framework", ""))
        if framework is not None and framework.serving_program not in (None, value):
            raise ValueError(
                f"'{value}': the {framework.title} Serving container runs code/{framework.serving_program} by "
                f"that name (no SAGEMAKER_PROGRAM); name the handlers' file so, at the top of source_dir"
            )
        return value

    @field_validator("hyperparameters")
    @classmethod
    def _hyperparameters_fit(cls, value: dict, info: ValidationInfo) -> dict:
        if info.data.get("container") is not None:  # its own container: SageMaker's limit alone
            if len(value) > HYPERPARAMETERS_MAX:
                raise ValueError(f"{len(value)} set; a training job takes at most {HYPERPARAMETERS_MAX}")
            return value
        algorithm = info.data.get("algorithm")
        framework = ALGORITHMS[algorithm.name] if algorithm else FRAMEWORKS.get(info.data.get("framework", ""))
        if framework is None:  # reported under model.framework
            return value
        taken = sorted(set(value) & set(framework.reserved_hyperparameters))
        if taken:
            raise ValueError(
                f"'{taken[0]}' is set by the pipeline for {framework.title} (the SDK's estimator passes it); remove it"
            )
        # What the training job gets: the user's and the container's own (the values of these
        # do not matter for the count).
        sent = framework.training_hyperparameters(dict(value), info.data.get("entry_point", ""), "", "")
        if len(sent) > HYPERPARAMETERS_MAX:
            own = len(sent) - len(value)
            raise ValueError(
                f"{len(value)} set; a training job takes at most {HYPERPARAMETERS_MAX} and the {framework.title} "
                f"container adds {own} of its own: use at most {HYPERPARAMETERS_MAX - own}"
            )
        return value

    @property
    def own_container(self) -> bool:
        """Whether the model trains and serves in the project's own image (model.container)."""
        return self.container is not None


def _s3_prefix_problem(prefix: str) -> str | None:
    """Why an S3 key prefix would not survive the trip into an IAM policy inside Fn::Sub, or None:
    '${' would be read as a variable there, '*' and '?' would widen the grant."""
    if "${" in prefix:
        return f"the prefix '{_clip(prefix)}' holds '${{', which CloudFormation's Fn::Sub would read as a variable"
    if "*" in prefix or "?" in prefix:
        return f"the prefix '{_clip(prefix)}' holds a wildcard ('*' or '?'), which would widen the IAM grant on it"
    bad = sorted(set(prefix) - _S3_KEY_CHARS)
    if bad:
        shown = " ".join(repr(c) for c in bad[:5])
        return f"the prefix holds {shown}: use letters, digits and ! - _ . ' ( ) = / (the characters S3 keys keep safe)"
    folders = prefix.split("/")
    if any(part in ("", ".", "..") for part in folders[:-1]) or folders[-1] in (".", ".."):
        return f"the prefix '{_clip(prefix)}' has an empty, '.' or '..' folder"
    return None


def _s3_uri_problem(uri: str) -> str | None:
    """Why an s3:// URI would not survive the trip into the template and the training job, or None.

    Its bucket and prefix land in an IAM policy's resource ARN, inside Fn::Sub (see _s3_prefix_problem).
    """
    match = _S3_URI.fullmatch(uri)
    if not match:
        return f"'{_clip(uri)}' is not an s3://bucket/prefix URI"
    bucket, prefix = match.group(1), (match.group(2) or "/")[1:]
    if (
        not _S3_BUCKET.fullmatch(bucket)
        or any(pair in bucket for pair in ("..", ".-", "-."))
        or re.fullmatch(r"\d+\.\d+\.\d+\.\d+", bucket)
    ):
        return (
            f"'{_clip(bucket)}' is not an S3 bucket name (3 to 63 lowercase letters, digits, dots and hyphens, "
            "starting and ending with a letter or digit)"
        )
    reason = _s3_prefix_problem(prefix)
    if reason:
        return reason
    if len(uri) > S3_URI_MAX:
        return f"is {len(uri):,} characters, over SageMaker's {S3_URI_MAX:,} for an S3 URI"
    return None


# The project's own folders in the model bucket (pipeline stack, train, endpoints write there): training
# data under one of them would mix with them, and a model written under it would start a retrain.
MODEL_BUCKET_FOLDERS = (
    "code/",
    "data/",
    "models/",
    "checkpoints/",
    "data-capture/",
    "baselines/",
    "monitoring/",
    "async-input/",
    "async-output/",
    "async-failures/",
    "batch-output/",
)
# A generated bucket name is at most 63 characters: s3://BUCKET/PROJECT/PREFIX must fit SageMaker's limit.
S3_BUCKET_MAX = 63


def _model_bucket_prefix_problem(prefix: str) -> str | None:
    """Why a prefix in the project's folder of the model bucket cannot hold the training data, or None."""
    if not prefix.endswith("/") or prefix.startswith("/"):
        return f"'{_clip(prefix)}' must be a folder: no leading '/', ending in '/' (e.g. training-data/)"
    reason = _s3_prefix_problem(prefix)
    if reason:
        return reason
    clash = next((f for f in MODEL_BUCKET_FOLDERS if f.startswith(prefix) or prefix.startswith(f)), None)
    if clash:
        return (
            f"'{_clip(prefix)}' overlaps the pipeline's own folder {clash} in the model bucket "
            "(its objects would count as training data); use e.g. training-data/"
        )
    return None


class TrainingData(_Strict):
    """The training data: an S3 location, a repo folder the train step uploads per commit, or a
    folder in the project's own model bucket (optionally seeded by make deploy from a repo folder)."""

    s3_uri: str | None = Field(default=None, description="s3://bucket/prefix/ holding the training channel")
    local_dir: RepoPath | None = Field(
        default=None, description="Repo folder uploaded to the model bucket, keyed by commit"
    )
    model_bucket_prefix: str | None = Field(
        default=None,
        description="Folder under the project's prefix in the pipeline's own model bucket (e.g. training-data/); "
        "new objects there start the pipeline",
    )
    seed_dir: RepoPath | None = Field(
        default=None,
        description="With model_bucket_prefix: repo folder make deploy uploads there when the folder is empty "
        "(never overwrites)",
    )

    @field_validator("s3_uri")
    @classmethod
    def _s3_uri_shape(cls, value: str | None) -> str | None:
        if value is not None:
            reason = _s3_uri_problem(value)
            if reason:
                raise ValueError(reason)
        return value

    @field_validator("model_bucket_prefix")
    @classmethod
    def _prefix_shape(cls, value: str | None) -> str | None:
        if value is not None:
            reason = _model_bucket_prefix_problem(value)
            if reason:
                raise ValueError(reason)
        return value

    @model_validator(mode="after")
    def _exactly_one(self) -> TrainingData:
        if sum(v is not None for v in (self.s3_uri, self.local_dir, self.model_bucket_prefix)) != 1:
            raise ValueError("set exactly one of s3_uri, local_dir or model_bucket_prefix")
        if self.seed_dir is not None and self.model_bucket_prefix is None:
            raise ValueError(
                "seed_dir seeds the model bucket's folder, so it needs model_bucket_prefix (local_dir is uploaded "
                "per commit; s3_uri is yours)"
            )
        return self

    @property
    def in_s3(self) -> bool:
        """Whether the data lives in S3 (s3_uri or the model bucket), not in the commit."""
        return self.local_dir is None

    def _s3_parts(self) -> tuple[str, str] | None:
        match = _S3_URI.fullmatch(self.s3_uri) if self.s3_uri else None
        return (match.group(1), (match.group(2) or "/").lstrip("/")) if match else None

    @property
    def s3_bucket(self) -> str | None:
        """The bucket of s3_uri, if any."""
        parts = self._s3_parts()
        return parts[0] if parts else None

    @property
    def s3_prefix(self) -> str:
        """The key prefix of s3_uri without its leading slash ('' for a whole bucket)."""
        parts = self._s3_parts()
        return parts[1] if parts else ""


class BatchInput(_Strict):
    """Where the batch transform's input objects are: a folder of the project's in the model
    bucket, or a prefix of your own bucket."""

    model_bucket_prefix: str | None = Field(
        default=None, description="Folder under the project's prefix in the model bucket (e.g. batch-input/)"
    )
    s3_uri: str | None = Field(default=None, description="s3://bucket/prefix/ of your own")

    @field_validator("s3_uri")
    @classmethod
    def _s3_uri_shape(cls, value: str | None) -> str | None:
        reason = _s3_uri_problem(value) if value is not None else None
        if reason:
            raise ValueError(reason)
        return value

    @field_validator("model_bucket_prefix")
    @classmethod
    def _prefix_shape(cls, value: str | None) -> str | None:
        reason = _model_bucket_prefix_problem(value) if value is not None else None
        if reason:
            raise ValueError(reason.replace("training data", "batch input").replace("training-data/", "batch-input/"))
        return value

    @model_validator(mode="after")
    def _exactly_one(self) -> BatchInput:
        if (self.s3_uri is None) == (self.model_bucket_prefix is None):
            raise ValueError("set exactly one of model_bucket_prefix or s3_uri")
        return self

    @property
    def s3_bucket(self) -> str | None:
        """The bucket of s3_uri (None: the model bucket)."""
        match = _S3_URI.fullmatch(self.s3_uri) if self.s3_uri else None
        return match.group(1) if match else None

    @property
    def s3_prefix(self) -> str:
        """The key prefix of s3_uri without its leading slash ('' for a whole bucket or no s3_uri)."""
        match = _S3_URI.fullmatch(self.s3_uri) if self.s3_uri else None
        return (match.group(2) or "/").lstrip("/") if match else ""


# CreateTransformJob (botocore sagemaker): SplitType None|Line|RecordIO|TFRecord; InstanceCount 1..;
# the wait is the build's: a CodeBuild project runs at most 2160 minutes.
SplitType = Literal["None", "Line", "RecordIO", "TFRecord"]
BATCH_WAIT_MAX_MINUTES = CODEBUILD_MAX_TIMEOUT_MINUTES - 30


class BatchTransform(_Strict):
    """A SageMaker batch transform of offline data with the model the run deployed to `after`,
    after that environment's endpoint tests; its report joins the next approval's message."""

    after: str = Field(description="The environment whose endpoint tests it follows (its model is used)")
    input: BatchInput
    content_type: str = Field(
        default="text/csv", pattern=r"^[A-Za-z0-9!#$&^_.+-]+/[A-Za-z0-9!#$&^_.+-]+$", max_length=256
    )
    accept: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9!#$&^_.+-]+/[A-Za-z0-9!#$&^_.+-]+$",
        max_length=256,
        description="The answers' content type (default: the container's)",
    )
    split_type: SplitType = Field(default="Line", description="How an input object is cut into records")
    instance_type: InstanceType = "ml.m5.large"
    instance_count: int = Field(default=1, ge=1, le=100)
    max_wait_minutes: int = Field(
        default=60, ge=1, le=BATCH_WAIT_MAX_MINUTES, description="The job is stopped and the action fails after this"
    )

    @property
    def codebuild_timeout_minutes(self) -> int:
        """The batch action's CodeBuild timeout: the wait and time to install and report."""
        return self.max_wait_minutes + 30


class Champion(_Strict):
    """Champion/challenger: the new model must also do at least as well as the one serving in an
    environment (by the gate's metric, read from the training job that produced it)."""

    against: str | None = Field(
        default=None,
        min_length=1,
        description="The environment whose serving model is the champion (default: the last environment)",
    )
    margin: float = Field(
        default=0.0,
        ge=0.0,
        description="How much better than the champion the challenger must be (0: at least as good)",
    )


class QualityGate(_Strict):
    """The metric the trained model must reach before it is deployed anywhere."""

    metric: str = Field(pattern=r"^[A-Za-z0-9_.:/-]{1,255}$", description="Metric name the training script logs")
    threshold: float
    direction: Literal["maximize", "minimize"]
    regex: str | None = Field(
        default=None,
        min_length=1,
        max_length=METRIC_REGEX_MAX,
        description="Regex with one group capturing the value in the job's logs; default 'METRIC=(value)'",
    )
    champion: Champion | None = Field(
        default=None,
        description="Also hold the new model to the one serving in an environment (champion/challenger)",
    )

    @field_validator("regex")
    @classmethod
    def _one_group(cls, value: str | None) -> str | None:
        if value is None:
            return value
        try:
            groups = re.compile(value).groups
        except (re.error, RecursionError, OverflowError) as exc:
            raise ValueError(f"not a valid regular expression ({exc})") from None
        if groups != 1:
            raise ValueError(f"needs exactly one capture group for the value, has {groups}")
        return value

    @model_validator(mode="after")
    def _regex_fits(self) -> QualityGate:
        if self.regex is None and len(self.metric_regex) > METRIC_REGEX_MAX:
            raise ValueError(
                f"the regex that reads metric '{_clip(self.metric)}' from the logs would be {len(self.metric_regex)} "
                f"characters, over SageMaker's {METRIC_REGEX_MAX}: use a shorter metric name or set regex"
            )
        return self

    @property
    def metric_regex(self) -> str:
        """The regex SageMaker uses to read the metric from the training logs."""
        return self.regex or re.escape(self.metric) + r"=([-+]?[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)"

    def passes(self, value: float) -> bool:
        """Whether a metric value clears the gate."""
        return value >= self.threshold if self.direction == "maximize" else value <= self.threshold

    @property
    def terms(self) -> str:
        """The gate as messages state it: `(maximize, threshold 0.9)`."""
        return f"({self.direction}, threshold {self.threshold:g})"

    def beats(self, challenger: float, champion: float) -> bool:
        """Whether the challenger's value clears the champion's by the champion block's margin."""
        margin = self.champion.margin if self.champion else 0.0
        if self.direction == "maximize":
            return challenger >= champion + margin
        return challenger <= champion - margin


# CodePipeline's push trigger filters (botocore codepipeline: GitBranchPatternList and
# GitFilePathPatternList hold 1 to 8 patterns, each GitBranchNamePattern / GitFilePathPattern 1 to
# 255 characters) and EventBridge's ScheduleExpression (botocore events: at most 256 characters).
FILTER_PATTERNS_MAX = 8
FILTER_PATTERN_MAX = 255
SCHEDULE_EXPRESSION_MAX = 256
DOCS_ONLY_PATHS = ("**/*.md", "docs/**")
_RATE = re.compile(r"rate\((\d{1,9}) (minute|minutes|hour|hours|day|days)\)")
_CRON_FIELD = re.compile(r"[0-9A-Za-z*?,/#L W-]+")


def _filter_patterns(value: list[str]) -> list[str]:
    if len(value) > FILTER_PATTERNS_MAX:
        raise ValueError(f"{len(value)} patterns; CodePipeline takes at most {FILTER_PATTERNS_MAX} per list")
    for pattern in value:
        if not pattern.strip():
            raise ValueError("a pattern is empty")
        if aws_length(pattern) > FILTER_PATTERN_MAX:
            raise ValueError(f"'{_clip(pattern)}' is over CodePipeline's {FILTER_PATTERN_MAX} characters")
        if pattern != pattern.strip():
            raise ValueError(f"'{_clip(pattern)}' starts or ends with a space")
    twice = sorted({p for p in value if value.count(p) > 1})
    if twice:
        raise ValueError(f"lists '{_clip(twice[0])}' more than once")
    return value


FilterPatterns = Annotated[list[str], AfterValidator(_filter_patterns)]


def _schedule_problem(expression: str) -> str | None:
    """Why EventBridge would refuse a rule's schedule expression, or None."""
    if len(expression) > SCHEDULE_EXPRESSION_MAX:
        return f"is over EventBridge's {SCHEDULE_EXPRESSION_MAX} characters"
    rate = _RATE.fullmatch(expression)
    if rate:
        count, unit = int(rate.group(1)), rate.group(2)
        if count < 1:
            return "a rate must be at least 1"
        if (count == 1) != (not unit.endswith("s")):
            return f"write rate({count} {unit.rstrip('s') if count == 1 else unit.rstrip('s') + 's'}) (EventBridge wants the singular for 1 only)"
        return None
    if expression.startswith("cron(") and expression.endswith(")"):
        fields = expression[5:-1].split(" ")
        if len(fields) != 6 or not all(_CRON_FIELD.fullmatch(f) for f in fields):
            return "a cron expression has six fields: minutes hours day-of-month month day-of-week year"
        if fields[2] != "?" and fields[4] != "?":
            return "cron: one of day-of-month and day-of-week must be '?'"
        return None
    return f"'{_clip(expression)}' is not rate(N minutes|hours|days) or cron(6 fields)"


class Triggers(_Strict):
    """What starts the pipeline: pushes (filtered by branch and changed path), new training data, a schedule."""

    branches: FilterPatterns | None = Field(
        default=None, description="Branch patterns whose pushes run the pipeline (default: source.github.branch)"
    )
    branches_excluded: FilterPatterns = Field(
        default_factory=_empty_list, description="Branch patterns that never run it"
    )
    paths: FilterPatterns = Field(
        default_factory=_empty_list,
        description="Run only when a push changes a file matching one of these (default: any)",
    )
    paths_excluded: FilterPatterns = Field(
        default_factory=lambda: list(DOCS_ONLY_PATHS),
        description="A push changing only files matching these does not run the pipeline",
    )
    new_data: StrictBool | None = Field(
        default=None,
        description="Run when an object lands under training_data.s3_uri or model_bucket_prefix "
        "(default: true when the data is in S3)",
    )
    schedule: str | None = Field(
        default=None, description="Also run on this EventBridge schedule: rate(7 days) or cron(0 3 ? * MON *)"
    )

    @field_validator("branches")
    @classmethod
    def _some_branch(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and not value:
            raise ValueError("needs at least one branch pattern (omit it for source.github.branch)")
        return value

    @field_validator("schedule")
    @classmethod
    def _schedule_shape(cls, value: str | None) -> str | None:
        reason = _schedule_problem(value) if value is not None else None
        if reason:
            raise ValueError(reason)
        return value


# SageMaker's limits on a blue/green update, from botocore's sagemaker model (BlueGreenUpdatePolicy,
# TrafficRoutingConfig: WaitIntervalInSeconds and TerminationWaitInSeconds 0-3600,
# MaximumExecutionTimeoutInSeconds 600-28800) and the API reference of TrafficRoutingConfig
# (CanarySize "less than or equal to 50%", LinearStepSize "10-50%" of the variant's instances).
WAIT_MAX_S = 3600
EXECUTION_MIN_S, EXECUTION_MAX_S = 600, 28800
CANARY_MAX_PERCENT = 50
LINEAR_MIN_PERCENT, LINEAR_MAX_PERCENT = 10, 50
TrafficMode = Literal["all_at_once", "canary", "linear"]
MIN_INSTANCES_FOR_STEPS = 2


class RollbackAlarms(_Strict):
    """The CloudWatch alarms the endpoint stack creates; one in ALARM during an update rolls it back."""

    errors_5xx: int = Field(
        default=1, ge=1, le=1_000_000, description="Invocation 5XX errors in one period that trip the alarm"
    )
    latency_ms: int | None = Field(
        default=None,
        ge=1,
        le=60000,
        description="Average model latency per period that trips the alarm (default: endpoint_tests.latency_budget_ms)",
    )
    # SageMaker publishes endpoint metrics every minute: CloudWatch's PutMetricAlarm allows 10, 20,
    # 30 or a multiple of 60 s, and only a multiple of 60 has data here (botocore cloudwatch model).
    period_s: int = Field(
        default=60, ge=60, le=WAIT_MAX_S, description="Seconds per evaluation period (multiple of 60)"
    )
    evaluation_periods: int = Field(default=1, ge=1, le=60, description="Periods over which the alarm evaluates")

    @field_validator("period_s")
    @classmethod
    def _whole_minutes(cls, value: int) -> int:
        if value % 60:
            raise ValueError(
                f"{value} s is not a whole number of minutes; SageMaker's endpoint metrics have one-minute "
                "resolution, so CloudWatch needs a multiple of 60"
            )
        return value


class Deployment(_Strict):
    """How SageMaker shifts traffic to a new model (blue/green), and the alarms that roll it back."""

    traffic: TrafficMode | None = Field(
        default=None, description="all_at_once, canary or linear (default: canary where approval is true)"
    )
    canary_percent: int = Field(
        default=10, ge=1, le=CANARY_MAX_PERCENT, description="Share of the new fleet that takes traffic first"
    )
    linear_step_percent: int = Field(
        default=10, ge=LINEAR_MIN_PERCENT, le=LINEAR_MAX_PERCENT, description="Share of the new fleet added per step"
    )
    wait_s: int = Field(default=300, ge=0, le=WAIT_MAX_S, description="Baking time after each traffic step")
    termination_wait_s: int = Field(
        default=0, ge=0, le=WAIT_MAX_S, description="Baking time with all traffic on the new fleet before the old goes"
    )
    max_execution_s: int | None = Field(
        default=None,
        ge=EXECUTION_MIN_S,
        le=EXECUTION_MAX_S,
        description="SageMaker gives up and rolls back after this (default: SageMaker's)",
    )
    alarms: RollbackAlarms = Field(default_factory=RollbackAlarms)

    @model_validator(mode="after")
    def _timeout_covers_the_waits(self) -> Deployment:
        # botocore's BlueGreenUpdatePolicy: "the timeout value should be larger than the total
        # waiting time specified in TerminationWaitInSeconds and WaitIntervalInSeconds".
        if self.max_execution_s is not None and self.max_execution_s <= self.total_wait_s:
            raise ValueError(
                f"max_execution_s: {self.max_execution_s} s does not exceed the update's waits "
                f"({self.total_wait_s} s: {self.steps} x wait_s + termination_wait_s); SageMaker needs the "
                "timeout larger than the waits"
            )
        return self

    @property
    def steps(self) -> int:
        """Traffic steps, each followed by wait_s: one, or one per linear step."""
        return -(-100 // self.linear_step_percent) if self.traffic == "linear" else 1

    @property
    def total_wait_s(self) -> int:
        """The baking an update spends at least: every step's wait and the termination wait."""
        return self.steps * self.wait_s + self.termination_wait_s


CaptureWhat = Literal["input", "output"]


def _input_and_output() -> list[CaptureWhat]:
    return ["input", "output"]


class DataCapture(_Strict):
    """Requests and responses SageMaker writes to the model bucket, under the environment's prefix."""

    enabled: StrictBool = Field(default=True, description="false turns capture off (it is on by default with approval)")
    sampling_percent: int = Field(default=20, ge=0, le=100, description="Share of requests captured")
    capture: list[CaptureWhat] = Field(default_factory=_input_and_output, description="input, output or both")

    @field_validator("capture")
    @classmethod
    def _each_once(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("names nothing; capture input, output or both (or set enabled: false)")
        if len(set(value)) != len(value):
            raise ValueError("names input or output more than once")
        return value


class Monitoring(_Strict):
    """A data-quality monitoring schedule on the captured traffic, against a baseline the train step
    computes from the training data (Model Monitor: open only to accounts that already use it)."""

    schedule: Literal["hourly", "daily"] = Field(default="daily", description="How often captured data is checked")
    header: StrictBool = Field(default=True, description="The training data's CSV files start with a header row")
    label_position: Literal["start", "end"] = Field(
        default="end", description="Where the training data's label column is: first (start) or last (end)"
    )


# Each environment takes at most two of CodePipeline's 50 stages (an approval, then its deploy and
# test), besides Source and Build.
MAX_ENVIRONMENTS = 24


# SageMaker's ProductionVariantServerlessConfig (botocore sagemaker: ServerlessMemorySizeInMB 1024..6144
# "in 1 GB increments", ServerlessMaxConcurrency 1..200, ServerlessProvisionedConcurrency 1..200 and
# "less than or equal to MaxConcurrency").
SERVERLESS_MEMORY_STEP_MB = 1024


class Serverless(_Strict):
    """Serverless Inference instead of instances: billed per request and compute time, nothing idle."""

    memory_mb: int = Field(
        default=2048, ge=1024, le=6144, description="Memory per invocation: 1024..6144 in 1024 steps"
    )
    max_concurrency: int = Field(default=5, ge=1, le=200, description="Invocations served at once before throttling")
    provisioned_concurrency: int | None = Field(
        default=None, ge=1, le=200, description="Warm capacity billed while idle (default: none, so no idle cost)"
    )

    @field_validator("memory_mb")
    @classmethod
    def _whole_gigabytes(cls, value: int) -> int:
        if value % SERVERLESS_MEMORY_STEP_MB:
            raise ValueError(f"{value} is not allowed: use 1024, 2048, 3072, 4096, 5120 or 6144")
        return value

    @model_validator(mode="after")
    def _provisioned_within_max(self) -> Serverless:
        if self.provisioned_concurrency is not None and self.provisioned_concurrency > self.max_concurrency:
            raise ValueError(
                f"provisioned_concurrency: {self.provisioned_concurrency} is over max_concurrency "
                f"({self.max_concurrency}); SageMaker needs it at most max_concurrency"
            )
        return self


class Autoscaling(_Strict):
    """Target tracking on the variant's invocations per instance (Application Auto Scaling)."""

    # Application Auto Scaling's RegisterScalableTarget (MinCapacity, MaxCapacity: ResourceCapacity, an
    # integer) and TargetTrackingScalingPolicyConfiguration (TargetValue: MetricScale, a double;
    # ScaleIn/OutCooldown: Cooldown, integer seconds); the upper bounds keep one instance type's
    # count within InitialInstanceCount's range here (1..100).
    min_instances: int = Field(
        ge=0, le=100, description="Never fewer instances than this (0 only for an asynchronous environment)"
    )
    max_instances: int = Field(ge=1, le=100, description="Never more instances than this")
    target_invocations_per_instance: float = Field(
        default=70.0, gt=0, le=1_000_000, description="Invocations per instance per minute to hold (real-time)"
    )
    target_backlog_per_instance: float = Field(
        default=5.0,
        gt=0,
        le=1_000_000,
        description="Queued requests per instance to hold (asynchronous: ApproximateBacklogSizePerInstance)",
    )
    scale_in_cooldown_s: int = Field(default=300, ge=0, le=86400, description="Seconds between scale-ins")
    scale_out_cooldown_s: int = Field(default=60, ge=0, le=86400, description="Seconds between scale-outs")

    @model_validator(mode="after")
    def _min_within_max(self) -> Autoscaling:
        if self.min_instances > self.max_instances:
            raise ValueError(f"min_instances: {self.min_instances} is over max_instances ({self.max_instances})")
        return self


# SageMaker's AsyncInferenceClientConfig.MaxConcurrentInvocationsPerInstance (botocore: 1..1000) and
# InvokeEndpointAsync's InvocationTimeoutSeconds (1..3600, the longest a request may run).
ASYNC_CONCURRENCY_MAX = 1000
ASYNC_INVOCATION_TIMEOUT_MAX_S = 3600


class Asynchronous(_Strict):
    """Asynchronous Inference: callers put a request in S3 and invoke the endpoint, SageMaker queues
    it and writes the answer (or the failure) to the model bucket, and tells the project's topic."""

    max_concurrent_invocations_per_instance: int | None = Field(
        default=None,
        ge=1,
        le=ASYNC_CONCURRENCY_MAX,
        description="Requests each instance's container is sent at once (default: SageMaker's choice)",
    )
    notifications: StrictBool = Field(
        default=True, description="Publish each success and error to the project's async-inference topic (SNS)"
    )
    result_timeout_s: int = Field(
        default=900,
        ge=1,
        le=ASYNC_INVOCATION_TIMEOUT_MAX_S,
        description="The endpoint test waits this long for each answer (scaling up from zero included)",
    )


class Environment(_Strict):
    """One place the model is deployed to, in pipeline order: its endpoint and what guards it."""

    name: str = Field(
        pattern=r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$",
        max_length=ENVIRONMENT_NAME_MAX,
        description="Lowercase letters, digits and single hyphens (qa, staging, prod); names the endpoint",
    )
    account: str | None = Field(
        default=None, pattern=r"^\d{12}$", description="AWS account to deploy to (default: the pipeline's)"
    )
    region: str | None = Field(default=None, description="AWS region to deploy to (default: the pipeline's)")
    approval: StrictBool = Field(default=False, description="A manual approval comes before this environment")
    instance_type: InstanceType = "ml.m5.large"
    initial_instance_count: int = Field(default=1, ge=1, le=100)
    serverless: Serverless | None = Field(
        default=None, description="Serverless Inference instead of instance_type/initial_instance_count"
    )
    autoscaling: Autoscaling | None = Field(default=None, description="Scale the instances with the traffic")
    asynchronous: Asynchronous | None = Field(
        default=None, description="Asynchronous Inference: requests queued, answers written to the model bucket"
    )

    @model_validator(mode="before")
    @classmethod
    def _serverless_or_instances(cls, data: Any) -> Any:
        # Before defaults fill in instance_type, so that "both set" means the config wrote both.
        if isinstance(data, Mapping) and data.get("serverless") is not None:
            if data.get("asynchronous") is not None:
                raise ValueError(
                    "asynchronous: Asynchronous Inference runs on instances and a serverless environment has none; "
                    "remove serverless or asynchronous"
                )
            written = [key for key in ("instance_type", "initial_instance_count", "autoscaling") if key in data]
            if written:
                raise ValueError(
                    f"serverless: an environment is either serverless or runs instances; remove "
                    f"{' and '.join(written)} or serverless"
                )
        return data

    @model_validator(mode="after")
    def _asynchronous_scaling(self) -> Environment:
        # Only an asynchronous endpoint queues requests while it has no instance (SageMaker Developer
        # Guide, async-inference-autoscale: "you can also scale down your asynchronous endpoints
        # instances to zero"); each kind scales on its own metric.
        scaling = self.autoscaling
        if scaling is None:
            return self
        written = scaling.model_fields_set
        if self.asynchronous is None:
            if scaling.min_instances == 0:
                raise ValueError(
                    "autoscaling.min_instances: 0 is for asynchronous environments only (a real-time endpoint "
                    "cannot queue requests while it has no instance); use 1 or more, or add asynchronous"
                )
            if "target_backlog_per_instance" in written:
                raise ValueError(
                    "autoscaling.target_backlog_per_instance: applies to asynchronous environments only; "
                    "use target_invocations_per_instance"
                )
        elif "target_invocations_per_instance" in written:
            raise ValueError(
                "autoscaling.target_invocations_per_instance: an asynchronous environment scales on its "
                "queue; use target_backlog_per_instance"
            )
        return self

    @model_validator(mode="after")
    def _asynchronous_excludes(self) -> Environment:
        # Refused rather than assumed: deployment guardrails' rollback alarms watch real-time
        # invocation metrics, and neither their documentation nor data capture's names asynchronous
        # endpoints (README, "Asynchronous inference": what is assumed).
        if self.asynchronous is None:
            return self
        if self.deployment is not None:
            raise ValueError(
                "deployment: guarded blue/green updates are for real-time endpoints here; an asynchronous "
                "environment is updated all at once (remove deployment)"
            )
        if self.data_capture is not None and self.data_capture.enabled:
            raise ValueError(
                "data_capture: not supported for an asynchronous environment here; remove data_capture "
                "(its answers are in the model bucket already)"
            )
        return self

    @model_validator(mode="after")
    def _count_within_bounds(self) -> Environment:
        scaling = self.autoscaling
        if scaling and not scaling.min_instances <= self.initial_instance_count <= scaling.max_instances:
            raise ValueError(
                f"initial_instance_count: {self.initial_instance_count} is outside autoscaling's "
                f"{scaling.min_instances}..{scaling.max_instances} (min_instances..max_instances)"
            )
        return self

    @property
    def processor(self) -> str:
        """The image processor the environment's endpoint runs: cpu for serverless, else its instance type's."""
        return "cpu" if self.serverless is not None else processor(self.instance_type)

    deployment: Deployment | None = Field(
        default=None, description="Guarded blue/green updates (default: canary with alarms where approval is true)"
    )
    data_capture: DataCapture | None = Field(
        default=None, description="Capture requests and responses (default: 20% where approval is true)"
    )

    monitoring: Monitoring | None = Field(
        default=None, description="Data-quality monitoring of the captured traffic (default: none)"
    )

    @field_validator("account")
    @classmethod
    def _same_account_only(cls, value: str | None) -> str | None:
        # The pipeline can describe such a target (pipeline.stages.DeploymentTarget), but the
        # roles and the key and bucket grants in the other account do not exist yet: refuse,
        # rather than emit a pipeline whose deploy fails.
        if value is not None:
            raise ValueError(
                "deploying to another AWS account is not supported yet; omit account to deploy in the "
                "pipeline's account"
            )
        return value

    @property
    def guardrails(self) -> Deployment | None:
        """The blue/green update policy the endpoint gets, or None for SageMaker's default update
        (all at once, no alarms): where a manual approval guards the environment, a canary with
        alarms (all at once with a bake, on a single instance)."""
        if self.deployment is None:
            if not self.approval or self.asynchronous is not None:
                return None
            if self.shifts_in_steps:
                return Deployment(traffic="canary")
            # One instance cannot take a canary (see _steps_need_two_instances): all at once, and
            # the canary's wait as the bake before the old instance goes, so the alarms can act.
            return Deployment(traffic="all_at_once", termination_wait_s=Deployment().wait_s)
        if self.deployment.traffic is None:
            traffic = "canary" if self.approval and self.shifts_in_steps else "all_at_once"
            return self.deployment.model_copy(update={"traffic": traffic})
        return self.deployment

    @property
    def fewest_instances(self) -> int:
        """The fewest instances the variant runs during an update: autoscaling's minimum (an update
        keeps the count autoscaling chose), else the configured count."""
        return self.autoscaling.min_instances if self.autoscaling else self.initial_instance_count

    @property
    def shifts_in_steps(self) -> bool:
        """Whether the variant has the instances a canary or linear step needs (at least two); a
        serverless variant has no instances to step through."""
        return self.serverless is None and self.fewest_instances >= MIN_INSTANCES_FOR_STEPS

    @model_validator(mode="after")
    def _steps_need_two_instances(self) -> Environment:
        # A canary is at most 50% of the variant's instances, a linear step 10-50% (API reference,
        # TrafficRoutingConfig), and a step is at least one instance: one instance has no such step.
        traffic = self.deployment.traffic if self.deployment else None
        if traffic in ("canary", "linear") and self.serverless is not None:
            raise ValueError(
                f"deployment.traffic: {traffic} steps through instances and a serverless environment has none; "
                "use all_at_once (still rolled back by the alarms), or instance_type"
            )
        if traffic in ("canary", "linear") and not self.shifts_in_steps:
            raise ValueError(
                f"deployment.traffic: {traffic} needs at least {MIN_INSTANCES_FOR_STEPS} instances "
                f"(the fewest it runs is {self.fewest_instances}); SageMaker shifts at most 50% of the "
                "variant's instances per step. Use all_at_once, or more instances"
            )
        return self

    @property
    def capture(self) -> DataCapture | None:
        """The data capture the endpoint gets: on (20%) where approval is true, unless turned off."""
        if self.data_capture is None:
            return DataCapture() if self.approval and self.serverless is None and self.asynchronous is None else None
        return self.data_capture if self.data_capture.enabled else None

    @model_validator(mode="after")
    def _no_capture_when_serverless(self) -> Environment:
        # Serverless Inference's feature exclusions list data capture (SageMaker Developer Guide,
        # "Deploy models with Amazon SageMaker Serverless Inference").
        if self.serverless is not None and self.data_capture is not None and self.data_capture.enabled:
            raise ValueError(
                "data_capture: a serverless environment cannot capture data (SageMaker does not support it); "
                "remove data_capture or use instance_type"
            )
        return self

    @model_validator(mode="after")
    def _monitoring_needs_capture(self) -> Environment:
        # A schedule reads the endpoint's captured data: without capture it has nothing to check.
        if self.monitoring is not None and self.capture is None:
            why = "a serverless environment cannot capture data" if self.serverless else "it captures no data"
            raise ValueError(
                f"monitoring: the schedule checks the endpoint's captured data and {why}; "
                "turn data_capture on (instance-based environments only) or remove monitoring"
            )
        return self


def _default_environments() -> list[Environment]:
    return [Environment(name="qa"), Environment(name="prod", approval=True)]


def _list_form(old: dict) -> str:
    """The list a config written for the old `environments: {qa: {...}, prod: {...}}` needs now."""
    entries = []
    # The old pipeline always ran qa, then prod, whatever order the file listed them in.
    for name, settings in sorted(
        old.items(), key=lambda item: ["qa", "prod"].index(item[0]) if item[0] in ("qa", "prod") else 2
    ):
        given = settings if isinstance(settings, dict) else {}
        fields = {"name": name, **({"approval": "true"} if name == "prod" else {}), **given}
        entries.append("{" + ", ".join(f"{key}: {value}" for key, value in fields.items()) + "}")
    return "[" + ", ".join(entries) + "]"


def _email(value: str) -> str:
    if len(value) > EMAIL_MAX or not _EMAIL.fullmatch(value):
        raise ValueError(f"'{_clip(value)}' is not an email address")
    return value


Email = Annotated[str, AfterValidator(_email)]


class Approval(_Strict):
    """Who is told that a model waits for approval."""

    emails: list[Email] = Field(
        default_factory=_empty_list, description="Subscribed to the approval topic (each confirms once)"
    )

    @field_validator("emails")
    @classmethod
    def _emails(cls, value: list[str]) -> list[str]:
        seen: set[str] = set()
        for email in value:
            if email.lower() in seen:
                raise ValueError(f"lists '{_clip(email)}' more than once")
            seen.add(email.lower())
        return value


# What SNS accepts as a subscription's endpoint, by protocol (SNS Subscribe API: "Endpoint").
# firehose is left out: it needs a subscription role this config has no place for.
_SNS_ARN = r"arn:aws[a-z-]*:{service}:[a-z0-9-]+:\d{{12}}:{resource}"
_SUBSCRIBER_ENDPOINTS: dict[str, tuple[re.Pattern, str]] = {
    "email": (_EMAIL, "an email address"),
    "email-json": (_EMAIL, "an email address"),
    "http": (re.compile(r"http://[^\s/?#]+[^\s]*", re.ASCII), "a URL starting with http://"),
    "https": (re.compile(r"https://[^\s/?#]+[^\s]*", re.ASCII), "a URL starting with https://"),
    "sqs": (
        re.compile(_SNS_ARN.format(service="sqs", resource=r"[A-Za-z0-9_-]{1,80}(\.fifo)?"), re.ASCII),
        "an SQS queue ARN (arn:aws:sqs:REGION:ACCOUNT:QUEUE)",
    ),
    "lambda": (
        re.compile(
            _SNS_ARN.format(service="lambda", resource=r"function:[A-Za-z0-9_-]{1,64}(:[A-Za-z0-9$_-]+)?"), re.ASCII
        ),
        "a Lambda function ARN (arn:aws:lambda:REGION:ACCOUNT:function:NAME)",
    ),
    "sms": (re.compile(r"\+[1-9][0-9]{1,14}", re.ASCII), "a phone number in E.164 form (+ country code and number)"),
    "application": (
        re.compile(_SNS_ARN.format(service="sns", resource=r"endpoint/[A-Za-z0-9_./-]+"), re.ASCII),
        "an SNS platform endpoint ARN (arn:aws:sns:REGION:ACCOUNT:endpoint/...)",
    ),
}
SubscriberProtocol = Literal["email", "email-json", "http", "https", "sqs", "lambda", "sms", "application"]
SUBSCRIBERS_MAX = 20


class Subscriber(_Strict):
    """One subscription to the notification topic: an SNS protocol and its endpoint."""

    protocol: SubscriberProtocol = Field(description="SNS protocol: " + ", ".join(_SUBSCRIBER_ENDPOINTS))
    endpoint: str = Field(max_length=2048, description="The address, URL, phone number or ARN the protocol takes")

    @field_validator("endpoint")
    @classmethod
    def _fits_the_protocol(cls, value: str, info: ValidationInfo) -> str:
        protocol = info.data.get("protocol")
        if protocol in _SUBSCRIBER_ENDPOINTS:
            pattern, what = _SUBSCRIBER_ENDPOINTS[protocol]
            if not pattern.fullmatch(value) or (protocol.startswith("email") and len(value) > EMAIL_MAX):
                raise ValueError(f"'{_clip(value)}' is not {what}, as protocol {protocol} needs")
        return value


class Notifications(_Strict):
    """Who hears of pipeline runs (started, succeeded, failed), failed actions and waiting approvals."""

    subscribers: list[Subscriber] = Field(
        default_factory=_empty_list,
        max_length=SUBSCRIBERS_MAX,
        description="Subscribed to the notification topic (e-mail and HTTP endpoints confirm once)",
    )

    @field_validator("subscribers")
    @classmethod
    def _each_once(cls, value: list[Subscriber]) -> list[Subscriber]:
        seen: set[tuple[str, str]] = set()
        for subscriber in value:
            key = (subscriber.protocol, subscriber.endpoint.lower())
            if key in seen:
                raise ValueError(f"lists {subscriber.protocol} '{_clip(subscriber.endpoint)}' more than once")
            seen.add(key)
        return value


class EndpointTests(_Strict):
    """What the endpoint test sends and how fast it must answer."""

    payloads_dir: RepoPath = Field(default="model/endpoint-tests", description="Folder of *.json test cases")
    latency_budget_ms: int = Field(default=1000, ge=1, le=60000, description="Each invocation must answer within this")


def _tag_key(key: str) -> str:
    reason = tag_key_problem(key)
    if reason:
        raise ValueError(reason)
    return key


def _tag_value(value: str) -> str:
    reason = tag_value_problem(value)
    if reason:
        raise ValueError(reason)
    return value


TagKey = Annotated[str, AfterValidator(_tag_key)]
TagValue = Annotated[str, AfterValidator(_tag_value)]


class PipelineConfig(_Strict):
    """The whole pipeline, as `pipeline.yml` describes it."""

    # A branch pipeline's config keeps the main project's name here: its model bucket folder of
    # training data is the main pipeline's (pipeline.branches.branch_config sets it).
    _data_project: str | None = PrivateAttr(default=None)
    # Own container only: (repository URI, commit) of its built images, set at run time (with_built_image).
    _built_image: tuple[str, str] | None = PrivateAttr(default=None)

    project: str = Field(
        pattern=r"^[a-z][a-z0-9-]*[a-z0-9]$",
        description="Lowercase letters, digits and hyphens; prefixes every name the pipeline makes",
    )
    region: str
    source: Source
    model: ModelConfig = Field(default_factory=ModelConfig)
    training_data: TrainingData
    quality_gate: QualityGate
    environments: list[Environment] = Field(
        default_factory=_default_environments,
        min_length=1,
        max_length=MAX_ENVIRONMENTS,
        description="Where the model goes, in order: each deploys its own endpoint and tests it",
    )
    approval: Approval = Field(default_factory=Approval)
    notifications: Notifications = Field(default_factory=Notifications)
    endpoint_tests: EndpointTests = Field(default_factory=EndpointTests)
    batch_transform: BatchTransform | None = Field(
        default=None, description="A batch transform of offline data after an environment's endpoint tests"
    )
    triggers: Triggers = Field(default_factory=Triggers)
    self_update: bool = Field(
        default=True,
        description="An UpdatePipeline stage after Source updates the pipeline's own stack from the commit "
        "(it refuses IAM, key, bucket, connection and approval changes: those need make deploy)",
    )
    tags: dict[TagKey, TagValue] = Field(
        default_factory=_empty_dict,
        description=f"Tags on every resource that takes them (at most {MAX_CONFIG_TAGS}: the project adds its own)",
        json_schema_extra={"maxProperties": MAX_CONFIG_TAGS},
    )

    @field_validator("project")
    @classmethod
    def _project_fits_every_name(cls, value: str) -> str:
        if "--" in value:
            raise ValueError(f"'{value}' has a double hyphen, which SageMaker names do not allow")
        reason = problem(Names(value))
        if reason:
            raise ValueError(reason)
        return value

    @field_validator("region")
    @classmethod
    def _commercial_region(cls, value: str) -> str:
        if value not in all_regions():
            raise ValueError(
                f"'{value}' is not a commercial AWS region with SageMaker framework images "
                f"(e.g. us-east-1, eu-west-1, ap-southeast-2)"
            )
        return value

    @field_validator("environments", mode="before")
    @classmethod
    def _environments_are_a_list(cls, value: object) -> object:
        if isinstance(value, dict):
            raise ValueError(
                "is an ordered list now, each entry with a name (and approval: true where a manual approval "
                f"comes first); write  environments: {_list_form(value)}"
            )
        return value

    @field_validator("environments")
    @classmethod
    def _unique_environment_names(cls, value: list[Environment]) -> list[Environment]:
        names = [env.name for env in value]
        twice = sorted({name for name in names if names.count(name) > 1})
        if twice:
            raise ValueError(f"'{', '.join(twice)}' named more than once; each environment needs its own name")
        return value

    @field_validator("tags")
    @classmethod
    def _room_for_the_projects_tags(cls, value: dict) -> dict:
        if len(value) > MAX_CONFIG_TAGS:
            raise ValueError(
                f"{len(value)} tags; AWS allows 50 per resource and the project adds up to "
                f"{50 - MAX_CONFIG_TAGS} of its own: use at most {MAX_CONFIG_TAGS}"
            )
        return value

    @model_validator(mode="after")
    def _fits_together(self) -> PipelineConfig:
        # Checks across sections; each message starts with the path it is about.
        if self.model.own_container:
            written = [name for name in SCRIPT_MODE_FIELDS if name in self.model.model_fields_set]
            if written:
                raise ValueError(
                    f"model.container: your own image replaces script mode; remove model.{', model.'.join(written)} "
                    "(the image holds the code)"
                )
        else:
            self._framework_fits()
        return self._sections_fit()

    def _framework_fits(self) -> None:
        """The framework's images exist in the region and for every instance's processor."""
        framework = self.framework
        version = self.image_version
        published = framework.regions(version)
        if self.region not in published:
            raise ValueError(
                f"region: '{self.region}' has no SageMaker {framework.title} {version} images "
                f"(published in: {', '.join(published)})"
            )
        training_type = self.model.training.instance_type
        if not framework.trains_on(version, processor(training_type)):
            raise ValueError(
                f"model.training.instance_type: {training_type} runs {processor(training_type)} images and "
                f"{framework.title} {version} trains on {' or '.join(framework.processors(version, 'training'))} "
                "only; choose an instance type of that kind"
            )
        for index, env in enumerate(self.environments):
            if not framework.serves_on(version, env.processor):
                where = "serverless" if env.serverless is not None else "instance_type"
                kinds = " or ".join(framework.processors(version, "inference"))
                why = " (Serverless Inference runs on CPUs only)" if env.serverless is not None else ""
                raise ValueError(
                    f"environments[{index}].{where}: {env.name} would run {env.processor} images{why} and "
                    f"{framework.title} {version} serves on {kinds} only; choose an instance type of that kind"
                )

    def _sections_fit(self) -> PipelineConfig:
        for index, env in enumerate(self.environments):
            if env.region is not None and env.region != self.region:
                raise ValueError(
                    f"environments[{index}].region: deploying to another region than the pipeline's "
                    f"({self.region}) is not supported yet; omit region"
                )
        for index, env in enumerate(self.environments):
            if env.monitoring is not None and self.region not in monitoring.registry_accounts():
                raise ValueError(
                    f"environments[{index}].monitoring: no Model Monitor analyzer image is known in {self.region} "
                    f"(pipeline/data/images/model-monitor.json); remove monitoring or choose another region"
                )
        # One baseline per training job: every schedule reads the training data the same way.
        described = [
            (index, (env.monitoring.header, env.monitoring.label_position))
            for index, env in enumerate(self.environments)
            if env.monitoring is not None
        ]
        for index, reading in described[1:]:
            if reading != described[0][1]:
                raise ValueError(
                    f"environments[{index}].monitoring: header and label_position describe the training data, "
                    f"which has one baseline; write the same as environments[{described[0][0]}].monitoring"
                )
        algorithm = self.model.algorithm
        if algorithm is not None:
            problem_line = _builtin_gate_problem(self.quality_gate, ALGORITHMS[algorithm.name], algorithm.content_types)
            if problem_line:
                raise ValueError(problem_line)
            not_csv = sorted(name for name, kind in algorithm.content_types.items() if kind != "text/csv")
            for index, env in enumerate(self.environments):
                if env.monitoring is not None and not_csv:
                    raise ValueError(
                        f"environments[{index}].monitoring: the data-quality baseline reads the training data as "
                        f"CSV, and the channel(s) {', '.join(not_csv)} are not text/csv; remove monitoring"
                    )
        batch = self.batch_transform
        if batch is not None and batch.after not in self.environment_names:
            raise ValueError(
                f"batch_transform.after: '{batch.after}' is not one of the environments "
                f"({', '.join(self.environment_names)})"
            )
        champion = self.quality_gate.champion
        if champion is not None and champion.against is not None and champion.against not in self.environment_names:
            raise ValueError(
                f"quality_gate.champion.against: '{champion.against}' is not one of the environments "
                f"({', '.join(self.environment_names)})"
            )
        if self.triggers.new_data and not self.training_data.in_s3:
            raise ValueError(
                "triggers.new_data: the training data is a repo folder (training_data.local_dir), so new data "
                "arrives with a commit; new_data needs training_data.s3_uri or model_bucket_prefix"
            )
        prefix = self.training_data.model_bucket_prefix
        if prefix is not None:
            uri = f"s3://{'b' * S3_BUCKET_MAX}/{self.project}/{prefix}"
            if len(uri) > S3_URI_MAX:
                raise ValueError(
                    f"training_data.model_bucket_prefix: s3://MODEL-BUCKET/{self.project}/PREFIX can be "
                    f"{len(uri):,} characters, over SageMaker's {S3_URI_MAX:,} for an S3 URI"
                )
        return self

    @property
    def branch_patterns(self) -> list[str]:
        """The branches whose pushes run the pipeline."""
        return self.triggers.branches or [self.source.github.branch]

    @property
    def training_data_key_prefix(self) -> str | None:
        """The model bucket's key prefix holding the training data (PROJECT/model_bucket_prefix, the
        main project's for a branch pipeline), or None when the data is elsewhere."""
        prefix = self.training_data.model_bucket_prefix
        return None if prefix is None else f"{self._data_project or self.project}/{prefix}"

    @property
    def retrains_on_new_data(self) -> bool:
        """Whether an object landing under the training data's S3 prefix starts the pipeline."""
        return self.training_data.in_s3 and self.triggers.new_data is not False

    @property
    def names(self) -> Names:
        """Physical names derived from the project name."""
        return Names(self.project)

    @property
    def framework(self) -> Framework:
        """The model's framework, or its built-in algorithm (an Algorithm answers the same questions
        about images, hyperparameters and the serving environment)."""
        algorithm = self.model.algorithm
        return ALGORITHMS[algorithm.name] if algorithm is not None else FRAMEWORKS[self.model.framework]

    @property
    def builtin(self) -> bool:
        """Whether the model is a built-in algorithm (no source code of ours to package or serve)."""
        return self.model.algorithm is not None

    @property
    def script_mode(self) -> bool:
        """Whether a framework's image runs our code from source_dir (not a built-in algorithm, not an
        own container): the code is packaged, uploaded and named by SourceDir."""
        return not self.builtin and not self.model.own_container

    @property
    def image_version(self) -> str:
        """The version of the images: the framework's, or the built-in algorithm's."""
        algorithm = self.model.algorithm
        return algorithm.version if algorithm is not None else self.model.framework_version

    def with_built_image(self, repository_uri: str, commit: str) -> PipelineConfig:
        """This config with its own container's images located: built from `commit` and pushed to
        `repository_uri` (the BuildImage stage's; both known only at run time)."""
        located = self.model_copy()
        located._built_image = (repository_uri, commit)
        return located

    def _own_image(self, scope: str) -> str:
        container = self.model.container
        assert container is not None
        if self._built_image is None:
            raise LookupError("model.container: the image is known only at run time (repository and commit)")
        repository_uri, commit = self._built_image
        return f"{repository_uri}:{container.image_tag(commit, scope)}"

    @property
    def training_image(self) -> str:
        """The image the model trains in: the framework's, for the training instance's processor (or
        its own container's, once located: with_built_image)."""
        if self.model.own_container:
            return self._own_image("training")
        processor_kind = processor(self.model.training.instance_type)
        return self.framework.image_uri(self.region, self.image_version, "training", processor_kind)

    def serving_image(self, env: Environment) -> str:
        """The image an environment serves the model with: the framework's, for its processor (or its
        own container's serving image, once located)."""
        if self.model.own_container:
            return self._own_image("inference")
        return self.framework.image_uri(self.region, self.image_version, "inference", env.processor)

    @property
    def image_repositories(self) -> list[str]:
        """The framework's ECR repositories of the images the model trains and serves in (for the pull
        grants); none for its own container, whose repository the pipeline stack makes."""
        if self.model.own_container:
            return []
        return self.framework.repositories(self.image_version)

    @property
    def environment_names(self) -> list[str]:
        """The environments' names, in pipeline order."""
        return [env.name for env in self.environments]

    @property
    def champion_environment(self) -> str | None:
        """The environment whose serving model the new one is held to, or None without a champion gate."""
        champion = self.quality_gate.champion
        if champion is None:
            return None
        return champion.against or self.environment_names[-1]

    @property
    def asynchronous_environments(self) -> list[Environment]:
        """The environments served by Asynchronous Inference, in pipeline order."""
        return [env for env in self.environments if env.asynchronous is not None]

    @property
    def notifies_async(self) -> bool:
        """Whether some asynchronous environment publishes its results to the project's topic."""
        return any(env.asynchronous.notifications for env in self.asynchronous_environments if env.asynchronous)

    @property
    def monitors(self) -> bool:
        """Whether some environment has a monitoring schedule (then Train computes its baseline)."""
        return any(env.monitoring is not None for env in self.environments)

    def environment(self, name: str) -> Environment:
        """The environment called `name`; KeyError says which there are."""
        for env in self.environments:
            if env.name == name:
                return env
        raise KeyError(f"no environment '{name}' (there are: {', '.join(e.name for e in self.environments)})")


def _location(loc: tuple) -> str:
    """A dotted path with list indexes in brackets: environments[1].instance_type."""
    parts = [p for p in loc if not str(p).startswith(("function-after", "function-before", "function-plain"))]
    path = ""
    for index, part in enumerate(parts):
        if part == "[key]":
            continue
        # A number followed by [key] is a mapping key written as a number, not a list index.
        is_key = parts[index + 1 : index + 2] == ["[key]"]
        shown = _clip(str(part)) if part != "" else "''"
        path += f"[{part}]" if isinstance(part, int) and not is_key else (f".{shown}" if path else shown)
    return path


# What a type error says was expected, by pydantic's error type.
_EXPECTED = {
    "int_type": "a whole number",
    "float_type": "a number",
    "bool_type": "true or false",
    "string_type": "text",
    "list_type": "a list",
    "dict_type": "a mapping (key: value)",
    "model_type": "a mapping of settings (key: value)",
    "model_attributes_type": "a mapping of settings (key: value)",
}


def _message(error: Mapping[str, Any]) -> str:
    kind, given, ctx = error["type"], error.get("input"), error.get("ctx") or {}
    if kind == "missing":
        return "is required"
    if kind == "extra_forbidden":
        return "is not a known setting (check the spelling)"
    if kind == "string_pattern_mismatch":
        field = error.get("loc", ("",))[-1]
        hint = {
            "project": "use lowercase letters, digits and hyphens, starting with a letter",
            "instance_type": "expected an ML instance type such as ml.m5.large",
        }.get(str(field), f"must match {ctx.get('pattern')}")
        return f"'{_clip(str(given))}' is not allowed: {hint}"
    if kind in _EXPECTED:
        what = "the key must be" if error.get("loc", ())[-1:] == ("[key]",) else "expected"
        quote = (
            f" (quote it: '{_shown(given).removeprefix('the number ')}')"
            if kind == "string_type" and isinstance(given, (bool, int, float))
            else ""
        )
        return f"{what} {_EXPECTED[kind]}, got {_shown(given)}{quote}"
    if kind == "finite_number":
        return f"expected a finite number, got {_shown(given)}"
    if kind == "literal_error":
        return f"expected {ctx.get('expected')}, got {_shown(given)}"
    limits = {
        "greater_than_equal": "at least",
        "less_than_equal": "at most",
        "greater_than": "over",
        "less_than": "under",
    }
    if kind in limits:
        bound = next(iter(ctx.values()), "")
        return f"must be {limits[kind]} {bound}, got {_shown(given).removeprefix('the number ')}"
    if kind == "invalid_key":
        return "keys must be text"
    msg = str(error["msg"])
    for prefix in ("Value error, ", "Assertion failed, "):
        msg = msg.removeprefix(prefix)
    return msg


_FIELD_FIRST = re.compile(r"([a-z_]+(?:\[\d+\])?(?:\.[a-z_]+)*): ")


@cache
def _field_names() -> frozenset[str]:
    """Every setting name of every section: what a section's own check may name first."""
    return frozenset(name for model in _Strict.__subclasses__() for name in model.model_fields)


def _where_and_what(error: Mapping[str, Any]) -> str:
    """`path: message`; a section's own check that names its field first (environments[0] +
    "serverless: ...") reads as one path: environments[0].serverless: ..."""
    where, what = _location(error["loc"]), _message(error)
    field_first = _FIELD_FIRST.match(what) if isinstance(error.get("input"), Mapping) else None
    if where and field_first and field_first.group(1).split(".")[0].split("[")[0] in _field_names():
        return f"{where}.{what}"
    return f"{where}: {what}" if where else what


def _one_line(text: str) -> str:
    """The line with every hidden character written as an escape, so it prints as one line."""
    if all(unicodedata.category(char) not in _HIDDEN for char in text):
        return text
    return "".join(
        (f"\\x{ord(c):02x}" if ord(c) < 0x100 else f"\\u{ord(c):04x}") if unicodedata.category(c) in _HIDDEN else c
        for c in text
    )


def _hidden_characters(data: object) -> Iterator[tuple[tuple, str]]:
    """(path, message) for each key or text value holding a character no value may hold."""
    stack: list[tuple[tuple, object]] = [((), data)]
    while stack:
        path, value = stack.pop()
        if isinstance(value, dict):
            for key, item in reversed(list(value.items())):
                if isinstance(key, str):
                    bad = next((c for c in key if unicodedata.category(c) in _HIDDEN), None)
                    if bad is not None:
                        yield (*path, key), f"the key holds the invisible or control character U+{ord(bad):04X}"
                        continue
                stack.append(((*path, key), item))
        elif isinstance(value, list):
            stack.extend(((*path, index), item) for index, item in reversed(list(enumerate(value))))
        elif isinstance(value, str):
            bad = next((c for c in value if unicodedata.category(c) in _HIDDEN), None)
            if bad is not None:
                yield (
                    path,
                    f"holds the invisible or control character U+{ord(bad):04X}; values are one line of plain text",
                )


def _builtin_gate_problem(gate: QualityGate, algorithm: Algorithm, channels: dict[str, str]) -> str | None:
    """Why the quality gate cannot read a built-in algorithm's metric, or None: the metric must be one the
    algorithm logs (no MetricDefinitions: the regex would not apply) on a channel the job gets."""
    if gate.regex is not None:
        return (
            f"quality_gate.regex: {algorithm.title} reports its own metrics (the job has no metric definitions); "
            "remove regex"
        )
    if gate.metric not in algorithm.metrics:
        return (
            f"quality_gate.metric: '{_clip(gate.metric)}' is not a metric {algorithm.title} reports "
            f"(one of: {', '.join(algorithm.metrics)}; {algorithm.metrics_source})"
        )
    channel = gate.metric.split(":", 1)[0]
    if channel not in channels:
        return (
            f"quality_gate.metric: {gate.metric} is computed on the {channel} channel, which "
            f"model.algorithm.channels does not give the job ({', '.join(channels)})"
        )
    return None


def _is_dir(path: Path) -> bool:
    """Path.is_dir, but a name the file system refuses (too long, say) is no folder, not an OSError."""
    try:
        return path.is_dir()
    except OSError:
        return False


def _is_file(path: Path) -> bool:
    """Path.is_file, with the same leniency as _is_dir."""
    try:
        return path.is_file()
    except OSError:
        return False


def _check_paths(config: PipelineConfig, root: Path, check_payloads: bool) -> list[str]:
    """Folders and files the config names must exist in the repo (and, if asked, every payload
    file must be a valid endpoint-test case)."""
    found = []
    source = root / config.model.source_dir
    container = config.model.container
    if container is not None:
        if not _is_dir(root / container.context):
            found.append(f"model.container.context: folder '{container.context}' does not exist")
        for field in ("dockerfile", "serving_dockerfile"):
            name = getattr(container, field)
            if name is not None and not _is_file(root / name):
                found.append(f"model.container.{field}: '{name}' is not a file")
    elif config.builtin:
        pass  # a built-in algorithm has no code of ours
    elif not _is_dir(source):
        found.append(f"model.source_dir: folder '{config.model.source_dir}' does not exist")
    else:
        for field in ("entry_point", "inference_entry_point"):
            name = getattr(config.model, field)
            if not _is_file(source / name):
                found.append(f"model.{field}: '{name}' is not a file in {config.model.source_dir}/")
    if config.training_data.local_dir is not None:
        data = root / config.training_data.local_dir
        if not _is_dir(data) or not any(p.is_file() for p in data.rglob("*")):
            found.append(f"training_data.local_dir: folder '{config.training_data.local_dir}' is missing or empty")
    seed = config.training_data.seed_dir
    if seed is not None and (not _is_dir(root / seed) or not any(p.is_file() for p in (root / seed).rglob("*"))):
        found.append(f"training_data.seed_dir: folder '{seed}' is missing or empty")
    payloads = root / config.endpoint_tests.payloads_dir
    if not _is_dir(payloads) or not list(payloads.glob("*.json")):
        found.append(
            f"endpoint_tests.payloads_dir: folder '{config.endpoint_tests.payloads_dir}' has no *.json test cases"
        )
    elif check_payloads:
        shown = config.endpoint_tests.payloads_dir
        found += [f"endpoint_tests.payloads_dir: {p}" for p in folder_problems(payloads, shown)]
        if config.builtin and not found:
            found += [f"endpoint_tests.payloads_dir: {p}" for p in _serving_type_problems(config, payloads, shown)]
    return found


def _serving_type_problems(config: PipelineConfig, payloads: Path, shown: str) -> list[str]:
    """One line per test case whose content type the built-in algorithm's serving image does not take."""
    accepted = ALGORITHMS[config.model.algorithm.name].serving_content_types if config.model.algorithm else ()
    problems = []
    for path in case_files(payloads):
        case = read_case(path)
        if case.content_type.split(";")[0].strip().lower() not in accepted:
            problems.append(
                f"{shown.rstrip('/')}/{path.name}: content_type '{case.content_type}' is not one "
                f"{config.framework.title} serves (one of: {', '.join(accepted)})"
            )
    return problems


def parse_config(
    data: object, *, source_name: str = "pipeline.yml", root: Path | None = None, check_payloads: bool = False
) -> PipelineConfig:
    """Validate already-parsed YAML; `root` is the repo folder relative paths are checked against;
    `check_payloads` also reads every endpoint-test payload file (synth does: the endpoint test
    reads them itself)."""
    if data is None:
        raise ConfigError(
            [f"{source_name}: is empty; it needs at least project, region, source, training_data and quality_gate"]
        )
    if not isinstance(data, dict):
        raise ConfigError([f"{source_name}: expected a mapping of settings at the top level, got {_shown(data)}"])
    hidden = list(_hidden_characters(data))
    if hidden:
        raise ConfigError([_one_line(f"{source_name}: {_location(path)}: {message}") for path, message in hidden])
    try:
        config = PipelineConfig.model_validate(data)
    except ValidationError as exc:
        # An error about the config as a whole has no location: its message starts with the path.
        raise ConfigError([_one_line(f"{source_name}: {_where_and_what(e)}") for e in exc.errors()]) from None
    if root is not None:
        path_problems = _check_paths(config, root, check_payloads)
        if path_problems:
            raise ConfigError([_one_line(f"{source_name}: {p}") for p in path_problems])
    return config


def read_config_bytes(path: Path, name: str) -> bytes:
    """The file's bytes; ConfigError in one line when it is missing, not a file, unreadable or too big."""
    try:
        info = path.stat()
        if stat.S_ISDIR(info.st_mode):
            raise ConfigError([f"{name}: is a folder, not a config file"])
        if not stat.S_ISREG(info.st_mode):
            raise ConfigError([f"{name}: is not a regular file"])
        if info.st_size > strict_yaml.MAX_BYTES:
            raise ConfigError(
                [
                    f"{name}: is {info.st_size:,} bytes, over {strict_yaml.MAX_BYTES:,}; a pipeline config is a few kilobytes"
                ]
            )
        with path.open("rb") as handle:
            return handle.read(strict_yaml.MAX_BYTES + 1)
    except FileNotFoundError:
        raise ConfigError([f"{name}: file not found"]) from None
    except OSError as exc:
        raise ConfigError([f"{name}: cannot read ({exc.strerror or exc})"]) from None


def load_config(
    path: str | Path = "pipeline.yml", root: str | Path | None = None, *, check_payloads: bool = False
) -> PipelineConfig:
    """Read and validate the config file; raises `ConfigError` with one line per problem.

    Any bytes give either a config or ConfigError (pipeline.strict_yaml says what the YAML
    reader refuses). Folders it names are checked relative to `root` (default: the config
    file's folder); `check_payloads` as for parse_config.
    """
    path = Path(path)
    name = _one_line(path.name if path.parent == Path(".") else str(path))
    data = read_config_bytes(path, name)
    try:
        document = strict_yaml.parse(data)
    except strict_yaml.YamlRefused as exc:
        raise ConfigError(
            [
                _one_line(f"{name}: {_location(where) + ': ' if where else ''}{message}")
                for where, message in exc.problems
            ]
        ) from None
    return parse_config(
        document, source_name=name, root=Path(root) if root else path.resolve().parent, check_payloads=check_payloads
    )
