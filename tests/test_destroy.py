"""`make destroy`: delete the endpoint stacks then the pipeline stack, keeping buckets and key.

CloudFormation is a botocore Stubber on a real client, so each test pins the exact calls made and
their order; the session hands out nothing but that client, so no S3 (or other) call can happen.
"""

from __future__ import annotations

import io
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import SimpleNamespace

import botocore.waiter
import pytest
from botocore.config import Config
from botocore.stub import Stubber

from pipeline.aws import AwsError
from pipeline.cli import main
from pipeline.config import load_config
from pipeline.destroy import destroy

REPO = Path(__file__).resolve().parent.parent
REGION = "us-east-1"
ACCOUNT = "111122223333"
PROD = "iris-classifier-endpoint-prod"
QA = "iris-classifier-endpoint-qa"
PIPELINE = "iris-classifier-pipeline"
MODEL_BUCKET = f"iris-classifier-models-{ACCOUNT}"
ARTIFACT_BUCKET = f"iris-classifier-artifacts-{ACCOUNT}"
KEY_ARN = f"arn:aws:kms:{REGION}:{ACCOUNT}:key/1a2b3c4d-0000-4000-8000-000000000003"
PIPELINE_OUTPUTS = {
    "PipelineName": "iris-classifier",
    "ModelBucketName": MODEL_BUCKET,
    "ArtifactBucketName": ARTIFACT_BUCKET,
    "ArtifactKeyArn": KEY_ARN,
}


def _stack_id(name: str) -> str:
    return f"arn:aws:cloudformation:{REGION}:{ACCOUNT}:stack/{name}/5b2c6f00-0000-4000-8000-000000000001"


@pytest.fixture(scope="module")
def config():
    return load_config(REPO / "pipeline.yml")


class CloudFormationOnlySession:
    """Stands in for a boto3 Session: hands out the stubbed CloudFormation client and nothing else."""

    def __init__(self, cfn):
        self.cfn = cfn
        self.asked: list[str] = []

    def client(self, name, config=None):
        self.asked.append(name)
        if name != "cloudformation":
            pytest.fail(f"destroy asked for a {name} client; it must only talk to CloudFormation")
        return self.cfn


@pytest.fixture
def aws(aws_env, real_session, monkeypatch):
    """A stubbed CloudFormation client and a session handing it out; waiter sleeps are recorded."""
    cfn = real_session.client("cloudformation")
    sleeps: list[float] = []
    monkeypatch.setattr(botocore.waiter.time, "sleep", sleeps.append)
    with Stubber(cfn) as stub:
        yield SimpleNamespace(cfn=stub, session=CloudFormationOnlySession(cfn), sleeps=sleeps)


def _stacks(name: str, status: str, outputs: dict[str, str] | None = None) -> dict:
    stack = {
        "StackId": _stack_id(name),
        "StackName": name,
        "CreationTime": datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc),
        "StackStatus": status,
    }
    if outputs:
        stack["Outputs"] = [{"OutputKey": k, "OutputValue": v} for k, v in outputs.items()]
    return {"Stacks": [stack]}


def _expect_status(aws, name: str, status: str, outputs: dict[str, str] | None = None) -> None:
    aws.cfn.add_response("describe_stacks", _stacks(name, status, outputs), {"StackName": name})


def _expect_no_stack(aws, name: str) -> None:
    aws.cfn.add_client_error(
        "describe_stacks",
        "ValidationError",
        f"Stack with id {name} does not exist",
        400,
        expected_params={"StackName": name},
    )


def _expect_pipeline_stack(aws) -> None:
    """plan_destroy reads the pipeline stack twice: its status, then its outputs."""
    _expect_status(aws, PIPELINE, "UPDATE_COMPLETE", PIPELINE_OUTPUTS)
    _expect_status(aws, PIPELINE, "UPDATE_COMPLETE", PIPELINE_OUTPUTS)


def _expect_delete_started(aws, name: str) -> None:
    aws.cfn.add_response(
        "update_termination_protection",
        {"StackId": _stack_id(name)},
        {"StackName": name, "EnableTerminationProtection": False},
    )
    aws.cfn.add_response("delete_stack", {}, {"StackName": name})


def _expect_deleted(aws, name: str) -> None:
    _expect_delete_started(aws, name)
    _expect_status(aws, name, "DELETE_IN_PROGRESS")  # the waiter's first poll
    _expect_no_stack(aws, name)  # its second: gone


def _expect_all_three_exist(aws) -> None:
    _expect_status(aws, PROD, "UPDATE_COMPLETE")
    _expect_status(aws, QA, "UPDATE_COMPLETE")
    _expect_pipeline_stack(aws)


