"""Build steps as data: one `BuildStep` carries everything its CodeBuild project needs, and
`render_step()` turns it into the project, its role, its log group (and report groups), while
`BuildStep.action()` places it in the pipeline. Adding a step is one `BuildStep` in one place.

The buildspec is rendered from the step too (commands, exported variables, artifacts, reports),
so the variables a step says it exports are the ones its buildspec exports.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import awacs.codebuild
import awacs.logs
import yaml
from awacs.aws import Statement
from troposphere import GetAtt, Ref, Sub, Tags, codebuild, iam, logs

from pipeline.iam import allow, role
from pipeline.names import CODEBUILD_PROJECT, REPORT_GROUP, Names
from pipeline.stages import Action, camel

# libyaml's emitter (PyYAML's wheels include it) writes the same YAML as the pure-Python one, ~5x
# faster: ~2.5 ms of every synth (make bench). The golden templates pin the text.
_DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)

CODEBUILD_IMAGE = "aws/codebuild/standard:7.0"
PYTHON_VERSION = "3.11"
LOG_RETENTION_DAYS = 90


@dataclass(frozen=True)
class Report:
    """Test results a step publishes to its own CodeBuild report group (`PROJECT-NAME`), one per
    buildspec `reports:` entry. `files` are what the step's commands write, whether checks pass or
    fail (CodeBuild uploads reports after the build phase either way).

    Its report group's logical ID is `<StepId><Id>Reports`, `Id` being `id` or the name in CamelCase.
    A group's logical ID must not change once deployed: CloudFormation would create the new one
    before deleting the old, and the group's name is taken.
    """

    name: str
    files: tuple[str, ...]
    file_format: str = "JUNITXML"
    id: str | None = None

    def logical_id(self, step_id: str) -> str:
        """The logical ID of its report group, for the step with id `step_id`."""
        return f"{step_id}{camel(self.name) if self.id is None else self.id}Reports"


@dataclass(frozen=True)
class BuildStep:
    """A CodeBuild step: its commands, what its role may do, its settings and what it hands on.

    `name` (kebab-case) names its project (PROJECT-NAME), log group and logical IDs (`train` ->
    TrainProject, TrainRole, TrainLogs). `statements` are what the step itself needs; reading
    pipeline artifacts and writing its own logs and reports are granted to every step, writing
    artifacts only to a step with `artifacts`.
    `env` holds project environment variables (stack values); `action_env` those set on its
    pipeline action (they may carry other actions' variables, `#{Namespace.VAR}`). A step with
    `artifacts` has one output artifact, named `<Id>Output`.
    """

    name: str
    description: str
    commands: tuple[str, ...]
    statements: tuple[Statement, ...] = ()
    env: Mapping[str, Any] = field(default_factory=dict)
    action_env: Mapping[str, str] = field(default_factory=dict)
    timeout_minutes: int = 20
    runtimes: Mapping[str, str] = field(default_factory=lambda: {"python": PYTHON_VERSION})
    install_commands: tuple[str, ...] = ()
    exports: tuple[str, ...] = ()
    artifacts: tuple[str, ...] = ()
    reports: tuple[Report, ...] = ()
    # Why a statement grants on "*" (an action without a resource type): the role's cfripper and
    # cfn-nag suppressions carry it.
    wildcard_reason: str | None = None
    # Why the step runs Docker (CodeBuild's privileged mode): set, the project is privileged and
    # checkov's CKV_AWS_316 is skipped with it in the project's metadata.
    privileged_reason: str | None = None

    @property
    def id(self) -> str:
        """CamelCase id for logical IDs: `endpoint-test` -> `EndpointTest`."""
        return camel(self.name)

    @property
    def output(self) -> str | None:
        """The name of its output artifact, if it has one."""
        return f"{self.id}Output" if self.artifacts else None

    @property
    def artifact(self) -> str:
        """The name of its output artifact; a ValueError for a step that hands nothing on."""
        if self.output is None:
            raise ValueError(f"step {self.name} has no artifacts to hand on")
        return self.output

    def file(self, name: str) -> str:
        """`Artifact::file`: how a later action names a file this step hands on."""
        return f"{self.artifact}::{name}"

    def buildspec(self) -> str:
        """The buildspec (YAML): install, the commands, exported variables, artifacts, reports."""
        install: dict[str, Any] = {"runtime-versions": dict(self.runtimes)}
        if self.install_commands:
            install["commands"] = list(self.install_commands)
        spec: dict[str, Any] = {"version": 0.2}
        if self.exports:
            spec["env"] = {"exported-variables": list(self.exports)}
        spec["phases"] = {"install": install, "build": {"commands": list(self.commands)}}
        if self.artifacts:
            spec["artifacts"] = {"files": list(self.artifacts), "discard-paths": "yes"}
        if self.reports:
            spec["reports"] = {
                report.name: {"files": list(report.files), "file-format": report.file_format} for report in self.reports
            }
        return yaml.dump(spec, Dumper=_DUMPER, sort_keys=False, width=1000)

    def action(
        self,
        project: Any,
        *,
        name: str | None = None,
        inputs: tuple[str, ...],
        namespace: str | None = None,
        env: Mapping[str, str] | None = None,
        run_order: int = 1,
    ) -> Action:
        """The pipeline action that runs this step's project (`project`: a Ref to it); `env`
        adds to the step's own `action_env`."""
        return Action(
            name=name or self.id,
            kind="build",
            run_order=run_order,
            inputs=inputs,
            outputs=(self.output,) if self.output else (),
            namespace=namespace if self.exports else None,
            exports=self.exports,
            configuration={"ProjectName": project},
            env={**self.action_env, **(env or {})},
        )


@dataclass(frozen=True)
class StepResources:
    """What one step renders to: its log group, role, project and a report group per report (by report name)."""

    log_group: logs.LogGroup
    role: iam.Role
    project: codebuild.Project
    report_groups: Mapping[str, codebuild.ReportGroup] = field(default_factory=dict)

    @property
    def resources(self) -> list[Any]:
        """All of them, for the template."""
        return [self.log_group, self.role, self.project, *self.report_groups.values()]


@dataclass(frozen=True)
class StepContext:
    """What every step's resources share: names, the stack's key and tags, and artifact access:
    every step reads its input artifacts; only a step that hands one on may write them."""

    names: Names
    key_arn: Any
    tags: Tags
    artifact_read: tuple[Statement, ...]
    artifact_write: tuple[Statement, ...]


def _checked(what: str, name: str, max_len: int) -> str:
    if len(name) > max_len:
        raise ValueError(f"the {what} '{name}' is over {max_len} characters: give the step a shorter name")
    return name


def render_step(step: BuildStep, ctx: StepContext) -> StepResources:
    """The step's log group, role (its statements plus artifacts, logs, reports), project and report group."""
    project_name = _checked("CodeBuild project name", ctx.names.codebuild_project(step.name), CODEBUILD_PROJECT.max_len)
    log_group = logs.LogGroup(
        f"{step.id}Logs",
        LogGroupName=ctx.names.build_log_group(step.name),
        RetentionInDays=LOG_RETENTION_DAYS,
        KmsKeyId=ctx.key_arn,
        Tags=ctx.tags,
        # Build logs go with the stack; models and data are what is retained.
        DeletionPolicy="Delete",
        UpdateReplacePolicy="Delete",
    )
    statements: list[Statement] = [
        *ctx.artifact_read,
        *(ctx.artifact_write if step.output else ()),
        allow(
            [awacs.logs.CreateLogStream, awacs.logs.PutLogEvents],
            Sub("${Group}:*", Group=GetAtt(log_group, "Arn")),
        ),
    ]
    if len({r.name for r in step.reports}) < len(step.reports) or len(
        {r.logical_id(step.id) for r in step.reports}
    ) < len(step.reports):
        raise ValueError(f"step {step.name} has two reports of the same name or id")
    report_groups = {
        report.name: codebuild.ReportGroup(
            report.logical_id(step.id),
            Name=_checked("report group name", ctx.names.report_group(step.name, report.name), REPORT_GROUP.max_len),
            Type="TEST",
            ExportConfig=codebuild.ReportExportConfig(ExportConfigType="NO_EXPORT"),
            DeleteReports=True,
            Tags=ctx.tags,
        )
        for report in step.reports
    }
    if report_groups:
        statements.append(
            allow(
                [awacs.codebuild.CreateReport, awacs.codebuild.UpdateReport, awacs.codebuild.BatchPutTestCases],
                [GetAtt(group, "Arn") for group in report_groups.values()],
            )
        )
    statements.extend(step.statements)
    service_role = role(f"{step.id}Role", "codebuild.amazonaws.com", step.description, statements, ctx.tags)
    if step.wildcard_reason:
        service_role.Metadata = {
            "cfripper": {"suppress": [{"rule": "WildcardResourceRule", "reason": step.wildcard_reason}]},
            "cfn_nag": {"rules_to_suppress": [{"id": "W11", "reason": step.wildcard_reason}]},
        }
    project = codebuild.Project(
        f"{step.id}Project",
        Name=project_name,
        Description=f"sagemaker-cd {ctx.names.project}: {step.description}",
        ServiceRole=GetAtt(service_role, "Arn"),
        Source=codebuild.Source(Type="CODEPIPELINE", BuildSpec=step.buildspec()),
        Artifacts=codebuild.Artifacts(Type="CODEPIPELINE"),
        Environment=codebuild.Environment(
            ComputeType="BUILD_GENERAL1_SMALL",
            Image=CODEBUILD_IMAGE,
            Type="LINUX_CONTAINER",
            EnvironmentVariables=[
                codebuild.EnvironmentVariable(Name=k, Value=v, Type="PLAINTEXT") for k, v in step.env.items()
            ],
            **({"PrivilegedMode": True} if step.privileged_reason else {}),
        ),
        EncryptionKey=ctx.key_arn,
        TimeoutInMinutes=step.timeout_minutes,
        LogsConfig=codebuild.LogsConfig(
            CloudWatchLogs=codebuild.CloudWatchLogs(Status="ENABLED", GroupName=Ref(log_group))
        ),
        Tags=ctx.tags,
    )
    if step.privileged_reason:
        project.Metadata = {"checkov": {"skip": [{"id": "CKV_AWS_316", "comment": step.privileged_reason}]}}
    return StepResources(log_group=log_group, role=service_role, project=project, report_groups=report_groups)
