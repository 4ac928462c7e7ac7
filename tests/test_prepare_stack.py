"""scripts/prepare_stack.py, the PrepareStack action before each environment's endpoint deploy.

What to do in each state is a pure table (pipeline.stackstate.prepare_endpoint_stack), tested as
a table. The script runs against conftest's stubbed CloudFormation client (stub_aws), which pins
every call and its parameters and records them in order; nothing sleeps (sleeps are recorded).
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from pipeline.capacity import Capacity, Change, capacity_change
from pipeline.stacks.endpoint import instance_type_suffix
from pipeline.stackstate import Move, StackResource, Step, prepare_endpoint_stack
from scripts import prepare_stack

REPO = Path(__file__).resolve().parent.parent
CONFIG = REPO / "pipeline.yml"
REGION = "us-east-1"
ACCOUNT = "111122223333"
STACK = "iris-classifier-endpoint-qa"
STACK_ID = f"arn:aws:cloudformation:{REGION}:{ACCOUNT}:stack/{STACK}/5b2c6f00-0000-4000-8000-000000000001"
RETRY = "release the pipeline again (Release change) or push a commit"


# --- deciding: a table -----------------------------------------------------------------------------


def _resource(logical_id: str, status: str, physical_id: str = "", kind: str = "AWS::SageMaker::Endpoint"):
    return StackResource(logical_id, kind, physical_id, status)


GONE = (
    _resource("Model", "DELETE_COMPLETE", "Model-a1b2c3", "AWS::SageMaker::Model"),
    _resource("EndpointConfig", "DELETE_COMPLETE", "EndpointConfig-d4e5f6", "AWS::SageMaker::EndpointConfig"),
    _resource("Endpoint", "DELETE_COMPLETE", "iris-classifier-qa"),
)
NEVER_MADE = (_resource("Endpoint", "CREATE_FAILED"),)  # its create failed before anything existed
LEFT = (*GONE[:2], _resource("Endpoint", "DELETE_SKIPPED", "iris-classifier-qa"))


def _refused_not_empty(status: str, why: str, what: str) -> Move:
    return Move(
        Step.REFUSE,
        f"stack {STACK} is {status} ({why}) but not empty: {what}; check and delete them and the stack "
        f"(`aws cloudformation delete-stack --stack-name {STACK} --region {REGION}`), then {RETRY}",
    )


def _deleted(status: str, why: str) -> Move:
    return Move(
        Step.DELETE,
        f"stack {STACK} is {status}: {why}, so it holds nothing and cannot be updated; deleting it so the deploy "
        "creates it again",
    )


ROLLED_BACK = "its first create failed and was rolled back"
NEVER_EXECUTED = "a create change set was made for it but never executed"
WHERE = f"--stack-name {STACK} --region {REGION}"


@pytest.mark.parametrize(
    ("status", "resources", "move"),
    [
        (None, (), Move(Step.NOTHING, f"stack {STACK} does not exist yet: the deploy creates it")),
        ("CREATE_COMPLETE", (), Move(Step.NOTHING, f"stack {STACK} is CREATE_COMPLETE: the deploy updates it")),
        ("UPDATE_COMPLETE", (), Move(Step.NOTHING, f"stack {STACK} is UPDATE_COMPLETE: the deploy updates it")),
        (  # an earlier update failed and rolled back: the endpoint serves the previous model, and can be updated
            "UPDATE_ROLLBACK_COMPLETE",
            (),
            Move(Step.NOTHING, f"stack {STACK} is UPDATE_ROLLBACK_COMPLETE: the deploy updates it"),
        ),
        *(
            (
                status,
                (),
                Move(Step.WAIT, f"stack {STACK} is {status}: another operation is running; waiting for it to end ..."),
            )
            for status in ("CREATE_IN_PROGRESS", "ROLLBACK_IN_PROGRESS", "UPDATE_ROLLBACK_IN_PROGRESS")
        ),
        ("ROLLBACK_COMPLETE", (), _deleted("ROLLBACK_COMPLETE", ROLLED_BACK)),
        ("ROLLBACK_COMPLETE", GONE, _deleted("ROLLBACK_COMPLETE", ROLLED_BACK)),
        ("ROLLBACK_COMPLETE", NEVER_MADE, _deleted("ROLLBACK_COMPLETE", ROLLED_BACK)),
        (
            "ROLLBACK_COMPLETE",
            LEFT,
            _refused_not_empty(
                "ROLLBACK_COMPLETE",
                ROLLED_BACK,
                "Endpoint (AWS::SageMaker::Endpoint) iris-classifier-qa is DELETE_SKIPPED",
            ),
        ),
        ("REVIEW_IN_PROGRESS", (), _deleted("REVIEW_IN_PROGRESS", NEVER_EXECUTED)),
        (
            "UPDATE_ROLLBACK_FAILED",
            GONE,  # resources are never read, let alone deleted, for a stack that was once created
            Move(
                Step.REFUSE,
                f"stack {STACK} is UPDATE_ROLLBACK_FAILED: an update failed and so did its rollback; run "
                f"`aws cloudformation continue-update-rollback {WHERE}` (add --resources-to-skip LOGICAL_ID ... for "
                f"resources that cannot roll back) and wait for UPDATE_ROLLBACK_COMPLETE, then {RETRY}",
            ),
        ),
        (
            "ROLLBACK_FAILED",
            (),
            Move(
                Step.REFUSE,
                f"stack {STACK} is ROLLBACK_FAILED: its first create failed and so did the rollback, so some "
                f"resources may remain; check its events, then delete it: `aws cloudformation delete-stack {WHERE}`, "
                f"then {RETRY}",
            ),
        ),
        (
            "DELETE_FAILED",
            (),
            Move(
                Step.REFUSE,
                f"stack {STACK} is DELETE_FAILED: a delete failed part way; finish it: `aws cloudformation "
                f"delete-stack {WHERE}` (add --retain-resources LOGICAL_ID ... for what cannot be deleted), then "
                f"{RETRY}",
            ),
        ),
        (
            "CREATE_FAILED",
            (),
            Move(
                Step.REFUSE,
                f"stack {STACK} is CREATE_FAILED: its create failed with rollback disabled, so what it made is still "
                f"there; roll it back: `aws cloudformation rollback-stack {WHERE}`, then {RETRY}",
            ),
        ),
        (
            "UPDATE_FAILED",
            (),
            Move(
                Step.REFUSE,
                f"stack {STACK} is UPDATE_FAILED: an update failed with rollback disabled; roll it back: "
                f"`aws cloudformation rollback-stack {WHERE}` and wait for UPDATE_ROLLBACK_COMPLETE, then {RETRY}",
            ),
        ),
        (
            "IMPORT_ROLLBACK_FAILED",
            (),
            Move(
                Step.REFUSE,
                f"stack {STACK} is IMPORT_ROLLBACK_FAILED: a state this tool does not resolve; resolve it in the "
                f"CloudFormation console (see its events), then {RETRY}",
            ),
        ),
    ],
)
def test_the_move_follows_from_the_status_and_for_a_never_created_stack_its_resources(status, resources, move):
    assert prepare_endpoint_stack(status, resources, stack=STACK, region=REGION) == move


# --- doing: the script against stubbed CloudFormation ---------------------------------------------


@pytest.fixture
def aws(stub_aws, monkeypatch):
    """The script's CloudFormation client is conftest's stubbed one; no ENDPOINT_* from the outside."""
    for name in ("ENDPOINT_ENV", "ENDPOINT_STACK"):
        monkeypatch.delenv(name, raising=False)
    stubbed = stub_aws("cloudformation", "application-autoscaling")
    stubbed.cfn = stubbed["cloudformation"]
    stubbed.scaling = stubbed["application-autoscaling"]
    monkeypatch.setattr(prepare_stack, "client", lambda service, region=None: stubbed.clients[service])
    return stubbed


def _run(*extra: str) -> int:
    return prepare_stack.main(["--config", str(CONFIG), "--environment", "qa", "--poll-seconds", "5", *extra])


def _expect_status(aws, status: str, stack: str = STACK) -> None:
    answer = {
        "StackId": STACK_ID,
        "StackName": stack,
        "CreationTime": datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc),
        "StackStatus": status,
    }
    aws.cfn.add_response("describe_stacks", {"Stacks": [answer]}, {"StackName": stack})


def _expect_no_stack(aws) -> None:
    message = f"Stack with id {STACK} does not exist"
    aws.cfn.add_client_error("describe_stacks", "ValidationError", message, 400, expected_params={"StackName": STACK})


def _summary(logical_id: str, status: str, physical_id: str | None = None) -> dict:
    summary = {
        "LogicalResourceId": logical_id,
        "ResourceType": "AWS::SageMaker::Endpoint" if logical_id == "Endpoint" else f"AWS::SageMaker::{logical_id}",
        "LastUpdatedTimestamp": datetime(2024, 5, 1, 12, 5, tzinfo=timezone.utc),
        "ResourceStatus": status,
    }
    return summary | ({"PhysicalResourceId": physical_id} if physical_id else {})


def _expect_resources(aws, *summaries: dict, next_token: str | None = None, token: str | None = None) -> None:
    page = {"StackResourceSummaries": list(summaries)} | ({"NextToken": next_token} if next_token else {})
    aws.cfn.add_response("list_stack_resources", page, {"StackName": STACK} | ({"NextToken": token} if token else {}))


def _template(capacity: dict, *, autoscaled_as: str | None = None) -> dict:
    """A deployed endpoint template as GetTemplate returns it: its variant's capacity, and a
    scalable target when autoscaled."""
    resources: dict = {
        "EndpointConfig": {
            "Type": "AWS::SageMaker::EndpointConfig",
            "Properties": {"ProductionVariants": [{"VariantName": "AllTraffic", **capacity}]},
        }
    }
    if autoscaled_as:
        resources[f"ScalableTarget{autoscaled_as}"] = {"Type": "AWS::ApplicationAutoScaling::ScalableTarget"}
    return {"Resources": resources}


SERVERLESS = {"ServerlessConfig": {"MemorySizeInMB": 2048, "MaxConcurrency": 5}}
INSTANCES = {"InstanceType": "ml.m5.large", "InitialInstanceCount": 1}
QA_UNCHANGED = "endpoint iris-classifier-qa: capacity changes need no preparation"


def _expect_template(aws, template: dict, stack: str = STACK) -> None:
    aws.cfn.add_response(
        "get_template", {"TemplateBody": json.dumps(template)}, {"StackName": stack, "TemplateStage": "Original"}
    )


def _expect_delete(aws) -> None:
    aws.cfn.add_response("delete_stack", {}, {"StackName": STACK})


ROLLED_BACK_LINE = (
    f"stack {STACK} is ROLLBACK_COMPLETE: its first create failed and was rolled back, so it holds nothing and "
    "cannot be updated; deleting it so the deploy creates it again"
)


def test_no_stack_is_left_for_the_deploy_to_create(aws, capsys):
    _expect_no_stack(aws)

    assert _run() == 0
    assert capsys.readouterr().out.splitlines() == [f"stack {STACK} does not exist yet: the deploy creates it"]
    assert aws.calls == ["DescribeStacks"]


def test_a_live_stack_is_only_described(aws, capsys):
    _expect_status(aws, "UPDATE_COMPLETE")
    _expect_template(aws, _template(SERVERLESS))

    assert _run() == 0
    assert capsys.readouterr().out.splitlines() == [
        f"stack {STACK} is UPDATE_COMPLETE: the deploy updates it",
        QA_UNCHANGED,
    ]
    assert aws.calls == ["DescribeStacks", "GetTemplate"]


def test_a_rolled_back_first_create_is_checked_empty_deleted_and_waited_for(aws, capsys):
    _expect_status(aws, "ROLLBACK_COMPLETE")
    _expect_resources(
        aws,
        _summary("Model", "DELETE_COMPLETE", "Model-a1b2c3"),
        _summary("EndpointConfig", "DELETE_COMPLETE", "EndpointConfig-d4e5f6"),
        _summary("Endpoint", "DELETE_COMPLETE", "iris-classifier-qa"),
    )
    _expect_delete(aws)
    _expect_status(aws, "DELETE_IN_PROGRESS")  # the delete waiter's first poll
    _expect_no_stack(aws)  # its second: gone

    assert _run() == 0
    assert capsys.readouterr().out.splitlines() == [
        ROLLED_BACK_LINE,
        f"deleted stack {STACK}: the deploy creates it afresh",
    ]
    assert aws.calls == ["DescribeStacks", "ListStackResources", "DeleteStack", "DescribeStacks", "DescribeStacks"]
    assert aws.waits == [5]


def test_a_rolled_back_stack_with_a_resource_left_on_a_later_page_is_not_deleted(aws, capsys):
    _expect_status(aws, "ROLLBACK_COMPLETE")
    _expect_resources(aws, _summary("Model", "DELETE_COMPLETE", "Model-a1b2c3"), next_token="page-2")
    _expect_resources(aws, _summary("Endpoint", "CREATE_COMPLETE", "iris-classifier-qa"), token="page-2")

    assert _run() == 1
    assert capsys.readouterr().err.splitlines() == [
        f"prepare-stack: FAILED: stack {STACK} is ROLLBACK_COMPLETE (its first create failed and was rolled back) "
        "but not empty: Endpoint (AWS::SageMaker::Endpoint) iris-classifier-qa is CREATE_COMPLETE; check and delete "
        f"them and the stack (`aws cloudformation delete-stack --stack-name {STACK} --region {REGION}`), then {RETRY}"
    ]
    assert aws.calls == ["DescribeStacks", "ListStackResources", "ListStackResources"]


def test_a_stuck_stack_fails_in_one_line_naming_the_fix_and_is_never_deleted(aws, capsys):
    _expect_status(aws, "UPDATE_ROLLBACK_FAILED")

    assert _run() == 1
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith(f"prepare-stack: FAILED: stack {STACK} is UPDATE_ROLLBACK_FAILED: ")
    assert f"aws cloudformation continue-update-rollback --stack-name {STACK} --region {REGION}" in line
    assert aws.calls == ["DescribeStacks"]


def test_a_running_operation_is_waited_out_and_said_once(aws, capsys):
    _expect_status(aws, "UPDATE_IN_PROGRESS")
    _expect_status(aws, "UPDATE_IN_PROGRESS")
    _expect_status(aws, "UPDATE_COMPLETE")
    _expect_template(aws, _template(SERVERLESS))

    assert _run() == 0
    assert capsys.readouterr().out.splitlines() == [
        f"stack {STACK} is UPDATE_IN_PROGRESS: another operation is running; waiting for it to end ...",
        f"stack {STACK} is UPDATE_COMPLETE: the deploy updates it",
        QA_UNCHANGED,
    ]
    assert aws.waits == [5, 5]


def test_waiting_gives_up_in_one_line_after_the_maximum(aws, capsys):
    for _ in range(3):
        _expect_status(aws, "DELETE_IN_PROGRESS")

    assert _run("--poll-seconds", "60", "--max-wait-minutes", "2") == 1
    assert capsys.readouterr().err.splitlines() == [
        f"prepare-stack: FAILED: stack {STACK} is still DELETE_IN_PROGRESS after 2 min; run this again when it settles"
    ]
    assert aws.waits == [60, 60]


def test_a_failed_delete_names_the_first_failed_resource(aws, capsys):
    now = datetime.now(timezone.utc)
    reason = f"User: arn:aws:sts::{ACCOUNT}:assumed-role/deploy is not authorized to perform: sagemaker:DeleteModel"
    _expect_status(aws, "ROLLBACK_COMPLETE")
    _expect_resources(aws)
    _expect_delete(aws)
    _expect_status(aws, "DELETE_FAILED")  # the waiter's poll: a failure state
    events = [  # newest first
        {
            "StackId": STACK_ID,
            "EventId": f"{logical_id}-{seconds}",
            "StackName": STACK,
            "LogicalResourceId": logical_id,
            "ResourceStatus": "DELETE_FAILED",
            "ResourceStatusReason": text,
            "Timestamp": now + timedelta(seconds=seconds),
        }
        for logical_id, seconds, text in (
            (STACK, 9, "The following resource(s) failed to delete"),
            ("Model", 4, reason),
        )
    ]
    aws.cfn.add_response("describe_stack_events", {"StackEvents": events}, {"StackName": STACK})

    assert _run() == 1
    assert capsys.readouterr().err.splitlines() == [
        f"prepare-stack: FAILED: deleting stack {STACK} failed: Model: {reason}"
    ]


def test_a_delete_that_outlasts_the_maximum_wait_is_one_line(aws, capsys):
    _expect_status(aws, "ROLLBACK_COMPLETE")
    _expect_resources(aws)
    _expect_delete(aws)
    _expect_status(aws, "DELETE_IN_PROGRESS")  # the waiter's only poll: 1 minute at 60 s per poll

    assert _run("--poll-seconds", "60", "--max-wait-minutes", "1") == 1
    assert capsys.readouterr().err.splitlines() == [
        f"prepare-stack: FAILED: stack {STACK} is still being deleted after 1 min; run this again when it is gone"
    ]


def test_termination_protection_is_respected_not_lifted(aws, capsys):
    _expect_status(aws, "ROLLBACK_COMPLETE")
    _expect_resources(aws)
    message = f"Stack [{STACK}] cannot be deleted while TerminationProtection is enabled"
    aws.cfn.add_client_error("delete_stack", "ValidationError", message, 400, expected_params={"StackName": STACK})

    assert _run() == 1
    assert capsys.readouterr().err.splitlines() == [f"prepare-stack: FAILED: DeleteStack: ValidationError: {message}"]
    assert "UpdateTerminationProtection" not in aws.calls


def test_the_stack_the_pipeline_names_wins_over_the_configs(aws, monkeypatch, capsys):
    """The action passes its deploy's stack (ENDPOINT_STACK): a commit renaming the project cannot redirect it."""
    monkeypatch.setenv("ENDPOINT_STACK", "old-name-endpoint-qa")
    _expect_status(aws, "UPDATE_COMPLETE", stack="old-name-endpoint-qa")
    _expect_template(aws, _template(SERVERLESS), stack="old-name-endpoint-qa")

    assert _run() == 0
    assert capsys.readouterr().out.splitlines() == [
        "stack old-name-endpoint-qa is UPDATE_COMPLETE: the deploy updates it",
        QA_UNCHANGED,
    ]


