"""The pipeline as data: stages, actions and deployment targets, rendered to CodePipeline in one place.

An `Action` says what runs, in which order, with which artifacts and variables; a
`DeploymentTarget` says where one environment's endpoint stack goes and with what; `render_stages()`
turns stages into troposphere objects. Nothing here knows which stages the pipeline has: the
pipeline stack (pipeline/stacks/pipeline.py) lays them out.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from troposphere import Sub
from troposphere import codepipeline as cp

# (category, provider) per kind of action; every action here is owned by AWS, version 1.
ACTION_TYPES = {
    "source": ("Source", "CodeStarSourceConnection"),
    "build": ("Build", "CodeBuild"),
    "deploy": ("Deploy", "CloudFormation"),
    "approval": ("Approval", "Manual"),
}
# The variables a CodeStarSourceConnection action emits (CodePipeline's own).
SOURCE_VARIABLES = ("AuthorDate", "BranchName", "CommitId", "CommitMessage", "ConnectionArn", "FullRepositoryName")
# CodePipeline's rules for stage and action names.
_NAME = re.compile(r"^[A-Za-z0-9.@_-]{1,100}$")


@dataclass(frozen=True)
class PipelineVariable:
    """A pipeline-level variable (CodePipeline V2): a manual start may give it a value, every
    other start takes `default`. Actions read it as `ref`, `#{variables.NAME}`. Limits are
    botocore's PipelineVariableDeclaration: name [A-Za-z0-9@_-], 1-128; default 1-1000; description
    at most 200."""

    name: str
    default: str
    description: str

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[A-Za-z0-9@_-]{1,128}", self.name):
            raise ValueError(f"pipeline variable name '{self.name}': 1-128 of letters, digits, @, _ and -")
        if not 1 <= len(self.default) <= 1000 or len(self.description) > 200:
            raise ValueError(f"pipeline variable {self.name}: default 1-1000, description at most 200 characters")

    @property
    def ref(self) -> str:
        """How an action's configuration reads it."""
        return f"#{{variables.{self.name}}}"


RUN_REASON = PipelineVariable(
    "RunReason",
    "automatic",
    "Why this run was started. Give it when starting a run by hand; pushes, new data and the schedule "
    "leave the default. Tagged on the training job.",
)
# The pipeline's variables, declared on the pipeline.
PIPELINE_VARIABLES = (RUN_REASON,)


def camel(name: str) -> str:
    """`endpoint-test` -> `EndpointTest`: the id a kebab-case name gives logical IDs, stages, outputs."""
    return "".join(part.capitalize() for part in name.split("-"))


@dataclass(frozen=True)
class Action:
    """One action: its kind, order in the stage, artifacts, variables and configuration.

    `exports` are the variables it emits under `namespace`; others refer to them through
    `variable()`, never by typing `#{Namespace.NAME}`. `region` and `role_arn` are set only
    for an action that runs in another region or account.
    """

    name: str
    kind: str
    configuration: Mapping[str, Any]
    run_order: int = 1
    inputs: tuple[str, ...] = ()
    outputs: tuple[str, ...] = ()
    namespace: str | None = None
    exports: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    region: str | None = None
    role_arn: Any = None

    def __post_init__(self) -> None:
        if not _NAME.match(self.name):
            raise ValueError(f"action name '{self.name}' is not one CodePipeline accepts")
        if self.exports and not self.namespace:
            raise ValueError(f"action {self.name} exports variables but has no namespace")

    def variable(self, name: str) -> str:
        """`#{Namespace.NAME}` for a variable this action emits; a ValueError if it emits no such one."""
        if name not in self.exports:
            raise ValueError(f"action {self.name} emits no variable {name} (it emits: {', '.join(self.exports)})")
        return f"#{{{self.namespace}.{name}}}"


@dataclass(frozen=True)
class Stage:
    """A named stage: its actions run by run_order, equal orders side by side."""

    name: str
    actions: tuple[Action, ...]

    def __post_init__(self) -> None:
        if not _NAME.match(self.name):
            raise ValueError(f"stage name '{self.name}' is not one CodePipeline accepts")


