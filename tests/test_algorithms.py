"""Built-in algorithms (model.algorithm): the config's refusals, the training job they get, the
endpoint template and run parameters, and the local loop's refusal."""

from __future__ import annotations

import base64
import copy
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from pipeline.algorithms import ALGORITHMS, Algorithm
from pipeline.config import ConfigError, load_config, parse_config
from pipeline.payloads import PayloadError, parse_case
from pipeline.stacks.endpoint import RUN_PARAMETERS, EndpointStack
from pipeline.synth import render
from scripts import endpoint_test, local, train

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
TARGET = train.Target(
    bucket="model-bucket", role_arn="arn:aws:iam::123456789012:role/r", kms_key_arn=None, commit="a" * 40, project="p"
)


def _example(name: str) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((EXAMPLES / name / "pipeline.yml").read_text())
    return data


def _refused(data: dict[str, Any], name: str = "builtin-xgboost") -> str:
    with pytest.raises(ConfigError) as exc:
        parse_config(data, root=EXAMPLES / name)
    (line,) = exc.value.problems
    return line


def test_an_algorithm_with_script_mode_fields_is_refused_naming_them():
    data = _example("builtin-xgboost")
    data["model"].update(framework="sklearn", entry_point="train.py")
    assert _refused(data) == (
        "pipeline.yml: model: algorithm runs SageMaker's own code, so framework and entry_point do not apply: "
        "remove them or the algorithm"
    )


def test_an_unknown_algorithm_or_version_is_refused_naming_the_known_ones():
    data = _example("builtin-xgboost")
    data["model"]["algorithm"]["name"] = "kmeans"
    assert "model.algorithm.name: 'kmeans' is not a built-in algorithm this pipeline delivers (one of: " in _refused(
        data
    )
    data = _example("builtin-xgboost")
    data["model"]["algorithm"]["version"] = "0.90-1"  # deprecated: withheld
    line = _refused(data)
    assert "model.algorithm.version: '0.90-1' is not a published built-in XGBoost image version (one of: 1.0-1," in line
    data = _example("linear-learner")
    data["model"]["algorithm"]["version"] = "2"
    assert _refused(data, "linear-learner").endswith("'2' is not a published Linear Learner image version (one of: 1)")


def test_a_region_without_the_algorithms_image_is_refused(monkeypatch):
    # Today every region with framework images has these algorithms' too: pretend linear-learner's are in two.
    only_two = {"us-east-1": "382416733822", "eu-west-1": "438346466558"}
    real = Algorithm.registry_accounts
    monkeypatch.setattr(
        Algorithm, "registry_accounts", lambda self, v: only_two if self.name == "linear-learner" else real(self, v)
    )
    data = _example("linear-learner")
    data["region"] = "ap-southeast-2"
    assert _refused(data, "linear-learner") == (
        "pipeline.yml: region: 'ap-southeast-2' has no SageMaker Linear Learner 1 images (published in: eu-west-1, us-east-1)"
    )


@pytest.mark.parametrize(
    "channels, message",
    [
        (
            {"training": {"content_type": "text/csv"}},
            "'training' is not a channel built-in XGBoost reads (one of: train, validation)",
        ),
        (
            {"train": {"content_type": "application/json"}},
            "train.content_type: 'application/json' is not one built-in XGBoost reads on train",
        ),
        ({"validation": {"content_type": "text/csv"}}, "built-in XGBoost needs the channel(s) train"),
        ({"train": {"content_type": "text/csv", "folder": "/abs/"}}, "must be a folder: no leading '/'"),
    ],
)
def test_channels_the_algorithm_cannot_read_are_refused(channels, message):
    data = _example("builtin-xgboost")
    data["model"]["algorithm"]["channels"] = channels
    data["quality_gate"]["metric"] = "validation:error"
    assert message in _refused(data)


def test_image_files_need_the_list_channels():
    data = _example("image-classification")
    del data["model"]["algorithm"]["channels"]["validation_lst"]
    assert _refused(data, "image-classification").endswith(
        "with image files (train, validation) Image Classification also needs the list channels validation_lst "
        "(each image's index, label and path); or send RecordIO (application/x-recordio)"
    )
    recordio = {"content_type": "application/x-recordio"}
    data["model"]["algorithm"]["channels"] = {"train": recordio, "validation": recordio}
    parse_config(data, root=EXAMPLES / "image-classification")


