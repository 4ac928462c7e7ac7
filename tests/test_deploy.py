"""`make deploy`: decide, then do.

The decisions (`decide`, `after_review`) are pure and tested as tables. A handful of flows glue
their moves together against botocore Stubbers (conftest's stub_aws) that pin every AWS call's
parameters; nothing sleeps: the waiters' sleeps and the deploy's own polls are recorded.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from pipeline import deploy
from pipeline.aws import AwsError
from pipeline.cli import main
from pipeline.config import load_config
from pipeline.deploy import (
    Move,
    StackDeployment,
    Step,
    after_review,
    change_set_name,
    change_table,
    decide,
    deploy_pipeline,
    deploy_stack,
    event_line,
    pipeline_deployment,
    stage_template,
)
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
CONSOLE = f"https://{REGION}.console.aws.amazon.com/codesuite"
OUTPUTS = {
    "PipelineName": "iris-classifier",
    "ModelBucketName": "iris-classifier-models-111122223333",
    "GitHubConnectionArn": CONNECTION_ARN,
}
# When the change set was created (CloudFormation's clock); this execution's events come after it.
T0 = datetime(2024, 5, 1, 12, 0, 0, tzinfo=timezone.utc)
YES = "not a terminal, so not asking: re-run with --yes (make deploy ARGS=--yes)"
BUCKET = f"sagemaker-cd-templates-{ACCOUNT}-{REGION}"


@pytest.fixture(scope="module")
def config():
    # The flow tests send the template inline: the sample without its UpdatePipeline stage and its
    # new-data trigger (50.7 KB compact) is under CloudFormation's 51,200 bytes; the whole sample's
    # (59 KB) goes through S3, as test_the_whole_sample_is_over_the_inline_limit_and_goes_through_s3
    # shows. Without the training data seed: the seeding flows have tests of their own (below).
    sample = load_config(REPO / "pipeline.yml")
    data = sample.training_data.model_copy(update={"seed_dir": None})
    triggers = sample.triggers.model_copy(update={"new_data": False})
    return sample.model_copy(update={"self_update": False, "training_data": data, "triggers": triggers})


@pytest.fixture(scope="module")
def deployment(config):
    return pipeline_deployment(config)


@pytest.fixture(scope="module")
def body(deployment):
    return deployment.template_body


@pytest.fixture(autouse=True)
def fixed_clock(monkeypatch):
    """A fixed change set name, and event times printed in UTC whatever the machine's zone."""
    monkeypatch.setattr(deploy, "change_set_name", lambda: CS)
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.fixture
def aws(stub_aws):
    """Stubbed CloudFormation, CodeStar Connections, S3 and STS; the deploy's own polls are recorded."""
    stubbed = stub_aws("cloudformation", "codestar-connections", "s3", "sts")
    stubbed.cfn, stubbed.connections, stubbed.s3, stubbed.sts = stubbed.stubs.values()
    stubbed.polls = []
    return stubbed


def _deploy(config, aws, **kwargs) -> tuple[int, list[str]]:
    lines: list[str] = []
    code = deploy_pipeline(config, session=aws.session, echo=lines.append, sleep=aws.polls.append, **kwargs)
    return code, lines


def _deploy_stack(deployment, aws, **kwargs) -> tuple[dict | None, list[str]]:
    lines: list[str] = []
    return deploy_stack(deployment, aws.session, echo=lines.append, sleep=aws.polls.append, **kwargs), lines


def _failing_deploy(config, aws, **kwargs) -> str:
    with pytest.raises(AwsError) as exc:
        _deploy(config, aws, **kwargs)
    return str(exc.value)


def _asker(*answers: bool):
    """A confirm() that gives these answers in turn and records the questions."""
    pending = list(answers)

    def confirm(question: str) -> bool:
        confirm.asked.append(question)
        return pending.pop(0)

    confirm.asked = []
    return confirm


# --- what CloudFormation and the others answer ----------------------------------------------------------


def _expect_status(aws, status: str, outputs=None, protected: bool = True, stack: str = STACK) -> None:
    answer = {
        "StackId": STACK_ID,
        "StackName": stack,
        "CreationTime": datetime(2024, 4, 1, 9, 0, tzinfo=timezone.utc),
        "StackStatus": status,
        "EnableTerminationProtection": protected,
        "Outputs": [{"OutputKey": k, "OutputValue": v} for k, v in (outputs or {}).items()],
    }
    aws.cfn.add_response("describe_stacks", {"Stacks": [answer]}, {"StackName": stack})


def _expect_no_stack(aws) -> None:
    message = f"Stack with id {STACK} does not exist"
    aws.cfn.add_client_error("describe_stacks", "ValidationError", message, 400, expected_params={"StackName": STACK})


def _expect_create_change_set(aws, kind: str, template: dict[str, str], **overrides) -> None:
    params = {
        "StackName": STACK,
        "ChangeSetName": CS,
        "ChangeSetType": kind,
        "Capabilities": ["CAPABILITY_IAM"],
        "Tags": TAGS,
        "Description": "make deploy of the iris-classifier pipeline",
        **template,
        **overrides,
    }
    aws.cfn.add_response("create_change_set", {"Id": CS_ID, "StackId": STACK_ID}, params)


