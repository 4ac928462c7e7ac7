"""Branch pipelines: a pipeline per git branch that trains, deploys and tests only the QA-like
environments, under names of its own, sharing the main pipeline's buckets and key.

QA-like: every environment before the first one with `approval: true` (an approval marks where a
human must look before a model goes further; a branch's model never goes there). A config whose
first environment asks for approval has no environment a branch may deploy to.

Pure: a branch's config is the main config with the branch's name prefix as its project, the
QA-like environments, the branch as source and only trigger, no schedule or new-data trigger, and
no champion gate.
"""

from __future__ import annotations

import os

from pydantic import ValidationError

from pipeline.config import ConfigError, Environment, GitHubSource, PipelineConfig, load_config
from pipeline.names import branch_names, branch_problem

# Set on every CodeBuild project of a branch pipeline: the commands it runs (synth, the stage
# scripts) then build and act on the branch's config, not the main pipeline's.
BRANCH_VARIABLE = "PIPELINE_BRANCH"


def qa_environments(config: PipelineConfig) -> list[Environment]:
    """The environments a branch pipeline deploys to: those before the first approval."""
    before: list[Environment] = []
    for env in config.environments:
        if env.approval:
            break
        before.append(env)
    return before


def branch_problem_for(config: PipelineConfig, branch: str) -> str | None:
    """Why `config` cannot have a pipeline for `branch`, in one line, or None."""
    try:  # the rules source.github.branch follows: a git ref CodePipeline can take
        GitHubSource.model_validate({**config.source.github.model_dump(), "branch": branch})
    except ValidationError as exc:
        return f"--branch: {exc.errors()[0]['msg'].removeprefix('Value error, ')}"
    if branch == config.source.github.branch or branch in config.branch_patterns:
        return f"--branch {branch}: that branch runs the main pipeline ({config.names.pipeline})"
    if not qa_environments(config):
        first = config.environments[0].name
        return f"--branch {branch}: no environment comes before an approval ({first} has approval: true)"
    return branch_problem(config.project)


def branch_config(config: PipelineConfig, branch: str) -> PipelineConfig:
    """The config of `branch`'s pipeline (check branch_problem_for first)."""
    github = config.source.github.model_copy(update={"branch": branch})
    source = config.source.model_copy(update={"github": github})
    triggers = config.triggers.model_copy(
        update={"branches": [branch], "branches_excluded": [], "schedule": None, "new_data": False}
    )
    # No champion gate: the champion serves in an environment of the main pipeline (prod, say),
    # whose stack a branch's role may not read; a branch's model goes no further than its qa.
    gate = config.quality_gate.model_copy(update={"champion": None})
    ours = config.model_copy(
        update={
            "quality_gate": gate,
            "project": branch_names(config.project, branch).project,
            "environments": qa_environments(config),
            "source": source,
            "triggers": triggers,
        }
    )
    # It trains on the main pipeline's training data (a model_bucket_prefix under the main project).
    ours._data_project = config._data_project or config.project
    return ours


def for_branch(config: PipelineConfig, branch: str | None) -> PipelineConfig:
    """`config` itself without a branch, else the branch's config; ConfigError (one line) if it cannot have one."""
    if not branch:
        return config
    reason = branch_problem_for(config, branch)
    if reason:
        raise ConfigError([reason])
    return branch_config(config, branch)


def load_run_config(config_path: str) -> PipelineConfig:
    """The config a stage script acts on: the branch's when it runs in a branch pipeline."""
    return for_branch(load_config(config_path), os.environ.get(BRANCH_VARIABLE))
