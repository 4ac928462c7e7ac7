"""XGBoost, PyTorch and TensorFlow in script mode: the images each config gets (per scope and
processor), each framework's container contract (hyperparameters, serving environment, repacking)
and the refusals that keep a config to what the containers run."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import yaml

from pipeline.config import ConfigError, parse_config
from pipeline.frameworks import FRAMEWORKS, REPACKED_CODE_DIR
from pipeline.stacks.pipeline import PipelineStack
from scripts import train

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples"


def _example(name: str) -> dict:
    return yaml.safe_load((EXAMPLES / name / "pipeline.yml").read_text())


def _parse(data: dict, name: str):
    return parse_config(data, root=EXAMPLES / name)


def _pytorch_with_gpu_prod() -> dict:
    data = _example("pytorch")
    assert data["environments"][1]["instance_type"].startswith("ml.g")
    return data


def test_a_gpu_environment_gets_the_gpu_serving_image_and_its_run_parameters_differ_from_qas():
    config = _parse(_pytorch_with_gpu_prod(), "pytorch")
    job = {"TrainingJobName": "iris-pytorch-job", "ModelArtifacts": {"S3ModelArtifacts": "s3://b/m.tar.gz"}}
    files = train.run_parameters(config, job, "s3://b/code.tar.gz", "0" * 40, "s3://b/repacked.tar.gz")
    qa, prod = files["qa"]["Parameters"], files["prod"]["Parameters"]
    assert qa["ImageUri"].endswith("/pytorch-inference:2.6.0-cpu-py312")  # serverless: cpu
    assert prod["ImageUri"].endswith("/pytorch-inference:2.6.0-gpu-py312")
    assert {key: value for key, value in qa.items() if key != "ImageUri"} == {
        key: value for key, value in prod.items() if key != "ImageUri"
    }
    assert qa["ModelDataUrl"] == "s3://b/repacked.tar.gz"


def test_a_gpu_training_instance_gets_the_gpu_training_image():
    data = _pytorch_with_gpu_prod()
    data["model"]["training"]["instance_type"] = "ml.g5.xlarge"
    assert _parse(data, "pytorch").training_image.endswith("/pytorch-training:2.6.0-gpu-py312")
    data["model"]["training"]["instance_type"] = "ml.m5.large"
    assert _parse(data, "pytorch").training_image.endswith("/pytorch-training:2.6.0-cpu-py312")


def test_the_sagemaker_roles_ecr_grant_covers_the_training_and_inference_repositories():
    config = _parse(_pytorch_with_gpu_prod(), "pytorch")
    assert config.image_repositories == ["pytorch-inference", "pytorch-training"]
    role = PipelineStack(config).sagemaker_role.to_dict()
    statements = role["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]
    pull = next(s for s in statements if "ecr:BatchGetImage" in s["Action"])
    granted = json.dumps(pull["Resource"])
    assert "repository/pytorch-inference" in granted and "repository/pytorch-training" in granted


def test_xgboost_has_one_image_for_training_and_serving_on_cpu_gpu_and_serverless():
    data = _example("xgboost")
    data["environments"][1]["instance_type"] = "ml.g4dn.xlarge"
    config = _parse(data, "xgboost")
    image = config.training_image
    assert image.endswith("/sagemaker-xgboost:1.7-1")
    assert [config.serving_image(env) for env in config.environments] == [image, image]
    assert config.image_repositories == ["sagemaker-xgboost"]


@pytest.mark.parametrize(
    ("name", "version", "submit_directory"),
    [
        ("xgboost", "1.7-1", "CODE"),  # fetched from S3, as scikit-learn (XGBoostModel repacks only when isolated)
        ("pytorch", "1.1.0", "CODE"),  # before the MMS images: from S3
        ("pytorch", "1.2.0", REPACKED_CODE_DIR),  # the SDK repacks from 1.2
        ("pytorch", "2.6.0", REPACKED_CODE_DIR),
    ],
)
def test_the_serving_environment_points_at_the_code_where_the_container_finds_it(name, version, submit_directory):
    framework = FRAMEWORKS[name]
    environment = framework.serving_environment("inference.py", "CODE", "us-east-1", version)
    assert environment["SAGEMAKER_PROGRAM"] == "inference.py"
    assert environment["SAGEMAKER_SUBMIT_DIRECTORY"] == submit_directory
    assert framework.repacks(version) == (submit_directory == REPACKED_CODE_DIR)


def test_tensorflow_serving_gets_no_program_and_always_repacks():
    tensorflow = FRAMEWORKS["tensorflow"]
    assert tensorflow.serving_environment("inference.py", "CODE", "us-east-1", "2.19.0") == {
        "SAGEMAKER_TFS_NGINX_LOGLEVEL": "info"
    }
    assert all(tensorflow.repacks(version) for version in tensorflow.versions())


def test_tensorflow_training_gets_model_dir_under_the_jobs_output_folder():
    sent = FRAMEWORKS["tensorflow"].training_hyperparameters({"epochs": 3}, "train.py", "CODE", "r", "s3://b/p/job")
    assert json.loads(sent["model_dir"]) == "s3://b/p/job/model"
    assert "model_dir" not in FRAMEWORKS["pytorch"].training_hyperparameters({}, "train.py", "CODE", "r", "s3://x")


def test_tensorflow_legacy_mode_versions_are_not_offered():
    versions = FRAMEWORKS["tensorflow"].versions()
    assert "1.10" not in versions and "1.10.0" not in versions
    assert "1.11" in versions


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (
            {"hyperparameters": {"model_dir": "s3://elsewhere/"}},
            "model.hyperparameters: 'model_dir' is set by the pipeline for TensorFlow (the SDK's estimator passes "
            "it); remove it",
        ),
        (
            {"inference_entry_point": "serve.py"},
            "model.inference_entry_point: 'serve.py': the TensorFlow Serving container runs code/inference.py by "
            "that name (no SAGEMAKER_PROGRAM); name the handlers' file so, at the top of source_dir",
        ),
        (
            {"framework_version": "1.10"},
            "model.framework_version: '1.10' is not a published TensorFlow image version (one of: 1.11.0,",
        ),
    ],
)
def test_tensorflow_refusals_are_one_line_each(change, problem):
    data = copy.deepcopy(_example("tensorflow"))
    data["model"].update(change)
    with pytest.raises(ConfigError) as exc:
        _parse(data, "tensorflow")
    assert len(exc.value.problems) == 1
    assert exc.value.problems[0].startswith(f"pipeline.yml: {problem}")


def test_make_local_refuses_another_framework_in_one_line(capsys):
    from scripts import local

    assert local.main(["--config", str(EXAMPLES / "xgboost" / "pipeline.yml")]) == 1
    assert capsys.readouterr().err.strip().splitlines() == [
        "local: FAILED: model.framework is XGBoost: make local mirrors the scikit-learn container only (the "
        "pipeline trains and serves the others; make test-examples runs their handlers)"
    ]


def test_make_test_examples_skips_a_framework_that_is_not_installed_saying_why(monkeypatch):
    from scripts import test_examples

    monkeypatch.setitem(test_examples.MODULES, "pytorch", "no_such_module_here")
    result = test_examples.run_example(EXAMPLES / "pytorch" / "pipeline.yml")
    assert result == test_examples.Result(
        "pytorch", False, "no_such_module_here is not installed (make test-examples installs xgboost-cpu only)"
    )


def test_a_tensorflow_training_job_gets_model_dir_in_its_own_folder_of_the_model_bucket():
    config = _parse(_example("tensorflow"), "tensorflow")
    target = train.Target(
        bucket="bucket", role_arn="role", kms_key_arn=None, commit="0" * 40, project="iris-tensorflow"
    )
    request = train.training_job_request(config, target, "job-1", config.training_image, "s3://c", "s3://d/")
    assert json.loads(request["HyperParameters"]["model_dir"]) == "s3://bucket/iris-tensorflow/models/job-1/model"
    assert request["OutputDataConfig"]["S3OutputPath"] == "s3://bucket/iris-tensorflow/models/"
