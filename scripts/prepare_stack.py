"""The PrepareStack action: make an environment's endpoint stack ready for this run's deploy.

CodePipeline's CloudFormation action (CREATE_UPDATE) fails on a stack in ROLLBACK_COMPLETE, so
one failed first deploy (a wrong image, a quota) would fail every later run until someone deleted
the stack by hand. This runs just before each environment's DeployEndpoint, in CodeBuild
(`python -m scripts.prepare_stack`, with ENDPOINT_ENV and ENDPOINT_STACK set on the project), and
from a laptop with the same arguments. What it does follows `pipeline.stackstate.prepare_endpoint_stack`:

- no stack, or one an update can start from: nothing;
- another operation running: wait for it to end, then look again;
- ROLLBACK_COMPLETE or REVIEW_IN_PROGRESS, never created: delete it (only if no resource of it
  may still exist) and wait, so the deploy creates it afresh;
- anything else (UPDATE_ROLLBACK_FAILED, ROLLBACK_FAILED, DELETE_FAILED, ...): fail in one line
  naming the fix. Such a stack may hold a live endpoint: it is never deleted here.

Then, on a stack the deploy will update, the capacity change (`pipeline.capacity.capacity_change`,
the deployed template against the one this commit synthesizes): deregister an autoscaled variant's
scalable target when its instance type changes or autoscaling is removed, refuse to turn an
instance-based endpoint serverless.

Deleting needs no iam:PassRole: CloudFormation deletes with the role the stack was created with.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from collections.abc import Callable
from typing import Any

from botocore.exceptions import ClientError, WaiterError

from pipeline.aws import client, first_failure, stack_resources, stack_status, stack_template
from pipeline.capacity import Capacity, Change, capacity_change, capacity_of
from pipeline.stacks.endpoint import SCALING_DIMENSION, SCALING_NAMESPACE, EndpointStack, scaling_resource_id
from pipeline.stackstate import NEVER_CREATED, Step, prepare_endpoint_stack, resources_from
from scripts.common import StageFailure, config_with_environment, one_line_errors


def delete_and_wait(cfn: Any, stack: str, *, poll_seconds: float, max_wait_seconds: float) -> None:
    """Delete the stack (never lifting termination protection) and wait until it is gone; a
    StageFailure naming the first failed resource if the delete fails."""
    started = time.time()
    cfn.delete_stack(StackName=stack)
    attempts = max(1, math.ceil(max_wait_seconds / poll_seconds))
    try:
        cfn.get_waiter("stack_delete_complete").wait(
            StackName=stack, WaiterConfig={"Delay": poll_seconds, "MaxAttempts": attempts}
        )
    except WaiterError as exc:
        if "Max attempts exceeded" in str(exc):
            raise StageFailure(
                f"stack {stack} is still being deleted after {max_wait_seconds / 60:g} min; run this again when it is gone"
            ) from None
        raise StageFailure(f"deleting stack {stack} failed: {first_failure(cfn, stack, started)}") from None


def prepare(
    cfn: Any,
    stack: str,
    region: str,
    *,
    poll_seconds: float,
    max_wait_seconds: float,
    echo: Callable[[str], None] = lambda line: print(line, flush=True),  # seen in the build log while it waits
) -> tuple[Step, str | None]:
    """Carry out the moves until the stack can take the deploy; returns the last step (NOTHING or
    DELETE) and the status it was taken in (None: no stack)."""
    waited, waiting_on = 0.0, None
    while True:
        status = stack_status(cfn, stack)
        resources = resources_from(stack_resources(cfn, stack)) if status in NEVER_CREATED else ()
        move = prepare_endpoint_stack(status, resources, stack=stack, region=region)
        if move.step is Step.REFUSE:
            raise StageFailure(move.say)
        if move.step is not Step.WAIT:
            break
        if waited >= max_wait_seconds:
            raise StageFailure(
                f"stack {stack} is still {status} after {max_wait_seconds / 60:g} min; run this again when it settles"
            )
        if status != waiting_on:
            waiting_on = status
            echo(move.say)
        time.sleep(poll_seconds)
        waited += poll_seconds
    echo(move.say)
    if move.step is Step.DELETE:
        delete_and_wait(cfn, stack, poll_seconds=poll_seconds, max_wait_seconds=max_wait_seconds)
        echo(f"deleted stack {stack}: the deploy creates it afresh")
    return move.step, status


def deregister_scalable_target(autoscaling: Any, endpoint: str) -> bool:
    """Deregister the endpoint variant's scalable target (its scaling policies go with it); False
    when none is registered (a rollback or an earlier run already let it go)."""
    target = {
        "ServiceNamespace": SCALING_NAMESPACE,
        "ResourceId": scaling_resource_id(endpoint),
        "ScalableDimension": SCALING_DIMENSION,
    }
    # Deregistering an unregistered target is ObjectNotFoundException: no Describe* call needed
    # (which would take Resource "*" in the step's role).
    try:
        autoscaling.deregister_scalable_target(**target)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "ObjectNotFoundException":
            return False
        raise
    return True


def prepare_capacity(
    cfn: Any,
    autoscaling: Any,
    stack: str,
    new: Capacity,
    *,
    endpoint: str,
    region: str,
    echo: Callable[[str], None] = lambda line: print(line, flush=True),
) -> Change:
    """Ready a deployed stack for this template's capacity (see the module docstring); returns what it did."""
    move = capacity_change(capacity_of(stack_template(cfn, stack)), new, stack=stack, endpoint=endpoint, region=region)
    if move.change is Change.REFUSE:
        raise StageFailure(move.say)
    echo(move.say)
    if move.change is Change.DEREGISTER and not deregister_scalable_target(autoscaling, endpoint):
        echo(f"endpoint {endpoint}: no scalable target was registered; nothing to deregister")
    return move.change


