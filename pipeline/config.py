"""The pipeline's one config file (`pipeline.yml`), read once into typed, validated objects.

`load_config(path)` returns a `PipelineConfig` or raises `ConfigError` carrying one line per
problem ("pipeline.yml: model.training.instance_type: ..."). Nothing here calls AWS.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from pipeline.frameworks import FRAMEWORKS, RESERVED_HYPERPARAMETER_PREFIX, Framework, all_regions
from pipeline.names import ENVIRONMENT_NAME_MAX, Names, problem

# CodeBuild's TimeoutInMinutes tops out at 2160 (36 h); the train action waits for the job.
CODEBUILD_MAX_TIMEOUT_MINUTES = 2160
# Time the train action needs besides the job itself: packaging, upload, instance start-up.
TRAIN_OVERHEAD_MINUTES = 30

_INSTANCE_TYPE = r"^ml\.[a-z0-9]+\.[a-z0-9]+$"
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_CONNECTION_ARN = re.compile(
    r"^arn:aws[a-z-]*:(codestar-connections|codeconnections):[a-z0-9-]+:\d{12}:connection/[0-9a-f-]{36}$"
)
_S3_URI = re.compile(r"^s3://([a-z0-9][a-z0-9.-]{1,61}[a-z0-9])(/.*)?$")
_GIT_REF_BAD = re.compile(r"(\.\.|[\s~^:?*\[\\]|@\{|^/|/$|\.lock$|^$)")


class ConfigError(Exception):
    """A config that cannot be used; `problems` holds one readable line per problem."""

    def __init__(self, problems: list[str]):
        super().__init__("\n".join(problems))
        self.problems = problems


class _Strict(BaseModel):
    # Unknown keys are typos until proven otherwise.
    model_config = ConfigDict(extra="forbid", frozen=True)


InstanceType = Annotated[
    str, Field(pattern=_INSTANCE_TYPE, description="A SageMaker ML instance type, e.g. ml.m5.large")
]


class GitHubSource(_Strict):
    """The GitHub repository and branch whose commits drive the pipeline."""

    owner: str = Field(pattern=r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})$", description="GitHub user or organisation")
    repo: str = Field(pattern=r"^[A-Za-z0-9._-]{1,100}$", description="Repository name")
    branch: str = Field(default="main", description="Branch whose commits run the pipeline")
    connection_arn: str | None = Field(
        default=None,
        description="An existing CodeStar/CodeConnections connection ARN; omit to have the stack create one",
    )

    @field_validator("branch")
    @classmethod
    def _branch_is_a_git_ref(cls, value: str) -> str:
        if _GIT_REF_BAD.search(value):
            raise ValueError(f"'{value}' is not a valid git branch name")
        return value

    @field_validator("connection_arn")
    @classmethod
    def _connection_arn_shape(cls, value: str | None) -> str | None:
        if value is not None and not _CONNECTION_ARN.match(value):
            raise ValueError(
                f"'{value}' is not a CodeStar/CodeConnections connection ARN "
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


HyperValue = StrictBool | int | float | str


class ModelConfig(_Strict):
    """The model's code and how SageMaker trains it (script mode)."""

    framework: str = Field(default="sklearn", description=f"One of: {', '.join(FRAMEWORKS)}")
    framework_version: str = "1.2-1"
    source_dir: str = Field(default="model", description="Folder (in the repo) packaged as the script-mode source")
    entry_point: str = Field(default="train.py", description="Training script, inside source_dir")
    inference_entry_point: str = Field(default="inference.py", description="Inference handlers, inside source_dir")
    hyperparameters: dict[str, HyperValue] = Field(default_factory=dict)
    training: Training = Field(default_factory=Training)

    @field_validator("framework")
    @classmethod
    def _known_framework(cls, value: str) -> str:
        if value not in FRAMEWORKS:
            raise ValueError(f"'{value}' is not a framework this pipeline delivers (one of: {', '.join(FRAMEWORKS)})")
        return value

    @field_validator("framework_version")
    @classmethod
    def _known_version(cls, value: str, info: ValidationInfo) -> str:
        framework = FRAMEWORKS.get(info.data.get("framework", ""))
        if framework is None:  # reported under model.framework
            return value
        known = framework.versions()
        if value not in known:
            raise ValueError(
                f"'{value}' is not a published {framework.title} image version (one of: {', '.join(known)})"
            )
        return value

    @field_validator("hyperparameters")
    @classmethod
    def _hyperparameter_names(cls, value: dict) -> dict:
        for key in value:
            if key.startswith(RESERVED_HYPERPARAMETER_PREFIX):
                raise ValueError(
                    f"'{key}': names starting with {RESERVED_HYPERPARAMETER_PREFIX} are reserved for the container"
                )
        return value


