"""`make status`: is my build done? The latest runs, the newest run action by action, a pending
approval with the link approvers click, and which model each endpoint serves.

Where a pipeline or endpoint is missing, or its stack is not in a clean state, it says what the
stack's status means and what to do (pipeline.stackstate), with the failure that rolled back a
first create. Read-only: CodePipeline, SageMaker and CloudFormation describe/list calls, nothing
else. Every line fits the terminal width (long fields end in '…'), except a console link: it is
printed whole, on a line of its own, because a cut or wrapped link cannot be clicked.
"""

from __future__ import annotations

import json
import shlex
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from botocore.exceptions import ClientError

from pipeline.aws import RETRIES, AwsError, aws_errors, describe_stack, first_failure_in, pipeline_console_url
from pipeline.config import PipelineConfig
from pipeline.stackstate import SETTLED, Step, busy, fix, prepare_endpoint_stack

EXECUTIONS_SHOWN = 5
NO_EXECUTIONS = ("no executions yet", "(push a commit; a PENDING GitHub connection blocks the first run)")
NOT_STARTED = "not started"
# Action statuses after which lastUpdateTime is when the action ended.
_ENDED = {"Succeeded", "Failed", "Abandoned"}
# Statuses of a stack made by one create that failed: its events all belong to that create.
_FAILED_FIRST_CREATE = {"ROLLBACK_COMPLETE", "ROLLBACK_FAILED"}


@dataclass(frozen=True)
class ActionRun:
    """One action as one pipeline execution ran it; status None when that run has not reached it."""

    stage: str
    action: str
    status: str | None = None
    start: datetime | None = None
    end: datetime | None = None
    error: str | None = None


@dataclass(frozen=True)
class PendingApproval:
    """A manual approval waiting for a decision, in whichever execution holds it."""

    stage: str
    action: str
    execution_id: str | None
    since: datetime | None
    summary: str | None


@dataclass(frozen=True)
class EndpointState:
    """An endpoint's status and the model its stack says it serves; status None when it does not exist."""

    env: str
    name: str
    stack: str
    status: str | None = None
    modified: datetime | None = None
    failure: str | None = None
    model_version: str | None = None
    model_data: str | None = None
    stack_status: str | None = None
    stack_failure: str | None = None
    region: str = ""
    live_config: str | None = None
    stack_config: str | None = None

    @property
    def rolled_back(self) -> bool:
        """The endpoint is InService on another config than its stack's output names: SageMaker
        rolled an update back (or someone changed the endpoint outside CloudFormation)."""
        return (
            self.status == "InService"
            and self.live_config is not None
            and self.stack_config is not None
            and self.live_config != self.stack_config
        )


# --- reading AWS -----------------------------------------------------------------------------


def latest_executions(codepipeline: Any, pipeline: str) -> list[dict]:
    """The newest pipeline executions, newest first."""
    # .get: an empty reply (a proxy's empty 200) parses as {} and means no runs, not a KeyError.
    reply = codepipeline.list_pipeline_executions(pipelineName=pipeline, maxResults=EXECUTIONS_SHOWN)
    return reply.get("pipelineExecutionSummaries", [])


def action_executions(codepipeline: Any, pipeline: str, execution_id: str) -> list[dict]:
    """Every action execution of one pipeline execution (all pages)."""
    details: list[dict] = []
    kwargs: dict = {"pipelineName": pipeline, "filter": {"pipelineExecutionId": execution_id}}
    while True:
        page = codepipeline.list_action_executions(**kwargs)
        details.extend(page.get("actionExecutionDetails", []))
        if not page.get("nextToken"):
            return details
        kwargs["nextToken"] = page["nextToken"]


def _state_error(latest: dict) -> str | None:
    return (latest.get("errorDetails") or {}).get("message") or latest.get("summary")


