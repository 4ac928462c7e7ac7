"""Asynchronous Inference per environment: what the config accepts and refuses, what the endpoint
and pipeline templates get from it, and the endpoint test's S3 round trip (moto, Stubber)."""

from __future__ import annotations

import copy
import json
from functools import cache
from pathlib import Path

import boto3
import pytest
import requests
import yaml
from botocore.stub import Stubber
from moto import mock_aws

from pipeline.config import ConfigError, PipelineConfig, parse_config
from pipeline.synth import synthesize
from scripts import endpoint_test

REPO = Path(__file__).resolve().parent.parent
SAMPLE = yaml.safe_load((REPO / "pipeline.yml").read_text())
REGION = "us-east-1"
ACCOUNT = "123456789012"
BUCKET = "model-bucket"
QA = {"name": "qa", "instance_type": "ml.m5.large", "asynchronous": {"max_concurrent_invocations_per_instance": 4}}
SCALED = {
    "name": "prod",
    "approval": True,
    "asynchronous": {"notifications": True},
    "autoscaling": {"min_instances": 0, "max_instances": 3, "target_backlog_per_instance": 2},
}


def _data(*environments: dict) -> dict:
    data = copy.deepcopy(SAMPLE)
    data["environments"] = [copy.deepcopy(env) for env in environments]
    # The sample's champion gate looks at prod; without a prod, there is none to compare with.
    if "prod" not in {env["name"] for env in environments}:
        data["quality_gate"].pop("champion", None)
    return data


def _config(*environments: dict) -> PipelineConfig:
    return parse_config(_data(*environments), root=REPO)


def _problems(*environments: dict) -> list[str]:
    with pytest.raises(ConfigError) as exc:
        _config(*environments)
    return exc.value.problems


@cache
def _templates() -> dict[str, dict]:
    return synthesize(_config(QA, SCALED)).templates


def _resources(template: dict, kind: str) -> dict[str, dict]:
    return {k: v["Properties"] for k, v in template["Resources"].items() if v["Type"] == kind}


def _statements(template: dict, role: str) -> list[dict]:
    return template["Resources"][role]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]


def _granted(template: dict, role: str, action: str) -> str:
    """Every resource the role grants `action` on, as one JSON text."""
    found = [s["Resource"] for s in _statements(template, role) if action in s["Action"]]
    return json.dumps(found)


# ----- config --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"name": "qa", "serverless": {}, "asynchronous": {}},
            "pipeline.yml: environments[0].asynchronous: Asynchronous Inference runs on instances and a serverless environment "
            "has none; remove serverless or asynchronous",
        ),
        (
            {"name": "qa", "autoscaling": {"min_instances": 0, "max_instances": 2}},
            "pipeline.yml: environments[0].autoscaling.min_instances: 0 is for asynchronous environments only",
        ),
        (
            {"name": "qa", "autoscaling": {"min_instances": 1, "max_instances": 2, "target_backlog_per_instance": 3}},
            "pipeline.yml: environments[0].autoscaling.target_backlog_per_instance: applies to asynchronous environments only",
        ),
        (
            {**QA, "autoscaling": {"min_instances": 0, "max_instances": 2, "target_invocations_per_instance": 9}},
            "pipeline.yml: environments[0].autoscaling.target_invocations_per_instance: an asynchronous environment scales on "
            "its queue",
        ),
        (
            {**QA, "deployment": {"traffic": "all_at_once"}},
            "pipeline.yml: environments[0].deployment: guarded blue/green updates are for real-time endpoints here",
        ),
        (
            {**QA, "data_capture": {"sampling_percent": 10}},
            "pipeline.yml: environments[0].data_capture: not supported for an asynchronous environment here",
        ),
        (
            {**QA, "asynchronous": {"result_timeout_s": 3601}},
            "environments[0].asynchronous.result_timeout_s: must be at most 3600",
        ),
        (
            {**QA, "asynchronous": {"max_concurrent_invocations_per_instance": 0}},
            "environments[0].asynchronous.max_concurrent_invocations_per_instance: must be at least 1",
        ),
    ],
)
def test_the_config_refuses_in_one_line(env, message):
    (problem,) = _problems(env)
    assert message in problem
    assert "\n" not in problem


def test_an_approved_asynchronous_environment_gets_neither_guardrails_nor_capture_by_default():
    prod = _config(QA, SCALED).environment("prod")
    assert prod.guardrails is None and prod.capture is None
    assert prod.fewest_instances == 0


def test_data_capture_turned_off_is_accepted_on_an_asynchronous_environment():
    assert _config({**QA, "data_capture": {"enabled": False}}).environment("qa").capture is None


# ----- endpoint templates ----------------------------------------------------------------------------


