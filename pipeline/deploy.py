"""`make deploy`: create or update a stack through a change set, as `sam deploy` does.

Any stack: a StackDeployment says which (name, region, template, tags), deploy_stack runs the
flow for it with a given session. deploy_pipeline is `make deploy`: the pipeline stack, then its
outputs and what is left to do by hand, and the training data seed (training_data.seed_dir),
uploaded only into an empty folder.

The flow decides, then does. `decide` picks the next move from the stack's status and the flags
(create, update, wait out a running operation, recreate a rolled-back first create, naming any
resource its rollback kept, or refuse a state only a human can fix); `after_review` picks what
follows the change set shown as a table (execute, discard, ask). Both are pure; the flow only carries their moves out: it stages a
template over CloudFormation's inline limit in S3, creates the change set, executes it and
streams the stack's events until it finishes. Every failure is an AwsError whose message is one
line for the user; a "no" at a prompt is Declined.
"""

from __future__ import annotations

import enum
import hashlib
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError, WaiterError

from pipeline.aws import (
    RETRIES,
    AwsError,
    aws_errors,
    connections_console_url,
    delete_stack,
    describe_stack,
    first_failure_in,
    is_aws_error,
    is_missing_stack,
    one_line,
    pipeline_console_url,
    stack_resources,
    stack_status,
)
from pipeline.branches import branch_config, for_branch
from pipeline.config import PipelineConfig
from pipeline.stacks.branch import SHARED
from pipeline.stackstate import left_behind, resources_from
from pipeline.synth import synthesize
from pipeline.tags import project_tags, tag_list

# CloudFormation's limits for a template passed inline (TemplateBody) and from S3 (TemplateURL).
INLINE_TEMPLATE_LIMIT = 51_200
URL_TEMPLATE_LIMIT = 1_000_000
# How CloudFormation says a change set is empty (change sets, and the older UpdateStack).
NO_CHANGES = ("didn't contain changes", "No updates are to be performed")
WIDTH = 80
STAGING_EXPIRY_DAYS = 30
YES_HINT = "re-run with --yes (make deploy ARGS=--yes)"
DRY_RUN_DONE = "dry run: nothing changed"
DECLINED = "nothing changed"


class Declined(Exception):
    """The user answered no at a prompt; nothing was changed (and "nothing changed" was said)."""


@dataclass(frozen=True)
class StackDeployment:
    """One stack to create or update: its name and region, the template, the tags and description
    its change sets carry, the capabilities it needs, and whether a deploy turns on its termination
    protection (not for the endpoint stacks, which the pipeline deploys without it)."""

    name: str
    region: str
    template_body: str
    tags: dict[str, str]
    description: str
    capabilities: tuple[str, ...] = ("CAPABILITY_IAM",)
    parameters: tuple[tuple[str, str], ...] = ()
    protect: bool = True


# --- deciding ----------------------------------------------------------------------------------


class Step(enum.Enum):
    """What deploy does next."""

    CREATE = "create the stack through a CREATE change set"
    UPDATE = "update the stack through an UPDATE change set"
    WAIT = "wait for the running operation to end, then look again"
    RECREATE = "delete the stack, then create it"
    EXECUTE = "execute the change set"
    STOP = "change nothing (a dry run)"
    ASK = "ask `question`; yes goes on with `then`, no is Declined"
    REFUSE = "stop with the one-line `error`"


@dataclass(frozen=True)
class Move:
    """A step, what to tell the user before it (`say`), and what an ASK asks or a REFUSE says."""

    step: Step
    say: str = ""
    question: str = ""
    then: Step | None = None
    error: str = ""


def busy(status: str) -> bool:
    """Another operation runs on the stack (a REVIEW_IN_PROGRESS stack only waits for a change set)."""
    return status.endswith("_IN_PROGRESS") and status != "REVIEW_IN_PROGRESS"