def _event(name: str, logical_id: str, status: str, when: datetime, reason: str | None = None) -> dict:
    event = {
        "StackId": _stack_id(name),
        "EventId": f"{logical_id}-{status}-{when.timestamp()}",
        "StackName": name,
        "LogicalResourceId": logical_id,
        "ResourceStatus": status,
        "Timestamp": when,
    }
    if reason:
        event["ResourceStatusReason"] = reason
    return event


def _destroy(config, aws, answer: bool = True) -> tuple[int, list[str], list[str]]:
    """Run destroy; returns its code, every line echoed, and the lines echoed before it asked."""
    lines: list[str] = []
    before_asking: list[str] = []

    def confirm(question: str) -> bool:
        before_asking.extend(lines)
        return answer

    code = destroy(config, aws.session, confirm=confirm, echo=lines.append)
    return code, lines, before_asking


def test_lists_the_stacks_in_deletion_order_and_what_is_kept_before_asking(config, aws):
    _expect_all_three_exist(aws)
    for name in (PROD, QA, PIPELINE):
        _expect_deleted(aws, name)

    _, _, before_asking = _destroy(config, aws)

    assert before_asking == [
        "will delete, in this order:",
        f"  {PROD}",
        f"  {QA}",
        f"  {PIPELINE}",
        "will keep (retained on delete; remove them yourself if you ever want to):",
        f"  model bucket (models, training data, code by commit): {MODEL_BUCKET}",
        f"  artifact bucket (pipeline artifacts): {ARTIFACT_BUCKET}",
        f"  KMS key (decrypts both buckets): {KEY_ARN}",
    ]


def test_confirmed_deletes_prod_then_qa_then_the_pipeline_stack_waiting_for_each(config, aws):
    _expect_all_three_exist(aws)
    for name in (PROD, QA, PIPELINE):
        _expect_deleted(aws, name)

    code, lines, before_asking = _destroy(config, aws)

    assert code == 0
    assert lines[len(before_asking) : -1] == [
        f"deleting stack {PROD} ...",
        f"deleted stack {PROD}",
        f"deleting stack {QA} ...",
        f"deleted stack {QA}",
        f"deleting stack {PIPELINE} ...",
        f"deleted stack {PIPELINE}",
    ]
    assert aws.sleeps == [10, 10, 10]  # one wait between the two polls of each stack
    aws.cfn.assert_no_pending_responses()


def test_the_last_line_names_the_kept_buckets_and_key(config, aws):
    _expect_all_three_exist(aws)
    for name in (PROD, QA, PIPELINE):
        _expect_deleted(aws, name)

    _, lines, _ = _destroy(config, aws)

    assert lines[-1] == f"done; kept: {MODEL_BUCKET}, {ARTIFACT_BUCKET}, {KEY_ARN}"


def test_no_client_but_cloudformation_is_used_so_no_bucket_or_object_is_touched(config, aws):
    _expect_all_three_exist(aws)
    for name in (PROD, QA, PIPELINE):
        _expect_deleted(aws, name)

    _destroy(config, aws)

    assert aws.session.asked == ["cloudformation"]


def test_refused_confirmation_deletes_nothing_and_returns_1(config, aws):
    _expect_all_three_exist(aws)  # and no delete queued: the Stubber fails any other call

    code, lines, _ = _destroy(config, aws, answer=False)

    assert code == 1
    assert lines[-1] == "nothing deleted"
    aws.cfn.assert_no_pending_responses()


def test_only_the_pipeline_stack_is_deleted_when_no_endpoint_was_ever_deployed(config, aws):
    _expect_no_stack(aws, PROD)
    _expect_no_stack(aws, QA)
    _expect_pipeline_stack(aws)
    _expect_deleted(aws, PIPELINE)

    code, lines, before_asking = _destroy(config, aws)

    assert code == 0
    assert before_asking[:2] == ["will delete, in this order:", f"  {PIPELINE}"]
    assert before_asking[2].startswith("will keep")
    assert lines[len(before_asking) : -1] == [f"deleting stack {PIPELINE} ...", f"deleted stack {PIPELINE}"]
    aws.cfn.assert_no_pending_responses()


def test_nothing_to_delete_returns_0_without_asking(config, aws):
    for name in (PROD, QA, PIPELINE):
        _expect_no_stack(aws, name)

    lines: list[str] = []
    code = destroy(config, aws.session, confirm=lambda q: pytest.fail("asked to confirm"), echo=lines.append)

    assert code == 0
    assert lines == [f"nothing to delete: no stack of project iris-classifier exists in {REGION}"]
    aws.cfn.assert_no_pending_responses()


