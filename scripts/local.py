"""`make local`: train, serve and test the model on this machine in seconds: no AWS account, no Docker.

    python -m scripts.local [--config pipeline.yml] [--data DIR] [--keep-serving]

1. **train**: runs `model.entry_point` under SageMaker's training contract in `build/local/opt/ml`
   (`input/data/<channel>/`, `input/config/{hyperparameters,resourceconfig,inputdataconfig}.json`,
   `model/`, `output/`), with the `SM_*` environment and the `--name value` arguments the
   scikit-learn container's toolkit (sagemaker-training) gives the script (`pipeline.sagemaker_local`),
   from a copy of `model.source_dir` as its working folder (the container's /opt/ml/code). The
   channel `train` comes from the config's training data: `local_dir`, `seed_dir` (with
   `model_bucket_prefix`), or `s3_uri` downloaded with your AWS credentials. The quality gate's
   regex reads the metric from the script's output and the gate is applied, as the Train action does.
2. **serve**: loads `model.inference_entry_point` the way the scikit-learn serving container does
   (model_fn once, then input_fn/predict_fn/output_fn per request, the toolkit's defaults for the
   ones it does not define) and answers `GET /ping` and `POST /invocations` on 127.0.0.1 (a free port).
3. **test**: the endpoint test (`scripts.endpoint_test --url`) with the config's payloads and
   latency budget, writing its JUnit report (default build/reports/local-endpoint-tests.xml).

One line per step with its time; on a failure one line naming the step (and the case) and exit 1.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.branches import load_run_config
from pipeline.config import PipelineConfig
from pipeline.frameworks import FRAMEWORKS, IMAGE_RUNTIMES
from scripts.common import StageFailure, one_line_errors

CHANNEL = "train"
DEFAULT_JUNIT = "build/reports/local-endpoint-tests.xml"
TRAIN_LOG = "train.log"
HOST = "algo-1"  # SageMaker's name for the first (here the only) instance of a job
TRAIN_TIMEOUT_S = 600


@dataclass(frozen=True)
class Step:
    """One timed step's outcome line."""

    name: str
    seconds: float
    detail: str

    def line(self) -> str:
        """`local: train    ok  1.2 s  validation:accuracy = 0.9667 passes the gate ...`."""
        return f"local: {self.name:<6} ok  {self.seconds:5.1f} s  {self.detail}"


class StepFailure(StageFailure):
    """A step failed; the message names the step."""


def timed(name: str, work: Callable[[], str]) -> Step:
    """Run one step; its one-line summary, or a StepFailure naming it."""
    started = time.perf_counter()
    try:
        detail = work()
    except StageFailure as exc:
        raise StepFailure(f"{name} ({time.perf_counter() - started:.1f} s): {exc}") from None
    return Step(name, time.perf_counter() - started, detail)


# --- train ----------------------------------------------------------------------------------------


def channel_source(config: PipelineConfig, root: Path, data: str | None) -> str:
    """Where the `train` channel comes from: --data, local_dir, seed_dir, or the s3_uri."""
    if data is not None:
        return data
    training = config.training_data
    if training.local_dir is not None:
        return str(root / training.local_dir)
    if training.seed_dir is not None:
        return str(root / training.seed_dir)
    if training.s3_uri is not None:
        return training.s3_uri
    raise StageFailure(
        "training_data.model_bucket_prefix has no seed_dir to train on locally: pass --data DIR (or S3 URI), "
        "or set training_data.seed_dir"
    )


def fetch_channel(source: str, target: Path, s3_client: Callable[[], Any] | None = None) -> int:
    """Copy (or, for s3://, download) the channel's files into `target`; how many files."""
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    if source.startswith("s3://"):
        return download_s3(source, target, s3_client)
    folder = Path(source)
    if not folder.is_dir():
        raise StageFailure(f"training data folder '{source}' does not exist")
    count = 0
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        dest = target / path.relative_to(folder)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, dest)
        count += 1
    if not count:
        raise StageFailure(f"training data folder '{source}' is empty")
    return count


def download_s3(uri: str, target: Path, s3_client: Callable[[], Any] | None = None) -> int:
    """Every object under the S3 prefix, as SageMaker's File mode lays it out (the key below the prefix)."""
    from pipeline.aws import client, error_line, is_aws_error

    bucket, _, prefix = uri[len("s3://") :].partition("/")
    try:
        s3 = s3_client() if s3_client else client("s3")
        count = 0
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for item in page.get("Contents", []):
                key = item["Key"]
                if key.endswith("/"):
                    continue
                dest = target / key[len(prefix) :].lstrip("/")
                dest.parent.mkdir(parents=True, exist_ok=True)
                s3.download_file(bucket, key, str(dest))
                count += 1
    except Exception as exc:
        if not is_aws_error(exc):
            raise
        raise StageFailure(f"downloading {uri}: {error_line(exc)}") from None
    if not count:
        raise StageFailure(f"no objects under {uri}")
    return count


