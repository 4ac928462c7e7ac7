"""The sample model: train.py trains for real, and the endpoint test payloads hold for what it makes."""

import importlib
import importlib.util
import json
import re
import runpy
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
MODEL = REPO / "model"
PAYLOADS = sorted((MODEL / "endpoint-tests").glob("*.json"))
METRIC_LINE = re.compile(r"^validation:accuracy=([-+]?[0-9]*\.?[0-9]+)$", re.MULTILINE)
GATE = 0.9  # quality_gate.threshold in pipeline.yml


def start_train(train_dir: Path, model_dir: Path) -> subprocess.Popen:
    """Start model/train.py the way the container runs it: a fresh Python, hyperparameters as flags."""
    return subprocess.Popen(
        [
            sys.executable,
            str(MODEL / "train.py"),
            "--n-estimators",
            "100",
            "--max-depth",
            "4",
            "--train",
            str(train_dir),
            "--model-dir",
            str(model_dir),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Train once for the whole module: (completed process, model dir)."""
    model_dir = tmp_path_factory.mktemp("model-out")
    process = start_train(MODEL / "data", model_dir)
    # Import scikit-learn here while the child trains: both imports take ~1.5 s and now overlap.
    importlib.import_module("sklearn.ensemble")
    stdout, stderr = process.communicate(timeout=120)
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr), model_dir


@pytest.fixture(scope="module")
def inference():
    """model/inference.py imported from its path, as the container imports the entry point."""
    spec = importlib.util.spec_from_file_location("sample_inference", MODEL / "inference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def model(trained, inference):
    """The trained model, loaded through model_fn."""
    result, model_dir = trained
    assert result.returncode == 0, result.stderr
    return inference.model_fn(str(model_dir))


def test_training_passes_the_quality_gate(trained):
    result, model_dir = trained
    assert result.returncode == 0, result.stderr
    metrics = METRIC_LINE.findall(result.stdout)
    assert len(metrics) == 1, result.stdout
    assert re.search(r"validation:accuracy=\d\.\d{4}$", result.stdout, re.MULTILINE)
    assert float(metrics[0]) >= GATE
    assert (model_dir / "model.joblib").is_file()


def test_there_are_endpoint_test_payloads():
    assert len(PAYLOADS) >= 3


@pytest.mark.parametrize("payload", PAYLOADS, ids=[p.name for p in PAYLOADS])
def test_payload_expectation_holds_for_the_trained_model(payload, model, inference):
    case = json.loads(payload.read_text())
    data = inference.input_fn(case["body"], case["content_type"])
    body, content_type = inference.output_fn(inference.predict_fn(data, model), case["accept"])
    assert content_type == "application/json"
    assert json.loads(body) == case["expected"]


def test_every_species_has_a_payload():
    species = set()
    for payload in PAYLOADS:
        species.update(json.loads(payload.read_text())["expected"]["predictions"])
    assert species == {"setosa", "versicolor", "virginica"}


def test_input_accepts_bytes_and_a_charset(inference):
    data = inference.input_fn(b"5.1,3.5,1.4,0.2\n6.3,3.3,6.0,2.5\n", "text/csv; charset=utf-8")
    assert data.shape == (2, 4)


def test_unsupported_content_type_is_a_value_error(inference):
    with pytest.raises(ValueError, match="unsupported content type 'application/x-npy'"):
        inference.input_fn("5.1,3.5,1.4,0.2", "application/x-npy")


@pytest.mark.parametrize(
    "body, content_type",
    [("5.1,3.5,1.4", "text/csv"), ('{"instances": [[5.1, 3.5, 1.4, 0.2, 9.9]]}', "application/json")],
    ids=["csv-three", "json-five"],
)
def test_wrong_feature_count_is_a_value_error(inference, body, content_type):
    with pytest.raises(ValueError, match="expected 4 features"):
        inference.input_fn(body, content_type)


def test_json_without_instances_is_a_value_error(inference):
    with pytest.raises(ValueError, match="instances"):
        inference.input_fn("[[5.1, 3.5, 1.4, 0.2]]", "application/json")


def test_any_accept_gets_json(inference):
    body, content_type = inference.output_fn(["setosa"], "*/*")
    assert (json.loads(body), content_type) == ({"predictions": ["setosa"]}, "application/json")


def test_unsupported_accept_is_a_value_error(inference):
    with pytest.raises(ValueError, match="unsupported accept type 'text/csv'"):
        inference.output_fn(["setosa"], "text/csv")


def run_train_in_process(monkeypatch, train_dir: Path, model_dir: Path) -> SystemExit:
    """Run train.py as __main__ in this process (sklearn is already imported, so it is quick)."""
    monkeypatch.setattr(sys, "argv", ["train.py", "--train", str(train_dir), "--model-dir", str(model_dir)])
    with pytest.raises(SystemExit) as exc:
        runpy.run_path(str(MODEL / "train.py"), run_name="__main__")
    return exc.value


def test_training_on_an_empty_folder_fails(tmp_path, monkeypatch, model):
    (tmp_path / "data").mkdir()
    exit_ = run_train_in_process(monkeypatch, tmp_path / "data", tmp_path / "out")
    # sys.exit("message") exits with status 1 and prints the message on stderr.
    assert isinstance(exit_.code, str)
    assert exit_.code.startswith("train.py: error: no *.csv files")
    assert not (tmp_path / "out" / "model.joblib").exists()


def test_training_on_a_malformed_csv_names_the_line(tmp_path, monkeypatch, model):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "bad.csv").write_text("5.1,3.5,1.4,0.2,setosa\n4.9,3.0,setosa\n")
    exit_ = run_train_in_process(monkeypatch, tmp_path / "data", tmp_path / "out")
    assert isinstance(exit_.code, str)
    assert "bad.csv: line 2: expected 5 columns" in exit_.code


def test_training_on_one_species_fails(tmp_path, monkeypatch, model):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "one.csv").write_text("5.1,3.5,1.4,0.2,setosa\n4.9,3.0,1.4,0.2,setosa\n")
    exit_ = run_train_in_process(monkeypatch, tmp_path / "data", tmp_path / "out")
    assert "need at least two species" in str(exit_.code)
