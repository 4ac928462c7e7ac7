"""The batch transform step: its config, its place in the pipeline and the approval message, and
scripts/batch_transform.py under moto (a completed job) and botocore's Stubber (what moto cannot do)."""

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

from pipeline.config import ConfigError, PipelineConfig, parse_config
from pipeline.synth import synthesize
from scripts import batch_transform
from scripts.common import StageFailure

REPO = Path(__file__).resolve().parent.parent
SAMPLE = yaml.safe_load((REPO / "pipeline.yml").read_text())
REGION = "us-east-1"
BUCKET = "model-bucket"
KEY = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
JOB = "iris-classifier-abc1234-20260101T000000"
BATCH = {"after": "qa", "input": {"model_bucket_prefix": "batch-input/"}}


def _data(batch: dict | None = None) -> dict:
    data = copy.deepcopy(SAMPLE)
    data["batch_transform"] = copy.deepcopy(BATCH if batch is None else batch)
    return data


def _config(batch: dict | None = None) -> PipelineConfig:
    return parse_config(_data(batch), root=REPO)


# ----- config --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("batch", "message"),
    [
        (
            {**BATCH, "after": "staging"},
            "pipeline.yml: batch_transform.after: 'staging' is not one of the environments (qa, prod)",
        ),
        (
            {"after": "qa", "input": {}},
            "pipeline.yml: batch_transform.input: set exactly one of model_bucket_prefix or s3_uri",
        ),
        (
            {"after": "qa", "input": {"model_bucket_prefix": "batch-output/"}},
            "batch_transform.input.model_bucket_prefix: 'batch-output/' overlaps the pipeline's own folder",
        ),
        ({"after": "qa", "input": {"s3_uri": "s3://Bad_Bucket/x/"}}, "is not an S3 bucket name"),
        ({**BATCH, "split_type": "Lines"}, "batch_transform.split_type"),
        ({**BATCH, "max_wait_minutes": 0}, "batch_transform.max_wait_minutes: must be at least 1"),
    ],
)
def test_the_config_refuses_in_one_line(batch, message):
    with pytest.raises(ConfigError) as exc:
        _config(batch)
    (problem,) = exc.value.problems
    assert message in problem and "\n" not in problem


def test_training_data_may_not_sit_in_a_folder_the_pipeline_writes():
    data = copy.deepcopy(SAMPLE)
    data["training_data"]["model_bucket_prefix"] = "async-output/"
    with pytest.raises(ConfigError) as exc:
        parse_config(data, root=REPO)
    assert "overlaps the pipeline's own folder async-output/" in exc.value.problems[0]


# ----- pipeline template ---------------------------------------------------------------------------


@cache
def _pipeline() -> dict:
    return synthesize(_config()).templates["pipeline.json"]


def _stages(pipeline: dict) -> dict[str, list[dict]]:
    (resource,) = [r for r in pipeline["Resources"].values() if r["Type"] == "AWS::CodePipeline::Pipeline"]
    return {stage["Name"]: stage["Actions"] for stage in resource["Properties"]["Stages"]}


def test_the_step_runs_after_the_named_environments_tests_on_the_model_it_deployed():
    stages = _stages(_pipeline())
    qa = {a["Name"]: a for a in stages["Qa"]}
    assert qa["BatchTransform"]["RunOrder"] > qa["EndpointTest"]["RunOrder"]
    env = json.loads(qa["BatchTransform"]["Configuration"]["EnvironmentVariables"])
    assert {"name": "BATCH_MODEL_NAME", "value": "#{QaDeployEndpointVariables.ModelName}", "type": "PLAINTEXT"} in env
    assert "BatchTransform" not in {a["Name"] for a in stages["Prod"]}


def test_its_summary_joins_the_next_approval():
    (approve,) = _stages(_pipeline())["ApproveProd"]
    text = json.dumps(approve["Configuration"]["CustomData"])
    assert "Batch transform: #{QaBatchTransformVariables.BATCH_SUMMARY}." in text
    sample = synthesize(parse_config(copy.deepcopy(SAMPLE), root=REPO)).templates["pipeline.json"]
    assert "BATCH_SUMMARY" not in json.dumps(sample) and "BatchTransform" not in json.dumps(sample)