def test_the_gate_must_name_one_of_the_algorithms_metrics_on_a_channel_the_job_gets():
    data = _example("builtin-xgboost")
    data["quality_gate"]["metric"] = "validation:accuracy_score"
    line = _refused(data)
    assert line.startswith(
        "pipeline.yml: quality_gate.metric: 'validation:accuracy_score' is not a metric built-in XGBoost"
    )
    assert "validation:auc" in line and "xgboost-tuning.html" in line
    data = _example("linear-learner")
    data["quality_gate"]["metric"] = "test:objective_loss"
    assert _refused(data, "linear-learner") == (
        "pipeline.yml: quality_gate.metric: test:objective_loss is computed on the test channel, which "
        "model.algorithm.channels does not give the job (train, validation)"
    )
    data = _example("builtin-xgboost")
    data["quality_gate"]["regex"] = "error=([0-9.]+)"
    assert "quality_gate.regex: built-in XGBoost reports its own metrics" in _refused(data)


def test_image_classification_trains_on_gpus_only_and_serves_on_either():
    data = _example("image-classification")
    data["model"]["training"]["instance_type"] = "ml.m5.xlarge"
    assert _refused(data, "image-classification") == (
        "pipeline.yml: model.training.instance_type: ml.m5.xlarge runs cpu images and Image Classification 1 "
        "trains on gpu only; choose an instance type of that kind"
    )
    config = parse_config(_example("image-classification"), root=EXAMPLES / "image-classification")
    assert config.training_image == "811284229777.dkr.ecr.us-east-1.amazonaws.com/image-classification:1"
    assert {config.serving_image(env) for env in config.environments} == {config.training_image}
    assert config.image_repositories == ["image-classification"]


def test_builtin_xgboost_runs_in_the_framework_image():
    config = parse_config(_example("builtin-xgboost"), root=EXAMPLES / "builtin-xgboost")
    assert config.training_image == "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-xgboost:1.7-1"
    assert config.image_repositories == ["sagemaker-xgboost"]


def test_the_training_job_gets_channels_plain_hyperparameters_and_no_metric_definitions():
    data = _example("image-classification")
    data["model"]["hyperparameters"]["use_pretrained_model"] = True
    data["model"]["algorithm"]["channels"]["train"]["folder"] = "images/train/"
    config = parse_config(data, root=EXAMPLES / "image-classification")
    request = train.training_job_request(config, TARGET, "job", config.training_image, None, "s3://b/p/data")
    assert request["AlgorithmSpecification"] == {"TrainingImage": config.training_image, "TrainingInputMode": "File"}
    assert request["HyperParameters"] == {
        "num_classes": "2",
        "num_training_samples": "16",
        "image_shape": "3,32,32",
        "num_layers": "18",
        "epochs": "2",
        "mini_batch_size": "4",
        "use_pretrained_model": "true",
    }
    channels = {
        c["ChannelName"]: (c["DataSource"]["S3DataSource"]["S3Uri"], c["ContentType"])
        for c in request["InputDataConfig"]
    }
    assert channels == {
        "train": ("s3://b/p/data/images/train/", "application/x-image"),
        "validation": ("s3://b/p/data/validation/", "application/x-image"),
        "train_lst": ("s3://b/p/data/train_lst/", "application/x-image"),
        "validation_lst": ("s3://b/p/data/validation_lst/", "application/x-image"),
    }


def test_run_parameters_and_the_endpoint_template_have_no_source_code():
    config = parse_config(_example("linear-learner"), root=EXAMPLES / "linear-learner")
    job = {"ModelArtifacts": {"S3ModelArtifacts": "s3://b/m/model.tar.gz"}, "TrainingJobName": "job"}
    written = train.run_parameters(config, job, None, "a" * 40)
    assert {tuple(each["Parameters"]) for each in written.values()} == {
        tuple(name for name in RUN_PARAMETERS if name != "SourceDir")
    }
    template = EndpointStack(config, config.environments[0]).build().to_dict()
    assert "SourceDir" not in template["Parameters"]
    model = template["Resources"]["Model"]["Properties"]
    assert model["PrimaryContainer"] == {"Image": {"Ref": "ImageUri"}, "ModelDataUrl": {"Ref": "ModelDataUrl"}}
    assert model["EnableNetworkIsolation"] is True


def test_a_builtin_job_that_reports_no_metric_says_so_without_a_regex():
    gate = parse_config(_example("builtin-xgboost"), root=EXAMPLES / "builtin-xgboost").quality_gate
    with pytest.raises(train.StageFailure) as exc:
        train.gate_metric({"TrainingJobName": "job", "FinalMetricDataList": []}, gate, builtin=True)
    assert "did not report validation:error (the built-in algorithm logs it only when" in str(exc.value)
    assert (
        train.gate_metric(
            {"TrainingJobName": "j", "FinalMetricDataList": [{"MetricName": "validation:error", "Value": 0.05}]},
            gate,
            builtin=True,
        )
        == 0.05
    )


