"""`make deploy`: a change set, shown and confirmed, executed with its events streamed; one-line failures.

CloudFormation, S3, STS and CodeStar Connections are botocore Stubbers on real clients, so each
test pins the exact parameters of every AWS call, and a hook records the order of all of them
across services. Nothing sleeps: the waiters' sleeps and the deploy's own polls are recorded.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import SimpleNamespace

import botocore.waiter
import pytest
from botocore.config import Config
from botocore.stub import Stubber

from pipeline import deploy
from pipeline.aws import AwsError
from pipeline.cli import main
from pipeline.config import load_config
from pipeline.deploy import change_set_name, change_table, deploy_pipeline, event_line, template_body
from pipeline.synth import synthesize

REPO = Path(__file__).resolve().parent.parent
REGION = "us-east-1"
ACCOUNT = "111122223333"
STACK = "iris-classifier-pipeline"
STACK_ID = f"arn:aws:cloudformation:{REGION}:{ACCOUNT}:stack/{STACK}/5b2c6f00-0000-4000-8000-000000000001"
CS = "sagemaker-cd-20240501120000"
CS_ID = f"arn:aws:cloudformation:{REGION}:{ACCOUNT}:changeSet/{CS}/7d3e8a00-0000-4000-8000-000000000004"
CONNECTION_ARN = f"arn:aws:codestar-connections:{REGION}:{ACCOUNT}:connection/0f1e2d3c-0000-4000-8000-000000000002"
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
# When the change set was created (CloudFormation's clock); this execution's events come after it.
T0 = datetime(2024, 5, 1, 12, 0, 0, tzinfo=timezone.utc)
YES = "not a terminal, so not asking: re-run with --yes (make deploy ARGS=--yes)"


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


@pytest.fixture(autouse=True)
def fixed_clock(monkeypatch):
    """A fixed change set name, and event times printed in UTC whatever the machine's zone."""
    monkeypatch.setattr(deploy, "change_set_name", lambda: CS)
    zone = os.environ.get("TZ")
    os.environ["TZ"] = "UTC"
    time.tzset()
    yield
    if zone is None:
        del os.environ["TZ"]
    else:
        os.environ["TZ"] = zone
    time.tzset()


@pytest.fixture(scope="module")
def clients(real_session):
    """The real clients the stubs wrap, made once (speed), each recording its calls' names in order."""
    made = {name: real_session.client(name) for name in ("cloudformation", "codestar-connections", "s3", "sts")}
    calls: list[str] = []
    for client in made.values():
        client.meta.events.register("before-parameter-build", lambda model, **_: calls.append(model.name))
    return made, calls


@pytest.fixture
def aws(aws_env, clients, monkeypatch):
    """Stubbed clients, a session handing them out, every call's name in order, and recorded sleeps."""
    clients, calls = clients
    calls.clear()
    waits: list[float] = []
    monkeypatch.setattr(botocore.waiter.time, "sleep", waits.append)
    stubs = {name: Stubber(client) for name, client in clients.items()}
    for stub in stubs.values():
        stub.activate()
    yield SimpleNamespace(
        cfn=stubs["cloudformation"],
        connections=stubs["codestar-connections"],
        s3=stubs["s3"],
        sts=stubs["sts"],
        session=FakeSession(clients),
        calls=calls,
        waits=waits,
        polls=[],
    )
    for stub in stubs.values():
        stub.deactivate()


def _deploy(config, aws, **kwargs) -> tuple[int, list[str]]:
    lines: list[str] = []
    code = deploy_pipeline(config, session=aws.session, echo=lines.append, sleep=aws.polls.append, **kwargs)
    for stub in (aws.cfn, aws.connections, aws.s3, aws.sts):
        stub.assert_no_pending_responses()
    return code, lines


def _failing_deploy(config, aws, **kwargs) -> tuple[str, list[str]]:
    lines: list[str] = []
    with pytest.raises(AwsError) as exc:
        deploy_pipeline(config, session=aws.session, echo=lines.append, sleep=aws.polls.append, **kwargs)
    for stub in (aws.cfn, aws.connections, aws.s3, aws.sts):
        stub.assert_no_pending_responses()
    return str(exc.value), lines


def _asker(*answers: bool):
    """A confirm() that gives these answers in turn and records the questions."""
    pending = list(answers)

    def confirm(question: str) -> bool:
        confirm.asked.append(question)
        return pending.pop(0)

    confirm.asked = []
    return confirm


# --- what CloudFormation and the others answer ----------------------------------------------------------


def _expect_status(aws, status: str, outputs: dict[str, str] | None = None, protected: bool = True) -> None:
    stack = {
        "StackId": STACK_ID,
        "StackName": STACK,
        "CreationTime": datetime(2024, 4, 1, 9, 0, tzinfo=timezone.utc),
        "StackStatus": status,
        "EnableTerminationProtection": protected,
    }
    if outputs:
        stack["Outputs"] = [{"OutputKey": k, "OutputValue": v} for k, v in outputs.items()]
    aws.cfn.add_response("describe_stacks", {"Stacks": [stack]}, {"StackName": STACK})


def _expect_no_stack(aws) -> None:
    aws.cfn.add_client_error(
        "describe_stacks",
        "ValidationError",
        f"Stack with id {STACK} does not exist",
        400,
        expected_params={"StackName": STACK},
    )


