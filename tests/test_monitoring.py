"""Data-quality monitoring (opt-in): the config, the analyzer image table, the endpoint stack's
schedule and the roles' grants, and the Train action's baseline job (Stubber and moto)."""

from __future__ import annotations

import copy
import json
from functools import cache
from pathlib import Path

import boto3
import pytest
import yaml
from botocore.stub import Stubber
from moto import mock_aws

from pipeline import monitoring
from pipeline.config import ConfigError, PipelineConfig, parse_config
from pipeline.regions import RegionError, check, verdicts
from pipeline.scan import cfn_lint_findings, cfripper_findings
from pipeline.stacks.endpoint import BASELINE_PARAMETERS, RUN_PARAMETERS, run_parameters
from pipeline.synth import render
from scripts import baseline
from scripts.common import StageFailure

REPO = Path(__file__).resolve().parent.parent
SAMPLE = yaml.safe_load((REPO / "pipeline.yml").read_text())
REGION = "us-east-1"
BUCKET = "model-bucket"
ROLE = "arn:aws:iam::123456789012:role/sagemaker"
KEY = "arn:aws:kms:us-east-1:123456789012:key/11111111-2222-3333-4444-555555555555"
JOB = "iris-classifier-3f2a9c1-20261123T072500"
DATA = f"s3://{BUCKET}/iris-classifier/data/3f2a9c1/"


def _monitoring(region: str = REGION, **settings) -> dict:
    """The sample with prod (approved, so capturing) monitored."""
    data = copy.deepcopy(SAMPLE)
    data["region"] = region
    data["environments"][1]["monitoring"] = {"schedule": "hourly", **settings}
    return data


def _problem(data: dict) -> str:
    with pytest.raises(ConfigError) as exc:
        parse_config(data, root=REPO)
    assert len(exc.value.problems) == 1
    return exc.value.problems[0]


# ----- the config -------------------------------------------------------------------------------


def test_monitoring_is_off_unless_asked_and_defaults_to_daily_over_a_csv_with_header_and_label_last():
    assert not parse_config(copy.deepcopy(SAMPLE), root=REPO).monitors
    data = copy.deepcopy(SAMPLE)
    data["environments"][1]["monitoring"] = {}
    config = parse_config(data, root=REPO)
    assert config.monitors
    settings = config.environment("prod").monitoring
    assert settings is not None
    assert (settings.schedule, settings.header, settings.label_position) == ("daily", True, "end")


@pytest.mark.parametrize(
    ("where", "value", "expected"),
    [
        # qa is serverless: it cannot capture, so there is nothing to monitor.
        (
            0,
            {"schedule": "daily"},
            "environments[0].monitoring: the schedule checks the endpoint's captured data and a serverless environment cannot capture data",
        ),
        (1, {"schedule": "weekly"}, "environments[1].monitoring.schedule: "),
        (1, {"schedule": "hourly", "label_position": "middle"}, "environments[1].monitoring.label_position: "),
        (1, {"schedule": "hourly", "header": "yes"}, "environments[1].monitoring.header: "),
        (1, {"schedule": "hourly", "baseline": "s3://x/"}, "environments[1].monitoring.baseline: "),
    ],
)
def test_bad_monitoring_is_one_line_naming_the_field(where, value, expected):
    data = copy.deepcopy(SAMPLE)
    data["environments"][where]["monitoring"] = value
    line = _problem(data)
    assert line.startswith("pipeline.yml: ") and expected in line, line


def test_monitoring_without_data_capture_is_refused():
    data = _monitoring()
    data["environments"][1]["data_capture"] = {"enabled": False}
    assert "it captures no data; turn data_capture on" in _problem(data)


