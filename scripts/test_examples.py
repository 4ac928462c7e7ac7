"""`make test-examples`: train each example on this machine, briefly, and run its serving handlers
on its endpoint-test payloads; says which ran and which were skipped, and why.

Opt-in and offline: a framework runs only where its CPU wheel is installed (`make test-examples`
installs the `examples` extra: xgboost-cpu, 6 MB; PyTorch's and TensorFlow's wheels are hundreds
of MB to GBs, so they run only where already installed). What runs is the example's own
train.py, as SageMaker's container would start it (`--name value` per hyperparameter,
SM_CHANNEL_TRAIN, SM_MODEL_DIR), and its handlers as the framework's serving container calls
them: model_fn -> input_fn -> predict_fn -> output_fn (scikit-learn, XGBoost, PyTorch), or
TensorFlow Serving's input_handler -> the SavedModel -> output_handler. A version here is not the
image's (the image's own wheel is not installed): this checks the code's contract, not parity.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType, SimpleNamespace

from pipeline.config import PipelineConfig, load_config
from pipeline.payloads import load_cases
from scripts.common import StageFailure, one_line_errors

# The module each framework's example imports: absent -> the example is skipped.
MODULES = {"sklearn": "sklearn", "xgboost": "xgboost", "pytorch": "torch", "tensorflow": "tensorflow"}


@dataclass(frozen=True)
class Result:
    """One example's outcome: ran (with the gate's line and the payloads checked) or skipped (why)."""

    name: str
    ran: bool
    detail: str


def _module(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"example_{path.parent.parent.name}_{path.stem}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def data_folder(config: PipelineConfig) -> str | None:
    """The repo folder holding the example's training data: its local_dir, or the seed_dir the
    model bucket's data folder is seeded from; None when the data is only in S3."""
    return config.training_data.local_dir or config.training_data.seed_dir


def train(config: PipelineConfig, root: Path, model_dir: Path) -> str:
    """Run the example's train.py as the container would; returns its gate metric line."""
    source = root / config.model.source_dir
    data = root / (data_folder(config) or "")
    argv = [sys.executable, str(source / config.model.entry_point)]
    for name, value in config.model.hyperparameters.items():
        argv += [f"--{name}", json.dumps(value) if not isinstance(value, str) else value]
    env = {**os.environ, "SM_CHANNEL_TRAIN": str(data), "SM_MODEL_DIR": str(model_dir)}
    done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False, timeout=600)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise StageFailure(f"train.py exited {done.returncode}: {last}")
    metric = config.quality_gate.metric
    lines = [line for line in done.stdout.splitlines() if line.startswith(metric)]
    if not lines:
        raise StageFailure(f"train.py printed no {metric} line")
    return lines[-1]


def _tensorflow_serving(handlers: ModuleType, model_dir: Path, body: bytes, content_type: str) -> str:
    """What TensorFlow Serving's container does with a request: input_handler, the SavedModel's
    serving signature, output_handler (its response as TensorFlow Serving's REST answer)."""
    import tensorflow as tf  # type: ignore[import-untyped,import-not-found,unused-ignore]

    context = SimpleNamespace(request_content_type=content_type, accept_header="application/json")
    request = json.loads(handlers.input_handler(SimpleNamespace(read=lambda: body), context))
    serve = tf.saved_model.load(str(model_dir / "1")).signatures["serving_default"]
    outputs = serve(tf.constant(request["instances"], dtype=tf.float32))
    scores = next(iter(outputs.values())).numpy().tolist()
    response = SimpleNamespace(status_code=200, content=json.dumps({"predictions": scores}).encode())
    answer, _ = handlers.output_handler(response, context)
    return str(answer)


def serve(config: PipelineConfig, root: Path, model_dir: Path) -> int:
    """Run the handlers on every endpoint-test payload; returns how many matched their expected answer."""
    handlers = _module(root / config.model.source_dir / config.model.inference_entry_point)
    payloads = load_cases(root / config.endpoint_tests.payloads_dir)
    model = None if config.framework.serving_program else handlers.model_fn(str(model_dir))
    for payload in payloads:
        body = payload.body.encode()
        if config.framework.serving_program:
            answer = _tensorflow_serving(handlers, model_dir, body, payload.content_type)
        else:
            data = handlers.input_fn(body, payload.content_type)
            answer, _ = handlers.output_fn(handlers.predict_fn(data, model), payload.accept)
        if json.loads(answer) != payload.expected:
            raise StageFailure(f"{payload.name}: expected {payload.expected}, got {answer}")
    return len(payloads)


def run_example(path: Path) -> Result:
    """Train and serve one example, or say why it is skipped."""
    config = load_config(path)
    name = path.parent.name
    if config.model.own_container:
        return Result(name, False, "its own image: needs Docker (docker build, then docker run IMAGE train / serve)")
    if config.builtin:
        return Result(
            name, False, f"{config.framework.title} is a built-in algorithm: it runs only in SageMaker's image"
        )
    module = MODULES[config.model.framework]
    if importlib.util.find_spec(module) is None:
        return Result(name, False, f"{module} is not installed (make test-examples installs xgboost-cpu only)")
    if data_folder(config) is None:
        return Result(name, False, "its training data is not in the repo (training_data.local_dir or seed_dir)")
    with tempfile.TemporaryDirectory() as work:
        model_dir = Path(work) / "model"
        line = train(config, path.parent, model_dir)
        checked = serve(config, path.parent, model_dir)
    return Result(name, True, f"{line}; {checked} endpoint-test payloads answered as expected")


@one_line_errors("test-examples")
def main(argv: list[str] | None = None) -> int:
    """Run every example (or those named); 0 when none that ran failed."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="example folders under examples/ (default: all)")
    args = parser.parse_args(argv)
    paths = sorted(Path("examples").glob("*/pipeline.yml"))
    if args.names:
        paths = [path for path in paths if path.parent.name in args.names]
    failed = 0
    for path in paths:
        try:
            result = run_example(path)
        except StageFailure as exc:
            failed += 1
            print(f"{path.parent.name}: FAILED: {exc}")
            continue
        print(f"{result.name}: {'ran' if result.ran else 'skipped'}: {result.detail}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
