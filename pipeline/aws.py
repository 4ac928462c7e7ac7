"""One home for AWS plumbing: sessions and clients, retries, one-line errors, stack status and
delete, console URLs. Deploy, destroy, status and the stage scripts all import it (SAM CLI keeps
the same things in `samcli/lib/deploy/`, apart from its commands).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import quote

import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    NoCredentialsError,
    NoRegionError,
    ProfileNotFound,
    WaiterError,
)

# botocore's standard retry mode: throttling and transient errors are retried with backoff.
RETRIES = Config(retries={"mode": "standard", "max_attempts": 10})
NO_CREDENTIALS = "no AWS credentials found (set AWS_PROFILE, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)"
NO_REGION = "no AWS region configured (pass --region or set AWS_REGION)"


class AwsError(Exception):
    """An AWS step that cannot go on; the message is one line for the user."""


# --- sessions and clients ----------------------------------------------------------------------


def session_for(profile: str | None, region: str) -> Any:
    """A boto3 session resolved as the AWS CLI does (profile, environment), in `region`."""
    try:
        session = boto3.session.Session(profile_name=profile, region_name=region)
    except ProfileNotFound:
        raise AwsError(f"AWS profile '{profile}' not found in your AWS config") from None
    try:
        credentials = session.get_credentials()
    except BotoCoreError as exc:  # a failing credential_process, an expired SSO token, ...
        raise AwsError(f"cannot resolve AWS credentials: {one_line(str(exc))}") from None
    if credentials is None:
        raise AwsError(
            "no AWS credentials found: set AWS_PROFILE or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, "
            "or pass ARGS='--profile NAME'"
        )
    return session


def client(service: str, region: str | None = None) -> Any:
    """A boto3 client with standard retries for the stage scripts; made when called, never at import."""
    return boto3.session.Session(region_name=region).client(service, config=RETRIES)


# --- one-line errors ---------------------------------------------------------------------------


def one_line(text: object) -> str:
    """`text` with every run of whitespace (newlines too) made one space."""
    return " ".join(str(text).split())


def error_line(exc: BaseException) -> str:
    """One readable line for an AWS or botocore error: `Operation: Code: Message` for a ClientError."""
    if isinstance(exc, ClientError):
        err = exc.response.get("Error", {})
        parts = (exc.operation_name, err.get("Code") or "Error", err.get("Message") or "")
        return one_line(": ".join(part for part in parts if part))
    if isinstance(exc, NoCredentialsError):
        return NO_CREDENTIALS
    if isinstance(exc, NoRegionError):
        return NO_REGION
    return one_line(str(exc))


@contextmanager
def aws_errors() -> Iterator[None]:
    """Turn an AWS or botocore error (denied, no network, expired token, ...) into a one-line AwsError."""
    try:
        yield
    except (ClientError, BotoCoreError) as exc:
        raise AwsError(error_line(exc)) from None


# --- stacks ------------------------------------------------------------------------------------


def is_missing_stack(exc: ClientError) -> bool:
    """Whether CloudFormation answered that the stack does not exist."""
    return "does not exist" in exc.response.get("Error", {}).get("Message", "")


def describe_stack(cfn: Any, name: str) -> dict | None:
    """The stack as describe_stacks returns it, or None when it does not exist."""
    try:
        return cfn.describe_stacks(StackName=name)["Stacks"][0]
    except ClientError as exc:
        if is_missing_stack(exc):
            return None
        raise


def stack_status(cfn: Any, name: str) -> str | None:
    """The stack's status, or None when it does not exist."""
    stack = describe_stack(cfn, name)
    return stack["StackStatus"] if stack else None


def first_failure_in(events: list[dict]) -> str:
    """The oldest failed event's resource and reason, in one line."""
    failed = [e for e in events if e.get("ResourceStatus", "").endswith("_FAILED")]
    if not failed:
        return "no failure reason recorded; see the stack's events in the CloudFormation console"
    oldest = min(failed, key=lambda e: e["Timestamp"])
    return one_line(f"{oldest['LogicalResourceId']}: {oldest.get('ResourceStatusReason', oldest['ResourceStatus'])}")


def first_failure(cfn: Any, name: str, since: float) -> str:
    """The oldest failed event of the stack since `since` (epoch seconds), in one line."""
    events = cfn.describe_stack_events(StackName=name)["StackEvents"]
    return first_failure_in([e for e in events if e["Timestamp"].timestamp() >= since - 5])


def delete_stack(
    cfn: Any,
    name: str,
    echo: Callable[[str], None],
    *,
    poll_seconds: float = 10,
    max_attempts: int = 360,
) -> None:
    """Delete one stack, lifting its termination protection, and wait until it is gone.

    Raises AwsError naming the first failed resource when the delete fails.
    """
    echo(f"deleting stack {name} ...")
    started = time.time()
    cfn.update_termination_protection(StackName=name, EnableTerminationProtection=False)
    cfn.delete_stack(StackName=name)
    try:
        cfn.get_waiter("stack_delete_complete").wait(
            StackName=name, WaiterConfig={"Delay": poll_seconds, "MaxAttempts": max_attempts}
        )
    except WaiterError:
        raise AwsError(f"deleting {name} failed: {first_failure(cfn, name, started)}") from None
    echo(f"deleted stack {name}")


def stack_resources(cfn: Any, name: str) -> list[dict]:
    """Every resource of the stack as ListStackResources summarises it (all pages), deleted ones too."""
    summaries: list[dict] = []
    kwargs = {"StackName": name}
    while True:
        page = cfn.list_stack_resources(**kwargs)
        summaries.extend(page.get("StackResourceSummaries", []))
        if not page.get("NextToken"):
            return summaries
        kwargs["NextToken"] = page["NextToken"]


def stack_template(cfn: Any, name: str) -> dict:
    """The stack's template as it was submitted (GetTemplate, stage Original), parsed; {} when it
    is not JSON (every template this project deploys is)."""
    body = cfn.get_template(StackName=name, TemplateStage="Original").get("TemplateBody")
    if isinstance(body, dict):  # botocore decodes a JSON body itself
        return body
    try:
        parsed = json.loads(body or "")
    except ValueError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


# --- console URLs ------------------------------------------------------------------------------


def _console(region: str, path: str) -> str:
    return f"https://{region}.console.aws.amazon.com/{path}"


def pipeline_console_url(region: str, pipeline: str) -> str:
    """The pipeline's page in the CodePipeline console, where approvers press Review."""
    return _console(region, f"codesuite/codepipeline/pipelines/{pipeline}/view?region={region}")


def connections_console_url(region: str) -> str:
    """The console page listing CodeConnections, where a PENDING connection is completed."""
    return _console(region, f"codesuite/settings/connections?region={region}")


def training_job_console_url(region: str, name: str) -> str:
    """A SageMaker training job's page in the console."""
    return _console(region, f"sagemaker/home?region={region}#/jobs/{name}")


def codebuild_report_console_url(region: str, account: str, project: str, build_id: str) -> str:
    """The test reports of one CodeBuild build (`build_id` is PROJECT:UUID, encoded here)."""
    return _console(
        region,
        f"codesuite/codebuild/{account}/projects/{project}/build/{quote(build_id, safe='')}/reports?region={region}",
    )
