"""scripts/train.py under moto: packaging, uploads, the training request, waiting, the gate, outputs.

moto marks every training job Completed the moment it is created and reports only a
`train:progress` metric, so `JobOutcome` rewrites the job in moto's backend right after
CreateTrainingJob (a botocore after-call hook on the real client) and records each request.
moto has no StopTrainingJob, so the interrupt tests use botocore's Stubber.
"""

from __future__ import annotations

import copy
import io
import json
import os
import shlex
import signal
import tarfile
import warnings
from datetime import datetime, timezone

import boto3
import pytest
import yaml
from botocore.exceptions import ClientError
from botocore.stub import Stubber
from moto import mock_aws
from moto.core import DEFAULT_ACCOUNT_ID
from moto.sagemaker.models import sagemaker_backends

from pipeline.aws import RETRIES
from pipeline.config import parse_config
from pipeline.names import TRAINING_JOB_SUFFIX_LEN
from pipeline.stacks.endpoint import RUN_PARAMETERS, parameters_file
from scripts import train
from scripts.common import StageFailure

REGION = "us-east-1"
BUCKET = "model-bucket"
ROLE = f"arn:aws:iam::{DEFAULT_ACCOUNT_ID}:role/sagemaker-training"
KEY = f"arn:aws:kms:{REGION}:{DEFAULT_ACCOUNT_ID}:key/11111111-2222-3333-4444-555555555555"
COMMIT = "3f2a9c1d0e5b6a7980112233445566778899aabb"
PROJECT = "iris-classifier"
PROJECT_GROUP = PROJECT  # pipeline.names: the model package group is named after the project
IMAGE = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.2-1-cpu-py3"
CODE_URI = f"s3://{BUCKET}/{PROJECT}/code/{COMMIT}/sourcedir.tar.gz"

STACK_ENV = ("MODEL_BUCKET", "SAGEMAKER_ROLE_ARN", "KMS_KEY_ARN", "COMMIT_ID", "CODEBUILD_RESOLVED_SOURCE_VERSION")


def base_config() -> dict:
    """A valid pipeline.yml for the tmp repo the tests build."""
    return {
        "project": PROJECT,
        "region": REGION,
        "source": {"github": {"owner": "example", "repo": "sagemaker-cd", "branch": "main"}},
        "model": {
            "framework": "sklearn",
            "framework_version": "1.2-1",
            "source_dir": "model",
            "entry_point": "train.py",
            "inference_entry_point": "inference.py",
            "hyperparameters": {"n-estimators": 100, "criterion": "gini", "bootstrap": True},
            "training": {
                "instance_type": "ml.m5.large",
                "instance_count": 1,
                "volume_gb": 10,
                "max_runtime_minutes": 30,
                "spot": False,
            },
        },
        "training_data": {"local_dir": "model/data"},
        "quality_gate": {"metric": "validation:accuracy", "threshold": 0.9, "direction": "maximize"},
        "environments": [
            {"name": "qa", "instance_type": "ml.m5.large", "initial_instance_count": 1},
            {"name": "prod", "approval": True, "instance_type": "ml.c5.xlarge", "initial_instance_count": 2},
        ],
        "endpoint_tests": {"payloads_dir": "model/endpoint-tests"},
        "tags": {"team": "ml-platform"},
    }


@pytest.fixture
def repo(tmp_path):
    """A tmp checkout: model code with a cache, data and test payloads inside source_dir, and pipeline.yml."""
    root = tmp_path / "repo"
    files = {
        "model/train.py": "print('validation:accuracy=0.9667')\n",
        "model/inference.py": "def model_fn(model_dir):\n    return None\n",
        "model/lib/features.py": "COLUMNS = 4\n",
        "model/__pycache__/train.cpython-311.pyc": "cache",
        "model/lib/old.pyc": "cache",
        "model/data/iris.csv": "5.1,3.5,1.4,0.2,setosa\n",
        "model/data/extra/more.csv": "6.3,3.3,6.0,2.5,virginica\n",
        "model/endpoint-tests/setosa.json": '{"body": [[5.1, 3.5, 1.4, 0.2]]}\n',
    }
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    write_config(root, base_config())
    return root


def write_config(root, data: dict):
    """Write pipeline.yml into the tmp repo and return its path."""
    path = root / "pipeline.yml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.fixture
def fake_aws(aws_env, monkeypatch):
    """conftest's fake credentials and region, without the stack variables CodeBuild would set."""
    for name in STACK_ENV:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="module")
def session():
    """One boto3 session for the module's clients: botocore then parses each service model once,
    which keeps the suite fast (a new session per client re-reads SageMaker's large model)."""
    return boto3.session.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", aws_session_token="testing", region_name=REGION
    )


@pytest.fixture
def s3(fake_aws, session):
    """moto, with the model bucket and the project's model package group created; yields an S3 client."""
    with mock_aws():
        client = session.client("s3")
        client.create_bucket(Bucket=BUCKET)
        session.client("sagemaker", region_name=client.meta.region_name).create_model_package_group(
            ModelPackageGroupName=PROJECT_GROUP
        )
        yield client


class JobOutcome:
    """What the training job should end as; records every CreateTrainingJob request."""

    def __init__(self):
        self.status = "Completed"
        self.metrics = {"validation:accuracy": 0.9667}
        self.failure_reason = None
        self.requests: list[dict] = []
        self.model_archive: bytes | None = None  # put at the job's S3ModelArtifacts when set
        self.s3 = None

    def attach(self, sagemaker) -> None:
        """Hook a real (moto-backed) SageMaker client."""
        sagemaker.meta.events.register("before-parameter-build.sagemaker.CreateTrainingJob", self._record)
        sagemaker.meta.events.register("after-call.sagemaker.CreateTrainingJob", self._apply)

    def _record(self, params, **_):
        self.requests.append(copy.deepcopy(params))

    def _apply(self, **_):
        job = sagemaker_backends[DEFAULT_ACCOUNT_ID][REGION].training_jobs[self.requests[-1]["TrainingJobName"]]
        job.training_job_status = job.secondary_status = self.status
        job.final_metric_data_list = [
            {"MetricName": name, "Value": value, "Timestamp": job.creation_time} for name, value in self.metrics.items()
        ]
        if self.failure_reason:
            job.failure_reason = self.failure_reason
        if self.model_archive is not None and self.s3 is not None:  # what the container would upload
            bucket, _, key = job.model_artifacts["S3ModelArtifacts"].removeprefix("s3://").partition("/")
            self.s3.put_object(Bucket=bucket, Key=key, Body=self.model_archive)

    @property
    def request(self) -> dict:
        """The one CreateTrainingJob request made."""
        assert len(self.requests) == 1
        return self.requests[0]


