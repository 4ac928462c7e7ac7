"""`make destroy`: delete the endpoint stacks then the pipeline stack, keeping buckets and key.

What to delete and keep is a pure plan, tested as a table. The flows run against a stubbed
CloudFormation client (conftest's stub_aws) that pins every call; the session hands out nothing
but that client, so no S3 (or other) call can happen.
"""

from __future__ import annotations

import copy
import io
import json
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from pipeline.aws import AwsError
from pipeline.cli import main
from pipeline.config import load_config
from pipeline.destroy import Plan, StackState, destroy, plan_destroy, stacks_in_deletion_order
from pipeline.stackstate import deletion_policies, resources_from
from pipeline.synth import synthesize

REPO = Path(__file__).resolve().parent.parent
REGION = "us-east-1"
ACCOUNT = "111122223333"
PROD = "iris-classifier-endpoint-prod"
QA = "iris-classifier-endpoint-qa"
PIPELINE = "iris-classifier-pipeline"
MODEL_BUCKET = f"iris-classifier-models-{ACCOUNT}"
ARTIFACT_BUCKET = f"iris-classifier-artifacts-{ACCOUNT}"
KEY_ID = "1a2b3c4d-0000-4000-8000-000000000003"
GROUP = "iris-classifier"  # the model package group (pipeline.names)
KEPT = (
    ("KMS key (decrypts both buckets)", KEY_ID),
    ("artifact bucket (pipeline artifacts)", ARTIFACT_BUCKET),
    ("model bucket (models, training data, code by commit)", MODEL_BUCKET),
    ("model registry (every version, approved or not)", GROUP),
)
PHYSICAL = {
    "ArtifactKey": KEY_ID,
    "ArtifactBucket": ARTIFACT_BUCKET,
    "ModelBucket": MODEL_BUCKET,
    "ModelPackageGroup": GROUP,
}
# The real templates, so what destroy keeps follows from their real DeletionPolicy.
TEMPLATES = synthesize(load_config(REPO / "pipeline.yml")).templates
TEMPLATE_OF = {PROD: "endpoint-prod.json", QA: "endpoint-qa.json", PIPELINE: "pipeline.json"}


def _resources(name: str, status: str) -> list[dict]:
    """ListStackResources of a stack made from its real template, every resource in `status`."""
    return [
        {
            "LogicalResourceId": logical_id,
            "PhysicalResourceId": PHYSICAL.get(logical_id, f"{name}-{logical_id}-1a2b"),
            "ResourceType": resource["Type"],
            "LastUpdatedTimestamp": datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc),
            "ResourceStatus": status,
        }
        for logical_id, resource in TEMPLATES[TEMPLATE_OF[name]]["Resources"].items()
    ]


def _state(name: str, status: str | None, **policies: str) -> StackState:
    """A stack as destroy reads it; `policies` override the template's DeletionPolicy by logical id.

    After a rolled-back create, as CloudFormation documents it: a plain Retain resource was skipped
    (DELETE_SKIPPED, left in place), every other one deleted (RetainExceptOnCreate ones included).
    """
    if status is None:
        return StackState(name, None)
    template = copy.deepcopy(TEMPLATES[TEMPLATE_OF[name]])
    for logical_id, policy in policies.items():
        template["Resources"][logical_id]["DeletionPolicy"] = policy
    kept = deletion_policies(template)
    summaries = _resources(name, "UPDATE_COMPLETE")
    if status == "ROLLBACK_COMPLETE":
        for summary in summaries:
            retained = kept.get(summary["LogicalResourceId"]) == "Retain"
            summary["ResourceStatus"] = "DELETE_SKIPPED" if retained else "DELETE_COMPLETE"
    return StackState(name, status, resources_from(summaries, kept))


@pytest.fixture(scope="module")
def config():
    return load_config(REPO / "pipeline.yml")


@pytest.fixture
def aws(stub_aws):
    """A stubbed CloudFormation client and a session handing out it alone; waiter sleeps are recorded."""
    stubbed = stub_aws("cloudformation")
    stubbed.cfn = stubbed["cloudformation"]
    return stubbed


# --- deciding: a table -----------------------------------------------------------------------------


def test_the_endpoint_stacks_go_first_last_environment_first_then_the_pipeline_stack(config):
    assert stacks_in_deletion_order(config) == [PROD, QA, PIPELINE]


