"""The rendered templates: AWS's schemas (cfn-lint), security rules (cfripper), the pipeline's
structure, least privilege, and the golden files for the sample config."""

from __future__ import annotations

import copy
import difflib
import json
import re
from functools import cached_property
from pathlib import Path

import awacs.sagemaker
import pytest
import yaml

from pipeline.config import PipelineConfig, load_config, parse_config
from pipeline.iam import allow
from pipeline.refs import arn
from pipeline.scan import cfn_lint_findings, cfripper_findings
from pipeline.stacks.endpoint import RUN_PARAMETERS, instance_type_suffix
from pipeline.stacks.pipeline import PipelineStack
from pipeline.stages import Action, DeploymentTarget, PipelineVariable, Stage, render_stages
from pipeline.steps import BuildStep
from pipeline.synth import synthesize

REPO = Path(__file__).resolve().parent.parent
GOLDEN = REPO / "tests" / "golden"

SAMPLE = yaml.safe_load((REPO / "pipeline.yml").read_text())


def _variant() -> dict:
    """Everything the sample does not exercise: an existing connection, S3 data, spot training,
    instance-storage hosts, another region, no approvers, no champion gate."""
    data = copy.deepcopy(SAMPLE)
    data["quality_gate"].pop("champion")
    data["project"] = "churn-model"
    data["region"] = "ap-southeast-2"
    data["source"]["github"]["connection_arn"] = (
        "arn:aws:codestar-connections:ap-southeast-2:111122223333:connection/0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0"
    )
    data["training_data"] = {"s3_uri": "s3://shared-datasets/churn/v7/"}
    data["model"]["training"].update(spot=True, max_runtime_minutes=120, max_wait_minutes=240)
    data["environments"][1]["instance_type"] = "ml.m5d.xlarge"
    # An instance-based qa with a fixed count (the sample's is serverless).
    data["environments"][0] = {"name": "qa", "instance_type": "ml.m5.large", "initial_instance_count": 1}
    data["approval"]["emails"] = []
    data["notifications"] = {
        "subscribers": [
            {"protocol": "https", "endpoint": "https://hooks.example.com/ml/pipeline"},
            {"protocol": "sqs", "endpoint": "arn:aws:sqs:ap-southeast-2:111122223333:ml-events"},
        ]
    }
    data["tags"] = {}
    data["triggers"] = {
        "branches": ["main", "release/*"],
        "branches_excluded": ["release/old-*"],
        "paths": ["model/**", "pipeline.yml"],
        "schedule": "cron(0 3 ? * MON *)",
    }
    return data


def _three_environments() -> dict:
    """qa, then staging, then prod with an approval before it only; the training data a repo folder
    uploaded per commit (no data trigger, so no bucket notifications)."""
    data = copy.deepcopy(SAMPLE)
    data["training_data"] = {"local_dir": "model/data"}
    data["environments"] = [
        {"name": "qa"},
        {"name": "staging", "instance_type": "ml.c5.large"},
        {"name": "prod", "approval": True, "initial_instance_count": 2},
    ]
    return data


CONFIGS = {
    "sample": lambda: load_config(REPO / "pipeline.yml"),
    "variant": lambda: parse_config(_variant(), root=REPO),
    "three-environments": lambda: parse_config(_three_environments(), root=REPO),
}


@pytest.fixture(scope="module", params=sorted(CONFIGS))
def configured(request) -> tuple[PipelineConfig, dict[str, dict]]:
    config = CONFIGS[request.param]()
    return config, synthesize(config).templates


@pytest.fixture(scope="module")
def rendered(configured) -> dict[str, dict]:
    return configured[1]


@pytest.fixture(scope="module")
def sample() -> dict[str, dict]:
    return synthesize(load_config(REPO / "pipeline.yml")).templates


@pytest.fixture(scope="module")
def variant() -> dict[str, dict]:
    return synthesize(parse_config(_variant(), root=REPO)).templates


@pytest.fixture(scope="module")
def three() -> dict[str, dict]:
    return synthesize(parse_config(_three_environments(), root=REPO)).templates


def resources(template: dict, kind: str) -> dict[str, dict]:
    return {k: v for k, v in template["Resources"].items() if v["Type"] == kind}


def stages(template: dict) -> list[dict]:
    (pipeline,) = resources(template, "AWS::CodePipeline::Pipeline").values()
    return pipeline["Properties"]["Stages"]


def stage(template: dict, name: str) -> dict[str, dict]:
    """A stage's actions by name."""
    (found,) = [s for s in stages(template) if s["Name"] == name]
    return {a["Name"]: a for a in found["Actions"]}


def buildspec(template: dict, project_id: str) -> dict:
    """The buildspec a CodeBuild project of the template runs."""
    return yaml.safe_load(template["Resources"][project_id]["Properties"]["Source"]["BuildSpec"])


# ----- oracles --------------------------------------------------------------------------------


def test_every_environment_has_its_endpoint_template(configured):
    config, templates = configured
    assert sorted(templates) == sorted(["pipeline.json", *(f"endpoint-{env.name}.json" for env in config.environments)])


# cfn-lint over the other configs' templates: tests/test_lint_configs.py (a file of its own, so
# that make test's workers share the slow linting); the sample's, in every region: test_regions.py.


# The sample in make test; the other configs (~2 s of CPU each) in make test-heavy, which CI runs.
@pytest.mark.parametrize(
    "config_name",
    [name if name == "sample" else pytest.param(name, marks=pytest.mark.heavy) for name in sorted(CONFIGS)],
)
def test_cfripper_finds_nothing(config_name):
    for name, template in synthesize(CONFIGS[config_name]()).templates.items():
        assert cfripper_findings(template) == [], name


def _only(template: dict, *logical_ids: str) -> dict:
    """A copy of the template with only these resources: the scanners' guards run in a fraction
    of the time a whole pipeline template takes."""
    part = {key: copy.deepcopy(value) for key, value in template.items() if key != "Resources"}
    part["Resources"] = {rid: copy.deepcopy(template["Resources"][rid]) for rid in logical_ids}
    return part


def test_the_scanners_do_catch_a_bad_template(sample):
    """Guards the two tests above: a wildcard policy and a dangling Ref must be reported."""
    bad = _only(sample["pipeline.json"], "LintRole", "Pipeline")
    policy = bad["Resources"]["LintRole"]["Properties"]["Policies"][0]["PolicyDocument"]
    policy["Statement"].append({"Effect": "Allow", "Action": "*", "Resource": "*"})
    bad["Resources"]["Pipeline"]["Properties"]["RoleArn"] = {"Ref": "NoSuchRole"}
    assert any("LintRole" in f for f in cfripper_findings(bad))
    assert any("NoSuchRole" in f for f in cfn_lint_findings(bad, ["us-east-1"]))


def test_cfripper_suppressions_need_a_reason(sample):
    bad = _only(sample["pipeline.json"], "LintRole")
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
    variant = _variant()  # the user's own ARNs, passed through
    user_given = [variant["source"]["github"]["connection_arn"]]
    user_given += [s["endpoint"] for s in variant["notifications"]["subscribers"]]
    for template in rendered.values():
        text = json.dumps(template)
        for value in user_given:
            text = text.replace(value, "")
        assert "arn:aws:" not in text
        assert not re.search(r"arn:\$\{AWS::Partition\}:[a-z-]+:[a-z]{2}-[a-z]+-\d", text)