def _expect_change_set(aws, status: str, changes=(), reason=None, next_token=None, token=None, stack=STACK) -> None:
    response = {
        "ChangeSetName": CS,
        "StackName": stack,
        "CreationTime": T0,
        "Status": status,
        "Changes": [{"Type": "Resource", "ResourceChange": change} for change in changes],
    }
    response |= {"StatusReason": reason} if reason else {}
    response |= {"NextToken": next_token} if next_token else {}
    params = {"ChangeSetName": CS, "StackName": stack} | ({"NextToken": token} if token else {})
    aws.cfn.add_response("describe_change_set", response, params)


def _expect_ready_change_set(aws, kind: str, changes, template: dict[str, str]) -> None:
    """create_change_set, the waiter's one poll, and the listing describe_change_set."""
    _expect_create_change_set(aws, kind, template)
    _expect_change_set(aws, "CREATE_COMPLETE")
    _expect_change_set(aws, "CREATE_COMPLETE", changes)


def _change(action: str, logical_id: str, resource_type: str, replacement: str | None = None) -> dict:
    change = {"Action": action, "LogicalResourceId": logical_id, "ResourceType": resource_type}
    return change | ({"Replacement": replacement} if replacement else {})


def _expect_discard(aws, review_stack: bool = False, stack: str = STACK) -> None:
    """The change set deleted, and for a new stack the REVIEW_IN_PROGRESS stack it made."""
    aws.cfn.add_response("delete_change_set", {}, {"ChangeSetName": CS, "StackName": stack})
    if review_stack:
        aws.cfn.add_response("delete_stack", {}, {"StackName": stack})


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
    return event | ({"ResourceStatusReason": reason} if reason else {})


def _expect_events(aws, *events: dict) -> None:
    """The stack's events, given oldest first, returned newest first as CloudFormation does."""
    newest_first = sorted(events, key=lambda e: e["Timestamp"], reverse=True)
    aws.cfn.add_response("describe_stack_events", {"StackEvents": newest_first}, {"StackName": STACK})


def _expect_protection(aws, enable: bool) -> None:
    params = {"StackName": STACK, "EnableTerminationProtection": enable}
    aws.cfn.add_response("update_termination_protection", {"StackId": STACK_ID}, params)


def _expect_connection(aws, status: str) -> None:
    connection = {
        "ConnectionName": "iris-classifier-github",
        "ConnectionArn": CONNECTION_ARN,
        "ConnectionStatus": status,
    }
    aws.connections.add_response("get_connection", {"Connection": connection}, {"ConnectionArn": CONNECTION_ARN})


ADDS = [
    _change("Add", "ArtifactKey", "AWS::KMS::Key"),
    _change("Add", "ArtifactBucket", "AWS::S3::Bucket"),
    _change("Add", "GitHubConnection", "AWS::CodeStarConnections::Connection"),
    _change("Add", "Pipeline", "AWS::CodePipeline::Pipeline"),
]
ADDS_TABLE = [
    "Action  Logical ID        Type                                  Replacement",
    "Add     ArtifactBucket    AWS::S3::Bucket",
    "Add     ArtifactKey       AWS::KMS::Key",
    "Add     GitHubConnection  AWS::CodeStarConnections::Connection",
    "Add     Pipeline          AWS::CodePipeline::Pipeline",
    "4 to add, 0 to modify, 0 to remove",
]


# --- the pipeline stack --------------------------------------------------------------------------------


def test_the_pipeline_deployment_is_the_synthesized_template_with_the_project_tags(config, deployment):
    assert json.loads(deployment.template_body) == synthesize(config).templates["pipeline.json"]
    assert (deployment.name, deployment.region, deployment.capabilities) == (STACK, REGION, ("CAPABILITY_IAM",))
    assert deployment.tags == {"team": "ml-platform", "sagemaker-cd:project": "iris-classifier"}


def test_change_sets_are_named_by_their_utc_creation_time():
    assert change_set_name(datetime(2024, 5, 1, 12, 0, 7, tzinfo=timezone.utc)) == "sagemaker-cd-20240501120007"


# --- deciding: tables ------------------------------------------------------------------------------------

DRY_RUN = {"dry_run": True, "yes": False, "interactive": True}
DRY_RUN_YES = {"dry_run": True, "yes": True, "interactive": False}
YES_FLAG = {"dry_run": False, "yes": True, "interactive": False}
ASK = {"dry_run": False, "yes": False, "interactive": True}
NO_TERMINAL = {"dry_run": False, "yes": False, "interactive": False}
ROLLED_BACK = (
    f"stack {STACK} is ROLLBACK_COMPLETE: its first create failed and was rolled back, so it holds nothing "
    "and cannot be updated; it has to be deleted and created again."
)
RECREATE_NEEDS_YES = (
    f"stack {STACK} is ROLLBACK_COMPLETE; not a terminal, so not asking whether to delete and recreate it: "
    "re-run with --yes (make deploy ARGS=--yes)"
)
BOTH_FAILED = (
    f"stack {STACK} is ROLLBACK_FAILED (its first create failed, and so did the rollback): delete it (make destroy), "
    "then deploy again"
)
CONTINUE_ROLLBACK = (
    f"stack {STACK} is UPDATE_ROLLBACK_FAILED: run `aws cloudformation continue-update-rollback --stack-name {STACK} "
    f"--region {REGION}` (add --resources-to-skip LOGICAL_ID ... for resources that cannot roll back), wait for "
    "UPDATE_ROLLBACK_COMPLETE, then deploy again"
)
FINISH_DELETE = f"stack {STACK} is DELETE_FAILED: finish deleting it (make destroy), then deploy again"