@pytest.fixture
def outcome(s3, session, monkeypatch):
    """The script's clients are moto's; its SageMaker client ends jobs as `outcome` says."""
    result = JobOutcome()
    result.s3 = s3

    def hooked(service, region=None):
        made = session.client(service, region_name=region, config=RETRIES)
        if service == "sagemaker":
            result.attach(made)
        return made

    monkeypatch.setattr(train, "client", hooked)
    return result


def run(root, tmp_path, *extra: str, commit: str | None = COMMIT) -> int:
    """main() with the stack values as flags and outputs in tmp_path/out (no --commit for commit=None)."""
    return train.main(
        [
            "--config",
            str(root / "pipeline.yml"),
            "--output-dir",
            str(tmp_path / "out"),
            "--model-bucket",
            BUCKET,
            "--role-arn",
            ROLE,
            *(["--commit", commit] if commit else []),
            "--poll-seconds",
            "1",
            *extra,
        ]
    )


def job_name(outcome: JobOutcome) -> str:
    """The name the script gave its training job."""
    return outcome.request["TrainingJobName"]


# --- the whole action ---------------------------------------------------------------------------


def test_passing_job_writes_the_run_parameters_every_environment_deploys_with(repo, tmp_path, outcome):
    assert run(repo, tmp_path) == 0
    name = job_name(outcome)
    for env in ("qa", "prod"):  # one file per environment (each its own serving image)
        written = json.loads((tmp_path / "out" / parameters_file(env)).read_text())
        assert written == {
            "Parameters": {
                "ModelDataUrl": f"s3://{BUCKET}/{PROJECT}/models/{name}/output/model.tar.gz",
                "ImageUri": IMAGE,
                "SourceDir": CODE_URI,
                "ModelVersion": name,
            },
            "Tags": {"team": "ml-platform", "sagemaker-cd:project": PROJECT, "sagemaker-cd:commit": COMMIT},
        }
        # Exactly the parameters the endpoint templates leave to the run.
        assert tuple(written["Parameters"]) == RUN_PARAMETERS
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(
        [parameters_file("qa"), parameters_file("prod"), "exports.env", train.SOURCE_ARCHIVE]
    )


def test_passing_job_writes_exports(repo, tmp_path, outcome, capsys):
    assert run(repo, tmp_path) == 0
    name = job_name(outcome)
    assert (tmp_path / "out/exports.env").read_text().splitlines() == [
        "export METRIC_NAME=validation:accuracy",
        "export METRIC_VALUE=0.9667",
        f"export TRAINING_JOB_NAME={name}",
        f"export MODEL_DATA_URL=s3://{BUCKET}/{PROJECT}/models/{name}/output/model.tar.gz",
        f"export DATA_VERSION={tag(outcome, 'sagemaker-cd:data-version')}",
        "export MODEL_ORIGIN='trained for this commit'",
        f"export MODEL_PACKAGE_ARN=arn:aws:sagemaker:us-east-1:123456789012:model-package/{PROJECT_GROUP}/1",
        "export MODEL_PACKAGE_VERSION=1",
    ]
    assert "validation:accuracy = 0.9667 passes the quality gate (maximize, threshold 0.9)" in capsys.readouterr().out


def test_uploads_code_and_data_under_the_commit(repo, tmp_path, outcome, s3):
    assert run(repo, tmp_path) == 0
    keys = {obj["Key"] for obj in s3.list_objects_v2(Bucket=BUCKET)["Contents"]}
    assert keys == {
        f"{PROJECT}/code/{COMMIT}/sourcedir.tar.gz",
        f"{PROJECT}/data/{COMMIT}/iris.csv",
        f"{PROJECT}/data/{COMMIT}/extra/more.csv",
    }


def test_source_archive_holds_code_at_its_root_without_caches_data_or_payloads(repo, tmp_path, outcome, s3):
    assert run(repo, tmp_path) == 0
    body = s3.get_object(Bucket=BUCKET, Key=f"{PROJECT}/code/{COMMIT}/sourcedir.tar.gz")["Body"].read()
    with tarfile.open(fileobj=io.BytesIO(body), mode="r:gz") as tar:
        assert sorted(tar.getnames()) == ["inference.py", "lib/features.py", "train.py"]


def test_uploads_use_the_kms_key_when_given(repo, tmp_path, outcome, s3):
    assert run(repo, tmp_path, "--kms-key-arn", KEY) == 0
    head = s3.head_object(Bucket=BUCKET, Key=f"{PROJECT}/data/{COMMIT}/iris.csv")
    assert (head["ServerSideEncryption"], head["SSEKMSKeyId"]) == ("aws:kms", KEY)


def test_metric_below_threshold_fails_naming_value_and_threshold(repo, tmp_path, outcome, capsys):
    outcome.metrics = {"validation:accuracy": 0.85}
    assert run(repo, tmp_path) == 1
    err = capsys.readouterr().err
    assert err == "train: FAILED: validation:accuracy = 0.8500 misses the quality gate (maximize, threshold 0.9)\n"
    assert not (tmp_path / "out/qa.json").exists()


def test_missing_metric_fails_naming_the_regex(repo, tmp_path, outcome, capsys):
    outcome.metrics = {"train:progress": 100.0}
    assert run(repo, tmp_path) == 1
    err = capsys.readouterr().err
    assert "did not report validation:accuracy" in err
    assert repr(r"validation:accuracy=([-+]?[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)") in err


def test_failed_job_fails_with_its_reason(repo, tmp_path, outcome, capsys):
    outcome.status = "Failed"
    outcome.failure_reason = "AlgorithmError: ExecuteUserScriptError: exit code 1"
    assert run(repo, tmp_path) == 1
    assert capsys.readouterr().err == (
        f"train: FAILED: training job {job_name(outcome)} Failed: AlgorithmError: ExecuteUserScriptError: exit code 1\n"
    )


def test_stopped_job_fails(repo, tmp_path, outcome, capsys):
    outcome.status = "Stopped"
    assert run(repo, tmp_path) == 1
    assert capsys.readouterr().err == f"train: FAILED: training job {job_name(outcome)} was Stopped\n"


def test_commit_comes_from_codebuild_when_not_given(repo, tmp_path, outcome, monkeypatch):
    monkeypatch.setenv("CODEBUILD_RESOLVED_SOURCE_VERSION", "ABCDEF0123456789")
    assert run(repo, tmp_path, commit=None) == 0
    assert job_name(outcome).startswith(f"{PROJECT}-abcdef0-")


# --- the CreateTrainingJob request --------------------------------------------------------------


