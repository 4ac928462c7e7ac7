"""The batch transform step: run the model this run deployed over offline data, and check the result.

Runs in CodeBuild after the endpoint tests of `batch_transform.after` as `python -m
scripts.batch_transform`, with the environment's deployed model (BATCH_MODEL_NAME, the endpoint
stack's ModelName output), the model bucket and the project's key (MODEL_BUCKET, KMS_KEY_ARN) and
the commit (COMMIT_ID). It lists the input objects, starts one SageMaker transform job named like
a training job (`<project>-<sha7>-<UTC time>`) writing to `<project>/batch-output/<job>/` in the
model bucket with the project's key, waits for it (at most `max_wait_minutes`, then stops it),
and passes only when the job Completed and every input object `<key>` has its output
`<key>.out` (SageMaker's naming of a transform's outputs).

Whether it passes or fails, it writes BATCH_SUMMARY (counts, missing outputs, duration), which the
next manual approval's message carries, to an exports file.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone

from pipeline.aws import client, error_line, is_aws_error
from pipeline.branches import load_run_config
from pipeline.config import BatchTransform, ConfigError, PipelineConfig
from pipeline.instances import has_instance_storage
from pipeline.names import Names
from pipeline.tags import PROJECT_TAG
from scripts.common import StageFailure, one_line_errors, write_exports

TERMINAL_STATUSES = ("Completed", "Failed", "Stopped")
POLL_SECONDS = 30.0
# What the summary lists of the missing outputs before "and N more".
SHOWN_MISSING = 3
# The summary joins the approval's CustomData (CodePipeline: at most 1000 characters with the rest).
SUMMARY_MAX = 300
OUTPUT_SUFFIX = ".out"


# --- decide --------------------------------------------------------------------------------------


def input_location(config: PipelineConfig, batch: BatchTransform, model_bucket: str) -> tuple[str, str]:
    """(bucket, prefix) of the input objects: the config's s3_uri, or its folder in the model bucket."""
    if batch.input.s3_uri is not None:
        return batch.input.s3_bucket or "", batch.input.s3_prefix
    return model_bucket, f"{config.project}/{batch.input.model_bucket_prefix}"


def output_prefix(config: PipelineConfig, job_name: str) -> str:
    """Where the job's outputs go in the model bucket: one folder per run (per job)."""
    return f"{config.project}/batch-output/{job_name}/"


def transform_job_name(project: str, commit: str, now: datetime) -> str:
    """PROJECT-SHA7-UTCTIME, as the run's training job is named (pipeline.names owns the format)."""
    return Names(project).training_job(commit, now)


def transform_job_request(
    config: PipelineConfig,
    batch: BatchTransform,
    *,
    job_name: str,
    model_name: str,
    input_uri: str,
    output_uri: str,
    key_arn: str,
) -> dict:
    """CreateTransformJob's request: the model the run deployed, the input prefix, the output folder
    with the project's key, the configured instances (their volume keyed, where it can be), the project's tag."""
    output: dict = {"S3OutputPath": output_uri, "KmsKeyId": key_arn}
    if batch.split_type == "Line":
        output["AssembleWith"] = "Line"
    if batch.accept:
        output["Accept"] = batch.accept
    return {
        "TransformJobName": job_name,
        "ModelName": model_name,
        "TransformInput": {
            "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": input_uri}},
            "ContentType": batch.content_type,
            "SplitType": batch.split_type,
        },
        "TransformOutput": output,
        "TransformResources": {
            "InstanceType": batch.instance_type,
            "InstanceCount": batch.instance_count,
            # Not on instance types with local NVMe storage: SageMaker refuses a volume key there.
            **({} if has_instance_storage(batch.instance_type) else {"VolumeKmsKeyId": key_arn}),
        },
        "Tags": [{"Key": PROJECT_TAG, "Value": config.project}],
    }