def test_the_endpoint_config_writes_answers_and_failures_with_the_key_and_tells_the_topic():
    (config,) = _resources(_templates()["endpoint-prod.json"], "AWS::SageMaker::EndpointConfig").values()
    output = config["AsyncInferenceConfig"]["OutputConfig"]
    assert output == {
        "S3OutputPath": {"Ref": "AsyncOutputS3Uri"},
        "S3FailurePath": {"Ref": "AsyncFailureS3Uri"},
        "KmsKeyId": {"Ref": "KmsKeyArn"},
        "NotificationConfig": {"SuccessTopic": {"Ref": "AsyncTopicArn"}, "ErrorTopic": {"Ref": "AsyncTopicArn"}},
    }
    assert "ClientConfig" not in config["AsyncInferenceConfig"]
    assert "DataCaptureConfig" not in config


def test_concurrency_reaches_the_client_config_and_notifications_can_be_off():
    data = _data({**QA, "asynchronous": {"max_concurrent_invocations_per_instance": 4, "notifications": False}})
    templates = synthesize(parse_config(data, root=REPO)).templates
    qa = templates["endpoint-qa.json"]
    (config,) = _resources(qa, "AWS::SageMaker::EndpointConfig").values()
    assert config["AsyncInferenceConfig"]["ClientConfig"] == {"MaxConcurrentInvocationsPerInstance": 4}
    assert "NotificationConfig" not in config["AsyncInferenceConfig"]["OutputConfig"]
    assert "AsyncTopicArn" not in qa["Parameters"]
    assert "AsyncInferenceTopic" not in templates["pipeline.json"]["Resources"]


def test_scaling_to_zero_tracks_the_backlog_and_a_backlog_without_instances_adds_one():
    prod = _templates()["endpoint-prod.json"]
    (target,) = _resources(prod, "AWS::ApplicationAutoScaling::ScalableTarget").values()
    assert (target["MinCapacity"], target["MaxCapacity"]) == (0, 3)
    policies = {
        p["PolicyType"]: (k, p) for k, p in _resources(prod, "AWS::ApplicationAutoScaling::ScalingPolicy").items()
    }
    tracking = policies["TargetTrackingScaling"][1]["TargetTrackingScalingPolicyConfiguration"]
    assert tracking["CustomizedMetricSpecification"]["MetricName"] == "ApproximateBacklogSizePerInstance"
    assert tracking["TargetValue"] == 2
    step_id, step = policies["StepScaling"]
    assert step["StepScalingPolicyConfiguration"]["StepAdjustments"] == [
        {"MetricIntervalLowerBound": 0, "ScalingAdjustment": 1}
    ]
    (alarm,) = _resources(prod, "AWS::CloudWatch::Alarm").values()
    assert alarm["MetricName"] == "HasBacklogWithoutCapacity"
    assert alarm["AlarmActions"] == [{"Ref": step_id}]
    assert alarm["AlarmName"] == "iris-classifier-prod-backlog-without-capacity"


def test_a_minimum_of_one_needs_no_scale_from_zero_policy():
    env = {**QA, "autoscaling": {"min_instances": 1, "max_instances": 2}}
    qa = synthesize(_config(env)).templates["endpoint-qa.json"]
    policies = _resources(qa, "AWS::ApplicationAutoScaling::ScalingPolicy").values()
    assert [p["PolicyType"] for p in policies] == ["TargetTrackingScaling"]
    assert not _resources(qa, "AWS::CloudWatch::Alarm")


# ----- pipeline template -----------------------------------------------------------------------------


def _deploy_parameters(pipeline: dict, env: str) -> dict:
    (resource,) = _resources(pipeline, "AWS::CodePipeline::Pipeline").values()
    for stage in resource["Stages"]:
        for action in stage["Actions"]:
            if action["Name"] == "DeployEndpoint" and stage["Name"].lower() == env:
                return action["Configuration"]["ParameterOverrides"]
    raise LookupError(env)


def test_the_deploy_supplies_the_environments_prefixes_and_the_projects_topic():
    pipeline = _templates()["pipeline.json"]
    text = json.dumps(_deploy_parameters(pipeline, "prod"))
    assert "iris-classifier/async-output/prod/" in text and "iris-classifier/async-failures/prod/" in text
    assert "AsyncInferenceTopic" in text
    topic = pipeline["Resources"]["AsyncInferenceTopic"]["Properties"]
    assert topic["TopicName"] == "iris-classifier-async-inference"
    assert topic["KmsMasterKeyId"] == {"Fn::GetAtt": ["ArtifactKey", "Arn"]}
    assert "Subscription" not in topic


def test_the_execution_role_writes_only_the_asynchronous_prefixes_and_publishes_to_the_topic():
    pipeline = _templates()["pipeline.json"]
    written = _granted(pipeline, "SageMakerExecutionRole", "s3:PutObject")
    for env in ("qa", "prod"):
        assert f"iris-classifier/async-output/{env}/*" in written
        assert f"iris-classifier/async-failures/{env}/*" in written
        assert f"async-input/{env}/" not in written
    assert json.loads(_granted(pipeline, "SageMakerExecutionRole", "sns:Publish")) == [[{"Ref": "AsyncInferenceTopic"}]]


