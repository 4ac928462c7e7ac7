"""The rendered templates: AWS's schemas (cfn-lint), security rules (cfripper), the pipeline's
structure, least privilege, and the golden files for the sample config."""

from __future__ import annotations

import copy
import difflib
import json
import re
from pathlib import Path

import pytest
import yaml

from pipeline.config import load_config, parse_config
from pipeline.scan import cfn_lint_findings, cfripper_findings
from pipeline.synth import synthesize

REPO = Path(__file__).resolve().parent.parent
GOLDEN = REPO / "tests" / "golden"

SAMPLE = yaml.safe_load((REPO / "pipeline.yml").read_text())


def _variant() -> dict:
    """Everything the sample does not exercise: an existing connection, S3 data, spot training,
    instance-storage hosts, another region, no approvers."""
    data = copy.deepcopy(SAMPLE)
    data["project"] = "churn-model"
    data["region"] = "ap-southeast-2"
    data["source"]["github"]["connection_arn"] = (
        "arn:aws:codestar-connections:ap-southeast-2:111122223333:connection/0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0"
    )
    data["training_data"] = {"s3_uri": "s3://shared-datasets/churn/v7/"}
    data["model"]["training"].update(spot=True, max_runtime_minutes=120, max_wait_minutes=240)
    data["environments"]["prod"]["instance_type"] = "ml.g5.xlarge"
    data["approval"]["emails"] = []
    data["tags"] = {}
    return data


CONFIGS = {
    "sample": lambda: load_config(REPO / "pipeline.yml"),
    "variant": lambda: parse_config(_variant(), root=REPO),
}


@pytest.fixture(scope="module", params=sorted(CONFIGS))
def rendered(request) -> dict[str, dict]:
    return synthesize(CONFIGS[request.param]()).templates


@pytest.fixture(scope="module")
def sample() -> dict[str, dict]:
    return synthesize(load_config(REPO / "pipeline.yml")).templates


@pytest.fixture(scope="module")
def variant() -> dict[str, dict]:
    return synthesize(parse_config(_variant(), root=REPO)).templates


def resources(template: dict, kind: str) -> dict[str, dict]:
    return {k: v for k, v in template["Resources"].items() if v["Type"] == kind}


def stages(template: dict) -> list[dict]:
    (pipeline,) = resources(template, "AWS::CodePipeline::Pipeline").values()
    return pipeline["Properties"]["Stages"]


def actions(template: dict) -> dict[str, dict]:
    return {a["Name"]: a for s in stages(template) for a in s["Actions"]}


# ----- oracles --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["pipeline.json", "endpoint.json"])
def test_cfn_lint_finds_nothing(rendered, name):
    assert cfn_lint_findings(rendered[name]) == []


@pytest.mark.parametrize("name", ["pipeline.json", "endpoint.json"])
def test_cfripper_finds_nothing(rendered, name):
    assert cfripper_findings(rendered[name]) == []


def test_the_scanners_do_catch_a_bad_template(sample):
    """Guards the two tests above: a wildcard policy and a dangling Ref must be reported."""
    bad = copy.deepcopy(sample["pipeline.json"])
    policy = bad["Resources"]["LintRole"]["Properties"]["Policies"][0]["PolicyDocument"]
    policy["Statement"].append({"Effect": "Allow", "Action": "*", "Resource": "*"})
    bad["Resources"]["Pipeline"]["Properties"]["RoleArn"] = {"Ref": "NoSuchRole"}
    assert any("LintRole" in f for f in cfripper_findings(bad))
    assert any("NoSuchRole" in f for f in cfn_lint_findings(bad))


def test_cfripper_suppressions_need_a_reason(sample):
    bad = copy.deepcopy(sample["pipeline.json"])
    policy = bad["Resources"]["LintRole"]["Properties"]["Policies"][0]["PolicyDocument"]
    policy["Statement"].append({"Effect": "Allow", "Action": "*", "Resource": "*"})
    rules = {f.split()[1] for f in cfripper_findings(bad) if "LintRole" in f}
    bad["Resources"]["LintRole"]["Metadata"] = {"cfripper": {"suppress": [{"rule": r, "reason": ""} for r in rules]}}
    assert any("LintRole" in f for f in cfripper_findings(bad))
    bad["Resources"]["LintRole"]["Metadata"] = {
        "cfripper": {"suppress": [{"rule": r, "reason": "test"} for r in rules]}
    }
    assert not any("LintRole" in f for f in cfripper_findings(bad))


