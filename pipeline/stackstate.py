"""What a stack's status and resources mean for the next move: pure readings shared by deploy,
destroy, status and the prepare-stack stage script (pipeline.aws makes the calls that fetch them).

CloudFormation's stack statuses fall in four groups here:

- settled: an update can start from it (CREATE_COMPLETE, UPDATE_COMPLETE, UPDATE_ROLLBACK_COMPLETE,
  IMPORT_COMPLETE, IMPORT_ROLLBACK_COMPLETE);
- never created: ROLLBACK_COMPLETE (a first create failed and was rolled back) or
  REVIEW_IN_PROGRESS (a create change set never executed). Nothing in it can be updated: it has to
  be deleted and created again, and it holds nothing, which its resources can show;
- busy: another operation is running (any other *_IN_PROGRESS);
- stuck: the rest (UPDATE_ROLLBACK_FAILED, ROLLBACK_FAILED, DELETE_FAILED, CREATE_FAILED, ...).
  Resources may be live, so only a human decides; `fix()` names the command that gets it moving.

`prepare_endpoint_stack()` is the decision table of the PrepareStack action that runs before each
environment's endpoint deploy (scripts/prepare_stack.py carries it out; `make status` shows it).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

SETTLED = frozenset(
    {"CREATE_COMPLETE", "UPDATE_COMPLETE", "UPDATE_ROLLBACK_COMPLETE", "IMPORT_COMPLETE", "IMPORT_ROLLBACK_COMPLETE"}
)
NEVER_CREATED = frozenset({"ROLLBACK_COMPLETE", "REVIEW_IN_PROGRESS"})
# DeletionPolicy values under which a resource outlives the delete of its stack.
RETAINED_ON_DELETE = frozenset({"Retain", "RetainExceptOnCreate"})
# Retained resources that do not outlive their stack's endpoint: deleting an endpoint deregisters its
# variants' scalable targets and their scaling policies (SageMaker Developer Guide, "Delete an
# endpoint configured for auto scaling"; the deploy role may DeregisterScalableTarget).
GONE_WITH_THE_ENDPOINT = frozenset(
    {"AWS::ApplicationAutoScaling::ScalableTarget", "AWS::ApplicationAutoScaling::ScalingPolicy"}
)


def busy(status: str | None) -> bool:
    """Another operation runs on the stack (REVIEW_IN_PROGRESS only waits for a change set)."""
    return status is not None and status.endswith("_IN_PROGRESS") and status != "REVIEW_IN_PROGRESS"


def stuck(status: str | None) -> bool:
    """A state only a human can resolve: not absent, settled, never created or busy."""
    return status is not None and status not in SETTLED | NEVER_CREATED and not busy(status)


# --- resources -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class StackResource:
    """One resource of a stack: what ListStackResources says of it, and its template's DeletionPolicy."""

    logical_id: str
    resource_type: str
    physical_id: str
    status: str
    deletion_policy: str = "Delete"

    @property
    def may_exist(self) -> bool:
        """Whether it may still exist in AWS: something was made (a physical id) and not deleted."""
        return bool(self.physical_id) and self.status != "DELETE_COMPLETE"

    @property
    def label(self) -> str:
        """`LogicalId (Type) physical-id`, for a line the user reads."""
        return f"{self.logical_id} ({self.resource_type}) {self.physical_id}"


def resources_from(
    summaries: Iterable[Mapping], policies: Mapping[str, str] | None = None
) -> tuple[StackResource, ...]:
    """StackResources from ListStackResources summaries and the template's DeletionPolicy by logical id."""
    policies = policies or {}
    return tuple(
        StackResource(
            logical_id=s["LogicalResourceId"],
            resource_type=s.get("ResourceType", ""),
            physical_id=s.get("PhysicalResourceId") or "",
            status=s.get("ResourceStatus", ""),
            deletion_policy=policies.get(s["LogicalResourceId"], "Delete"),
        )
        for s in summaries
    )


def deletion_policies(template: Mapping) -> dict[str, str]:
    """Logical id -> DeletionPolicy of every resource of a (parsed) template that sets one."""
    resources = template.get("Resources") or {}
    return {
        logical_id: resource["DeletionPolicy"]
        for logical_id, resource in resources.items()
        if isinstance(resource, Mapping) and isinstance(resource.get("DeletionPolicy"), str)
    }


