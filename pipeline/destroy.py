"""Tear down what the pipeline created, in dependency order, keeping every model and data object.

Order: production endpoint stack, QA endpoint stack (CloudFormation deletes them with the deploy
role that lives in the pipeline stack), then the pipeline stack. The buckets and the KMS key are
retained by their DeletionPolicy, so models, training data and the key that decrypts them stay.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from pipeline.aws import RETRIES, aws_errors, delete_stack, stack_status
from pipeline.config import PipelineConfig

KEPT_OUTPUTS = {
    "ModelBucketName": "model bucket (models, training data, code by commit)",
    "ArtifactBucketName": "artifact bucket (pipeline artifacts)",
    "ArtifactKeyArn": "KMS key (decrypts both buckets)",
}


@dataclass
class Plan:
    """What destroy deletes (stack names, in order) and what it keeps (description -> name)."""

    delete: list[str] = field(default_factory=list)
    keep: dict[str, str] = field(default_factory=dict)


def plan_destroy(cfn, config: PipelineConfig) -> Plan:
    """Which of the project's stacks exist, in deletion order, and the retained resources' names."""
    names = config.names
    plan = Plan()
    for stack in (names.endpoint_stack("prod"), names.endpoint_stack("qa"), names.pipeline_stack):
        status = stack_status(cfn, stack)
        if status is not None and status != "DELETE_COMPLETE":
            plan.delete.append(stack)
    if names.pipeline_stack in plan.delete:
        outputs = cfn.describe_stacks(StackName=names.pipeline_stack)["Stacks"][0].get("Outputs", [])
        values = {o["OutputKey"]: o["OutputValue"] for o in outputs}
        plan.keep = {what: values[key] for key, what in KEPT_OUTPUTS.items() if key in values}
    return plan


def destroy(
    config: PipelineConfig,
    session,
    *,
    confirm: Callable[[str], bool],
    echo: Callable[[str], None] = print,
) -> int:
    """List, confirm, delete in order, report. Returns 0 when done or nothing to do, 1 when refused."""
    cfn = session.client("cloudformation", config=RETRIES)
    with aws_errors():
        plan = plan_destroy(cfn, config)
        if not plan.delete:
            echo(f"nothing to delete: no stack of project {config.project} exists in {config.region}")
            return 0
        echo("will delete, in this order:")
        for stack in plan.delete:
            echo(f"  {stack}")
        echo("will keep (retained on delete; remove them yourself if you ever want to):")
        for what, name in plan.keep.items():
            echo(f"  {what}: {name}")
        if not confirm("Delete these stacks?"):
            echo("nothing deleted")
            return 1
        for stack in plan.delete:
            delete_stack(cfn, stack, echo)
    echo("done; kept: " + (", ".join(plan.keep.values()) or "nothing was retained"))
    return 0