# ----- least privilege and references ---------------------------------------------------------


def _statements(template: dict):
    for logical_id, resource in template["Resources"].items():
        props = resource.get("Properties", {})
        docs = [p["PolicyDocument"] for p in props.get("Policies", [])]
        docs += [props[k] for k in ("PolicyDocument", "KeyPolicy") if k in props]
        for doc in docs:
            for statement in doc["Statement"]:
                yield logical_id, statement


def test_no_policy_grants_a_wildcard_action(rendered):
    for template in rendered.values():
        for logical_id, statement in _statements(template):
            if statement["Effect"] != "Allow":
                continue
            acts = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
            for action in acts:
                assert action != "*" and not action.endswith(":*"), (logical_id, action)
                assert "*" not in action, (logical_id, action)


def test_no_arn_has_a_literal_partition_region_or_account(rendered):
    user_given = _variant()["source"]["github"]["connection_arn"]  # the user's own ARN, passed through
    for template in rendered.values():
        text = json.dumps(template).replace(user_given, "")
        assert "arn:aws:" not in text
        assert not re.search(r"arn:\$\{AWS::Partition\}:[a-z-]+:[a-z]{2}-[a-z]+-\d", text)


def test_wildcard_resources_are_only_where_iam_has_no_resource_arn(rendered):
    allowed = {"ecr:GetAuthorizationToken", "cloudwatch:PutMetricData", "cloudformation:ValidateTemplate"}
    for logical_id, statement in _statements(rendered["pipeline.json"]):
        if logical_id == "ArtifactKey" or statement["Effect"] != "Allow" or statement["Resource"] != ["*"]:
            continue
        assert set(statement["Action"]) <= allowed, (logical_id, statement["Action"])


def test_one_role_per_stage_and_service(sample):
    t = sample["pipeline.json"]
    roles = {p["Properties"]["ServiceRole"]["Fn::GetAtt"][0] for p in resources(t, "AWS::CodeBuild::Project").values()}
    assert roles == {"LintRole", "TrainRole", "EndpointTestRole"}
    assert t["Resources"]["Pipeline"]["Properties"]["RoleArn"] == {"Fn::GetAtt": ["PipelineRole", "Arn"]}
    deploys = [a for a in actions(t).values() if a["ActionTypeId"]["Provider"] == "CloudFormation"]
    assert {json.dumps(a["Configuration"]["RoleArn"]) for a in deploys} == {
        json.dumps({"Fn::GetAtt": ["EndpointDeployRole", "Arn"]})
    }
    trusted = {
        k: v["Properties"]["AssumeRolePolicyDocument"]["Statement"][0]["Principal"]["Service"]
        for k, v in resources(t, "AWS::IAM::Role").items()
    }
    assert trusted == {
        "LintRole": "codebuild.amazonaws.com",
        "TrainRole": "codebuild.amazonaws.com",
        "EndpointTestRole": "codebuild.amazonaws.com",
        "PipelineRole": "codepipeline.amazonaws.com",
        "EndpointDeployRole": "cloudformation.amazonaws.com",
        "SageMakerExecutionRole": "sagemaker.amazonaws.com",
    }


def test_the_lint_role_can_touch_only_artifacts_and_its_logs(sample):
    granted = {a for lid, s in _statements(sample["pipeline.json"]) if lid == "LintRole" for a in s["Action"]}
    assert {a.split(":")[0] for a in granted} == {"s3", "kms", "logs"}