def _expect_create_change_set(aws, kind: str, template: dict[str, str]) -> None:
    aws.cfn.add_response(
        "create_change_set",
        {"Id": CS_ID, "StackId": STACK_ID},
        {
            "StackName": STACK,
            "ChangeSetName": CS,
            "ChangeSetType": kind,
            "Capabilities": ["CAPABILITY_IAM"],
            "Tags": TAGS,
            "Description": "make deploy of the iris-classifier pipeline",
            **template,
        },
    )


def _expect_change_set(aws, status: str, changes=(), reason: str | None = None, next_token=None, token=None) -> None:
    response = {
        "ChangeSetName": CS,
        "ChangeSetId": CS_ID,
        "StackId": STACK_ID,
        "StackName": STACK,
        "CreationTime": T0,
        "ExecutionStatus": "AVAILABLE" if status == "CREATE_COMPLETE" else "UNAVAILABLE",
        "Status": status,
        "Changes": [{"Type": "Resource", "ResourceChange": change} for change in changes],
    }
    if reason:
        response["StatusReason"] = reason
    if next_token:
        response["NextToken"] = next_token
    params = {"ChangeSetName": CS, "StackName": STACK}
    if token:
        params["NextToken"] = token
    aws.cfn.add_response("describe_change_set", response, params)


def _expect_ready_change_set(aws, kind: str, changes, template: dict[str, str]) -> None:
    """create_change_set, the waiter's one poll, and the listing describe_change_set."""
    _expect_create_change_set(aws, kind, template)
    _expect_change_set(aws, "CREATE_COMPLETE")
    _expect_change_set(aws, "CREATE_COMPLETE", changes)


def _change(action: str, logical_id: str, resource_type: str, replacement: str | None = None) -> dict:
    change = {"Action": action, "LogicalResourceId": logical_id, "ResourceType": resource_type}
    if replacement:
        change["Replacement"] = replacement
    return change


def _expect_delete_change_set(aws) -> None:
    aws.cfn.add_response("delete_change_set", {}, {"ChangeSetName": CS, "StackName": STACK})


def _expect_delete_stack(aws) -> None:
    aws.cfn.add_response("delete_stack", {}, {"StackName": STACK})


def _expect_execute(aws) -> None:
    aws.cfn.add_response("execute_change_set", {}, {"ChangeSetName": CS, "StackName": STACK, "ClientRequestToken": CS})


def _event(logical_id: str, status: str, seconds: float, reason: str | None = None) -> dict:
    """An event `seconds` after the change set was created."""
    event = {
        "StackId": STACK_ID,
        "EventId": f"{logical_id}-{status}-{seconds}",
        "StackName": STACK,
        "LogicalResourceId": logical_id,
        "ResourceStatus": status,
        "Timestamp": T0 + timedelta(seconds=seconds),
    }
    if reason:
        event["ResourceStatusReason"] = reason
    return event


def _expect_events(aws, *events: dict) -> None:
    """The stack's events, given oldest first, returned newest first as CloudFormation does."""
    aws.cfn.add_response(
        "describe_stack_events",
        {"StackEvents": sorted(events, key=lambda e: e["Timestamp"], reverse=True)},
        {"StackName": STACK},
    )