def test_a_failed_delete_names_the_stack_and_reason_and_stops_before_the_next_stack(config, aws):
    now = datetime.now(timezone.utc)
    reason = (
        f"User: arn:aws:sts::{ACCOUNT}:assumed-role/iris-classifier-endpoint-deploy/x is not authorized "
        "to perform: sagemaker:DeleteEndpoint"
    )
    _expect_all_three_exist(aws)
    _expect_deleted(aws, PROD)
    _expect_delete_started(aws, QA)
    _expect_status(aws, QA, "DELETE_FAILED")  # the waiter's poll: a failure state
    aws.cfn.add_response(
        "describe_stack_events",
        {
            "StackEvents": [  # newest first
                _event(QA, QA, "DELETE_FAILED", now + timedelta(seconds=30), "The following resource(s) failed"),
                _event(QA, "Endpoint", "DELETE_FAILED", now + timedelta(seconds=20), reason),
                _event(QA, "Endpoint", "DELETE_IN_PROGRESS", now + timedelta(seconds=2)),
            ]
        },
        {"StackName": QA},
    )
    # Nothing queued for the pipeline stack: a call to delete it would fail on the Stubber.

    with pytest.raises(AwsError) as exc:
        _destroy(config, aws)

    assert str(exc.value) == f"deleting {QA} failed: Endpoint: {reason}"
    aws.cfn.assert_no_pending_responses()


def test_a_failed_delete_ignores_failures_from_before_the_delete(config, aws):
    now = datetime.now(timezone.utc)
    _expect_status(aws, PROD, "UPDATE_ROLLBACK_COMPLETE")  # its last update had failed
    _expect_no_stack(aws, QA)
    _expect_no_stack(aws, PIPELINE)
    _expect_delete_started(aws, PROD)
    _expect_status(aws, PROD, "DELETE_FAILED")
    aws.cfn.add_response(
        "describe_stack_events",
        {
            "StackEvents": [
                _event(PROD, "Endpoint", "DELETE_FAILED", now + timedelta(seconds=20), "Endpoint is in use"),
                _event(PROD, "Endpoint", "UPDATE_FAILED", now - timedelta(days=3), "an old failed update"),
            ]
        },
        {"StackName": PROD},
    )

    with pytest.raises(AwsError) as exc:
        _destroy(config, aws)

    assert str(exc.value) == f"deleting {PROD} failed: Endpoint: Endpoint is in use"
    aws.cfn.assert_no_pending_responses()


def test_access_denied_is_one_line_with_the_operation_and_code(config, aws):
    message = (
        f"User: arn:aws:iam::{ACCOUNT}:user/dev is not authorized to perform: cloudformation:DescribeStacks "
        f"on resource: {_stack_id(PROD)}"
    )
    aws.cfn.add_client_error("describe_stacks", "AccessDenied", message, 403, expected_params={"StackName": PROD})

    with pytest.raises(AwsError) as exc:
        _destroy(config, aws)

    assert str(exc.value) == f"DescribeStacks: AccessDenied: {message}"
    aws.cfn.assert_no_pending_responses()


def test_an_unreachable_endpoint_is_one_line_not_a_traceback(config, aws_env, real_session):
    # Nothing listens on the discard port; one attempt, so connection refused comes back at once.
    cfn = real_session.client(
        "cloudformation", endpoint_url="http://127.0.0.1:9", config=Config(retries={"total_max_attempts": 1})
    )

    with pytest.raises(AwsError) as exc:
        destroy(config, CloudFormationOnlySession(cfn), confirm=lambda q: True, echo=lambda line: None)

    assert str(exc.value) == 'Could not connect to the endpoint URL: "http://127.0.0.1:9/"'


def test_cli_without_yes_and_no_terminal_refuses_and_deletes_nothing(aws, monkeypatch, capsys):
    _expect_all_three_exist(aws)  # the plan is read and shown; no delete is queued
    monkeypatch.setattr("pipeline.aws.session_for", lambda profile, region: aws.session)
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))

    code = main(["destroy", "--config", str(REPO / "pipeline.yml")])

    assert code == 1
    assert capsys.readouterr().err.splitlines() == [
        "destroy: not a terminal, so not asking: re-run with --yes (make destroy ARGS=--yes)"
    ]
    aws.cfn.assert_no_pending_responses()


def test_cli_with_a_missing_config_exits_2_with_one_line(tmp_path, capsys):
    missing = tmp_path / "nope.yml"

    code = main(["destroy", "--yes", "--config", str(missing)])

    assert code == 2
    assert capsys.readouterr().err.splitlines() == [f"{missing}: file not found"]