def test_request_json_encodes_hyperparameters_with_script_mode_settings(repo, tmp_path, outcome):
    assert run(repo, tmp_path) == 0
    assert outcome.request["HyperParameters"] == {
        "n-estimators": "100",
        "criterion": '"gini"',
        "bootstrap": "true",
        "sagemaker_program": '"train.py"',
        "sagemaker_submit_directory": json.dumps(CODE_URI),
        "sagemaker_region": '"us-east-1"',
        "sagemaker_container_log_level": "20",
    }


def test_request_defines_the_gate_metric_and_image(repo, tmp_path, outcome):
    assert run(repo, tmp_path) == 0
    assert outcome.request["AlgorithmSpecification"] == {
        "TrainingImage": IMAGE,
        "TrainingInputMode": "File",
        "MetricDefinitions": [
            {
                "Name": "validation:accuracy",
                "Regex": r"validation:accuracy=([-+]?[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)",
            }
        ],
    }


def test_request_reads_the_commit_data_and_tags_the_job(repo, tmp_path, outcome):
    assert run(repo, tmp_path) == 0
    request = outcome.request
    assert (
        request["InputDataConfig"][0]["DataSource"]["S3DataSource"]["S3Uri"]
        == f"s3://{BUCKET}/{PROJECT}/data/{COMMIT}/"
    )
    assert request["OutputDataConfig"] == {"S3OutputPath": f"s3://{BUCKET}/{PROJECT}/models/"}
    assert request["Tags"] == [
        {"Key": "team", "Value": "ml-platform"},
        {"Key": "sagemaker-cd:project", "Value": PROJECT},
        {"Key": "sagemaker-cd:commit", "Value": COMMIT},
        {"Key": "sagemaker-cd:data-version", "Value": tag(outcome, "sagemaker-cd:data-version")},
        {"Key": "sagemaker-cd:inputs-hash", "Value": tag(outcome, "sagemaker-cd:inputs-hash")},
    ]


def test_run_reason_is_tagged_on_the_job(repo, tmp_path, outcome, monkeypatch):
    monkeypatch.setenv("RUN_REASON", "retrain after label fix")
    assert run(repo, tmp_path) == 0
    assert {"Key": "sagemaker-cd:run-reason", "Value": "retrain after label fix"} in outcome.request["Tags"]
    # The endpoint stacks keep the commit only: the reason belongs to the run's job.
    written = json.loads((tmp_path / "out" / parameters_file("prod")).read_text())
    assert "sagemaker-cd:run-reason" not in written["Tags"]


def test_run_reason_a_tag_cannot_hold_is_made_safe_in_one_line(repo, tmp_path, outcome, capsys):
    assert run(repo, tmp_path, "--reason", "fix (#42) " + "x" * 300) == 0
    (tag,) = [t["Value"] for t in outcome.request["Tags"] if t["Key"] == "sagemaker-cd:run-reason"]
    assert tag.startswith("fix --42- x") and len(tag) == 256
    (line,) = [line for line in capsys.readouterr().out.splitlines() if "does not fit a SageMaker tag" in line]
    assert line.startswith("run reason 'fix (#42) x") and "tagged as 'fix --42- x" in line


def test_blank_run_reason_adds_no_tag(repo, tmp_path, outcome):
    assert run(repo, tmp_path, "--reason", "  ") == 0
    assert "sagemaker-cd:run-reason" not in {t["Key"] for t in outcome.request["Tags"]}


def test_tag_safe_reason_keeps_letters_of_any_script():
    assert train.tag_safe_reason("Nachtraining für Modell_2 @ops: ok=1") == "Nachtraining für Modell_2 @ops: ok=1"


def test_job_name_is_project_short_commit_and_utc_time():
    name = train.training_job_name(PROJECT, COMMIT, datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc))
    assert name == f"{PROJECT}-3f2a9c1-20260102T030405"
    assert len(name) == len(PROJECT) + TRAINING_JOB_SUFFIX_LEN


def test_spot_request_sets_wait_and_checkpoints(repo, tmp_path, outcome):
    data = base_config()
    data["model"]["training"].update(spot=True, max_wait_minutes=90)
    write_config(repo, data)
    assert run(repo, tmp_path) == 0
    request = outcome.request
    assert request["EnableManagedSpotTraining"] is True
    assert request["StoppingCondition"] == {"MaxRuntimeInSeconds": 1800, "MaxWaitTimeInSeconds": 5400}
    assert request["CheckpointConfig"] == {
        "S3Uri": f"s3://{BUCKET}/{PROJECT}/checkpoints/{request['TrainingJobName']}/"
    }


def test_on_demand_request_has_no_spot_settings(repo, tmp_path, outcome):
    assert run(repo, tmp_path) == 0
    request = outcome.request
    assert request["StoppingCondition"] == {"MaxRuntimeInSeconds": 1800}
    assert "EnableManagedSpotTraining" not in request and "CheckpointConfig" not in request


def test_kms_key_encrypts_output_and_volume(repo, tmp_path, outcome):
    assert run(repo, tmp_path, "--kms-key-arn", KEY) == 0
    assert outcome.request["OutputDataConfig"]["KmsKeyId"] == KEY
    assert outcome.request["ResourceConfig"] == {
        "InstanceType": "ml.m5.large",
        "InstanceCount": 1,
        "VolumeSizeInGB": 10,
        "VolumeKmsKeyId": KEY,
    }


def test_kms_key_is_not_set_on_instance_storage_volumes(repo, tmp_path, outcome):
    data = base_config()
    data["model"]["training"]["instance_type"] = "ml.m5d.large"
    write_config(repo, data)
    assert run(repo, tmp_path, "--kms-key-arn", KEY) == 0
    assert "VolumeKmsKeyId" not in outcome.request["ResourceConfig"]


def tag(outcome, key: str) -> str:
    """The value of the training job's tag `key`."""
    (value,) = [t["Value"] for t in outcome.request["Tags"] if t["Key"] == key]
    return value


def _shared_data(s3, objects: dict[str, bytes]) -> None:
    s3.create_bucket(Bucket="shared-datasets")
    for key, body in objects.items():
        s3.put_object(Bucket="shared-datasets", Key=key, Body=body)


IRIS = {"iris/v3/train.csv": b"5.1,3.5,1.4,0.2,setosa\n", "iris/v3/extra/more.csv": b"6.3,3.3,6.0,2.5,virginica\n"}


def test_s3_training_data_is_used_as_is_without_uploading(repo, tmp_path, outcome, s3):
    data = base_config()
    data["training_data"] = {"s3_uri": "s3://shared-datasets/iris/v3/"}
    write_config(repo, data)
    _shared_data(s3, IRIS)
    assert run(repo, tmp_path) == 0
    assert (
        outcome.request["InputDataConfig"][0]["DataSource"]["S3DataSource"]["S3Uri"] == "s3://shared-datasets/iris/v3/"
    )
    keys = [obj["Key"] for obj in s3.list_objects_v2(Bucket=BUCKET)["Contents"]]
    assert keys == [f"{PROJECT}/code/{COMMIT}/sourcedir.tar.gz"]