def test_endpoint_access_is_scoped_to_this_projects_endpoints(sample):
    statements = [s for lid, s in _statements(sample["pipeline.json"]) if lid == "EndpointTestRole"]
    (invoke,) = [s for s in statements if "sagemaker:InvokeEndpoint" in s["Action"]]
    assert [r["Fn::Sub"] for r in invoke["Resource"]] == [
        "arn:${AWS::Partition}:sagemaker:${AWS::Region}:${AWS::AccountId}:endpoint/iris-classifier-qa",
        "arn:${AWS::Partition}:sagemaker:${AWS::Region}:${AWS::AccountId}:endpoint/iris-classifier-prod",
    ]


def test_external_training_data_is_readable_by_sagemaker(variant):
    reads = [
        s
        for lid, s in _statements(variant["pipeline.json"])
        if lid == "SageMakerExecutionRole" and s["Action"] == ["s3:GetObject"]
    ]
    targets = [json.dumps(s["Resource"]) for s in reads]
    assert any("shared-datasets/churn/v7/*" in t for t in targets)


# ----- the pipeline's shape --------------------------------------------------------------------


def test_stages_run_in_order(rendered):
    assert [s["Name"] for s in stages(rendered["pipeline.json"])] == [
        "Source",
        "LintAndTrain",
        "QA",
        "Approve",
        "Production",
    ]


def test_actions_and_run_orders(sample):
    layout = {
        s["Name"]: [(a["Name"], a["RunOrder"], a["ActionTypeId"]["Provider"]) for a in s["Actions"]]
        for s in stages(sample["pipeline.json"])
    }
    assert layout == {
        "Source": [("GitHub", 1, "CodeStarSourceConnection")],
        "LintAndTrain": [("Lint", 1, "CodeBuild"), ("Train", 1, "CodeBuild")],
        "QA": [("DeployQaEndpoint", 1, "CloudFormation"), ("TestQAEndpoint", 2, "CodeBuild")],
        "Approve": [("ApproveForProduction", 1, "Manual")],
        "Production": [("DeployProdEndpoint", 1, "CloudFormation"), ("SmokeTestProdEndpoint", 2, "CodeBuild")],
    }


def test_every_input_artifact_is_produced_earlier(rendered):
    produced: set[str] = set()
    for stage in stages(rendered["pipeline.json"]):
        for order in sorted({a["RunOrder"] for a in stage["Actions"]}):
            batch = [a for a in stage["Actions"] if a["RunOrder"] == order]
            for action in batch:
                for artifact in action.get("InputArtifacts", []):
                    assert artifact["Name"] in produced, (action["Name"], artifact["Name"])
            produced |= {o["Name"] for a in batch for o in a.get("OutputArtifacts", [])}


def test_every_variable_is_emitted_by_an_earlier_action(rendered):
    """#{Namespace.VAR} must name an earlier action's namespace, and for CodeBuild actions a
    variable its buildspec exports."""
    exported = {}
    for spec in (REPO / "buildspecs").glob("*.yml"):
        body = yaml.safe_load(spec.read_text())
        exported[f"buildspecs/{spec.name}"] = set(body.get("env", {}).get("exported-variables", []))
    projects = resources(rendered["pipeline.json"], "AWS::CodeBuild::Project")
    namespaces: dict[str, set[str] | None] = {}
    for stage in stages(rendered["pipeline.json"]):
        for action in stage["Actions"]:
            text = json.dumps(action["Configuration"])
            for namespace, variable in re.findall(r"#\{(\w+)\.(\w+)\}", text):
                assert namespace in namespaces, (action["Name"], namespace)
                if namespaces[namespace] is not None:
                    assert variable in namespaces[namespace], (namespace, variable)
        for action in stage["Actions"]:
            if "Namespace" not in action:
                continue
            if action["ActionTypeId"]["Provider"] == "CodeBuild":
                project = projects[action["Configuration"]["ProjectName"]["Ref"]]
                namespaces[action["Namespace"]] = exported[project["Properties"]["Source"]["BuildSpec"]]
            else:
                namespaces[action["Namespace"]] = None  # the source action's variables are AWS's own