def action_runs(state: dict, details: list[dict], execution_id: str) -> list[ActionRun]:
    """Each stage's actions in pipeline order, as execution `execution_id` ran them.

    `state` (get_pipeline_state) gives the order, and the latest execution of stages this run
    reached; `details` (list_action_executions for this run) give start and end times. A retried
    action counts by its latest attempt.
    """
    latest_detail: dict[tuple[str, str], dict] = {}
    for attempt in sorted(details, key=lambda d: d.get("startTime") or datetime.min.replace(tzinfo=timezone.utc)):
        latest_detail[(attempt["stageName"], attempt["actionName"])] = attempt
    runs = []
    for stage in state.get("stageStates", []):
        stage_name = stage["stageName"]
        reached = (stage.get("latestExecution") or {}).get("pipelineExecutionId") == execution_id
        for action in stage.get("actionStates", []):
            name = action["actionName"]
            state_latest = (action.get("latestExecution") or {}) if reached else {}
            detail = latest_detail.get((stage_name, name))
            if detail:
                status = detail["status"]
                result = (detail.get("output") or {}).get("executionResult") or {}
                error = None
                if status == "Failed":
                    error = (
                        (result.get("errorDetails") or {}).get("message")
                        or result.get("externalExecutionSummary")
                        or _state_error(state_latest)
                    )
                runs.append(
                    ActionRun(
                        stage_name,
                        name,
                        status,
                        detail.get("startTime"),
                        detail.get("lastUpdateTime") if status in _ENDED else None,
                        error,
                    )
                )
            elif state_latest.get("status"):
                status = state_latest["status"]
                runs.append(
                    ActionRun(
                        stage_name,
                        name,
                        status,
                        None,
                        state_latest.get("lastStatusChange") if status in _ENDED else None,
                        _state_error(state_latest) if status == "Failed" else None,
                    )
                )
            else:
                runs.append(ActionRun(stage_name, name))
    return runs


def pending_approvals(state: dict, details: list[dict]) -> list[PendingApproval]:
    """Approvals waiting for a decision: open approval requests (a token) in the pipeline state,
    or Approval-category actions in progress in `details`. The summary is the approval's custom
    data as this run resolved it, when `details` has it."""
    by_action = {(d["stageName"], d["actionName"]): d for d in details}
    found = []
    for stage in state.get("stageStates", []):
        stage_execution = (stage.get("latestExecution") or {}).get("pipelineExecutionId")
        for action in stage.get("actionStates", []):
            latest = action.get("latestExecution") or {}
            detail = by_action.get((stage["stageName"], action["actionName"]))
            detail_pending = (
                detail is not None
                and detail.get("status") == "InProgress"
                and (detail.get("input") or {}).get("actionTypeId", {}).get("category") == "Approval"
            )
            state_pending = latest.get("status") == "InProgress" and bool(latest.get("token"))
            if not (detail_pending or state_pending):
                continue
            resolved = ((detail or {}).get("input") or {}).get("resolvedConfiguration") or {}
            found.append(
                PendingApproval(
                    stage=stage["stageName"],
                    action=action["actionName"],
                    execution_id=(detail or {}).get("pipelineExecutionId") or stage_execution,
                    since=(detail or {}).get("startTime") or latest.get("lastStatusChange"),
                    summary=resolved.get("CustomData") or latest.get("summary"),
                )
            )
    return found


def creation_failure(cloudformation: Any, stack: dict) -> str | None:
    """Why a stack's failed first create failed (its oldest failed event), for ROLLBACK_COMPLETE or
    ROLLBACK_FAILED; None for any other status (older events there may be long fixed)."""
    if stack.get("StackStatus") not in _FAILED_FIRST_CREATE:
        return None
    events = cloudformation.describe_stack_events(StackName=stack["StackName"])["StackEvents"]
    return first_failure_in(events)