def test_wildcard_resources_are_only_where_iam_has_no_resource_arn(rendered):
    allowed = {
        "ecr:GetAuthorizationToken",
        "cloudwatch:PutMetricData",
        "cloudformation:ValidateTemplate",
        # The scaling resources' handlers (service authorization reference: no resource type).
        "application-autoscaling:DescribeScalableTargets",
        "application-autoscaling:DescribeScalingPolicies",
        "application-autoscaling:DescribeScheduledActions",
        "cloudwatch:GetMetricData",
        # The training cache lists the project's jobs (no resource type either).
        "sagemaker:ListTrainingJobs",
    }
    for logical_id, statement in _statements(rendered["pipeline.json"]):
        if logical_id == "ArtifactKey" or statement["Effect"] != "Allow" or statement["Resource"] != ["*"]:
            continue
        assert set(statement["Action"]) <= allowed, (logical_id, statement["Action"])


def test_one_role_per_stage_and_service(sample):
    t = sample["pipeline.json"]
    roles = {p["Properties"]["ServiceRole"]["Fn::GetAtt"][0] for p in resources(t, "AWS::CodeBuild::Project").values()}
    assert roles == {
        "LintRole",
        "TrainRole",
        "EndpointTestRole",
        "PrepareQaRole",
        "PrepareProdRole",
        "UpdatePipelineRole",
    }
    assert t["Resources"]["Pipeline"]["Properties"]["RoleArn"] == {"Fn::GetAtt": ["PipelineRole", "Arn"]}
    deploys = [a for s in stages(t) for a in s["Actions"] if a["ActionTypeId"]["Provider"] == "CloudFormation"]
    assert {json.dumps(a["Configuration"]["RoleArn"]) for a in deploys} == {
        json.dumps({"Fn::GetAtt": ["EndpointDeployRole", "Arn"]})
    }
    trusted = {
        k: v["Properties"]["AssumeRolePolicyDocument"]["Statement"][0]["Principal"]["Service"]
        for k, v in resources(t, "AWS::IAM::Role").items()
    }
    assert trusted == {
        "PipelineStartRole": "events.amazonaws.com",
        "LintRole": "codebuild.amazonaws.com",
        "TrainRole": "codebuild.amazonaws.com",
        "EndpointTestRole": "codebuild.amazonaws.com",
        "PrepareQaRole": "codebuild.amazonaws.com",
        "PrepareProdRole": "codebuild.amazonaws.com",
        "UpdatePipelineRole": "codebuild.amazonaws.com",
        "PipelineRole": "codepipeline.amazonaws.com",
        "EndpointDeployRole": "cloudformation.amazonaws.com",
        "SageMakerExecutionRole": "sagemaker.amazonaws.com",
    }


def test_the_lint_role_can_touch_only_artifacts_its_logs_and_its_reports(sample):
    granted = {a for lid, s in _statements(sample["pipeline.json"]) if lid == "LintRole" for a in s["Action"]}
    assert {a.split(":")[0] for a in granted} == {"s3", "kms", "logs", "codebuild"}


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


def test_stages_run_in_order(configured):
    config, templates = configured
    expected = ["Source", "UpdatePipeline", "Build"]
    for env in config.environments:
        expected += [f"Approve{env.name.capitalize()}"] * env.approval + [env.name.capitalize()]
    assert [s["Name"] for s in stages(templates["pipeline.json"])] == expected


def _layout(template: dict) -> list[tuple[str, list[tuple[str, int, str]]]]:
    return [
        (s["Name"], [(a["Name"], a["RunOrder"], a["ActionTypeId"]["Provider"]) for a in s["Actions"]])
        for s in stages(template)
    ]


DEPLOY_AND_TEST = [
    ("PrepareStack", 1, "CodeBuild"),
    ("DeployEndpoint", 2, "CloudFormation"),
    ("EndpointTest", 3, "CodeBuild"),
]


def test_actions_and_run_orders(sample):
    assert _layout(sample["pipeline.json"]) == [
        ("Source", [("GitHub", 1, "CodeStarSourceConnection")]),
        ("UpdatePipeline", [("SelfUpdate", 1, "CodeBuild")]),
        ("Build", [("Lint", 1, "CodeBuild"), ("Train", 1, "CodeBuild")]),
        ("Qa", DEPLOY_AND_TEST),
        ("ApproveProd", [("Approve", 1, "Manual")]),
        ("Prod", DEPLOY_AND_TEST),
    ]


def test_three_environments_deploy_and_test_in_order_with_an_approval_before_prod_only(three):
    """A third environment is a config change: its own deploy/test pair, stack, template, namespace."""
    template = three["pipeline.json"]
    assert _layout(template)[3:] == [
        ("Qa", DEPLOY_AND_TEST),
        ("Staging", DEPLOY_AND_TEST),
        ("ApproveProd", [("Approve", 1, "Manual")]),
        ("Prod", DEPLOY_AND_TEST),
    ]
    envs = {"Qa": "qa", "Staging": "staging", "Prod": "prod"}
    for stage_name, env in envs.items():
        deploy, test = stage(template, stage_name)["DeployEndpoint"], stage(template, stage_name)["EndpointTest"]
        assert deploy["Configuration"]["StackName"] == f"iris-classifier-endpoint-{env}"
        assert deploy["Configuration"]["TemplatePath"] == f"LintOutput::endpoint-{env}.json"
        deployed = f"#{{{stage_name}DeployEndpointVariables"
        assert deploy["Namespace"] == deployed[2:]
        assert json.loads(test["Configuration"]["EnvironmentVariables"]) == [
            {"name": "ENDPOINT_ENV", "value": env, "type": "PLAINTEXT"},
            # What the test checks the endpoint serves: this stage's deploy, this run's training job.
            {"name": "DEPLOYED_ENDPOINT_CONFIG", "value": deployed + ".EndpointConfigName}", "type": "PLAINTEXT"},
            {"name": "DEPLOYED_MODEL_NAME", "value": deployed + ".ModelName}", "type": "PLAINTEXT"},
            {"name": "DEPLOYED_MODEL_VERSION", "value": deployed + ".ModelVersion}", "type": "PLAINTEXT"},
            {"name": "TRAINED_MODEL_VERSION", "value": "#{TrainVariables.TRAINING_JOB_NAME}", "type": "PLAINTEXT"},
            # Only the last environment's test approves the registry version it deployed and tested.
            *(
                [
                    {
                        "name": "APPROVE_MODEL_PACKAGE_ARN",
                        "value": "#{TrainVariables.MODEL_PACKAGE_ARN}",
                        "type": "PLAINTEXT",
                    }
                ]
                if env == "prod"
                else []
            ),
        ]
        assert test["Namespace"] == f"{stage_name}EndpointTestVariables"
    # The approval before prod reports on the environment tested just before it.
    approval = stage(template, "ApproveProd")["Approve"]["Configuration"]
    assert "staging endpoint tests: #{StagingEndpointTestVariables.TEST_SUMMARY}" in custom_data_text(approval)
    staging = three["endpoint-staging.json"]["Resources"]
    assert staging["Endpoint"]["Properties"]["EndpointName"] == "iris-classifier-staging"
    assert staging["EndpointConfig"]["Properties"]["ProductionVariants"][0]["InstanceType"] == "ml.c5.large"
    # The test role may invoke exactly these three endpoints.
    (invoke,) = [
        s for lid, s in _statements(template) if lid == "EndpointTestRole" and "sagemaker:InvokeEndpoint" in s["Action"]
    ]
    assert [r["Fn::Sub"].rsplit("/", 1)[1] for r in invoke["Resource"]] == [
        "iris-classifier-qa",
        "iris-classifier-staging",
        "iris-classifier-prod",
    ]