def test_approval_comes_before_production_and_carries_run_values(sample):
    names = [s["Name"] for s in stages(sample["pipeline.json"])]
    assert names.index("Approve") < names.index("Production")
    approval = actions(sample["pipeline.json"])["ApproveForProduction"]["Configuration"]
    assert "#{TrainVariables.METRIC_VALUE}" in approval["CustomData"]
    assert "#{QATestVariables.TEST_SUMMARY}" in approval["CustomData"]
    link = approval["ExternalEntityLink"]["Fn::Sub"][0]
    assert link.startswith("https://${AWS::Region}.console.aws.amazon.com/codesuite/codebuild/")
    assert "/build/#{QATestVariables.TEST_BUILD_ID}/reports" in link
    assert approval["NotificationArn"] == {"Ref": "ApprovalTopic"}


def test_deploy_actions_update_stable_stacks_with_train_parameters(sample):
    all_actions = actions(sample["pipeline.json"])
    for env, name in (("qa", "DeployQaEndpoint"), ("prod", "DeployProdEndpoint")):
        config = all_actions[name]["Configuration"]
        assert config["ActionMode"] == "CREATE_UPDATE"
        assert config["StackName"] == f"iris-classifier-endpoint-{env}"
        assert config["TemplatePath"] == "TemplatesOutput::endpoint.json"
        assert config["TemplateConfiguration"] == f"TrainOutput::{env}.json"
        overrides = json.loads(config["ParameterOverrides"]["Fn::Sub"][0])
        assert overrides["EndpointName"] == f"iris-classifier-{env}"


def test_endpoint_parameters_are_all_supplied(sample):
    """Every endpoint parameter without a default comes from the deploy action or the train step."""
    from scripts.train import template_configurations

    config = load_config(REPO / "pipeline.yml")
    job = {"ModelArtifacts": {"S3ModelArtifacts": "s3://b/m.tar.gz"}, "TrainingJobName": "j"}
    from_train = set(template_configurations(config, job, "img", "s3://b/c.tar.gz", "abc1234")["qa"]["Parameters"])
    overrides = actions(sample["pipeline.json"])["DeployQaEndpoint"]["Configuration"]["ParameterOverrides"]
    from_pipeline = set(json.loads(overrides["Fn::Sub"][0]))
    params = sample["endpoint.json"]["Parameters"]
    required = {k for k, v in params.items() if "Default" not in v}
    assert required <= from_train | from_pipeline
    assert (from_train | from_pipeline) <= set(params)
    assert not from_train & from_pipeline


def test_codebuild_projects_use_the_repo_buildspecs(sample):
    for project in resources(sample["pipeline.json"], "AWS::CodeBuild::Project").values():
        assert (REPO / project["Properties"]["Source"]["BuildSpec"]).is_file()
        assert project["Properties"]["Environment"]["Image"].startswith("aws/codebuild/standard:")
        assert project["Properties"]["LogsConfig"]["CloudWatchLogs"]["Status"] == "ENABLED"


def test_test_reports_land_in_the_report_group(sample):
    spec = yaml.safe_load((REPO / "buildspecs/endpoint-test.yml").read_text())
    (report,) = spec["reports"]
    group = sample["pipeline.json"]["Resources"]["EndpointTestReports"]["Properties"]
    project = sample["pipeline.json"]["Resources"]["EndpointTestProject"]["Properties"]
    assert group["Name"] == f"{project['Name']}-{report}"
    assert spec["reports"][report]["file-format"] == "JUNITXML"


def test_train_timeout_follows_the_configured_runtime(variant):
    timeout = variant["pipeline.json"]["Resources"]["TrainProject"]["Properties"]["TimeoutInMinutes"]
    assert timeout == 240 + 30