def test_the_roles_get_the_transform_job_and_the_output_folder():
    resources = _pipeline()["Resources"]
    statements = resources["BatchTransformRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]
    step = json.dumps(statements)
    assert "sagemaker:CreateTransformJob" in step and "transform-job/iris-classifier-*" in step
    assert "iris-classifier/batch-input/*" in step and "iris-classifier/batch-output/*" in step
    # On the model bucket it only lists: the job reads and writes with the model's role.
    on_model_bucket = [st["Action"] for st in statements if "ModelBucket" in json.dumps(st["Resource"])]
    assert on_model_bucket == [["s3:ListBucket"], ["s3:ListBucket"]]
    execution = json.dumps(resources["SageMakerExecutionRole"]["Properties"]["Policies"])
    assert "iris-classifier/batch-output/*" in execution


# ----- the script: deciding ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "waited", "move"),
    [("InProgress", 10, "wait"), ("InProgress", 60, "stop"), ("Completed", 999, "done"), ("Failed", 0, "done")],
)
def test_the_next_move_on_a_running_job(status, waited, move):
    assert batch_transform.next_move(status, waited, 60) == move


def test_missing_outputs_are_the_inputs_without_their_out_object():
    inputs = ["in/a.csv", "in/sub/b.csv", "in/c.csv"]
    outputs = {"out/a.csv.out", "out/sub/b.csv.out", "out/c.csv"}
    assert batch_transform.missing_outputs(inputs, outputs, "in/", "out/") == ["c.csv"]


def test_the_request_keys_the_volume_except_on_local_storage_and_assembles_lines_only_when_split_by_line():
    config = _config()
    assert config.batch_transform is not None
    request = batch_transform.transform_job_request(
        config,
        config.batch_transform,
        job_name=JOB,
        model_name="m",
        input_uri="s3://b/i/",
        output_uri="s3://b/o/",
        key_arn=KEY,
    )
    assert request["TransformResources"]["VolumeKmsKeyId"] == KEY
    assert request["TransformOutput"] == {"S3OutputPath": "s3://b/o/", "KmsKeyId": KEY, "AssembleWith": "Line"}
    nvme = _config({**BATCH, "instance_type": "ml.m5d.large", "split_type": "None"}).batch_transform
    assert nvme is not None
    request = batch_transform.transform_job_request(
        config, nvme, job_name=JOB, model_name="m", input_uri="s3://b/i/", output_uri="s3://b/o/", key_arn=KEY
    )
    assert "VolumeKmsKeyId" not in request["TransformResources"]
    assert "AssembleWith" not in request["TransformOutput"]


def test_the_summary_names_a_few_missing_outputs_and_stays_short():
    result = batch_transform.Result(JOB, "Completed", 6, ["a", "b", "c", "d", "e"], 2.0)
    assert result.summary() == f"job {JOB} Completed: 6 inputs, 1 outputs, missing a, b, c and 2 more, 2.0 min"
    assert not result.passed
    long = batch_transform.Result(JOB, "Completed", 2, ["x" * 500], 1.0)
    assert len(long.summary()) == batch_transform.SUMMARY_MAX


# ----- the script: under moto and Stubber ------------------------------------------------------------


@pytest.fixture
def s3(aws_env, monkeypatch):
    monkeypatch.setattr(batch_transform, "transform_job_name", lambda *_: JOB)
    with mock_aws():
        s3 = boto3.client("s3", region_name=REGION)
        s3.create_bucket(Bucket=BUCKET)
        yield s3


def _repo(tmp_path: Path, batch: dict | None = BATCH) -> Path:
    (tmp_path / "model").symlink_to(REPO / "model")
    data = _data(batch) if batch is not None else copy.deepcopy(SAMPLE)
    (tmp_path / "pipeline.yml").write_text(yaml.safe_dump(data))
    return tmp_path / "pipeline.yml"


def _main(config: Path, tmp_path: Path) -> int:
    return batch_transform.main(
        [
            "--config",
            str(config),
            "--model-name",
            "iris-classifier-qa-model",
            "--bucket",
            BUCKET,
            "--kms-key",
            KEY,
            "--commit",
            "abc1234",
            "--exports-file",
            str(tmp_path / "exports.env"),
        ]
    )


def _inputs(s3, *names: str) -> None:
    for name in names:
        s3.put_object(Bucket=BUCKET, Key=f"iris-classifier/batch-input/{name}", Body=b"5.1,3.5,1.4,0.2\n")


def _outputs(s3, *names: str) -> None:
    for name in names:
        s3.put_object(Bucket=BUCKET, Key=f"iris-classifier/batch-output/{JOB}/{name}.out", Body=b"[0]\n")