def endpoint_state(sagemaker: Any, cloudformation: Any, config: PipelineConfig, env: str) -> EndpointState:
    """The endpoint of `env`, its stack's status and, from the stack's outputs, the model it serves."""
    name, stack_name = config.names.endpoint(env), config.names.endpoint_stack(env)
    try:
        endpoint: dict | None = sagemaker.describe_endpoint(EndpointName=name)
    except ClientError as exc:
        error = exc.response["Error"]
        if not (error.get("Code") == "ValidationException" and "Could not find endpoint" in error.get("Message", "")):
            raise
        endpoint = None
    stack = describe_stack(cloudformation, stack_name) or {}
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}
    return EndpointState(
        env=env,
        name=name,
        stack=stack_name,
        status=endpoint["EndpointStatus"] if endpoint else None,
        modified=endpoint.get("LastModifiedTime") if endpoint else None,
        failure=endpoint.get("FailureReason") if endpoint else None,
        model_version=outputs.get("ModelVersion"),
        model_data=outputs.get("ModelDataUrl"),
        stack_status=stack.get("StackStatus"),
        stack_failure=creation_failure(cloudformation, stack) if stack else None,
        region=config.region,
        live_config=endpoint.get("EndpointConfigName") if endpoint else None,
        stack_config=outputs.get("EndpointConfigName"),
    )


def deploy_command(branch: str | None) -> str:
    """The command that deploys the main pipeline, or `branch`'s (quoted for the shell and make's recipe)."""
    if branch is None:
        return "make deploy"
    return "make deploy ARGS=" + shlex.quote(f"--branch {shlex.quote(branch)}")


def missing_pipeline(
    pipeline: str,
    region: str,
    stack_name: str,
    stack: dict | None,
    failure: str | None,
    branch: str | None = None,
) -> str:
    """The one line for a pipeline that does not exist, from the state of the stack meant to make it;
    the deploy command it names is the branch's for a branch pipeline."""
    head = f"pipeline {pipeline} not found in {region}: the pipeline stack {stack_name}"
    deploy = deploy_command(branch)
    status = (stack or {}).get("StackStatus")
    if status is None:
        return f"{head} is not deployed (run {deploy})"
    if status == "ROLLBACK_COMPLETE":
        return (
            f"{head} is ROLLBACK_COMPLETE: its first create failed ({failure or 'see its events'}) and was rolled "
            f"back, so it holds nothing; {deploy} deletes it and creates it again"
        )
    if status == "REVIEW_IN_PROGRESS":
        return f"{head} is REVIEW_IN_PROGRESS: a create change set was never executed; run {deploy}"
    if busy(status):
        return f"{head} is {status}: an operation is running; run make status again when it ends"
    if status in SETTLED:
        return f"{head} is {status} but its pipeline is gone (deleted outside CloudFormation?); see the stack's drift"
    reason = f" (first failure: {failure})" if failure else ""
    return f"pipeline {pipeline} not found in {region}: " + fix(status, stack_name, region, deploy) + reason


# --- rendering -------------------------------------------------------------------------------


def fit(text: str, width: int) -> str:
    """`text` cut to `width` characters, ending in '…' when cut."""
    if len(text) <= width:
        return text
    return text[: max(width - 1, 0)] + "…"


def _utc(when: datetime) -> datetime:
    return when.replace(tzinfo=timezone.utc) if when.tzinfo is None else when.astimezone(timezone.utc)


def _day(when: datetime | None) -> str:
    return _utc(when).strftime("%Y-%m-%d %H:%M") if when else "—"


def _clock(when: datetime | None) -> str:
    return _utc(when).strftime("%H:%M:%S") if when else "—"


def commit_message(summary: str | None) -> str:
    """The first line of a commit message from a revisionSummary (plain, or the JSON that
    GitHub via CodeStar/CodeConnections records: {"ProviderType": ..., "CommitMessage": ...})."""
    text = summary or ""
    if text.lstrip().startswith("{"):
        try:
            parsed = json.loads(text)
        except ValueError:
            parsed = None
        if isinstance(parsed, dict) and isinstance(parsed.get("CommitMessage"), str):
            text = parsed["CommitMessage"]
    lines = text.strip().splitlines()
    return lines[0].strip() if lines else ""