@dataclass(frozen=True)
class DeploymentTarget:
    """Where one environment's endpoint stack goes, and what it is deployed with.

    `parameters` are the stack parameters the pipeline supplies (troposphere values allowed);
    the rest come from `template_configuration`, written by the train step. `region` and
    `action_role_arn` are set for an environment outside the pipeline's region or account: the
    action then runs there, assuming that role.
    """

    environment: str
    stack_name: str
    template_path: str
    template_configuration: str
    parameters: Mapping[str, Any]
    execution_role_arn: Any
    inputs: tuple[str, ...]
    region: str | None = None
    action_role_arn: Any = None
    outputs: tuple[str, ...] = ()

    def action(self, name: str, run_order: int = 1, namespace: str | None = None) -> Action:
        """The CloudFormation action that creates or updates the stack in place; with a namespace,
        it emits the stack's `outputs` as variables (CodePipeline's CloudFormation action emits
        every stack output so: CodePipeline user guide, "Variables reference")."""
        return Action(
            name=name,
            kind="deploy",
            run_order=run_order,
            inputs=self.inputs,
            namespace=namespace if self.outputs else None,
            exports=self.outputs if namespace else (),
            configuration={
                "ActionMode": "CREATE_UPDATE",
                "StackName": self.stack_name,
                "TemplatePath": self.template_path,
                "TemplateConfiguration": self.template_configuration,
                "ParameterOverrides": parameter_overrides(self.parameters),
                "RoleArn": self.execution_role_arn,
            },
            region=self.region,
            role_arn=self.action_role_arn,
        )


def parameter_overrides(parameters: Mapping[str, Any]) -> Sub | str:
    """The ParameterOverrides JSON; values that are CloudFormation expressions go in through Sub."""
    text = {name: (value if isinstance(value, str) else f"${{{name}}}") for name, value in parameters.items()}
    variables = {name: value for name, value in parameters.items() if not isinstance(value, str)}
    body = json.dumps(text, sort_keys=True)
    return Sub(body, **variables) if variables else body


def codebuild_env(values: Mapping[str, str]) -> str:
    """A CodeBuild action's EnvironmentVariables configuration (a JSON string)."""
    return json.dumps([{"name": k, "value": v, "type": "PLAINTEXT"} for k, v in values.items()])


def _configuration(action: Action) -> dict[str, Any]:
    config = dict(action.configuration)
    if action.env:
        config["EnvironmentVariables"] = codebuild_env(action.env)
    return config


def render_stages(stages: Sequence[Stage]) -> list[cp.Stages]:
    """troposphere `Stages` for a list of stage descriptions."""
    rendered = []
    for stage in stages:
        actions = []
        for action in stage.actions:
            category, provider = ACTION_TYPES[action.kind]
            kwargs: dict[str, Any] = dict(
                Name=action.name,
                ActionTypeId=cp.ActionTypeId(Category=category, Owner="AWS", Provider=provider, Version="1"),
                Configuration=_configuration(action),
                RunOrder=action.run_order,
                InputArtifacts=[cp.InputArtifacts(Name=n) for n in action.inputs],
                OutputArtifacts=[cp.OutputArtifacts(Name=n) for n in action.outputs],
            )
            if action.namespace:
                kwargs["Namespace"] = action.namespace
            if action.region:
                kwargs["Region"] = action.region
            if action.role_arn is not None:
                kwargs["RoleArn"] = action.role_arn
            actions.append(cp.Actions(**kwargs))
        rendered.append(cp.Stages(Name=stage.name, Actions=actions))
    return rendered


def describe(stages: Sequence[Stage]) -> list[str]:
    """One line per stage for the synth summary: `Stage: action + action -> action`."""
    lines = []
    for stage in stages:
        orders = sorted({a.run_order for a in stage.actions})
        groups = [" + ".join(a.name for a in stage.actions if a.run_order == o) for o in orders]
        lines.append(f"{stage.name}: {' -> '.join(groups)}")
    return lines
