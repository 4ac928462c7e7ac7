"""The UpdatePipeline action: update the pipeline's own stack from the commit, as CDK Pipelines' SelfMutate does.

Runs right after Source, in CodeBuild (`python -m scripts.self_update`), and from a laptop with the
same arguments. It synthesizes the commit's pipeline template exactly as `make deploy` does
(pipeline.deploy.template_body), creates an UPDATE change set on the pipeline stack (keeping any
parameter's previous value) and decides, from the change set alone (`decide`, a pure table):

- nothing to change: delete the change set; the run goes on to Build (exit 0);
- a change that removes a stateful resource or may replace it (Replacement True or Conditional):
  delete the change set and fail in one line naming it, so the run stops before it can lose a
  bucket, the key, the connection or the pipeline itself; someone reviews it with `make deploy`;
- the same for any change to an IAM resource, the key, a bucket, the connection or the
  UpdatePipeline step's own resources, and for a pipeline with fewer manual approvals than the
  deployed one (GetTemplate against the commit's template): the step's role cannot make the first
  kind anyway, and the last is an honest-mistake guard, not a boundary (README: Self-update);
- anything else: execute it and follow the stack's events until it settles.

After an executed update CodePipeline takes over: a pipeline whose definition changed under a
running execution marks that execution Cancelled ("the pipeline's definition was updated before
the pipeline execution could be completed", CodePipeline API reference, PipelineExecution.status),
and the stack's RestartExecutionOnUpdate starts a new execution on the new definition. So this
script exits 1 with a one-line "updated, restarting" reason: should the cancellation come late, the
old definition's run still stops here instead of training on a pipeline that is no longer current.
"""

from __future__ import annotations

import argparse
import enum
import hashlib
import json
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from pipeline.aws import RETRIES, AwsError, describe_stack, first_failure_in, session_for
from pipeline.config import load_config
from pipeline.deploy import (
    INLINE_TEMPLATE_LIMIT,
    URL_TEMPLATE_LIMIT,
    StackDeployment,
    _Flow,
    busy,
    pipeline_deployment,
)
from scripts.common import StageFailure, one_line_errors

# Resources whose loss or replacement loses data or needs a human: models and artifacts (buckets),
# what they are encrypted with (the key), subscriptions (topics), the authorised source connection
# and the pipeline with its history. A self-update never removes or replaces one of these.
STATEFUL_TYPES = frozenset(
    {
        "AWS::S3::Bucket",
        "AWS::KMS::Key",
        "AWS::SNS::Topic",
        "AWS::CodeStarConnections::Connection",
        "AWS::CodeConnections::Connection",
        "AWS::CodePipeline::Pipeline",
        # model.container's images.
        "AWS::ECR::Repository",
    }
)
# Resource types a self-update leaves alone whatever the change (add, modify or remove): who may do
# what (IAM), the key, buckets and their policies, the source connection. The UpdatePipeline role
# holds no permission to change them anyway; refusing here says why in one line before CloudFormation
# would fail half-way.
HUMAN_ONLY_PREFIXES = ("AWS::IAM::", "AWS::KMS::", "AWS::S3::")
# The image repository too: the UpdatePipeline role holds no ECR permission (adding model.container,
# or changing keep_images, is a make deploy).
HUMAN_ONLY_TYPES = frozenset(
    {"AWS::CodeStarConnections::Connection", "AWS::CodeConnections::Connection", "AWS::ECR::Repository"}
)
# The UpdatePipeline step's own resources (project, role, log group: logical IDs `UpdatePipeline*`,
# pipeline.steps.BuildStep): a commit cannot change the updater itself.
SELF_PREFIX = "UpdatePipeline"
REPLACING = ("True", "Conditional")
# States an UPDATE change set can start from; any other is for `make deploy` (or a human) to settle.
UPDATABLE = frozenset(
    {"CREATE_COMPLETE", "UPDATE_COMPLETE", "UPDATE_ROLLBACK_COMPLETE", "IMPORT_COMPLETE", "IMPORT_ROLLBACK_COMPLETE"}
)
# How long the action waits for another operation on the stack to end (within its project's
# UPDATE_TIMEOUT_MINUTES, which also covers the update it may then make).
SETTLE_WAIT_MINUTES = 20
UPDATED = "pipeline stack updated; CodePipeline restarts the run on the new definition, so this run stops here"
BY_HAND = "(review and deploy it by hand with make deploy)"


class Next(enum.Enum):
    """What the self-update does after looking at the change set."""

    CONTINUE = "nothing to change: discard the change set, go on with this run"
    REFUSE = "discard the change set and stop the run with `reason`"
    EXECUTE = "execute the change set"


@dataclass(frozen=True)
class Decision:
    """The next move and the one line that says why."""

    next: Next
    reason: str


def _label(rc: dict) -> str:
    return f"{rc.get('LogicalResourceId')} ({rc.get('ResourceType')})"