def _waiting(status: str) -> Move:
    return Move(Step.WAIT, say=f"stack {STACK} is {status}: another operation is running; waiting for it to end ...")


@pytest.mark.parametrize(
    ("status", "flags", "move"),
    [
        (None, YES_FLAG, Move(Step.CREATE)),
        (None, DRY_RUN, Move(Step.CREATE)),  # a dry run still creates the change set, to show it
        ("REVIEW_IN_PROGRESS", NO_TERMINAL, Move(Step.CREATE)),  # an earlier create change set, never executed
        ("CREATE_IN_PROGRESS", YES_FLAG, _waiting("CREATE_IN_PROGRESS")),
        ("UPDATE_COMPLETE_CLEANUP_IN_PROGRESS", DRY_RUN, _waiting("UPDATE_COMPLETE_CLEANUP_IN_PROGRESS")),
        ("DELETE_IN_PROGRESS", ASK, _waiting("DELETE_IN_PROGRESS")),
        ("UPDATE_ROLLBACK_IN_PROGRESS", NO_TERMINAL, _waiting("UPDATE_ROLLBACK_IN_PROGRESS")),
        ("ROLLBACK_COMPLETE", DRY_RUN, Move(Step.STOP, say=ROLLED_BACK)),
        ("ROLLBACK_COMPLETE", DRY_RUN_YES, Move(Step.STOP, say=ROLLED_BACK)),
        ("ROLLBACK_COMPLETE", YES_FLAG, Move(Step.RECREATE, say=ROLLED_BACK)),
        ("ROLLBACK_COMPLETE", ASK, Move(Step.ASK, ROLLED_BACK, "Delete it and create it again?", Step.RECREATE)),
        ("ROLLBACK_COMPLETE", NO_TERMINAL, Move(Step.REFUSE, say=ROLLED_BACK, error=RECREATE_NEEDS_YES)),
        ("ROLLBACK_FAILED", YES_FLAG, Move(Step.REFUSE, error=BOTH_FAILED)),
        ("UPDATE_ROLLBACK_FAILED", YES_FLAG, Move(Step.REFUSE, error=CONTINUE_ROLLBACK)),
        ("DELETE_FAILED", ASK, Move(Step.REFUSE, error=FINISH_DELETE)),
        ("CREATE_COMPLETE", NO_TERMINAL, Move(Step.UPDATE)),
        ("UPDATE_COMPLETE", DRY_RUN, Move(Step.UPDATE)),
        ("UPDATE_ROLLBACK_COMPLETE", ASK, Move(Step.UPDATE)),  # an earlier update failed: still updatable
        ("IMPORT_COMPLETE", YES_FLAG, Move(Step.UPDATE)),
    ],
)
def test_decide_picks_the_move_from_the_stack_status_and_the_flags(status, flags, move):
    assert decide(status, stack=STACK, region=REGION, **flags) == move


@pytest.mark.parametrize(
    ("status", "left_behind", "say"),
    [
        ("ROLLBACK_COMPLETE", (), ROLLED_BACK),
        (
            "ROLLBACK_COMPLETE",
            ("ModelBucket (AWS::S3::Bucket) b-1", "ArtifactKey (AWS::KMS::Key) k-1"),
            f"{ROLLED_BACK} Its rollback kept ModelBucket (AWS::S3::Bucket) b-1, ArtifactKey (AWS::KMS::Key) k-1: "
            "deleting the stack leaves them; remove them yourself if unused.",
        ),
    ],
)
def test_recreating_says_what_the_failed_creates_rollback_kept(status, left_behind, say):
    assert decide(status, stack=STACK, region=REGION, left_behind=left_behind, **YES_FLAG) == Move(Step.RECREATE, say)


@pytest.mark.parametrize(
    ("flags", "move"),
    [
        (DRY_RUN, Move(Step.STOP)),
        (DRY_RUN_YES, Move(Step.STOP)),
        (YES_FLAG, Move(Step.EXECUTE)),
        (ASK, Move(Step.ASK, question="Deploy these changes?", then=Step.EXECUTE)),
        (NO_TERMINAL, Move(Step.REFUSE, error=YES)),
    ],
)
def test_after_review_executes_only_with_yes_or_a_yes_at_the_prompt(flags, move):
    assert after_review(**flags) == move


# --- doing: the flows ------------------------------------------------------------------------------------


def test_first_deploy_creates_through_a_change_set_streams_events_protects_the_stack_and_reports(config, body, aws):
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
    _expect_connection(aws, "PENDING")

    code, lines = _deploy(config, aws, yes=True)

    assert code == 0
    assert lines == [
        f"creating change set {CS} (CREATE) for stack {STACK} in {REGION} ...",
        *ADDS_TABLE,
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
        f"pipeline: {CONSOLE}/codepipeline/pipelines/iris-classifier/view?region={REGION}",
        f"The GitHub connection is PENDING: complete it at {CONSOLE}/settings/connections?region={REGION} "
        "(Update pending connection).",
        "The pipeline will not start until the connection is AVAILABLE.",
    ]
    assert aws.waits == [5]  # the change set waiter polled twice
    assert aws.polls == [5]  # the event stream polled twice


