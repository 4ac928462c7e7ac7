"""Deployment guardrails (blue/green traffic shifting rolled back by alarms) and data capture:
what the config accepts and refuses, and what the endpoint and pipeline templates get from it."""

from __future__ import annotations

import copy
import json
from functools import cache
from pathlib import Path

import pytest
import yaml

from pipeline.config import ConfigError, PipelineConfig, parse_config
from pipeline.cost import estimate, load_table
from pipeline.regions import verdicts
from pipeline.scan import cfn_lint_findings, cfripper_findings
from pipeline.synth import synthesize

REPO = Path(__file__).resolve().parent.parent
SAMPLE = yaml.safe_load((REPO / "pipeline.yml").read_text())


def _config(*environments: dict, **top: object) -> PipelineConfig:
    data = copy.deepcopy(SAMPLE)
    data["environments"] = list(environments)
    # The sample's champion gate looks at prod; without a prod, there is none to compare with.
    if "prod" not in {env["name"] for env in environments}:
        data["quality_gate"].pop("champion", None)
    data.update(top)
    return parse_config(data, root=REPO)


def _problems(*environments: dict) -> list[str]:
    with pytest.raises(ConfigError) as exc:
        _config(*environments)
    return exc.value.problems


def _templates(config: PipelineConfig) -> dict[str, dict]:
    return synthesize(config).templates


GUARDED = (
    {"name": "qa", "deployment": {"traffic": "all_at_once", "termination_wait_s": 120}},
    {
        "name": "staging",
        "initial_instance_count": 4,
        "deployment": {
            "traffic": "linear",
            "linear_step_percent": 25,
            "wait_s": 120,
            "termination_wait_s": 60,
            "max_execution_s": 1800,
            "alarms": {"errors_5xx": 5, "latency_ms": 250, "period_s": 120, "evaluation_periods": 3},
        },
        "data_capture": {"sampling_percent": 50, "capture": ["input"]},
    },
    {"name": "prod", "approval": True, "initial_instance_count": 2},
)


@cache
def _guarded() -> dict[str, dict]:
    return _templates(_config(*GUARDED))


def _endpoint(templates: dict[str, dict], env: str) -> dict:
    return templates[f"endpoint-{env}.json"]


def _alarms(template: dict) -> dict[str, dict]:
    return {k: v["Properties"] for k, v in template["Resources"].items() if v["Type"] == "AWS::CloudWatch::Alarm"}


# ----- defaults ----------------------------------------------------------------------------------


def test_an_approved_environment_gets_a_canary_with_alarms_and_capture_the_others_neither():
    templates = _templates(_config({"name": "qa"}, {"name": "prod", "approval": True, "initial_instance_count": 2}))
    qa, prod = _endpoint(templates, "qa"), _endpoint(templates, "prod")
    assert "DeploymentConfig" not in qa["Resources"]["Endpoint"]["Properties"]
    assert "DataCaptureConfig" not in qa["Resources"]["EndpointConfig"]["Properties"]
    assert _alarms(qa) == {}
    policy = prod["Resources"]["Endpoint"]["Properties"]["DeploymentConfig"]["BlueGreenUpdatePolicy"]
    assert policy == {
        "TrafficRoutingConfiguration": {
            "Type": "CANARY",
            "CanarySize": {"Type": "CAPACITY_PERCENT", "Value": 10},
            "WaitIntervalInSeconds": 300,
        },
        "TerminationWaitInSeconds": 0,
    }
    capture = prod["Resources"]["EndpointConfig"]["Properties"]["DataCaptureConfig"]
    assert capture["InitialSamplingPercentage"] == 20
    assert capture["CaptureOptions"] == [{"CaptureMode": "Input"}, {"CaptureMode": "Output"}]
    assert set(_alarms(prod)) == {"ErrorsAlarm", "LatencyAlarm"}


def test_an_approved_single_instance_gets_all_at_once_with_a_bake_for_the_alarms():
    template = _endpoint(_templates(_config({"name": "prod", "approval": True})), "prod")
    deployment = template["Resources"]["Endpoint"]["Properties"]["DeploymentConfig"]
    assert deployment["BlueGreenUpdatePolicy"] == {
        "TrafficRoutingConfiguration": {"Type": "ALL_AT_ONCE", "WaitIntervalInSeconds": 300},
        "TerminationWaitInSeconds": 300,
    }
    assert len(deployment["AutoRollbackConfiguration"]["Alarms"]) == 2


@pytest.mark.parametrize("traffic", ["canary", "linear"])
def test_steps_on_a_single_instance_are_refused_naming_the_count(traffic):
    (line,) = _problems({"name": "prod", "deployment": {"traffic": traffic}})
    assert line.startswith(f"pipeline.yml: environments[0].deployment.traffic: {traffic} needs at least 2 instances")
    assert "(the fewest it runs is 1)" in line