def test_monitoring_where_no_analyzer_image_is_known_is_refused(monkeypatch):
    monkeypatch.setattr(monitoring, "registry_accounts", lambda: {"eu-west-1": "468650794304"})
    line = _problem(_monitoring())
    assert line == (
        "pipeline.yml: environments[1].monitoring: no Model Monitor analyzer image is known in us-east-1 "
        "(pipeline/data/images/model-monitor.json); remove monitoring or choose another region"
    )


def test_environments_that_read_the_training_data_differently_are_refused():
    data = _monitoring()
    data["environments"].append(
        {"name": "shadow", "instance_type": "ml.m5.large", "data_capture": {}, "monitoring": {"header": False}}
    )
    assert "environments[2].monitoring: header and label_position describe the training data" in _problem(data)


# ----- the analyzer image table -----------------------------------------------------------------


@cache
def _monitoring_verdicts() -> dict:
    return verdicts(parse_config(_monitoring(), root=REPO))


def test_the_image_table_covers_every_region_a_monitoring_config_is_accepted_in():
    accepted = [region for region, found in _monitoring_verdicts().items() if not found]
    assert "us-east-1" in accepted and len(accepted) >= 10
    assert set(accepted) <= set(monitoring.registry_accounts())


def test_a_region_without_monitoring_schedules_is_refused_in_one_line():
    # eu-south-1 accepts the sample, but CloudFormation has no AWS::SageMaker::MonitoringSchedule there.
    found = _monitoring_verdicts()["eu-south-1"]
    assert [gap.kind for gap in found] == ["AWS::SageMaker::MonitoringSchedule"]
    synthesis = render(parse_config(_monitoring("eu-south-1"), root=REPO))
    with pytest.raises(RegionError) as exc:
        check(synthesis.templates, synthesis.regions)
    assert exc.value.problems == [
        "region: eu-south-1 has no AWS::SageMaker::MonitoringSchedule (used by endpoint-prod.json/MonitoringSchedule); "
        "choose another region (make regions lists the accepted ones)"
    ]


def test_the_shipped_table_records_its_source_and_keeps_commercial_regions_only():
    shipped = json.loads(monitoring.TABLE_FILE.read_text())
    assert f"{monitoring.SOURCE_PACKAGE} {monitoring.SOURCE_VERSION}" in shipped["_source"]
    assert monitoring.SOURCE_PATH in shipped["_source"]
    assert shipped["repository"] == "sagemaker-model-monitor-analyzer"
    assert not [r for r in shipped["registries"] if r.startswith(("cn-", "us-gov-", "us-iso"))]
    upstream = {
        "versions": {
            "": {
                "registries": {"us-east-1": "156813124566", "cn-north-1": "453000072557", "us-isof-east-1": "1"},
                "repository": "sagemaker-model-monitor-analyzer",
            }
        }
    }
    assert json.loads(monitoring.table_text(upstream))["registries"] == {"us-east-1": "156813124566"}
    assert shipped == json.loads(
        monitoring.table_text({"versions": {"": {**shipped, "registries": shipped["registries"]}}})
    )


def test_the_analyzer_image_uri_is_the_sdks():
    assert (
        monitoring.image_uri("us-east-1")
        == "156813124566.dkr.ecr.us-east-1.amazonaws.com/sagemaker-model-monitor-analyzer"
    )
    with pytest.raises(KeyError):
        monitoring.image_uri("xx-nowhere-1")


# ----- the templates ----------------------------------------------------------------------------


@cache
def _templates() -> dict[str, dict]:
    return render(parse_config(_monitoring(), root=REPO)).templates