def decide(
    status: str | None,
    *,
    stack: str,
    region: str,
    dry_run: bool,
    yes: bool,
    interactive: bool,
    left_behind: Sequence[str] = (),
) -> Move:
    """The next move for a stack in `status` (None: it does not exist), before any change set.

    `left_behind`: for a rolled-back first create, the resources its rollback did not delete (a
    template older than RetainExceptOnCreate retained them); recreating the stack leaves them be.
    """
    if status in (None, "REVIEW_IN_PROGRESS"):  # REVIEW: an earlier create change set, never executed
        return Move(Step.CREATE)
    if busy(status):
        return Move(
            Step.WAIT, say=f"stack {stack} is {status}: another operation is running; waiting for it to end ..."
        )
    if status == "ROLLBACK_COMPLETE":
        say = (
            f"stack {stack} is ROLLBACK_COMPLETE: its first create failed and was rolled back, so it holds "
            "nothing and cannot be updated; it has to be deleted and created again."
        )
        if left_behind:
            say += (
                f" Its rollback kept {', '.join(left_behind)}: deleting the stack leaves them; remove them "
                "yourself if unused."
            )
        if dry_run:
            return Move(Step.STOP, say=say)
        if yes:
            return Move(Step.RECREATE, say=say)
        if interactive:
            return Move(Step.ASK, say=say, question="Delete it and create it again?", then=Step.RECREATE)
        return Move(
            Step.REFUSE,
            say=say,
            error=f"stack {stack} is ROLLBACK_COMPLETE; not a terminal, so not asking whether to delete and "
            f"recreate it: {YES_HINT}",
        )
    if status == "ROLLBACK_FAILED":
        return Move(
            Step.REFUSE,
            error=f"stack {stack} is ROLLBACK_FAILED (its first create failed, and so did the rollback): "
            "delete it (make destroy), then deploy again",
        )
    if status == "UPDATE_ROLLBACK_FAILED":
        return Move(
            Step.REFUSE,
            error=f"stack {stack} is UPDATE_ROLLBACK_FAILED: run `aws cloudformation continue-update-rollback "
            f"--stack-name {stack} --region {region}` (add --resources-to-skip LOGICAL_ID ... for resources that "
            "cannot roll back), wait for UPDATE_ROLLBACK_COMPLETE, then deploy again",
        )
    if status == "DELETE_FAILED":
        return Move(
            Step.REFUSE, error=f"stack {stack} is DELETE_FAILED: finish deleting it (make destroy), then deploy again"
        )
    return Move(Step.UPDATE)


def after_review(*, dry_run: bool, yes: bool, interactive: bool) -> Move:
    """What follows a change set shown to the user: execute it, or (anything else) discard it."""
    if dry_run:
        return Move(Step.STOP)
    if yes:
        return Move(Step.EXECUTE)
    if not interactive:
        return Move(Step.REFUSE, error=f"not a terminal, so not asking: {YES_HINT}")
    return Move(Step.ASK, question="Deploy these changes?", then=Step.EXECUTE)


# --- what the user reads -----------------------------------------------------------------------


def change_set_name(now: datetime | None = None) -> str:
    """A change set name that says who made it and when (UTC)."""
    return "sagemaker-cd-" + (now or datetime.now(timezone.utc)).strftime("%Y%m%d%H%M%S")


def _fit(text: str, width: int) -> str:
    if len(text) <= width:
        return text
    return text[: width - 1] + "…" if width > 1 else ""


def _duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    return f"{seconds // 60:2d}m{seconds % 60:02d}s"