def _commit(execution: dict) -> str:
    revisions = execution.get("sourceRevisions") or []
    if not revisions:
        return "—"
    revision = revisions[0]
    return f"{revision.get('revisionId', '')[:7]} {commit_message(revision.get('revisionSummary'))}".strip()


def execution_lines(executions: list[dict], width: int) -> list[str]:
    """The latest executions, one line each: short id, status, start, commit."""
    head = f"  {'RUN':8}  {'STATUS':10}  {'STARTED (UTC)':16}  "
    rest = max(width - len(head), 8)
    lines = [head + "COMMIT"]
    for execution in executions:
        lines.append(
            f"  {execution['pipelineExecutionId'][:8]:8}  {fit(execution.get('status', '?'), 10):10}  "
            f"{_day(execution.get('startTime')):16}  {fit(_commit(execution), rest)}"
        )
    return lines


def _wrapped(text: str, indent: str, width: int, max_lines: int) -> list[str]:
    one_line = " ".join(text.split())
    return textwrap.wrap(
        one_line,
        width=max(width, len(indent) + 10),
        initial_indent=indent,
        subsequent_indent=indent,
        max_lines=max_lines,
        placeholder=" …",
        break_on_hyphens=False,
    )


def run_lines(runs: list[ActionRun], width: int) -> list[str]:
    """Each stage, then its actions with status, start and end (UTC), and a failed action's error."""
    lines = [f"  {'STAGE / ACTION':24}  {'STATUS':11}  {'START':8}  END"]
    stage = None
    for run in runs:
        if run.stage != stage:
            stage = run.stage
            lines.append(f"  {fit(stage, width - 2)}")
        status = run.status or NOT_STARTED
        lines.append(
            f"    {fit(run.action, 22):22}  {fit(status, 11):11}  {_clock(run.start):8}  "
            f"{_clock(run.end) if run.status in _ENDED or run.status is None else ''}".rstrip()
        )
        if run.error:
            lines.extend(_wrapped(f"error: {run.error}", "      ", width, max_lines=3))
    return lines


def approval_lines(approval: PendingApproval, region: str, pipeline: str, width: int) -> list[str]:
    """A pending approval, said plainly, with the console link approvers click."""
    since = f", since {_utc(approval.since):%H:%M} UTC" if approval.since else ""
    run = f" (run {approval.execution_id[:8]})" if approval.execution_id else ""
    lines = [
        fit(f"APPROVAL PENDING: {approval.action}{run}{since}", width),
        fit(f"  approve or reject it in the console (Review on the {approval.stage} stage):", width),
        pipeline_console_url(region, pipeline),
    ]
    if approval.summary:
        lines.extend(_wrapped(approval.summary, "  ", width, max_lines=4))
    return lines


def _stack_notes(endpoint: EndpointState, pad: str, width: int) -> list[str]:
    """What the endpoint stack's status means, when it is anything but a clean create or update."""
    status = endpoint.stack_status
    if status is None or status in ("CREATE_COMPLETE", "UPDATE_COMPLETE", "IMPORT_COMPLETE"):
        return []
    if busy(status):
        if endpoint.status is None:
            return []  # the head line says it is being deployed
        return [fit(f"{pad}stack {status}: the model above may be about to change", width)]
    if status in SETTLED:  # UPDATE_ROLLBACK_COMPLETE, IMPORT_ROLLBACK_COMPLETE
        return [fit(f"{pad}stack {status}: the last deploy failed and rolled back", width)]
    notes = _wrapped(f"failure: {endpoint.stack_failure}", pad, width, max_lines=3) if endpoint.stack_failure else []
    move = prepare_endpoint_stack(status, (), stack=endpoint.stack, region=endpoint.region)
    if move.step is Step.DELETE:
        text = (
            f"stack {endpoint.stack} is {status}: the next run's PrepareStack checks that it holds nothing, "
            "deletes it and deploys again"
        )
    else:
        text = move.say
    return notes + _wrapped(text, pad, width, max_lines=8)