def test_the_monitored_environment_gets_a_data_quality_schedule_on_its_captured_data():
    prod = _templates()["endpoint-prod.json"]
    schedule = prod["Resources"]["MonitoringSchedule"]
    assert schedule["Type"] == "AWS::SageMaker::MonitoringSchedule"
    props = schedule["Properties"]
    assert props["MonitoringScheduleName"] == "iris-classifier-prod"
    assert props["EndpointName"] == {"Fn::GetAtt": ["Endpoint", "EndpointName"]}
    config = props["MonitoringScheduleConfig"]
    assert config["MonitoringType"] == "DataQuality"
    assert config["ScheduleConfig"] == {"ScheduleExpression": "cron(0 * ? * * *)"}
    job = config["MonitoringJobDefinition"]
    assert job["BaselineConfig"] == {
        "StatisticsResource": {"S3Uri": {"Ref": "BaselineStatisticsUri"}},
        "ConstraintsResource": {"S3Uri": {"Ref": "BaselineConstraintsUri"}},
    }
    assert job["MonitoringInputs"][0]["EndpointInput"]["EndpointName"] == {"Fn::GetAtt": ["Endpoint", "EndpointName"]}
    output = job["MonitoringOutputConfig"]
    assert output["KmsKeyId"] == {"Ref": "KmsKeyArn"}
    assert output["MonitoringOutputs"][0]["S3Output"]["S3Uri"] == {"Ref": "MonitoringS3Uri"}
    assert job["RoleArn"] == {"Ref": "ExecutionRoleArn"}
    assert job["MonitoringResources"]["ClusterConfig"]["VolumeKmsKeyId"] == {"Ref": "KmsKeyArn"}
    assert "us-east-1" in prod["Mappings"]["AnalyzerRegistry"]
    # qa (serverless, no capture) has no schedule, but declares and outputs the baseline, as every stack does.
    qa = _templates()["endpoint-qa.json"]
    assert "AWS::SageMaker::MonitoringSchedule" not in {r["Type"] for r in qa["Resources"].values()}
    for template in (prod, qa):
        assert set(BASELINE_PARAMETERS) <= set(template["Parameters"])
        assert set(BASELINE_PARAMETERS) <= set(template["Outputs"])


def test_without_monitoring_no_template_declares_a_baseline():
    config = parse_config(copy.deepcopy(SAMPLE), root=REPO)
    assert run_parameters(config) == RUN_PARAMETERS
    for name, template in render(config).templates.items():
        assert not set(BASELINE_PARAMETERS) & set(template.get("Parameters", {})), name
        assert "MonitoringS3Uri" not in json.dumps(template), name


def _deploy_parameters(pipeline: dict) -> dict[str, str]:
    """Environment -> its DeployEndpoint action's ParameterOverrides text."""
    found = {}
    for stage in pipeline["Resources"]["Pipeline"]["Properties"]["Stages"]:
        for action in stage["Actions"]:
            if action["Name"] == "DeployEndpoint":
                found[stage["Name"]] = json.dumps(action["Configuration"]["ParameterOverrides"])
    return found


def test_the_pipeline_hands_the_reports_prefix_to_the_monitored_stack_only_and_grants_what_it_needs():
    pipeline = _templates()["pipeline.json"]
    overrides = _deploy_parameters(pipeline)
    assert "iris-classifier/monitoring/prod/" in overrides["Prod"]
    assert "MonitoringS3Uri" not in overrides["Qa"]
    text = json.dumps(pipeline["Resources"])
    for action in ("sagemaker:CreateProcessingJob", "sagemaker:CreateMonitoringSchedule"):
        assert action in text
    assert "processing-job/iris-classifier-*" in text
    assert "monitoring-schedule/iris-classifier-prod" in text
    assert "iris-classifier/baselines/*" in text
    sample = json.dumps(render(parse_config(copy.deepcopy(SAMPLE), root=REPO)).templates["pipeline.json"])
    assert "ProcessingJob" not in sample and "MonitoringSchedule" not in sample


@pytest.mark.heavy
def test_cfripper_finds_nothing_in_the_monitoring_templates():
    for name, template in _templates().items():
        assert cfripper_findings(template) == [], name


@pytest.mark.heavy
def test_the_monitoring_pipeline_template_is_clean_under_cfn_lint():
    assert cfn_lint_findings(_templates()["pipeline.json"], [REGION]) == []