def test_access_denied_is_one_line(aws, capsys):
    message = (
        f"User: arn:aws:sts::{ACCOUNT}:assumed-role/prepare is not authorized to perform: cloudformation:DescribeStacks"
    )
    aws.cfn.add_client_error("describe_stacks", "AccessDenied", message, 403, expected_params={"StackName": STACK})

    assert _run() == 1
    assert capsys.readouterr().err.splitlines() == [f"prepare-stack: FAILED: DescribeStacks: AccessDenied: {message}"]


def test_an_environment_not_in_the_config_exits_2_in_one_line(aws, capsys):
    assert prepare_stack.main(["--config", str(CONFIG), "--environment", "staging"]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"prepare-stack: environment 'staging' is not in {CONFIG} (it has: qa, prod)"
    ]
    assert aws.calls == []


# --- capacity: a table, then the calls ---------------------------------------------------------------

M5, C5 = "ml.m5.large", "ml.c5.xlarge"


@pytest.mark.parametrize(
    ("deployed", "new", "change"),
    [
        (None, Capacity(False, M5, True), Change.NOTHING),  # first deploy
        (Capacity(False, M5, True), Capacity(False, M5, True), Change.NOTHING),  # new model, bounds, target
        (Capacity(False, M5, False), Capacity(False, C5, False), Change.NOTHING),  # not autoscaled: CFN updates it
        (Capacity(False, M5, False), Capacity(False, M5, True), Change.NOTHING),  # autoscaling added
        (Capacity(False, M5, True), Capacity(False, C5, True), Change.DEREGISTER),  # AWS: deregister first
        (Capacity(False, M5, True), Capacity(False, M5, False), Change.DEREGISTER),  # retained target let go
        (Capacity(False, M5, True), Capacity(True, None, False), Change.REFUSE),
        (Capacity(False, M5, False), Capacity(True, None, False), Change.REFUSE),
        (Capacity(True, None, False), Capacity(True, None, False), Change.NOTHING),
        (Capacity(True, None, False), Capacity(False, M5, True), Change.NOTHING),  # serverless -> instances
    ],
)
def test_the_capacity_move_follows_from_the_deployed_and_the_new_template(deployed, new, change):
    assert capacity_change(deployed, new, stack=STACK, endpoint="e", region=REGION).change is change


