"""One home for AWS plumbing: sessions and clients, retries, one-line errors, stack status and
delete, console URLs. Deploy, destroy, status and the stage scripts all import it (SAM CLI keeps
the same things in `samcli/lib/deploy/`, apart from its commands).
"""

from __future__ import annotations

import ast
import importlib.util
import json
import os
import re
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from html.parser import HTMLParser
from types import FrameType
from typing import Any
from urllib.parse import quote

import boto3
from boto3.exceptions import Boto3Error
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    NoCredentialsError,
    NoRegionError,
    ProfileNotFound,
    WaiterError,
)
from botocore.parsers import ResponseParserError

# botocore's standard retry mode: throttling and transient errors are retried with backoff.
RETRIES = Config(retries={"mode": "standard", "max_attempts": 10})
NO_CREDENTIALS = "no AWS credentials found (set AWS_PROFILE, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)"
NO_REGION = "no AWS region configured (pass --region or set AWS_REGION)"
# An error message longer than this keeps its start and its end (where AWS puts the log link).
MESSAGE_CHARS = 500
# What an error line quotes of a reply that was not AWS's (a proxy's page, say).
REPLY_CHARS = 200
# The AWS SDK: what these packages raise, or raise through, is an AWS failure.
SDK_PACKAGES = ("boto3", "botocore", "s3transfer")
_SDK_DIRS = tuple(
    os.path.join(os.path.dirname(str(spec.origin)), "") for spec in map(importlib.util.find_spec, SDK_PACKAGES) if spec
)


class AwsError(Exception):
    """An AWS step that cannot go on; the message is one line for the user."""


# --- sessions and clients ----------------------------------------------------------------------


def session_for(profile: str | None, region: str) -> Any:
    """A boto3 session resolved as the AWS CLI does (profile, environment), in `region`."""
    try:
        session = boto3.session.Session(profile_name=profile, region_name=region)
    except ProfileNotFound:
        raise AwsError(f"AWS profile '{profile}' not found in your AWS config") from None
    refuse_unreadable_replies(session)
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
    session = boto3.session.Session(region_name=region)
    refuse_unreadable_replies(session)
    return session.client(service, config=RETRIES)


def refuse_unreadable_replies(session: Any) -> None:
    """Make the session's clients fail on a JSON-protocol reply that is not JSON.

    botocore reads such a reply (a proxy's or captive portal's HTML page answering 200) as an
    empty answer: CodePipeline would seem to have no executions. It raises ResponseParserError
    for the XML protocols; this does the same for JSON.
    """
    session.events.register("before-parse", _check_json_reply, unique_id="sagemaker-cd-json-reply")


def _check_json_reply(operation_model: Any, response_dict: dict, **_: Any) -> None:
    model = operation_model.service_model
    protocol = getattr(model, "resolved_protocol", None) or model.metadata.get("protocol")
    if protocol != "json" or operation_model.has_streaming_output or operation_model.has_event_stream_output:
        return
    body = response_dict.get("body")
    if response_dict.get("status_code", 0) >= 300 or not isinstance(body, bytes) or not body.strip():
        return  # an error reply is botocore's to read; an empty one is an empty answer
    try:
        json.loads(body)
    except ValueError:
        content_type = response_dict.get("headers", {}).get("Content-Type") or "no content type"
        raise ResponseParserError(
            f"Unable to parse response (HTTP {response_dict['status_code']}, {content_type}), "
            f"invalid JSON received:\n{body!r}"
        ) from None


# --- one-line errors ---------------------------------------------------------------------------


_CONTROL_CHARACTERS = dict.fromkeys([*range(0x20), *range(0x7F, 0xA0)], " ")
_MARKUP = re.compile(r"<(?:!doctype|html|head|body|title|\?xml)\b|</[a-z][a-z0-9]*\s*>", re.IGNORECASE)


def one_line(text: object) -> str:
    """`text` with every run of whitespace and control characters (newlines too) made one space."""
    return " ".join(str(text).translate(_CONTROL_CHARACTERS).split())