def next_move(status: str, waited_s: float, limit_s: float) -> str:
    """What to do about a running job: `done` (it ended), `stop` (the wait is over) or `wait`."""
    if status in TERMINAL_STATUSES:
        return "done"
    return "stop" if waited_s >= limit_s else "wait"


def missing_outputs(inputs: list[str], outputs: set[str], in_prefix: str, out_prefix: str) -> list[str]:
    """The input keys (relative to their prefix) whose `<key>.out` is not among the output keys."""
    return [
        key[len(in_prefix) :] for key in inputs if out_prefix + key[len(in_prefix) :] + OUTPUT_SUFFIX not in outputs
    ]


@dataclass(frozen=True)
class Result:
    """What the job did: its name and status, the input count, the missing outputs (None: not
    looked for, the job did not complete), the minutes, SageMaker's reason for a failure."""

    job: str
    status: str
    inputs: int
    missing: list[str] | None
    minutes: float
    reason: str | None = None

    @property
    def passed(self) -> bool:
        """Completed with an output for every input."""
        return self.status == "Completed" and self.missing == []

    def summary(self) -> str:
        """One line for the approval message, e.g. 'job X Completed: 12 inputs, 12 outputs, 3.2 min'."""
        line = f"job {self.job} {self.status}: {self.inputs} inputs"
        if self.missing is not None:
            line += f", {self.inputs - len(self.missing)} outputs"
        if self.missing:
            shown = ", ".join(self.missing[:SHOWN_MISSING])
            more = f" and {len(self.missing) - SHOWN_MISSING} more" if len(self.missing) > SHOWN_MISSING else ""
            line += f", missing {shown}{more}"
        if self.reason:
            line += f" ({self.reason})"
        line += f", {self.minutes:.1f} min"
        return line if len(line) <= SUMMARY_MAX else line[: SUMMARY_MAX - 3] + "..."


# --- do ------------------------------------------------------------------------------------------


def list_keys(s3, bucket: str, prefix: str) -> list[str]:
    """Every object key under the prefix (folders' zero-byte markers left out)."""
    keys = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        keys += [o["Key"] for o in page.get("Contents", []) if not o["Key"].endswith("/")]
    return keys


def wait_for_job(
    sagemaker,
    name: str,
    limit_s: float,
    poll_seconds: float = POLL_SECONDS,
    sleep: Callable[[float], None] | None = None,
    clock: Callable[[], float] | None = None,
) -> dict:
    """Poll the job until it ends; past `limit_s` (or interrupted) stop it and fail in one line."""
    sleep = sleep or time.sleep
    clock = clock or time.monotonic
    started = clock()
    last = None
    try:
        while True:
            job = sagemaker.describe_transform_job(TransformJobName=name)
            status, waited = job["TransformJobStatus"], clock() - started
            if status != last:
                print(f"{waited / 60:5.1f} min {status}", flush=True)
                last = status
            move = next_move(status, waited, limit_s)
            if move == "done":
                return job
            if move == "stop":
                sagemaker.stop_transform_job(TransformJobName=name)
                raise StageFailure(
                    f"transform job {name} still {status} after {limit_s / 60:.0f} min "
                    "(batch_transform.max_wait_minutes); asked SageMaker to stop it"
                )
            sleep(poll_seconds)
    except KeyboardInterrupt:
        sagemaker.stop_transform_job(TransformJobName=name)
        raise StageFailure(f"interrupted while waiting for transform job {name}; asked SageMaker to stop it") from None