def test_an_approved_environment_may_turn_capture_off_and_keep_its_canary():
    (env,) = _config(
        {"name": "prod", "approval": True, "initial_instance_count": 2, "data_capture": {"enabled": False}}
    ).environments
    assert env.capture is None
    assert env.guardrails is not None and env.guardrails.traffic == "canary"


def test_a_deployment_section_without_traffic_means_canary_with_approval_and_all_at_once_without():
    qa, prod = _config(
        {"name": "qa", "deployment": {"wait_s": 60}},
        {"name": "prod", "approval": True, "initial_instance_count": 2, "deployment": {}},
    ).environments
    assert qa.guardrails is not None and qa.guardrails.traffic == "all_at_once" and qa.guardrails.wait_s == 60
    assert prod.guardrails is not None and prod.guardrails.traffic == "canary"


# ----- the update policy per traffic mode ---------------------------------------------------------


def test_all_at_once_shifts_in_one_step_and_bakes_for_the_termination_wait():
    deployment = _endpoint(_guarded(), "qa")["Resources"]["Endpoint"]["Properties"]["DeploymentConfig"]
    assert deployment["BlueGreenUpdatePolicy"] == {
        "TrafficRoutingConfiguration": {"Type": "ALL_AT_ONCE", "WaitIntervalInSeconds": 300},
        "TerminationWaitInSeconds": 120,
    }


def test_linear_shifts_in_steps_of_the_configured_share_within_the_timeout():
    deployment = _endpoint(_guarded(), "staging")["Resources"]["Endpoint"]["Properties"]["DeploymentConfig"]
    assert deployment["BlueGreenUpdatePolicy"] == {
        "TrafficRoutingConfiguration": {
            "Type": "LINEAR",
            "LinearStepSize": {"Type": "CAPACITY_PERCENT", "Value": 25},
            "WaitIntervalInSeconds": 120,
        },
        "TerminationWaitInSeconds": 60,
        "MaximumExecutionTimeoutInSeconds": 1800,
    }


@pytest.mark.parametrize("env", ["qa", "staging", "prod"])
def test_the_rollback_names_exactly_the_stacks_own_alarms(env):
    template = _endpoint(_guarded(), env)
    rollback = template["Resources"]["Endpoint"]["Properties"]["DeploymentConfig"]["AutoRollbackConfiguration"]
    assert rollback == {"Alarms": [{"AlarmName": {"Ref": "ErrorsAlarm"}}, {"AlarmName": {"Ref": "LatencyAlarm"}}]}
    assert {f"{k}Name" for k in _alarms(template)} <= set(template["Outputs"])


# ----- the alarms ----------------------------------------------------------------------------------


