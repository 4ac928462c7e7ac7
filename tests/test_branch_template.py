"""The branch pipeline's stack: QA-like environments only, its own names, the main stack's buckets,
key and connection by parameter, nothing stateful of its own."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline.branches import BRANCH_VARIABLE, branch_config, branch_problem_for, load_run_config, qa_environments
from pipeline.cli import main as cli_main
from pipeline.config import load_config
from pipeline.names import branch_names
from pipeline.regions import verdicts
from pipeline.scan import cfn_lint_findings
from pipeline.stacks.branch import SHARED, build_branch_template
from pipeline.synth import render

REPO = Path(__file__).resolve().parents[1]
BRANCH = "user/Jane.Doe/feature_X"
STATEFUL = {"AWS::S3::Bucket", "AWS::S3::BucketPolicy", "AWS::KMS::Key", "AWS::KMS::Alias"}


@pytest.fixture(scope="module")
def config():
    return load_config(str(REPO / "pipeline.yml"))


@pytest.fixture(scope="module")
def template(config) -> dict:
    return build_branch_template(config, BRANCH).to_dict()


def test_the_sample_branch_pipeline_stops_before_the_first_approval(config, template) -> None:
    assert [env.name for env in qa_environments(config)] == ["qa"]
    stages = [stage["Name"] for stage in template["Resources"]["Pipeline"]["Properties"]["Stages"]]
    assert stages == ["Source", "Build", "Qa"]


def test_without_an_approval_stage_no_rule_waits_for_one(config, template) -> None:
    """The main pipeline notifies of a waiting approval; a branch pipeline has none to wait for."""
    rules = {rid for rid, r in template["Resources"].items() if r["Type"] == "AWS::Events::Rule"}
    assert rules == {"PipelineRunRule", "ActionFailedRule"}
    assert "ApprovalWaitsRule" in render(config).templates["pipeline.json"]["Resources"]


def test_it_creates_nothing_stateful_and_takes_the_shared_resources_by_parameter(template) -> None:
    types = {resource["Type"] for resource in template["Resources"].values()}
    assert not types & STATEFUL
    assert "AWS::CodeStarConnections::Connection" not in types
    assert sorted(template["Parameters"]) == sorted(SHARED)
    store = template["Resources"]["Pipeline"]["Properties"]["ArtifactStore"]
    assert store["Location"] == {"Ref": "ArtifactBucketName"}
    assert store["EncryptionKey"]["Id"] == {"Ref": "ArtifactKeyArn"}
    assert "ApprovalTopic" not in template["Resources"]


def test_its_names_are_the_branchs_and_its_source_and_trigger_follow_the_branch(config, template) -> None:
    names = branch_names(config.project, BRANCH)
    pipeline = template["Resources"]["Pipeline"]["Properties"]
    assert pipeline["Name"] == names.pipeline != config.names.pipeline
    source = pipeline["Stages"][0]["Actions"][0]["Configuration"]
    assert source["BranchName"] == BRANCH
    assert source["ConnectionArn"] == {"Ref": "GitHubConnectionArn"}
    push = pipeline["Triggers"][0]["GitConfiguration"]["Push"][0]
    assert push["Branches"] == {"Includes": [BRANCH]}
    text = json.dumps(template)
    assert f'"{config.names.endpoint("qa")}"' not in text and names.endpoint("qa") in text


def test_the_main_templates_do_not_change(config) -> None:
    golden = json.loads((REPO / "tests" / "golden" / "pipeline.json").read_text())
    assert render(config).templates["pipeline.json"] == golden


def test_a_branch_that_runs_main_or_a_config_with_nothing_before_an_approval_is_refused(config) -> None:
    assert branch_problem_for(config, BRANCH) is None
    main = config.source.github.branch
    assert branch_problem_for(config, main) == f"--branch {main}: that branch runs the main pipeline (iris-classifier)"
    gated = config.model_copy(update={"environments": [config.environments[-1]]})
    assert branch_problem_for(gated, BRANCH) == (
        f"--branch {BRANCH}: no environment comes before an approval (prod has approval: true)"
    )


def test_cfn_lint_finds_nothing_in_the_branch_template_in_the_configs_region(config, template) -> None:
    assert cfn_lint_findings(template, [config.region]) == []


@pytest.mark.heavy
def test_cfn_lint_finds_nothing_in_the_branch_template_in_any_accepted_region(config, template) -> None:
    accepted = [region for region, found in verdicts(config).items() if not found]
    assert "us-east-1" in accepted
    assert cfn_lint_findings(template, accepted) == []


def test_every_build_project_of_the_branch_runs_as_the_branch(template) -> None:
    projects = [r for r in template["Resources"].values() if r["Type"] == "AWS::CodeBuild::Project"]
    assert len(projects) >= 4
    for project in projects:
        env = {v["Name"]: v["Value"] for v in project["Properties"]["Environment"]["EnvironmentVariables"]}
        assert env[BRANCH_VARIABLE] == BRANCH


def test_synth_with_a_branch_writes_the_branchs_templates(config, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv(BRANCH_VARIABLE, BRANCH)  # as the branch pipeline's Lint action runs it
    assert cli_main(["synth", "--config", str(REPO / "pipeline.yml"), "--out", str(tmp_path)]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["endpoint-qa.json", "pipeline.json"]
    endpoint = json.loads((tmp_path / "endpoint-qa.json").read_text())
    names = {r["Properties"].get("EndpointName") for r in endpoint["Resources"].values()}
    assert branch_names(config.project, BRANCH).endpoint("qa") in names
    assert json.loads((tmp_path / "pipeline.json").read_text()) == json.loads(json.dumps(template_for(config)))


def template_for(config) -> dict:
    return build_branch_template(config, BRANCH).to_dict()


def test_synth_refuses_the_main_branch_in_one_line(config, tmp_path, capsys) -> None:
    main = config.source.github.branch
    code = cli_main(["synth", "--config", str(REPO / "pipeline.yml"), "--out", str(tmp_path), "--branch", main])
    assert code == 2
    assert capsys.readouterr().err == f"--branch {main}: that branch runs the main pipeline (iris-classifier)\n"
    assert not list(tmp_path.iterdir())


def test_the_stage_scripts_act_on_the_branchs_config_in_a_branch_pipeline(config, monkeypatch) -> None:
    path = str(REPO / "pipeline.yml")
    assert load_run_config(path).project == config.project
    monkeypatch.setenv(BRANCH_VARIABLE, BRANCH)
    ours = load_run_config(path)
    assert ours.project == branch_names(config.project, BRANCH).project
    assert ours.environment_names == ["qa"]


@pytest.mark.parametrize(
    ("branch", "error"),
    [
        ("feature..x", "--branch: 'feature..x' is not a valid git branch name"),
        ("a b", "--branch: 'a b' is not a valid git branch name"),
        ("x#{y}", "--branch: 'x#{y}' is not a valid git branch name ('#{' starts a CodePipeline variable)"),
        ("/x", "--branch: '/x' is not a valid git branch name"),
    ],
)
def test_a_branch_name_git_or_codepipeline_refuses_is_one_line(config, branch, error) -> None:
    assert branch_problem_for(config, branch) == error


def test_a_branch_pipeline_has_no_champion_gate(template) -> None:
    """The champion serves in the main pipeline's prod, whose stack a branch's train role may not read."""
    assert load_config(REPO / "pipeline.yml").champion_environment == "prod"
    train_role = json.dumps(template["Resources"]["TrainRole"])
    assert "cloudformation:DescribeStacks" not in train_role
    assert "CHAMPION" not in json.dumps(template)


def test_it_trains_on_the_main_pipelines_training_data_folder_and_has_no_data_trigger(config, template) -> None:
    """The sample's data is in the model bucket under the main project's folder: a branch's train
    action lists it and its SageMaker role reads it; only the main pipeline retrains on new data."""
    ours = branch_config(config, BRANCH)
    assert ours.training_data_key_prefix == "iris-classifier/training-data/"
    assert ours.project != config.project
    bucket = {"Fn::Sub": ["arn:${AWS::Partition}:s3:::${Bucket}", {"Bucket": {"Ref": "ModelBucketName"}}]}
    resources = template["Resources"]
    role = resources["SageMakerExecutionRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]
    reads = [s for s in role if s["Action"] == ["s3:GetObject"]]
    assert any("iris-classifier/training-data/*" in json.dumps(s["Resource"]) for s in reads)
    lists = [s["Condition"]["StringLike"]["s3:prefix"] for s in role if s["Action"] == ["s3:ListBucket"]]
    assert ["iris-classifier/training-data/*"] in lists
    train = resources["TrainRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]
    assert any(
        s["Action"] == ["s3:ListBucket"]
        and s["Condition"]["StringLike"]["s3:prefix"] == ["iris-classifier/training-data/*"]
        and json.dumps(bucket) in json.dumps(s["Resource"])
        for s in train
    ), train
    assert "NewTrainingDataRule" not in resources