def change_table(changes: list[dict]) -> list[str]:
    """The change set's resource changes as table lines (at most WIDTH columns) and a count line."""
    order = {"Add": 0, "Modify": 1, "Remove": 2}
    rows = sorted(
        (c["ResourceChange"] for c in changes if "ResourceChange" in c),
        key=lambda r: (order.get(r.get("Action", ""), 3), r.get("LogicalResourceId", "")),
    )
    header = ("Action", "Logical ID", "Type", "Replacement")
    cells = [
        (
            r.get("Action", ""),
            r.get("LogicalResourceId", ""),
            r.get("ResourceType", ""),
            r.get("Replacement", "") if r.get("Action") == "Modify" else "",
        )
        for r in rows
    ]
    action_w = max(len(c[0]) for c in [header, *cells])
    logical_w = max(len(c[1]) for c in [header, *cells])
    type_w = max(len(c[2]) for c in [header, *cells])
    room = WIDTH - action_w - len(header[3]) - 6  # three two-space gaps
    if logical_w + type_w > room:  # the narrower column keeps up to half; an ellipsis marks a cut
        narrow = min(logical_w, type_w, room // 2)
        if logical_w <= type_w:
            logical_w, type_w = narrow, room - narrow
        else:
            logical_w, type_w = room - narrow, narrow
    lines = [
        f"{_fit(a, action_w):<{action_w}}  {_fit(lid, logical_w):<{logical_w}}  {_fit(t, type_w):<{type_w}}  {r}".rstrip()
        for a, lid, t, r in [header, *cells]
    ]
    if not cells:
        lines.append("(no resource changes: outputs, tags or stack settings only)")
    added = sum(c[0] == "Add" for c in cells)
    modified = sum(c[0] == "Modify" for c in cells)
    replaced = sum(c[3] == "True" for c in cells)
    maybe = sum(c[3] == "Conditional" for c in cells)
    removed = sum(c[0] == "Remove" for c in cells)
    detail = [f"{replaced} with replacement"] * bool(replaced) + [f"{maybe} may be replaced"] * bool(maybe)
    modify = f"{modified} to modify" + (f" ({', '.join(detail)})" if detail else "")
    lines.append(f"{added} to add, {modify}, {removed} to remove")
    return lines


def event_line(event: dict, start: datetime) -> str:
    """One stack event: time since the deploy's first event, event time, resource, status, reason.

    Reasons are cut to fit WIDTH columns, except a failure's: that is the line the user needs.
    """
    when = event["Timestamp"]
    status = event.get("ResourceStatus", "")
    elapsed = _duration((when - start).total_seconds())
    line = f"[{elapsed}] {when.astimezone():%H:%M:%S} {event['LogicalResourceId']:<24} {status}"
    reason = one_line(event.get("ResourceStatusReason", ""))
    if reason and not status.endswith("_FAILED"):
        reason = _fit(reason, WIDTH - len(line) - 1)
    return f"{line} {reason}" if reason else line


# --- templates over the inline limit -------------------------------------------------------------


def stage_template(session: Any, deployment: StackDeployment, echo: Callable[[str], None]) -> str:
    """Upload the template to this account's staging bucket (made on first use); returns its TemplateURL.

    The bucket name is predictable, so another account could create it first: every call states the
    expected owner, and a bucket that is not ours stops the deploy instead of receiving the template.
    """
    data = deployment.template_body.encode()
    if len(data) > URL_TEMPLATE_LIMIT:
        raise AwsError(
            f"the template of stack {deployment.name} is {len(data)} bytes, over CloudFormation's limit of "
            f"{URL_TEMPLATE_LIMIT}"
        )
    account = session.client("sts", config=RETRIES).get_caller_identity()["Account"]
    region = deployment.region
    bucket = f"sagemaker-cd-templates-{account}-{region}"
    s3 = session.client("s3", config=RETRIES)
    not_ours = AwsError(
        f"template staging bucket {bucket} exists but is not accessible to account {account} "
        f"(owned by another account?); remove it or grant access, then deploy again"
    )
    try:
        s3.head_bucket(Bucket=bucket, ExpectedBucketOwner=account)
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code")
        if code in ("403", "Forbidden", "AccessDenied"):
            raise not_ours from None
        if code not in ("404", "NoSuchBucket", "NotFound"):
            raise
        _create_staging_bucket(s3, bucket, account, region, not_ours)
        echo(f"created template staging bucket {bucket} (objects expire after {STAGING_EXPIRY_DAYS} days)")
    key = f"{deployment.name}/{hashlib.sha256(data).hexdigest()[:16]}.json"
    s3.put_object(Bucket=bucket, Key=key, Body=data, ContentType="application/json", ExpectedBucketOwner=account)
    echo(
        f"template is {len(data)} bytes, over the {INLINE_TEMPLATE_LIMIT}-byte inline limit: "
        f"uploaded to s3://{bucket}/{key}"
    )
    return f"https://{bucket}.s3.{region}.amazonaws.com/{key}"


def _create_staging_bucket(s3: Any, bucket: str, account: str, region: str, not_ours: AwsError) -> None:
    where = {} if region == "us-east-1" else {"CreateBucketConfiguration": {"LocationConstraint": region}}
    try:
        s3.create_bucket(Bucket=bucket, **where)
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code")
        if code == "BucketAlreadyExists":
            raise not_ours from None
        if code != "BucketAlreadyOwnedByYou":  # a concurrent deploy made it: fine
            raise
    owner = {"ExpectedBucketOwner": account}
    s3.put_public_access_block(
        Bucket=bucket,
        PublicAccessBlockConfiguration={
            "BlockPublicAcls": True,
            "IgnorePublicAcls": True,
            "BlockPublicPolicy": True,
            "RestrictPublicBuckets": True,
        },
        **owner,
    )
    s3.put_bucket_encryption(
        Bucket=bucket,
        ServerSideEncryptionConfiguration={
            "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]
        },
        **owner,
    )
    s3.put_bucket_lifecycle_configuration(
        Bucket=bucket,
        LifecycleConfiguration={
            "Rules": [
                {
                    "ID": "expire-staged-templates",
                    "Status": "Enabled",
                    "Filter": {"Prefix": ""},
                    "Expiration": {"Days": STAGING_EXPIRY_DAYS},
                }
            ]
        },
        **owner,
    )


# --- doing ------------------------------------------------------------------------------------


@dataclass
class _Flow:
    """One run of deploy_stack: the stack, its clients and how to talk to the user."""

    deployment: StackDeployment
    session: Any
    cfn: Any
    echo: Callable[[str], None]
    confirm: Callable[[str], bool]
    sleep: Callable[[float], None]
    poll_seconds: float

    @property
    def name(self) -> str:
        return self.deployment.name

    def answer(self, move: Move) -> Step:
        """The step a move comes to: an ASK asked (no: Declined), a REFUSE raised."""
        if move.step is Step.ASK:
            if not self.confirm(move.question):
                self.echo(DECLINED)
                raise Declined(DECLINED)
            if move.then is None:
                raise ValueError(f"an ASK move must say what a yes goes on with: {move}")
            return move.then
        if move.step is Step.REFUSE:
            raise AwsError(move.error)
        return move.step

    def settle(self, flags: dict[str, bool]) -> Step:
        """Carry out `decide`'s moves until the stack can take a change set: CREATE, UPDATE or STOP."""
        waiting_on = None
        while True:
            status = stack_status(self.cfn, self.name)
            kept = []
            if status == "ROLLBACK_COMPLETE":
                kept = [r.label for r in left_behind(resources_from(stack_resources(self.cfn, self.name)))]
            move = decide(status, stack=self.name, region=self.deployment.region, left_behind=kept, **flags)
            if move.step is Step.WAIT:
                if status != waiting_on:
                    waiting_on = status
                    self.echo(move.say)
                self.sleep(self.poll_seconds)
                continue
            if move.say:
                self.echo(move.say)
            step = self.answer(move)
            if step is Step.RECREATE:
                delete_stack(self.cfn, self.name, self.echo, poll_seconds=self.poll_seconds, max_attempts=720)
                return Step.CREATE
            return step

    def parameters(self) -> dict[str, list[dict[str, str]]]:
        """The Parameters argument of create_change_set, when the template takes any."""
        given = [{"ParameterKey": key, "ParameterValue": value} for key, value in self.deployment.parameters]
        return {"Parameters": given} if given else {}

    def template(self) -> dict[str, str]:
        """The template argument of create_change_set: inline, or staged in S3 when too big for that."""
        if len(self.deployment.template_body.encode()) > INLINE_TEMPLATE_LIMIT:
            return {"TemplateURL": stage_template(self.session, self.deployment, self.echo)}
        return {"TemplateBody": self.deployment.template_body}

    def create_change_set(self, kind: str, template: dict[str, Any]) -> tuple[str, dict | None]:
        """Create the change set and wait for it; (its name, its first page), or no page when empty."""
        name = change_set_name()
        self.echo(f"creating change set {name} ({kind}) for stack {self.name} in {self.deployment.region} ...")
        self.cfn.create_change_set(
            StackName=self.name,
            ChangeSetName=name,
            ChangeSetType=kind,
            Capabilities=list(self.deployment.capabilities),
            Tags=tag_list(self.deployment.tags),
            Description=self.deployment.description,
            **self.parameters(),
            **template,
        )
        try:
            self.cfn.get_waiter("change_set_create_complete").wait(
                ChangeSetName=name, StackName=self.name, WaiterConfig={"Delay": self.poll_seconds, "MaxAttempts": 120}
            )
        except WaiterError as exc:
            response = exc.last_response or {}
            if "Error" in response:
                err = response["Error"]
                raise AwsError(one_line(f"DescribeChangeSet: {err.get('Code')}: {err.get('Message')}")) from None
            reason = one_line(response.get("StatusReason") or str(exc))
            if response.get("Status") == "FAILED" and any(text in reason for text in NO_CHANGES):
                self.cfn.delete_change_set(ChangeSetName=name, StackName=self.name)
                return name, None
            raise AwsError(f"change set {name} for stack {self.name} failed: {reason}") from None
        return name, self.cfn.describe_change_set(ChangeSetName=name, StackName=self.name)

    def changes(self, change_set: str, first_page: dict) -> list[dict]:
        """Every change of the change set (describe_change_set pages)."""
        changes, page = list(first_page.get("Changes", [])), first_page
        while page.get("NextToken"):
            page = self.cfn.describe_change_set(
                ChangeSetName=change_set, StackName=self.name, NextToken=page["NextToken"]
            )
            changes += page.get("Changes", [])
        return changes

    def review(self, change_set: str, kind: str, flags: dict[str, bool]) -> bool:
        """Carry out `after_review`'s move: True to execute; otherwise the change set is discarded."""
        executing = False
        try:
            executing = self.answer(after_review(**flags)) is Step.EXECUTE
        finally:  # also on Ctrl-C or end of input at the prompt: leave nothing behind
            if not executing:
                self.discard(change_set, kind)
        if not executing:
            self.echo(DRY_RUN_DONE)
        return executing

    def discard(self, change_set: str, kind: str) -> None:
        """Delete the change set, and for a new stack the empty REVIEW_IN_PROGRESS stack it made."""
        self.cfn.delete_change_set(ChangeSetName=change_set, StackName=self.name)
        if kind == "CREATE":
            self.cfn.delete_stack(StackName=self.name)

    def new_events(self, since: datetime, seen: set[str]) -> list[dict]:
        """Events not shown yet from `since` (the change set's creation, CloudFormation's clock), oldest first."""
        fresh: list[dict] = []
        kwargs = {"StackName": self.name}
        while True:
            try:
                page = self.cfn.describe_stack_events(**kwargs)
            except ClientError as exc:
                if is_missing_stack(exc):
                    raise AwsError(f"stack {self.name} was deleted while deploying") from None
                raise
            older = False
            for event in page["StackEvents"]:  # newest first
                if event["EventId"] in seen or event["Timestamp"] < since:
                    older = True
                    break
                fresh.append(event)
            if older or not page.get("NextToken"):
                break
            kwargs["NextToken"] = page["NextToken"]
        seen.update(e["EventId"] for e in fresh)
        fresh = [e for e in reversed(fresh) if e.get("ResourceStatus") != "REVIEW_IN_PROGRESS"]
        return sorted(fresh, key=lambda e: e["Timestamp"])

    def follow(self, since: datetime) -> tuple[dict, list[dict]]:
        """Print the stack's events until it stops; (the final stack, this execution's events)."""
        seen: set[str] = set()
        events: list[dict] = []
        settled_polls = 0
        while True:
            stack = describe_stack(self.cfn, self.name)
            if stack is None:
                raise AwsError(f"stack {self.name} was deleted while deploying")
            for event in self.new_events(since, seen):
                events.append(event)
                self.echo(event_line(event, events[0]["Timestamp"]))
            status = stack["StackStatus"]
            if not busy(status) and status != "REVIEW_IN_PROGRESS":
                # describe_stacks may still show the state before the execution began: stop on the
                # stack's own event for this status (or, should it never come, after three polls).
                settled_polls += 1
                own = any(e["LogicalResourceId"] == self.name and e.get("ResourceStatus") == status for e in events)
                if own or settled_polls >= 3:
                    return stack, events
            else:
                settled_polls = 0
            self.sleep(self.poll_seconds)

    def run(self, flags: dict[str, bool]) -> dict | None:
        """Settle, change set, review, execute, follow; the final stack, or None when nothing was done."""
        step = self.settle(flags)
        if step is Step.STOP:
            self.echo(DRY_RUN_DONE)
            return None
        kind = "CREATE" if step is Step.CREATE else "UPDATE"
        change_set, first_page = self.create_change_set(kind, self.template())
        if first_page is None:
            self.echo(f"stack {self.name} is up to date: nothing to change")
            return None
        for line in change_table(self.changes(change_set, first_page)):
            self.echo(line)
        if not self.review(change_set, kind, flags):
            return None

        self.echo(f"executing change set {change_set} ...")
        self.cfn.execute_change_set(ChangeSetName=change_set, StackName=self.name, ClientRequestToken=change_set)
        stack, events = self.follow(first_page["CreationTime"])
        status = stack["StackStatus"]
        if status not in ("CREATE_COMPLETE", "UPDATE_COMPLETE"):
            raise AwsError(f"stack {self.name} failed ({status}): {first_failure_in(events)}")
        took = (events[-1]["Timestamp"] - events[0]["Timestamp"]).total_seconds() if events else None
        self.echo(f"stack {self.name}: {status}" + (f" in {_duration(took).strip()}" if took is not None else ""))
        if self.deployment.protect and not stack.get("EnableTerminationProtection"):
            self.cfn.update_termination_protection(StackName=self.name, EnableTerminationProtection=True)
            self.echo(f"termination protection enabled on {self.name} (make destroy lifts it)")
        return stack


def deploy_stack(
    deployment: StackDeployment,
    session: Any,
    *,
    echo: Callable[[str], None] = print,
    confirm: Callable[[str], bool] = lambda question: False,
    yes: bool = False,
    dry_run: bool = False,
    interactive: bool = False,
    sleep: Callable[[float], None] = time.sleep,
    poll_seconds: float = 5,
) -> dict | None:
    """Create or update any stack through a change set, shown and confirmed first, with `session`.

    Returns the final stack (CREATE_COMPLETE or UPDATE_COMPLETE, termination protection on), or
    None when nothing was done (up to date, a dry run). `confirm` is asked only when `interactive`
    and not `yes`; a no raises Declined. Any failure raises AwsError (one line).
    """
    with aws_errors():
        flow = _Flow(
            deployment=deployment,
            session=session,
            cfn=session.client("cloudformation", config=RETRIES),
            echo=echo,
            confirm=confirm,
            sleep=sleep,
            poll_seconds=poll_seconds,
        )
        return flow.run({"dry_run": dry_run, "yes": yes, "interactive": interactive})


# --- the pipeline stack ------------------------------------------------------------------------


def template_body(config: PipelineConfig, branch: str | None = None) -> str:
    """The pipeline template (or a branch pipeline's) as compact JSON (what CloudFormation
    receives, inline or from S3)."""
    return json.dumps(synthesize(config, branch).templates["pipeline.json"], separators=(",", ":"), sort_keys=True)


def pipeline_deployment(config: PipelineConfig) -> StackDeployment:
    """The pipeline stack of `config` as a StackDeployment."""
    return StackDeployment(
        name=config.names.pipeline_stack,
        region=config.region,
        template_body=template_body(config),
        tags=project_tags(config),
        description=f"make deploy of the {config.project} pipeline",
    )


# --- a branch pipeline's stack -----------------------------------------------------------------


def shared_parameters(config: PipelineConfig, main: dict | None) -> tuple[tuple[str, str], ...]:
    """The branch stack's parameters from the main pipeline stack (as describe_stacks returns it, None:
    missing): the outputs naming its buckets, key and connection. AwsError (one line) when it has none."""
    stack = config.names.pipeline_stack
    if main is None:
        raise AwsError(
            f"the main pipeline stack {stack} does not exist in {config.region}: a branch pipeline shares "
            "its buckets and key; run make deploy first"
        )
    outputs = {o["OutputKey"]: o["OutputValue"] for o in main.get("Outputs", [])}
    missing = [output for output in SHARED.values() if output not in outputs]
    if missing:
        raise AwsError(
            f"the main pipeline stack {stack} ({main.get('StackStatus')}) has no output {', '.join(missing)}: "
            "run make deploy to bring it up to date first"
        )
    return tuple((parameter, outputs[output]) for parameter, output in SHARED.items())


def branch_deployment(config: PipelineConfig, branch: str, shared: tuple[tuple[str, str], ...]) -> StackDeployment:
    """`branch`'s pipeline stack as a StackDeployment, given the main stack's shared resources."""
    ours = branch_config(config, branch)
    return StackDeployment(
        name=ours.names.pipeline_stack,
        region=ours.region,
        template_body=template_body(config, branch),
        tags=project_tags(ours),
        description=f"make deploy --branch of the {config.project} pipeline for {branch}"[:1024],
        parameters=shared,
    )


def _connection_notice(session: Any, outputs: dict[str, str], region: str) -> list[str]:
    connection = outputs.get("GitHubConnectionArn")
    if not connection:
        return []
    try:
        connections = session.client("codestar-connections", config=RETRIES)
        status = connections.get_connection(ConnectionArn=connection)["Connection"]["ConnectionStatus"]
    except Exception as exc:  # a hint after a deploy that worked: no AWS failure may fail the deploy
        if not is_aws_error(exc):
            raise
        return []
    if status != "PENDING":
        return []
    return [
        f"The GitHub connection is PENDING: complete it at {connections_console_url(region)} (Update pending connection).",
        "The pipeline will not start until the connection is AVAILABLE.",
    ]


def pipeline_report(config: PipelineConfig, stack: dict, session: Any) -> list[str]:
    """After a deploy: the stack's outputs, the pipeline's console URL and what is left to do by hand."""
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}
    lines = [f"  {key:26} {outputs[key]}" for key in sorted(outputs)]
    pipeline = outputs.get("PipelineName", config.names.pipeline)
    lines.append(f"pipeline: {pipeline_console_url(config.region, pipeline)}")
    return lines + _connection_notice(session, outputs, config.region)