def test_artifact_store_and_buckets_are_encrypted_private_and_tls_only(rendered):
    t = rendered["pipeline.json"]
    for logical_id in ("ArtifactBucket", "ModelBucket"):
        bucket = t["Resources"][logical_id]
        props = bucket["Properties"]
        rule = props["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]["ServerSideEncryptionByDefault"]
        assert rule == {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": {"Fn::GetAtt": ["ArtifactKey", "Arn"]}}
        assert props["VersioningConfiguration"] == {"Status": "Enabled"}
        assert set(props["PublicAccessBlockConfiguration"].values()) == {True}
        assert (bucket["DeletionPolicy"], bucket["UpdateReplacePolicy"]) == ("Retain", "Retain")
        policy = t["Resources"][f"{logical_id}Policy"]["Properties"]["PolicyDocument"]["Statement"][0]
        assert policy["Effect"] == "Deny" and policy["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    store = t["Resources"]["Pipeline"]["Properties"]["ArtifactStore"]
    assert store["EncryptionKey"]["Type"] == "KMS"
    assert t["Resources"]["ApprovalTopic"]["Properties"]["KmsMasterKeyId"] == {"Fn::GetAtt": ["ArtifactKey", "Arn"]}
    assert t["Resources"]["Pipeline"]["Properties"]["PipelineType"] == "V2"


def test_approvers_are_subscribed(sample, variant):
    subs = sample["pipeline.json"]["Resources"]["ApprovalTopic"]["Properties"]["Subscription"]
    assert subs == [{"Endpoint": "ml-approvers@example.com", "Protocol": "email"}]
    assert variant["pipeline.json"]["Resources"]["ApprovalTopic"]["Properties"]["Subscription"] == []


def test_connection_is_created_only_when_none_is_configured(sample, variant):
    assert "GitHubConnection" in sample["pipeline.json"]["Resources"]
    assert "GitHubConnection" not in variant["pipeline.json"]["Resources"]
    source = actions(variant["pipeline.json"])["GitHub"]["Configuration"]
    assert source["ConnectionArn"] == _variant()["source"]["github"]["connection_arn"]
    assert source["FullRepositoryId"] == "your-github-org/sagemaker-cd"
    assert source["BranchName"] == "main"


# ----- the endpoint stack ------------------------------------------------------------------------


def test_endpoint_has_a_stable_name_and_replaceable_model(sample):
    t = sample["endpoint.json"]["Resources"]
    assert t["Endpoint"]["Properties"]["EndpointName"] == {"Ref": "EndpointName"}
    assert "ModelName" not in t["Model"]["Properties"]
    assert "EndpointConfigName" not in t["EndpointConfig"]["Properties"]
    env = t["Model"]["Properties"]["PrimaryContainer"]["Environment"]
    assert env["SAGEMAKER_PROGRAM"] == {"Ref": "EntryPoint"}
    assert env["SAGEMAKER_SUBMIT_DIRECTORY"] == {"Ref": "SourceDir"}


# ----- stability ---------------------------------------------------------------------------------

STATEFUL = {
    "pipeline.json": {
        "ArtifactKey": "AWS::KMS::Key",
        "ArtifactBucket": "AWS::S3::Bucket",
        "ModelBucket": "AWS::S3::Bucket",
        "ApprovalTopic": "AWS::SNS::Topic",
        "Pipeline": "AWS::CodePipeline::Pipeline",
        "GitHubConnection": "AWS::CodeStarConnections::Connection",
    },
    "endpoint.json": {"Endpoint": "AWS::SageMaker::Endpoint"},
}


def test_stateful_logical_ids_are_pinned(sample):
    """Renaming one of these replaces it in AWS (a new bucket, a new endpoint): never by accident."""
    for name, expected in STATEFUL.items():
        found = {k: sample[name]["Resources"][k]["Type"] for k in expected if k in sample[name]["Resources"]}
        assert found == expected


def test_golden_templates_match():
    """Regenerate with `make golden` after an intended change, and review the diff."""
    config = load_config(GOLDEN / "pipeline.yml", root=REPO)
    for name, body in synthesize(config).templates.items():
        expected = json.loads((GOLDEN / name).read_text())
        if body != expected:
            diff = difflib.unified_diff(
                json.dumps(expected, indent=1, sort_keys=True).splitlines(),
                json.dumps(body, indent=1, sort_keys=True).splitlines(),
                f"tests/golden/{name}",
                "rendered now",
                lineterm="",
                n=2,
            )
            pytest.fail(f"{name} differs from its golden file (make golden to accept):\n" + "\n".join(list(diff)[:80]))