@pytest.mark.heavy
def test_the_monitored_endpoint_template_is_clean_under_cfn_lint_in_every_accepted_region():
    """The monitored endpoint template (the new resource type, its mapping) in every region that
    accepts a monitoring config (make test-heavy: cfn-lint in 16 regions is the slow part)."""
    accepted = [region for region, found in _monitoring_verdicts().items() if not found]
    by_body: dict[str, tuple[dict, list[str]]] = {}
    for region in accepted:
        template = render(parse_config(_monitoring(region), root=REPO)).templates["endpoint-prod.json"]
        by_body.setdefault(json.dumps(template, sort_keys=True), (template, []))[1].append(region)
    assert [line for template, among in by_body.values() for line in cfn_lint_findings(template, among)] == []


# ----- the Train action's baseline job ----------------------------------------------------------


def _config(**settings) -> PipelineConfig:
    return parse_config(_monitoring(**settings), root=REPO)


@pytest.fixture
def sagemaker(aws_env):
    client = boto3.session.Session(region_name=REGION).client("sagemaker")
    with Stubber(client) as stubber:
        client.stubber = stubber  # type: ignore[attr-defined]
        yield client
    stubber.assert_no_pending_responses()


def _described(status: str, **extra) -> dict:
    return {
        "ProcessingJobName": JOB,
        "ProcessingJobArn": f"arn:aws:sagemaker:{REGION}:123456789012:processing-job/{JOB}",
        "ProcessingJobStatus": status,
        "ProcessingResources": {
            "ClusterConfig": {"InstanceCount": 1, "InstanceType": "ml.m5.xlarge", "VolumeSizeInGB": 20}
        },
        "AppSpecification": {"ImageUri": monitoring.image_uri(REGION)},
        "CreationTime": "2026-11-23T07:25:00Z",
        **extra,
    }


def _compute(client, config=None, poll=0.0):
    return baseline.compute_baseline(
        client,
        config or _config(),
        bucket=BUCKET,
        job_name=JOB,
        data_uri=DATA,
        role_arn=ROLE,
        kms_key_arn=KEY,
        tags={"sagemaker-cd:project": "iris-classifier"},
        poll_seconds=poll,
    )


def test_the_baseline_job_runs_the_analyzer_over_the_training_data_as_the_sdk_does(sagemaker, monkeypatch):
    monkeypatch.setattr(baseline.time, "sleep", lambda s: None)
    prefix = f"s3://{BUCKET}/iris-classifier/baselines/{JOB}/"
    expected = {
        "ProcessingJobName": JOB,
        "ProcessingInputs": [
            {
                "InputName": "baseline_dataset_input",
                "S3Input": {
                    "S3Uri": DATA,
                    "LocalPath": "/opt/ml/processing/input/baseline_dataset_input",
                    "S3DataType": "S3Prefix",
                    "S3InputMode": "File",
                    "S3DataDistributionType": "FullyReplicated",
                },
            }
        ],
        "ProcessingOutputConfig": {
            "Outputs": [
                {
                    "OutputName": "monitoring_output",
                    "S3Output": {"S3Uri": prefix, "LocalPath": "/opt/ml/processing/output", "S3UploadMode": "EndOfJob"},
                }
            ],
            "KmsKeyId": KEY,
        },
        "ProcessingResources": {
            "ClusterConfig": {
                "InstanceCount": 1,
                "InstanceType": "ml.m5.xlarge",
                "VolumeSizeInGB": 20,
                "VolumeKmsKeyId": KEY,
            }
        },
        "StoppingCondition": {"MaxRuntimeInSeconds": 3600},
        "AppSpecification": {
            "ImageUri": "156813124566.dkr.ecr.us-east-1.amazonaws.com/sagemaker-model-monitor-analyzer"
        },
        "Environment": {
            "dataset_format": '{"csv": {"header": true, "output_columns_position": "END"}}',
            "dataset_source": "/opt/ml/processing/input/baseline_dataset_input",
            "output_path": "/opt/ml/processing/output",
            "publish_cloudwatch_metrics": "Disabled",
        },
        "RoleArn": ROLE,
        "Tags": [{"Key": "sagemaker-cd:project", "Value": "iris-classifier"}],
    }
    stub = sagemaker.stubber
    stub.add_response("create_processing_job", {"ProcessingJobArn": "arn"}, expected)
    stub.add_response("describe_processing_job", _described("InProgress"), {"ProcessingJobName": JOB})
    stub.add_response("describe_processing_job", _described("Completed"), {"ProcessingJobName": JOB})
    result = _compute(sagemaker)
    assert result is not None
    assert result.parameters() == {
        "BaselineStatisticsUri": prefix + "statistics.json",
        "BaselineConstraintsUri": prefix + "constraints.json",
    }