def test_the_job_is_tagged_with_the_version_of_its_s3_data_and_the_log_says_it(repo, tmp_path, outcome, s3, capsys):
    data = base_config()
    data["training_data"] = {"s3_uri": "s3://shared-datasets/iris/v3/"}
    write_config(repo, data)
    _shared_data(s3, {**IRIS, "iris/v30/not-this.csv": b"x"})
    assert run(repo, tmp_path) == 0
    version = train.data_version(s3, "s3://shared-datasets/iris/v3/")
    assert version.objects == 2
    assert tag(outcome, "sagemaker-cd:data-version") == version.digest
    assert f"training data: s3://shared-datasets/iris/v3/, data version {version}" in capsys.readouterr().out


def test_the_data_version_is_the_same_whatever_order_the_objects_were_written_in(s3):
    _shared_data(s3, IRIS)
    first = train.data_version(s3, "s3://shared-datasets/iris/v3/")
    s3.create_bucket(Bucket="copy")
    for key, body in reversed(IRIS.items()):
        s3.put_object(Bucket="copy", Key=key, Body=body)
    assert train.data_version(s3, "s3://copy/iris/v3/").digest == first.digest
    assert len(first.digest) == 16 and int(first.digest, 16) >= 0


def test_the_data_version_does_not_depend_on_the_listing_order():
    class Listing:
        def __init__(self, pages):
            self.pages = pages

        def get_paginator(self, name):
            assert name == "list_objects_v2"
            return self

        def paginate(self, **_):
            return self.pages

    when = datetime(2026, 1, 2, tzinfo=timezone.utc)
    a = {"Key": "p/a", "ETag": '"1"', "Size": 1, "LastModified": when}
    b = {"Key": "p/b", "ETag": '"2"', "Size": 2, "LastModified": when.replace(day=3)}
    forward = train.data_version(Listing([{"Contents": [a]}, {"Contents": [b]}]), "s3://x/p/")
    backward = train.data_version(Listing([{"Contents": [b, a]}]), "s3://x/p/")
    assert forward == backward
    assert (forward.objects, forward.newest) == (2, when.replace(day=3))


def test_a_changed_object_changes_the_data_version(s3):
    _shared_data(s3, IRIS)
    before = train.data_version(s3, "s3://shared-datasets/iris/v3/")
    s3.put_object(Bucket="shared-datasets", Key="iris/v3/train.csv", Body=b"5.1,3.5,1.4,0.3,setosa\n")
    assert train.data_version(s3, "s3://shared-datasets/iris/v3/").digest != before.digest


def test_the_data_version_lists_every_page(s3):
    """ListObjectsV2 returns at most 1000 keys a page: the digest covers the objects of every page
    (pages of 2 here, so 5 objects take 3; the same digest as one page)."""
    _shared_data(s3, {f"big/{i:04d}.csv": str(i).encode() for i in range(5)})
    pages: list[int] = []
    s3.meta.events.register("after-call.s3.ListObjectsV2", lambda parsed, **_: pages.append(parsed.get("KeyCount")))
    paged = train.data_version(s3, "s3://shared-datasets/big/", page_size=2)
    assert (paged.objects, pages) == (5, [2, 2, 1])
    assert paged == train.data_version(s3, "s3://shared-datasets/big/")


def test_no_object_under_the_s3_prefix_fails_in_one_line_naming_it(repo, tmp_path, outcome, s3, capsys):
    data = base_config()
    data["training_data"] = {"s3_uri": "s3://shared-datasets/iris/v4/"}
    write_config(repo, data)
    _shared_data(s3, IRIS)
    assert run(repo, tmp_path) == 1
    assert capsys.readouterr().err == "train: FAILED: no training data: no object under s3://shared-datasets/iris/v4/\n"
    assert outcome.requests == []


def test_model_bucket_training_data_is_read_from_the_projects_folder_without_uploading(
    repo, tmp_path, outcome, s3, capsys
):
    data = base_config()
    data["training_data"] = {"model_bucket_prefix": "training-data/"}
    write_config(repo, data)
    s3.put_object(Bucket=BUCKET, Key=f"{PROJECT}/training-data/iris.csv", Body=b"5.1,3.5,1.4,0.2,setosa\n")
    s3.put_object(Bucket=BUCKET, Key=f"{PROJECT}/training-data-old/not-this.csv", Body=b"x")
    assert run(repo, tmp_path) == 0
    uri = f"s3://{BUCKET}/{PROJECT}/training-data/"
    assert outcome.request["InputDataConfig"][0]["DataSource"]["S3DataSource"]["S3Uri"] == uri
    version = train.data_version(s3, uri)
    assert version.objects == 1
    assert tag(outcome, "sagemaker-cd:data-version") == version.digest
    assert f"training data: {uri}, data version {version}" in capsys.readouterr().out
    keys = sorted(obj["Key"] for obj in s3.list_objects_v2(Bucket=BUCKET, Prefix=f"{PROJECT}/")["Contents"])
    assert f"{PROJECT}/data/{COMMIT}/iris.csv" not in keys  # nothing from the repo is uploaded as data


def test_an_empty_model_bucket_training_folder_fails_in_one_line_naming_it(repo, tmp_path, outcome, s3, capsys):
    data = base_config()
    data["training_data"] = {"model_bucket_prefix": "training-data/"}
    write_config(repo, data)
    assert run(repo, tmp_path) == 1
    assert capsys.readouterr().err == (
        f"train: FAILED: no training data: no object under s3://{BUCKET}/{PROJECT}/training-data/\n"
    )
    assert outcome.requests == []


# --- arguments and config -----------------------------------------------------------------------


def test_missing_model_bucket_is_a_one_line_error(repo, tmp_path, fake_aws, capsys):
    code = train.main(["--config", str(repo / "pipeline.yml"), "--role-arn", ROLE, "--commit", COMMIT])
    assert code == 1
    assert capsys.readouterr().err == "train: FAILED: no model bucket: pass --model-bucket or set MODEL_BUCKET\n"


def test_missing_role_is_a_one_line_error(repo, tmp_path, fake_aws, capsys):
    code = train.main(["--config", str(repo / "pipeline.yml"), "--model-bucket", BUCKET, "--commit", COMMIT])
    assert code == 1
    assert capsys.readouterr().err == "train: FAILED: no SageMaker role: pass --role-arn or set SAGEMAKER_ROLE_ARN\n"