@pytest.mark.parametrize(
    ("states", "plan"),
    [
        ((_state(PROD, None), _state(QA, None), _state(PIPELINE, None)), Plan()),
        (
            (_state(PROD, "UPDATE_COMPLETE"), _state(QA, "UPDATE_COMPLETE"), _state(PIPELINE, "UPDATE_COMPLETE")),
            Plan((PROD, QA, PIPELINE), KEPT),
        ),
        (  # no endpoint was ever deployed
            (_state(PROD, None), _state(QA, None), _state(PIPELINE, "UPDATE_COMPLETE")),
            Plan((PIPELINE,), KEPT),
        ),
        (  # failed states too
            (_state(PROD, "UPDATE_ROLLBACK_COMPLETE"), _state(QA, None), _state(PIPELINE, "DELETE_FAILED")),
            Plan((PROD, PIPELINE), KEPT),
        ),
        (  # no pipeline stack: nothing it kept
            (_state(PROD, "CREATE_COMPLETE"), _state(QA, "DELETE_COMPLETE"), _state(PIPELINE, None)),
            Plan((PROD,)),
        ),
        (  # a failed first create: RetainExceptOnCreate let its rollback delete the key and buckets
            (_state(PROD, None), _state(QA, None), _state(PIPELINE, "ROLLBACK_COMPLETE")),
            Plan((PIPELINE,)),
        ),
        (  # the same under a template older than RetainExceptOnCreate: the rollback kept them
            (
                _state(PROD, None),
                _state(QA, None),
                _state(
                    PIPELINE,
                    "ROLLBACK_COMPLETE",
                    ArtifactKey="Retain",
                    ArtifactBucket="Retain",
                    ModelBucket="Retain",
                    ModelPackageGroup="Retain",
                ),
            ),
            Plan((PIPELINE,), tuple((f"{what}, kept by a rolled-back create", name) for what, name in KEPT)),
        ),
        (  # a key or bucket the template says to delete is not listed as kept
            (_state(PROD, None), _state(QA, None), _state(PIPELINE, "UPDATE_COMPLETE", ModelBucket="Delete")),
            Plan((PIPELINE,), (*KEPT[:2], KEPT[3])),
        ),
    ],
)
def test_the_plan_deletes_every_stack_that_exists_in_order_and_keeps_what_outlives_them(states, plan):
    assert plan_destroy(states) == plan


# --- doing: the flows -------------------------------------------------------------------------------


def _stack_id(name: str) -> str:
    return f"arn:aws:cloudformation:{REGION}:{ACCOUNT}:stack/{name}/5b2c6f00-0000-4000-8000-000000000001"


def _expect_status(aws, name: str, status: str) -> None:
    stack = {
        "StackId": _stack_id(name),
        "StackName": name,
        "CreationTime": datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc),
        "StackStatus": status,
    }
    aws.cfn.add_response("describe_stacks", {"Stacks": [stack]}, {"StackName": name})


def _expect_no_stack(aws, name: str) -> None:
    message = f"Stack with id {name} does not exist"
    aws.cfn.add_client_error("describe_stacks", "ValidationError", message, 400, expected_params={"StackName": name})


def _expect_found(aws, name: str, status: str) -> None:
    """What destroy reads of an existing stack: its status, its template and its resources."""
    _expect_status(aws, name, status)
    template = json.dumps(TEMPLATES[TEMPLATE_OF[name]])
    params = {"StackName": name, "TemplateStage": "Original"}
    aws.cfn.add_response("get_template", {"TemplateBody": template, "StagesAvailable": ["Original"]}, params)
    summaries = {"StackResourceSummaries": _resources(name, "UPDATE_COMPLETE")}
    aws.cfn.add_response("list_stack_resources", summaries, {"StackName": name})


def _expect_all_three_exist(aws) -> None:
    _expect_found(aws, PROD, "UPDATE_COMPLETE")
    _expect_found(aws, QA, "UPDATE_COMPLETE")
    _expect_found(aws, PIPELINE, "UPDATE_COMPLETE")


def _expect_delete_started(aws, name: str) -> None:
    params = {"StackName": name, "EnableTerminationProtection": False}
    aws.cfn.add_response("update_termination_protection", {"StackId": _stack_id(name)}, params)
    aws.cfn.add_response("delete_stack", {}, {"StackName": name})


def _expect_deleted(aws, *names: str) -> None:
    for name in names:
        _expect_delete_started(aws, name)
        _expect_status(aws, name, "DELETE_IN_PROGRESS")  # the waiter's first poll
        _expect_no_stack(aws, name)  # its second: gone


def _event(name: str, logical_id: str, status: str, when: datetime, reason: str) -> dict:
    return {
        "StackId": _stack_id(name),
        "EventId": f"{logical_id}-{status}-{when.timestamp()}",
        "StackName": name,
        "LogicalResourceId": logical_id,
        "ResourceStatus": status,
        "Timestamp": when,
        "ResourceStatusReason": reason,
    }