class _TextOfMarkup(HTMLParser):
    """The text of an HTML or XML page: no tags, no scripts or styles, entities decoded."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._hidden = 0

    def handle_starttag(self, tag: str, attrs: Any) -> None:
        self.parts.append(" ")
        if tag in ("script", "style"):
            self._hidden += 1

    def handle_endtag(self, tag: str) -> None:
        self.parts.append(" ")
        if tag in ("script", "style") and self._hidden:
            self._hidden -= 1

    def handle_data(self, data: str) -> None:
        if not self._hidden:
            self.parts.append(data)


def strip_markup(text: str) -> str:
    """The text of `text` without its tags when it carries an HTML or XML page; else `text` as is."""
    if not _MARKUP.search(text):
        return text
    parser = _TextOfMarkup()
    parser.feed(text)
    parser.close()
    return "".join(parser.parts)


def shorten(text: str, limit: int) -> str:
    """`text` cut to `limit` characters in the middle, keeping its start and its end."""
    if len(text) <= limit:
        return text
    tail = limit // 3
    head = limit - tail - 3
    return f"{text[:head].rstrip()} … {text[-tail:].lstrip()}"


def readable(text: object, limit: int = MESSAGE_CHARS) -> str:
    """A message fit for one line: markup stripped, whitespace collapsed, at most `limit` characters."""
    return shorten(one_line(strip_markup(str(text))), limit)


def _in_sdk(frame: FrameType) -> bool:
    return frame.f_code.co_filename.startswith(_SDK_DIRS)


def is_aws_error(exc: BaseException) -> bool:
    """Whether `exc` is an AWS failure: its class (or a base) is boto3's, botocore's or s3transfer's,
    or the SDK's code raised it (botocore's parser meeting a reply it did not expect raises KeyError)."""
    if any(cls.__module__.partition(".")[0] in SDK_PACKAGES for cls in type(exc).__mro__):
        return True
    return any(_in_sdk(frame) for frame, _ in traceback.walk_tb(exc.__traceback__))


def is_failure(exc: BaseException) -> bool:
    """Whether `exc` is a failure to report in one line rather than a bug to show: anything from
    AWS, or the file system refusing (a folder not writable, a full disk), but not a broken pipe."""
    return is_aws_error(exc) or (isinstance(exc, OSError) and not isinstance(exc, BrokenPipeError))


def operation_of(exc: BaseException) -> str | None:
    """The AWS operation (e.g. DescribeStacks) that was running when `exc` was raised, if any."""
    for frame, _ in traceback.walk_tb(exc.__traceback__):
        if frame.f_code.co_name == "_make_api_call" and _in_sdk(frame):
            name = frame.f_locals.get("operation_name")
            if isinstance(name, str):
                return name
    return None


def _reply(quoted: str) -> str:
    """The reply botocore quotes after its parse error (a bytes literal), as text."""
    try:
        value = ast.literal_eval(quoted.strip())
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return quoted
    return value.decode("utf-8", errors="replace") if isinstance(value, bytes) else str(value)


def _unreadable_reply(exc: ResponseParserError) -> str:
    head, newline, quoted = str(exc).partition("\n")
    line = ": ".join(part for part in (type(exc).__name__, readable(head).rstrip(":")) if part)
    if newline:
        line += f"; the reply: {readable(_reply(quoted), REPLY_CHARS) or '(empty)'}"
    return line


def error_line(exc: BaseException) -> str:
    """One readable line for any AWS failure.

    A ClientError is `Operation: Code: Message`; botocore's and boto3's own errors are their
    message, written for people; anything else raised by or through the SDK (a reply that does not
    parse, s3transfer's errors) is `Operation: Class: message`. Markup is stripped and long
    messages are cut in the middle.
    """
    if isinstance(exc, ClientError):
        err = exc.response.get("Error", {})
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        code, message = one_line(err.get("Code") or ""), readable(err.get("Message") or "")
        if code in ("", "Unknown") and status:  # no AWS error code: not an AWS reply, or an empty one
            code = f"HTTP {status}"
        elif code.isdigit():  # botocore's stand-in code for a JSON error reply without one
            code = f"HTTP {code}"
        if message in ("Unknown", code):
            message = ""
        return ": ".join(part for part in (one_line(exc.operation_name), code or "Error", message) if part)
    if isinstance(exc, NoCredentialsError):
        return NO_CREDENTIALS
    if isinstance(exc, NoRegionError):
        return NO_REGION
    operation = None
    if isinstance(exc, BotoCoreError | Boto3Error):  # messages written for people, naming what failed
        line = readable(exc) or type(exc).__name__
    else:
        operation = operation_of(exc)
        if isinstance(exc, ResponseParserError):
            line = _unreadable_reply(exc)
        else:
            line = ": ".join(part for part in (type(exc).__name__, readable(exc)) if part)
    last = getattr(exc, "last_exception", None)  # boto3's and s3transfer's RetriesExceededError
    if isinstance(last, BaseException) and last is not exc:
        line += f" (last error: {error_line(last)})"
    return f"{one_line(operation)}: {line}" if operation else line


@contextmanager
def aws_errors() -> Iterator[None]:
    """Turn any AWS failure (denied, no network, an expired token, a reply that is not AWS's, ...)
    into a one-line AwsError."""
    try:
        yield
    except Exception as exc:
        if not is_aws_error(exc):
            raise
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


def codebuild_build_id(build_arn: str | None) -> str:
    """The id (PROJECT:UUID) of the build with ARN `build_arn` (CODEBUILD_BUILD_ARN), URL-encoded as
    the console's report links need it, or '' for anything else."""
    parts = (build_arn or "").split(":", 5)
    if len(parts) != 6 or parts[2] != "codebuild" or not parts[5].startswith("build/"):
        return ""
    return quote(parts[5][len("build/") :], safe="")


def codebuild_report_console_url(region: str, account: str, project: str, build_id: str) -> str:
    """The test reports of one CodeBuild build (`build_id` is PROJECT:UUID, encoded here)."""
    return _console(
        region,
        f"codesuite/codebuild/{account}/projects/{project}/build/{quote(build_id, safe='')}/reports?region={region}",
    )
