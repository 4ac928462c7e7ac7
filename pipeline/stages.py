"""The pipeline as data: stages and actions, rendered to CodePipeline in one place.

`pipeline_stages()` says what runs, in which order, with which artifacts and variables;
`render_stages()` turns that into troposphere objects. Tests read the rendered JSON.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from troposphere import codepipeline as cp

# (category, provider) per kind of action; every action here is owned by AWS, version 1.
ACTION_TYPES = {
    "source": ("Source", "CodeStarSourceConnection"),
    "build": ("Build", "CodeBuild"),
    "deploy": ("Deploy", "CloudFormation"),
    "approval": ("Approval", "Manual"),
}

SOURCE_OUTPUT = "SourceOutput"
TEMPLATES_OUTPUT = "TemplatesOutput"
TRAIN_OUTPUT = "TrainOutput"


@dataclass(frozen=True)
class Action:
    """One action: its kind, order in the stage, artifacts, variable namespace and configuration."""

    name: str
    kind: str
    configuration: dict[str, Any]
    run_order: int = 1
    inputs: tuple[str, ...] = ()
    outputs: tuple[str, ...] = ()
    namespace: str | None = None
    env: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Stage:
    """A named stage: its actions run by run_order, equal orders side by side."""

    name: str
    actions: tuple[Action, ...]


@dataclass(frozen=True)
class PipelineRefs:
    """The stack resources the stages point at (troposphere values)."""

    connection_arn: Any
    repository: str
    branch: str
    lint_project: Any
    train_project: Any
    test_project: Any
    deploy_role_arn: Any
    approval_topic_arn: Any
    approval_link: Any
    stack_names: dict[str, str]
    parameter_overrides: dict[str, Any]


def codebuild_env(values: dict[str, str]) -> str:
    """A CodeBuild action's EnvironmentVariables configuration (a JSON string)."""
    return json.dumps([{"name": k, "value": v, "type": "PLAINTEXT"} for k, v in values.items()])


def _deploy(env: str, refs: PipelineRefs) -> Action:
    return Action(
        name=f"Deploy{env.capitalize()}Endpoint",
        kind="deploy",
        run_order=1,
        inputs=(TEMPLATES_OUTPUT, TRAIN_OUTPUT),
        configuration={
            "ActionMode": "CREATE_UPDATE",
            "StackName": refs.stack_names[env],
            "TemplatePath": f"{TEMPLATES_OUTPUT}::endpoint.json",
            "TemplateConfiguration": f"{TRAIN_OUTPUT}::{env}.json",
            "ParameterOverrides": refs.parameter_overrides[env],
            "RoleArn": refs.deploy_role_arn,
        },
    )


def _test(env: str, name: str, namespace: str, refs: PipelineRefs) -> Action:
    return Action(
        name=name,
        kind="build",
        run_order=2,
        inputs=(SOURCE_OUTPUT,),
        namespace=namespace,
        configuration={"ProjectName": refs.test_project},
        env={"ENDPOINT_ENV": env},
    )


def pipeline_stages(refs: PipelineRefs) -> list[Stage]:
    """Source -> lint and train side by side -> QA deploy and test -> approval -> production."""
    approval_text = (
        "Model #{TrainVariables.TRAINING_JOB_NAME}: #{TrainVariables.METRIC_NAME} = "
        "#{TrainVariables.METRIC_VALUE}. QA endpoint tests: #{QATestVariables.TEST_SUMMARY}. "
        "Commit #{SourceVariables.CommitId}: #{SourceVariables.CommitMessage}"
    )
    return [
        Stage(
            "Source",
            (
                Action(
                    name="GitHub",
                    kind="source",
                    outputs=(SOURCE_OUTPUT,),
                    namespace="SourceVariables",
                    configuration={
                        "ConnectionArn": refs.connection_arn,
                        "FullRepositoryId": refs.repository,
                        "BranchName": refs.branch,
                        "OutputArtifactFormat": "CODE_ZIP",
                        "DetectChanges": "true",
                    },
                ),
            ),
        ),
        Stage(
            "LintAndTrain",
            (
                Action(
                    name="Lint",
                    kind="build",
                    inputs=(SOURCE_OUTPUT,),
                    outputs=(TEMPLATES_OUTPUT,),
                    configuration={"ProjectName": refs.lint_project},
                ),
                Action(
                    name="Train",
                    kind="build",
                    inputs=(SOURCE_OUTPUT,),
                    outputs=(TRAIN_OUTPUT,),
                    namespace="TrainVariables",
                    configuration={"ProjectName": refs.train_project},
                    env={"COMMIT_ID": "#{SourceVariables.CommitId}"},
                ),
            ),
        ),
        Stage("QA", (_deploy("qa", refs), _test("qa", "TestQAEndpoint", "QATestVariables", refs))),
        Stage(
            "Approve",
            (
                Action(
                    name="ApproveForProduction",
                    kind="approval",
                    configuration={
                        "NotificationArn": refs.approval_topic_arn,
                        "CustomData": approval_text,
                        "ExternalEntityLink": refs.approval_link,
                    },
                ),
            ),
        ),
        Stage(
            "Production",
            (_deploy("prod", refs), _test("prod", "SmokeTestProdEndpoint", "ProdTestVariables", refs)),
        ),
    ]


def _configuration(action: Action) -> dict[str, Any]:
    config = dict(action.configuration)
    if action.env:
        config["EnvironmentVariables"] = codebuild_env(action.env)
    return config


def render_stages(stages: list[Stage]) -> list[cp.Stages]:
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
            actions.append(cp.Actions(**kwargs))
        rendered.append(cp.Stages(Name=stage.name, Actions=actions))
    return rendered


def describe(stages: list[Stage]) -> list[str]:
    """One line per stage for the synth summary: `Stage: action, action -> action`."""
    lines = []
    for stage in stages:
        orders = sorted({a.run_order for a in stage.actions})
        groups = [" + ".join(a.name for a in stage.actions if a.run_order == o) for o in orders]
        lines.append(f"{stage.name}: {' -> '.join(groups)}")
    return lines