# --- the training data seed ----------------------------------------------------------------------


def seed_files(folder: Path) -> list[tuple[Path, str]]:
    """The files of a seed folder and their keys relative to it ('/'-separated), sorted."""
    return [(path, path.relative_to(folder).as_posix()) for path in sorted(folder.rglob("*")) if path.is_file()]


def seed_training_data(
    config: PipelineConfig,
    stack: dict | None,
    root: Path,
    session: Any,
    *,
    echo: Callable[[str], None] = print,
    dry_run: bool = False,
) -> None:
    """Upload training_data.seed_dir's files to the model bucket's training data folder (named by
    the pipeline stack's ModelBucketName output), only when that folder holds no object: a user's
    data is never overwritten or deleted. Says what it did in one line; a dry run makes no call."""
    data, prefix = config.training_data, config.training_data_key_prefix
    if data.seed_dir is None or prefix is None:
        return
    if dry_run:
        echo(f"dry run: training data seed not checked: {data.seed_dir}/ goes to {prefix} only when that is empty")
        return
    with aws_errors():
        cfn = session.client("cloudformation", config=RETRIES)
        found = stack or describe_stack(cfn, config.names.pipeline_stack) or {}
        outputs = {o["OutputKey"]: o["OutputValue"] for o in found.get("Outputs", [])}
        bucket = outputs.get("ModelBucketName")
        if not bucket:
            raise AwsError(
                f"the pipeline stack {config.names.pipeline_stack} has no output ModelBucketName: "
                f"cannot seed the training data from {data.seed_dir}/"
            )
        uri = f"s3://{bucket}/{prefix}"
        s3 = session.client("s3", config=RETRIES)
        if s3.list_objects_v2(Bucket=bucket, Prefix=prefix, MaxKeys=1).get("KeyCount", 0):
            echo(
                f"training data: {uri} already holds data, so {data.seed_dir}/ is not uploaded "
                "(make deploy never overwrites or deletes it)"
            )
            return
        files = seed_files(root / data.seed_dir)
        for path, name in files:
            s3.put_object(Bucket=bucket, Key=prefix + name, Body=path.read_bytes())
    echo(f"training data: {uri} was empty: seeded it with {len(files)} file(s) from {data.seed_dir}/")


