"""scripts/self_update.py, the UpdatePipeline action: the pipeline updates its own stack from the commit.

What to do with a change set is a pure table (`decide`); the flow runs against conftest's stubbed
clients (stub_aws), which pin every call and its parameters.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest

from pipeline import deploy
from pipeline.aws import RETRIES
from pipeline.config import TrainingData, load_config
from pipeline.deploy import INLINE_TEMPLATE_LIMIT, pipeline_deployment
from scripts import self_update
from scripts.common import StageFailure
from scripts.self_update import Next, decide, not_updatable

# The same stack, change set and clock as the deploy tests, and their stack events.
from test_deploy import ACCOUNT, CS, REGION, STACK, STACK_ID, T0, _event  # isort: skip

REPO = Path(__file__).resolve().parent.parent
CS_ID = f"arn:aws:cloudformation:{REGION}:{ACCOUNT}:changeSet/{CS}/7d3e8a00-0000-4000-8000-000000000004"
TAGS = [{"Key": "team", "Value": "ml-platform"}, {"Key": "sagemaker-cd:project", "Value": "iris-classifier"}]
ARTIFACTS = "iris-classifier-artifacts-111122223333"


def _change(action: str, logical_id: str, resource_type: str, replacement: str | None = None) -> dict:
    change = {"Action": action, "LogicalResourceId": logical_id, "ResourceType": resource_type}
    return {"Type": "Resource", "ResourceChange": change | ({"Replacement": replacement} if replacement else {})}


# --- deciding: a table -----------------------------------------------------------------------------

ROLE = "AWS::IAM::Role"
BUCKET = "AWS::S3::Bucket"
KEY = "AWS::KMS::Key"
PROJECT = "AWS::CodeBuild::Project"


@pytest.mark.parametrize(
    ("changes", "expected", "named"),
    [
        (None, Next.CONTINUE, "up to date"),
        ([], Next.EXECUTE, "updating"),  # outputs or tags only
        ([_change("Modify", "TrainProject", PROJECT, "False")], Next.EXECUTE, "updating"),
        ([_change("Add", "ExtraProject", PROJECT)], Next.EXECUTE, "updating"),
        ([_change("Remove", "OldProject", PROJECT)], Next.EXECUTE, "updating"),
        ([_change("Modify", "Pipeline", "AWS::CodePipeline::Pipeline", "False")], Next.EXECUTE, "updating"),
        ([_change("Add", "ScheduledRetrainRule", "AWS::Events::Rule")], Next.EXECUTE, "updating"),
        ([_change("Modify", "NotificationTopic", "AWS::SNS::Topic", "False")], Next.EXECUTE, "updating"),
        ([_change("Add", "LintNewReports", "AWS::CodeBuild::ReportGroup")], Next.EXECUTE, "updating"),
        # IAM, the key, buckets, the connection: any change is for make deploy.
        ([_change("Add", "NewRole", ROLE)], Next.REFUSE, "NewRole (AWS::IAM::Role) added"),
        ([_change("Modify", "TrainRole", ROLE, "False")], Next.REFUSE, "TrainRole (AWS::IAM::Role) modified"),
        ([_change("Remove", "StartRole", ROLE)], Next.REFUSE, "StartRole (AWS::IAM::Role) removed"),
        ([_change("Add", "X", "AWS::IAM::ManagedPolicy")], Next.REFUSE, "X (AWS::IAM::ManagedPolicy) added"),
        ([_change("Modify", "ArtifactKey", KEY, "False")], Next.REFUSE, "ArtifactKey (AWS::KMS::Key) modified"),
        ([_change("Modify", "KeyAlias", "AWS::KMS::Alias", "True")], Next.REFUSE, "KeyAlias (AWS::KMS::Alias)"),
        ([_change("Modify", "ModelBucket", BUCKET, "False")], Next.REFUSE, "ModelBucket (AWS::S3::Bucket) modified"),
        ([_change("Add", "ExtraBucket", BUCKET)], Next.REFUSE, "ExtraBucket (AWS::S3::Bucket) added"),
        (
            [_change("Modify", "ModelBucketPolicy", "AWS::S3::BucketPolicy", "False")],
            Next.REFUSE,
            "ModelBucketPolicy (AWS::S3::BucketPolicy) modified",
        ),
        (
            [_change("Modify", "GitHubConnection", "AWS::CodeStarConnections::Connection", "False")],
            Next.REFUSE,
            "GitHubConnection (AWS::CodeStarConnections::Connection) modified",
        ),
        # The updater itself.
        (
            [_change("Modify", "UpdatePipelineProject", PROJECT, "False")],
            Next.REFUSE,
            "UpdatePipelineProject (AWS::CodeBuild::Project) modified",
        ),
        (
            [_change("Remove", "UpdatePipelineLogs", "AWS::Logs::LogGroup")],
            Next.REFUSE,
            "UpdatePipelineLogs (AWS::Logs::LogGroup) removed",
        ),
        # Stateful losses, as before.
        ([_change("Modify", "ModelBucket", BUCKET, "True")], Next.REFUSE, "ModelBucket (AWS::S3::Bucket) replaced"),
        ([_change("Modify", "ArtifactKey", KEY, "Conditional")], Next.REFUSE, "ArtifactKey (AWS::KMS::Key) may be"),
        ([_change("Remove", "ArtifactBucket", BUCKET)], Next.REFUSE, "ArtifactBucket (AWS::S3::Bucket) removed"),
        (
            [_change("Remove", "GitHubConnection", "AWS::CodeStarConnections::Connection")],
            Next.REFUSE,
            "GitHubConnection",
        ),
        ([_change("Modify", "Pipeline", "AWS::CodePipeline::Pipeline", "True")], Next.REFUSE, "Pipeline"),
        ([_change("Modify", "ApprovalTopic", "AWS::SNS::Topic", "True")], Next.REFUSE, "ApprovalTopic"),
    ],
)
def test_decide(changes, expected, named):
    decision = decide(changes, stack=STACK)
    assert decision.next is expected
    assert named in decision.reason
    assert "\n" not in decision.reason


@pytest.mark.parametrize(
    ("now", "new", "expected"),
    [(1, 1, Next.EXECUTE), (1, 2, Next.EXECUTE), (0, 0, Next.EXECUTE), (1, 0, Next.REFUSE), (2, 1, Next.REFUSE)],
)
def test_a_pipeline_with_fewer_approvals_than_the_deployed_one_is_refused(now, new, expected):
    change = [_change("Modify", "Pipeline", "AWS::CodePipeline::Pipeline", "False")]
    decision = decide(change, stack=STACK, approvals_now=now, approvals_new=new)
    assert decision.next is expected
    if expected is Next.REFUSE:
        assert decision.reason.endswith(
            f"the pipeline would have {new} manual approval(s), not {now} (review and deploy it by hand with make deploy)"
        )


def test_approvals_are_counted_in_the_pipelines_stages():
    approve = {"Name": "Approve", "ActionTypeId": {"Category": "Approval"}}
    build = {"Name": "Lint", "ActionTypeId": {"Category": "Build"}}
    pipeline = {"Type": "AWS::CodePipeline::Pipeline", "Properties": {"Stages": [{"Actions": [build, approve]}]}}
    assert self_update.approvals({"Resources": {"Pipeline": pipeline, "Other": {"Type": "AWS::SNS::Topic"}}}) == 1
    assert self_update.approvals({"Resources": {}}) == 0


def test_a_refusal_names_every_stateful_loss_and_no_other_change():
    changes = [
        _change("Modify", "TrainProject", PROJECT, "True"),
        _change("Remove", "ArtifactBucket", BUCKET),
        _change("Modify", "ArtifactKey", KEY, "True"),
    ]
    reason = decide(changes, stack=STACK).reason
    assert "ArtifactBucket (AWS::S3::Bucket) removed; ArtifactKey (AWS::KMS::Key) replaced" in reason
    assert "TrainProject" not in reason
    assert reason.count("ArtifactBucket") == 1  # a loss is not named a second time as a change
    assert "make deploy" in reason


@pytest.mark.parametrize(
    ("status", "refused"),
    [
        ("UPDATE_COMPLETE", None),
        ("CREATE_COMPLETE", None),
        ("UPDATE_ROLLBACK_COMPLETE", None),
        (None, f"stack {STACK} does not exist: stand the pipeline up with make deploy"),
        ("UPDATE_IN_PROGRESS", "is UPDATE_IN_PROGRESS, not updatable from the pipeline"),
        ("ROLLBACK_COMPLETE", "is ROLLBACK_COMPLETE, not updatable from the pipeline"),
        ("UPDATE_ROLLBACK_FAILED", "settle it with make deploy"),
        ("REVIEW_IN_PROGRESS", "is REVIEW_IN_PROGRESS"),
    ],
)
def test_the_pipeline_only_updates_a_settled_stack(status, refused):
    reason = not_updatable(status, stack=STACK)
    if refused is None:
        assert reason is None
    else:
        assert reason is not None and refused in reason


# --- the flow against stubbed CloudFormation ---------------------------------------------------------


@pytest.fixture(scope="module")
def deployment():
    # Inline-sized (the flow, not the staging, is under test here; the whole sample's 56 KB template is
    # staged under self-update/, as the template-in-S3 test and the least-privilege scenarios show).
    # (and its training data a repo folder: no data trigger, 50.5 KB).
    small = load_config(REPO / "pipeline.yml").model_copy(
        update={"self_update": False, "training_data": TrainingData(local_dir="model/data")}
    )
    return replace(pipeline_deployment(small), description="UpdatePipeline")


@pytest.fixture(autouse=True)
def fixed_name(monkeypatch):
    monkeypatch.setattr(deploy, "change_set_name", lambda now=None: CS)


@pytest.fixture
def aws(stub_aws):
    stubbed = stub_aws("cloudformation", "s3")
    stubbed.cfn, stubbed.s3 = stubbed.stubs.values()
    return stubbed


def _stack(status: str = "UPDATE_COMPLETE", parameters=()) -> dict:
    stack = {"StackId": STACK_ID, "StackName": STACK, "CreationTime": T0 - timedelta(days=1), "StackStatus": status}
    return stack | ({"Parameters": list(parameters)} if parameters else {})


def _expect_change_set(aws, deployment, template: dict, changes, deployed: str | None = None, **extra) -> None:
    params = {
        "StackName": STACK,
        "ChangeSetName": CS,
        "ChangeSetType": "UPDATE",
        "Capabilities": ["CAPABILITY_IAM"],
        "Tags": TAGS,
        "Description": "UpdatePipeline",
        **template,
        **extra,
    }
    aws.cfn.add_response("create_change_set", {"Id": CS_ID, "StackId": STACK_ID}, params)
    where = {"ChangeSetName": CS, "StackName": STACK}
    if changes is None:
        reason = (
            "The submitted information didn't contain changes. Submit different information to create a change set."
        )
        aws.cfn.add_response(
            "describe_change_set",
            {"ChangeSetName": CS, "StackName": STACK, "Status": "FAILED", "StatusReason": reason, "Changes": []},
            where,
        )
        return
    page = {"ChangeSetName": CS, "StackName": STACK, "CreationTime": T0, "Status": "CREATE_COMPLETE"}
    aws.cfn.add_response("describe_change_set", page, where)
    aws.cfn.add_response("describe_change_set", page | {"Changes": changes}, where)
    # The deployed template, for its approvals: by default the same as the commit's.
    aws.cfn.add_response(
        "get_template",
        {"TemplateBody": deployed if deployed is not None else deployment.template_body},
        {"StackName": STACK, "TemplateStage": "Original"},
    )


def _run(aws, deployment, **kwargs):
    lines: list[str] = []
    polls: list[float] = []
    done = self_update.self_update(deployment, aws.session, echo=lines.append, sleep=polls.append, **kwargs)
    return done, lines


def test_no_changes_discards_the_change_set_and_the_run_goes_on(aws, deployment):
    aws.cfn.add_response("describe_stacks", {"Stacks": [_stack()]}, {"StackName": STACK})
    _expect_change_set(aws, deployment, {"TemplateBody": deployment.template_body}, None)
    aws.cfn.add_response("delete_change_set", {}, {"ChangeSetName": CS, "StackName": STACK})
    done, lines = _run(aws, deployment)
    assert done is Next.CONTINUE
    assert lines[-1] == f"stack {STACK} is up to date with this commit"
    assert "ExecuteChangeSet" not in aws.calls


def test_a_replaced_bucket_stops_the_run_and_leaves_no_change_set(aws, deployment):
    aws.cfn.add_response("describe_stacks", {"Stacks": [_stack()]}, {"StackName": STACK})
    changes = [_change("Modify", "ModelBucket", BUCKET, "True")]
    _expect_change_set(aws, deployment, {"TemplateBody": deployment.template_body}, changes)
    aws.cfn.add_response("delete_change_set", {}, {"ChangeSetName": CS, "StackName": STACK})
    with pytest.raises(StageFailure) as exc:
        _run(aws, deployment)
    assert "ModelBucket (AWS::S3::Bucket) replaced" in str(exc.value)
    assert "ExecuteChangeSet" not in aws.calls


def _expect_update(aws, final: str, *events: dict) -> None:
    aws.cfn.add_response("execute_change_set", {}, {"ChangeSetName": CS, "StackName": STACK, "ClientRequestToken": CS})
    aws.cfn.add_response("describe_stacks", {"Stacks": [_stack(final)]}, {"StackName": STACK})
    newest_first = sorted(events, key=lambda e: e["Timestamp"], reverse=True)
    aws.cfn.add_response("describe_stack_events", {"StackEvents": newest_first}, {"StackName": STACK})


def test_an_update_is_executed_and_followed_keeping_parameters(aws, deployment):
    parameters = [{"ParameterKey": "Branch", "ParameterValue": "main"}]
    aws.cfn.add_response("describe_stacks", {"Stacks": [_stack(parameters=parameters)]}, {"StackName": STACK})
    changes = [_change("Modify", "TrainProject", PROJECT, "False")]
    keep = [{"ParameterKey": "Branch", "UsePreviousValue": True}]
    _expect_change_set(aws, deployment, {"TemplateBody": deployment.template_body}, changes, Parameters=keep)
    _expect_update(
        aws,
        "UPDATE_COMPLETE",
        _event(STACK, "UPDATE_IN_PROGRESS", 1),
        _event("TrainProject", "UPDATE_COMPLETE", 20),
        _event(STACK, "UPDATE_COMPLETE", 30),
    )
    done, lines = _run(aws, deployment)
    assert done is Next.EXECUTE
    assert aws.calls[-3:] == ["ExecuteChangeSet", "DescribeStacks", "DescribeStackEvents"]


def test_a_failed_update_names_the_first_failed_resource(aws, deployment):
    aws.cfn.add_response("describe_stacks", {"Stacks": [_stack()]}, {"StackName": STACK})
    changes = [_change("Modify", "TrainProject", PROJECT, "False")]
    _expect_change_set(aws, deployment, {"TemplateBody": deployment.template_body}, changes)
    _expect_update(
        aws,
        "UPDATE_ROLLBACK_COMPLETE",
        _event("TrainProject", "UPDATE_FAILED", 5, "Access denied\nfor codebuild:UpdateProject"),
        _event(STACK, "UPDATE_ROLLBACK_COMPLETE", 30),
    )
    with pytest.raises(StageFailure) as exc:
        _run(aws, deployment)
    assert str(exc.value) == (
        f"updating stack {STACK} failed (UPDATE_ROLLBACK_COMPLETE): TrainProject: Access denied for codebuild:UpdateProject"
    )


def test_a_large_template_is_staged_in_the_artifact_bucket(aws, deployment):
    big = replace(deployment, template_body='{"Description": "' + "x" * INLINE_TEMPLATE_LIMIT + '"}')
    aws.cfn.add_response("describe_stacks", {"Stacks": [_stack()]}, {"StackName": STACK})
    aws.s3.add_response(
        "put_object",
        {},
        {
            "Bucket": ARTIFACTS,
            "Key": _key(big),
            "Body": big.template_body.encode(),
            "ContentType": "application/json",
        },
    )
    url = f"https://{ARTIFACTS}.s3.{REGION}.amazonaws.com/{_key(big)}"
    _expect_change_set(aws, big, {"TemplateURL": url}, None)
    aws.cfn.add_response("delete_change_set", {}, {"ChangeSetName": CS, "StackName": STACK})
    done, _ = _run(aws, big, bucket=ARTIFACTS)
    assert done is Next.CONTINUE


def _key(deployment) -> str:
    return f"self-update/{hashlib.sha256(deployment.template_body.encode()).hexdigest()[:16]}.json"


def test_a_large_template_without_a_bucket_is_one_line(aws, deployment):
    big = replace(deployment, template_body='{"Description": "' + "x" * INLINE_TEMPLATE_LIMIT + '"}')
    aws.cfn.add_response("describe_stacks", {"Stacks": [_stack()]}, {"StackName": STACK})
    with pytest.raises(StageFailure) as exc:
        _run(aws, big)
    assert "no bucket to stage it in" in str(exc.value)


def test_a_missing_stack_is_left_to_make_deploy(aws, deployment):
    message = f"Stack with id {STACK} does not exist"
    aws.cfn.add_client_error("describe_stacks", "ValidationError", message, 400, expected_params={"StackName": STACK})
    with pytest.raises(StageFailure) as exc:
        _run(aws, deployment)
    assert str(exc.value) == f"stack {STACK} does not exist: stand the pipeline up with make deploy"
    assert aws.calls == ["DescribeStacks"]


def test_main_refusal_is_one_line_on_stderr(monkeypatch, capsys):
    def refuse(*args, **kwargs):
        raise StageFailure("not updating stack x from the pipeline: ModelBucket (AWS::S3::Bucket) replaced")

    monkeypatch.setattr(self_update, "self_update", refuse)
    monkeypatch.setattr(self_update, "session_for", lambda profile, region: object())
    assert self_update.main(["--config", str(REPO / "pipeline.yml")]) == 1
    err = capsys.readouterr().err
    assert (
        err == "self-update: FAILED: not updating stack x from the pipeline: ModelBucket (AWS::S3::Bucket) replaced\n"
    )


@pytest.mark.parametrize(("done", "code"), [(Next.CONTINUE, 0), (Next.EXECUTE, 1)])
def test_main_stops_the_run_after_an_update(monkeypatch, capsys, done, code):
    monkeypatch.setattr(self_update, "self_update", lambda *args, **kwargs: done)
    monkeypatch.setattr(self_update, "session_for", lambda profile, region: object())
    assert self_update.main(["--config", str(REPO / "pipeline.yml")]) == code
    assert ("restarts the run on the new definition" in capsys.readouterr().err) is (code == 1)


def test_a_commit_that_drops_an_approval_stops_the_run_and_leaves_no_change_set(aws, deployment):
    deployed = json.loads(deployment.template_body)
    stages = deployed["Resources"]["Pipeline"]["Properties"]["Stages"]
    approval = next(a for stage in stages for a in stage["Actions"] if a["ActionTypeId"]["Category"] == "Approval")
    stages.append({"Name": "ApproveAgain", "Actions": [approval]})
    aws.cfn.add_response("describe_stacks", {"Stacks": [_stack()]}, {"StackName": STACK})
    changes = [_change("Modify", "Pipeline", "AWS::CodePipeline::Pipeline", "False")]
    body = deployment.template_body
    _expect_change_set(aws, deployment, {"TemplateBody": body}, changes, deployed=json.dumps(deployed))
    aws.cfn.add_response("delete_change_set", {}, {"ChangeSetName": CS, "StackName": STACK})
    with pytest.raises(StageFailure) as exc:
        _run(aws, deployment)
    assert "the pipeline would have 1 manual approval(s), not 2" in str(exc.value)
    assert "ExecuteChangeSet" not in aws.calls
    assert aws.calls[-2:] == ["GetTemplate", "DeleteChangeSet"]


def test_a_run_restarted_by_an_update_waits_for_the_stack_to_settle_then_goes_on(aws, deployment):
    # make deploy (or this action) updated the Pipeline resource; CodePipeline restarted the run while
    # the rest of the stack was still updating.
    for status in ("UPDATE_IN_PROGRESS", "UPDATE_COMPLETE_CLEANUP_IN_PROGRESS", "UPDATE_COMPLETE"):
        aws.cfn.add_response("describe_stacks", {"Stacks": [_stack(status)]}, {"StackName": STACK})
    _expect_change_set(aws, deployment, {"TemplateBody": deployment.template_body}, None)
    aws.cfn.add_response("delete_change_set", {}, {"ChangeSetName": CS, "StackName": STACK})
    done, lines = _run(aws, deployment)
    assert done is Next.CONTINUE
    assert [line for line in lines if "waiting" in line] == [
        f"stack {STACK} is UPDATE_IN_PROGRESS: another operation is running; waiting for it to end ...",
        f"stack {STACK} is UPDATE_COMPLETE_CLEANUP_IN_PROGRESS: another operation is running; waiting for it to end ...",
    ]


def test_a_stack_busy_past_the_wait_is_one_line(aws):
    cfn = aws.session.client("cloudformation", config=RETRIES)
    for _ in range(3):
        aws.cfn.add_response("describe_stacks", {"Stacks": [_stack("UPDATE_IN_PROGRESS")]}, {"StackName": STACK})
    polls: list[float] = []
    with pytest.raises(StageFailure) as exc:
        self_update.settled_stack(
            cfn, STACK, echo=lambda line: None, sleep=polls.append, poll_seconds=30, wait_minutes=1
        )
    assert str(exc.value) == f"stack {STACK} is still UPDATE_IN_PROGRESS after 1 minutes; run again once it settles"
    assert polls == [30, 30]