def test_a_headerless_csv_with_the_label_first_is_described_so():
    settings = _config(header=False, label_position="start").environment("prod").monitoring
    assert json.loads(monitoring.baseline_environment(settings.header, settings.label_position)["dataset_format"]) == {
        "csv": {"header": False, "output_columns_position": "START"}
    }


@pytest.mark.parametrize(
    ("status", "extra", "expected"),
    [
        ("Failed", {"FailureReason": "AlgorithmError: no data"}, f"baseline job {JOB} Failed: AlgorithmError: no data"),
        ("Stopped", {"ExitMessage": "stopped by user"}, f"baseline job {JOB} Stopped: stopped by user"),
        ("Failed", {}, f"baseline job {JOB} Failed: no reason given"),
    ],
)
def test_a_baseline_job_that_does_not_complete_fails_train_in_one_line(sagemaker, status, extra, expected):
    sagemaker.stubber.add_response("create_processing_job", {"ProcessingJobArn": "arn"}, None)
    sagemaker.stubber.add_response("describe_processing_job", _described(status, **extra), {"ProcessingJobName": JOB})
    with pytest.raises(StageFailure) as exc:
        _compute(sagemaker)
    assert str(exc.value) == expected


def test_a_baseline_job_that_overruns_the_wait_is_stopped(sagemaker):
    ticks = iter([0.0, 10.0, 5000.0])
    sagemaker.stubber.add_response("describe_processing_job", _described("InProgress"), {"ProcessingJobName": JOB})
    sagemaker.stubber.add_response("describe_processing_job", _described("InProgress"), {"ProcessingJobName": JOB})
    sagemaker.stubber.add_response("stop_processing_job", {}, {"ProcessingJobName": JOB})
    with pytest.raises(StageFailure) as exc:
        baseline.wait_for_baseline_job(
            sagemaker, JOB, 1.0, limit_s=4200, sleep=lambda s: None, clock=lambda: next(ticks)
        )
    assert str(exc.value) == f"baseline job {JOB} still InProgress after 4200 s; asked SageMaker to stop it"


def test_an_interrupted_wait_stops_the_baseline_job(sagemaker):
    def interrupted(seconds):
        raise KeyboardInterrupt

    sagemaker.stubber.add_response("describe_processing_job", _described("InProgress"), {"ProcessingJobName": JOB})
    sagemaker.stubber.add_response("stop_processing_job", {}, {"ProcessingJobName": JOB})
    with pytest.raises(StageFailure, match="interrupted while waiting for baseline job"):
        baseline.wait_for_baseline_job(sagemaker, JOB, 1.0, sleep=interrupted)


def test_no_monitoring_means_no_baseline_job(sagemaker):
    assert _compute(sagemaker, parse_config(copy.deepcopy(SAMPLE), root=REPO)) is None  # the Stubber saw no call