def deploy_pipeline(
    config: PipelineConfig,
    *,
    branch: str | None = None,
    root: Path = Path("."),
    session: Any,
    echo: Callable[[str], None] = print,
    confirm: Callable[[str], bool] = lambda question: False,
    yes: bool = False,
    dry_run: bool = False,
    interactive: bool = False,
    sleep: Callable[[float], None] = time.sleep,
    poll_seconds: float = 5,
) -> int:
    """`make deploy`: create or update the pipeline stack through a change set, shown and confirmed first.
    With `branch` (checked with branch_problem_for first): that branch's pipeline stack instead,
    given the main stack's buckets, key and connection. Then (not for a branch) the training data
    seed, from `root`/training_data.seed_dir.

    Returns 0 when deployed, up to date or a dry run; 1 when the user declined. `confirm` is asked
    only when `interactive` and not `yes`. Raises AwsError (one line) on any failure.
    """
    try:
        if branch:
            with aws_errors():
                main = describe_stack(session.client("cloudformation", config=RETRIES), config.names.pipeline_stack)
            deployment = branch_deployment(config, branch, shared_parameters(config, main))
        else:
            deployment = pipeline_deployment(config)
        stack = deploy_stack(
            deployment,
            session,
            echo=echo,
            confirm=confirm,
            yes=yes,
            dry_run=dry_run,
            interactive=interactive,
            sleep=sleep,
            poll_seconds=poll_seconds,
        )
    except Declined:
        return 1
    if stack is not None:
        for line in pipeline_report(for_branch(config, branch), stack, session):
            echo(line)
    if not branch:  # a branch pipeline trains on the main pipeline's data
        seed_training_data(config, stack, root, session, echo=echo, dry_run=dry_run)
    return 0