def test_a_completed_job_with_every_output_passes_and_reports_the_counts(s3, tmp_path, capsys):
    _inputs(s3, "a.csv", "b.csv")
    _outputs(s3, "a.csv", "b.csv")
    assert _main(_repo(tmp_path), tmp_path) == 0
    exports = (tmp_path / "exports.env").read_text()
    assert f"BATCH_SUMMARY='job {JOB} Completed: 2 inputs, 2 outputs, " in exports
    job = boto3.client("sagemaker", region_name=REGION).describe_transform_job(TransformJobName=JOB)
    assert job["TransformInput"]["DataSource"]["S3DataSource"]["S3Uri"] == f"s3://{BUCKET}/iris-classifier/batch-input/"
    assert job["TransformOutput"]["S3OutputPath"] == f"s3://{BUCKET}/iris-classifier/batch-output/{JOB}/"


def test_an_input_without_its_output_fails_naming_it(s3, tmp_path, capsys):
    _inputs(s3, "a.csv", "b.csv")
    _outputs(s3, "a.csv")
    assert _main(_repo(tmp_path), tmp_path) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0
    assert "2 inputs, 1 outputs, missing b.csv" in err


def test_no_input_objects_is_one_line_and_the_summary_says_not_run(s3, tmp_path, capsys):
    assert _main(_repo(tmp_path), tmp_path) == 1
    err = capsys.readouterr().err.strip()
    assert err == (
        f"batch-transform: FAILED: no input objects under s3://{BUCKET}/iris-classifier/batch-input/ "
        "(batch_transform.input)"
    )
    assert "BATCH_SUMMARY='not run: no input objects" in (tmp_path / "exports.env").read_text()


def test_a_config_without_a_batch_transform_is_exit_2(tmp_path, capsys):
    assert _main(_repo(tmp_path, batch=None), tmp_path) == 2
    assert "has no batch_transform section" in capsys.readouterr().err


def test_a_failed_job_fails_with_sagemakers_reason(s3, tmp_path, capsys, monkeypatch):
    _inputs(s3, "a.csv")
    sagemaker = boto3.client("sagemaker", region_name=REGION)
    stubber = Stubber(sagemaker)
    stubber.add_response("create_transform_job", {"TransformJobArn": f"arn:aws:sagemaker:{REGION}:1:transform-job/x"})
    stubber.add_response(
        "describe_transform_job",
        {
            "TransformJobName": JOB,
            "TransformJobArn": f"arn:aws:sagemaker:{REGION}:1:transform-job/x",
            "TransformJobStatus": "Failed",
            "FailureReason": "ClientError: 415 unsupported content type",
            "ModelName": "m",
            "TransformInput": {"DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": "s3://b/i/"}}},
            "TransformResources": {"InstanceType": "ml.m5.large", "InstanceCount": 1},
            "CreationTime": "2026-01-01T00:00:00Z",
        },
    )
    real = batch_transform.client
    monkeypatch.setattr(
        batch_transform,
        "client",
        lambda service, region=None: sagemaker if service == "sagemaker" else real(service, region),
    )
    with stubber:
        assert _main(_repo(tmp_path), tmp_path) == 1
    err = capsys.readouterr().err.strip()
    assert f"job {JOB} Failed: 1 inputs (ClientError: 415 unsupported content type)" in err


def test_a_job_running_past_the_wait_is_stopped_in_one_line():
    sagemaker = boto3.client("sagemaker", region_name=REGION, aws_access_key_id="x", aws_secret_access_key="x")
    stubber = Stubber(sagemaker)
    running = {
        "TransformJobName": JOB,
        "TransformJobArn": f"arn:aws:sagemaker:{REGION}:1:transform-job/x",
        "TransformJobStatus": "InProgress",
        "ModelName": "m",
        "TransformInput": {"DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": "s3://b/i/"}}},
        "TransformResources": {"InstanceType": "ml.m5.large", "InstanceCount": 1},
        "CreationTime": "2026-01-01T00:00:00Z",
    }
    # Looked at 1800 s in (waits), then 3600 s in (stops).
    for _ in range(2):
        stubber.add_response("describe_transform_job", running, {"TransformJobName": JOB})
    stubber.add_response("stop_transform_job", {}, {"TransformJobName": JOB})
    ticks = iter(range(0, 10_000, 1800))
    with stubber, pytest.raises(StageFailure) as exc:
        batch_transform.wait_for_job(sagemaker, JOB, 3600, sleep=lambda _: None, clock=lambda: next(ticks))
    stubber.assert_no_pending_responses()
    assert str(exc.value) == (
        f"transform job {JOB} still InProgress after 60 min (batch_transform.max_wait_minutes); "
        "asked SageMaker to stop it"
    )