def test_an_update_waits_for_a_running_operation_reads_every_change_page_asks_and_returns_the_stack(deployment, aws):
    _expect_status(aws, "UPDATE_IN_PROGRESS")
    _expect_status(aws, "UPDATE_ROLLBACK_COMPLETE")
    _expect_create_change_set(aws, "UPDATE", {"TemplateBody": deployment.template_body})
    _expect_change_set(aws, "CREATE_COMPLETE")
    page_1 = [
        _change("Modify", "TrainProject", "AWS::CodeBuild::Project", "False"),
        _change("Remove", "LintLogs", "AWS::Logs::LogGroup"),
    ]
    _expect_change_set(aws, "CREATE_COMPLETE", page_1, next_token="page-2")
    page_2 = [
        _change("Modify", "ModelBucket", "AWS::S3::Bucket", "True"),
        _change("Add", "Reports", "AWS::CodeBuild::ReportGroup"),
    ]
    _expect_change_set(aws, "CREATE_COMPLETE", page_2, token="page-2")
    _expect_execute(aws)
    _expect_status(aws, "UPDATE_ROLLBACK_COMPLETE")  # read before CloudFormation began: not this execution's
    _expect_events(aws, _event(STACK, "UPDATE_ROLLBACK_COMPLETE", -600))
    started = _event(STACK, "UPDATE_IN_PROGRESS", 3, "User Initiated")
    _expect_status(aws, "UPDATE_IN_PROGRESS")
    _expect_events(aws, started)
    _expect_status(aws, "UPDATE_COMPLETE", OUTPUTS, protected=True)
    _expect_events(aws, started, _event(STACK, "UPDATE_COMPLETE", 20))
    confirm = _asker(True)

    stack, lines = _deploy_stack(deployment, aws, confirm=confirm, interactive=True, poll_seconds=7)

    assert stack["StackStatus"] == "UPDATE_COMPLETE"
    assert confirm.asked == ["Deploy these changes?"]
    assert lines == [
        f"stack {STACK} is UPDATE_IN_PROGRESS: another operation is running; waiting for it to end ...",
        f"creating change set {CS} (UPDATE) for stack {STACK} in {REGION} ...",
        "Action  Logical ID    Type                         Replacement",
        "Add     Reports       AWS::CodeBuild::ReportGroup",
        "Modify  ModelBucket   AWS::S3::Bucket              True",
        "Modify  TrainProject  AWS::CodeBuild::Project      False",
        "Remove  LintLogs      AWS::Logs::LogGroup",
        "1 to add, 2 to modify (1 with replacement), 1 to remove",
        f"executing change set {CS} ...",
        "[ 0m00s] 12:00:03 iris-classifier-pipeline UPDATE_IN_PROGRESS User Initiated",
        "[ 0m17s] 12:00:20 iris-classifier-pipeline UPDATE_COMPLETE",
        f"stack {STACK}: UPDATE_COMPLETE in 0m17s",  # protection was on already: not enabled again
    ]
    assert aws.polls == [7, 7, 7]  # the running operation once, the stale and the running status


@pytest.mark.parametrize(
    "reason",
    [
        "The submitted information didn't contain changes. Submit different information to create a change set.",
        "No updates are to be performed.",
    ],
)
def test_any_stack_without_changes_deletes_the_empty_change_set_and_returns_none(aws, reason):
    other = StackDeployment(
        name="iris-classifier-target",
        region="eu-west-1",
        template_body='{"Resources":{}}',
        tags={"team": "ml-platform"},
        description="the target account's stack",
        capabilities=("CAPABILITY_NAMED_IAM",),
    )
    _expect_status(aws, "UPDATE_COMPLETE", stack=other.name)
    _expect_create_change_set(
        aws,
        "UPDATE",
        {"TemplateBody": other.template_body},
        StackName=other.name,
        Capabilities=["CAPABILITY_NAMED_IAM"],
        Tags=[{"Key": "team", "Value": "ml-platform"}],
        Description="the target account's stack",
    )
    _expect_change_set(aws, "FAILED", reason=reason, stack=other.name)
    _expect_discard(aws, stack=other.name)

    stack, lines = _deploy_stack(other, aws, yes=True)

    assert stack is None
    assert lines == [
        f"creating change set {CS} (UPDATE) for stack iris-classifier-target in eu-west-1 ...",
        "stack iris-classifier-target is up to date: nothing to change",
    ]


def test_a_failed_change_set_is_one_line_with_its_reason(config, body, aws):
    _expect_status(aws, "UPDATE_COMPLETE")
    _expect_create_change_set(aws, "UPDATE", {"TemplateBody": body})
    _expect_change_set(
        aws, "FAILED", reason="Template format error: Unresolved resource dependencies [X]\nin Resources"
    )

    assert _failing_deploy(config, aws, yes=True) == (
        f"change set {CS} for stack {STACK} failed: Template format error: Unresolved resource dependencies [X] "
        "in Resources"
    )