def test_every_algorithm_offers_a_version_and_metrics():
    for algorithm in ALGORITHMS.values():
        assert algorithm.versions() and algorithm.metrics and algorithm.metrics_source.startswith("https://docs.aws")


def test_make_local_refuses_a_builtin_in_one_line_and_the_lint_action_skips_it(tmp_path, capsys):
    config = str(EXAMPLES / "builtin-xgboost" / "pipeline.yml")
    assert local.main(["--config", config, "--work-dir", str(tmp_path / "w")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        "local: FAILED: built-in XGBoost is a SageMaker built-in algorithm: it runs only in SageMaker's image, "
        "not on this machine; make test checks its config and templates offline"
    ]
    report = tmp_path / "r.xml"
    assert local.main(["--config", config, "--offline", "--junit-xml", str(report), "--work-dir", str(tmp_path)]) == 0
    assert "<skipped" in report.read_text()


def test_a_binary_payload_and_a_tolerance():
    image = b"\x89PNG\r\n\x1a\n..."
    case = parse_case(
        json.dumps(
            {
                "content_type": "application/x-image",
                "body_base64": base64.b64encode(image).decode(),
                "expected": [1.0, 0.0],
                "tolerance": 0.5,
            }
        ).encode(),
        "c.json",
    )
    assert case.payload == image and case.tolerance == 0.5
    assert endpoint_test.matches(case.expected, "[0.7, 0.3]", case.tolerance)
    assert not endpoint_test.matches(case.expected, "[0.3, 0.7]", case.tolerance)
    assert not endpoint_test.matches(case.expected, "[0.7]", case.tolerance)
    assert endpoint_test.matches({"a": 1}, '{"a": 1}') and not endpoint_test.matches({"a": 1}, '{"a": 1.2}')
    for bad, message in (
        ({"body_base64": "###", "body": "x"}, "give body or body_base64, not both"),
        ({"body_base64": "###"}, "body_base64 is not base64"),
        ({"body": "x", "tolerance": -1}, "tolerance must be a number >= 0"),
        ({"body": "x", "tolerance": True}, "tolerance must be a number >= 0"),
    ):
        data = copy.deepcopy({"content_type": "text/csv", "expected": 1, **bad})
        with pytest.raises(PayloadError, match=message):
            parse_case(json.dumps(data).encode(), "c.json")


def test_monitoring_needs_csv_channels():
    data = _example("image-classification")
    data["environments"][1]["monitoring"] = {"label_position": "start"}
    assert _refused(data, "image-classification") == (
        "pipeline.yml: environments[1].monitoring: the data-quality baseline reads the training data as CSV, and "
        "the channel(s) train, train_lst, validation, validation_lst are not text/csv; remove monitoring"
    )
    data = _example("builtin-xgboost")
    data["environments"][1]["monitoring"] = {"label_position": "start", "header": False}
    assert parse_config(data, root=EXAMPLES / "builtin-xgboost").monitors


def test_the_train_step_may_not_upload_code_for_a_builtin():
    # The sample grants the train role PutObject on PROJECT/code/* (its one mention of code/).
    sample = json.dumps(render(load_config(EXAMPLES.parent / "pipeline.yml")).templates["pipeline.json"])
    assert sample.count("/code/*") == 1
    builtin = parse_config(_example("builtin-xgboost"), root=EXAMPLES / "builtin-xgboost")
    template = json.dumps(render(builtin).templates["pipeline.json"])
    assert "/code/" not in template and "iris-xgboost/data/*" in template


def test_a_payload_the_algorithm_does_not_serve_is_refused(tmp_path):
    import shutil

    root = tmp_path / "example"
    shutil.copytree(EXAMPLES / "linear-learner", root)
    case = json.loads((root / "endpoint-tests" / "setosa.json").read_text())
    (root / "endpoint-tests" / "image.json").write_text(json.dumps({**case, "content_type": "application/x-image"}))
    with pytest.raises(ConfigError) as exc:
        load_config(root / "pipeline.yml", check_payloads=True)
    assert exc.value.problems == [
        f"{root / 'pipeline.yml'}: endpoint_tests.payloads_dir: endpoint-tests/image.json: content_type "
        "'application/x-image' is not one Linear Learner serves (one of: text/csv, application/json, "
        "application/x-recordio-protobuf)"
    ]
    load_config(root / "pipeline.yml")  # without reading the payloads (deploy, train): not checked