def _destroy(config, aws, answer: bool = True) -> tuple[int, list[str], list[str]]:
    """Run destroy; returns its code, every line echoed, and the lines echoed before it asked."""
    lines: list[str] = []
    before_asking: list[str] = []

    def confirm(question: str) -> bool:
        before_asking.extend(lines)
        return answer

    code = destroy(config, aws.session, confirm=confirm, echo=lines.append)
    return code, lines, before_asking


def test_confirmed_lists_the_plan_then_deletes_prod_qa_and_the_pipeline_stack_waiting_for_each(config, aws):
    _expect_all_three_exist(aws)
    _expect_deleted(aws, PROD, QA, PIPELINE)

    code, lines, before_asking = _destroy(config, aws)

    assert code == 0
    assert lines == [
        "will delete, in this order:",
        f"  {PROD}",
        f"  {QA}",
        f"  {PIPELINE}",
        "will keep (retained on delete; remove them yourself if you ever want to):",
        f"  KMS key (decrypts both buckets): {KEY_ID}",
        f"  artifact bucket (pipeline artifacts): {ARTIFACT_BUCKET}",
        f"  model bucket (models, training data, code by commit): {MODEL_BUCKET}",
        f"  model registry (every version, approved or not): {GROUP}",
        f"deleting stack {PROD} ...",
        f"deleted stack {PROD}",
        f"deleting stack {QA} ...",
        f"deleted stack {QA}",
        f"deleting stack {PIPELINE} ...",
        f"deleted stack {PIPELINE}",
        f"done; kept: {KEY_ID}, {ARTIFACT_BUCKET}, {MODEL_BUCKET}, {GROUP}",
    ]
    assert before_asking == lines[:9]
    assert aws.waits == [10, 10, 10]  # one wait between the two polls of each stack


def test_a_rolled_back_pipeline_stack_without_outputs_still_names_what_its_rollback_kept(config, aws):
    """A stack from a template older than RetainExceptOnCreate whose first create failed: no
    outputs, but its key and buckets are there (DELETE_SKIPPED), and destroy says so."""
    old_template = copy.deepcopy(TEMPLATES["pipeline.json"])
    for logical_id in PHYSICAL:
        old_template["Resources"][logical_id]["DeletionPolicy"] = "Retain"
    summaries = _resources(PIPELINE, "DELETE_COMPLETE")
    for summary in summaries:
        if summary["LogicalResourceId"] in PHYSICAL:
            summary["ResourceStatus"] = "DELETE_SKIPPED"
    _expect_no_stack(aws, PROD)
    _expect_no_stack(aws, QA)
    _expect_status(aws, PIPELINE, "ROLLBACK_COMPLETE")
    params = {"StackName": PIPELINE, "TemplateStage": "Original"}
    aws.cfn.add_response("get_template", {"TemplateBody": json.dumps(old_template)}, params)
    aws.cfn.add_response("list_stack_resources", {"StackResourceSummaries": summaries}, {"StackName": PIPELINE})
    _expect_deleted(aws, PIPELINE)

    code, lines, _ = _destroy(config, aws)

    assert code == 0
    assert lines[2:7] == [
        "will keep (retained on delete; remove them yourself if you ever want to):",
        f"  KMS key (decrypts both buckets), kept by a rolled-back create: {KEY_ID}",
        f"  artifact bucket (pipeline artifacts), kept by a rolled-back create: {ARTIFACT_BUCKET}",
        f"  model bucket (models, training data, code by commit), kept by a rolled-back create: {MODEL_BUCKET}",
        f"  model registry (every version, approved or not), kept by a rolled-back create: {GROUP}",
    ]
    assert lines[-1] == f"done; kept: {KEY_ID}, {ARTIFACT_BUCKET}, {MODEL_BUCKET}, {GROUP}"


def test_a_rolled_back_first_create_of_todays_template_kept_nothing_and_says_so(config, aws):
    _expect_no_stack(aws, PROD)
    _expect_no_stack(aws, QA)
    _expect_status(aws, PIPELINE, "ROLLBACK_COMPLETE")
    params = {"StackName": PIPELINE, "TemplateStage": "Original"}
    aws.cfn.add_response("get_template", {"TemplateBody": json.dumps(TEMPLATES["pipeline.json"])}, params)
    summaries = {"StackResourceSummaries": _resources(PIPELINE, "DELETE_COMPLETE")}
    aws.cfn.add_response("list_stack_resources", summaries, {"StackName": PIPELINE})
    _expect_deleted(aws, PIPELINE)

    code, lines, _ = _destroy(config, aws)

    assert code == 0
    assert lines == [
        "will delete, in this order:",
        f"  {PIPELINE}",
        "will keep (retained on delete; remove them yourself if you ever want to):",
        "  nothing (no stack retains a resource)",
        f"deleting stack {PIPELINE} ...",
        f"deleted stack {PIPELINE}",
        "done; kept: nothing was retained",
    ]