def _expect_resources(aws, *summaries: dict) -> None:
    aws.cfn.add_response("list_stack_resources", {"StackResourceSummaries": list(summaries)}, {"StackName": STACK})


def _resource(logical_id: str, resource_type: str, status: str, physical_id: str) -> dict:
    return {
        "LogicalResourceId": logical_id,
        "PhysicalResourceId": physical_id,
        "ResourceType": resource_type,
        "LastUpdatedTimestamp": T0,
        "ResourceStatus": status,
    }


KEY_ID = "1a2b3c4d-0000-4000-8000-000000000003"


def test_a_rolled_back_first_create_is_deleted_and_created_again_and_a_no_leaves_nothing_behind(config, body, aws):
    _expect_status(aws, "ROLLBACK_COMPLETE", protected=True)  # made by an older deploy with protection on
    _expect_resources(  # RetainExceptOnCreate: the rollback deleted the key and bucket it made
        aws,
        _resource("ArtifactKey", "AWS::KMS::Key", "DELETE_COMPLETE", KEY_ID),
        _resource("ArtifactBucket", "AWS::S3::Bucket", "DELETE_COMPLETE", "iris-classifier-pipeline-artifactbucket-1"),
    )
    _expect_protection(aws, False)
    aws.cfn.add_response("delete_stack", {}, {"StackName": STACK})
    _expect_status(aws, "DELETE_IN_PROGRESS")  # the delete waiter's first poll
    _expect_no_stack(aws)  # its second: gone
    _expect_ready_change_set(aws, "CREATE", ADDS, {"TemplateBody": body})
    _expect_discard(aws, review_stack=True)
    confirm = _asker(True, False)

    code, lines = _deploy(config, aws, interactive=True, confirm=confirm)

    assert code == 1
    assert confirm.asked == ["Delete it and create it again?", "Deploy these changes?"]
    assert lines == [
        ROLLED_BACK,
        f"deleting stack {STACK} ...",
        f"deleted stack {STACK}",
        f"creating change set {CS} (CREATE) for stack {STACK} in {REGION} ...",
        *ADDS_TABLE,
        "nothing changed",
    ]
    assert aws.waits == [5]


def test_a_rolled_back_create_of_an_older_template_names_what_its_rollback_kept_before_asking(config, aws):
    bucket = "iris-classifier-pipeline-modelbucket-1q2w3e"
    _expect_status(aws, "ROLLBACK_COMPLETE")
    _expect_resources(  # plain Retain, as templates were before RetainExceptOnCreate: the rollback skipped them
        aws,
        _resource("ArtifactKey", "AWS::KMS::Key", "DELETE_SKIPPED", KEY_ID),
        _resource("ModelBucket", "AWS::S3::Bucket", "DELETE_SKIPPED", bucket),
        _resource("ApprovalTopic", "AWS::SNS::Topic", "DELETE_COMPLETE", "arn:aws:sns:us-east-1:1:t"),
    )
    confirm = _asker(False)

    code, lines = _deploy(config, aws, interactive=True, confirm=confirm)

    assert code == 1
    assert lines == [
        f"{ROLLED_BACK} Its rollback kept ArtifactKey (AWS::KMS::Key) {KEY_ID}, ModelBucket (AWS::S3::Bucket) "
        f"{bucket}: deleting the stack leaves them; remove them yourself if unused.",
        "nothing changed",
    ]


@pytest.mark.parametrize(
    ("interactive", "raised", "message"),
    [(False, AwsError, YES), (True, KeyboardInterrupt, "")],
    ids=["not-a-terminal", "ctrl-c-at-the-prompt"],
)
def test_a_change_set_not_executed_is_deleted_with_the_review_stack_it_made(
    config, body, aws, interactive, raised, message
):
    _expect_no_stack(aws)
    _expect_ready_change_set(aws, "CREATE", ADDS, {"TemplateBody": body})
    _expect_discard(aws, review_stack=True)

    def interrupted(question: str) -> bool:
        raise KeyboardInterrupt

    with pytest.raises(raised) as exc:
        _deploy(config, aws, interactive=interactive, confirm=interrupted)

    assert str(exc.value) == message
    assert aws.calls[-2:] == ["DeleteChangeSet", "DeleteStack"]