def endpoint_lines(endpoint: EndpointState, width: int) -> list[str]:
    """An endpoint's status and the model it serves, or that it is not deployed (and why); then
    what its stack's status means, when it is not a clean create or update."""
    head = f"  {endpoint.env:4}  {endpoint.name}"
    pad = " " * 8
    if endpoint.status is None:
        status = endpoint.stack_status
        if status is None:
            state = "not deployed yet"
        elif busy(status):
            state = f"being deployed (stack {status})"
        elif status == "ROLLBACK_COMPLETE":
            state = "not deployed: its first deploy failed"
        elif status in SETTLED:
            state = f"not found, though its stack is {status} (deleted outside CloudFormation?)"
        else:
            state = f"not deployed (stack {status})"
        return [fit(f"{head}  {state}", width), *_stack_notes(endpoint, pad, width)]
    lines = [fit(f"{head}  {endpoint.status}, updated {_day(endpoint.modified)} UTC", width)]
    if endpoint.failure:
        lines.extend(_wrapped(f"failure: {endpoint.failure}", pad, width, max_lines=3))
    if endpoint.rolled_back:
        text = (
            f"serves config {endpoint.live_config}, not {endpoint.stack_config} (model "
            f"{endpoint.model_version or '?'}) that its stack deployed: SageMaker rolled the update back"
        )
        lines.extend(_wrapped(f"MISMATCH: {text}", pad, width, max_lines=3))
    elif endpoint.model_version or endpoint.model_data:
        lines.append(fit(f"{pad}model {endpoint.model_version or '?'}", width))
        if endpoint.model_data:
            lines.append(fit(f"{pad}data  {endpoint.model_data}", width))
    else:
        lines.append(fit(f"{pad}model unknown (no outputs on stack {endpoint.stack})", width))
    return lines + _stack_notes(endpoint, pad, width)


# --- the command -----------------------------------------------------------------------------


def show_status(
    config: PipelineConfig,
    session,
    echo: Callable[[str], None] = print,
    width: int = 80,
    branch: str | None = None,
) -> int:
    """Print the pipeline's latest runs, the newest run by action, a pending approval and the
    endpoints; returns 0. Raises AwsError with one line when AWS cannot answer. `branch`: the
    branch whose pipeline `config` describes (for_branch), named in the commands it suggests."""
    names = config.names
    pipeline = names.pipeline
    url = pipeline_console_url(config.region, pipeline)

    def say(text: str = "") -> None:
        echo(text if text == url else fit(text.rstrip(), width))

    with aws_errors():
        codepipeline = session.client("codepipeline", config=RETRIES)
        cloudformation = session.client("cloudformation", config=RETRIES)
        try:
            executions = latest_executions(codepipeline, pipeline)
        except ClientError as exc:
            if exc.response["Error"].get("Code") != "PipelineNotFoundException":
                raise
            stack = describe_stack(cloudformation, names.pipeline_stack)
            failure = creation_failure(cloudformation, stack) if stack else None
            raise AwsError(
                missing_pipeline(pipeline, config.region, names.pipeline_stack, stack, failure, branch)
            ) from None
        say(f"pipeline {pipeline} ({config.region})")
        if not executions:
            for line in NO_EXECUTIONS:
                say(f"  {line}")
        else:
            for line in execution_lines(executions, width):
                say(line)
            newest = executions[0]["pipelineExecutionId"]
            state = codepipeline.get_pipeline_state(name=pipeline)
            details = action_executions(codepipeline, pipeline, newest)
            say()
            say(f"run {newest[:8]}: {executions[0].get('status', '?')}")
            for line in run_lines(action_runs(state, details, newest), width):
                say(line)
            for approval in pending_approvals(state, details):
                say()
                for line in approval_lines(approval, config.region, pipeline, width):
                    say(line)
        sagemaker = session.client("sagemaker", config=RETRIES)
        say()
        say("endpoints")
        for env in config.environment_names:
            for line in endpoint_lines(endpoint_state(sagemaker, cloudformation, config, env), width):
                say(line)
    return 0