def left_behind(resources: Iterable[StackResource]) -> list[StackResource]:
    """The resources that may still exist, of a stack whose rollback should have deleted them all."""
    return [r for r in resources if r.may_exist]


def kept_after_delete(resources: Iterable[StackResource]) -> list[StackResource]:
    """What outlives deleting the stack: existing resources its template retains on delete, and any
    a rollback already let go (DELETE_SKIPPED: retained, no longer managed by the stack)."""
    return [
        r
        for r in resources
        if r.may_exist
        and r.resource_type not in GONE_WITH_THE_ENDPOINT
        and (r.status == "DELETE_SKIPPED" or r.deletion_policy in RETAINED_ON_DELETE)
    ]


# --- what a human has to do ------------------------------------------------------------------------


def fix(status: str, stack: str, region: str, then: str) -> str:
    """One line for a stuck stack: what its status means, the command that resolves it, then `then`."""
    where = f"--stack-name {stack} --region {region}"
    meaning, command = {
        "UPDATE_ROLLBACK_FAILED": (
            "an update failed and so did its rollback",
            f"run `aws cloudformation continue-update-rollback {where}` (add --resources-to-skip LOGICAL_ID ... "
            "for resources that cannot roll back) and wait for UPDATE_ROLLBACK_COMPLETE",
        ),
        "ROLLBACK_FAILED": (
            "its first create failed and so did the rollback, so some resources may remain",
            f"check its events, then delete it: `aws cloudformation delete-stack {where}`",
        ),
        "DELETE_FAILED": (
            "a delete failed part way",
            f"finish it: `aws cloudformation delete-stack {where}` (add --retain-resources LOGICAL_ID ... for "
            "what cannot be deleted)",
        ),
        "CREATE_FAILED": (
            "its create failed with rollback disabled, so what it made is still there",
            f"roll it back: `aws cloudformation rollback-stack {where}`",
        ),
        "UPDATE_FAILED": (
            "an update failed with rollback disabled",
            f"roll it back: `aws cloudformation rollback-stack {where}` and wait for UPDATE_ROLLBACK_COMPLETE",
        ),
    }.get(status, ("a state this tool does not resolve", "resolve it in the CloudFormation console (see its events)"))
    return f"stack {stack} is {status}: {meaning}; {command}, then {then}"


# --- before an endpoint deploy -------------------------------------------------------------------


class Step(enum.Enum):
    """What the PrepareStack action does with the environment's endpoint stack."""

    NOTHING = "leave the stack to the deploy"
    WAIT = "wait for the running operation to end, then look again"
    DELETE = "delete the empty stack and wait, so the deploy creates it afresh"
    REFUSE = "fail the action with the one-line `say`"


@dataclass(frozen=True)
class Move:
    """A step and the one line that explains it."""

    step: Step
    say: str


RETRY = "release the pipeline again (Release change) or push a commit"


def prepare_endpoint_stack(status: str | None, resources: Sequence[StackResource], *, stack: str, region: str) -> Move:
    """The move before deploying an environment's endpoint stack with CodePipeline's CREATE_UPDATE.

    `resources` matter only for a stack that was never created: it is deleted only if none of them
    may still exist. Nothing settled or stuck is ever deleted: a live endpoint may be behind it.
    """
    if status is None:
        return Move(Step.NOTHING, f"stack {stack} does not exist yet: the deploy creates it")
    if status in SETTLED:
        return Move(Step.NOTHING, f"stack {stack} is {status}: the deploy updates it")
    if busy(status):
        return Move(Step.WAIT, f"stack {stack} is {status}: another operation is running; waiting for it to end ...")
    if status in NEVER_CREATED:
        why = (
            "its first create failed and was rolled back"
            if status == "ROLLBACK_COMPLETE"
            else "a create change set was made for it but never executed"
        )
        remaining = left_behind(resources)
        if remaining:
            names = ", ".join(f"{r.label} is {r.status}" for r in remaining)
            return Move(
                Step.REFUSE,
                f"stack {stack} is {status} ({why}) but not empty: {names}; check and delete them and the stack "
                f"(`aws cloudformation delete-stack --stack-name {stack} --region {region}`), then {RETRY}",
            )
        return Move(
            Step.DELETE,
            f"stack {stack} is {status}: {why}, so it holds nothing and cannot be updated; deleting it so the "
            "deploy creates it again",
        )
    return Move(Step.REFUSE, fix(status, stack, region, RETRY))