def test_train_writes_the_baseline_into_the_endpoint_parameters(aws_env, tmp_path, monkeypatch):
    """The whole Train action under moto (which completes processing jobs at once) for a monitoring
    config: the parameters file every endpoint stack deploys with carries the two baseline URIs."""
    from scripts import train

    repo = tmp_path / "repo"
    (repo / "model" / "data").mkdir(parents=True)
    (repo / "model" / "endpoint-tests").mkdir(parents=True)
    (repo / "model" / "train.py").write_text("print('validation:accuracy=0.97')\n")
    (repo / "model" / "inference.py").write_text("")
    (repo / "model" / "data" / "iris.csv").write_text("a,b,c,d,species\n5.1,3.5,1.4,0.2,setosa\n")
    (repo / "model" / "endpoint-tests" / "one.json").write_text(
        '{"body": "5.1,3.5,1.4,0.2", "content_type": "text/csv"}'
    )
    data = _monitoring()
    data["quality_gate"].pop("champion")
    (repo / "pipeline.yml").write_text(yaml.safe_dump(data))
    session = boto3.session.Session(region_name=REGION)
    created = []

    def made(service, region=None):
        client = session.client(service, region_name=region)
        if service == "sagemaker":
            client.meta.events.register(
                "before-parameter-build.sagemaker.CreateProcessingJob", lambda params, **_: created.append(params)
            )
            client.meta.events.register("after-call.sagemaker.CreateTrainingJob", _complete_with_metric)
        return client

    monkeypatch.setattr(train, "client", made)
    with mock_aws():
        session.client("s3").create_bucket(Bucket=BUCKET)
        # The model registry Train adds the model to (the pipeline stack's group).
        session.client("sagemaker").create_model_package_group(ModelPackageGroupName="iris-classifier")
        # The sample's training data lives in the model bucket (training_data.model_bucket_prefix).
        session.client("s3").put_object(
            Bucket=BUCKET, Key="iris-classifier/training-data/iris.csv", Body=b"5.1,3.5,1.4,0.2,setosa\n"
        )
        code = train.main(
            [
                "--config",
                str(repo / "pipeline.yml"),
                "--output-dir",
                str(tmp_path / "out"),
                "--model-bucket",
                BUCKET,
                "--role-arn",
                ROLE,
                "--commit",
                "3f2a9c1d0e5b6a7980112233445566778899aabb",
                "--poll-seconds",
                "0.01",
            ]
        )
    assert code == 0
    written = json.loads((tmp_path / "out" / "endpoint-parameters-prod.json").read_text())["Parameters"]
    (request,) = created
    job = request["ProcessingJobName"]
    assert written["ModelVersion"] == job  # the baseline job is named after the training job
    assert written["BaselineStatisticsUri"] == f"s3://{BUCKET}/iris-classifier/baselines/{job}/statistics.json"
    assert written["BaselineConstraintsUri"] == f"s3://{BUCKET}/iris-classifier/baselines/{job}/constraints.json"
    assert tuple(written) == run_parameters(_config())


def _complete_with_metric(parsed, **_):
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.sagemaker.models import sagemaker_backends

    job = sagemaker_backends[DEFAULT_ACCOUNT_ID][REGION].training_jobs[parsed["TrainingJobArn"].rsplit("/", 1)[1]]
    job.training_job_status = job.secondary_status = "Completed"
    job.final_metric_data_list = [{"MetricName": "validation:accuracy", "Value": 0.97, "Timestamp": job.creation_time}]


def test_make_cost_names_the_monitoring_jobs_as_usage_based():
    from pipeline.cost import estimate, load_table

    lines = {item.name: item for item in estimate(_config(), load_table(), kms_keys=1)}
    assert lines["monitoring"].monthly is None
    assert "prod hourly" in lines["monitoring"].basis
    sample = estimate(parse_config(copy.deepcopy(SAMPLE), root=REPO), load_table(), kms_keys=1)
    assert "monitoring" not in {item.name for item in sample}
