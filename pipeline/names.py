"""Every physical name the project name ends up in, and the AWS limit each must fit.

Names are derived here and nowhere else, so the config check and the templates agree on them.
Buckets are not named: CloudFormation generates unique names for them (no squatting, no
collision across accounts), so their limits cannot be broken by a long project name.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone

# Environment names are short enough that the project name is always the one a limit binds (the
# training-job name caps it at 39 characters; an endpoint name, PROJECT-ENV, would allow 42).
ENVIRONMENT_NAME_MAX = 20
LONGEST_ENVIRONMENT = "e" * ENVIRONMENT_NAME_MAX

_SAGEMAKER_NAME = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")


@dataclass(frozen=True)
class Limit:
    """One AWS naming rule: which resource, its maximum length, an optional pattern."""

    resource: str
    max_len: int
    pattern: re.Pattern | None = None


SAGEMAKER_NAME = Limit("SageMaker name", 63, _SAGEMAKER_NAME)
STACK_NAME = Limit("CloudFormation stack name", 128, re.compile(r"^[a-zA-Z][-a-zA-Z0-9]*$"))
CODEBUILD_PROJECT = Limit("CodeBuild project name", 150)
REPORT_GROUP = Limit("CodeBuild report group name", 128)
PIPELINE_NAME = Limit("CodePipeline name", 100)
SNS_TOPIC = Limit("SNS topic name", 256)
KMS_ALIAS = Limit("KMS alias", 256)


@dataclass(frozen=True)
class Names:
    """Physical names derived from the project name."""

    project: str

    @property
    def pipeline(self) -> str:
        """The CodePipeline's name."""
        return self.project

    @property
    def pipeline_stack(self) -> str:
        """The stack `make deploy` creates."""
        return f"{self.project}-pipeline"

    def endpoint(self, env: str) -> str:
        """The endpoint's stable name in an environment: the same on every run."""
        return f"{self.project}-{env}"

    def endpoint_alarm(self, env: str, metric: str) -> str:
        """A CloudWatch alarm on the environment's endpoint (at most 255 characters: the endpoint's
        63 and a short metric name fit)."""
        return f"{self.endpoint(env)}-{metric}"

    def endpoint_stack(self, env: str) -> str:
        """The endpoint stack the pipeline deploys in an environment."""
        return f"{self.project}-endpoint-{env}"

    def codebuild_project(self, step: str) -> str:
        """The CodeBuild project of a build step (lint, train, endpoint-test, ...)."""
        return f"{self.project}-{step}"

    def report_group(self, step: str, report: str) -> str:
        """The report group CodeBuild resolves a step's buildspec `reports: REPORT` to."""
        return f"{self.codebuild_project(step)}-{report}"

    def build_log_group(self, step: str) -> str:
        """The CloudWatch log group of a build step's project."""
        return f"/aws/codebuild/{self.codebuild_project(step)}"

    @property
    def approval_topic(self) -> str:
        """The SNS topic approvers subscribe to."""
        return f"{self.project}-approvals"

    @property
    def notification_topic(self) -> str:
        """The SNS topic that hears of pipeline runs, failed actions and waiting approvals."""
        return f"{self.project}-notifications"

    @property
    def async_topic(self) -> str:
        """The SNS topic asynchronous endpoints tell of each answer and failure."""
        return f"{self.project}-async-inference"

    @property
    def model_package_group(self) -> str:
        """The SageMaker model package group (the model registry) each run's model is a version of."""
        return self.project

    @property
    def key_alias(self) -> str:
        """The KMS alias of the stack's key."""
        return f"alias/{self.project}-pipeline"

    def training_job(self, commit: str, when: datetime) -> str:
        """A training job's name: PROJECT-SHA7-UTCTIME, new per run (jobs stop billing when done)."""
        return f"{self.project}-{commit[:7]}-{when.astimezone(timezone.utc):%Y%m%dT%H%M%S}"

    @property
    def training_job_example(self) -> str:
        """A training-job name of the length the train script makes, for the limit check."""
        return self.training_job("0" * 40, datetime(2026, 1, 1, tzinfo=timezone.utc))

    def checked(self, environments: Sequence[str]) -> list[tuple[str, str, Limit]]:
        """(what, name, limit) for every name derived from the project and environment names.

        Names of build steps are checked where the steps are rendered (pipeline.steps): they
        come from code, not from the config.
        """
        rows: list[tuple[str, str, Limit]] = [
            ("training-job name", self.training_job_example, SAGEMAKER_NAME),
            ("pipeline stack name", self.pipeline_stack, STACK_NAME),
            ("pipeline name", self.pipeline, PIPELINE_NAME),
            ("model package group name", self.model_package_group, SAGEMAKER_NAME),
            ("SNS topic name", self.approval_topic, SNS_TOPIC),
            ("notification topic name", self.notification_topic, SNS_TOPIC),
            ("async-inference topic name", self.async_topic, SNS_TOPIC),
            ("KMS alias", self.key_alias, KMS_ALIAS),
        ]
        for env in environments:
            which = "the longest environment's" if env == LONGEST_ENVIRONMENT else env
            rows.append((f"{which} endpoint name", self.endpoint(env), SAGEMAKER_NAME))
            rows.append((f"{which} endpoint stack name", self.endpoint_stack(env), STACK_NAME))
        return rows