def _run_prod() -> int:
    return prepare_stack.main(["--config", str(CONFIG), "--environment", "prod", "--poll-seconds", "5"])


PROD_STACK = "iris-classifier-endpoint-prod"
PROD_TARGET = {
    "ServiceNamespace": "sagemaker",
    "ResourceId": "endpoint/iris-classifier-prod/variant/AllTraffic",
    "ScalableDimension": "sagemaker:variant:DesiredInstanceCount",
}


def _expect_deregister(aws, registered: bool) -> None:
    if registered:
        aws.scaling.add_response("deregister_scalable_target", {}, PROD_TARGET)
    else:
        message = "No scalable target registered for service namespace: sagemaker"
        aws.scaling.add_client_error(
            "deregister_scalable_target", "ObjectNotFoundException", message, 400, expected_params=PROD_TARGET
        )


def test_an_instance_type_change_of_an_autoscaled_variant_deregisters_its_target_first(aws, capsys):
    _expect_status(aws, "UPDATE_COMPLETE", stack=PROD_STACK)
    _expect_template(aws, _template({**INSTANCES, "InstanceType": C5}, autoscaled_as="x"), stack=PROD_STACK)
    _expect_deregister(aws, registered=True)

    assert _run_prod() == 0
    assert capsys.readouterr().out.splitlines()[-1] == (
        f"endpoint iris-classifier-prod: instance type {C5} -> {M5} on an autoscaled variant; deregistering its "
        "scalable target first (AWS requires it), the deploy registers it again"
    )
    assert aws.calls == ["DescribeStacks", "GetTemplate", "DeregisterScalableTarget"]


