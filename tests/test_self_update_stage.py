"""The UpdatePipeline stage in the pipeline template: where it runs, what its role may do and,
above all, what it may not (README: Self-update)."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import yaml

from pipeline.config import parse_config
from pipeline.stacks.branch import build_branch_template
from pipeline.stacks.pipeline import PipelineStack
from scripts.self_update import SELF_PREFIX

REPO = Path(__file__).resolve().parent.parent
SAMPLE = yaml.safe_load((REPO / "pipeline.yml").read_text())
# Actions that would let a commit widen a role, the key or a bucket.
FORBIDDEN_PREFIXES = (
    "iam:Create",
    "iam:Put",
    "iam:Attach",
    "iam:Delete",
    "iam:Detach",
    "iam:Update",
    "iam:Tag",
    "kms:PutKeyPolicy",
    "kms:ScheduleKeyDeletion",
    "kms:Create",
    "kms:Update",
    "kms:Delete",
    "kms:Disable",
    "s3:PutBucket",
    "s3:DeleteBucket",
    "s3:CreateBucket",
    "s3:PutEncryption",
    "s3:PutLifecycle",
)


def _template(data: dict) -> dict:
    return PipelineStack(parse_config(data, root=REPO)).build().to_dict()


@pytest.fixture(scope="module")
def sample() -> dict:
    return _template(SAMPLE)


def _statements(template: dict, role: str) -> list[dict]:
    (policy,) = template["Resources"][role]["Properties"]["Policies"]
    return policy["PolicyDocument"]["Statement"]


def test_the_sample_turns_self_update_on_and_it_is_the_default():
    assert SAMPLE["self_update"] is True
    data = copy.deepcopy(SAMPLE)
    del data["self_update"]
    assert parse_config(data, root=REPO).self_update is True


def test_update_pipeline_runs_right_after_source_on_the_commit(sample):
    pipeline = sample["Resources"]["Pipeline"]["Properties"]
    names = [s["Name"] for s in pipeline["Stages"]]
    assert names[:3] == ["Source", "UpdatePipeline", "Build"]
    (action,) = pipeline["Stages"][1]["Actions"]
    assert action["ActionTypeId"]["Provider"] == "CodeBuild"
    assert action["Configuration"]["ProjectName"] == {"Ref": "UpdatePipelineProject"}
    assert [a["Name"] for a in action["InputArtifacts"]] == ["SourceOutput"]
    assert pipeline["RestartExecutionOnUpdate"] is True
    project = sample["Resources"]["UpdatePipelineProject"]["Properties"]
    assert "make self-update" in project["Source"]["BuildSpec"]
    assert project["Environment"]["EnvironmentVariables"] == [
        {"Name": "ARTIFACT_BUCKET", "Value": {"Ref": "ArtifactBucket"}, "Type": "PLAINTEXT"}
    ]
    assert project["ServiceRole"] == {"Fn::GetAtt": ["UpdatePipelineRole", "Arn"]}


def test_self_update_false_leaves_the_stage_out_and_does_not_restart_on_update():
    data = copy.deepcopy(SAMPLE)
    data["self_update"] = False
    template = _template(data)
    pipeline = template["Resources"]["Pipeline"]["Properties"]
    assert [s["Name"] for s in pipeline["Stages"]][:2] == ["Source", "Build"]
    assert pipeline["RestartExecutionOnUpdate"] is False
    assert not [r for r in template["Resources"] if r.startswith(SELF_PREFIX)]
    assert "update-pipeline" not in json.dumps(template)


def test_a_branch_pipeline_does_not_update_itself():
    template = build_branch_template(parse_config(SAMPLE, root=REPO), "feature-x").to_dict()
    pipeline = template["Resources"]["Pipeline"]["Properties"]
    assert "UpdatePipeline" not in [s["Name"] for s in pipeline["Stages"]]
    assert pipeline["RestartExecutionOnUpdate"] is False
    assert "update-pipeline" not in json.dumps(template)


@pytest.mark.parametrize("schedule", [False, True])
def test_the_role_cannot_widen_a_role_the_key_or_a_bucket(schedule):
    data = copy.deepcopy(SAMPLE)
    if schedule:
        data["triggers"] = {"schedule": "rate(7 days)"}
    template = _template(data)
    actions = [a for s in _statements(template, "UpdatePipelineRole") for a in s["Action"]]
    assert actions
    assert not [a for a in actions if a.startswith(FORBIDDEN_PREFIXES)], actions
    assert {a for a in actions if a.startswith("iam:")} == {"iam:PassRole", "iam:GetRole"}
    # Reading its input artifact (every step does) and staging a large template: no key administration.
    assert {a for a in actions if a.startswith("kms:")} == {"kms:Decrypt", "kms:GenerateDataKey"}
    assert {a for a in actions if a.startswith("s3:")} == {
        "s3:GetObject",
        "s3:GetObjectVersion",
        "s3:GetBucketLocation",
        "s3:GetBucketVersioning",
        "s3:PutObject",
    }


def test_it_passes_only_the_projects_roles_each_to_its_own_service(sample):
    passes = [s for s in _statements(sample, "UpdatePipelineRole") if "iam:PassRole" in s["Action"]]
    by_service = {}
    for statement in passes:
        assert statement["Action"] == ["iam:PassRole"]
        (service,) = [statement["Condition"]["StringEquals"]["iam:PassedToService"]]
        resources = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
        by_service[service] = {r["Fn::GetAtt"][0] for r in resources}
    codebuild_roles = {
        p["Properties"]["ServiceRole"]["Fn::GetAtt"][0]
        for k, p in sample["Resources"].items()
        if p["Type"] == "AWS::CodeBuild::Project" and not k.startswith(SELF_PREFIX)
    }
    assert by_service == {
        "codepipeline.amazonaws.com": {"PipelineRole"},
        "codebuild.amazonaws.com": codebuild_roles,
        "events.amazonaws.com": {"PipelineStartRole"},  # the sample's data trigger
    }
    assert "UpdatePipelineRole" not in codebuild_roles


def test_with_a_trigger_rule_it_may_pass_the_start_role_to_eventbridge_only():
    data = copy.deepcopy(SAMPLE)
    data["training_data"] = {"local_dir": "model/data"}  # no data trigger: the schedule's rule alone
    data["triggers"] = {"schedule": "rate(7 days)"}
    template = _template(data)
    passes = [s for s in _statements(template, "UpdatePipelineRole") if s["Action"] == ["iam:PassRole"]]
    start = [s for s in passes if s["Condition"]["StringEquals"]["iam:PassedToService"] == "events.amazonaws.com"]
    assert [s["Resource"] for s in start] == [[{"Fn::GetAtt": ["PipelineStartRole", "Arn"]}]]


def test_change_sets_only_on_the_pipeline_stack_and_uploads_only_under_self_update(sample):
    statements = _statements(sample, "UpdatePipelineRole")
    (cfn,) = [s for s in statements if any(a.startswith("cloudformation:") for a in s["Action"])]
    assert cfn["Resource"] == [
        {
            "Fn::Sub": "arn:${AWS::Partition}:cloudformation:${AWS::Region}:${AWS::AccountId}:stack/iris-classifier-pipeline/*"
        }
    ]
    assert "cloudformation:ExecuteChangeSet" in cfn["Action"]
    assert not {"cloudformation:UpdateStack", "cloudformation:DeleteStack", "cloudformation:CreateStack"} & set(
        cfn["Action"]
    )
    (put,) = [s for s in statements if s["Action"] == ["s3:PutObject"] and "self-update" in json.dumps(s)]
    assert put["Resource"] == [
        {"Fn::Sub": ["${Bucket}/self-update/*", {"Bucket": {"Fn::GetAtt": ["ArtifactBucket", "Arn"]}}]}
    ]


def test_the_pipeline_role_may_start_the_update_build(sample):
    (builds,) = [s for s in _statements(sample, "PipelineRole") if "codebuild:StartBuild" in s["Action"]]
    assert {
        "Fn::Sub": "arn:${AWS::Partition}:codebuild:${AWS::Region}:${AWS::AccountId}:project/iris-classifier-update-pipeline"
    } in builds["Resource"]


@pytest.mark.parametrize("value", ["yes", 1, "true"])
def test_self_update_must_be_a_boolean(value):
    from pipeline.config import ConfigError  # noqa: PLC0415

    data = copy.deepcopy(SAMPLE)
    data["self_update"] = value
    with pytest.raises(ConfigError) as exc:
        parse_config(data, root=REPO)
    assert "self_update" in str(exc.value)
