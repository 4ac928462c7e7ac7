"""The pipeline's Train action: package the model code, start a SageMaker training job, wait for
it, hold it to the quality gate, and write the run's parameters for every environment's endpoint
stack (endpoint-parameters.json).

Runs in CodeBuild (`python -m scripts.train`) and, with the same arguments, on a laptop.
What to train (hyperparameters, instance types, the gate) comes from `pipeline.yml` in the
commit, so a commit can change it; where to put things (bucket, role, KMS key) comes from the
pipeline stack through flags or environment variables.
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import tarfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from botocore.exceptions import ClientError

from pipeline.algorithms import plain_value
from pipeline.aws import client, error_line, is_aws_error, training_job_console_url
from pipeline.branches import load_run_config
from pipeline.config import PipelineConfig, QualityGate
from pipeline.instances import has_instance_storage
from pipeline.names import Names
from pipeline.stacks.endpoint import parameters_file
from pipeline.tags import PROJECT_TAG, allowed_in_tags, project_tags
from scripts.baseline import compute_baseline
from scripts.common import StageFailure, one_line_errors, write_exports
from scripts.registry import Registered, register_version, version_metadata

SOURCE_ARCHIVE = "sourcedir.tar.gz"
TERMINAL_STATUSES = ("Completed", "Failed", "Stopped")
_COMMIT = re.compile(r"^[0-9a-f]{7,40}$")


@dataclass(frozen=True)
class Target:
    """Where one run puts things: the stack's bucket, role and key, and the commit it trains."""

    bucket: str
    role_arn: str
    kms_key_arn: str | None
    commit: str
    project: str
    reason: str | None = None

    def uri(self, kind: str, *rest: str) -> str:
        """s3://BUCKET/PROJECT/KIND/REST..., e.g. uri("code", commit, "sourcedir.tar.gz")."""
        return "s3://" + "/".join([self.bucket, self.project, kind, *rest])

    def key(self, kind: str, *rest: str) -> str:
        """The object key of `uri(kind, *rest)`."""
        return "/".join([self.project, kind, *rest])

    @property
    def upload_args(self) -> dict[str, str]:
        """ExtraArgs for uploads: SSE-KMS with the stack's key when one is given."""
        if not self.kms_key_arn:
            return {}
        return {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": self.kms_key_arn}


# --- inputs -------------------------------------------------------------------------------------


def resolve_commit(given: str | None, repo_dir: Path) -> str:
    """The commit being trained: the flag/env value, else `git rev-parse HEAD` in the repo."""
    commit = given
    if not commit:
        try:
            done = subprocess.run(
                ["git", "rev-parse", "HEAD"], cwd=repo_dir, capture_output=True, text=True, check=False
            )
        except OSError:
            done = None
        if done is not None and done.returncode == 0:
            commit = done.stdout.strip()
    if not commit:
        raise StageFailure(
            "no commit to train: pass --commit or set COMMIT_ID (CodeBuild sets "
            "CODEBUILD_RESOLVED_SOURCE_VERSION), or run inside a git checkout"
        )
    commit = commit.strip().lower()
    if not _COMMIT.match(commit):
        raise StageFailure(f"commit '{commit}' is not a git commit id (7 to 40 hex digits)")
    return commit


def required(value: str | None, flag: str, env: str, what: str) -> str:
    """A stack value that must be set, or a one-line failure naming its flag and variable."""
    if not value:
        raise StageFailure(f"no {what}: pass {flag} or set {env}")
    return value


def training_job_name(project: str, commit: str, now: datetime | None = None) -> str:
    """The job's name for this commit, now (pipeline.names owns the format and sizes the project for it)."""
    return Names(project).training_job(commit, now or datetime.now(timezone.utc))


# --- packaging and uploads ----------------------------------------------------------------------


def _skipped_dirs(config: PipelineConfig, repo_dir: Path) -> list[Path]:
    """Folders inside source_dir that are data, not code: the training data and the test payloads."""
    dirs = [config.endpoint_tests.payloads_dir]
    if config.training_data.local_dir:
        dirs.append(config.training_data.local_dir)
    return [(repo_dir / d).resolve() for d in dirs]


def source_files(config: PipelineConfig, repo_dir: Path) -> list[Path]:
    """The files of source_dir that go into the archive, sorted; no caches, data or test payloads."""
    source = (repo_dir / config.model.source_dir).resolve()
    skipped = _skipped_dirs(config, repo_dir)
    files = []
    for path in sorted(source.rglob("*")):
        if not path.is_file() or "__pycache__" in path.relative_to(source).parts or path.suffix == ".pyc":
            continue
        if any(path.resolve().is_relative_to(d) for d in skipped):
            continue
        files.append(path)
    return files


def package_source(config: PipelineConfig, repo_dir: Path, out_dir: Path) -> Path:
    """Write sourcedir.tar.gz (files at the archive root, as script mode expects) and return its path."""
    source = (repo_dir / config.model.source_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    archive = out_dir / SOURCE_ARCHIVE
    with tarfile.open(archive, "w:gz") as tar:
        for path in source_files(config, repo_dir):
            tar.add(path, arcname=path.relative_to(source).as_posix(), recursive=False)
    return archive


def upload_source(s3, archive: Path, target: Target) -> str:
    """Upload the source archive under the commit and return its s3:// URI."""
    s3.upload_file(
        str(archive), target.bucket, target.key("code", target.commit, SOURCE_ARCHIVE), ExtraArgs=target.upload_args
    )
    return target.uri("code", target.commit, SOURCE_ARCHIVE)


def training_data_uri(s3, config: PipelineConfig, repo_dir: Path, target: Target) -> str:
    """The train channel's S3 prefix: s3_uri as given, the model bucket's training data folder, or
    local_dir uploaded under the commit."""
    data = config.training_data
    if config.training_data_key_prefix is not None:
        return f"s3://{target.bucket}/{config.training_data_key_prefix}"
    if data.local_dir is None:  # the config holds exactly one of the three
        return str(data.s3_uri)
    local = repo_dir / data.local_dir
    for path in sorted(p for p in local.rglob("*") if p.is_file()):
        key = target.key("data", target.commit, path.relative_to(local).as_posix())
        s3.upload_file(str(path), target.bucket, key, ExtraArgs=target.upload_args)
    return target.uri("data", target.commit) + "/"


@dataclass(frozen=True)
class DataVersion:
    """Which data a job trains on: a digest of the objects under its S3 prefix (key, ETag, size),
    how many there are and when the newest was written."""

    digest: str
    objects: int
    newest: datetime

    def __str__(self) -> str:
        return (
            f"{self.digest} ({self.objects} objects, newest {self.newest.astimezone(timezone.utc):%Y-%m-%dT%H:%M:%SZ})"
        )


DATA_VERSION_DIGITS = 16


def _bucket_and_prefix(uri: str) -> tuple[str, str]:
    bucket, _, prefix = uri.removeprefix("s3://").partition("/")
    return bucket, prefix


def data_version(s3, uri: str, page_size: int = 1000) -> DataVersion:
    """The version of the data under `uri` (an s3:// prefix): sha256 over the sorted (key, ETag,
    size) of every object, first 16 hex digits. Fails in one line when nothing is there.
    `page_size`: keys per ListObjectsV2 page (S3's most, 1000; tests page smaller)."""
    bucket, prefix = _bucket_and_prefix(uri)
    found = []
    pages = s3.get_paginator("list_objects_v2").paginate(
        Bucket=bucket, Prefix=prefix, PaginationConfig={"PageSize": page_size}
    )
    for page in pages:
        found += [(o["Key"], o["ETag"], o["Size"], o["LastModified"]) for o in page.get("Contents", [])]
    if not found:
        raise StageFailure(f"no training data: no object under {uri}")
    digest = hashlib.sha256()
    for key, etag, size, _ in sorted(found):
        digest.update(json.dumps([key, etag, size]).encode() + b"\n")
    return DataVersion(digest.hexdigest()[:DATA_VERSION_DIGITS], len(found), max(f[3] for f in found))


# --- repacking for serving -----------------------------------------------------------------------

REPACKED_ARCHIVE = "model.tar.gz"
REPACKED_CODE = "code"


def repacked_key(target: Target, job_name: str) -> str:
    """Where a job's repacked model goes: beside its output, under the model bucket's models/ prefix."""
    return target.key("models", job_name, "repacked", REPACKED_ARCHIVE)


def _fixed(info: tarfile.TarInfo) -> tarfile.TarInfo:
    """A member without the packer's times and owners, so the same inputs give the same bytes."""
    info.mtime = 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def write_repacked(model: Path, files: list[Path], source: Path, out: Path) -> Path:
    """model.tar.gz with the inference code under code/, as the SDK's sagemaker.utils.repack_model
    makes it (the model's own members as trained, then source_dir's files under code/, its
    requirements.txt among them); deterministic: gzip and code members carry no time stamps."""
    with (
        tarfile.open(model, "r:gz") as trained,
        out.open("wb") as raw,
        gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as zipped,
        tarfile.open(fileobj=zipped, mode="w", format=tarfile.PAX_FORMAT) as repacked,
    ):
        for member in trained:
            if member.name == REPACKED_CODE or member.name.startswith(REPACKED_CODE + "/"):
                continue  # code the training script saved is replaced by this commit's
            repacked.addfile(member, trained.extractfile(member) if member.isfile() else None)
        for path in files:
            name = f"{REPACKED_CODE}/{path.relative_to(source).as_posix()}"
            with path.open("rb") as handle:
                repacked.addfile(_fixed(repacked.gettarinfo(str(path), name)), handle)
    return out


def repack_model(s3, config: PipelineConfig, repo_dir: Path, target: Target, job: dict, work_dir: Path) -> str:
    """For a framework whose serving reads its code from model.tar.gz (PyTorch >= 1.2, TensorFlow
    Serving): download the job's model, add source_dir under code/, upload it under the job's
    models/ folder (KMS as every upload) and return its s3:// URI. A reused job is repacked again
    from the same model and the same code (the inputs hash covers it): the same bytes, same key."""
    bucket, key = _bucket_and_prefix(job["ModelArtifacts"]["S3ModelArtifacts"])
    work_dir.mkdir(parents=True, exist_ok=True)
    trained = work_dir / "trained-model.tar.gz"
    s3.download_file(bucket, key, str(trained))
    source = (repo_dir / config.model.source_dir).resolve()
    repacked = write_repacked(trained, source_files(config, repo_dir), source, work_dir / REPACKED_ARCHIVE)
    out_key = repacked_key(target, job["TrainingJobName"])
    s3.upload_file(str(repacked), target.bucket, out_key, ExtraArgs=target.upload_args)
    return f"s3://{target.bucket}/{out_key}"


# --- the training job ---------------------------------------------------------------------------


def hyperparameters(config: PipelineConfig, code_uri: str | None, job_output: str = "") -> dict[str, str]:
    """The job's hyperparameters as the model's container takes them: script mode, the user's plus the
    entry point, code and region, each JSON-encoded as the SageMaker SDK does (TensorFlow's model_dir
    under `job_output`, the job's own folder of the output path); a built-in algorithm or an own
    container, the user's alone, as plain strings (true -> "true", 4 -> "4")."""
    if config.model.own_container:
        return {key: plain_value(value) for key, value in config.model.hyperparameters.items()}
    return config.framework.training_hyperparameters(
        dict(config.model.hyperparameters), config.model.entry_point, code_uri or "", config.region, job_output
    )


def training_job_request(
    config: PipelineConfig,
    target: Target,
    name: str,
    image: str,
    code_uri: str | None,
    data_uri: str,
    data_version: str | None = None,
    inputs: str | None = None,
) -> dict:
    """The CreateTrainingJob request for this commit (tagged with the data version and the inputs
    hash when given)."""
    training = config.model.training
    gate = config.quality_gate
    key = target.kms_key_arn
    output = {"S3OutputPath": target.uri("models") + "/"}
    resources = {
        "InstanceType": training.instance_type,
        "InstanceCount": training.instance_count,
        "VolumeSizeInGB": training.volume_gb,
    }
    stopping = {"MaxRuntimeInSeconds": training.max_runtime_minutes * 60}
    if key:
        output["KmsKeyId"] = key
        if not has_instance_storage(training.instance_type):
            resources["VolumeKmsKeyId"] = key
    algorithm: dict = {"TrainingImage": image, "TrainingInputMode": "File"}
    if not config.builtin:  # a built-in algorithm reports its own metrics
        algorithm["MetricDefinitions"] = [{"Name": gate.metric, "Regex": gate.metric_regex}]
    request = {
        "TrainingJobName": name,
        "AlgorithmSpecification": algorithm,
        "HyperParameters": hyperparameters(config, code_uri, target.uri("models", name)),
        "RoleArn": target.role_arn,
        "InputDataConfig": input_data_config(config, data_uri),
        "OutputDataConfig": output,
        "ResourceConfig": resources,
        "StoppingCondition": stopping,
        "EnableInterContainerTrafficEncryption": False,
        "Tags": [
            {"Key": k, "Value": v}
            for k, v in job_tags(config, target.commit, target.reason, data_version, inputs).items()
        ],
    }
    if training.spot:
        stopping["MaxWaitTimeInSeconds"] = training.job_wait_minutes * 60
        request["EnableManagedSpotTraining"] = True
        request["CheckpointConfig"] = {"S3Uri": target.uri("checkpoints", name) + "/"}
    return request


def input_data_config(config: PipelineConfig, data_uri: str) -> list[dict]:
    """The job's channels: script mode's one `train` channel reads the whole training data; a built-in
    algorithm's channels each read their folder under it (DATA/train/, DATA/validation/, ...) with
    their content type."""

    def channel(name: str, uri: str, content_type: str | None = None) -> dict:
        entry: dict = {
            "ChannelName": name,
            "DataSource": {
                "S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": uri, "S3DataDistributionType": "FullyReplicated"}
            },
        }
        if content_type:
            entry["ContentType"] = content_type
        return entry

    algorithm = config.model.algorithm
    if algorithm is None:
        return [channel("train", data_uri)]
    base = data_uri if data_uri.endswith("/") else data_uri + "/"
    folders = algorithm.folders
    return [channel(name, base + folders[name], kind) for name, kind in algorithm.content_types.items()]


COMMIT_TAG = "sagemaker-cd:commit"
REASON_TAG = "sagemaker-cd:run-reason"
DATA_VERSION_TAG = "sagemaker-cd:data-version"
INPUTS_HASH_TAG = "sagemaker-cd:inputs-hash"
# SageMaker's TagValue (botocore): at most 256 of the characters pipeline.tags allows.
JOB_TAG_VALUE_MAX = 256


def job_tags(
    config: PipelineConfig,
    commit: str,
    reason: str | None = None,
    data_version: str | None = None,
    inputs: str | None = None,
) -> dict[str, str]:
    """The project's tags plus the commit the job was trained for and, when given, why the run
    started, the version of the data it trained on and the hash of its inputs (the training cache)."""
    extra = {COMMIT_TAG: commit}
    if reason:
        extra[REASON_TAG] = reason
    if data_version:
        extra[DATA_VERSION_TAG] = data_version
    if inputs:
        extra[INPUTS_HASH_TAG] = inputs
    return project_tags(config, extra)


def tag_safe_reason(reason: str | None) -> str | None:
    """The run's reason as a SageMaker tag value: characters a tag cannot hold become `-`, at most
    256 characters, None when blank. Prints one line when it had to change the reason."""
    if reason is None or not reason.strip():
        return None
    reason = reason.strip()
    safe = "".join(c if allowed_in_tags(c) else "-" for c in reason)[:JOB_TAG_VALUE_MAX]
    if safe != reason:
        print(
            f"run reason {reason[:80]!r} does not fit a SageMaker tag (letters, digits, spaces, _.:/=+-@, "
            f"at most {JOB_TAG_VALUE_MAX} characters): tagged as {safe[:80]!r}"
        )
    return safe


def start_training_job(sagemaker, request: dict) -> str:
    """Create the training job and return its name."""
    sagemaker.create_training_job(**request)
    return request["TrainingJobName"]


def _elapsed(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    return f"[{minutes:3d}m{secs:02d}s]"


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Turn SIGTERM (CodeBuild stopping the build) into KeyboardInterrupt while the block runs."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum, frame):
        # Once is enough: a second SIGTERM must not cut short the stop request the first one causes.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def stop_job(sagemaker, name: str) -> None:
    """Stop the job so it does not keep billing after the build is gone; a failed stop is reported, not raised."""
    try:
        sagemaker.stop_training_job(TrainingJobName=name)
        print(f"stopped training job {name}")
    except Exception as exc:  # any AWS failure; the interruption stays the reason the stage failed
        if not is_aws_error(exc):
            raise
        print(f"could not stop training job {name}: {error_line(exc)}", file=sys.stderr)


def wait_for_job(
    sagemaker,
    name: str,
    poll_seconds: float,
    sleep: Callable[[float], None] | None = None,
    clock: Callable[[], float] | None = None,
) -> dict:
    """Poll the job until it ends, printing each status change; returns the final description.

    Interrupted (Ctrl-C, or SIGTERM under `sigterm_as_interrupt`), it stops the job and fails.
    """
    sleep = sleep or time.sleep
    clock = clock or time.monotonic
    started = clock()
    last = None
    try:
        while True:
            job = sagemaker.describe_training_job(TrainingJobName=name)
            status = (job["TrainingJobStatus"], job.get("SecondaryStatus", ""))
            if status != last:
                print(f"{_elapsed(clock() - started)} {' / '.join(s for s in status if s)}", flush=True)
                last = status
            if status[0] in TERMINAL_STATUSES:
                return job
            sleep(poll_seconds)
    except KeyboardInterrupt:
        stop_job(sagemaker, name)
        raise StageFailure(f"interrupted while waiting for training job {name}; asked SageMaker to stop it") from None


def check_job_ended_well(job: dict) -> None:
    """Fail unless the job Completed, with SageMaker's reason."""
    name, status = job["TrainingJobName"], job["TrainingJobStatus"]
    reason = job.get("FailureReason")
    if status == "Failed":
        raise StageFailure(f"training job {name} Failed: {reason or 'no reason given'}")
    if status == "Stopped":
        raise StageFailure(f"training job {name} was Stopped" + (f": {reason}" if reason else ""))


def gate_metric(job: dict, gate: QualityGate, builtin: bool = False) -> float:
    """The gate metric's final value; fails if the job did not report it (a built-in algorithm logs
    its own, script mode through the gate's regex) or it misses the gate."""
    values = [m["Value"] for m in job.get("FinalMetricDataList", []) if m.get("MetricName") == gate.metric]
    if not values and builtin:
        raise StageFailure(
            f"training job {job['TrainingJobName']} did not report {gate.metric} (the built-in algorithm logs it "
            "only when the job has the channel it is computed on, and the objective computes it)"
        )
    if not values:
        raise StageFailure(
            f"training job {job['TrainingJobName']} did not report {gate.metric}: no log line matched "
            f"the regex {gate.metric_regex!r} (the training script must print it)"
        )
    value = float(values[-1])
    if not gate.passes(value):
        raise StageFailure(f"{gate.metric} = {value:.4f} misses the quality gate {gate.terms}")
    print(f"{gate.metric} = {value:.4f} passes the quality gate {gate.terms}")
    return value


# --- the training cache -------------------------------------------------------------------------

# Bumped when what goes into the hash changes, so an old job is not mistaken for a match.
INPUTS_HASH_SCHEME = 1
# Stands in for the code's S3 location in the hashed hyperparameters: that location names the
# commit, while the code's contents are hashed file by file.
CODE_PLACEHOLDER = "<sourcedir>"
# How many of the project's newest Completed jobs the cache looks through (one ListTags each).
REUSE_LOOKBACK = 100
# ListTrainingJobs' NameContains takes at most 63 characters (botocore's NameContains).
_NAME_CONTAINS_MAX = 63


def _file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def local_data_digest(config: PipelineConfig, repo_dir: Path) -> str:
    """With training_data.local_dir: sha256 over the folder's files (relative path and content
    hash), the data's part of the inputs hash (the uploaded copy's keys name the commit)."""
    assert config.training_data.local_dir is not None
    local = repo_dir / config.training_data.local_dir
    files = [[p.relative_to(local).as_posix(), _file_digest(p)] for p in sorted(local.rglob("*")) if p.is_file()]
    return "files:" + hashlib.sha256(json.dumps(files).encode()).hexdigest()


def model_inputs(config: PipelineConfig, repo_dir: Path, image: str, data: str) -> dict:
    """Everything that shapes the model, as one JSON-able document: the source archive's files
    (path and content hash), the training data's version, framework, image, hyperparameters as the
    job gets them (the code location aside), the job's resources and the quality gate."""
    source = (repo_dir / config.model.source_dir).resolve()
    training, gate = config.model.training, config.quality_gate
    algorithm = config.model.algorithm
    files = source_files(config, repo_dir) if config.script_mode else []  # an own image holds its code
    own = config.model.own_container
    inputs = {
        "scheme": INPUTS_HASH_SCHEME,
        "source": [[p.relative_to(source).as_posix(), _file_digest(p)] for p in files],
        "data": data,
        "framework": None if own else [config.model.framework, config.model.framework_version],
        "image": image,
        "hyperparameters": hyperparameters(config, CODE_PLACEHOLDER),
        "resources": {
            "instance_type": training.instance_type,
            "instance_count": training.instance_count,
            "volume_gb": training.volume_gb,
            "spot": training.spot,
            "max_runtime_minutes": training.max_runtime_minutes,
            "job_wait_minutes": training.job_wait_minutes,
        },
        "gate": {
            "metric": gate.metric,
            "regex": gate.metric_regex,
            "threshold": gate.threshold,
            "direction": gate.direction,
        },
    }
    if algorithm is not None:  # script mode's document stays as it was (its hashes still match)
        inputs["framework"] = ["algorithm", algorithm.name, algorithm.version]
        inputs["channels"] = {name: [kind, algorithm.folders[name]] for name, kind in algorithm.content_types.items()}
    return inputs


def inputs_hash(inputs: dict) -> str:
    """The training cache's key: sha256 (hex) of the inputs document, keys sorted."""
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()


@dataclass(frozen=True)
class Reused:
    """An earlier training job with the same inputs hash that Completed and passed the gate."""

    job: dict
    tags: dict[str, str]
    value: float

    @property
    def name(self) -> str:
        """The reused training job's name (the endpoints' ModelVersion)."""
        return self.job["TrainingJobName"]

    @property
    def commit(self) -> str:
        """The commit the reused job was trained for (its commit tag)."""
        return self.tags.get(COMMIT_TAG, "unknown")

    @property
    def code_uri(self) -> str | None:
        """The source archive the reused job trained with, which its endpoints serve with (None: a
        built-in algorithm or an own container)."""
        code = self.job.get("HyperParameters", {}).get("sagemaker_submit_directory")
        return json.loads(code) if code else None

    @property
    def image(self) -> str:
        """The reused job's training image."""
        return self.job["AlgorithmSpecification"]["TrainingImage"]


def _own_job(project: str) -> re.Pattern[str]:
    """Names of this project's training jobs (pipeline.names: PROJECT-SHA7-UTCTIME), not a branch
    pipeline's (PROJECT-BRANCH-HASH-...)."""
    return re.compile(rf"^{re.escape(project)}-[0-9a-f]{{7}}-\d{{8}}T\d{{6}}$")


def _passes_gate(job: dict, gate: QualityGate) -> float | None:
    values = [m["Value"] for m in job.get("FinalMetricDataList", []) if m.get("MetricName") == gate.metric]
    if not values or not gate.passes(float(values[-1])):
        return None
    return float(values[-1])


def find_reusable(sagemaker, config: PipelineConfig, inputs: str, lookback: int = REUSE_LOOKBACK) -> Reused | None:
    """The newest of this project's last `lookback` Completed training jobs tagged with `inputs`
    (and the project) that passed the gate, or None. Failed, stopped and gate-failing jobs never match."""
    own = _own_job(config.project)
    pages = sagemaker.get_paginator("list_training_jobs").paginate(
        NameContains=config.project[:_NAME_CONTAINS_MAX],
        StatusEquals="Completed",
        SortBy="CreationTime",
        SortOrder="Descending",
        PaginationConfig={"MaxItems": lookback, "PageSize": min(lookback, 100)},
    )
    for page in pages:
        for summary in page.get("TrainingJobSummaries", []):
            if not own.match(summary["TrainingJobName"]) or summary.get("TrainingJobStatus") != "Completed":
                continue
            listed = sagemaker.list_tags(ResourceArn=summary["TrainingJobArn"])["Tags"]
            tags = {t["Key"]: t["Value"] for t in listed}
            if tags.get(INPUTS_HASH_TAG) != inputs or tags.get(PROJECT_TAG) != config.project:
                continue
            job = sagemaker.describe_training_job(TrainingJobName=summary["TrainingJobName"])
            value = _passes_gate(job, config.quality_gate) if job["TrainingJobStatus"] == "Completed" else None
            if value is None:
                print(
                    f"training job {job['TrainingJobName']} has the same inputs but did not pass the gate: not reused"
                )
                continue
            return Reused(job, tags, value)
    return None


# --- champion/challenger ------------------------------------------------------------------------


@dataclass(frozen=True)
class Champion:
    """The model serving in the champion environment: its training job and the gate metric's value."""

    environment: str
    job: str
    value: float


def _stack_outputs(cloudformation, stack: str) -> dict[str, str] | None:
    """A stack's outputs by key; None when the stack does not exist."""
    try:
        stacks = cloudformation.describe_stacks(StackName=stack)["Stacks"]
    except ClientError as exc:
        error = exc.response["Error"]
        if error["Code"] == "ValidationError" and "does not exist" in error.get("Message", ""):
            return None
        raise
    return {o["OutputKey"]: o.get("OutputValue", "") for o in stacks[0].get("Outputs", [])} if stacks else None


def find_champion(cloudformation, sagemaker, config: PipelineConfig, environment: str) -> Champion | None:
    """The champion: the environment's endpoint stack output ModelVersion is the training job that
    produced the serving model; its final value of the gate's metric. None (with one line saying why)
    when there is none yet: no stack, no such output, the job is gone or did not report the metric."""
    gate = config.quality_gate
    stack = config.names.endpoint_stack(environment)
    outputs = _stack_outputs(cloudformation, stack)
    job_name = (outputs or {}).get("ModelVersion")
    if not job_name:
        why = f"no stack {stack}" if outputs is None else f"stack {stack} has no ModelVersion output"
        print(f"no champion in {environment} yet ({why}): the challenger passes")
        return None
    try:
        job = sagemaker.describe_training_job(TrainingJobName=job_name)
    except ClientError as exc:
        if exc.response["Error"]["Code"] not in ("ValidationException", "ResourceNotFound"):
            raise
        print(f"no champion in {environment}: its training job {job_name} is gone: the challenger passes")
        return None
    values = [m["Value"] for m in job.get("FinalMetricDataList", []) if m.get("MetricName") == gate.metric]
    if not values:
        print(
            f"no champion in {environment}: its training job {job_name} reported no {gate.metric}: the challenger passes"
        )
        return None
    return Champion(environment, job_name, float(values[-1]))


def champion_gate(value: float, champion: Champion | None, gate: QualityGate) -> None:
    """Fail in one line, with both numbers, unless the challenger beats the champion by the margin."""
    if champion is None:
        return
    margin = gate.champion.margin if gate.champion else 0.0
    terms = f"{gate.direction}, margin {margin:g}"
    both = (
        f"challenger {gate.metric} {value:.4f} vs champion {champion.value:.4f} "
        f"({champion.environment}, {champion.job})"
    )
    if not gate.beats(value, champion.value):
        raise StageFailure(f"{both}: the challenger does not beat the champion ({terms})")
    print(f"{both}: the challenger beats the champion ({terms})")


def champion_exports(config: PipelineConfig, champion: Champion | None) -> dict[str, str]:
    """CHAMPION_VALUE and CHAMPION_ENV for the approval message when there is a champion gate
    (CHAMPION_VALUE 'none' without a champion yet: the approval refers to the variable either way)."""
    if config.champion_environment is None:
        return {}
    if champion is None:
        return {"CHAMPION_VALUE": "none", "CHAMPION_ENV": config.champion_environment}
    return {"CHAMPION_VALUE": f"{champion.value:.4f}", "CHAMPION_ENV": champion.environment}


# --- outputs ------------------------------------------------------------------------------------


def run_parameters(
    config: PipelineConfig, job: dict, code_uri: str | None, commit: str, model_data: str | None = None
) -> dict[str, dict]:
    """Environment -> the template configuration its endpoint stack is deployed with for this run:
    the model (`model_data`, the repacked one where the framework serves from it; else the job's),
    its serving image (per environment: a GPU fleet serves with the GPU build), code (script mode
    only) and version (the endpoint template fixes everything else), and the stack tags."""
    out = {}
    for env in config.environments:
        parameters = {
            "ModelDataUrl": model_data or job["ModelArtifacts"]["S3ModelArtifacts"],
            "ImageUri": config.serving_image(env),
            "SourceDir": code_uri,
            "ModelVersion": job["TrainingJobName"],
        }
        if not config.script_mode:
            del parameters["SourceDir"]
        out[env.name] = {"Parameters": parameters, "Tags": job_tags(config, commit)}
    return out


def baseline_parameters(
    sagemaker, config: PipelineConfig, target: Target, job_name: str, data_uri: str, poll_seconds: float
) -> dict[str, str]:
    """With monitoring: the Model Monitor baseline of this training job's data (scripts/baseline.py),
    as the endpoint stacks' baseline parameters; nothing otherwise."""
    with sigterm_as_interrupt():
        baseline = compute_baseline(
            sagemaker,
            config,
            bucket=target.bucket,
            job_name=job_name,
            data_uri=data_uri,
            role_arn=target.role_arn,
            kms_key_arn=target.kms_key_arn,
            tags=job_tags(config, target.commit, target.reason),
            poll_seconds=poll_seconds,
        )
    return baseline.parameters() if baseline else {}


def register_model(
    sagemaker,
    config: PipelineConfig,
    commit: str,
    job_name: str,
    value: float,
    model_data: str,
    data_version_digest: str,
    code_uri: str | None,
) -> Registered:
    """Register the model that passed the gate as a new version of the project's model package
    group, PendingManualApproval (a reused model too: one version per run). Its container is the
    last environment's serving image and the ModelDataUrl the endpoints get (scripts/registry.py)."""
    group = config.names.model_package_group
    registered = register_version(
        sagemaker,
        group,
        image=config.serving_image(config.environments[-1]),
        model_data_url=model_data,
        metadata=version_metadata(
            commit=commit,
            training_job=job_name,
            metric_name=config.quality_gate.metric,
            metric_value=value,
            data_version=data_version_digest,
            source_dir=code_uri if config.script_mode else None,
        ),
        description=f"{job_name} of commit {commit[:7]}: {config.quality_gate.metric} = {value:.4f}",
    )
    print(f"registered version {registered.version} of model package group {group}: {registered.arn}")
    return registered


def write_outputs(out_dir: Path, parameters: dict[str, dict], exports: dict[str, str]) -> list[Path]:
    """Write each environment's endpoint-stack run parameters and exports.env; returns the paths written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for env_name, configuration in parameters.items():
        path = out_dir / parameters_file(env_name)
        path.write_text(json.dumps(configuration, indent=2) + "\n")
        paths.append(path)
    exports_path = out_dir / "exports.env"
    write_exports(exports_path, exports)
    return [*paths, exports_path]


# --- command line -------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    """The train command's arguments; stack values default to the variables CodeBuild sets."""
    env = os.environ.get
    parser = argparse.ArgumentParser(
        prog="python -m scripts.train",
        description="Train the model of this commit on SageMaker and hold it to the quality gate.",
    )
    parser.add_argument("--config", default="pipeline.yml", help="the pipeline config (default: pipeline.yml)")
    parser.add_argument(
        "--output-dir",
        default="build/train",
        help="where the environments' endpoint parameters and exports.env go (default: build/train)",
    )
    parser.add_argument("--model-bucket", default=env("MODEL_BUCKET"), help="model bucket (env MODEL_BUCKET)")
    parser.add_argument(
        "--role-arn", default=env("SAGEMAKER_ROLE_ARN"), help="SageMaker execution role (env SAGEMAKER_ROLE_ARN)"
    )
    parser.add_argument(
        "--kms-key-arn",
        default=env("KMS_KEY_ARN"),
        help="KMS key for uploads, model output and volumes (env KMS_KEY_ARN, optional)",
    )
    parser.add_argument(
        "--commit",
        default=env("COMMIT_ID") or env("CODEBUILD_RESOLVED_SOURCE_VERSION"),
        help="commit id (env COMMIT_ID, CODEBUILD_RESOLVED_SOURCE_VERSION, else git HEAD)",
    )
    parser.add_argument(
        "--reason",
        default=env("RUN_REASON"),
        help="why this run was started, tagged on the training job (env RUN_REASON, the pipeline's RunReason)",
    )
    parser.add_argument(
        "--image-repository-uri",
        default=env("IMAGE_REPOSITORY_URI"),
        help="model.container only: the project's ECR repository its images are in (env IMAGE_REPOSITORY_URI)",
    )
    parser.add_argument("--poll-seconds", type=float, default=30.0, help="seconds between status checks (default 30)")
    parser.add_argument(
        "--no-reuse",
        action="store_true",
        help="train even when an earlier job with the same inputs passed the gate (as model.training.reuse: false)",
    )
    return parser


def _target(args: argparse.Namespace, config: PipelineConfig, repo_dir: Path) -> Target:
    bucket = required(args.model_bucket, "--model-bucket", "MODEL_BUCKET", "model bucket")
    if "/" in bucket:
        raise StageFailure(f"--model-bucket '{bucket}' should be a bucket name, not a URI or path")
    return Target(
        bucket=bucket,
        role_arn=required(args.role_arn, "--role-arn", "SAGEMAKER_ROLE_ARN", "SageMaker role"),
        kms_key_arn=args.kms_key_arn or None,
        commit=resolve_commit(args.commit, repo_dir),
        project=config.project,
        reason=tag_safe_reason(args.reason),
    )


@one_line_errors("train")
def main(argv: list[str] | None = None) -> int:
    """Run the Train action; 0 when the model passes the gate, 1 on failure, 2 on a bad config."""
    args = build_parser().parse_args(argv)
    if args.poll_seconds <= 0:
        raise StageFailure("--poll-seconds must be positive")
    config = load_run_config(args.config)
    repo_dir = Path(args.config).resolve().parent
    out_dir = Path(args.output_dir)
    target = _target(args, config, repo_dir)
    s3 = client("s3", config.region)
    sagemaker = client("sagemaker", config.region)

    code_uri: str | None = None
    if config.model.own_container:
        # Its images are the BuildImage stage's, tagged by this commit; the code is in them.
        repository = required(
            args.image_repository_uri, "--image-repository-uri", "IMAGE_REPOSITORY_URI", "image repository"
        )
        config = config.with_built_image(repository, target.commit)
    elif config.builtin:
        print(f"{config.framework.title} {config.image_version}: SageMaker's own code, nothing to upload")
    else:
        archive = package_source(config, repo_dir, out_dir)
        # Uploaded even when a model is reused (small, and a refused upload fails the run up front).
        code_uri = upload_source(s3, archive, target)
        print(f"uploaded {config.model.source_dir}/ to {code_uri}")
    data_uri = training_data_uri(s3, config, repo_dir, target)
    version = data_version(s3, data_uri)
    print(f"training data: {data_uri}, data version {version}")
    if target.reason:
        print(f"run reason: {target.reason}")
    image = config.training_image
    local_data = config.training_data.local_dir is not None
    data = local_data_digest(config, repo_dir) if local_data else version.digest
    inputs = inputs_hash(model_inputs(config, repo_dir, image, data))
    print(f"inputs hash {inputs}")
    reused = None
    if not config.model.training.reuse or args.no_reuse:
        why = "--no-reuse" if args.no_reuse else "model.training.reuse is false"
        print(f"not looking for a model to reuse ({why})")
    else:
        reused = find_reusable(sagemaker, config, inputs)
        if reused is None:
            print("no earlier job of this project with these inputs passed the gate: training")

    if reused is not None:
        job, name, code_uri, image = reused.job, reused.name, reused.code_uri, reused.image
        print(
            f"reusing training job {name} of commit {reused.commit}: same inputs hash, Completed and passed "
            "the gate; no training job started"
        )
        value = gate_metric(job, config.quality_gate, config.builtin)
        origin = f"reused from commit {reused.commit[:7]} (unchanged inputs)"
        # The data the model was trained on (a local_dir upload's keys name the commit it was for).
        data_version_digest = reused.tags.get(DATA_VERSION_TAG, version.digest)
    else:
        name = training_job_name(config.project, target.commit)
        request = training_job_request(config, target, name, image, code_uri, data_uri, version.digest, inputs)
        start_training_job(sagemaker, request)
        print(f"started training job {name}: {training_job_console_url(config.region, name)}", flush=True)

        with sigterm_as_interrupt():
            job = wait_for_job(sagemaker, name, args.poll_seconds)
        check_job_ended_well(job)
        value = gate_metric(job, config.quality_gate, config.builtin)
        origin = "trained for this commit"
        data_version_digest = version.digest
    champion = None
    if config.champion_environment is not None:
        champion = find_champion(
            client("cloudformation", config.region), sagemaker, config, config.champion_environment
        )
        champion_gate(value, champion, config.quality_gate)

    model_data = job["ModelArtifacts"]["S3ModelArtifacts"]
    if config.script_mode and config.framework.repacks(config.model.framework_version):
        model_data = repack_model(s3, config, repo_dir, target, job, out_dir / "repack")
        print(
            f"repacked the model with {config.model.source_dir}/ under code/ (as the SDK does for "
            f"{config.framework.title}): {model_data}"
        )
    parameters = run_parameters(config, job, code_uri, target.commit, model_data)
    # The baseline describes this run's data; named after this run (a reused job already has one).
    baseline_name = name if reused is None else training_job_name(config.project, target.commit)
    baseline = baseline_parameters(sagemaker, config, target, baseline_name, data_uri, args.poll_seconds)
    for configuration in parameters.values():
        configuration["Parameters"].update(baseline)
    registered = register_model(
        sagemaker, config, target.commit, name, value, model_data, data_version_digest, code_uri
    )
    written = write_outputs(
        out_dir,
        parameters,
        {
            "METRIC_NAME": config.quality_gate.metric,
            "METRIC_VALUE": f"{value:.4f}",
            "TRAINING_JOB_NAME": name,
            "MODEL_DATA_URL": model_data,
            "DATA_VERSION": data_version_digest,
            "MODEL_ORIGIN": origin,
            "MODEL_PACKAGE_ARN": registered.arn,
            "MODEL_PACKAGE_VERSION": str(registered.version),
            **champion_exports(config, champion),
        },
    )
    verb = "reused" if reused else "trained"
    print(f"{verb} {name}: {config.quality_gate.metric} = {value:.4f}, model {model_data}")
    print("wrote " + ", ".join(str(p) for p in written))
    return 0


if __name__ == "__main__":
    sys.exit(main())