def test_no_commit_outside_git_is_a_one_line_error(repo, tmp_path, fake_aws, monkeypatch, capsys):
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    code = train.main(["--config", str(repo / "pipeline.yml"), "--model-bucket", BUCKET, "--role-arn", ROLE])
    assert code == 1
    assert capsys.readouterr().err.startswith("train: FAILED: no commit to train: pass --commit or set COMMIT_ID")


def test_bad_config_returns_2_naming_the_field(repo, tmp_path, fake_aws, capsys):
    data = base_config()
    data["model"]["training"]["instance_type"] = "m5.large"
    write_config(repo, data)
    assert run(repo, tmp_path) == 2
    assert "model.training.instance_type: 'm5.large' is not allowed" in capsys.readouterr().err


# --- waiting ------------------------------------------------------------------------------------


def describe(status: str, secondary: str) -> dict:
    """A DescribeTrainingJob answer in the given state, for the Stubber."""
    return {
        "TrainingJobName": "job",
        "TrainingJobArn": f"arn:aws:sagemaker:{REGION}:{DEFAULT_ACCOUNT_ID}:training-job/job",
        "TrainingJobStatus": status,
        "SecondaryStatus": secondary,
        "AlgorithmSpecification": {"TrainingInputMode": "File"},
        "ModelArtifacts": {"S3ModelArtifacts": "s3://b/k"},
        "ResourceConfig": {"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 10},
        "StoppingCondition": {"MaxRuntimeInSeconds": 60},
        "CreationTime": datetime(2026, 1, 1, tzinfo=timezone.utc),
    }


@pytest.fixture
def stubbed(fake_aws, session):
    """A SageMaker client answered by botocore's Stubber (moto has no StopTrainingJob)."""
    sagemaker = session.client("sagemaker")
    with Stubber(sagemaker) as stubber:
        yield sagemaker, stubber


def test_wait_prints_each_status_change_with_elapsed_time(stubbed, capsys):
    sagemaker, stubber = stubbed
    for status in [
        ("InProgress", "Starting"),
        ("InProgress", "Starting"),
        ("InProgress", "Training"),
        ("Completed", "Completed"),
    ]:
        stubber.add_response("describe_training_job", describe(*status), {"TrainingJobName": "job"})
    now = [0.0]
    job = train.wait_for_job(sagemaker, "job", 95, sleep=lambda s: now.__setitem__(0, now[0] + s), clock=lambda: now[0])
    assert job["TrainingJobStatus"] == "Completed"
    assert capsys.readouterr().out.splitlines() == [
        "[  0m00s] InProgress / Starting",
        "[  3m10s] InProgress / Training",
        "[  4m45s] Completed / Completed",
    ]


def test_interrupt_while_waiting_stops_the_job(stubbed):
    sagemaker, stubber = stubbed
    stubber.add_response("describe_training_job", describe("InProgress", "Training"), {"TrainingJobName": "job"})
    stubber.add_response("stop_training_job", {}, {"TrainingJobName": "job"})

    def interrupted(seconds):
        raise KeyboardInterrupt

    with pytest.raises(StageFailure, match="interrupted while waiting for training job job"):
        train.wait_for_job(sagemaker, "job", 30, sleep=interrupted)
    stubber.assert_no_pending_responses()


def test_sigterm_while_waiting_stops_the_job(stubbed):
    sagemaker, stubber = stubbed
    stubber.add_response("describe_training_job", describe("InProgress", "Training"), {"TrainingJobName": "job"})
    stubber.add_response("stop_training_job", {}, {"TrainingJobName": "job"})
    # If the script failed to handle SIGTERM, this handler (not the default: death) would see it.
    unhandled = []
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: unhandled.append(signum))
    try:
        with pytest.raises(StageFailure, match="asked SageMaker to stop it"), train.sigterm_as_interrupt():
            train.wait_for_job(sagemaker, "job", 30, sleep=lambda s: os.kill(os.getpid(), signal.SIGTERM))
    finally:
        signal.signal(signal.SIGTERM, previous)
    stubber.assert_no_pending_responses()
    assert unhandled == []


# --- champion/challenger ------------------------------------------------------------------------

CHAMPION_JOB = f"{PROJECT}-0123456-20260101-000000"
PROD_STACK = f"{PROJECT}-endpoint-prod"


def champion_config(**champion) -> dict:
    """The base config with a champion block (`against` and `margin` as given)."""
    data = base_config()
    data["quality_gate"]["champion"] = champion
    return data


