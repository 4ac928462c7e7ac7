"""Create or update the pipeline stack with boto3 and wait for it (the AWS side of `make deploy`)."""

from __future__ import annotations

import json
import time
from typing import Callable

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError, ProfileNotFound, WaiterError

from pipeline.config import PipelineConfig
from pipeline.synth import synthesize

# CloudFormation's limit for a template passed inline.
INLINE_TEMPLATE_LIMIT = 51_200
RETRIES = Config(retries={"mode": "standard", "max_attempts": 10})


class DeployError(Exception):
    """A deploy that cannot go on; the message is one line for the user."""


def session_for(profile: str | None, region: str) -> boto3.session.Session:
    """A session resolved as the AWS CLI does (profile, environment), in the config's region."""
    try:
        session = boto3.session.Session(profile_name=profile, region_name=region)
    except ProfileNotFound:
        raise DeployError(f"AWS profile '{profile}' not found in your AWS config") from None
    try:
        credentials = session.get_credentials()
    except BotoCoreError as exc:  # a failing credential_process, an expired SSO token, ...
        raise DeployError(f"cannot resolve AWS credentials: {exc}") from None
    if credentials is None:
        raise DeployError(
            "no AWS credentials found: set AWS_PROFILE or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, "
            "or pass ARGS='--profile NAME'"
        )
    return session


def template_body(config: PipelineConfig) -> str:
    """The pipeline template as compact JSON, checked against the inline size limit."""
    body = json.dumps(synthesize(config).templates["pipeline.json"], separators=(",", ":"), sort_keys=True)
    if len(body.encode()) > INLINE_TEMPLATE_LIMIT:
        raise DeployError(
            f"the pipeline template is {len(body.encode())} bytes, over CloudFormation's inline limit of "
            f"{INLINE_TEMPLATE_LIMIT}"
        )
    return body


def stack_status(cfn, name: str) -> str | None:
    """The stack's status, or None when it does not exist."""
    try:
        return cfn.describe_stacks(StackName=name)["Stacks"][0]["StackStatus"]
    except ClientError as exc:
        if "does not exist" in exc.response["Error"].get("Message", ""):
            return None
        raise


def first_failure(cfn, name: str, since: float) -> str:
    """The oldest failed event's resource and reason since `since` (epoch seconds)."""
    events = cfn.describe_stack_events(StackName=name)["StackEvents"]
    failed = [
        e for e in events
        if e["ResourceStatus"].endswith("_FAILED") and e["Timestamp"].timestamp() >= since - 5
    ]
    if not failed:
        return "no failure reason recorded; see the stack's events in the CloudFormation console"
    oldest = min(failed, key=lambda e: e["Timestamp"])
    return f"{oldest['LogicalResourceId']}: {oldest.get('ResourceStatusReason', oldest['ResourceStatus'])}"


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
        f"The GitHub connection is PENDING: complete it at https://{region}.console.aws.amazon.com/codesuite/"
        f"settings/connections?region={region} (Update pending connection).",
        "The pipeline will not start until the connection is AVAILABLE.",
    ]


def deploy_pipeline(
    config: PipelineConfig,
    *,
    profile: str | None = None,
    wait: bool = True,
    echo: Callable[[str], None] = print,
    session: boto3.session.Session | None = None,
) -> int:
    """Create or update the pipeline stack; returns 0 on success. Raises DeployError with one line."""
    body = template_body(config)
    session = session or session_for(profile, config.region)
    cfn = session.client("cloudformation", config=RETRIES)
    name = config.names.pipeline_stack
    tags = [{"Key": k, "Value": v} for k, v in {**config.tags, "sagemaker-cd:project": config.project}.items()]
    started = time.time()
    try:
        status = stack_status(cfn, name)
        if status is None:
            echo(f"creating stack {name} in {config.region} ...")
            cfn.create_stack(
                StackName=name, TemplateBody=body, Capabilities=["CAPABILITY_IAM"], Tags=tags,
                EnableTerminationProtection=True,
            )
            waiter = "stack_create_complete"
        elif status.endswith("_IN_PROGRESS"):
            raise DeployError(f"stack {name} is {status}; run make deploy again when it has finished")
        elif status == "ROLLBACK_COMPLETE":
            raise DeployError(
                f"stack {name} is ROLLBACK_COMPLETE (its first create failed); delete it "
                f"(make destroy) and deploy again"
            )
        else:
            echo(f"updating stack {name} ({status}) ...")
            try:
                cfn.update_stack(StackName=name, TemplateBody=body, Capabilities=["CAPABILITY_IAM"], Tags=tags)
            except ClientError as exc:
                if "No updates are to be performed" in exc.response["Error"].get("Message", ""):
                    echo(f"stack {name} is up to date: nothing to change")
                    return 0
                raise
            waiter = "stack_update_complete"
        if not wait:
            echo(f"started; follow it in the CloudFormation console (stack {name})")
            return 0
        try:
            cfn.get_waiter(waiter).wait(StackName=name, WaiterConfig={"Delay": 10, "MaxAttempts": 360})
        except WaiterError:
            raise DeployError(f"stack {name} failed: {first_failure(cfn, name, started)}") from None
        stack = cfn.describe_stacks(StackName=name)["Stacks"][0]
    except NoCredentialsError:
        raise DeployError("no AWS credentials found") from None
    except BotoCoreError as exc:
        # No network, an expired SSO token, ...: one line, not a traceback.
        raise DeployError(str(exc)) from None
    except ClientError as exc:
        err = exc.response["Error"]
        raise DeployError(f"{exc.operation_name}: {err.get('Code')}: {err.get('Message')}") from None
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}
    echo(f"stack {name}: {stack['StackStatus']}")
    for key in sorted(outputs):
        echo(f"  {key:26} {outputs[key]}")
    pipeline = outputs.get("PipelineName", config.names.pipeline)
    echo(
        f"pipeline: https://{config.region}.console.aws.amazon.com/codesuite/codepipeline/pipelines/"
        f"{pipeline}/view?region={config.region}"
    )
    for line in _connection_notice(session, outputs, config.region):
        echo(line)
    return 0
