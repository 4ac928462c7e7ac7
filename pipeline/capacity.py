"""What an endpoint stack's capacity change needs before CloudFormation may update it: pure readings
of the deployed template and the new one (scripts/prepare_stack.py carries the move out).

- An autoscaled variant whose instance type changes: AWS documents that such an update fails until
  the scalable target is deregistered (SageMaker Developer Guide, "Update an endpoint that uses
  auto scaling": deregister, update, register again). PrepareStack deregisters it (its scaling
  policies go with it); the new template names its scalable target after the new instance type, so
  CloudFormation registers a fresh one after the endpoint update.
- Autoscaling removed from the config: the template's scaling resources are retained (see
  `EndpointStack.scalable_target`), so removing them would leave the registration in place:
  PrepareStack deregisters it, and the update sets the configured instance count.
- An instance-based endpoint becoming serverless: AWS documents that an instance-based endpoint
  cannot be converted to a serverless one (Serverless Inference, feature exclusions). Refused here
  in one line, before CloudFormation fails half-way, naming the fix: delete the stack first.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

ENDPOINT_CONFIG_TYPE = "AWS::SageMaker::EndpointConfig"
SCALABLE_TARGET_TYPE = "AWS::ApplicationAutoScaling::ScalableTarget"


@dataclass(frozen=True)
class Capacity:
    """An endpoint template's compute: serverless, or an instance type, autoscaled or not."""

    serverless: bool
    instance_type: str | None
    autoscaled: bool


def capacity_of(template: Mapping[str, Any]) -> Capacity | None:
    """The capacity a parsed endpoint template declares; None when it has no endpoint config (not
    one of ours, or a template GetTemplate could not parse)."""
    resources = template.get("Resources") or {}
    configs = [r for r in resources.values() if isinstance(r, Mapping) and r.get("Type") == ENDPOINT_CONFIG_TYPE]
    if not configs:
        return None
    variants = (configs[0].get("Properties") or {}).get("ProductionVariants") or [{}]
    variant = variants[0] if isinstance(variants[0], Mapping) else {}
    instance_type = variant.get("InstanceType")
    return Capacity(
        serverless="ServerlessConfig" in variant,
        instance_type=instance_type if isinstance(instance_type, str) else None,
        autoscaled=any(isinstance(r, Mapping) and r.get("Type") == SCALABLE_TARGET_TYPE for r in resources.values()),
    )


class Change(enum.Enum):
    """What PrepareStack does about the capacity before the deploy."""

    NOTHING = "nothing"
    DEREGISTER = "deregister"  # the variant's scalable target, then the deploy updates the endpoint
    REFUSE = "refuse"


@dataclass(frozen=True)
class CapacityMove:
    """The change to make and the line that says why."""

    change: Change
    say: str


def capacity_change(
    deployed: Capacity | None, new: Capacity, *, stack: str, endpoint: str, region: str
) -> CapacityMove:
    """The move from the deployed template's capacity to the new one's (decide, then do)."""
    if deployed is None:
        return CapacityMove(Change.NOTHING, f"stack {stack}: no deployed endpoint capacity to compare with")
    if new.serverless and not deployed.serverless:
        return CapacityMove(
            Change.REFUSE,
            f"endpoint {endpoint} runs on instances and SageMaker cannot convert it to serverless: delete stack "
            f"{stack} first (aws cloudformation delete-stack --stack-name {stack} --region {region}; the "
            f"endpoint is unavailable until the next deploy creates it), then release again",
        )
    if deployed.autoscaled and not new.autoscaled:
        return CapacityMove(
            Change.DEREGISTER,
            f"endpoint {endpoint}: autoscaling is removed; deregistering its scalable target before the deploy",
        )
    if deployed.autoscaled and deployed.instance_type != new.instance_type:
        return CapacityMove(
            Change.DEREGISTER,
            f"endpoint {endpoint}: instance type {deployed.instance_type} -> {new.instance_type} on an autoscaled "
            "variant; deregistering its scalable target first (AWS requires it), the deploy registers it again",
        )
    return CapacityMove(Change.NOTHING, f"endpoint {endpoint}: capacity changes need no preparation")