# --- command ------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    """The arguments; the stack defaults to the environment's, the region to the config's."""
    parser = argparse.ArgumentParser(
        prog="python -m scripts.prepare_stack",
        description="Make an environment's endpoint stack ready for the deploy: delete it if its first create "
        "failed, wait out a running operation, refuse a state only a human can resolve.",
    )
    parser.add_argument("--config", default="pipeline.yml", help="the pipeline config (default: pipeline.yml)")
    parser.add_argument(
        "--environment",
        default=os.environ.get("ENDPOINT_ENV") or None,
        help="an environment of pipeline.yml, e.g. qa (env ENDPOINT_ENV)",
    )
    parser.add_argument(
        "--stack-name",
        default=os.environ.get("ENDPOINT_STACK") or None,
        help="the stack the deploy action targets (env ENDPOINT_STACK; default: the environment's, PROJECT-endpoint-ENV)",
    )
    parser.add_argument("--region", help="default: the config's region")
    parser.add_argument("--poll-seconds", type=float, default=10.0, help="seconds between status checks (default 10)")
    parser.add_argument(
        "--max-wait-minutes", type=float, default=20.0, help="give up waiting on the stack after this (default 20)"
    )
    return parser


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Parse and check the arguments."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.environment is None:
        parser.error("--environment is required (or set ENDPOINT_ENV to one of pipeline.yml's environments)")
    if args.poll_seconds <= 0 or args.max_wait_minutes <= 0:
        parser.error("--poll-seconds and --max-wait-minutes must be positive")
    return args


@one_line_errors("prepare-stack")
def main(argv: list[str] | None = None) -> int:
    """Prepare the environment's endpoint stack; 0 when the deploy can go ahead, 1 when it cannot, 2 on a bad config."""
    args = parse_args(argv)
    config = config_with_environment("prepare-stack", args.config, args.environment)
    stack = args.stack_name or config.names.endpoint_stack(args.environment)
    region = args.region or config.region
    cfn = client("cloudformation", region)
    step, status = prepare(
        cfn, stack, region, poll_seconds=args.poll_seconds, max_wait_seconds=args.max_wait_minutes * 60
    )
    if step is Step.NOTHING and status is not None:
        endpoint = EndpointStack(config, config.environment(args.environment))
        new = capacity_of(endpoint.build().to_dict())
        assert new is not None  # every endpoint template has its endpoint config
        prepare_capacity(
            cfn, client("application-autoscaling", region), stack, new, endpoint=endpoint.endpoint_name, region=region
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
