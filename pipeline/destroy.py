"""Tear down what the pipeline created, in dependency order, keeping every model and data object.

Order: the endpoint stacks, last environment first (CloudFormation deletes them with the deploy
role that lives in the pipeline stack), then the pipeline stack. The buckets and the KMS key are
retained by their DeletionPolicy, so models, training data and the key that decrypts them stay.

What is kept is read from each stack's real resources (ListStackResources) and its template's
DeletionPolicy (GetTemplate), not from outputs: a stack whose first create failed has no outputs,
and may still have resources its rollback kept (DELETE_SKIPPED, under a template older than
RetainExceptOnCreate).

Decide, then do: `plan_destroy` picks what to delete and names what is kept from the stacks'
states, without calling AWS; `destroy` reads those states, shows the plan, asks, and deletes.
Only the CloudFormation client is ever used: nothing here can delete a bucket or an object.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from pipeline.aws import RETRIES, aws_errors, delete_stack, describe_stack, stack_resources, stack_template
from pipeline.branches import for_branch
from pipeline.config import PipelineConfig
from pipeline.stackstate import StackResource, deletion_policies, kept_after_delete, resources_from

# What the pipeline stack's retained resources hold, by logical id (any other is named by its type).
KEPT_WHAT = {
    "ModelBucket": "model bucket (models, training data, code by commit)",
    "ArtifactBucket": "artifact bucket (pipeline artifacts)",
    "ArtifactKey": "KMS key (decrypts both buckets)",
    "ImageRepository": "ECR repository (model.container's images by commit)",
    "ModelPackageGroup": "model registry (every version, approved or not)",
}


@dataclass(frozen=True)
class StackState:
    """One of the project's stacks as destroy finds it: its status (None: it does not exist) and resources."""

    name: str
    status: str | None
    resources: tuple[StackResource, ...] = ()


@dataclass(frozen=True)
class Plan:
    """What destroy deletes (stack names, in order) and what it keeps ((what, physical name), in order)."""

    delete: tuple[str, ...] = ()
    keep: tuple[tuple[str, str], ...] = ()


def stacks_in_deletion_order(config: PipelineConfig, branch: str | None = None) -> list[str]:
    """The project's stacks: the endpoint stacks, last environment first, then the pipeline stack.
    With a branch: that branch pipeline's alone (its names are its own; the main stacks are never named)."""
    config = for_branch(config, branch)
    names = config.names
    return [names.endpoint_stack(env) for env in reversed(config.environment_names)] + [names.pipeline_stack]


def _what(resource: StackResource) -> str:
    what = KEPT_WHAT.get(resource.logical_id, f"{resource.logical_id} ({resource.resource_type})")
    return f"{what}, kept by a rolled-back create" if resource.status == "DELETE_SKIPPED" else what


def plan_destroy(stacks: Sequence[StackState]) -> Plan:
    """From the stacks' states (in deletion order): the ones that exist, to delete in that order,
    and the resources that outlive them (retained by their template, or already let go by a rollback)."""
    doomed = [stack for stack in stacks if stack.status not in (None, "DELETE_COMPLETE")]
    keep = tuple((_what(r), r.physical_id) for stack in doomed for r in kept_after_delete(stack.resources))
    return Plan(delete=tuple(stack.name for stack in doomed), keep=keep)


def plan_lines(plan: Plan) -> list[str]:
    """The plan as the user reads it before confirming."""
    kept = [f"  {what}: {name}" for what, name in plan.keep] or ["  nothing (no stack retains a resource)"]
    return [
        "will delete, in this order:",
        *(f"  {stack}" for stack in plan.delete),
        "will keep (retained on delete; remove them yourself if you ever want to):",
        *kept,
    ]


def _state(cfn: Any, name: str) -> StackState:
    stack = describe_stack(cfn, name)
    if stack is None:
        return StackState(name, None)
    policies = deletion_policies(stack_template(cfn, name))
    return StackState(name, stack["StackStatus"], resources_from(stack_resources(cfn, name), policies))


def destroy(
    config: PipelineConfig,
    session: Any,
    *,
    confirm: Callable[[str], bool],
    echo: Callable[[str], None] = print,
    branch: str | None = None,
) -> int:
    """List, confirm, delete in order, report (with a branch: only that branch pipeline's stacks). Returns 0 when done or nothing to do, 1 when refused.

    Raises AwsError (one line) when AWS fails or a delete does not complete.
    """
    with aws_errors():
        cfn = session.client("cloudformation", config=RETRIES)
        plan = plan_destroy([_state(cfn, name) for name in stacks_in_deletion_order(config, branch)])
        if not plan.delete:
            whose = f"branch {branch}'s pipeline" if branch else f"project {config.project}"
            echo(f"nothing to delete: no stack of {whose} exists in {config.region}")
            return 0
        for line in plan_lines(plan):
            echo(line)
        if not confirm("Delete these stacks?"):
            echo("nothing deleted")
            return 1
        for stack in plan.delete:
            delete_stack(cfn, stack, echo)
    echo("done; kept: " + (", ".join(name for _, name in plan.keep) or "nothing was retained"))
    return 0