def test_a_failed_update_names_the_first_failure_of_this_execution(config, body, aws):
    _expect_status(aws, "UPDATE_COMPLETE")
    _expect_ready_change_set(
        aws, "UPDATE", [_change("Modify", "TrainProject", "AWS::CodeBuild::Project")], {"TemplateBody": body}
    )
    _expect_execute(aws)
    old = _event("Pipeline", "UPDATE_FAILED", -3 * 86400, "an old failure, already fixed")
    started = _event(STACK, "UPDATE_IN_PROGRESS", 3, "User Initiated")
    denied = (
        'Resource handler returned message: "Invalid compute type BUILD_GENERAL1_HUGE for LINUX_CONTAINER" '
        "(RequestToken: 0a1b, HandlerErrorCode: InvalidRequest)"
    )
    failed = _event("TrainProject", "UPDATE_FAILED", 9, denied)
    cancelled = _event("Pipeline", "UPDATE_FAILED", 10, "Resource update cancelled")
    rolling = _event(STACK, "UPDATE_ROLLBACK_IN_PROGRESS", 11, "The following resource(s) failed to update.")
    _expect_status(aws, "UPDATE_ROLLBACK_COMPLETE")
    _expect_events(aws, old, started, failed, cancelled, rolling, _event(STACK, "UPDATE_ROLLBACK_COMPLETE", 30))
    lines: list[str] = []

    with pytest.raises(AwsError) as exc:
        deploy_pipeline(config, session=aws.session, echo=lines.append, yes=True)

    assert str(exc.value) == f"stack {STACK} failed (UPDATE_ROLLBACK_COMPLETE): TrainProject: {denied}"
    assert lines[-5:] == [
        "[ 0m00s] 12:00:03 iris-classifier-pipeline UPDATE_IN_PROGRESS User Initiated",
        f"[ 0m06s] 12:00:09 TrainProject             UPDATE_FAILED {denied}",  # a failure: never cut
        "[ 0m07s] 12:00:10 Pipeline                 UPDATE_FAILED Resource update cancelled",
        "[ 0m08s] 12:00:11 iris-classifier-pipeline UPDATE_ROLLBACK_IN_PROGRESS The foll…",  # cut to 80
        "[ 0m27s] 12:00:30 iris-classifier-pipeline UPDATE_ROLLBACK_COMPLETE",
    ]


def test_a_stack_deleted_while_deploying_is_one_line(config, body, aws):
    _expect_status(aws, "UPDATE_COMPLETE")
    _expect_ready_change_set(aws, "UPDATE", ADDS, {"TemplateBody": body})
    _expect_execute(aws)
    _expect_status(aws, "UPDATE_IN_PROGRESS")
    _expect_events(aws, _event(STACK, "UPDATE_IN_PROGRESS", 3, "User Initiated"))
    _expect_no_stack(aws)

    assert _failing_deploy(config, aws, yes=True) == f"stack {STACK} was deleted while deploying"


# --- templates over the inline limit ------------------------------------------------------------------------


def _staged(body: str, region: str = REGION) -> tuple[str, str]:
    key = f"{STACK}/{hashlib.sha256(body.encode()).hexdigest()[:16]}.json"
    return key, f"https://sagemaker-cd-templates-{ACCOUNT}-{region}.s3.{region}.amazonaws.com/{key}"


def _expect_caller(aws) -> None:
    caller = {"UserId": "AIDAEXAMPLE", "Account": ACCOUNT, "Arn": f"arn:aws:iam::{ACCOUNT}:user/dev"}
    aws.sts.add_response("get_caller_identity", caller, {})


def _expect_head_bucket(aws, bucket: str, code: str | None) -> None:
    params = {"Bucket": bucket, "ExpectedBucketOwner": ACCOUNT}
    if code is None:
        aws.s3.add_response("head_bucket", {}, params)
    else:
        aws.s3.add_client_error("head_bucket", code, code, int(code), expected_params=params)