def test_the_alarms_watch_the_endpoints_variant_and_ignore_missing_data():
    alarms = _alarms(_endpoint(_guarded(), "prod"))
    for alarm in alarms.values():
        assert alarm["Namespace"] == "AWS/SageMaker"
        assert alarm["Dimensions"] == [
            {"Name": "EndpointName", "Value": "iris-classifier-prod"},
            {"Name": "VariantName", "Value": "AllTraffic"},
        ]
        assert alarm["TreatMissingData"] == "notBreaching"
        assert alarm["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"
        assert (alarm["Period"], alarm["EvaluationPeriods"]) == (60, 1)
    errors, latency = alarms["ErrorsAlarm"], alarms["LatencyAlarm"]
    assert (errors["MetricName"], errors["Statistic"], errors["Threshold"]) == ("Invocation5XXErrors", "Sum", 1.0)
    assert errors["AlarmName"] == "iris-classifier-prod-5xx-errors"
    assert latency["AlarmName"] == "iris-classifier-prod-model-latency"
    # ModelLatency is in microseconds: the endpoint test's 1000 ms budget is 1,000,000.
    assert (latency["MetricName"], latency["Statistic"], latency["Threshold"]) == ("ModelLatency", "Average", 1e6)


def test_configured_thresholds_and_periods_reach_the_alarms():
    alarms = _alarms(_endpoint(_guarded(), "staging"))
    assert alarms["ErrorsAlarm"]["Threshold"] == 5.0
    assert alarms["LatencyAlarm"]["Threshold"] == 250_000.0
    for alarm in alarms.values():
        assert (alarm["Period"], alarm["EvaluationPeriods"]) == (120, 3)


def test_the_alarms_are_not_tagged_with_the_model_version_so_a_run_does_not_update_them():
    for alarm in _alarms(_endpoint(_guarded(), "prod")).values():
        keys = {t["Key"] for t in alarm["Tags"]}
        assert "sagemaker-cd:model-version" not in keys and "sagemaker-cd:environment" in keys


# ----- data capture --------------------------------------------------------------------------------


def test_capture_goes_to_the_environments_prefix_of_the_model_bucket_with_the_stacks_key():
    templates = _guarded()
    staging = _endpoint(templates, "staging")
    capture = staging["Resources"]["EndpointConfig"]["Properties"]["DataCaptureConfig"]
    assert capture == {
        "EnableCapture": True,
        "InitialSamplingPercentage": 50,
        "CaptureOptions": [{"CaptureMode": "Input"}],
        "DestinationS3Uri": {"Ref": "DataCaptureS3Uri"},
        "KmsKeyId": {"Ref": "KmsKeyArn"},
        "CaptureContentTypeHeader": {"JsonContentTypes": ["application/json"], "CsvContentTypes": ["text/csv"]},
    }
    pipeline = templates["pipeline.json"]
    (stage,) = [s for s in _stages(pipeline) if s["Name"] == "Staging"]
    (deploy,) = [a for a in stage["Actions"] if a["Name"] == "DeployEndpoint"]
    _, variables = deploy["Configuration"]["ParameterOverrides"]["Fn::Sub"]
    assert variables["DataCaptureS3Uri"] == {
        "Fn::Sub": ["s3://${Bucket}/iris-classifier/data-capture/staging/", {"Bucket": {"Ref": "ModelBucket"}}]
    }


def test_only_capturing_environments_get_a_write_grant_for_their_prefix():
    role = _guarded()["pipeline.json"]["Resources"]["SageMakerExecutionRole"]["Properties"]
    text = json.dumps(role)
    assert "iris-classifier/data-capture/staging/*" in text
    assert "iris-classifier/data-capture/prod/*" in text
    assert "iris-classifier/data-capture/qa/" not in text


def _stages(template: dict) -> list[dict]:
    (pipeline,) = [r for r in template["Resources"].values() if r["Type"] == "AWS::CodePipeline::Pipeline"]
    return pipeline["Properties"]["Stages"]


# ----- the rollback notification -------------------------------------------------------------------


def test_the_rollback_rule_listens_to_the_guarded_endpoints_only():
    rule = _guarded()["pipeline.json"]["Resources"]["EndpointRollbackRule"]["Properties"]
    endpoints = [r["Fn::Sub"].rsplit("/", 1)[1] for r in rule["EventPattern"]["resources"]]
    assert endpoints == ["iris-classifier-qa", "iris-classifier-staging", "iris-classifier-prod"]
    unguarded = _templates(_config({"name": "qa"}))["pipeline.json"]["Resources"]
    assert "EndpointRollbackRule" not in unguarded


# ----- refusals: one line each, naming the field ---------------------------------------------------


@pytest.mark.parametrize(
    "section, expected",
    [
        ({"deployment": {"traffic": "blue"}}, "deployment.traffic: expected 'all_at_once', 'canary' or 'linear'"),
        ({"deployment": {"canary_percent": 51}}, "deployment.canary_percent: must be at most 50"),
        ({"deployment": {"canary_percent": 0}}, "deployment.canary_percent: must be at least 1"),
        ({"deployment": {"linear_step_percent": 9}}, "deployment.linear_step_percent: must be at least 10"),
        ({"deployment": {"linear_step_percent": 51}}, "deployment.linear_step_percent: must be at most 50"),
        ({"deployment": {"wait_s": -1}}, "deployment.wait_s: must be at least 0"),
        ({"deployment": {"wait_s": 3601}}, "deployment.wait_s: must be at most 3600"),
        ({"deployment": {"termination_wait_s": 3601}}, "deployment.termination_wait_s: must be at most 3600"),
        ({"deployment": {"max_execution_s": 599}}, "deployment.max_execution_s: must be at least 600"),
        ({"deployment": {"max_execution_s": 28801}}, "deployment.max_execution_s: must be at most 28800"),
        (
            {"deployment": {"max_execution_s": 900, "wait_s": 600, "termination_wait_s": 300}},
            "deployment.max_execution_s: 900 s does not exceed the update's waits (900 s",
        ),
        (
            {"deployment": {"traffic": "linear", "linear_step_percent": 10, "wait_s": 60, "max_execution_s": 600}},
            "(600 s: 10 x wait_s + termination_wait_s)",
        ),
        ({"deployment": {"alarms": {"errors_5xx": 0}}}, "deployment.alarms.errors_5xx: must be at least 1"),
        ({"deployment": {"alarms": {"latency_ms": 0}}}, "deployment.alarms.latency_ms: must be at least 1"),
        ({"deployment": {"alarms": {"period_s": 30}}}, "deployment.alarms.period_s: must be at least 60"),
        ({"deployment": {"alarms": {"period_s": 90}}}, "deployment.alarms.period_s: 90 s is not a whole number"),
        ({"deployment": {"alarms": {"evaluation_periods": 0}}}, "deployment.alarms.evaluation_periods: must be at"),
        ({"deployment": {"canary": 10}}, "deployment.canary:"),
        ({"data_capture": {"sampling_percent": 101}}, "data_capture.sampling_percent: must be at most 100"),
        ({"data_capture": {"sampling_percent": -1}}, "data_capture.sampling_percent: must be at least 0"),
        ({"data_capture": {"capture": []}}, "data_capture.capture: names nothing"),
        ({"data_capture": {"capture": ["input", "input"]}}, "data_capture.capture: names input or output more"),
        ({"data_capture": {"capture": ["both"]}}, "data_capture.capture[0]: expected 'input' or 'output'"),
        ({"data_capture": {"enabled": "no"}}, "data_capture.enabled:"),
    ],
)
def test_each_limit_is_refused_in_one_line_naming_the_field(section, expected):
    (line,) = _problems({"name": "prod", "approval": True, "initial_instance_count": 2, **section})
    assert line.startswith("pipeline.yml: environments[0].")
    assert expected in line
    assert "\n" not in line


# ----- scanners ------------------------------------------------------------------------------------


@cache
def _accepted_regions() -> list[str]:
    return [region for region, found in verdicts(_config(*GUARDED)).items() if not found]


@pytest.mark.heavy
def test_cfn_lint_finds_nothing_in_the_guarded_endpoint_templates_in_any_accepted_region():
    regions = _accepted_regions()
    assert "us-east-1" in regions
    for name, template in _guarded().items():
        if name.startswith("endpoint-"):
            assert cfn_lint_findings(template, regions) == [], name


@pytest.mark.heavy
def test_cfripper_finds_nothing_in_the_pipeline_template_with_guarded_endpoints():
    # cfn-lint checks the sample's pipeline template, whose prod is guarded (tests/test_templates.py).
    assert cfripper_findings(_guarded()["pipeline.json"]) == []


# ----- cost ----------------------------------------------------------------------------------------


def test_cost_counts_two_alarms_per_guarded_endpoint_and_capture_as_usage():
    table = load_table()
    items = {item.name: item for item in estimate(_config(*GUARDED), table, kms_keys=1)}
    assert items["rollback alarms"].monthly == pytest.approx(6 * table.cloudwatch_alarm_month)
    assert items["data capture"].monthly is None
    assert "staging, prod" in items["data capture"].basis
    unguarded = {item.name for item in estimate(_config({"name": "qa"}), table, kms_keys=1)}
    assert not {"rollback alarms", "data capture"} & unguarded


def test_an_autoscaled_variant_steps_on_its_minimum_not_its_initial_count():
    scaled = {"name": "prod", "initial_instance_count": 2, "deployment": {"traffic": "canary"}}
    (line,) = _problems({**scaled, "autoscaling": {"min_instances": 1, "max_instances": 4}})
    assert "(the fewest it runs is 1)" in line
    (env,) = _config({**scaled, "autoscaling": {"min_instances": 2, "max_instances": 4}}).environments
    assert env.guardrails is not None and env.guardrails.traffic == "canary"


@pytest.mark.parametrize("traffic", ["canary", "linear"])
def test_a_serverless_environment_refuses_steps_and_takes_all_at_once_by_default(traffic):
    (line,) = _problems({"name": "prod", "serverless": {}, "deployment": {"traffic": traffic}})
    assert line == (
        f"pipeline.yml: environments[0].deployment.traffic: {traffic} steps through instances and a serverless "
        "environment has none; use all_at_once (still rolled back by the alarms), or instance_type"
    )
    (env,) = _config({"name": "prod", "approval": True, "serverless": {}}).environments
    assert env.guardrails is not None and env.guardrails.traffic == "all_at_once"


def test_a_serverless_environment_captures_nothing_and_refuses_capture_in_one_line():
    (env,) = _config({"name": "prod", "approval": True, "serverless": {}}).environments
    assert env.capture is None
    (line,) = _problems({"name": "prod", "serverless": {}, "data_capture": {"sampling_percent": 10}})
    assert line == (
        "pipeline.yml: environments[0].data_capture: a serverless environment cannot capture data "
        "(SageMaker does not support it); remove data_capture or use instance_type"
    )
    (env,) = _config({"name": "prod", "serverless": {}, "data_capture": {"enabled": False}}).environments
    assert env.capture is None