def serve_champion(session, value: float | None, metric: str = "validation:accuracy") -> None:
    """Under moto: prod's endpoint stack with ModelVersion = CHAMPION_JOB, a completed job that reported `value`."""
    template = {
        "Resources": {"Handle": {"Type": "AWS::CloudFormation::WaitConditionHandle"}},
        "Outputs": {"ModelVersion": {"Value": CHAMPION_JOB}},
    }
    with warnings.catch_warnings():  # moto creates no wait-condition handle, and says so; only the output matters
        warnings.simplefilter("ignore", UserWarning)
        session.client("cloudformation").create_stack(StackName=PROD_STACK, TemplateBody=json.dumps(template))
    session.client("sagemaker").create_training_job(
        TrainingJobName=CHAMPION_JOB,
        AlgorithmSpecification={"TrainingImage": IMAGE, "TrainingInputMode": "File"},
        RoleArn=ROLE,
        OutputDataConfig={"S3OutputPath": f"s3://{BUCKET}/{PROJECT}/models/"},
        ResourceConfig={"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 10},
        StoppingCondition={"MaxRuntimeInSeconds": 60},
    )
    job = sagemaker_backends[DEFAULT_ACCOUNT_ID][REGION].training_jobs[CHAMPION_JOB]
    job.final_metric_data_list = (
        [] if value is None else [{"MetricName": metric, "Value": value, "Timestamp": job.creation_time}]
    )


def exports(tmp_path) -> dict[str, str]:
    """exports.env as a dict (values as the shell reads them)."""
    lines = (tmp_path / "out/exports.env").read_text().splitlines()
    return dict(shlex.split(line.removeprefix("export "))[0].split("=", 1) for line in lines)


def test_challenger_better_than_champion_passes_exporting_both_numbers(repo, tmp_path, outcome, session, capsys):
    write_config(repo, champion_config(against="prod"))
    serve_champion(session, 0.95)
    assert run(repo, tmp_path) == 0
    exported = exports(tmp_path)
    assert (exported["METRIC_VALUE"], exported["CHAMPION_VALUE"], exported["CHAMPION_ENV"]) == (
        "0.9667",
        "0.9500",
        "prod",
    )
    assert (
        f"challenger validation:accuracy 0.9667 vs champion 0.9500 (prod, {CHAMPION_JOB}): the challenger beats "
        "the champion (maximize, margin 0)" in capsys.readouterr().out
    )


def test_challenger_worse_than_champion_fails_in_one_line_with_both_numbers(repo, tmp_path, outcome, session, capsys):
    write_config(repo, champion_config())  # against: the last environment, prod
    serve_champion(session, 0.98)
    assert run(repo, tmp_path) == 1
    err = capsys.readouterr().err
    assert err == (
        f"train: FAILED: challenger validation:accuracy 0.9667 vs champion 0.9800 (prod, {CHAMPION_JOB}): "
        "the challenger does not beat the champion (maximize, margin 0)\n"
    )
    assert not (tmp_path / "out" / parameters_file("prod")).exists()


def test_challenger_within_the_margin_fails(repo, tmp_path, outcome, session, capsys):
    write_config(repo, champion_config(against="prod", margin=0.01))
    serve_champion(session, 0.96)  # 0.9667 < 0.96 + 0.01
    assert run(repo, tmp_path) == 1
    assert "does not beat the champion (maximize, margin 0.01)" in capsys.readouterr().err


def test_challenger_clearing_the_margin_passes(repo, tmp_path, outcome, session):
    write_config(repo, champion_config(against="prod", margin=0.005))
    serve_champion(session, 0.96)  # 0.9667 >= 0.965
    assert run(repo, tmp_path) == 0
    assert exports(tmp_path)["CHAMPION_VALUE"] == "0.9600"


def test_no_champion_stack_passes_with_one_line_and_exports_none(repo, tmp_path, outcome, capsys):
    write_config(repo, champion_config(against="qa"))
    assert run(repo, tmp_path) == 0
    assert f"no champion in qa yet (no stack {PROJECT}-endpoint-qa): the challenger passes" in capsys.readouterr().out
    assert {k: v for k, v in exports(tmp_path).items() if k.startswith("CHAMPION")} == {
        "CHAMPION_VALUE": "none",
        "CHAMPION_ENV": "qa",
    }


def test_champion_without_the_metric_lets_the_challenger_pass(repo, tmp_path, outcome, session, capsys):
    write_config(repo, champion_config())
    serve_champion(session, 0.99, metric="train:loss")
    assert run(repo, tmp_path) == 0
    assert f"its training job {CHAMPION_JOB} reported no validation:accuracy" in capsys.readouterr().out


def test_no_champion_block_exports_nothing_of_it(repo, tmp_path, outcome, session):
    serve_champion(session, 0.99)  # would fail the challenger, but no gate asks
    assert run(repo, tmp_path) == 0
    assert not [k for k in exports(tmp_path) if k.startswith("CHAMPION")]


@pytest.fixture
def champion_clients(fake_aws, session):
    """CloudFormation and SageMaker clients answered by botocore's Stubber."""
    cloudformation, sagemaker = session.client("cloudformation"), session.client("sagemaker")
    with Stubber(cloudformation) as cfn_stub, Stubber(sagemaker) as sm_stub:
        yield cloudformation, cfn_stub, sagemaker, sm_stub


def _serving(cfn_stub, outputs: list[dict]) -> None:
    cfn_stub.add_response(
        "describe_stacks",
        {
            "Stacks": [
                {
                    "StackName": PROD_STACK,
                    "CreationTime": datetime(2026, 1, 1, tzinfo=timezone.utc),
                    "StackStatus": "UPDATE_COMPLETE",
                    "Outputs": outputs,
                }
            ]
        },
        {"StackName": PROD_STACK},
    )


def _minimize(**champion):
    """A config whose gate minimizes validation:rmse, with a champion block."""
    data = champion_config(**champion)
    data["quality_gate"] = {
        **data["quality_gate"],
        "metric": "validation:rmse",
        "threshold": 1.0,
        "direction": "minimize",
    }
    return parse_config(data)


def test_minimize_direction_needs_a_lower_value_by_the_margin(champion_clients):
    cloudformation, cfn_stub, sagemaker, sm_stub = champion_clients
    config = _minimize(margin=0.05)
    _serving(cfn_stub, [{"OutputKey": "ModelVersion", "OutputValue": CHAMPION_JOB}])
    job = {**describe("Completed", "Completed"), "TrainingJobName": CHAMPION_JOB}
    job["FinalMetricDataList"] = [{"MetricName": "validation:rmse", "Value": 0.5}]
    sm_stub.add_response("describe_training_job", job, {"TrainingJobName": CHAMPION_JOB})
    champion = train.find_champion(cloudformation, sagemaker, config, "prod")
    assert champion == train.Champion("prod", CHAMPION_JOB, 0.5)
    train.champion_gate(0.45, champion, config.quality_gate)  # 0.45 <= 0.5 - 0.05
    with pytest.raises(
        StageFailure, match=r"challenger validation:rmse 0.4600 vs champion 0.5000 .*minimize, margin 0.05"
    ):
        train.champion_gate(0.46, champion, config.quality_gate)
    cfn_stub.assert_no_pending_responses()
    sm_stub.assert_no_pending_responses()


def test_champion_stack_without_the_output_is_no_champion(champion_clients, capsys):
    cloudformation, cfn_stub, sagemaker, _ = champion_clients
    _serving(cfn_stub, [])
    assert train.find_champion(cloudformation, sagemaker, _minimize(), "prod") is None
    assert f"no champion in prod yet (stack {PROD_STACK} has no ModelVersion output)" in capsys.readouterr().out


def test_champion_job_gone_is_no_champion(champion_clients, capsys):
    cloudformation, cfn_stub, sagemaker, sm_stub = champion_clients
    _serving(cfn_stub, [{"OutputKey": "ModelVersion", "OutputValue": CHAMPION_JOB}])
    sm_stub.add_client_error(
        "describe_training_job",
        "ValidationException",
        "Requested resource not found.",
        400,
        expected_params={"TrainingJobName": CHAMPION_JOB},
    )
    assert train.find_champion(cloudformation, sagemaker, _minimize(), "prod") is None
    assert f"its training job {CHAMPION_JOB} is gone" in capsys.readouterr().out


def test_champion_stack_read_denied_is_an_error_not_no_champion(champion_clients):
    cloudformation, cfn_stub, sagemaker, _ = champion_clients
    cfn_stub.add_client_error("describe_stacks", "AccessDenied", "not authorized", 403)
    with pytest.raises(ClientError) as exc:
        train.find_champion(cloudformation, sagemaker, _minimize(), "prod")
    assert exc.value.response["Error"]["Code"] == "AccessDenied"


# --- the training cache -------------------------------------------------------------------------

OTHER_COMMIT = "0a1b2c3d4e5f60718293a4b5c6d7e8f901234567"


def train_twice(repo, tmp_path, change=None, *extra: str) -> tuple[int, int]:
    """Run the action for COMMIT, apply `change` to the checkout, run it for OTHER_COMMIT; both exit codes."""
    first = run(repo, tmp_path)
    if change:
        change(repo)
    return first, run(repo, tmp_path, *extra, commit=OTHER_COMMIT)


def test_the_job_is_tagged_with_the_hash_of_its_inputs(repo, tmp_path, outcome):
    assert run(repo, tmp_path) == 0
    assert len(tag(outcome, train.INPUTS_HASH_TAG)) == 64


def test_unchanged_inputs_reuse_the_model_with_the_same_exports_and_parameters(repo, tmp_path, outcome, capsys):
    assert run(repo, tmp_path) == 0
    first_parameters = json.loads((tmp_path / "out" / parameters_file("prod")).read_text())["Parameters"]
    first_exports = exports(tmp_path)
    assert run(repo, tmp_path, commit=OTHER_COMMIT) == 0
    assert len(outcome.requests) == 1  # no second CreateTrainingJob
    again = json.loads((tmp_path / "out" / parameters_file("prod")).read_text())
    assert again["Parameters"] == first_parameters  # the first job's model, image and code (commit COMMIT's)
    assert again["Parameters"]["SourceDir"] == CODE_URI
    assert again["Tags"]["sagemaker-cd:commit"] == OTHER_COMMIT
    reused = exports(tmp_path)
    # A reused model is registered again: one registry version per run.
    assert reused == {
        **first_exports,
        "MODEL_ORIGIN": f"reused from commit {COMMIT[:7]} (unchanged inputs)",
        "MODEL_PACKAGE_ARN": first_exports["MODEL_PACKAGE_ARN"].removesuffix("/1") + "/2",
        "MODEL_PACKAGE_VERSION": "2",
    }
    assert first_exports["MODEL_ORIGIN"] == "trained for this commit"
    out = capsys.readouterr().out
    assert f"reusing training job {first_exports['TRAINING_JOB_NAME']} of commit {COMMIT}" in out


def test_a_readme_or_test_payload_change_reuses(repo, tmp_path, outcome):
    def docs_and_payloads(root):
        (root / "README.md").write_text("# new words\n")
        (root / "model/endpoint-tests/setosa.json").write_text('{"body": [[5.0, 3.4, 1.5, 0.2]]}\n')

    assert train_twice(repo, tmp_path, docs_and_payloads) == (0, 0)
    assert len(outcome.requests) == 1


def _edit_config(edit):
    def change(root):
        data = base_config()
        edit(data)
        write_config(root, data)

    return change


@pytest.mark.parametrize(
    "change",
    [
        _edit_config(lambda d: d["model"]["hyperparameters"].update({"n-estimators": 200})),
        _edit_config(lambda d: d["model"]["training"].update({"instance_type": "ml.m5.xlarge"})),
        _edit_config(lambda d: d["quality_gate"].update({"threshold": 0.91})),
        lambda root: (root / "model/lib/features.py").write_text("COLUMNS = 5\n"),
        lambda root: (root / "model/data/iris.csv").write_text("5.0,3.5,1.4,0.2,setosa\n"),
    ],
    ids=["hyperparameter", "instance-type", "gate", "source-file", "data"],
)
def test_a_change_that_shapes_the_model_retrains(repo, tmp_path, outcome, change):
    assert train_twice(repo, tmp_path, change) == (0, 0)
    assert len(outcome.requests) == 2
    hashes = [{t["Key"]: t["Value"] for t in r["Tags"]}[train.INPUTS_HASH_TAG] for r in outcome.requests]
    assert hashes[0] != hashes[1]
    assert exports(tmp_path)["MODEL_ORIGIN"] == "trained for this commit"


def test_changed_s3_data_retrains_and_unchanged_s3_data_reuses(repo, tmp_path, outcome, s3):
    data = base_config()
    data["training_data"] = {"s3_uri": "s3://shared-datasets/iris/"}
    write_config(repo, data)
    _shared_data(s3, {"iris/train.csv": b"1,2,3\n"})
    assert train_twice(repo, tmp_path) == (0, 0)
    assert len(outcome.requests) == 1
    s3.put_object(Bucket="shared-datasets", Key="iris/train.csv", Body=b"1,2,4\n")
    assert run(repo, tmp_path, commit=OTHER_COMMIT) == 0
    assert len(outcome.requests) == 2


@pytest.mark.parametrize(
    ("status", "metrics"),
    [("Failed", {}), ("Stopped", {}), ("Completed", {"validation:accuracy": 0.5})],
    ids=["failed", "stopped", "gate-failing"],
)
def test_a_previous_job_that_failed_or_missed_the_gate_is_never_reused(repo, tmp_path, outcome, status, metrics):
    outcome.status, outcome.metrics = status, metrics
    assert run(repo, tmp_path) == 1
    outcome.status, outcome.metrics = "Completed", {"validation:accuracy": 0.9667}
    assert run(repo, tmp_path, commit=OTHER_COMMIT) == 0
    assert len(outcome.requests) == 2
    assert exports(tmp_path)["TRAINING_JOB_NAME"] == outcome.requests[1]["TrainingJobName"]


def test_reuse_false_in_the_config_retrains(repo, tmp_path, outcome, capsys):
    assert train_twice(repo, tmp_path, _edit_config(lambda d: d["model"]["training"].update({"reuse": False}))) == (
        0,
        0,
    )
    assert len(outcome.requests) == 2
    assert "not looking for a model to reuse (model.training.reuse is false)" in capsys.readouterr().out


def test_no_reuse_flag_retrains(repo, tmp_path, outcome):
    assert train_twice(repo, tmp_path, None, "--no-reuse") == (0, 0)
    assert len(outcome.requests) == 2


def test_reuse_must_be_a_boolean(repo, tmp_path, fake_aws, capsys):
    data = base_config()
    data["model"]["training"]["reuse"] = "no"
    write_config(repo, data)
    assert run(repo, tmp_path) == 2
    err = capsys.readouterr().err
    assert "model.training.reuse" in err and len(err.strip().splitlines()) == 1


def test_a_job_of_another_project_with_the_same_inputs_is_not_reused(repo, tmp_path, outcome):
    assert run(repo, tmp_path) == 0
    data = base_config()
    data["project"] = PROJECT + "-b"  # its jobs' names also contain iris-classifier
    write_config(repo, data)
    boto3.client("sagemaker", region_name="us-east-1").create_model_package_group(ModelPackageGroupName=PROJECT + "-b")
    assert run(repo, tmp_path, commit=OTHER_COMMIT) == 0
    assert len(outcome.requests) == 2


def test_the_champion_gate_still_holds_a_reused_model(repo, tmp_path, outcome, session, capsys):
    write_config(repo, champion_config(against="prod"))
    assert run(repo, tmp_path) == 0  # no champion yet
    serve_champion(session, 0.98)
    assert run(repo, tmp_path, commit=OTHER_COMMIT) == 1
    assert len(outcome.requests) == 1
    assert "the challenger does not beat the champion" in capsys.readouterr().err


# --- repacking for frameworks that serve from model.tar.gz ---------------------------------------


def _model_archive() -> bytes:
    """A model.tar.gz as a training container leaves it: the model and a stale code/ folder."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in (("model.pth", b"weights"), ("code/old.py", b"stale")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _pytorch(repo) -> None:
    data = base_config()
    data["model"].update(framework="pytorch", framework_version="2.6.0", hyperparameters={"epochs": 3})
    write_config(repo, data)


def test_pytorch_serves_a_repacked_model_with_the_code_under_code(repo, tmp_path, outcome, s3):
    _pytorch(repo)
    outcome.model_archive = _model_archive()
    assert run(repo, tmp_path, "--kms-key-arn", KEY) == 0
    name = job_name(outcome)
    key = f"{PROJECT}/models/{name}/repacked/model.tar.gz"
    for env in ("qa", "prod"):
        written = json.loads((tmp_path / "out" / parameters_file(env)).read_text())
        assert written["Parameters"]["ModelDataUrl"] == f"s3://{BUCKET}/{key}"
    stored = s3.get_object(Bucket=BUCKET, Key=key)
    assert stored["ServerSideEncryption"] == "aws:kms"
    with tarfile.open(fileobj=io.BytesIO(stored["Body"].read()), mode="r:gz") as tar:
        assert sorted(tar.getnames()) == [
            "code/inference.py",
            "code/lib/features.py",
            "code/train.py",
            "model.pth",
        ]
        assert tar.extractfile("model.pth").read() == b"weights"


def test_a_repack_is_the_same_bytes_every_time(repo, tmp_path):
    _pytorch(repo)
    config = train.load_run_config(str(repo / "pipeline.yml"))
    model = tmp_path / "trained.tar.gz"
    model.write_bytes(_model_archive())
    source = repo / "model"
    files = train.source_files(config, repo)
    first = train.write_repacked(model, files, source, tmp_path / "first.tar.gz").read_bytes()
    for path in files:
        os.utime(path, (0, 1_700_000_000))  # a later checkout: new mtimes, same content
    assert train.write_repacked(model, files, source, tmp_path / "second.tar.gz").read_bytes() == first


def test_sklearn_is_not_repacked(repo, tmp_path, outcome, s3):
    assert run(repo, tmp_path) == 0
    listed = s3.list_objects_v2(Bucket=BUCKET, Prefix=f"{PROJECT}/models/").get("Contents", [])
    assert [item["Key"] for item in listed if "repacked" in item["Key"]] == []


# --- built-in algorithms ------------------------------------------------------------------------


def _builtin_repo(root) -> None:
    """The tmp checkout as a built-in XGBoost project: data per channel, no model code used."""
    for channel in ("train", "validation"):
        path = root / "data" / channel / f"{channel}.csv"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("1,7.7,3.0,6.1,2.3\n0,5.1,3.5,1.4,0.2\n")
    data = base_config()
    for field in ("framework", "framework_version", "source_dir", "entry_point", "inference_entry_point"):
        del data["model"][field]
    data["model"]["algorithm"] = {"name": "xgboost", "version": "1.7-1"}
    data["model"]["hyperparameters"] = {"objective": "binary:logistic", "num_round": 20}
    data["training_data"] = {"local_dir": "data"}
    data["quality_gate"] = {"metric": "validation:error", "threshold": 0.1, "direction": "minimize"}
    write_config(root, data)


def test_a_builtin_trains_on_its_channels_without_uploading_code_and_reuses(repo, tmp_path, outcome, s3, capsys):
    _builtin_repo(repo)
    outcome.metrics = {"validation:error": 0.05}
    assert run(repo, tmp_path) == 0
    request = outcome.request
    assert "MetricDefinitions" not in request["AlgorithmSpecification"]
    assert request["AlgorithmSpecification"]["TrainingImage"].endswith("/sagemaker-xgboost:1.7-1")
    assert request["HyperParameters"] == {"objective": "binary:logistic", "num_round": "20"}
    data = f"s3://{BUCKET}/{PROJECT}/data/{COMMIT}/"
    assert [
        (c["ChannelName"], c["DataSource"]["S3DataSource"]["S3Uri"], c["ContentType"])
        for c in request["InputDataConfig"]
    ] == [
        ("train", data + "train/", "text/csv"),
        ("validation", data + "validation/", "text/csv"),
    ]
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET).get("Contents", [])]
    assert keys and not [key for key in keys if "/code/" in key]
    written = json.loads((tmp_path / "out" / parameters_file("qa")).read_text())
    assert "SourceDir" not in written["Parameters"]
    assert "nothing to upload" in capsys.readouterr().out
    assert run(repo, tmp_path, commit="1" * 40) == 0  # same inputs: the job is reused, still no code
    assert len(outcome.requests) == 1
    assert "SourceDir" not in json.loads((tmp_path / "out" / parameters_file("prod")).read_text())["Parameters"]


def test_the_model_that_passed_the_gate_is_a_pending_registry_version(repo, tmp_path, outcome, capsys):
    """Contract of issue 9: the last environment's serving image, the endpoints' ModelDataUrl, the metadata."""
    assert run(repo, tmp_path) == 0
    written = exports(tmp_path)
    package = boto3.client("sagemaker", region_name="us-east-1").describe_model_package(
        ModelPackageName=written["MODEL_PACKAGE_ARN"]
    )
    prod = json.loads((tmp_path / "out/endpoint-parameters-prod.json").read_text())["Parameters"]
    assert package["ModelApprovalStatus"] == "PendingManualApproval"
    assert package["ModelPackageGroupName"] == PROJECT_GROUP
    (container,) = package["InferenceSpecification"]["Containers"]
    assert (container["Image"], container["ModelDataUrl"]) == (prod["ImageUri"], prod["ModelDataUrl"])
    assert package["CustomerMetadataProperties"] == {
        "commit": COMMIT,
        "training-job": written["TRAINING_JOB_NAME"],
        "metric-name": "validation:accuracy",
        "metric-value": written["METRIC_VALUE"],
        "data-version": written["DATA_VERSION"],
        "source-dir": prod["SourceDir"],
        "model-version": prod["ModelVersion"],
    }
    assert f"registered version 1 of model package group {PROJECT_GROUP}" in capsys.readouterr().out