# What the train script appends to the project name, e.g. "-3f2a9c1-20261121T104800".
TRAINING_JOB_SUFFIX_LEN = len(Names("").training_job_example)


def problem(names: Names, environments: Sequence[str] = (LONGEST_ENVIRONMENT,)) -> str | None:
    """Why the project name is too long or malformed for some name it ends up in, or None.

    One sentence for the whole project name: the tightest limit it breaks, and the longest
    project name every derived name would accept. By default the environment names are taken at
    their longest, so the answer holds for any config.
    """
    over = [(len(name) - limit.max_len, what, name, limit) for what, name, limit in names.checked(environments)]
    excess, what, name, limit = max(over, key=lambda row: row[0])
    if excess > 0:
        longest = len(names.project) - excess
        return (
            f"'{names.project}' is {len(names.project)} characters; the {what} it makes would be "
            f"{len(name)} characters, over the {limit.resource} limit of {limit.max_len} "
            f"(use at most {longest} characters)"
        )
    for what, name, limit in names.checked(environments):
        if limit.pattern is not None and not limit.pattern.match(name):
            return f"makes the {what} '{name}', which the {limit.resource} rules do not allow"
    return None


# ----- branch pipelines -----------------------------------------------------------------------
# A branch pipeline's names are a main pipeline's names for a longer "project": PROJECT-SLUG-HASH.
# The longest such prefix every derived name accepts: the training-job name binds (39 today).
BRANCH_PREFIX_MAX = min(
    SAGEMAKER_NAME.max_len - TRAINING_JOB_SUFFIX_LEN,
    SAGEMAKER_NAME.max_len - 1 - ENVIRONMENT_NAME_MAX,
)
BRANCH_HASH_LEN = 6


BRANCH_PROJECT_MAX = BRANCH_PREFIX_MAX - BRANCH_HASH_LEN - 1


def branch_problem(project: str) -> str | None:
    """Why `project` cannot have branch pipelines, or None. Their names must start PROJECT- (the
    shared key lets CloudWatch Logs encrypt only the groups /aws/codebuild/PROJECT-*)."""
    if len(project) > BRANCH_PROJECT_MAX:
        return (
            f"branch pipelines need a project name of at most {BRANCH_PROJECT_MAX} characters "
            f"('{project}' is {len(project)}): their names are PROJECT-BRANCH-HASH within {BRANCH_PREFIX_MAX}"
        )
    return None


def branch_prefix(project: str, branch: str) -> str:
    """The name prefix of `branch`'s pipeline: PROJECT-SLUG-HASH, at most BRANCH_PREFIX_MAX characters.

    SLUG is the branch lowercased, every run of other characters than a-z and 0-9 one hyphen
    (`feature/X.2` -> `feature-x-2`), cut to fit; when nothing is left, the prefix is PROJECT-HASH.
    HASH (6 hex of SHA-256 of `project:branch`) is always there: two branches that slug alike
    (`feature/x`, `Feature-X`) or cut alike still get different names, and no branch name can spell
    one of the main pipeline's names (PROJECT-ENV, PROJECT-STEP). Raises ValueError (branch_problem)
    for a project name too long to leave room for the hash.
    """
    reason = branch_problem(project)
    if reason:
        raise ValueError(reason)
    digest = hashlib.sha256(f"{project}:{branch}".encode()).hexdigest()[:BRANCH_HASH_LEN]
    slug = re.sub(r"[^a-z0-9]+", "-", branch.lower()).strip("-")
    slug = slug[: max(BRANCH_PREFIX_MAX - len(project) - len(digest) - 2, 0)].rstrip("-")
    return f"{project}-{slug}-{digest}" if slug else f"{project}-{digest}"


def branch_names(project: str, branch: str) -> Names:
    """The physical names of `branch`'s pipeline (stack, pipeline, endpoints, projects, roles...)."""
    return Names(branch_prefix(project, branch))