def test_the_endpoint_test_invokes_asynchronous_endpoints_only_asynchronously():
    pipeline = _templates()["pipeline.json"]
    assert "endpoint/iris-classifier-prod" in _granted(pipeline, "EndpointTestRole", "sagemaker:InvokeEndpointAsync")
    assert _granted(pipeline, "EndpointTestRole", "sagemaker:InvokeEndpoint") == "[]"
    assert "async-input/qa/*" in _granted(pipeline, "EndpointTestRole", "s3:PutObject")


def test_the_sample_has_no_asynchronous_resources():
    pipeline = synthesize(parse_config(copy.deepcopy(SAMPLE), root=REPO)).templates["pipeline.json"]
    text = json.dumps(pipeline)
    assert "AsyncInferenceTopic" not in text and "async-" not in text and "InvokeEndpointAsync" not in text


# ----- the endpoint test ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("answered", "failed", "waited", "move"),
    [
        (True, False, 0, "answer"),
        (True, True, 999, "answer"),
        (False, True, 0, "failure"),
        (False, False, 10, "wait"),
        (False, False, 60, "timeout"),
    ],
)
def test_the_next_move_on_an_asynchronous_request(answered, failed, waited, move):
    assert endpoint_test.async_move(answered, failed, waited, 60) == move


@pytest.fixture
def moto_clients(aws_env):
    with mock_aws():
        session = boto3.session.Session(region_name=REGION)
        s3 = session.client("s3")
        s3.create_bucket(Bucket=BUCKET)
        yield session.client("sagemaker-runtime"), s3


def _queue_async(*results: dict) -> None:
    response = requests.post(
        "http://motoapi.amazonaws.com/moto-api/static/sagemaker/async-endpoint-results",
        json={"account_id": ACCOUNT, "region": REGION, "results": list(results)},
        timeout=10,
    )
    response.raise_for_status()


def _invoke(runtime, s3, **settings) -> dict:
    invoker = endpoint_test.AsyncRuntime(runtime, s3, f"s3://{BUCKET}/proj/async-input/qa/", **settings)
    return invoker.invoke_endpoint(
        EndpointName="proj-qa", ContentType="text/csv", Accept="application/json", Body=b"5.1,3.5,1.4,0.2"
    )


def test_an_answer_comes_back_as_the_body_and_the_request_was_put_under_the_input_prefix(moto_clients):
    runtime, s3 = moto_clients
    _queue_async({"data": json.dumps({"predictions": ["setosa"]})})
    response = _invoke(runtime, s3, timeout_s=60)
    assert json.loads(response["Body"].read()) == {"predictions": ["setosa"]}
    (put,) = s3.list_objects_v2(Bucket=BUCKET, Prefix="proj/async-input/qa/")["Contents"]
    assert s3.get_object(Bucket=BUCKET, Key=put["Key"])["Body"].read() == b"5.1,3.5,1.4,0.2"


def test_a_failure_sagemaker_wrote_is_a_failed_case_quoting_it(moto_clients):
    runtime, s3 = moto_clients
    _queue_async({"is_failure": True, "data": "model_fn raised ValueError"})
    case = endpoint_test.Case(
        name="a.json", description="", content_type="text/csv", accept="application/json", body="1", expected=1
    )
    invoker = endpoint_test.AsyncRuntime(runtime, s3, f"s3://{BUCKET}/p/", timeout_s=60)
    body, _, error = endpoint_test.invoke(invoker, "proj-qa", case)
    assert body is None
    assert error is not None and "ModelError" in error and "model_fn raised ValueError" in error


def test_no_answer_within_the_timeout_is_a_failed_case_naming_both_locations(moto_clients):
    runtime, s3 = moto_clients
    stubber = Stubber(runtime)
    never = f"s3://{BUCKET}/proj/async-output/qa/never.out"
    stubber.add_response(
        "invoke_endpoint_async",
        {"OutputLocation": never, "FailureLocation": never.replace("output", "failures"), "InferenceId": "x"},
    )
    ticks = iter(range(0, 1000, 30))
    slept = []
    with stubber, pytest.raises(endpoint_test.ClientError) as exc:
        _invoke(runtime, s3, timeout_s=90, sleep=slept.append, clock=lambda: next(ticks))
    message = exc.value.response["Error"]["Message"]
    assert exc.value.response["Error"]["Code"] == "Timeout"
    assert never in message and "after 90 s" in message
    # Looked at 30 s and 60 s in (then slept), given up at 90 s.
    assert len(slept) == 2


def test_an_asynchronous_environment_without_an_input_location_is_one_line(tmp_path, monkeypatch, capsys):
    for name in ("MODEL_BUCKET", "ASYNC_INPUT_PREFIX", "ENDPOINT_ENV", "CODEBUILD_BUILD_ARN"):
        monkeypatch.delenv(name, raising=False)
    (tmp_path / "model").symlink_to(REPO / "model")
    (tmp_path / "pipeline.yml").write_text(yaml.safe_dump(_data(QA)))
    code = endpoint_test.main(
        ["--config", str(tmp_path / "pipeline.yml"), "--environment", "qa", "--exports-file", str(tmp_path / "x.env")]
    )
    assert code == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0
    assert "environment 'qa' is asynchronous: give --async-input-uri" in err