def risky(changes: Sequence[dict], stateful_types: frozenset[str] = STATEFUL_TYPES) -> list[str]:
    """`LogicalId (Type) removed|replaced|may be replaced` for each change that loses a stateful resource."""
    found = []
    for change in changes:
        rc = change.get("ResourceChange")
        if not rc or rc.get("ResourceType") not in stateful_types:
            continue
        if rc.get("Action") == "Remove":
            found.append(f"{_label(rc)} removed")
        elif rc.get("Action") == "Modify" and rc.get("Replacement") in REPLACING:
            found.append(f"{_label(rc)} {'replaced' if rc['Replacement'] == 'True' else 'may be replaced'}")
    return found


def human_only(changes: Sequence[dict]) -> list[str]:
    """`LogicalId (Type) added|modified|removed` for each change to IAM, the key, a bucket, the
    connection or the UpdatePipeline step itself: those are for `make deploy`, whatever the change."""
    found = []
    for change in changes:
        rc = change.get("ResourceChange")
        if not rc:
            continue
        kind, logical_id = rc.get("ResourceType") or "", rc.get("LogicalResourceId") or ""
        if kind.startswith(HUMAN_ONLY_PREFIXES) or kind in HUMAN_ONLY_TYPES or logical_id.startswith(SELF_PREFIX):
            done = {"Add": "added", "Remove": "removed", "Modify": "modified"}.get(rc.get("Action", ""), "changed")
            found.append(f"{_label(rc)} {done}")
    return found


def approvals(template: Mapping[str, Any]) -> int:
    """How many manual-approval actions the template's pipelines have."""
    return sum(
        1
        for resource in template.get("Resources", {}).values()
        if resource.get("Type") == "AWS::CodePipeline::Pipeline"
        for stage in resource.get("Properties", {}).get("Stages", [])
        for action in stage.get("Actions", [])
        if action.get("ActionTypeId", {}).get("Category") == "Approval"
    )


def not_updatable(status: str | None, *, stack: str) -> str | None:
    """Why the pipeline cannot update its stack in `status` (None: no stack), or None when it can.

    The pipeline never creates, recreates or repairs its own stack: that is `make deploy`'s job.
    """
    if status is None:
        return f"stack {stack} does not exist: stand the pipeline up with make deploy"
    if status not in UPDATABLE:
        return f"stack {stack} is {status}, not updatable from the pipeline: settle it with make deploy, then run again"
    return None


def decide(changes: Sequence[dict] | None, *, stack: str, approvals_now: int = 0, approvals_new: int = 0) -> Decision:
    """The move for a change set's changes; None: CloudFormation found nothing to change.
    `approvals_now`/`approvals_new`: manual approvals in the deployed and the commit's pipeline."""
    if changes is None:
        return Decision(Next.CONTINUE, f"stack {stack} is up to date with this commit")
    found = risky(changes)
    found += [line for line in human_only(changes) if line.split(" (")[0] not in {f.split(" (")[0] for f in found}]
    if approvals_new < approvals_now:
        found.append(f"the pipeline would have {approvals_new} manual approval(s), not {approvals_now}")
    if found:
        return Decision(Next.REFUSE, f"not updating stack {stack} from the pipeline: {'; '.join(found)} {BY_HAND}")
    return Decision(Next.EXECUTE, f"updating stack {stack}")


def deployed_template(cfn: Any, stack: str) -> dict[str, Any]:
    """The stack's current template (GetTemplate; botocore hands a JSON body back as a dict)."""
    body = cfn.get_template(StackName=stack, TemplateStage="Original")["TemplateBody"]
    if isinstance(body, str):
        try:
            body = json.loads(body)
        except ValueError:
            raise StageFailure(f"stack {stack}'s template is not JSON: deploy it with make deploy first") from None
    return body if isinstance(body, dict) else {}


# --- doing ------------------------------------------------------------------------------------


def template_argument(session: Any, deployment: StackDeployment, bucket: str | None) -> dict[str, str]:
    """TemplateBody, or for a template over the inline limit a TemplateURL in the artifact bucket."""
    data = deployment.template_body.encode()
    if len(data) <= INLINE_TEMPLATE_LIMIT:
        return {"TemplateBody": deployment.template_body}
    if len(data) > URL_TEMPLATE_LIMIT:
        raise StageFailure(f"the pipeline template is {len(data)} bytes, over CloudFormation's {URL_TEMPLATE_LIMIT}")
    if not bucket:
        raise StageFailure(
            f"the pipeline template is {len(data)} bytes, over the {INLINE_TEMPLATE_LIMIT}-byte inline limit, "
            "and no bucket to stage it in (set ARTIFACT_BUCKET or pass --bucket)"
        )
    key = f"self-update/{hashlib.sha256(data).hexdigest()[:16]}.json"
    s3 = session.client("s3", config=RETRIES)
    s3.put_object(Bucket=bucket, Key=key, Body=data, ContentType="application/json")
    return {"TemplateURL": f"https://{bucket}.s3.{deployment.region}.amazonaws.com/{key}"}