class TrainingData(_Strict):
    """The training data: an S3 location, or a repo folder the train step uploads per commit."""

    s3_uri: str | None = Field(default=None, description="s3://bucket/prefix/ holding the training channel")
    local_dir: str | None = Field(default=None, description="Repo folder uploaded to the model bucket, keyed by commit")

    @field_validator("s3_uri")
    @classmethod
    def _s3_uri_shape(cls, value: str | None) -> str | None:
        if value is not None and not _S3_URI.match(value):
            raise ValueError(f"'{value}' is not an s3://bucket/prefix URI")
        return value

    @model_validator(mode="after")
    def _exactly_one(self) -> TrainingData:
        if (self.s3_uri is None) == (self.local_dir is None):
            raise ValueError("set exactly one of s3_uri or local_dir")
        return self

    def _s3_parts(self) -> tuple[str, str] | None:
        match = _S3_URI.match(self.s3_uri) if self.s3_uri else None
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


class QualityGate(_Strict):
    """The metric the trained model must reach before it is deployed anywhere."""

    metric: str = Field(pattern=r"^[A-Za-z0-9_.:/-]{1,255}$", description="Metric name the training script logs")
    threshold: float
    direction: Literal["maximize", "minimize"]
    regex: str | None = Field(
        default=None, description="Regex with one group capturing the value in the job's logs; default 'METRIC=(value)'"
    )

    @field_validator("regex")
    @classmethod
    def _one_group(cls, value: str | None) -> str | None:
        if value is None:
            return value
        try:
            groups = re.compile(value).groups
        except re.error as exc:
            raise ValueError(f"not a valid regular expression ({exc})") from None
        if groups != 1:
            raise ValueError(f"needs exactly one capture group for the value, has {groups}")
        return value

    @property
    def metric_regex(self) -> str:
        """The regex SageMaker uses to read the metric from the training logs."""
        return self.regex or re.escape(self.metric) + r"=([-+]?[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)"

    def passes(self, value: float) -> bool:
        """Whether a metric value clears the gate."""
        return value >= self.threshold if self.direction == "maximize" else value <= self.threshold


# Each environment takes at most two of CodePipeline's 50 stages (an approval, then its deploy and
# test), besides Source and Build.
MAX_ENVIRONMENTS = 24


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


def _default_environments() -> list[Environment]:
    return [Environment(name="qa"), Environment(name="prod", approval=True)]


def _list_form(old: dict) -> str:
    """The list a config written for the old `environments: {qa: {...}, prod: {...}}` needs now."""
    entries = []
    # The old pipeline always ran qa, then prod, whatever order the file listed them in.
    for name, settings in sorted(
        old.items(), key=lambda item: ["qa", "prod"].index(item[0]) if item[0] in ("qa", "prod") else 2
    ):
        fields = {"name": name, **({"approval": "true"} if name == "prod" else {}), **(settings or {})}
        entries.append("{" + ", ".join(f"{key}: {value}" for key, value in fields.items()) + "}")
    return "[" + ", ".join(entries) + "]"


class Approval(_Strict):
    """Who is told that a model waits for approval."""

    emails: list[str] = Field(default_factory=list, description="Subscribed to the approval topic (each confirms once)")

    @field_validator("emails")
    @classmethod
    def _emails(cls, value: list[str]) -> list[str]:
        for email in value:
            if not _EMAIL.match(email):
                raise ValueError(f"'{email}' is not an email address")
        if len(set(value)) != len(value):
            raise ValueError("lists an address twice")
        return value


class EndpointTests(_Strict):
    """What the endpoint test sends and how fast it must answer."""

    payloads_dir: str = Field(default="model/endpoint-tests", description="Folder of *.json test cases")
    latency_budget_ms: int = Field(default=1000, ge=1, le=60000, description="Each invocation must answer within this")


