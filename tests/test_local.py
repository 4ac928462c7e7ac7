"""`make local`: the serving contract, the local invoker of the endpoint test, the training step's
pieces; the whole loop on the sample (and on a broken copy of it) in subprocesses (heavy)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
import xml.etree.ElementTree as ET
from pathlib import Path
from urllib.request import Request, urlopen

import pytest

from pipeline.config import load_config
from pipeline.payloads import Case
from scripts import endpoint_test, local
from scripts.common import StageFailure
from scripts.endpoint_test import LocalRuntime, run_cases
from scripts.local_serve import request_types, serve_model

ROOT = Path(__file__).resolve().parent.parent

# A model and handlers without scikit-learn: predicts "big" when the first feature is over 5.
HANDLERS = """
import json

class Model:
    def predict(self, rows):
        return ["big" if row[0] > 5 else "small" for row in rows]

def model_fn(model_dir):
    return Model()

def input_fn(body, content_type):
    if content_type != "text/csv":
        raise ValueError("send text/csv")
    return [[float(x) for x in line.split(",")] for line in body.splitlines()]

def output_fn(prediction, accept):
    return json.dumps({"predictions": prediction}), "application/json"
"""


def _serve(tmp_path: Path, source: str):
    code = tmp_path / "code"
    code.mkdir(exist_ok=True)
    (code / "inference.py").write_text(textwrap.dedent(source))
    return serve_model(code, "inference.py", tmp_path)


def _case(name: str, body: str, expected, content_type: str = "text/csv") -> Case:
    return Case(name, "", content_type, "application/json", body, expected)


@pytest.fixture
def server(tmp_path):
    running = _serve(tmp_path, HANDLERS)
    yield running
    running.stop()


def test_ping_answers_200_once_the_model_is_loaded(server):
    with urlopen(f"{server.url}/ping", timeout=5) as response:
        assert response.status == 200


def test_the_endpoint_test_passes_and_fails_cases_against_the_local_server(server):
    cases = [
        _case("good.json", "6.0,1\n4.0,1", {"predictions": ["big", "small"]}),
        _case("wrong.json", "6.0,1", {"predictions": ["small"]}),
        _case("bad-type.json", '{"x": 1}', {"predictions": []}, content_type="application/json"),
    ]
    outcomes = run_cases(LocalRuntime(server.url), "local", cases, budget_ms=5000)
    assert [o.passed for o in outcomes] == [True, False, False]
    assert outcomes[1].failure.startswith('expected {"predictions": ["small"]}, got')
    # A handler's exception reaches the test as SageMaker's ModelError, naming the exception.
    assert outcomes[2].failure.startswith("invoke failed: InvokeEndpoint: ModelError: Received client error (500)")
    assert "ValueError: send text/csv (inference.py:13)" in outcomes[2].failure


def test_a_server_that_is_gone_fails_each_case_in_one_line(tmp_path):
    running = _serve(tmp_path, HANDLERS)
    url = running.url
    running.stop()
    (outcome,) = run_cases(LocalRuntime(url), "local", [_case("a.json", "6,1", {})], budget_ms=5000)
    assert outcome.failure.startswith("invoke failed: Could not connect to the endpoint URL")


def test_the_image_defaults_fill_in_missing_handlers_and_answer_415_for_an_unknown_type(tmp_path):
    running = _serve(
        tmp_path,
        """
        class Model:
            def predict(self, rows):
                return [sum(row) for row in rows]

        def model_fn(model_dir):
            return Model()
        """,
    )
    try:
        # sagemaker-inference's decoder (float32 rows) and encoder (JSON) around model.predict.
        request = Request(f"{running.url}/invocations", data=b"1,2\n3,4", headers={"Content-Type": "text/csv"})
        with urlopen(request, timeout=5) as response:
            assert json.loads(response.read()) == [3.0, 7.0]
            assert response.headers["Content-Type"] == "application/json"
        (outcome,) = run_cases(
            LocalRuntime(running.url), "local", [_case("x.json", "a", {}, content_type="text/plain")], 5000
        )
        assert "Received client error (415)" in outcome.failure
    finally:
        running.stop()


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("def model_fn(d):\n    raise OSError('no model.joblib')\n", "model_fn failed: OSError: no model.joblib"),
        ("import not_a_module\n", "importing inference.py: ModuleNotFoundError: No module named 'not_a_module'"),
        ("x = 1\n", "inference.py defines no model_fn"),
        (
            "def model_fn(d): return 1\ndef transform_fn(m, b, c, a): return b\ndef input_fn(b, c): return b\n",
            "cannot use transform_fn with input_fn",
        ),
    ],
)
def test_a_handler_module_that_cannot_serve_fails_in_one_line(tmp_path, source, message):
    with pytest.raises(StageFailure, match=message.replace("(", r"\(").replace(")", r"\)")):
        _serve(tmp_path, source)


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({}, ("application/json", "application/json")),
        ({"Content-Type": "text/csv", "Accept": "*/*"}, ("text/csv", "application/json")),
        (
            {"ContentType": "text/csv", "Content-Type": "application/json", "Accept": "text/csv"},
            ("text/csv", "text/csv"),
        ),
    ],
)
def test_content_type_and_accept_default_as_the_image_worker_reads_them(headers, expected):
    assert request_types(headers) == expected


def test_the_gate_reads_the_last_value_the_regex_matches():
    regex = load_config(ROOT / "pipeline.yml").quality_gate.metric_regex
    assert local.read_metric("validation:accuracy=0.5\nvalidation:accuracy=0.97\n", regex) == 0.97
    assert local.read_metric("accuracy 0.97", regex) is None


def test_a_failed_script_is_named_by_its_own_last_line_not_the_toolkit_report():
    log = (
        "2026-01-01 00:00:00,000 sagemaker-training-toolkit INFO     Invoking user script\n"
        "train.py: error: no *.csv files in the training folder '/x'\n"
        "2026-01-01 00:00:01,000 sagemaker-training-toolkit ERROR    Reporting training FAILURE\n"
        "ExecuteUserScriptError: ...\n"
    )
    assert local.failure_reason(log, 1) == "train.py: error: no *.csv files in the training folder '/x'"
    assert local.failure_reason("", 3) == "exit code 3"


def test_the_channel_comes_from_the_configs_training_data(tmp_path):
    config = load_config(ROOT / "pipeline.yml")
    assert local.channel_source(config, ROOT, None) == str(ROOT / "model/data")  # seed_dir
    assert local.channel_source(config, ROOT, "s3://b/p/") == "s3://b/p/"
    no_seed = config.model_copy(update={"training_data": config.training_data.model_copy(update={"seed_dir": None})})
    with pytest.raises(StageFailure, match="model_bucket_prefix has no seed_dir to train on locally: pass --data"):
        local.channel_source(no_seed, ROOT, None)


def test_an_s3_channel_without_credentials_fails_in_one_line(tmp_path, monkeypatch):
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    with pytest.raises(StageFailure, match=r"^downloading s3://bucket/data/: .*credentials"):
        local.fetch_channel("s3://bucket/data/", tmp_path / "train")


def test_offline_skips_s3_only_data_with_a_skipped_report(tmp_path, capsys):
    config_text = (
        (ROOT / "pipeline.yml")
        .read_text()
        .replace("  model_bucket_prefix: training-data/\n  seed_dir: model/data\n", "  s3_uri: s3://bucket/data/\n")
    )
    shutil.copytree(ROOT / "model", tmp_path / "model")
    (tmp_path / "pipeline.yml").write_text(config_text.replace("triggers:", "triggers_:"))
    report = tmp_path / "r.xml"
    assert local.main(["--config", str(tmp_path / "pipeline.yml"), "--offline", "--junit-xml", str(report)]) == 0
    assert (
        capsys.readouterr()
        .out.splitlines()[-1]
        .startswith("local: skipped: the training data is not in the repository (s3://")
    )
    assert ET.parse(report).getroot().find("testsuite").get("skipped") == "1"


def test_the_local_url_mode_needs_no_environment_and_refuses_deployed_flags():
    assert endpoint_test.parse_args(["--url", "http://127.0.0.1:1"]).environment is None
    with pytest.raises(SystemExit):
        endpoint_test.parse_args(
            ["--url", "http://x", "--deployed-config", "c", "--deployed-model", "m", "--deployed-version", "v"]
        )


def _run_local(config: Path, work: Path) -> subprocess.CompletedProcess:
    argv = ["--config", str(config), "--work-dir", str(work / "build"), "--junit-xml", str(work / "report.xml")]
    return subprocess.run(
        [sys.executable, "-m", "scripts.local", *argv], cwd=ROOT, capture_output=True, text=True, timeout=120
    )


@pytest.mark.heavy
def test_the_sample_trains_serves_and_passes_its_endpoint_tests(tmp_path):
    result = _run_local(ROOT / "pipeline.yml", tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert [line.split()[1] for line in lines if line.startswith("local: ") and " ok " in line] == [
        "train",
        "serve",
        "test",
    ]
    assert "validation:accuracy = 0.9667 passes the gate" in result.stdout
    suite = ET.parse(tmp_path / "report.xml").getroot().find("testsuite")
    assert (suite.get("tests"), suite.get("failures")) == ("4", "0")
    layout = tmp_path / "build" / "opt" / "ml"
    assert json.loads((layout / "input/config/hyperparameters.json").read_text())["n-estimators"] == "100"
    assert (layout / "model" / "model.joblib").is_file() and (layout / "input/data/train/iris.csv").is_file()


@pytest.mark.heavy
def test_a_broken_inference_script_fails_in_one_line_naming_the_cases(tmp_path):
    shutil.copytree(ROOT / "model", tmp_path / "model")
    shutil.copy(ROOT / "pipeline.yml", tmp_path / "pipeline.yml")
    handlers = tmp_path / "model" / "inference.py"
    handlers.write_text(handlers.read_text().replace("model.predict(data)", "model.predict(data[:, :3])"))
    result = _run_local(tmp_path / "pipeline.yml", tmp_path)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "local: FAILED: test ("
        + result.stderr.split("test (")[1].split(")")[0]
        + "): 4 of 4 cases failed: batch-json.json, setosa-csv.json, versicolor-csv.json, virginica-csv.json"
    ]
    assert "Traceback" not in result.stdout + result.stderr


def test_the_least_privilege_audit_runs_the_local_loop_unless_it_is_offline():
    """The Lint action's `scripts.local --offline` reads no S3, so the audit has no call of it to check;
    without the flag it could download an s3_uri and is a stage script like any other."""
    from iam_audit.simulate import ScriptRun, classify

    assert classify(".venv/bin/python -m scripts.local --config pipeline.yml --offline --junit-xml r.xml") is None
    assert isinstance(classify(".venv/bin/python -m scripts.local --config pipeline.yml"), ScriptRun)