def test_an_approval_before_the_first_environment_links_the_training_job():
    data = copy.deepcopy(SAMPLE)
    data["environments"] = [{"name": "prod", "approval": True}]
    template = synthesize(parse_config(data, root=REPO)).templates["pipeline.json"]
    assert [s["Name"] for s in stages(template)] == ["Source", "UpdatePipeline", "Build", "ApproveProd", "Prod"]
    approval = stage(template, "ApproveProd")["Approve"]["Configuration"]
    assert "endpoint tests" not in custom_data_text(approval)
    assert approval["ExternalEntityLink"]["Fn::Sub"].endswith("#/jobs/#{TrainVariables.TRAINING_JOB_NAME}")


class _WithScan(PipelineStack):
    """A fork's pipeline with one more build step: the whole change is this property."""

    @cached_property
    def scan_step(self) -> BuildStep:
        return BuildStep(
            name="model-scan",
            description="Model scan: check the model card",
            commands=("make test",),
            statements=(allow([awacs.sagemaker.DescribeModel], arn("sagemaker", "model/*")),),
            exports=("SCAN_RESULT",),
            timeout_minutes=15,
        )

    @property
    def build_steps(self) -> tuple[BuildStep, ...]:
        return (*super().build_steps, self.scan_step)


def test_a_build_step_added_in_one_place_gets_its_project_role_log_group_and_action():
    template = _WithScan(load_config(REPO / "pipeline.yml")).build().to_dict()
    res = template["Resources"]
    project = res["ModelScanProject"]["Properties"]
    assert project["Name"] == "iris-classifier-model-scan"
    assert project["TimeoutInMinutes"] == 15
    assert project["ServiceRole"] == {"Fn::GetAtt": ["ModelScanRole", "Arn"]}
    assert project["LogsConfig"]["CloudWatchLogs"]["GroupName"] == {"Ref": "ModelScanLogs"}
    assert res["ModelScanLogs"]["Properties"]["LogGroupName"] == "/aws/codebuild/iris-classifier-model-scan"
    assert buildspec(template, "ModelScanProject")["env"]["exported-variables"] == ["SCAN_RESULT"]
    granted = [s for s in res["ModelScanRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]]
    assert any(s["Action"] == ["sagemaker:DescribeModel"] for s in granted)
    assert any(s["Action"] == ["logs:CreateLogStream", "logs:PutLogEvents"] for s in granted)
    action = stage(template, "Build")["ModelScan"]
    assert action["Configuration"]["ProjectName"] == {"Ref": "ModelScanProject"}
    assert action["Namespace"] == "ModelScanVariables"
    # The pipeline may start it, and the whole template still passes AWS's schemas.
    (start,) = [
        s for lid, s in _statements(template) if lid == "PipelineRole" and "codebuild:StartBuild" in s["Action"]
    ]
    assert {"Fn::GetAtt": ["ModelScanProject", "Arn"]} in start["Resource"]
    assert cfn_lint_findings(template, ["us-east-1"]) == []


def test_a_variable_is_asked_of_the_step_that_exports_it():
    stack = PipelineStack(load_config(REPO / "pipeline.yml"))
    train = stack.build_actions["train"]
    assert train.variable("METRIC_VALUE") == "#{TrainVariables.METRIC_VALUE}"
    with pytest.raises(ValueError, match="emits no variable ACCURACY"):
        train.variable("ACCURACY")


def test_a_target_in_another_account_or_region_runs_its_action_there():
    target = DeploymentTarget(
        environment="prod",
        stack_name="p-endpoint-prod",
        template_path="LintOutput::endpoint-prod.json",
        template_configuration="TrainOutput::endpoint-parameters-prod.json",
        parameters={"ExecutionRoleArn": "arn:aws:iam::444455556666:role/p-prod-sagemaker"},
        execution_role_arn="arn:aws:iam::444455556666:role/p-prod-deploy",
        inputs=("LintOutput", "TrainOutput"),
        region="eu-west-1",
        action_role_arn="arn:aws:iam::444455556666:role/p-prod-pipeline",
    )
    (rendered_stage,) = render_stages([Stage("Prod", (target.action("DeployEndpoint"),))])
    action = rendered_stage.to_dict()["Actions"][0]
    assert action["Region"] == "eu-west-1"
    assert action["RoleArn"] == "arn:aws:iam::444455556666:role/p-prod-pipeline"
    assert action["Configuration"]["RoleArn"] == "arn:aws:iam::444455556666:role/p-prod-deploy"
    assert json.loads(action["Configuration"]["ParameterOverrides"]) == {
        "ExecutionRoleArn": "arn:aws:iam::444455556666:role/p-prod-sagemaker"
    }


def test_action_and_stage_names_are_checked_against_codepipelines_rules():
    with pytest.raises(ValueError, match="not one CodePipeline accepts"):
        Action(name="Deploy endpoint", kind="deploy", configuration={})
    with pytest.raises(ValueError, match="exports variables but has no namespace"):
        Action(name="Scan", kind="build", configuration={}, exports=("X",))


def test_every_input_artifact_is_produced_earlier(rendered):
    produced: set[str] = set()
    for s in stages(rendered["pipeline.json"]):
        for order in sorted({a["RunOrder"] for a in s["Actions"]}):
            batch = [a for a in s["Actions"] if a["RunOrder"] == order]
            for action in batch:
                for artifact in action.get("InputArtifacts", []):
                    assert artifact["Name"] in produced, (action["Name"], artifact["Name"])
            produced |= {o["Name"] for a in batch for o in a.get("OutputArtifacts", [])}


def test_every_variable_is_emitted_by_an_earlier_action(rendered):
    """#{Namespace.VAR} must name the namespace of an earlier action (an earlier stage, or a lower
    run order in the same stage); for CodeBuild actions a variable its buildspec exports, for
    CloudFormation actions an output of the stack's template."""
    template = rendered["pipeline.json"]
    (pipeline,) = [r for r in template["Resources"].values() if r["Type"] == "AWS::CodePipeline::Pipeline"]
    namespaces: dict[str, set[str] | None] = {"variables": {v["Name"] for v in pipeline["Properties"]["Variables"]}}
    for s in stages(template):
        for order in sorted({a.get("RunOrder", 1) for a in s["Actions"]}):
            batch = [a for a in s["Actions"] if a.get("RunOrder", 1) == order]
            for action in batch:
                text = json.dumps(action["Configuration"])
                for namespace, variable in re.findall(r"#\{(\w+)\.(\w+)\}", text):
                    assert namespace in namespaces, (action["Name"], namespace)
                    if namespaces[namespace] is not None:
                        assert variable in namespaces[namespace], (namespace, variable)
            for action in batch:
                if "Namespace" not in action:
                    continue
                provider = action["ActionTypeId"]["Provider"]
                if provider == "CodeBuild":
                    spec = buildspec(template, action["Configuration"]["ProjectName"]["Ref"])
                    namespaces[action["Namespace"]] = set(spec.get("env", {}).get("exported-variables", []))
                elif provider == "CloudFormation":
                    stack_template = rendered[action["Configuration"]["TemplatePath"].split("::")[1]]
                    namespaces[action["Namespace"]] = set(stack_template["Outputs"])
                else:
                    namespaces[action["Namespace"]] = None  # the source action's variables are AWS's own


def test_run_reason_is_a_pipeline_variable_the_train_action_and_approval_read(sample):
    """A manual start can say why (RunReason); Train gets it as RUN_REASON, the approval shows it."""
    template = sample["pipeline.json"]
    (pipeline,) = [r for r in template["Resources"].values() if r["Type"] == "AWS::CodePipeline::Pipeline"]
    assert pipeline["Properties"]["PipelineType"] == "V2"
    (variable,) = pipeline["Properties"]["Variables"]
    assert variable["Name"] == "RunReason" and variable["DefaultValue"] == "automatic"
    assert "by hand" in variable["Description"]
    (train,) = [a for s in stages(template) for a in s["Actions"] if a["Name"] == "Train"]
    env = {v["name"]: v["value"] for v in json.loads(train["Configuration"]["EnvironmentVariables"])}
    assert env["RUN_REASON"] == "#{variables.RunReason}"
    approval = stage(template, "ApproveProd")["Approve"]["Configuration"]
    assert "Run reason: #{variables.RunReason}." in custom_data_text(approval)
    # The data the model trained on: Train exports it (scripts/train.py tags the job with it too).
    assert "Data version: #{TrainVariables.DATA_VERSION}." in custom_data_text(approval)


def test_pipeline_variables_keep_codepipelines_limits():
    with pytest.raises(ValueError, match="pipeline variable name 'run reason'"):
        PipelineVariable("run reason", "x", "")
    with pytest.raises(ValueError, match="default 1-1000"):
        PipelineVariable("Reason", "", "")


def test_approval_comes_before_production_and_carries_run_values(sample):
    names = [s["Name"] for s in stages(sample["pipeline.json"])]
    assert names.index("ApproveProd") == names.index("Prod") - 1
    approval = stage(sample["pipeline.json"], "ApproveProd")["Approve"]["Configuration"]
    assert "#{TrainVariables.METRIC_VALUE}" in custom_data_text(approval)
    assert "qa endpoint tests: #{QaEndpointTestVariables.TEST_SUMMARY}" in custom_data_text(approval)
    link = approval["ExternalEntityLink"]["Fn::Sub"][0]
    assert link.startswith("https://${AWS::Region}.console.aws.amazon.com/codesuite/codebuild/")
    assert "/build/#{QaEndpointTestVariables.TEST_BUILD_ID}/reports" in link
    assert approval["NotificationArn"] == {"Ref": "ApprovalTopic"}


def custom_data_text(approval: dict) -> str:
    """An approval's CustomData as text, its Subs' text in place (their ${} left as they are)."""
    parts = approval["CustomData"]["Fn::Join"][1]
    return "".join(p if isinstance(p, str) else p["Fn::Sub"][0] for p in parts)


def test_every_approval_links_the_lint_reports(rendered):
    template = rendered["pipeline.json"]
    approvals = [a for s in stages(template) for a in s["Actions"] if a["ActionTypeId"]["Category"] == "Approval"]
    assert approvals
    for approval in approvals:
        (link,) = [p for p in approval["Configuration"]["CustomData"]["Fn::Join"][1] if isinstance(p, dict)]
        text, values = link["Fn::Sub"]
        assert text == (
            "https://${AWS::Region}.console.aws.amazon.com/codesuite/codebuild/${AWS::AccountId}/projects/"
            "${Project}/build/#{LintVariables.LINT_BUILD_ID}/reports?region=${AWS::Region}"
        )
        assert values == {"Project": {"Ref": "LintProject"}}
        assert custom_data_text(approval["Configuration"]).startswith("Lint reports: https://")


def test_the_lint_action_exports_the_build_id_its_reports_are_found_by(sample):
    spec = buildspec(sample["pipeline.json"], "LintProject")
    assert spec["env"]["exported-variables"] == ["LINT_BUILD_ID"]
    assert spec["phases"]["build"]["commands"] == ["make ci-lint", ". build/lint-exports.env"]


def test_deploy_actions_update_stable_stacks_with_train_parameters(sample):
    for stage_name, env in (("Qa", "qa"), ("Prod", "prod")):
        deploy = stage(sample["pipeline.json"], stage_name)["DeployEndpoint"]
        config = deploy["Configuration"]
        assert config["ActionMode"] == "CREATE_UPDATE"
        assert config["StackName"] == f"iris-classifier-endpoint-{env}"
        assert config["TemplatePath"] == f"LintOutput::endpoint-{env}.json"
        assert config["TemplateConfiguration"] == f"TrainOutput::endpoint-parameters-{env}.json"
        assert config["RoleArn"] == {"Fn::GetAtt": ["EndpointDeployRole", "Arn"]}
        assert "Region" not in deploy and "RoleArn" not in deploy  # same account and region


def _environment_stages(template: dict) -> list[dict[str, dict]]:
    """The actions (by name) of every stage that deploys an endpoint stack."""
    found = [stage(template, s["Name"]) for s in stages(template)]
    return [actions for actions in found if "DeployEndpoint" in actions]


def test_every_endpoint_deploy_is_create_update_never_a_mode_that_deletes_a_stack(rendered):
    """REPLACE_ON_FAILURE would delete a stack in UPDATE_ROLLBACK_FAILED or DELETE_FAILED (a live
    endpoint may be behind it); DELETE_ONLY deletes outright. Recovery is PrepareStack's job."""
    deploys = [
        a for s in stages(rendered["pipeline.json"]) for a in s["Actions"] if a["ActionTypeId"]["Category"] == "Deploy"
    ]
    assert deploys and {a["ActionTypeId"]["Provider"] for a in deploys} == {"CloudFormation"}
    assert {a["Configuration"]["ActionMode"] for a in deploys} == {"CREATE_UPDATE"}


def test_each_environment_readies_its_own_stack_before_deploying_it(configured):
    config, templates = configured
    template = templates["pipeline.json"]
    environments = _environment_stages(template)
    assert len(environments) == len(config.environments)
    for env, actions in zip(config.environments, environments, strict=True):
        prepare, deploy = actions["PrepareStack"], actions["DeployEndpoint"]
        assert prepare["RunOrder"] < deploy["RunOrder"]
        assert min(a["RunOrder"] for a in actions.values()) == prepare["RunOrder"]
        project = template["Resources"][prepare["Configuration"]["ProjectName"]["Ref"]]["Properties"]
        variables = {v["Name"]: v["Value"] for v in project["Environment"]["EnvironmentVariables"]}
        assert variables == {"ENDPOINT_ENV": env.name, "ENDPOINT_STACK": deploy["Configuration"]["StackName"]}
        assert buildspec(template, prepare["Configuration"]["ProjectName"]["Ref"])["phases"]["build"]["commands"] == [
            "make prepare-stack"
        ]


def test_a_prepare_role_may_delete_only_its_own_environments_stack_and_passes_no_role(three):
    template = three["pipeline.json"]
    stack_arn = "arn:${AWS::Partition}:cloudformation:${AWS::Region}:${AWS::AccountId}:stack/iris-classifier-endpoint-"
    for env in ("qa", "staging", "prod"):
        granted = [s for lid, s in _statements(template) if lid == f"Prepare{env.capitalize()}Role"]
        (stack_statement,) = [s for s in granted if any(a.startswith("cloudformation:") for a in s["Action"])]
        assert sorted(stack_statement["Action"]) == [
            "cloudformation:DeleteStack",
            "cloudformation:DescribeStackEvents",
            "cloudformation:DescribeStacks",
            "cloudformation:GetTemplate",
            "cloudformation:ListStackResources",
        ]
        assert stack_statement["Resource"] == [{"Fn::Sub": f"{stack_arn}{env}/*"}]
        services = {a.split(":")[0] for s in granted for a in s["Action"]}
        # Instance-based environments may deregister their variant's scalable target (pipeline.capacity).
        assert services == {"s3", "kms", "logs", "cloudformation", "application-autoscaling"}
    # Nothing else in the pipeline stack may delete a stack.
    deleters = {lid for lid, s in _statements(template) if "cloudformation:DeleteStack" in s.get("Action", [])}
    assert deleters == {"PrepareQaRole", "PrepareStagingRole", "PrepareProdRole"}


def test_a_failed_first_create_leaves_nothing_orphaned(rendered):
    """RetainExceptOnCreate keeps a resource on delete and replacement, and deletes it when the
    create that made it rolls back. No resource of any template is plainly Retain."""
    for name, template in rendered.items():
        for logical_id, resource in template["Resources"].items():
            assert resource.get("DeletionPolicy", "Delete") in ("Delete", "RetainExceptOnCreate"), (name, logical_id)
    pipeline = rendered["pipeline.json"]["Resources"]
    for logical_id in ("ArtifactKey", "ArtifactBucket", "ModelBucket"):
        policies = (pipeline[logical_id]["DeletionPolicy"], pipeline[logical_id]["UpdateReplacePolicy"])
        assert policies == ("RetainExceptOnCreate", "Retain"), logical_id


def _overrides(deploy: dict) -> set[str]:
    overrides = deploy["Configuration"]["ParameterOverrides"]
    return set(json.loads(overrides["Fn::Sub"][0] if isinstance(overrides, dict) else overrides))


def test_endpoint_parameters_are_all_supplied(rendered):
    """Every endpoint parameter comes from its deploy action or from the train step, once."""
    environments = _environment_stages(rendered["pipeline.json"])
    assert environments
    for actions in environments:
        deploy = actions["DeployEndpoint"]
        params = rendered[deploy["Configuration"]["TemplatePath"].split("::")[1]]["Parameters"]
        from_pipeline = _overrides(deploy)
        assert set(params) == from_pipeline | set(RUN_PARAMETERS), deploy["Configuration"]["StackName"]
        assert not from_pipeline & set(RUN_PARAMETERS)


def test_buildspecs_call_make_targets_that_exist(rendered):
    targets = set(re.findall(r"^([a-z-]+):", (REPO / "Makefile").read_text(), re.M))
    template = rendered["pipeline.json"]
    for logical_id, project in resources(template, "AWS::CodeBuild::Project").items():
        commands = buildspec(template, logical_id)["phases"]["build"]["commands"]
        called = [c.split()[1] for c in commands if c.startswith("make ")]
        assert called and set(called) <= targets, (logical_id, commands)
        assert project["Properties"]["Environment"]["Image"].startswith("aws/codebuild/standard:")
        assert project["Properties"]["LogsConfig"]["CloudWatchLogs"]["Status"] == "ENABLED"


def test_the_train_step_hands_on_the_parameters_file_the_deploys_read(sample):
    spec = buildspec(sample["pipeline.json"], "TrainProject")
    assert spec["artifacts"]["files"] == [
        "build/train/endpoint-parameters-qa.json",
        "build/train/endpoint-parameters-prod.json",
    ]
    assert spec["env"]["exported-variables"] == [
        "METRIC_NAME",
        "METRIC_VALUE",
        "TRAINING_JOB_NAME",
        "MODEL_DATA_URL",
        "DATA_VERSION",
        "MODEL_ORIGIN",
        "MODEL_PACKAGE_ARN",
        "MODEL_PACKAGE_VERSION",
        "CHAMPION_VALUE",
        "CHAMPION_ENV",
    ]


def _role_statements(template: dict, role_id: str) -> list[dict]:
    return [statement for logical_id, statement in _statements(template) if logical_id == role_id]


def test_the_champion_gate_reads_only_its_environments_stack_and_shows_both_numbers(sample, variant):
    template = sample["pipeline.json"]
    reads = [s for s in _role_statements(template, "TrainRole") if "cloudformation:DescribeStacks" in s["Action"]]
    assert reads == [
        {
            "Action": ["cloudformation:DescribeStacks"],
            "Effect": "Allow",
            "Resource": [
                {
                    "Fn::Sub": "arn:${AWS::Partition}:cloudformation:${AWS::Region}:${AWS::AccountId}:"
                    "stack/iris-classifier-endpoint-prod/*"
                }
            ],
        }
    ]
    approval = stage(template, "ApproveProd")["Approve"]["Configuration"]
    assert (
        "Model #{TrainVariables.TRAINING_JOB_NAME} (#{TrainVariables.MODEL_ORIGIN}, registry version "
        "#{TrainVariables.MODEL_PACKAGE_VERSION}): challenger "
        "#{TrainVariables.METRIC_NAME} "
        "#{TrainVariables.METRIC_VALUE} vs champion #{TrainVariables.CHAMPION_VALUE} (#{TrainVariables.CHAMPION_ENV})."
    ) in custom_data_text(approval)
    # Without a champion block: no stack read, no champion variables, none referred to.
    plain = variant["pipeline.json"]
    assert not [s for s in _role_statements(plain, "TrainRole") if "cloudformation:DescribeStacks" in s["Action"]]
    assert "CHAMPION" not in json.dumps(plain)


def _report_groups(template: dict) -> dict[str, str]:
    """Report group name -> logical ID."""
    return {r["Properties"]["Name"]: lid for lid, r in resources(template, "AWS::CodeBuild::ReportGroup").items()}


@pytest.mark.parametrize(
    ("project_id", "reports"),
    [
        ("EndpointTestProject", {"endpoint-tests": "EndpointTestReports"}),
        (
            "LintProject",
            {
                "cfn-nag": "LintCfnNagReports",
                "scan": "LintScanReports",
                "local-endpoint-tests": "LintLocalReports",
                "unit-tests": "LintUnitTestsReports",
            },
        ),
    ],
)
def test_each_buildspec_report_lands_in_its_own_report_group(sample, project_id, reports):
    """A buildspec `reports:` entry R of project P goes to report group P-R; each is JUnit from build/reports."""
    template = sample["pipeline.json"]
    spec = buildspec(template, project_id)
    project = template["Resources"][project_id]["Properties"]
    groups = _report_groups(template)
    assert {name: groups[f"{project['Name']}-{name}"] for name in spec["reports"]} == reports
    for name, report in spec["reports"].items():
        assert report == {"files": [f"build/reports/{name}.xml"], "file-format": "JUNITXML"}


def test_make_ci_lint_writes_every_report_the_lint_buildspec_lists(sample):
    """The Lint buildspec runs `make ci-lint`; its recipe writes each report under $(REPORTS)."""
    makefile = Path("Makefile").read_text()
    assert re.search(r"^REPORTS \?= build/reports$", makefile, re.M)
    recipe = re.search(r"^ci-lint:.*\n((?:\t.*\n)+)", makefile, re.M)
    assert recipe
    spec = buildspec(sample["pipeline.json"], "LintProject")
    assert spec["phases"]["build"]["commands"][0] == "make ci-lint"
    for report in spec["reports"].values():
        (path,) = report["files"]
        assert path.replace("build/reports/", "$(REPORTS)/") in recipe.group(1), path
    # Every check runs even when one before it failed, and any failure fails the target.
    assert recipe.group(1).count("|| FAILED=1") == 5 and "exit $$FAILED" in recipe.group(1)


def test_a_step_publishes_reports_only_to_its_own_report_groups(sample):
    template = sample["pipeline.json"]
    report_actions = {"codebuild:CreateReport", "codebuild:UpdateReport", "codebuild:BatchPutTestCases"}
    by_role: dict[str, list] = {}
    for lid, statement in _statements(template):
        if report_actions & set(statement["Action"]):
            assert set(statement["Action"]) == report_actions
            by_role.setdefault(lid, []).extend(statement["Resource"])
    assert by_role == {
        "LintRole": [
            {"Fn::GetAtt": [g, "Arn"]}
            for g in ("LintCfnNagReports", "LintScanReports", "LintLocalReports", "LintUnitTestsReports")
        ],
        "EndpointTestRole": [{"Fn::GetAtt": ["EndpointTestReports", "Arn"]}],
    }


def test_two_reports_of_one_step_cannot_share_a_group():
    from pipeline.steps import Report, StepContext, render_step

    stack = PipelineStack(load_config("pipeline.yml"))
    ctx = StepContext(stack.names, stack.key_arn, stack.tags, (), ())
    twice = BuildStep("x", "x", ("true",), reports=(Report("a", ("a.xml",)), Report("a", ("b.xml",))))
    with pytest.raises(ValueError, match="step x has two reports of the same name or id"):
        render_step(twice, ctx)


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
        assert (bucket["DeletionPolicy"], bucket["UpdateReplacePolicy"]) == ("RetainExceptOnCreate", "Retain")
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
    source = stage(variant["pipeline.json"], "Source")["GitHub"]["Configuration"]
    assert source["ConnectionArn"] == _variant()["source"]["github"]["connection_arn"]
    assert source["FullRepositoryId"] == "your-github-org/sagemaker-cd"
    assert source["BranchName"] == "main"


# ----- the endpoint stacks -----------------------------------------------------------------------


def test_endpoint_has_a_stable_name_and_replaceable_model(sample):
    t = sample["endpoint-prod.json"]["Resources"]
    assert t["Endpoint"]["Properties"]["EndpointName"] == "iris-classifier-prod"
    assert "ModelName" not in t["Model"]["Properties"]
    assert "EndpointConfigName" not in t["EndpointConfig"]["Properties"]
    env = t["Model"]["Properties"]["PrimaryContainer"]["Environment"]
    assert env["SAGEMAKER_PROGRAM"] == "inference.py"
    assert env["SAGEMAKER_SUBMIT_DIRECTORY"] == {"Ref": "SourceDir"}


def test_each_environments_capacity_is_in_its_own_template(sample):
    variants = {
        env: sample[f"endpoint-{env}.json"]["Resources"]["EndpointConfig"]["Properties"]["ProductionVariants"][0]
        for env in ("qa", "prod")
    }
    assert variants["qa"]["ServerlessConfig"] == {"MemorySizeInMB": 2048, "MaxConcurrency": 5}
    assert not {"InstanceType", "InitialInstanceCount"} & set(variants["qa"])
    assert (variants["prod"]["InstanceType"], variants["prod"]["InitialInstanceCount"]) == ("ml.m5.large", 2)
    assert "ServerlessConfig" not in variants["prod"]


def _scaling(template: dict) -> dict[str, dict]:
    return {k: r for k, r in template["Resources"].items() if r["Type"].startswith("AWS::ApplicationAutoScaling::")}


def test_a_serverless_environment_has_no_volume_key_autoscaling_or_retained_properties(sample):
    qa = sample["endpoint-qa.json"]
    assert "KmsKeyId" not in qa["Resources"]["EndpointConfig"]["Properties"]
    assert "KmsKeyArn" not in qa["Parameters"]
    assert _overrides(stage(sample["pipeline.json"], "Qa")["DeployEndpoint"]) == {"ExecutionRoleArn"}
    skipped = qa["Resources"]["EndpointConfig"]["Metadata"]["checkov"]["skip"]
    assert [rule["id"] for rule in skipped] == ["CKV_AWS_98"]
    assert not _scaling(qa)
    assert "RetainAllVariantProperties" not in qa["Resources"]["Endpoint"]["Properties"]


def test_an_autoscaled_variant_has_a_target_and_a_policy_named_after_its_instance_type(sample):
    prod = sample["endpoint-prod.json"]
    suffix = instance_type_suffix("ml.m5.large")
    assert set(_scaling(prod)) == {f"ScalableTarget{suffix}", f"ScalingPolicy{suffix}"}
    target = prod["Resources"][f"ScalableTarget{suffix}"]
    assert target["Properties"] == {
        "ServiceNamespace": "sagemaker",
        "ScalableDimension": "sagemaker:variant:DesiredInstanceCount",
        "ResourceId": {
            "Fn::Sub": [
                "endpoint/${EndpointName}/variant/AllTraffic",
                {"EndpointName": {"Fn::GetAtt": ["Endpoint", "EndpointName"]}},
            ]
        },
        "MinCapacity": 2,
        "MaxCapacity": 4,
        # The environment's tags, which PrepareQa/ProdRole's deregistration is conditioned on.
        "Tags": [
            {"Key": "sagemaker-cd:environment", "Value": "prod"},
            {"Key": "sagemaker-cd:project", "Value": "iris-classifier"},
            {"Key": "team", "Value": "ml-platform"},
        ],
    }  # no RoleARN: the service-linked role
    policy = prod["Resources"][f"ScalingPolicy{suffix}"]
    assert policy["Properties"]["ScalingTargetId"] == {"Ref": f"ScalableTarget{suffix}"}
    tracking = policy["Properties"]["TargetTrackingScalingPolicyConfiguration"]
    assert tracking == {
        "PredefinedMetricSpecification": {"PredefinedMetricType": "SageMakerVariantInvocationsPerInstance"},
        "TargetValue": 70.0,
        "ScaleInCooldown": 300,
        "ScaleOutCooldown": 60,
    }
    for resource in (target, policy):  # the old ID's cleanup must not deregister the new registration
        assert (resource["DeletionPolicy"], resource["UpdateReplacePolicy"]) == ("RetainExceptOnCreate", "Retain")
    endpoint = prod["Resources"]["Endpoint"]["Properties"]
    assert endpoint["RetainAllVariantProperties"] is True
    assert endpoint["ExcludeRetainedVariantProperties"] == [{"VariantPropertyType": "DataCaptureConfig"}]


def test_another_instance_type_gives_the_scaling_resources_other_logical_ids(sample, variant):
    ids = {name: set(_scaling(rendered["endpoint-prod.json"])) for name, rendered in (("m5", sample), ("m5d", variant))}
    assert ids["m5"].isdisjoint(ids["m5d"])
    assert {i for i in ids["m5d"] if i.endswith(instance_type_suffix("ml.m5d.xlarge"))} == ids["m5d"]


def test_an_environment_without_autoscaling_gets_none(variant):
    qa = variant["endpoint-qa.json"]
    assert not _scaling(qa)
    assert "RetainAllVariantProperties" not in qa["Resources"]["Endpoint"]["Properties"]


def test_endpoint_stacks_carry_the_project_and_environment_tags(rendered):
    for name, template in rendered.items():
        if not name.startswith("endpoint-"):
            continue
        env = name.removeprefix("endpoint-").removesuffix(".json")
        for logical_id in ("Model", "EndpointConfig", "Endpoint"):
            tags = {t["Key"]: t["Value"] for t in template["Resources"][logical_id]["Properties"]["Tags"]}
            assert tags["sagemaker-cd:environment"] == env, (name, logical_id)
            assert tags["sagemaker-cd:project"] in ("iris-classifier", "churn-model")
            assert tags["sagemaker-cd:model-version"] == {"Ref": "ModelVersion"}


def test_instance_storage_hosts_get_no_volume_key_and_the_pipeline_passes_none(variant):
    """SageMaker refuses a volume KMS key on instance types with local NVMe storage (prod: ml.m5d)."""
    qa, prod = variant["endpoint-qa.json"], variant["endpoint-prod.json"]
    assert qa["Resources"]["EndpointConfig"]["Properties"]["KmsKeyId"] == {"Ref": "KmsKeyArn"}
    assert "KmsKeyId" not in prod["Resources"]["EndpointConfig"]["Properties"]
    # The key still comes in for the data prod captures (on by default with approval), not for the volume.
    assert prod["Resources"]["EndpointConfig"]["Properties"]["DataCaptureConfig"]["KmsKeyId"] == {"Ref": "KmsKeyArn"}
    assert _overrides(stage(variant["pipeline.json"], "Prod")["DeployEndpoint"]) == {
        "ExecutionRoleArn",
        "KmsKeyArn",
        "DataCaptureS3Uri",
    }
    assert _overrides(stage(variant["pipeline.json"], "Qa")["DeployEndpoint"]) == {"ExecutionRoleArn", "KmsKeyArn"}


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
    "endpoint-qa.json": {"Endpoint": "AWS::SageMaker::Endpoint"},
    "endpoint-prod.json": {"Endpoint": "AWS::SageMaker::Endpoint"},
}


def _push_filter(template: dict) -> dict:
    (pipeline,) = resources(template, "AWS::CodePipeline::Pipeline").values()
    (trigger,) = pipeline["Properties"]["Triggers"]
    assert trigger["ProviderType"] == "CodeStarSourceConnection"
    git = trigger["GitConfiguration"]
    (source,) = stage(template, "Source")
    assert git["SourceActionName"] == source
    (push,) = git["Push"]
    return push


def test_pushes_to_the_branch_run_the_pipeline_unless_they_change_only_docs(sample):
    assert _push_filter(sample["pipeline.json"]) == {
        "Branches": {"Includes": [SAMPLE["source"]["github"]["branch"]]},
        "FilePaths": {"Excludes": ["**/*.md", "docs/**"]},
    }


def test_push_filters_come_from_the_config(variant):
    assert _push_filter(variant["pipeline.json"]) == {
        "Branches": {"Includes": ["main", "release/*"], "Excludes": ["release/old-*"]},
        "FilePaths": {"Includes": ["model/**", "pipeline.yml"], "Excludes": ["**/*.md", "docs/**"]},
    }


def test_no_path_filter_when_every_path_runs_the_pipeline():
    data = copy.deepcopy(SAMPLE)
    data["triggers"] = {"paths_excluded": []}
    template = PipelineStack(parse_config(data, root=REPO)).build().to_dict()
    assert _push_filter(template) == {"Branches": {"Includes": [SAMPLE["source"]["github"]["branch"]]}}


def _starts_this_pipeline(template: dict, rule: dict) -> None:
    (target,) = rule["Properties"]["Targets"]
    pipeline_arn = {
        "Fn::Sub": [
            "arn:${AWS::Partition}:codepipeline:${AWS::Region}:${AWS::AccountId}:${Pipeline}",
            {"Pipeline": {"Ref": "Pipeline"}},
        ]
    }
    assert target["Arn"] == pipeline_arn
    assert target["RoleArn"] == {"Fn::GetAtt": ["PipelineStartRole", "Arn"]}
    start_role = template["Resources"]["PipelineStartRole"]["Properties"]
    assert start_role["AssumeRolePolicyDocument"]["Statement"][0]["Principal"] == {"Service": "events.amazonaws.com"}
    (policy,) = start_role["Policies"]
    # By name (a Ref would be a cycle through the UpdatePipeline role, which passes this role).
    name = template["Resources"]["Pipeline"]["Properties"]["Name"]
    by_name = {"Fn::Sub": f"arn:${{AWS::Partition}}:codepipeline:${{AWS::Region}}:${{AWS::AccountId}}:{name}"}
    assert policy["PolicyDocument"]["Statement"] == [
        {"Effect": "Allow", "Action": ["codepipeline:StartPipelineExecution"], "Resource": [by_name]}
    ]


def test_new_training_data_under_the_prefix_starts_this_pipeline_and_nothing_else(variant):
    template = variant["pipeline.json"]
    rule = template["Resources"]["NewTrainingDataRule"]
    assert rule["Properties"]["EventPattern"] == {
        "source": ["aws.s3"],
        "detail-type": ["Object Created"],
        "detail": {"bucket": {"name": ["shared-datasets"]}, "object": {"key": [{"prefix": "churn/v7/"}]}},
    }
    _starts_this_pipeline(template, rule)


def test_the_schedule_starts_this_pipeline(variant):
    template = variant["pipeline.json"]
    rule = template["Resources"]["ScheduledRetrainRule"]
    assert rule["Properties"]["ScheduleExpression"] == "cron(0 3 ? * MON *)"
    _starts_this_pipeline(template, rule)


def test_a_whole_bucket_matches_any_key_and_new_data_can_be_turned_off():
    data = _variant()
    data["training_data"] = {"s3_uri": "s3://shared-datasets"}
    data["triggers"] = {}
    template = PipelineStack(parse_config(data, root=REPO)).build().to_dict()
    pattern = template["Resources"]["NewTrainingDataRule"]["Properties"]["EventPattern"]
    assert pattern["detail"] == {"bucket": {"name": ["shared-datasets"]}}
    data["triggers"] = {"new_data": False}
    template = PipelineStack(parse_config(data, root=REPO)).build().to_dict()
    assert not _trigger_rules(template)
    assert "PipelineStartRole" not in template["Resources"]


def test_without_s3_data_or_schedule_no_rule_and_no_start_role(three):
    template = three["pipeline.json"]
    assert not _trigger_rules(template)
    assert "PipelineStartRole" not in template["Resources"]
    assert "NotificationConfiguration" not in template["Resources"]["ModelBucket"]["Properties"]


def test_new_data_in_the_model_buckets_folder_starts_this_pipeline(sample):
    template = sample["pipeline.json"]
    bucket = template["Resources"]["ModelBucket"]["Properties"]
    assert bucket["NotificationConfiguration"] == {"EventBridgeConfiguration": {"EventBridgeEnabled": True}}
    rule = template["Resources"]["NewTrainingDataRule"]
    assert rule["Properties"]["EventPattern"] == {
        "source": ["aws.s3"],
        "detail-type": ["Object Created"],
        "detail": {
            "bucket": {"name": [{"Ref": "ModelBucket"}]},
            "object": {"key": [{"prefix": "iris-classifier/training-data/"}]},
        },
    }
    _starts_this_pipeline(template, rule)


def test_the_train_role_lists_the_model_buckets_training_data_folder(sample):
    """The data version: train lists the folder's objects (SageMaker reads them under the project's prefix)."""
    lists = [
        s["Condition"]["StringLike"]["s3:prefix"]
        for lid, s in _statements(sample["pipeline.json"])
        if lid == "TrainRole" and s["Action"] == ["s3:ListBucket"]
    ]
    assert ["iris-classifier/training-data/*"] in lists


def test_new_data_off_leaves_the_model_bucket_without_event_notifications():
    data = copy.deepcopy(SAMPLE)
    data["triggers"] = {"new_data": False}
    template = PipelineStack(parse_config(data, root=REPO)).build().to_dict()
    assert not _trigger_rules(template)
    assert "NotificationConfiguration" not in template["Resources"]["ModelBucket"]["Properties"]


def test_stateful_logical_ids_are_pinned(sample):
    """Renaming one of these replaces it in AWS (a new bucket, a new endpoint): never by accident."""
    for name, expected in STATEFUL.items():
        found = {k: sample[name]["Resources"][k]["Type"] for k in expected if k in sample[name]["Resources"]}
        assert found == expected


def test_golden_templates_match():
    """Regenerate with `make golden` after an intended change, and review the diff."""
    config = load_config(GOLDEN / "pipeline.yml", root=REPO)
    templates = synthesize(config).templates
    assert sorted(p.name for p in GOLDEN.glob("*.json")) == sorted(templates)
    for name, body in templates.items():
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


# ----- notifications --------------------------------------------------------------------------


def _rules(template: dict) -> dict[str, dict]:
    """The notification rules: those whose target is the notification topic (the triggers' rules
    target the pipeline)."""
    return {
        rid: r["Properties"]
        for rid, r in resources(template, "AWS::Events::Rule").items()
        if any(t["Arn"] == {"Ref": "NotificationTopic"} for t in r["Properties"]["Targets"])
    }


def _trigger_rules(template: dict) -> dict[str, dict]:
    """The rules that start the pipeline (new data, schedule)."""
    return {
        rid: r
        for rid, r in resources(template, "AWS::Events::Rule").items()
        if any(t["Arn"] != {"Ref": "NotificationTopic"} for t in r["Properties"]["Targets"])
    }


def test_notification_rules_cover_runs_failed_actions_and_waiting_approvals_of_this_pipeline(sample):
    rules = _rules(sample["pipeline.json"])
    patterns = {rid: rule["EventPattern"] for rid, rule in rules.items()}
    assert patterns == {
        "PipelineRunRule": {
            "source": ["aws.codepipeline"],
            "detail-type": ["CodePipeline Pipeline Execution State Change"],
            "detail": {"pipeline": [{"Ref": "Pipeline"}], "state": ["STARTED", "SUCCEEDED", "FAILED"]},
        },
        "ActionFailedRule": {
            "source": ["aws.codepipeline"],
            "detail-type": ["CodePipeline Action Execution State Change"],
            "detail": {"pipeline": [{"Ref": "Pipeline"}], "state": ["FAILED"]},
        },
        "ApprovalWaitsRule": {
            "source": ["aws.codepipeline"],
            "detail-type": ["CodePipeline Action Execution State Change"],
            "detail": {"pipeline": [{"Ref": "Pipeline"}], "state": ["STARTED"], "type": {"category": ["Approval"]}},
        },
        "EndpointRollbackRule": {
            "source": ["aws.sagemaker"],
            "detail-type": ["SageMaker Endpoint Deployment State Change"],
            # Only prod is guarded in the sample (approval: true).
            "resources": [
                {
                    "Fn::Sub": "arn:${AWS::Partition}:sagemaker:${AWS::Region}:${AWS::AccountId}:endpoint/iris-classifier-prod"
                }
            ],
            "detail": {
                "EndpointStatus": [
                    {"equals-ignore-case": status}
                    for status in ("ROLLING_BACK", "RollingBack", "UPDATE_ROLLBACK_FAILED", "UpdateRollbackFailed")
                ]
            },
        },
    }
    for rule in rules.values():
        assert rule["State"] == "ENABLED"
        (target,) = rule["Targets"]
        assert target["Arn"] == {"Ref": "NotificationTopic"}


def test_a_failed_action_message_names_its_stage_and_action_and_links_the_run(sample):
    (target,) = _rules(sample["pipeline.json"])["ActionFailedRule"]["Targets"]
    transformer = target["InputTransformer"]
    text, variables = transformer["InputTemplate"]["Fn::Sub"]
    assert transformer["InputPathsMap"] == {
        "pipeline": "$.detail.pipeline",
        "stage": "$.detail.stage",
        "action": "$.detail.action",
        "execution": "$.detail.execution-id",
    }
    assert "action <stage>/<action> FAILED" in text
    assert "console.aws.amazon.com/codesuite/codepipeline/pipelines/${Pipeline}/executions/<execution>/" in text
    assert variables == {"Pipeline": {"Ref": "Pipeline"}}
    assert json.loads(text.replace("${", "{"))  # a JSON string: SNS delivers it as plain text


def test_every_placeholder_of_a_message_is_mapped_and_every_mapping_used(rendered):
    for rid, rule in _rules(rendered["pipeline.json"]).items():
        transformer = rule["Targets"][0]["InputTransformer"]
        sub = transformer["InputTemplate"]["Fn::Sub"]
        used = set(re.findall(r"<([a-z]+)>", sub if isinstance(sub, str) else sub[0]))
        assert used == set(transformer["InputPathsMap"]), rid


def test_a_run_event_carries_no_stage_so_its_rule_cannot_ask_for_one(sample):
    stack = PipelineStack(load_config(REPO / "pipeline.yml"))
    with pytest.raises(ValueError, match="only action events carry the stage and action"):
        stack._notification_rule("Bad", "bad", "CodePipeline Pipeline Execution State Change", {}, "<stage> failed")


def test_the_notification_topic_is_encrypted_and_only_this_stacks_rules_publish(sample):
    template = sample["pipeline.json"]
    topic = template["Resources"]["NotificationTopic"]["Properties"]
    assert topic["KmsMasterKeyId"] == {"Fn::GetAtt": ["ArtifactKey", "Arn"]}
    (policy,) = resources(template, "AWS::SNS::TopicPolicy").values()
    assert policy["Properties"]["Topics"] == [{"Ref": "NotificationTopic"}]
    (statement,) = policy["Properties"]["PolicyDocument"]["Statement"]
    assert statement["Principal"] == {"Service": "events.amazonaws.com"}
    assert statement["Action"] == ["sns:Publish"]
    assert statement["Resource"] == [{"Ref": "NotificationTopic"}]
    assert statement["Condition"] == {
        "ArnEquals": {"aws:SourceArn": [{"Fn::GetAtt": [rid, "Arn"]} for rid in _rules(template)]}
    }


def test_eventbridge_may_use_the_key_only_for_this_account(sample):
    statements = sample["pipeline.json"]["Resources"]["ArtifactKey"]["Properties"]["KeyPolicy"]["Statement"]
    (statement,) = [s for s in statements if s["Principal"] == {"Service": "events.amazonaws.com"}]
    assert sorted(statement["Action"]) == ["kms:Decrypt", "kms:GenerateDataKey"]
    assert statement["Condition"] == {"StringEquals": {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}}


def test_subscribers_come_from_the_config_and_approvers_stay_on_their_own_topic(sample, variant):
    subscriptions = sample["pipeline.json"]["Resources"]["NotificationTopic"]["Properties"]["Subscription"]
    assert subscriptions == [{"Protocol": "email", "Endpoint": "ml-team@example.com"}]
    approvers = sample["pipeline.json"]["Resources"]["ApprovalTopic"]["Properties"]["Subscription"]
    assert approvers == [{"Protocol": "email", "Endpoint": "ml-approvers@example.com"}]
    subscriptions = variant["pipeline.json"]["Resources"]["NotificationTopic"]["Properties"]["Subscription"]
    assert [s["Protocol"] for s in subscriptions] == ["https", "sqs"]


def test_only_an_environments_own_prepare_role_may_deregister_its_scalable_target(variant):
    """qa's build runs the commit's code before any approval: it must not be able to switch off prod's
    autoscaling. Each PrepareStack role's deregistration is conditioned on its own environment's tags."""
    template = variant["pipeline.json"]
    found = {}
    for logical_id, statement in _statements(template):
        if "application-autoscaling:DeregisterScalableTarget" in statement["Action"] and logical_id.startswith(
            "Prepare"
        ):
            found[logical_id] = statement["Condition"]["StringEquals"]
    assert found, "no PrepareStack role deregisters"
    for logical_id, condition in found.items():
        env = logical_id.removeprefix("Prepare").removesuffix("Role").lower()
        assert condition == {
            "aws:ResourceTag/sagemaker-cd:project": "churn-model",
            "aws:ResourceTag/sagemaker-cd:environment": env,
            "application-autoscaling:service-namespace": "sagemaker",
        }, logical_id