def test_a_target_already_gone_is_not_deregistered_again(aws, capsys):
    """A rolled-back update after PrepareStack deregistered: the next run finds nothing to deregister."""
    _expect_status(aws, "UPDATE_ROLLBACK_COMPLETE", stack=PROD_STACK)
    _expect_template(aws, _template({**INSTANCES, "InstanceType": C5}, autoscaled_as="x"), stack=PROD_STACK)
    _expect_deregister(aws, registered=False)

    assert _run_prod() == 0
    assert capsys.readouterr().out.splitlines()[-1] == (
        "endpoint iris-classifier-prod: no scalable target was registered; nothing to deregister"
    )
    assert aws.calls == ["DescribeStacks", "GetTemplate", "DeregisterScalableTarget"]


def test_the_same_instance_type_leaves_the_registration_to_cloudformation(aws, capsys):
    _expect_status(aws, "UPDATE_COMPLETE", stack=PROD_STACK)
    _expect_template(
        aws, {**_template({**INSTANCES, "InstanceType": M5}, autoscaled_as=instance_type_suffix(M5))}, stack=PROD_STACK
    )

    assert _run_prod() == 0
    assert aws.calls == ["DescribeStacks", "GetTemplate"]


def test_an_instance_based_endpoint_is_not_turned_serverless_and_the_line_names_the_fix(aws, capsys):
    _expect_status(aws, "UPDATE_COMPLETE")
    _expect_template(aws, _template(INSTANCES))

    assert _run() == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"prepare-stack: FAILED: endpoint iris-classifier-qa runs on instances and SageMaker cannot convert it to serverless: "
        f"delete stack {STACK} first (aws cloudformation delete-stack --stack-name {STACK} --region {REGION}; the "
        "endpoint is unavailable until the next deploy creates it), then release again"
    ]
    assert aws.calls == ["DescribeStacks", "GetTemplate"]