class PipelineConfig(_Strict):
    """The whole pipeline, as `pipeline.yml` describes it."""

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
    endpoint_tests: EndpointTests = Field(default_factory=EndpointTests)
    tags: dict[Annotated[str, Field(min_length=1, max_length=128)], Annotated[str, Field(max_length=256)]] = Field(
        default_factory=dict, description="Tags on every resource that takes them"
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
    def _no_aws_tags(cls, value: dict) -> dict:
        for key in value:
            if key.lower().startswith("aws:"):
                raise ValueError(f"'{key}': tag keys starting with aws: are reserved")
        return value

    @model_validator(mode="after")
    def _fits_together(self) -> PipelineConfig:
        # Checks across sections; each message starts with the path it is about.
        framework = self.framework
        if self.region not in framework.regions():
            raise ValueError(f"region: '{self.region}' has no SageMaker {framework.title} images")
        for index, env in enumerate(self.environments):
            if env.region is not None and env.region != self.region:
                raise ValueError(
                    f"environments[{index}].region: deploying to another region than the pipeline's "
                    f"({self.region}) is not supported yet; omit region"
                )
        return self

    @property
    def names(self) -> Names:
        """Physical names derived from the project name."""
        return Names(self.project)

    @property
    def framework(self) -> Framework:
        """The model's framework."""
        return FRAMEWORKS[self.model.framework]

    @property
    def image_uri(self) -> str:
        """The framework image the model trains and serves in, in the pipeline's region."""
        return self.framework.image_uri(self.region, self.model.framework_version)

    @property
    def environment_names(self) -> list[str]:
        """The environments' names, in pipeline order."""
        return [env.name for env in self.environments]

    def environment(self, name: str) -> Environment:
        """The environment called `name`; KeyError says which there are."""
        for env in self.environments:
            if env.name == name:
                return env
        raise KeyError(f"no environment '{name}' (there are: {', '.join(e.name for e in self.environments)})")


def _location(loc: tuple) -> str:
    """A dotted path with list indexes in brackets: environments[1].instance_type."""
    path = ""
    for part in loc:
        if str(part).startswith(("function-after", "function-before")):
            continue
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path


def _message(error: Mapping[str, Any]) -> str:
    kind = error["type"]
    if kind == "missing":
        return "is required"
    if kind == "extra_forbidden":
        return "is not a known setting (check the spelling)"
    if kind == "string_pattern_mismatch":
        field = error.get("loc", ("",))[-1]
        hint = {
            "project": "use lowercase letters, digits and hyphens, starting with a letter",
            "instance_type": "expected an ML instance type such as ml.m5.large",
        }.get(str(field), f"must match {error['ctx']['pattern']}")
        return f"'{error['input']}' is not allowed: {hint}"
    msg = error["msg"]
    for prefix in ("Value error, ", "Assertion failed, "):
        msg = msg.removeprefix(prefix)
    return msg


def _check_paths(config: PipelineConfig, root: Path) -> list[str]:
    """Folders and files the config names must exist in the repo."""
    found = []
    source = root / config.model.source_dir
    if not source.is_dir():
        found.append(f"model.source_dir: folder '{config.model.source_dir}' does not exist")
    else:
        for field in ("entry_point", "inference_entry_point"):
            name = getattr(config.model, field)
            if not (source / name).is_file():
                found.append(f"model.{field}: '{name}' is not a file in {config.model.source_dir}/")
    if config.training_data.local_dir is not None:
        data = root / config.training_data.local_dir
        if not data.is_dir() or not any(p.is_file() for p in data.rglob("*")):
            found.append(f"training_data.local_dir: folder '{config.training_data.local_dir}' is missing or empty")
    payloads = root / config.endpoint_tests.payloads_dir
    if not payloads.is_dir() or not list(payloads.glob("*.json")):
        found.append(
            f"endpoint_tests.payloads_dir: folder '{config.endpoint_tests.payloads_dir}' has no *.json test cases"
        )
    return found


def parse_config(data: object, *, source_name: str = "pipeline.yml", root: Path | None = None) -> PipelineConfig:
    """Validate already-parsed YAML; `root` is the repo folder relative paths are checked against."""
    if not isinstance(data, dict):
        raise ConfigError([f"{source_name}: expected a mapping of settings at the top level"])
    try:
        config = PipelineConfig.model_validate(data)
    except ValidationError as exc:
        # An error about the config as a whole has no location: its message starts with the path.
        raise ConfigError(
            [f"{source_name}: {_location(e['loc']) + ': ' if e['loc'] else ''}{_message(e)}" for e in exc.errors()]
        ) from None
    if root is not None:
        path_problems = _check_paths(config, root)
        if path_problems:
            raise ConfigError([f"{source_name}: {p}" for p in path_problems])
    return config


def load_config(path: str | Path = "pipeline.yml", root: str | Path | None = None) -> PipelineConfig:
    """Read and validate the config file; raises `ConfigError` with one line per problem.

    Folders it names are checked relative to `root` (default: the config file's folder).
    """
    path = Path(path)
    name = path.name if path.parent == Path(".") else str(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError([f"{name}: file not found"]) from None
    except OSError as exc:
        raise ConfigError([f"{name}: cannot read ({exc.strerror})"]) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark else ""
        reason = getattr(exc, "problem", None) or "not valid YAML"
        raise ConfigError([f"{name}: {where}YAML syntax error: {reason}"]) from None
    return parse_config(data, source_name=name, root=Path(root) if root else path.resolve().parent)