def _expect_bucket_setup(aws, bucket: str, region: str) -> None:
    where = {} if region == "us-east-1" else {"CreateBucketConfiguration": {"LocationConstraint": region}}
    aws.s3.add_response("create_bucket", {}, {"Bucket": bucket, **where})
    owner = {"Bucket": bucket, "ExpectedBucketOwner": ACCOUNT}
    blocked = dict.fromkeys(("BlockPublicAcls", "IgnorePublicAcls", "BlockPublicPolicy", "RestrictPublicBuckets"), True)
    aws.s3.add_response("put_public_access_block", {}, {**owner, "PublicAccessBlockConfiguration": blocked})
    encryption = {"Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]}
    aws.s3.add_response("put_bucket_encryption", {}, {**owner, "ServerSideEncryptionConfiguration": encryption})
    expiry = {
        "ID": "expire-staged-templates",
        "Status": "Enabled",
        "Filter": {"Prefix": ""},
        "Expiration": {"Days": 30},
    }
    aws.s3.add_response(
        "put_bucket_lifecycle_configuration", {}, {**owner, "LifecycleConfiguration": {"Rules": [expiry]}}
    )


def _expect_upload(aws, bucket: str, key: str, body: str) -> None:
    params = {
        "Bucket": bucket,
        "Key": key,
        "Body": body.encode(),
        "ContentType": "application/json",
        "ExpectedBucketOwner": ACCOUNT,
    }
    aws.s3.add_response("put_object", {"ETag": '"abc"'}, params)


def test_the_whole_sample_is_over_the_inline_limit_and_goes_through_s3(aws):
    whole = load_config(REPO / "pipeline.yml")
    body = pipeline_deployment(whole).template_body
    assert len(body.encode()) > deploy.INLINE_TEMPLATE_LIMIT  # no monkeypatching: the real limit
    key, url = _staged(body)
    _expect_no_stack(aws)
    _expect_caller(aws)
    _expect_head_bucket(aws, BUCKET, None)  # made by an earlier deploy
    _expect_upload(aws, BUCKET, key, body)
    _expect_ready_change_set(aws, "CREATE", ADDS, {"TemplateURL": url})
    _expect_discard(aws, review_stack=True)

    code, lines = _deploy(whole, aws, dry_run=True)

    assert code == 0
    assert lines[0] == (
        f"template is {len(body.encode())} bytes, over the 51200-byte inline limit: uploaded to s3://{BUCKET}/{key}"
    )
    assert lines[-2:] == [
        "dry run: nothing changed",
        "dry run: training data seed not checked: model/data/ goes to iris-classifier/training-data/ only when "
        "that is empty",
    ]  # and no S3 call for the seed: the Stubber has none queued


def test_a_large_template_goes_through_s3_and_a_dry_run_leaves_nothing_behind(config, body, aws, monkeypatch):
    monkeypatch.setattr(deploy, "INLINE_TEMPLATE_LIMIT", 1000)
    key, url = _staged(body)
    _expect_no_stack(aws)
    _expect_caller(aws)
    _expect_head_bucket(aws, BUCKET, "404")
    _expect_bucket_setup(aws, BUCKET, REGION)
    _expect_upload(aws, BUCKET, key, body)
    _expect_ready_change_set(aws, "CREATE", ADDS, {"TemplateURL": url})
    _expect_discard(aws, review_stack=True)

    code, lines = _deploy(config, aws, dry_run=True)

    assert code == 0
    assert lines == [
        f"created template staging bucket {BUCKET} (objects expire after 30 days)",
        f"template is {len(body.encode())} bytes, over the 1000-byte inline limit: uploaded to s3://{BUCKET}/{key}",
        f"creating change set {CS} (CREATE) for stack {STACK} in {REGION} ...",
        *ADDS_TABLE,
        "dry run: nothing changed",
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


@pytest.mark.parametrize(("region", "exists"), [("eu-central-1", False), (REGION, True)])
def test_the_staging_bucket_is_made_in_the_stack_region_and_only_once(deployment, aws, region, exists):
    bucket = f"sagemaker-cd-templates-{ACCOUNT}-{region}"
    key, url = _staged(deployment.template_body, region)
    _expect_caller(aws)
    _expect_head_bucket(aws, bucket, None if exists else "404")
    if not exists:
        _expect_bucket_setup(aws, bucket, region)
    _expect_upload(aws, bucket, key, deployment.template_body)

    assert stage_template(aws.session, replace(deployment, region=region), echo=lambda line: None) == url


@pytest.mark.parametrize("squatted_at", ["head_bucket", "create_bucket"])
def test_a_staging_bucket_owned_by_another_account_stops_in_one_line_before_any_upload(deployment, aws, squatted_at):
    _expect_caller(aws)
    _expect_head_bucket(aws, BUCKET, "403" if squatted_at == "head_bucket" else "404")
    if squatted_at == "create_bucket":
        taken = "The requested bucket name is not available."
        aws.s3.add_client_error("create_bucket", "BucketAlreadyExists", taken, 409, expected_params={"Bucket": BUCKET})

    with pytest.raises(AwsError) as exc:
        stage_template(aws.session, deployment, echo=lambda line: None)

    assert str(exc.value) == (
        f"template staging bucket {BUCKET} exists but is not accessible to account {ACCOUNT} "
        "(owned by another account?); remove it or grant access, then deploy again"
    )


# --- one-line errors ----------------------------------------------------------------------------------------


def test_access_denied_is_one_line_with_the_operation_and_code(config, aws):
    message = f"User: arn:aws:iam::{ACCOUNT}:user/dev is not authorized to perform: cloudformation:DescribeStacks"
    aws.cfn.add_client_error("describe_stacks", "AccessDenied", message, 403, expected_params={"StackName": STACK})

    assert _failing_deploy(config, aws, yes=True) == f"DescribeStacks: AccessDenied: {message}"


def test_an_unreachable_endpoint_is_one_line_not_a_traceback(config, unreachable_session):
    with pytest.raises(AwsError) as exc:
        deploy_pipeline(config, session=unreachable_session, echo=lambda line: None)

    assert str(exc.value) == 'Could not connect to the endpoint URL: "http://127.0.0.1:9/"'


def test_cli_with_a_missing_config_exits_2_with_one_line(tmp_path, capsys):
    missing = tmp_path / "nope.yml"

    code = main(["deploy", "--config", str(missing)])

    assert code == 2
    assert capsys.readouterr().err.splitlines() == [f"{missing}: file not found"]


# --- what the user reads ------------------------------------------------------------------------------------


def test_the_change_table_of_the_whole_template_fits_80_columns(config):
    resources = synthesize(config).templates["pipeline.json"]["Resources"]
    changes = [
        {"Type": "Resource", "ResourceChange": _change("Add", logical_id, resource["Type"])}
        for logical_id, resource in resources.items()
    ]

    lines = change_table(changes)

    assert max(len(line) for line in lines) <= 80
    # cut, and marked (where depends on the longest logical ID)
    assert any(re.search(r"  AWS::CodeStarConnections::Con[a-z]*…$", line) for line in lines)
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


def test_an_unreadable_reply_on_the_connection_hint_does_not_fail_a_deploy_that_worked():
    """The PENDING-connection hint is best effort: a proxy's page there (ResponseParserError, not a
    ClientError or BotoCoreError) skips the hint; a bug of ours still shows."""
    from botocore.parsers import ResponseParserError

    from pipeline.deploy import _connection_notice

    class Connections:
        def __init__(self, error: Exception):
            self.error = error

        def get_connection(self, **_):
            raise self.error

    class Session:
        def __init__(self, error: Exception):
            self.error = error

        def client(self, service, config=None):
            return Connections(self.error)

    outputs = {"GitHubConnectionArn": "arn:aws:codestar-connections:us-east-1:111122223333:connection/x"}
    assert _connection_notice(Session(ResponseParserError("invalid XML")), outputs, REGION) == []
    with pytest.raises(ZeroDivisionError):
        _connection_notice(Session(ZeroDivisionError()), outputs, REGION)


# --- the training data seed (training_data.seed_dir) -------------------------------------------------

MODEL_BUCKET = OUTPUTS["ModelBucketName"]
SEED_PREFIX = "iris-classifier/training-data/"


@pytest.fixture
def seeded(config):
    """The sample's seeding: the model bucket's training-data/ folder from model/data."""
    data = config.training_data.model_copy(update={"seed_dir": "model/data"})
    return config.model_copy(update={"training_data": data})


def _expect_listing(aws, keys: int) -> None:
    answer = {"KeyCount": keys, "Contents": [{"Key": SEED_PREFIX + "mine.csv"}] if keys else []}
    aws.s3.add_response("list_objects_v2", answer, {"Bucket": MODEL_BUCKET, "Prefix": SEED_PREFIX, "MaxKeys": 1})


def test_an_empty_training_data_folder_is_seeded_from_the_repo_after_the_deploy(seeded, body, aws):
    _expect_status(aws, "UPDATE_COMPLETE", OUTPUTS)
    _expect_create_change_set(aws, "UPDATE", {"TemplateBody": body})
    nothing = "The submitted information didn't contain changes. Submit different information."
    _expect_change_set(aws, "FAILED", reason=nothing)
    _expect_discard(aws)
    _expect_status(aws, "UPDATE_COMPLETE", OUTPUTS)  # the seed reads the bucket's name from the outputs
    _expect_listing(aws, 0)
    for name in ("README.md", "iris.csv"):
        params = {"Bucket": MODEL_BUCKET, "Key": SEED_PREFIX + name, "Body": (REPO / "model/data" / name).read_bytes()}
        aws.s3.add_response("put_object", {"ETag": '"abc"'}, params)

    code, lines = _deploy(seeded, aws, yes=True, root=REPO)

    assert code == 0
    assert lines[-1] == (
        f"training data: s3://{MODEL_BUCKET}/{SEED_PREFIX} was empty: seeded it with 2 file(s) from model/data/"
    )
    assert aws.calls[-3:] == ["ListObjectsV2", "PutObject", "PutObject"]


def test_a_training_data_folder_holding_data_is_left_untouched(seeded, body, aws):
    _expect_status(aws, "UPDATE_COMPLETE", OUTPUTS)
    _expect_create_change_set(aws, "UPDATE", {"TemplateBody": body})
    nothing = "The submitted information didn't contain changes. Submit different information."
    _expect_change_set(aws, "FAILED", reason=nothing)
    _expect_discard(aws)
    _expect_status(aws, "UPDATE_COMPLETE", OUTPUTS)
    _expect_listing(aws, 1)

    code, lines = _deploy(seeded, aws, yes=True, root=REPO)

    assert code == 0
    assert lines[-1] == (
        f"training data: s3://{MODEL_BUCKET}/{SEED_PREFIX} already holds data, so model/data/ is not uploaded "
        "(make deploy never overwrites or deletes it)"
    )
    assert "PutObject" not in aws.calls and "DeleteObject" not in aws.calls


def test_a_dry_run_neither_checks_nor_seeds_the_training_data(seeded, body, aws):
    _expect_status(aws, "UPDATE_COMPLETE", OUTPUTS)
    _expect_ready_change_set(aws, "UPDATE", [], {"TemplateBody": body})
    _expect_discard(aws)

    code, lines = _deploy(seeded, aws, dry_run=True, root=REPO)

    assert code == 0
    assert lines[-1] == (
        "dry run: training data seed not checked: model/data/ goes to iris-classifier/training-data/ only when "
        "that is empty"
    )
    assert not [call for call in aws.calls if call in ("ListObjectsV2", "PutObject")]


def test_a_stack_without_the_model_bucket_output_cannot_be_seeded_and_says_so_in_one_line(seeded, body, aws):
    _expect_status(aws, "UPDATE_COMPLETE", {"PipelineName": "iris-classifier"})
    _expect_create_change_set(aws, "UPDATE", {"TemplateBody": body})
    nothing = "The submitted information didn't contain changes. Submit different information."
    _expect_change_set(aws, "FAILED", reason=nothing)
    _expect_discard(aws)
    _expect_status(aws, "UPDATE_COMPLETE", {"PipelineName": "iris-classifier"})

    assert _failing_deploy(seeded, aws, yes=True, root=REPO) == (
        "the pipeline stack iris-classifier-pipeline has no output ModelBucketName: cannot seed the training data "
        "from model/data/"
    )


def test_the_seed_is_every_file_of_the_folder_keyed_relative_to_it():
    assert deploy.seed_files(REPO / "model/data") == [
        (REPO / "model/data/README.md", "README.md"),
        (REPO / "model/data/iris.csv", "iris.csv"),
    ]
