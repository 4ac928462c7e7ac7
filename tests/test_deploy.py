"""`make deploy`: create or update the pipeline stack, wait, report; every failure is one line.

CloudFormation and CodeStar Connections are botocore Stubbers on real clients, so each test pins
the exact AWS calls made (and their order) as well as the outcome.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import SimpleNamespace

import boto3
import botocore.waiter
import pytest
from botocore.config import Config
from botocore.stub import Stubber

from pipeline.cli import main
from pipeline.config import load_config
from pipeline.deploy import DeployError, deploy_pipeline, template_body
from pipeline.synth import synthesize

REPO = Path(__file__).resolve().parent.parent
REGION = "us-east-1"
STACK = "iris-classifier-pipeline"
STACK_ID = f"arn:aws:cloudformation:{REGION}:111122223333:stack/{STACK}/5b2c6f00-0000-4000-8000-000000000001"
CONNECTION_ARN = f"arn:aws:codestar-connections:{REGION}:111122223333:connection/0f1e2d3c-0000-4000-8000-000000000002"
TAGS = [{"Key": "team", "Value": "ml-platform"}, {"Key": "sagemaker-cd:project", "Value": "iris-classifier"}]
PIPELINE_URL = (
    f"https://{REGION}.console.aws.amazon.com/codesuite/codepipeline/pipelines/iris-classifier/view?region={REGION}"
)
CONNECTIONS_URL = f"https://{REGION}.console.aws.amazon.com/codesuite/settings/connections?region={REGION}"
OUTPUTS = {
    "PipelineName": "iris-classifier",
    "ModelBucketName": "iris-classifier-models-111122223333",
    "GitHubConnectionArn": CONNECTION_ARN,
}


@pytest.fixture(scope="module")
def config():
    return load_config(REPO / "pipeline.yml")


@pytest.fixture(scope="module")
def body(config):
    return template_body(config)


class FakeSession:
    """Stands in for a boto3 Session: hands out the stubbed client of each service asked for."""

    def __init__(self, clients: dict):
        self.clients = clients

    def client(self, name, config=None):
        return self.clients[name]


@pytest.fixture(scope="module")
def real_session():
    """One boto3 session with fake keys for the module, so service models load once (speed)."""
    with pytest.MonkeyPatch.context() as env:
        # As the aws_env fixture: the developer's ~/.aws files and profile play no part.
        for name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_ENDPOINT_URL"):
            env.delenv(name, raising=False)
        env.setenv("AWS_CONFIG_FILE", os.devnull)
        env.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)
        session = boto3.session.Session(
            aws_access_key_id="testing", aws_secret_access_key="testing", region_name=REGION
        )
        session.client("cloudformation")  # reads the (empty) config files while they are /dev/null
        yield session


@pytest.fixture
def aws(aws_env, real_session, monkeypatch):
    """Stubbed cloudformation and codestar-connections clients, and a session handing them out.

    The waiter's sleeps are recorded instead of slept.
    """
    cfn = real_session.client("cloudformation")
    connections = real_session.client("codestar-connections")
    sleeps: list[float] = []
    monkeypatch.setattr(botocore.waiter.time, "sleep", sleeps.append)
    with Stubber(cfn) as cfn_stub, Stubber(connections) as connections_stub:
        yield SimpleNamespace(
            cfn=cfn_stub,
            connections=connections_stub,
            session=FakeSession({"cloudformation": cfn, "codestar-connections": connections}),
            sleeps=sleeps,
        )


def _all_calls_made(aws) -> None:
    aws.cfn.assert_no_pending_responses()
    aws.connections.assert_no_pending_responses()


def _stacks(status: str, outputs: dict[str, str] | None = None) -> dict:
    stack = {
        "StackId": STACK_ID,
        "StackName": STACK,
        "CreationTime": datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc),
        "StackStatus": status,
    }
    if outputs:
        stack["Outputs"] = [{"OutputKey": k, "OutputValue": v} for k, v in outputs.items()]
    return {"Stacks": [stack]}


def _expect_status(aws, status: str, outputs: dict[str, str] | None = None) -> None:
    aws.cfn.add_response("describe_stacks", _stacks(status, outputs), {"StackName": STACK})


def _expect_no_stack(aws) -> None:
    aws.cfn.add_client_error(
        "describe_stacks",
        "ValidationError",
        f"Stack with id {STACK} does not exist",
        400,
        expected_params={"StackName": STACK},
    )


def _expect_create(aws, body: str) -> None:
    aws.cfn.add_response(
        "create_stack",
        {"StackId": STACK_ID},
        {
            "StackName": STACK,
            "TemplateBody": body,
            "Capabilities": ["CAPABILITY_IAM"],
            "Tags": TAGS,
            "EnableTerminationProtection": True,
        },
    )


def _expect_update(aws, body: str) -> None:
    aws.cfn.add_response(
        "update_stack",
        {"StackId": STACK_ID},
        {"StackName": STACK, "TemplateBody": body, "Capabilities": ["CAPABILITY_IAM"], "Tags": TAGS},
    )


def _expect_connection(aws, status: str) -> None:
    aws.connections.add_response(
        "get_connection",
        {
            "Connection": {
                "ConnectionName": "iris-classifier-github",
                "ConnectionArn": CONNECTION_ARN,
                "ProviderType": "GitHub",
                "ConnectionStatus": status,
            }
        },
        {"ConnectionArn": CONNECTION_ARN},
    )


def _event(logical_id: str, status: str, when: datetime, reason: str | None = None) -> dict:
    event = {
        "StackId": STACK_ID,
        "EventId": f"{logical_id}-{status}-{when.timestamp()}",
        "StackName": STACK,
        "LogicalResourceId": logical_id,
        "ResourceStatus": status,
        "Timestamp": when,
    }
    if reason:
        event["ResourceStatusReason"] = reason
    return event


def _deploy(config, aws, **kwargs) -> tuple[int, list[str]]:
    lines: list[str] = []
    code = deploy_pipeline(config, session=aws.session, echo=lines.append, **kwargs)
    return code, lines


def test_the_deployed_template_is_the_synthesized_pipeline_template(config, body):
    assert json.loads(body) == synthesize(config).templates["pipeline.json"]


def test_first_deploy_creates_the_stack_waits_and_prints_its_outputs(config, body, aws):
    _expect_no_stack(aws)
    _expect_create(aws, body)
    _expect_status(aws, "CREATE_IN_PROGRESS")  # the waiter's first poll
    _expect_status(aws, "CREATE_COMPLETE")  # its second
    _expect_status(aws, "CREATE_COMPLETE", OUTPUTS)
    _expect_connection(aws, "AVAILABLE")

    code, lines = _deploy(config, aws)

    assert code == 0
    assert aws.sleeps == [10]
    assert lines[0] == f"creating stack {STACK} in {REGION} ..."
    assert f"stack {STACK}: CREATE_COMPLETE" in lines
    assert f"  {'PipelineName':26} iris-classifier" in lines
    assert f"  {'GitHubConnectionArn':26} {CONNECTION_ARN}" in lines
    assert f"pipeline: {PIPELINE_URL}" in lines
    _all_calls_made(aws)


def test_an_existing_stack_is_updated_and_waited_for(config, body, aws):
    _expect_status(aws, "CREATE_COMPLETE")
    _expect_update(aws, body)
    _expect_status(aws, "UPDATE_COMPLETE")  # the waiter's poll
    _expect_status(aws, "UPDATE_COMPLETE", OUTPUTS)
    _expect_connection(aws, "AVAILABLE")

    code, lines = _deploy(config, aws)

    assert code == 0
    assert lines[0] == f"updating stack {STACK} (CREATE_COMPLETE) ..."
    assert f"stack {STACK}: UPDATE_COMPLETE" in lines
    assert f"pipeline: {PIPELINE_URL}" in lines
    _all_calls_made(aws)


def test_an_up_to_date_stack_is_success_with_nothing_to_change(config, body, aws):
    _expect_status(aws, "UPDATE_COMPLETE")
    aws.cfn.add_client_error(
        "update_stack",
        "ValidationError",
        "No updates are to be performed.",
        400,
        expected_params={"StackName": STACK, "TemplateBody": body, "Capabilities": ["CAPABILITY_IAM"], "Tags": TAGS},
    )

    code, lines = _deploy(config, aws)

    assert code == 0
    assert lines[-1] == f"stack {STACK} is up to date: nothing to change"
    _all_calls_made(aws)


def test_no_wait_returns_once_the_create_has_started(config, body, aws):
    _expect_no_stack(aws)
    _expect_create(aws, body)

    code, lines = _deploy(config, aws, wait=False)

    assert code == 0
    assert lines[-1] == f"started; follow it in the CloudFormation console (stack {STACK})"
    _all_calls_made(aws)


def test_a_failed_create_names_the_first_failed_resource_and_its_reason(config, body, aws):
    now = datetime.now(timezone.utc)
    _expect_no_stack(aws)
    _expect_create(aws, body)
    _expect_status(aws, "ROLLBACK_COMPLETE")  # the waiter's poll: a failure state
    aws.cfn.add_response(
        "describe_stack_events",
        {
            "StackEvents": [  # newest first, as CloudFormation returns them
                _event(STACK, "ROLLBACK_COMPLETE", now + timedelta(seconds=40)),
                _event("ModelBucket", "CREATE_FAILED", now + timedelta(seconds=12), "Resource creation cancelled"),
                _event(
                    "ArtifactKey",
                    "CREATE_FAILED",
                    now + timedelta(seconds=10),
                    "User: arn:aws:iam::111122223333:user/dev is not authorized to perform: kms:CreateKey",
                ),
                _event("ArtifactKey", "CREATE_IN_PROGRESS", now + timedelta(seconds=2)),
                _event(STACK, "CREATE_IN_PROGRESS", now + timedelta(seconds=1), "User Initiated"),
            ]
        },
        {"StackName": STACK},
    )

    with pytest.raises(DeployError) as exc:
        _deploy(config, aws)

    assert str(exc.value) == (
        f"stack {STACK} failed: ArtifactKey: "
        "User: arn:aws:iam::111122223333:user/dev is not authorized to perform: kms:CreateKey"
    )
    _all_calls_made(aws)


def test_a_failed_update_ignores_failures_from_earlier_deploys(config, body, aws):
    now = datetime.now(timezone.utc)
    _expect_status(aws, "UPDATE_COMPLETE")
    _expect_update(aws, body)
    _expect_status(aws, "UPDATE_ROLLBACK_COMPLETE")
    aws.cfn.add_response(
        "describe_stack_events",
        {
            "StackEvents": [
                _event("TrainProject", "UPDATE_FAILED", now + timedelta(seconds=8), "Invalid compute type"),
                _event("Pipeline", "UPDATE_FAILED", now - timedelta(days=3), "an old failure, already fixed"),
            ]
        },
        {"StackName": STACK},
    )

    with pytest.raises(DeployError) as exc:
        _deploy(config, aws)

    assert str(exc.value) == f"stack {STACK} failed: TrainProject: Invalid compute type"
    _all_calls_made(aws)


@pytest.mark.parametrize("status", ["CREATE_IN_PROGRESS", "UPDATE_IN_PROGRESS", "UPDATE_ROLLBACK_IN_PROGRESS"])
def test_a_stack_in_progress_is_refused_with_wait_and_retry(config, aws, status):
    _expect_status(aws, status)

    with pytest.raises(DeployError) as exc:
        _deploy(config, aws)

    assert str(exc.value) == f"stack {STACK} is {status}; run make deploy again when it has finished"
    _all_calls_made(aws)


def test_a_rolled_back_first_create_is_refused_with_delete_it(config, aws):
    _expect_status(aws, "ROLLBACK_COMPLETE")

    with pytest.raises(DeployError) as exc:
        _deploy(config, aws)

    assert str(exc.value) == (
        f"stack {STACK} is ROLLBACK_COMPLETE (its first create failed); delete it (make destroy) and deploy again"
    )
    _all_calls_made(aws)


def test_a_pending_github_connection_is_reported_with_where_to_complete_it(config, body, aws):
    _expect_no_stack(aws)
    _expect_create(aws, body)
    _expect_status(aws, "CREATE_COMPLETE")
    _expect_status(aws, "CREATE_COMPLETE", OUTPUTS)
    _expect_connection(aws, "PENDING")

    code, lines = _deploy(config, aws)

    assert code == 0
    assert any(CONNECTIONS_URL in line for line in lines)
    assert lines[-1] == "The pipeline will not start until the connection is AVAILABLE."
    _all_calls_made(aws)


def test_access_denied_is_one_line_with_the_operation_and_code(config, aws):
    message = (
        "User: arn:aws:iam::111122223333:user/dev is not authorized to perform: cloudformation:DescribeStacks "
        f"on resource: {STACK_ID}"
    )
    aws.cfn.add_client_error("describe_stacks", "AccessDenied", message, 403, expected_params={"StackName": STACK})

    with pytest.raises(DeployError) as exc:
        _deploy(config, aws)

    assert str(exc.value) == f"DescribeStacks: AccessDenied: {message}"
    _all_calls_made(aws)


def test_an_unreachable_endpoint_is_one_line_not_a_traceback(config, aws_env, real_session):
    # Nothing listens on the discard port; one attempt, so connection refused comes back at once.
    cfn = real_session.client(
        "cloudformation", endpoint_url="http://127.0.0.1:9", config=Config(retries={"total_max_attempts": 1})
    )

    with pytest.raises(DeployError) as exc:
        deploy_pipeline(config, session=FakeSession({"cloudformation": cfn}), echo=lambda line: None)

    assert str(exc.value) == 'Could not connect to the endpoint URL: "http://127.0.0.1:9/"'


def test_cli_without_credentials_exits_1_with_one_line(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(
        AWS_CONFIG_FILE=os.devnull,
        AWS_SHARED_CREDENTIALS_FILE=os.devnull,
        AWS_EC2_METADATA_DISABLED="true",
        HOME=str(tmp_path),
    )

    result = subprocess.run(
        [sys.executable, "-m", "pipeline", "deploy"], cwd=REPO, env=env, capture_output=True, text=True, timeout=60
    )

    assert result.returncode == 1
    (line,) = result.stderr.splitlines()
    assert line.startswith("deploy: no AWS credentials")
    assert "Traceback" not in result.stderr + result.stdout


def test_cli_with_a_missing_config_exits_2_with_one_line(tmp_path, capsys):
    missing = tmp_path / "nope.yml"

    code = main(["deploy", "--config", str(missing)])

    assert code == 2
    assert capsys.readouterr().err.splitlines() == [f"{missing}: file not found"]
