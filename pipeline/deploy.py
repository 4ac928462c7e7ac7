"""`make deploy`: create or update the pipeline stack through a change set, as `sam deploy` does.

The flow: synthesize the template; settle the stack's current state (wait out a running
operation, recreate a failed first create, refuse states only a human can fix); stage the template
in S3 when it is over CloudFormation's inline limit; create a change set and show it as a table;
ask; execute it and stream the stack's events until it finishes; report the outputs and what is
left to do by hand. Every failure is an AwsError whose message is one line for the user.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone

from botocore.exceptions import BotoCoreError, ClientError, WaiterError

from pipeline.aws import (
    RETRIES,
    AwsError,
    aws_errors,
    connections_console_url,
    delete_stack,
    describe_stack,
    first_failure_in,
    is_missing_stack,
    one_line,
    pipeline_console_url,
)
from pipeline.config import PipelineConfig
from pipeline.synth import synthesize

# CloudFormation's limits for a template passed inline (TemplateBody) and from S3 (TemplateURL).
INLINE_TEMPLATE_LIMIT = 51_200
URL_TEMPLATE_LIMIT = 1_000_000
# How CloudFormation says a change set is empty (change sets, and the older UpdateStack).
NO_CHANGES = ("didn't contain changes", "No updates are to be performed")
WIDTH = 80
STAGING_EXPIRY_DAYS = 30
YES_HINT = "re-run with --yes (make deploy ARGS=--yes)"


def template_body(config: PipelineConfig) -> str:
    """The pipeline template as compact JSON (what CloudFormation receives, inline or from S3)."""
    return json.dumps(synthesize(config).templates["pipeline.json"], separators=(",", ":"), sort_keys=True)


def change_set_name(now: datetime | None = None) -> str:
    """A change set name that says who made it and when (UTC)."""
    return "sagemaker-cd-" + (now or datetime.now(timezone.utc)).strftime("%Y%m%d%H%M%S")


def _busy(status: str) -> bool:
    """Another operation runs on the stack (a REVIEW_IN_PROGRESS stack only waits for a change set)."""
    return status.endswith("_IN_PROGRESS") and status != "REVIEW_IN_PROGRESS"


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


def _connection_notice(session, outputs: dict[str, str], region: str) -> list[str]:
    connection = outputs.get("GitHubConnectionArn")
    if not connection:
        return []
    try:
        status = session.client("codestar-connections", config=RETRIES).get_connection(ConnectionArn=connection)[
            "Connection"
        ]["ConnectionStatus"]
    except (ClientError, BotoCoreError):
        return []
    if status != "PENDING":
        return []
    return [
        f"The GitHub connection is PENDING: complete it at {connections_console_url(region)} (Update pending connection).",
        "The pipeline will not start until the connection is AVAILABLE.",
    ]


def stage_template(session, config: PipelineConfig, body: str, echo: Callable[[str], None]) -> str:
    """Upload the template to this account's staging bucket (made on first use); returns its TemplateURL.

    The bucket name is predictable, so another account could create it first: every call states the
    expected owner, and a bucket that is not ours stops the deploy instead of receiving the template.
    """
    data = body.encode()
    if len(data) > URL_TEMPLATE_LIMIT:
        raise AwsError(
            f"the pipeline template is {len(data)} bytes, over CloudFormation's limit of {URL_TEMPLATE_LIMIT}"
        )
    account = session.client("sts", config=RETRIES).get_caller_identity()["Account"]
    region = config.region
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
    key = f"{config.project}/pipeline-{hashlib.sha256(data).hexdigest()[:16]}.json"
    s3.put_object(Bucket=bucket, Key=key, Body=data, ContentType="application/json", ExpectedBucketOwner=account)
    echo(
        f"template is {len(data)} bytes, over the {INLINE_TEMPLATE_LIMIT}-byte inline limit: "
        f"uploaded to s3://{bucket}/{key}"
    )
    return f"https://{bucket}.s3.{region}.amazonaws.com/{key}"


def _create_staging_bucket(s3, bucket: str, account: str, region: str, not_ours: AwsError) -> None:
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


@dataclass
class _Deployment:
    """One run of deploy_pipeline: the stack, its client and how to talk to the user."""

    config: PipelineConfig
    session: object
    cfn: object
    echo: Callable[[str], None]
    sleep: Callable[[float], None]
    poll_seconds: float

    @property
    def name(self) -> str:
        return self.config.names.pipeline_stack

    def settled_stack(self) -> dict | None:
        """The stack once no other operation runs on it (None when it does not exist)."""
        waiting_on = None
        while True:
            stack = describe_stack(self.cfn, self.name)
            if stack is None or not _busy(stack["StackStatus"]):
                return stack
            if stack["StackStatus"] != waiting_on:
                waiting_on = stack["StackStatus"]
                self.echo(f"stack {self.name} is {waiting_on}: another operation is running; waiting for it to end ...")
            self.sleep(self.poll_seconds)

    def create_change_set(self, kind: str, template: dict[str, str]) -> tuple[str, dict | None]:
        """Create the change set and wait for it; (its name, its first page), or no page when empty."""
        name = change_set_name()
        tags = {**self.config.tags, "sagemaker-cd:project": self.config.project}
        self.echo(f"creating change set {name} ({kind}) for stack {self.name} in {self.config.region} ...")
        self.cfn.create_change_set(
            StackName=self.name,
            ChangeSetName=name,
            ChangeSetType=kind,
            Capabilities=["CAPABILITY_IAM"],
            Tags=[{"Key": k, "Value": v} for k, v in tags.items()],
            Description=f"make deploy of the {self.config.project} pipeline",
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

    def discard(self, change_set: str, kind: str) -> None:
        """Delete the change set, and for a new stack the empty REVIEW_IN_PROGRESS stack it made."""
        self.cfn.delete_change_set(ChangeSetName=change_set, StackName=self.name)
        if kind == "CREATE":
            self.cfn.delete_stack(StackName=self.name)

    def new_events(self, since: datetime, seen: set[str]) -> list[dict]:
        """Events not shown yet from `since` (the change set's creation, CloudFormation's clock), oldest first."""
        fresh, kwargs = [], {"StackName": self.name}
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
            if not _busy(status) and status != "REVIEW_IN_PROGRESS":
                # describe_stacks may still show the state before the execution began: stop on the
                # stack's own event for this status (or, should it never come, after three polls).
                settled_polls += 1
                own = any(e["LogicalResourceId"] == self.name and e.get("ResourceStatus") == status for e in events)
                if own or settled_polls >= 3:
                    return stack, events
            else:
                settled_polls = 0
            self.sleep(self.poll_seconds)

    def report(self, stack: dict) -> None:
        """Outputs, the pipeline's console URL and what is left to do by hand."""
        outputs = {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}
        for key in sorted(outputs):
            self.echo(f"  {key:26} {outputs[key]}")
        region = self.config.region
        pipeline = outputs.get("PipelineName", self.config.names.pipeline)
        self.echo(f"pipeline: {pipeline_console_url(region, pipeline)}")
        for line in _connection_notice(self.session, outputs, region):
            self.echo(line)

    def run(self, *, confirm: Callable[[str], bool], yes: bool, dry_run: bool, interactive: bool) -> int:
        body = template_body(self.config)
        name = self.name
        stack = self.settled_stack()
        status = stack["StackStatus"] if stack else None
        if status == "ROLLBACK_COMPLETE":
            self.echo(
                f"stack {name} is ROLLBACK_COMPLETE: its first create failed and was rolled back, so it holds "
                "nothing and cannot be updated; it has to be deleted and created again."
            )
            if dry_run:
                self.echo("dry run: nothing changed")
                return 0
            if not yes:
                if not interactive:
                    raise AwsError(
                        f"stack {name} is ROLLBACK_COMPLETE; not a terminal, so not asking whether to delete and "
                        f"recreate it: {YES_HINT}"
                    )
                if not confirm("Delete it and create it again?"):
                    self.echo("nothing changed")
                    return 1
            delete_stack(self.cfn, name, self.echo, poll_seconds=self.poll_seconds, max_attempts=720)
            status = None
        elif status == "ROLLBACK_FAILED":
            raise AwsError(
                f"stack {name} is ROLLBACK_FAILED (its first create failed, and so did the rollback): "
                "delete it (make destroy), then deploy again"
            )
        elif status == "UPDATE_ROLLBACK_FAILED":
            raise AwsError(
                f"stack {name} is UPDATE_ROLLBACK_FAILED: run `aws cloudformation continue-update-rollback "
                f"--stack-name {name} --region {self.config.region}` (add --resources-to-skip LOGICAL_ID ... for "
                "resources that cannot roll back), wait for UPDATE_ROLLBACK_COMPLETE, then deploy again"
            )
        elif status == "DELETE_FAILED":
            raise AwsError(f"stack {name} is DELETE_FAILED: finish deleting it (make destroy), then deploy again")
        kind = "CREATE" if status in (None, "REVIEW_IN_PROGRESS") else "UPDATE"

        if len(body.encode()) > INLINE_TEMPLATE_LIMIT:
            template = {"TemplateURL": stage_template(self.session, self.config, body, self.echo)}
        else:
            template = {"TemplateBody": body}
        change_set, first_page = self.create_change_set(kind, template)
        if first_page is None:
            self.echo(f"stack {name} is up to date: nothing to change")
            return 0
        for line in change_table(self.changes(change_set, first_page)):
            self.echo(line)

        if dry_run:
            self.discard(change_set, kind)
            self.echo("dry run: nothing changed")
            return 0
        if not yes:
            if not interactive:
                self.discard(change_set, kind)
                raise AwsError(f"not a terminal, so not asking: {YES_HINT}")
            try:
                approved = confirm("Deploy these changes?")
            except BaseException:  # Ctrl-C or end of input at the prompt: leave nothing behind either
                self.discard(change_set, kind)
                raise
            if not approved:
                self.discard(change_set, kind)
                self.echo("nothing changed")
                return 1

        self.echo(f"executing change set {change_set} ...")
        self.cfn.execute_change_set(ChangeSetName=change_set, StackName=name, ClientRequestToken=change_set)
        stack, events = self.follow(first_page["CreationTime"])
        status = stack["StackStatus"]
        if status not in ("CREATE_COMPLETE", "UPDATE_COMPLETE"):
            raise AwsError(f"stack {name} failed ({status}): {first_failure_in(events)}")
        took = (events[-1]["Timestamp"] - events[0]["Timestamp"]).total_seconds() if events else None
        self.echo(f"stack {name}: {status}" + (f" in {_duration(took).strip()}" if took is not None else ""))
        if not stack.get("EnableTerminationProtection"):
            self.cfn.update_termination_protection(StackName=name, EnableTerminationProtection=True)
            self.echo(f"termination protection enabled on {name} (make destroy lifts it)")
        self.report(stack)
        return 0


def deploy_pipeline(
    config: PipelineConfig,
    *,
    session,
    echo: Callable[[str], None] = print,
    confirm: Callable[[str], bool] = lambda question: False,
    yes: bool = False,
    dry_run: bool = False,
    interactive: bool = False,
    sleep: Callable[[float], None] = time.sleep,
    poll_seconds: float = 5,
) -> int:
    """Create or update the pipeline stack through a change set, shown and confirmed first.

    Returns 0 when deployed, up to date or a dry run; 1 when the user declined. `confirm` is asked
    only when `interactive` and not `yes`. Raises AwsError (one line) on any failure.
    """
    with aws_errors():
        deployment = _Deployment(
            config=config,
            session=session,
            cfn=session.client("cloudformation", config=RETRIES),
            echo=echo,
            sleep=sleep,
            poll_seconds=poll_seconds,
        )
        return deployment.run(confirm=confirm, yes=yes, dry_run=dry_run, interactive=interactive)