def _expect_protection(aws, enable: bool) -> None:
    aws.cfn.add_response(
        "update_termination_protection",
        {"StackId": STACK_ID},
        {"StackName": STACK, "EnableTerminationProtection": enable},
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


def _expect_quick_execution(aws, kind: str, protected: bool) -> None:
    """execute_change_set, one poll that finds it done, and what follows a success."""
    done = f"{kind}_COMPLETE"
    _expect_execute(aws)
    _expect_status(aws, done, OUTPUTS, protected=protected)
    _expect_events(aws, _event(STACK, f"{kind}_IN_PROGRESS", 2, "User Initiated"), _event(STACK, done, 40))
    if not protected:
        _expect_protection(aws, True)


QUICK_EXECUTION = [
    "ExecuteChangeSet",
    "DescribeStacks",
    "DescribeStackEvents",
]
ADDS = [
    _change("Add", "ArtifactKey", "AWS::KMS::Key"),
    _change("Add", "ArtifactBucket", "AWS::S3::Bucket"),
    _change("Add", "GitHubConnection", "AWS::CodeStarConnections::Connection"),
    _change("Add", "Pipeline", "AWS::CodePipeline::Pipeline"),
]


# --- the template ----------------------------------------------------------------------------------------


def test_the_deployed_template_is_the_synthesized_pipeline_template(config, body):
    assert json.loads(body) == synthesize(config).templates["pipeline.json"]


def test_change_sets_are_named_by_their_utc_creation_time():
    assert change_set_name(datetime(2024, 5, 1, 12, 0, 7, tzinfo=timezone.utc)) == "sagemaker-cd-20240501120007"


# --- the flows ----------------------------------------------------------------------------------------


def test_first_deploy_creates_through_a_change_set_streams_events_and_protects_the_stack(config, body, aws):
    _expect_no_stack(aws)
    _expect_create_change_set(aws, "CREATE", {"TemplateBody": body})
    _expect_change_set(aws, "CREATE_IN_PROGRESS")  # the waiter's first poll
    _expect_change_set(aws, "CREATE_COMPLETE")  # its second
    _expect_change_set(aws, "CREATE_COMPLETE", ADDS)
    _expect_execute(aws)
    started = _event(STACK, "CREATE_IN_PROGRESS", 10, "User Initiated")
    review = _event(STACK, "REVIEW_IN_PROGRESS", 0, "User Initiated")  # the change set made the stack
    key_started = _event("ArtifactKey", "CREATE_IN_PROGRESS", 12)
    _expect_status(aws, "CREATE_IN_PROGRESS", protected=False)
    _expect_events(aws, review, started, key_started)
    initiated = _event("ArtifactKey", "CREATE_IN_PROGRESS", 13, "Resource creation Initiated")
    key_done = _event("ArtifactKey", "CREATE_COMPLETE", 60)
    done = _event(STACK, "CREATE_COMPLETE", 75)
    _expect_status(aws, "CREATE_COMPLETE", OUTPUTS, protected=False)
    _expect_events(aws, review, started, key_started, initiated, key_done, done)
    _expect_protection(aws, True)
    _expect_connection(aws, "AVAILABLE")

    code, lines = _deploy(config, aws, yes=True)

    assert code == 0
    assert lines == [
        f"creating change set {CS} (CREATE) for stack {STACK} in {REGION} ...",
        "Action  Logical ID        Type                                  Replacement",
        "Add     ArtifactBucket    AWS::S3::Bucket",
        "Add     ArtifactKey       AWS::KMS::Key",
        "Add     GitHubConnection  AWS::CodeStarConnections::Connection",
        "Add     Pipeline          AWS::CodePipeline::Pipeline",
        "4 to add, 0 to modify, 0 to remove",
        f"executing change set {CS} ...",
        "[ 0m00s] 12:00:10 iris-classifier-pipeline CREATE_IN_PROGRESS User Initiated",
        "[ 0m02s] 12:00:12 ArtifactKey              CREATE_IN_PROGRESS",
        "[ 0m03s] 12:00:13 ArtifactKey              CREATE_IN_PROGRESS Resource creation…",  # cut to 80
        "[ 0m50s] 12:01:00 ArtifactKey              CREATE_COMPLETE",
        "[ 1m05s] 12:01:15 iris-classifier-pipeline CREATE_COMPLETE",
        f"stack {STACK}: CREATE_COMPLETE in 1m05s",
        f"termination protection enabled on {STACK} (make destroy lifts it)",
        f"  {'GitHubConnectionArn':26} {CONNECTION_ARN}",
        f"  {'ModelBucketName':26} iris-classifier-models-111122223333",
        f"  {'PipelineName':26} iris-classifier",
        f"pipeline: {PIPELINE_URL}",
    ]
    assert aws.calls == [
        "DescribeStacks",
        "CreateChangeSet",
        "DescribeChangeSet",
        "DescribeChangeSet",
        "DescribeChangeSet",
        "ExecuteChangeSet",
        "DescribeStacks",
        "DescribeStackEvents",
        "DescribeStacks",
        "DescribeStackEvents",
        "UpdateTerminationProtection",
        "GetConnection",
    ]
    assert aws.waits == [5]  # the change set waiter polled twice
    assert aws.polls == [5]  # the event stream polled twice


def test_an_update_shows_a_replacement_reads_every_change_page_and_asks(config, body, aws):
    _expect_status(aws, "UPDATE_ROLLBACK_COMPLETE")  # an earlier update failed: still updatable
    _expect_create_change_set(aws, "UPDATE", {"TemplateBody": body})
    _expect_change_set(aws, "CREATE_COMPLETE")
    _expect_change_set(
        aws,
        "CREATE_COMPLETE",
        [
            _change("Modify", "TrainProject", "AWS::CodeBuild::Project", "False"),
            _change("Remove", "LintLogs", "AWS::Logs::LogGroup"),
        ],
        next_token="page-2",
    )
    _expect_change_set(
        aws,
        "CREATE_COMPLETE",
        [
            _change("Modify", "ModelBucket", "AWS::S3::Bucket", "True"),
            _change("Add", "EndpointTestReports", "AWS::CodeBuild::ReportGroup"),
        ],
        token="page-2",
    )
    _expect_quick_execution(aws, "UPDATE", protected=True)
    _expect_connection(aws, "AVAILABLE")
    confirm = _asker(True)

    code, lines = _deploy(config, aws, interactive=True, confirm=confirm)

    assert code == 0
    assert confirm.asked == ["Deploy these changes?"]
    assert lines[1:7] == [
        "Action  Logical ID           Type                         Replacement",
        "Add     EndpointTestReports  AWS::CodeBuild::ReportGroup",
        "Modify  ModelBucket          AWS::S3::Bucket              True",
        "Modify  TrainProject         AWS::CodeBuild::Project      False",
        "Remove  LintLogs             AWS::Logs::LogGroup",
        "1 to add, 2 to modify (1 with replacement), 1 to remove",
    ]
    assert f"stack {STACK}: UPDATE_COMPLETE in 0m38s" in lines
    assert not any(line.startswith("termination protection") for line in lines)  # already on
    assert aws.calls == [
        "DescribeStacks",
        "CreateChangeSet",
        "DescribeChangeSet",
        "DescribeChangeSet",
        "DescribeChangeSet",
        *QUICK_EXECUTION,
        "GetConnection",
    ]


@pytest.mark.parametrize(
    "reason",
    [
        "The submitted information didn't contain changes. Submit different information to create a change set.",
        "No updates are to be performed.",
    ],
)
def test_no_change_deletes_the_empty_change_set_and_succeeds(config, body, aws, reason):
    _expect_status(aws, "UPDATE_COMPLETE")
    _expect_create_change_set(aws, "UPDATE", {"TemplateBody": body})
    _expect_change_set(aws, "FAILED", reason=reason)
    _expect_delete_change_set(aws)

    code, lines = _deploy(config, aws, yes=True)

    assert code == 0
    assert lines[-1] == f"stack {STACK} is up to date: nothing to change"
    assert aws.calls == ["DescribeStacks", "CreateChangeSet", "DescribeChangeSet", "DeleteChangeSet"]


def test_a_failed_change_set_is_one_line_with_its_reason(config, body, aws):
    _expect_status(aws, "UPDATE_COMPLETE")
    _expect_create_change_set(aws, "UPDATE", {"TemplateBody": body})
    _expect_change_set(
        aws, "FAILED", reason="Template format error: Unresolved resource dependencies [X]\nin Resources"
    )

    message, _ = _failing_deploy(config, aws, yes=True)

    assert message == (
        f"change set {CS} for stack {STACK} failed: Template format error: Unresolved resource dependencies [X] "
        "in Resources"
    )


def test_a_dry_run_on_an_existing_stack_shows_the_changes_and_deletes_the_change_set(config, body, aws):
    _expect_status(aws, "UPDATE_COMPLETE")
    _expect_ready_change_set(
        aws, "UPDATE", [_change("Modify", "Pipeline", "AWS::CodePipeline::Pipeline", "False")], {"TemplateBody": body}
    )
    _expect_delete_change_set(aws)

    code, lines = _deploy(config, aws, dry_run=True, interactive=True, confirm=_asker())

    assert code == 0
    assert lines[-2:] == ["0 to add, 1 to modify, 0 to remove", "dry run: nothing changed"]
    assert aws.calls == [
        "DescribeStacks",
        "CreateChangeSet",
        "DescribeChangeSet",
        "DescribeChangeSet",
        "DeleteChangeSet",
    ]


def test_a_dry_run_on_a_new_stack_also_deletes_the_review_stack_it_made(config, body, aws):
    _expect_no_stack(aws)
    _expect_ready_change_set(aws, "CREATE", ADDS, {"TemplateBody": body})
    _expect_delete_change_set(aws)
    _expect_delete_stack(aws)

    code, lines = _deploy(config, aws, dry_run=True)

    assert code == 0
    assert lines[-2:] == ["4 to add, 0 to modify, 0 to remove", "dry run: nothing changed"]
    assert aws.calls == [
        "DescribeStacks",
        "CreateChangeSet",
        "DescribeChangeSet",
        "DescribeChangeSet",
        "DeleteChangeSet",
        "DeleteStack",
    ]


def test_a_refused_confirmation_deletes_the_change_set_and_returns_1(config, body, aws):
    _expect_status(aws, "UPDATE_COMPLETE")
    _expect_ready_change_set(
        aws, "UPDATE", [_change("Modify", "Pipeline", "AWS::CodePipeline::Pipeline", "False")], {"TemplateBody": body}
    )
    _expect_delete_change_set(aws)
    confirm = _asker(False)

    code, lines = _deploy(config, aws, interactive=True, confirm=confirm)

    assert code == 1
    assert confirm.asked == ["Deploy these changes?"]
    assert lines[-1] == "nothing changed"
    assert "ExecuteChangeSet" not in aws.calls
    assert aws.calls[-1] == "DeleteChangeSet"


def test_ctrl_c_at_the_prompt_still_deletes_the_change_set_and_the_review_stack(config, body, aws):
    _expect_no_stack(aws)
    _expect_ready_change_set(aws, "CREATE", ADDS, {"TemplateBody": body})
    _expect_delete_change_set(aws)
    _expect_delete_stack(aws)

    def interrupted(question: str) -> bool:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        deploy_pipeline(config, session=aws.session, echo=lambda line: None, interactive=True, confirm=interrupted)

    aws.cfn.assert_no_pending_responses()
    assert aws.calls[-2:] == ["DeleteChangeSet", "DeleteStack"]


def test_not_a_terminal_without_yes_cleans_up_and_says_to_re_run_with_yes(config, body, aws):
    _expect_no_stack(aws)
    _expect_ready_change_set(aws, "CREATE", ADDS, {"TemplateBody": body})
    _expect_delete_change_set(aws)
    _expect_delete_stack(aws)
    confirm = _asker()

    message, lines = _failing_deploy(config, aws, interactive=False, confirm=confirm)

    assert message == YES
    assert confirm.asked == []
    assert lines[-1] == "4 to add, 0 to modify, 0 to remove"  # the changes were shown first
    assert aws.calls[-2:] == ["DeleteChangeSet", "DeleteStack"]


def test_a_rolled_back_first_create_is_deleted_and_created_again_after_confirmation(config, body, aws):
    _expect_status(aws, "ROLLBACK_COMPLETE", protected=True)  # made by an older deploy with protection on
    _expect_protection(aws, False)
    _expect_delete_stack(aws)
    _expect_status(aws, "DELETE_IN_PROGRESS")  # the delete waiter's first poll
    _expect_no_stack(aws)  # its second: gone
    _expect_ready_change_set(aws, "CREATE", ADDS, {"TemplateBody": body})
    _expect_quick_execution(aws, "CREATE", protected=False)
    _expect_connection(aws, "AVAILABLE")
    confirm = _asker(True, True)

    code, lines = _deploy(config, aws, interactive=True, confirm=confirm)

    assert code == 0
    assert confirm.asked == ["Delete it and create it again?", "Deploy these changes?"]
    assert lines[:4] == [
        f"stack {STACK} is ROLLBACK_COMPLETE: its first create failed and was rolled back, so it holds nothing "
        "and cannot be updated; it has to be deleted and created again.",
        f"deleting stack {STACK} ...",
        f"deleted stack {STACK}",
        f"creating change set {CS} (CREATE) for stack {STACK} in {REGION} ...",
    ]
    assert aws.calls == [
        "DescribeStacks",
        "UpdateTerminationProtection",
        "DeleteStack",
        "DescribeStacks",
        "DescribeStacks",
        "CreateChangeSet",
        "DescribeChangeSet",
        "DescribeChangeSet",
        *QUICK_EXECUTION,
        "UpdateTerminationProtection",
        "GetConnection",
    ]


def test_a_rolled_back_first_create_needs_yes_when_not_a_terminal(config, aws):
    _expect_status(aws, "ROLLBACK_COMPLETE")

    message, _ = _failing_deploy(config, aws)

    assert message == (
        f"stack {STACK} is ROLLBACK_COMPLETE; not a terminal, so not asking whether to delete and recreate it: "
        "re-run with --yes (make deploy ARGS=--yes)"
    )
    assert aws.calls == ["DescribeStacks"]


def test_a_running_operation_is_waited_for_then_the_deploy_goes_on(config, body, aws):
    _expect_status(aws, "UPDATE_IN_PROGRESS")
    _expect_status(aws, "UPDATE_COMPLETE_CLEANUP_IN_PROGRESS")
    _expect_status(aws, "UPDATE_COMPLETE")
    _expect_create_change_set(aws, "UPDATE", {"TemplateBody": body})
    _expect_change_set(aws, "FAILED", reason="The submitted information didn't contain changes.")
    _expect_delete_change_set(aws)

    code, lines = _deploy(config, aws, yes=True, poll_seconds=7)

    assert code == 0
    assert lines[:2] == [
        f"stack {STACK} is UPDATE_IN_PROGRESS: another operation is running; waiting for it to end ...",
        f"stack {STACK} is UPDATE_COMPLETE_CLEANUP_IN_PROGRESS: another operation is running; waiting for it to end ...",
    ]
    assert aws.polls == [7, 7]
    assert aws.calls[:4] == ["DescribeStacks", "DescribeStacks", "DescribeStacks", "CreateChangeSet"]


def test_a_stack_deleted_while_waiting_is_created(config, body, aws):
    _expect_status(aws, "DELETE_IN_PROGRESS")
    _expect_no_stack(aws)
    _expect_ready_change_set(aws, "CREATE", ADDS, {"TemplateBody": body})
    _expect_delete_change_set(aws)
    _expect_delete_stack(aws)

    code, _ = _deploy(config, aws, dry_run=True)

    assert code == 0
    assert aws.polls == [5]


def test_a_review_in_progress_stack_gets_a_create_change_set(config, body, aws):
    _expect_status(aws, "REVIEW_IN_PROGRESS", protected=False)  # an earlier create change set, never executed
    _expect_ready_change_set(aws, "CREATE", ADDS, {"TemplateBody": body})
    _expect_delete_change_set(aws)
    _expect_delete_stack(aws)

    code, _ = _deploy(config, aws, dry_run=True)

    assert code == 0
    assert aws.polls == []


def test_update_rollback_failed_says_to_continue_the_rollback(config, aws):
    _expect_status(aws, "UPDATE_ROLLBACK_FAILED")

    message, _ = _failing_deploy(config, aws, yes=True)

    assert message == (
        f"stack {STACK} is UPDATE_ROLLBACK_FAILED: run `aws cloudformation continue-update-rollback --stack-name "
        f"{STACK} --region {REGION}` (add --resources-to-skip LOGICAL_ID ... for resources that cannot roll back), "
        "wait for UPDATE_ROLLBACK_COMPLETE, then deploy again"
    )
    assert aws.calls == ["DescribeStacks"]


def test_delete_failed_says_to_finish_the_delete(config, aws):
    _expect_status(aws, "DELETE_FAILED")

    message, _ = _failing_deploy(config, aws, yes=True)

    assert message == f"stack {STACK} is DELETE_FAILED: finish deleting it (make destroy), then deploy again"


def test_a_failed_update_names_the_first_failure_of_this_execution(config, body, aws):
    _expect_status(aws, "UPDATE_COMPLETE")
    _expect_ready_change_set(
        aws, "UPDATE", [_change("Modify", "TrainProject", "AWS::CodeBuild::Project", "False")], {"TemplateBody": body}
    )
    _expect_execute(aws)
    old = _event("Pipeline", "UPDATE_FAILED", -3 * 86400, "an old failure, already fixed")
    started = _event(STACK, "UPDATE_IN_PROGRESS", 3, "User Initiated")
    train = _event("TrainProject", "UPDATE_IN_PROGRESS", 5)
    _expect_status(aws, "UPDATE_IN_PROGRESS")
    _expect_events(aws, old, started, train)
    denied = (
        'Resource handler returned message: "Invalid compute type BUILD_GENERAL1_HUGE for LINUX_CONTAINER" '
        "(RequestToken: 0a1b, HandlerErrorCode: InvalidRequest)"
    )
    failed = _event("TrainProject", "UPDATE_FAILED", 9, denied)
    cancelled = _event("Pipeline", "UPDATE_FAILED", 10, "Resource update cancelled")
    rolling = _event(
        STACK,
        "UPDATE_ROLLBACK_IN_PROGRESS",
        11,
        "The following resource(s) failed to update: [Pipeline, TrainProject].",
    )
    rolled = _event(STACK, "UPDATE_ROLLBACK_COMPLETE", 30)
    _expect_status(aws, "UPDATE_ROLLBACK_COMPLETE")
    _expect_events(aws, old, started, train, failed, cancelled, rolling, rolled)

    message, lines = _failing_deploy(config, aws, yes=True)

    assert message == f"stack {STACK} failed (UPDATE_ROLLBACK_COMPLETE): TrainProject: {denied}"
    assert lines[-6:] == [
        "[ 0m00s] 12:00:03 iris-classifier-pipeline UPDATE_IN_PROGRESS User Initiated",
        "[ 0m02s] 12:00:05 TrainProject             UPDATE_IN_PROGRESS",
        f"[ 0m06s] 12:00:09 TrainProject             UPDATE_FAILED {denied}",  # a failure: never cut
        "[ 0m07s] 12:00:10 Pipeline                 UPDATE_FAILED Resource update cancelled",
        "[ 0m08s] 12:00:11 iris-classifier-pipeline UPDATE_ROLLBACK_IN_PROGRESS The foll…",  # cut to 80
        "[ 0m27s] 12:00:30 iris-classifier-pipeline UPDATE_ROLLBACK_COMPLETE",
    ]
    assert not any("an old failure" in line for line in lines)


def test_a_stale_status_from_before_the_execution_does_not_end_the_stream(config, body, aws):
    _expect_status(aws, "UPDATE_COMPLETE")
    _expect_ready_change_set(
        aws, "UPDATE", [_change("Modify", "Pipeline", "AWS::CodePipeline::Pipeline", "False")], {"TemplateBody": body}
    )
    _expect_execute(aws)
    _expect_status(aws, "UPDATE_COMPLETE")  # read before CloudFormation began: no event of this execution yet
    _expect_events(aws, _event(STACK, "UPDATE_COMPLETE", -600))
    started = _event(STACK, "UPDATE_IN_PROGRESS", 3, "User Initiated")
    _expect_status(aws, "UPDATE_IN_PROGRESS")
    _expect_events(aws, started)
    _expect_status(aws, "UPDATE_COMPLETE", OUTPUTS)
    _expect_events(aws, started, _event(STACK, "UPDATE_COMPLETE", 20))
    _expect_connection(aws, "AVAILABLE")

    code, lines = _deploy(config, aws, yes=True)

    assert code == 0
    assert f"stack {STACK}: UPDATE_COMPLETE in 0m17s" in lines
    assert aws.polls == [5, 5]


def test_a_stack_deleted_while_deploying_is_one_line(config, body, aws):
    _expect_status(aws, "UPDATE_COMPLETE")
    _expect_ready_change_set(
        aws, "UPDATE", [_change("Modify", "Pipeline", "AWS::CodePipeline::Pipeline", "False")], {"TemplateBody": body}
    )
    _expect_execute(aws)
    _expect_status(aws, "UPDATE_IN_PROGRESS")
    _expect_events(aws, _event(STACK, "UPDATE_IN_PROGRESS", 3, "User Initiated"))
    _expect_no_stack(aws)

    message, _ = _failing_deploy(config, aws, yes=True)

    assert message == f"stack {STACK} was deleted while deploying"


def test_a_pending_github_connection_is_reported_with_where_to_complete_it(config, body, aws):
    _expect_no_stack(aws)
    _expect_ready_change_set(aws, "CREATE", ADDS, {"TemplateBody": body})
    _expect_quick_execution(aws, "CREATE", protected=False)
    _expect_connection(aws, "PENDING")

    code, lines = _deploy(config, aws, yes=True)

    assert code == 0
    assert lines[-2:] == [
        f"The GitHub connection is PENDING: complete it at {CONNECTIONS_URL} (Update pending connection).",
        "The pipeline will not start until the connection is AVAILABLE.",
    ]


# --- templates over the inline limit ------------------------------------------------------------------------


BUCKET = f"sagemaker-cd-templates-{ACCOUNT}-{REGION}"


def _staged(body: str, region: str = REGION) -> tuple[str, str]:
    key = f"iris-classifier/pipeline-{hashlib.sha256(body.encode()).hexdigest()[:16]}.json"
    return key, f"https://sagemaker-cd-templates-{ACCOUNT}-{region}.s3.{region}.amazonaws.com/{key}"


def _expect_caller(aws) -> None:
    aws.sts.add_response(
        "get_caller_identity",
        {"UserId": "AIDAEXAMPLE", "Account": ACCOUNT, "Arn": f"arn:aws:iam::{ACCOUNT}:user/dev"},
        {},
    )


def _expect_bucket_setup(aws, bucket: str, region: str) -> None:
    where = {} if region == "us-east-1" else {"CreateBucketConfiguration": {"LocationConstraint": region}}
    aws.s3.add_response("create_bucket", {}, {"Bucket": bucket, **where})
    owner = {"Bucket": bucket, "ExpectedBucketOwner": ACCOUNT}
    aws.s3.add_response(
        "put_public_access_block",
        {},
        {
            **owner,
            "PublicAccessBlockConfiguration": {
                "BlockPublicAcls": True,
                "IgnorePublicAcls": True,
                "BlockPublicPolicy": True,
                "RestrictPublicBuckets": True,
            },
        },
    )
    aws.s3.add_response(
        "put_bucket_encryption",
        {},
        {
            **owner,
            "ServerSideEncryptionConfiguration": {
                "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]
            },
        },
    )
    aws.s3.add_response(
        "put_bucket_lifecycle_configuration",
        {},
        {
            **owner,
            "LifecycleConfiguration": {
                "Rules": [
                    {
                        "ID": "expire-staged-templates",
                        "Status": "Enabled",
                        "Filter": {"Prefix": ""},
                        "Expiration": {"Days": 30},
                    }
                ]
            },
        },
    )


def _expect_upload(aws, bucket: str, key: str, body: str) -> None:
    aws.s3.add_response(
        "put_object",
        {"ETag": '"abc"'},
        {
            "Bucket": bucket,
            "Key": key,
            "Body": body.encode(),
            "ContentType": "application/json",
            "ExpectedBucketOwner": ACCOUNT,
        },
    )


def test_a_large_template_goes_through_a_staging_bucket_made_on_the_first_deploy(config, body, aws, monkeypatch):
    monkeypatch.setattr(deploy, "INLINE_TEMPLATE_LIMIT", 1000)
    key, url = _staged(body)
    _expect_no_stack(aws)
    _expect_caller(aws)
    aws.s3.add_client_error(
        "head_bucket", "404", "Not Found", 404, expected_params={"Bucket": BUCKET, "ExpectedBucketOwner": ACCOUNT}
    )
    _expect_bucket_setup(aws, BUCKET, REGION)
    _expect_upload(aws, BUCKET, key, body)
    _expect_ready_change_set(aws, "CREATE", ADDS, {"TemplateURL": url})
    _expect_quick_execution(aws, "CREATE", protected=False)
    _expect_connection(aws, "AVAILABLE")

    code, lines = _deploy(config, aws, yes=True)

    assert code == 0
    assert lines[:2] == [
        f"created template staging bucket {BUCKET} (objects expire after 30 days)",
        f"template is {len(body.encode())} bytes, over the 1000-byte inline limit: uploaded to s3://{BUCKET}/{key}",
    ]
    assert aws.calls[:9] == [
        "DescribeStacks",
        "GetCallerIdentity",
        "HeadBucket",
        "CreateBucket",
        "PutPublicAccessBlock",
        "PutBucketEncryption",
        "PutBucketLifecycleConfiguration",
        "PutObject",
        "CreateChangeSet",
    ]


def test_a_staging_bucket_outside_us_east_1_is_created_with_its_location(config, body, aws, monkeypatch):
    monkeypatch.setattr(deploy, "INLINE_TEMPLATE_LIMIT", 1000)
    frankfurt = config.model_copy(update={"region": "eu-central-1"})
    bucket = f"sagemaker-cd-templates-{ACCOUNT}-eu-central-1"
    key, url = _staged(body, "eu-central-1")
    _expect_status(aws, "UPDATE_COMPLETE")
    _expect_caller(aws)
    aws.s3.add_client_error(
        "head_bucket", "404", "Not Found", 404, expected_params={"Bucket": bucket, "ExpectedBucketOwner": ACCOUNT}
    )
    _expect_bucket_setup(aws, bucket, "eu-central-1")
    _expect_upload(aws, bucket, key, body)
    _expect_ready_change_set(aws, "UPDATE", ADDS, {"TemplateURL": url})
    _expect_delete_change_set(aws)

    code, _ = _deploy(frankfurt, aws, dry_run=True)

    assert code == 0


def test_an_existing_staging_bucket_only_receives_the_template(config, body, aws, monkeypatch):
    monkeypatch.setattr(deploy, "INLINE_TEMPLATE_LIMIT", 1000)
    key, url = _staged(body)
    _expect_status(aws, "UPDATE_COMPLETE")
    _expect_caller(aws)
    aws.s3.add_response("head_bucket", {}, {"Bucket": BUCKET, "ExpectedBucketOwner": ACCOUNT})
    _expect_upload(aws, BUCKET, key, body)
    _expect_ready_change_set(aws, "UPDATE", ADDS, {"TemplateURL": url})
    _expect_delete_change_set(aws)

    code, _ = _deploy(config, aws, dry_run=True)

    assert code == 0
    assert aws.calls[:4] == ["DescribeStacks", "GetCallerIdentity", "HeadBucket", "PutObject"]


@pytest.mark.parametrize("squatted_at", ["head_bucket", "create_bucket"])
def test_a_staging_bucket_owned_by_another_account_stops_the_deploy_in_one_line(config, aws, monkeypatch, squatted_at):
    monkeypatch.setattr(deploy, "INLINE_TEMPLATE_LIMIT", 1000)
    _expect_no_stack(aws)
    _expect_caller(aws)
    head = {"Bucket": BUCKET, "ExpectedBucketOwner": ACCOUNT}
    if squatted_at == "head_bucket":
        aws.s3.add_client_error("head_bucket", "403", "Forbidden", 403, expected_params=head)
    else:
        aws.s3.add_client_error("head_bucket", "404", "Not Found", 404, expected_params=head)
        aws.s3.add_client_error(
            "create_bucket",
            "BucketAlreadyExists",
            "The requested bucket name is not available.",
            409,
            expected_params={"Bucket": BUCKET},
        )

    message, _ = _failing_deploy(config, aws, yes=True)

    assert message == (
        f"template staging bucket {BUCKET} exists but is not accessible to account {ACCOUNT} "
        "(owned by another account?); remove it or grant access, then deploy again"
    )
    assert "PutObject" not in aws.calls and "CreateChangeSet" not in aws.calls


# --- one-line errors ----------------------------------------------------------------------------------------


def test_access_denied_is_one_line_with_the_operation_and_code(config, aws):
    message = (
        "User: arn:aws:iam::111122223333:user/dev is not authorized to perform: cloudformation:DescribeStacks "
        f"on resource: {STACK_ID}"
    )
    aws.cfn.add_client_error("describe_stacks", "AccessDenied", message, 403, expected_params={"StackName": STACK})

    error, _ = _failing_deploy(config, aws, yes=True)

    assert error == f"DescribeStacks: AccessDenied: {message}"


def test_access_denied_on_execute_is_one_line(config, body, aws):
    _expect_status(aws, "UPDATE_COMPLETE")
    _expect_ready_change_set(aws, "UPDATE", ADDS, {"TemplateBody": body})
    aws.cfn.add_client_error(
        "execute_change_set",
        "AccessDenied",
        "not authorized to perform: cloudformation:ExecuteChangeSet",
        403,
        expected_params={"ChangeSetName": CS, "StackName": STACK, "ClientRequestToken": CS},
    )

    error, _ = _failing_deploy(config, aws, yes=True)

    assert error == "ExecuteChangeSet: AccessDenied: not authorized to perform: cloudformation:ExecuteChangeSet"


def test_an_unreachable_endpoint_is_one_line_not_a_traceback(config, aws_env, real_session):
    # Nothing listens on the discard port; one attempt, so connection refused comes back at once.
    cfn = real_session.client(
        "cloudformation", endpoint_url="http://127.0.0.1:9", config=Config(retries={"total_max_attempts": 1})
    )

    with pytest.raises(AwsError) as exc:
        deploy_pipeline(config, session=FakeSession({"cloudformation": cfn}), echo=lambda line: None)

    assert str(exc.value) == 'Could not connect to the endpoint URL: "http://127.0.0.1:9/"'


# --- what the user reads ------------------------------------------------------------------------------------


def test_the_change_table_of_the_whole_template_fits_80_columns(config):
    resources = synthesize(config).templates["pipeline.json"]["Resources"]
    changes = [
        {"Type": "Resource", "ResourceChange": _change("Add", logical_id, resource["Type"])}
        for logical_id, resource in resources.items()
    ]

    lines = change_table(changes)

    assert max(len(line) for line in lines) <= 80
    assert any(line.endswith("AWS::CodeStarConnections::Connecti…") for line in lines)  # cut, and marked
    assert lines[-1] == f"{len(resources)} to add, 0 to modify, 0 to remove"


def test_the_count_line_tells_conditional_replacements_apart():
    changes = [
        {"Type": "Resource", "ResourceChange": _change("Modify", "A", "AWS::S3::Bucket", "True")},
        {"Type": "Resource", "ResourceChange": _change("Modify", "B", "AWS::S3::Bucket", "Conditional")},
    ]

    assert change_table(changes)[-1] == "0 to add, 2 to modify (1 with replacement, 1 may be replaced), 0 to remove"


def test_an_event_line_cuts_a_long_reason_to_80_columns():
    event = _event("ModelBucket", "CREATE_IN_PROGRESS", 65, "Resource creation Initiated " * 4)

    line = event_line(event, T0)

    assert len(line) == 80
    assert line.startswith("[ 1m05s] 12:01:05 ModelBucket              CREATE_IN_PROGRESS Resource creation")
    assert line.endswith("…")


# --- the command line ------------------------------------------------------------------------------------


def test_cli_with_a_missing_config_exits_2_with_one_line(tmp_path, capsys):
    missing = tmp_path / "nope.yml"

    code = main(["deploy", "--config", str(missing)])

    assert code == 2
    assert capsys.readouterr().err.splitlines() == [f"{missing}: file not found"]