def settled_stack(
    cfn: Any,
    name: str,
    *,
    echo: Callable[[str], None],
    sleep: Callable[[float], None],
    poll_seconds: float,
    wait_minutes: float = SETTLE_WAIT_MINUTES,
) -> dict[str, Any] | None:
    """DescribeStacks once no operation runs on the stack (None: no stack). An update of the
    Pipeline resource restarts the pipeline while the rest of the stack is still updating (make
    deploy's, or this action's own): the new run's first action waits for it instead of failing."""
    waited = 0.0
    seen = None
    while True:
        stack = describe_stack(cfn, name)
        status = None if stack is None else stack["StackStatus"]
        if status is None or not busy(status):
            return stack
        if waited >= wait_minutes * 60:
            raise StageFailure(
                f"stack {name} is still {status} after {wait_minutes:g} minutes; run again once it settles"
            )
        if status != seen:
            echo(f"stack {name} is {status}: another operation is running; waiting for it to end ...")
            seen = status
        sleep(poll_seconds)
        waited += poll_seconds


def self_update(
    deployment: StackDeployment,
    session: Any,
    *,
    bucket: str | None = None,
    echo: Callable[[str], None] = lambda line: print(line, flush=True),
    sleep: Callable[[float], None] = time.sleep,
    poll_seconds: float = 10,
) -> Next:
    """Create the change set, decide, carry the decision out; returns the move made, or raises
    StageFailure for a refused change or a failed update."""
    cfn = session.client("cloudformation", config=RETRIES)
    flow = _Flow(deployment, session, cfn, echo, lambda question: False, sleep, poll_seconds)
    stack = settled_stack(cfn, deployment.name, echo=echo, sleep=sleep, poll_seconds=poll_seconds)
    refusal = not_updatable(None if stack is None else stack["StackStatus"], stack=deployment.name)
    if refusal is not None or stack is None:
        raise StageFailure(refusal)
    parameters = stack.get("Parameters", [])
    template: dict[str, Any] = dict(template_argument(session, deployment, bucket))
    if parameters:  # keep what the stack was deployed with
        template["Parameters"] = [{"ParameterKey": p["ParameterKey"], "UsePreviousValue": True} for p in parameters]
    change_set, first_page = flow.create_change_set("UPDATE", template)
    changes = None if first_page is None else flow.changes(change_set, first_page)
    counts = {}
    if changes is not None:
        try:
            counts = {
                "approvals_now": approvals(deployed_template(cfn, deployment.name)),
                "approvals_new": approvals(json.loads(deployment.template_body)),
            }
        except StageFailure:
            cfn.delete_change_set(ChangeSetName=change_set, StackName=deployment.name)
            raise
    decision = decide(changes, stack=deployment.name, **counts)
    echo(decision.reason)
    if decision.next is Next.CONTINUE:
        return decision.next
    if decision.next is Next.REFUSE:
        cfn.delete_change_set(ChangeSetName=change_set, StackName=deployment.name)
        raise StageFailure(decision.reason)
    assert first_page is not None
    cfn.execute_change_set(ChangeSetName=change_set, StackName=deployment.name, ClientRequestToken=change_set)
    final, events = flow.follow(first_page["CreationTime"])
    if final["StackStatus"] != "UPDATE_COMPLETE":
        raise StageFailure(
            f"updating stack {deployment.name} failed ({final['StackStatus']}): {first_failure_in(events)}"
        )
    return decision.next


# --- command ------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    """The arguments; the stack and region are the config's."""
    parser = argparse.ArgumentParser(
        prog="python -m scripts.self_update",
        description="Update the pipeline's own stack from this commit's template, unless the change touches a "
        "role, the key, a bucket, the connection, this step or an approval (those need make deploy).",
    )
    parser.add_argument("--config", default="pipeline.yml", help="the pipeline config (default: pipeline.yml)")
    parser.add_argument(
        "--bucket",
        default=os.environ.get("ARTIFACT_BUCKET") or None,
        help="where a template over the inline limit is staged (env ARTIFACT_BUCKET)",
    )
    parser.add_argument("--poll-seconds", type=float, default=10.0, help="seconds between status checks (default 10)")
    return parser


@one_line_errors("self-update")
def main(argv: list[str] | None = None) -> int:
    """0 when the stack is up to date (the run goes on); 1 when it was updated (the run restarts on
    the new definition), refused or failed; 2 on a bad config."""
    args = build_parser().parse_args(argv)
    if args.poll_seconds <= 0:
        build_parser().error("--poll-seconds must be positive")
    config = load_config(args.config)
    deployment = replace(pipeline_deployment(config), description=f"UpdatePipeline of the {config.project} pipeline")
    try:
        done = self_update(
            deployment, session_for(None, config.region), bucket=args.bucket, poll_seconds=args.poll_seconds
        )
    except AwsError as exc:
        raise StageFailure(str(exc)) from None
    if done is Next.EXECUTE:
        raise StageFailure(UPDATED)
    return 0


if __name__ == "__main__":
    sys.exit(main())
