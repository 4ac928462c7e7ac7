"""`make deploy|destroy ARGS='--branch B'`: a branch's pipeline stack, given the main stack's
buckets, key and connection; destroy removes the branch's stacks and nothing of the main pipeline.

The flows run against stubbed clients (conftest's stub_aws) that pin every call and its StackName.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import pytest

from pipeline import deploy
from pipeline.aws import AwsError
from pipeline.cli import main as cli_main
from pipeline.config import load_config
from pipeline.deploy import branch_deployment, deploy_pipeline, shared_parameters
from pipeline.destroy import destroy, stacks_in_deletion_order
from pipeline.names import branch_names
from pipeline.synth import synthesize

REPO = Path(__file__).resolve().parent.parent
REGION = "us-east-1"
ACCOUNT = "111122223333"
BRANCH = "feature/New.Model"
MAIN_STACKS = {"iris-classifier-pipeline", "iris-classifier-endpoint-qa", "iris-classifier-endpoint-prod"}
OURS = branch_names("iris-classifier", BRANCH)
STACK = OURS.pipeline_stack
QA = OURS.endpoint_stack("qa")
CS = "sagemaker-cd-20240501120000"
OUTPUTS = {
    "ArtifactBucketName": "iris-artifacts-1a2b",
    "ModelBucketName": "iris-models-1a2b",
    "ArtifactKeyArn": f"arn:aws:kms:{REGION}:{ACCOUNT}:key/1a2b3c4d-0000-4000-8000-000000000003",
    "GitHubConnectionArn": f"arn:aws:codestar-connections:{REGION}:{ACCOUNT}:connection/0f1e2d3c-0000-4000-8000-02",
    "PipelineName": "iris-classifier",
}
SHARED = tuple(
    (k, OUTPUTS[k]) for k in ("ArtifactBucketName", "ModelBucketName", "ArtifactKeyArn", "GitHubConnectionArn")
)
TEMPLATES = synthesize(load_config(REPO / "pipeline.yml"), BRANCH).templates


@pytest.fixture(scope="module")
def config():
    return load_config(REPO / "pipeline.yml")


@pytest.fixture
def aws(stub_aws):
    stubbed = stub_aws("cloudformation")
    stubbed.cfn = stubbed["cloudformation"]
    return stubbed


def _stack_id(name: str) -> str:
    return f"arn:aws:cloudformation:{REGION}:{ACCOUNT}:stack/{name}/5b2c6f00-0000-4000-8000-000000000001"


def _expect_status(aws, name: str, status: str, outputs: dict | None = None) -> None:
    stack = {
        "StackId": _stack_id(name),
        "StackName": name,
        "CreationTime": datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc),
        "StackStatus": status,
        "Outputs": [{"OutputKey": k, "OutputValue": v} for k, v in (outputs or {}).items()],
    }
    aws.cfn.add_response("describe_stacks", {"Stacks": [stack]}, {"StackName": name})


def _expect_no_stack(aws, name: str) -> None:
    message = f"Stack with id {name} does not exist"
    aws.cfn.add_client_error("describe_stacks", "ValidationError", message, 400, expected_params={"StackName": name})


# --- deciding --------------------------------------------------------------------------------------


def test_the_shared_parameters_are_the_main_stacks_outputs(config):
    main = {
        "StackStatus": "UPDATE_COMPLETE",
        "Outputs": [{"OutputKey": k, "OutputValue": v} for k, v in OUTPUTS.items()],
    }
    assert shared_parameters(config, main) == SHARED


@pytest.mark.parametrize(
    ("main", "error"),
    [
        (
            None,
            "the main pipeline stack iris-classifier-pipeline does not exist in us-east-1: a branch pipeline shares "
            "its buckets and key; run make deploy first",
        ),
        (
            {"StackStatus": "ROLLBACK_COMPLETE", "Outputs": []},
            "the main pipeline stack iris-classifier-pipeline (ROLLBACK_COMPLETE) has no output ArtifactBucketName, "
            "ModelBucketName, ArtifactKeyArn, GitHubConnectionArn: run make deploy to bring it up to date first",
        ),
    ],
)
def test_a_main_stack_without_the_shared_outputs_is_one_line(config, main, error):
    with pytest.raises(AwsError) as exc:
        shared_parameters(config, main)
    assert str(exc.value) == error


def test_the_branch_deployment_is_the_branch_template_under_the_branchs_names(config):
    deployment = branch_deployment(config, BRANCH, SHARED)
    assert deployment.name == STACK
    assert deployment.name not in MAIN_STACKS
    assert json.loads(deployment.template_body) == TEMPLATES["pipeline.json"]
    assert deployment.parameters == SHARED
    assert deployment.tags["sagemaker-cd:project"] == OURS.project


def test_destroy_of_a_branch_names_only_the_branchs_stacks(config):
    assert stacks_in_deletion_order(config, BRANCH) == [QA, STACK]
    assert not set(stacks_in_deletion_order(config, BRANCH)) & MAIN_STACKS


# --- the flows -------------------------------------------------------------------------------------


def test_deploy_branch_reads_the_main_stack_and_creates_the_branch_stack_with_its_outputs(config, aws, monkeypatch):
    monkeypatch.setattr(deploy, "change_set_name", lambda: CS)
    _expect_status(aws, "iris-classifier-pipeline", "UPDATE_COMPLETE", OUTPUTS)
    _expect_no_stack(aws, STACK)
    params = {
        "StackName": STACK,
        "ChangeSetName": CS,
        "ChangeSetType": "CREATE",
        "Capabilities": ["CAPABILITY_IAM"],
        "Tags": [{"Key": "team", "Value": "ml-platform"}, {"Key": "sagemaker-cd:project", "Value": OURS.project}],
        "Description": f"make deploy --branch of the iris-classifier pipeline for {BRANCH}",
        "Parameters": [{"ParameterKey": k, "ParameterValue": v} for k, v in SHARED],
        "TemplateBody": branch_deployment(config, BRANCH, SHARED).template_body,
    }
    aws.cfn.add_response("create_change_set", {"Id": f"{_stack_id(STACK)}/cs", "StackId": _stack_id(STACK)}, params)
    change_set = {"ChangeSetName": CS, "StackName": STACK, "Status": "CREATE_COMPLETE", "Changes": []}
    for _ in range(2):  # the waiter's poll, then the listing
        aws.cfn.add_response("describe_change_set", change_set, {"ChangeSetName": CS, "StackName": STACK})
    aws.cfn.add_response("delete_change_set", {}, {"ChangeSetName": CS, "StackName": STACK})
    aws.cfn.add_response("delete_stack", {}, {"StackName": STACK})  # the dry run's REVIEW_IN_PROGRESS stack

    lines: list[str] = []
    code = deploy_pipeline(config, branch=BRANCH, session=aws.session, echo=lines.append, dry_run=True)

    assert code == 0
    assert lines[-1] == "dry run: nothing changed"
    assert aws.calls[:3] == ["DescribeStacks", "DescribeStacks", "CreateChangeSet"]


def test_deploy_branch_without_a_main_stack_stops_after_one_call(config, aws):
    _expect_no_stack(aws, "iris-classifier-pipeline")
    with pytest.raises(AwsError, match="does not exist in us-east-1: a branch pipeline shares"):
        deploy_pipeline(config, branch=BRANCH, session=aws.session, echo=print, yes=True)
    assert aws.calls == ["DescribeStacks"]


def _expect_found(aws, name: str, template: str) -> None:
    _expect_status(aws, name, "UPDATE_COMPLETE")
    body = json.dumps(TEMPLATES[template])
    aws.cfn.add_response(
        "get_template",
        {"TemplateBody": body, "StagesAvailable": ["Original"]},
        {"StackName": name, "TemplateStage": "Original"},
    )
    summaries = [
        {
            "LogicalResourceId": logical_id,
            "PhysicalResourceId": f"{name}-{logical_id}",
            "ResourceType": resource["Type"],
            "LastUpdatedTimestamp": datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc),
            "ResourceStatus": "UPDATE_COMPLETE",
        }
        for logical_id, resource in TEMPLATES[template]["Resources"].items()
    ]
    aws.cfn.add_response("list_stack_resources", {"StackResourceSummaries": summaries}, {"StackName": name})


def test_destroy_branch_deletes_its_endpoint_then_its_pipeline_and_never_a_main_stack(config, aws):
    _expect_found(aws, QA, "endpoint-qa.json")
    _expect_found(aws, STACK, "pipeline.json")
    for name in (QA, STACK):
        params = {"StackName": name, "EnableTerminationProtection": False}
        aws.cfn.add_response("update_termination_protection", {"StackId": _stack_id(name)}, params)
        aws.cfn.add_response("delete_stack", {}, {"StackName": name})
        _expect_status(aws, name, "DELETE_IN_PROGRESS")
        _expect_no_stack(aws, name)
    lines: list[str] = []
    asked: list[str] = []

    code = destroy(config, aws.session, confirm=lambda q: asked.append(q) or True, echo=lines.append, branch=BRANCH)

    assert code == 0
    assert lines[:5] == [
        "will delete, in this order:",
        f"  {QA}",
        f"  {STACK}",
        "will keep (retained on delete; remove them yourself if you ever want to):",
        # The branch's own model registry, as the main stack's (its name is the stack's resource id here).
        f"  model registry (every version, approved or not): {STACK}-ModelPackageGroup",
    ]
    assert not any(main in line for line in lines for main in MAIN_STACKS)
    assert "DeleteStack" in aws.calls  # every StackName the stubs accepted is pinned to the branch's stacks


def test_destroy_branch_with_nothing_deployed_deletes_nothing(config, aws):
    _expect_no_stack(aws, QA)
    _expect_no_stack(aws, STACK)
    lines: list[str] = []
    assert destroy(config, aws.session, confirm=lambda q: True, echo=lines.append, branch=BRANCH) == 0
    assert lines == [f"nothing to delete: no stack of branch {BRANCH}'s pipeline exists in us-east-1"]


@pytest.mark.parametrize("command", ["deploy", "destroy", "status"])
def test_the_main_branch_is_refused_before_any_aws_call(command, aws, capsys, monkeypatch):
    monkeypatch.chdir(REPO)
    code = cli_main([command, "--branch", "main", *(["--yes"] if command != "status" else [])])
    assert code == 2
    assert capsys.readouterr().err == "--branch main: that branch runs the main pipeline (iris-classifier)\n"
    assert aws.calls == []