def build_parser() -> argparse.ArgumentParser:
    """The step's arguments; in the pipeline they come from the action's environment."""
    env = os.environ.get
    parser = argparse.ArgumentParser(
        prog="python -m scripts.batch_transform",
        description="Run a SageMaker batch transform with the deployed model and check every input has an output.",
    )
    parser.add_argument("--config", default="pipeline.yml", help="the pipeline config (default: pipeline.yml)")
    parser.add_argument(
        "--model-name",
        default=env("BATCH_MODEL_NAME") or None,
        help="the deployed SageMaker model (env BATCH_MODEL_NAME)",
    )
    parser.add_argument("--bucket", default=env("MODEL_BUCKET") or None, help="the model bucket (env MODEL_BUCKET)")
    parser.add_argument("--kms-key", default=env("KMS_KEY_ARN") or None, help="the project's key (env KMS_KEY_ARN)")
    parser.add_argument("--commit", default=env("COMMIT_ID") or "0000000", help="the commit (env COMMIT_ID)")
    parser.add_argument("--region", help="default: the config's region")
    parser.add_argument(
        "--exports-file",
        default="build/batch-transform-exports.env",
        help="BATCH_SUMMARY for the buildspec (default: build/batch-transform-exports.env)",
    )
    return parser


def _required(value: str | None, flag: str, env: str) -> str:
    if not value:
        raise StageFailure(f"{flag} is required (in the pipeline: {env})")
    return value


def run(args: argparse.Namespace, config: PipelineConfig, batch: BatchTransform) -> Result:
    """List the inputs, start the job, wait, and compare the outputs with the inputs."""
    model = _required(args.model_name, "--model-name", "BATCH_MODEL_NAME")
    bucket = _required(args.bucket, "--bucket", "MODEL_BUCKET")
    key = _required(args.kms_key, "--kms-key", "KMS_KEY_ARN")
    region = args.region or config.region
    s3, sagemaker = client("s3", region), client("sagemaker", region)
    in_bucket, in_prefix = input_location(config, batch, bucket)
    inputs = list_keys(s3, in_bucket, in_prefix)
    if not inputs:
        raise StageFailure(f"no input objects under s3://{in_bucket}/{in_prefix} (batch_transform.input)")
    job_name = transform_job_name(config.project, args.commit, datetime.now(timezone.utc))
    out_prefix = output_prefix(config, job_name)
    request = transform_job_request(
        config,
        batch,
        job_name=job_name,
        model_name=model,
        input_uri=f"s3://{in_bucket}/{in_prefix}",
        output_uri=f"s3://{bucket}/{out_prefix}",
        key_arn=key,
    )
    print(f"transform job {job_name}: model {model}, {len(inputs)} input object(s) under s3://{in_bucket}/{in_prefix}")
    started = time.monotonic()
    sagemaker.create_transform_job(**request)
    job = wait_for_job(sagemaker, job_name, batch.max_wait_minutes * 60.0)
    minutes = (time.monotonic() - started) / 60
    status = job["TransformJobStatus"]
    if status != "Completed":
        return Result(job_name, status, len(inputs), None, minutes, job.get("FailureReason") or "no reason given")
    outputs = set(list_keys(s3, bucket, out_prefix))
    return Result(job_name, status, len(inputs), missing_outputs(inputs, outputs, in_prefix, out_prefix), minutes)


@one_line_errors("batch-transform")
def main(argv: list[str] | None = None) -> int:
    """Run the batch transform; 0 when the job Completed with every output, 1 otherwise, 2 on a bad config."""
    args = build_parser().parse_args(argv)
    config = load_run_config(args.config)
    batch = config.batch_transform
    if batch is None:
        raise ConfigError([f"batch-transform: {args.config} has no batch_transform section"])
    try:
        result = run(args, config, batch)
    except Exception as exc:
        if not isinstance(exc, StageFailure) and not is_aws_error(exc):
            raise
        reason = str(exc) if isinstance(exc, StageFailure) else error_line(exc)
        write_exports(args.exports_file, {"BATCH_SUMMARY": f"not run: {reason}"})
        raise
    write_exports(args.exports_file, {"BATCH_SUMMARY": result.summary()})
    print(f"batch transform: {result.summary()}")
    if not result.passed:
        raise StageFailure(result.summary())
    return 0


if __name__ == "__main__":
    sys.exit(main())