def last_line(text: str) -> str:
    """The last non-blank line (a script's error message), or ''."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else ""


def read_metric(log: str, regex: str) -> float | None:
    """The metric's final value as SageMaker reads it: the regex's group, last match in the logs."""
    values = re.findall(regex, log)
    if not values:
        return None
    try:
        return float(values[-1])
    except ValueError:
        return None


def write_training_config(ml: Path, hyperparameters: dict[str, str], channels: list[str]) -> None:
    """input/config/*.json as SageMaker writes them for a one-instance File-mode job."""
    config = ml / "input" / "config"
    config.mkdir(parents=True, exist_ok=True)
    (config / "hyperparameters.json").write_text(json.dumps(hyperparameters, indent=1))
    (config / "resourceconfig.json").write_text(
        json.dumps({"current_host": HOST, "hosts": [HOST], "network_interface_name": "eth0"}, indent=1)
    )
    modes = {"TrainingInputMode": "File", "S3DistributionType": "FullyReplicated", "RecordWrapperType": "None"}
    (config / "inputdataconfig.json").write_text(json.dumps({name: modes for name in channels}, indent=1))
    for folder in ("model", "output"):
        (ml / folder).mkdir(parents=True, exist_ok=True)


def toolkit_environment(ml: Path) -> dict[str, str]:
    """This process's environment plus what makes sagemaker-training use `ml` as /opt/ml."""
    env = dict(os.environ)
    env.update({"SAGEMAKER_BASE_DIR": str(ml.resolve()), "SM_STUDIO_LOCAL_MODE": "true", "PYTHONUNBUFFERED": "1"})
    return env


# The toolkit's own log lines: `2026-01-01 12:00:00,000 sagemaker-training-toolkit LEVEL message`.
_TOOLKIT_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ sagemaker-training-toolkit ")


def failure_reason(log: str, returncode: int) -> str:
    """What the training script said last before it failed (its error line), not the toolkit's report."""
    script_lines = []
    for line in log.splitlines():
        if _TOOLKIT_LINE.match(line):
            if " ERROR " in line:
                break  # the toolkit's failure report repeats the output
            script_lines.append("")
            continue
        script_lines.append(line)
    return last_line("\n".join(script_lines)) or f"exit code {returncode}"


def train(config: PipelineConfig, root: Path, ml: Path, source: str, python: str = sys.executable) -> str:
    """Lay out /opt/ml under `ml`, run the entry point through sagemaker-training as the image does
    (`train`, i.e. sagemaker_training.cli.train), read the gate's metric from its output, apply the gate."""
    from scripts.train import package_source  # the archive the Train action uploads, built the same way

    if ml.exists():
        shutil.rmtree(ml)
    files = fetch_channel(source, ml / "input" / "data" / CHANNEL)
    archive = package_source(config, root, ml.parent / "source")
    framework = FRAMEWORKS[config.model.framework]
    hyperparameters = framework.training_hyperparameters(
        config.model.hyperparameters, config.model.entry_point, str(archive.resolve()), config.region
    )
    write_training_config(ml, hyperparameters, [CHANNEL])
    command = [python, "-m", "sagemaker_training.cli.train"]
    result = subprocess.run(
        command, cwd=ml.parent, env=toolkit_environment(ml), capture_output=True, text=True, timeout=TRAIN_TIMEOUT_S
    )
    log = result.stdout + result.stderr
    (ml / "output" / TRAIN_LOG).write_text(log)
    if result.returncode != 0:
        reason = failure_reason(log, result.returncode)
        raise StageFailure(f"{config.model.entry_point} failed: {reason} (log: {ml / 'output' / TRAIN_LOG})")
    gate = config.quality_gate
    value = read_metric(log, gate.metric_regex)
    if value is None:
        raise StageFailure(
            f"{config.model.entry_point} did not print {gate.metric}: no line matched {gate.metric_regex!r}"
        )
    if not gate.passes(value):
        raise StageFailure(f"{gate.metric} = {value:.4f} misses the quality gate {gate.terms}")
    models = sorted(p.name for p in (ml / "model").iterdir())
    if not models:
        raise StageFailure(f"{config.model.entry_point} saved nothing in SM_MODEL_DIR ({ml / 'model'})")
    return f"{files} data file(s); {gate.metric} = {value:.4f} passes the gate {gate.terms}; model: {', '.join(models)}"


def version_note(framework_version: str) -> str | None:
    """One line when this Python or scikit-learn differs from the image's, or the image's are unknown."""
    image = IMAGE_RUNTIMES.get(framework_version)
    here_python = "{}.{}".format(*sys.version_info[:2])
    try:
        from importlib.metadata import version

        here_sklearn = version("scikit-learn")
    except Exception:  # not installed: the training script will say so
        here_sklearn = "not installed"
    if image is None:
        return f"the {framework_version} image's Python/scikit-learn are not recorded; here: Python {here_python}, scikit-learn {here_sklearn}"
    if (here_python, here_sklearn) == (image["python"], image["scikit-learn"]):
        return None
    return (
        f"here Python {here_python}, scikit-learn {here_sklearn}; the {framework_version} image runs Python "
        f"{image['python']}, scikit-learn {image['scikit-learn']}: a model that passes here may still fail there"
    )


# --- command ----------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    """The local loop's arguments."""
    parser = argparse.ArgumentParser(prog="python -m scripts.local", description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="pipeline.yml", help="the pipeline config (default: pipeline.yml)")
    parser.add_argument("--data", help="train on this folder or s3://bucket/prefix/ instead of the config's data")
    parser.add_argument("--work-dir", default="build/local", help="where opt/ml goes (default: build/local)")
    parser.add_argument(
        "--junit-xml", default=DEFAULT_JUNIT, help=f"the endpoint test's report (default: {DEFAULT_JUNIT})"
    )
    parser.add_argument(
        "--offline",
        action="store_true",
        help="never read S3 (the Lint action): when the training data is only in S3, skip the loop in one line "
        "and write a report with one skipped case",
    )
    parser.add_argument(
        "--keep-serving", action="store_true", help="after the test, keep serving until Ctrl-C (to try requests)"
    )
    return parser


def skip(junit_xml: str, config: PipelineConfig, reason: str) -> int:
    """Say in one line why the loop did not run, and write a report with one skipped case."""
    import xml.etree.ElementTree as ET

    suites = ET.Element("testsuites")
    suite = ET.SubElement(
        suites, "testsuite", name=f"{config.project}-local", tests="1", failures="0", errors="0", skipped="1"
    )
    case = ET.SubElement(suite, "testcase", classname=f"{config.project}-local", name="local loop")
    ET.SubElement(case, "skipped", message=reason)
    Path(junit_xml).parent.mkdir(parents=True, exist_ok=True)
    ET.ElementTree(suites).write(junit_xml, encoding="utf-8", xml_declaration=True)
    print(f"local: skipped: {reason}")
    return 0


# The frameworks whose serving container the local loop stands in for (scripts/local_serve.py).
LOCAL_FRAMEWORKS = ("sklearn",)


def not_local(config: PipelineConfig) -> str | None:
    """Why this loop cannot run the config's model here, or None: it mirrors the scikit-learn container."""
    if config.model.own_container:
        return (
            "model.container: the local loop runs a framework's script mode; your own image needs Docker "
            "(docker build, then docker run IMAGE train / serve)"
        )
    if config.builtin:
        return (
            f"{config.framework.title} is a SageMaker built-in algorithm: it runs only in SageMaker's image, not "
            "on this machine; make test checks its config and templates offline"
        )
    if config.model.framework not in LOCAL_FRAMEWORKS:
        return (
            f"model.framework is {config.framework.title}: make local mirrors the scikit-learn container only "
            "(the pipeline trains and serves the others; make test-examples runs their handlers)"
        )
    return None


@one_line_errors("local")
def main(argv: list[str] | None = None) -> int:
    """Train, serve, test; 0 when every step passes, 1 naming the failed step, 2 on a bad config."""
    from scripts import endpoint_test
    from scripts.local_serve import serve_model

    args = build_parser().parse_args(argv)
    config = load_run_config(args.config)
    root = Path(args.config).resolve().parent
    ml = Path(args.work_dir) / "opt" / "ml"
    started = time.perf_counter()
    why = not_local(config)
    if why is not None:
        if args.offline:  # the Lint action: nothing this loop can run is not a failure of the commit
            return skip(args.junit_xml, config, why)
        raise StageFailure(why)
    note = version_note(config.model.framework_version)
    if note:
        print(f"local: note: {note}")
    try:
        source = channel_source(config, root, args.data)
    except StageFailure as exc:
        if not args.offline:
            raise
        source = f"({exc})"
    if args.offline and source.startswith(("s3://", "(")):
        return skip(
            args.junit_xml, config, f"the training data is not in the repository ({source}) and --offline reads no S3"
        )
    print(timed("train", lambda: train(config, root, ml, source)).line(), flush=True)

    servers = []

    def start() -> str:
        server = serve_model(ml / "code", config.model.inference_entry_point, ml / "model")
        servers.append(server)
        return f"{server.url} (GET /ping, POST /invocations)"

    try:
        print(timed("serve", start).line(), flush=True)

        def test() -> str:
            argv = ["--config", args.config, "--url", servers[0].url, "--junit-xml", args.junit_xml]
            argv += ["--exports-file", str(Path(args.work_dir) / "endpoint-test-exports.env")]
            endpoint_test.test_local(endpoint_test.parse_args(argv))
            return f"report {args.junit_xml}"

        print(timed("test", test).line(), flush=True)
        print(f"local: passed in {time.perf_counter() - started:.1f} s")
        if args.keep_serving:
            print(f"local: serving on {servers[0].url} until Ctrl-C")
            try:
                while True:
                    time.sleep(3600)
            except KeyboardInterrupt:
                pass
    finally:
        for server in servers:
            server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