def test_no_client_but_cloudformation_is_used_so_no_bucket_or_object_is_touched(config, aws):
    _expect_all_three_exist(aws)
    _expect_deleted(aws, PROD, QA, PIPELINE)

    _destroy(config, aws)

    assert aws.session.asked == ["cloudformation"]  # and the session fails the test on any other


def test_refused_confirmation_deletes_nothing_and_returns_1(config, aws):
    _expect_all_three_exist(aws)  # and no delete queued: the Stubber fails any other call

    code, lines, _ = _destroy(config, aws, answer=False)

    assert code == 1
    assert lines[-1] == "nothing deleted"


def test_nothing_to_delete_returns_0_without_asking(config, aws):
    for name in (PROD, QA, PIPELINE):
        _expect_no_stack(aws, name)
    lines: list[str] = []

    code = destroy(config, aws.session, confirm=lambda q: pytest.fail("asked to confirm"), echo=lines.append)

    assert code == 0
    assert lines == [f"nothing to delete: no stack of project iris-classifier exists in {REGION}"]


def test_a_failed_delete_names_the_first_failure_of_this_delete_and_stops_before_the_next_stack(config, aws):
    now = datetime.now(timezone.utc)
    reason = f"User: arn:aws:sts::{ACCOUNT}:assumed-role/x is not authorized to perform: sagemaker:DeleteEndpoint"
    _expect_all_three_exist(aws)
    _expect_deleted(aws, PROD)
    _expect_delete_started(aws, QA)
    _expect_status(aws, QA, "DELETE_FAILED")  # the waiter's poll: a failure state
    events = [  # newest first
        _event(QA, QA, "DELETE_FAILED", now + timedelta(seconds=30), "The following resource(s) failed"),
        _event(QA, "Endpoint", "DELETE_FAILED", now + timedelta(seconds=20), reason),
        _event(QA, "Endpoint", "UPDATE_FAILED", now - timedelta(days=3), "an old failed update"),
    ]
    aws.cfn.add_response("describe_stack_events", {"StackEvents": events}, {"StackName": QA})
    # Nothing queued for the pipeline stack: a call to delete it would fail on the Stubber.

    with pytest.raises(AwsError) as exc:
        _destroy(config, aws)

    assert str(exc.value) == f"deleting {QA} failed: Endpoint: {reason}"


def test_access_denied_is_one_line_with_the_operation_and_code(config, aws):
    message = f"User: arn:aws:iam::{ACCOUNT}:user/dev is not authorized to perform: cloudformation:DescribeStacks"
    aws.cfn.add_client_error("describe_stacks", "AccessDenied", message, 403, expected_params={"StackName": PROD})

    with pytest.raises(AwsError) as exc:
        _destroy(config, aws)

    assert str(exc.value) == f"DescribeStacks: AccessDenied: {message}"


def test_an_unreachable_endpoint_is_one_line_not_a_traceback(config, unreachable_session):
    with pytest.raises(AwsError) as exc:
        destroy(config, unreachable_session, confirm=lambda q: True, echo=lambda line: None)

    assert str(exc.value) == 'Could not connect to the endpoint URL: "http://127.0.0.1:9/"'


# --- the command line ------------------------------------------------------------------------------


def test_cli_without_yes_and_no_terminal_refuses_and_deletes_nothing(aws, monkeypatch, capsys):
    _expect_all_three_exist(aws)  # the plan is read and shown; no delete is queued
    monkeypatch.setattr("pipeline.aws.session_for", lambda profile, region: aws.session)
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))

    code = main(["destroy", "--config", str(REPO / "pipeline.yml")])

    assert code == 1
    assert capsys.readouterr().err.splitlines() == [
        "destroy: not a terminal, so not asking: re-run with --yes (make destroy ARGS=--yes)"
    ]


def test_cli_with_a_missing_config_exits_2_with_one_line(tmp_path, capsys):
    missing = tmp_path / "nope.yml"

    code = main(["destroy", "--yes", "--config", str(missing)])

    assert code == 2
    assert capsys.readouterr().err.splitlines() == [f"{missing}: file not found"]
