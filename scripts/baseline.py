"""The Train action's data-quality baseline: a Model Monitor analyzer processing job over the
training data, writing statistics.json and constraints.json that the monitoring schedules check
captured traffic against.

Runs only when some environment of the config has `monitoring`; train.py calls `compute_baseline`
after the model passed its gates. The job's environment is the analyzer's contract as the SageMaker
Python SDK's DefaultModelMonitor.suggest_baseline sets it (pipeline/monitoring.py).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from pipeline import monitoring
from pipeline.config import Monitoring, PipelineConfig
from pipeline.instances import has_instance_storage
from scripts.common import StageFailure

TERMINAL_STATUSES = ("Completed", "Failed", "Stopped")  # botocore sagemaker ProcessingJobStatus
# The analyzer is a Spark job; iris-sized data takes minutes. ml.m5.xlarge is what AWS's Model
# Monitor examples use; 20 GB holds the data and Spark's spill.
INSTANCE_TYPE = "ml.m5.xlarge"
VOLUME_GB = 20
MAX_RUNTIME_S = 3600  # botocore ProcessingStoppingCondition.MaxRuntimeInSeconds: 1..777600
# How long Train waits past the job's own limit (queueing, uploading the output) before stopping it.
WAIT_SLACK_S = 600


@dataclass(frozen=True)
class Baseline:
    """Where one training job's baseline files are."""

    statistics_uri: str
    constraints_uri: str

    def parameters(self) -> dict[str, str]:
        """The endpoint stacks' parameters naming the baseline (endpoint.BASELINE_PARAMETERS)."""
        return {"BaselineStatisticsUri": self.statistics_uri, "BaselineConstraintsUri": self.constraints_uri}


def baseline_settings(config: PipelineConfig) -> Monitoring | None:
    """The monitoring settings that describe the training data (the config refuses environments that
    disagree), or None when no environment monitors."""
    return next((env.monitoring for env in config.environments if env.monitoring is not None), None)


def baseline_prefix(bucket: str, project: str, job_name: str) -> str:
    """s3:// prefix of a training job's baseline: <project>/baselines/<training job>/ in the model bucket."""
    return f"s3://{bucket}/{project}/baselines/{job_name}/"


def baseline_job_request(
    config: PipelineConfig,
    settings: Monitoring,
    *,
    job_name: str,
    data_uri: str,
    output_uri: str,
    role_arn: str,
    kms_key_arn: str | None,
    tags: dict[str, str],
) -> dict:
    """The CreateProcessingJob request: the analyzer over the training data, its reports to `output_uri`.
    The job is named after the training job (processing jobs have their own namespace)."""
    cluster: dict[str, object] = {"InstanceCount": 1, "InstanceType": INSTANCE_TYPE, "VolumeSizeInGB": VOLUME_GB}
    output_config: dict[str, object] = {
        "Outputs": [
            {
                "OutputName": monitoring.OUTPUT_NAME,
                "S3Output": {"S3Uri": output_uri, "LocalPath": monitoring.OUTPUT_PATH, "S3UploadMode": "EndOfJob"},
            }
        ]
    }
    if kms_key_arn:
        output_config["KmsKeyId"] = kms_key_arn
        if not has_instance_storage(INSTANCE_TYPE):
            cluster["VolumeKmsKeyId"] = kms_key_arn
    return {
        "ProcessingJobName": job_name,
        "ProcessingInputs": [
            {
                "InputName": monitoring.BASELINE_INPUT_NAME,
                "S3Input": {
                    "S3Uri": data_uri,
                    "LocalPath": monitoring.BASELINE_INPUT_PATH,
                    "S3DataType": "S3Prefix",
                    "S3InputMode": "File",
                    "S3DataDistributionType": "FullyReplicated",
                },
            }
        ],
        "ProcessingOutputConfig": output_config,
        "ProcessingResources": {"ClusterConfig": cluster},
        "StoppingCondition": {"MaxRuntimeInSeconds": MAX_RUNTIME_S},
        "AppSpecification": {"ImageUri": monitoring.image_uri(config.region)},
        "Environment": monitoring.baseline_environment(settings.header, settings.label_position),
        "RoleArn": role_arn,
        "Tags": [{"Key": k, "Value": v} for k, v in tags.items()],
    }


def wait_for_baseline_job(
    sagemaker,
    name: str,
    poll_seconds: float,
    limit_s: float = MAX_RUNTIME_S + WAIT_SLACK_S,
    sleep: Callable[[float], None] | None = None,
    clock: Callable[[], float] | None = None,
) -> dict:
    """Poll the processing job until it ends; past `limit_s`, or interrupted (Ctrl-C, or SIGTERM
    under train's `sigterm_as_interrupt`), stop it so it does not keep billing, and fail in one line."""
    sleep = sleep or time.sleep
    clock = clock or time.monotonic
    started = clock()
    last = None
    try:
        while True:
            job = sagemaker.describe_processing_job(ProcessingJobName=name)
            status = job["ProcessingJobStatus"]
            if status != last:
                print(f"baseline job {name}: {status}", flush=True)
                last = status
            if status in TERMINAL_STATUSES:
                return job
            if clock() - started >= limit_s:
                sagemaker.stop_processing_job(ProcessingJobName=name)
                raise StageFailure(
                    f"baseline job {name} still {status} after {int(limit_s)} s; asked SageMaker to stop it"
                )
            sleep(poll_seconds)
    except KeyboardInterrupt:
        sagemaker.stop_processing_job(ProcessingJobName=name)
        raise StageFailure(f"interrupted while waiting for baseline job {name}; asked SageMaker to stop it") from None


def check_baseline_job(job: dict) -> None:
    """Fail in one line unless the job Completed, with SageMaker's reason (FailureReason, ExitMessage)."""
    name, status = job["ProcessingJobName"], job["ProcessingJobStatus"]
    if status == "Completed":
        return
    reason = job.get("FailureReason") or job.get("ExitMessage") or "no reason given"
    raise StageFailure(f"baseline job {name} {status}: {reason}")


def compute_baseline(
    sagemaker,
    config: PipelineConfig,
    *,
    bucket: str,
    job_name: str,
    data_uri: str,
    role_arn: str,
    kms_key_arn: str | None,
    tags: dict[str, str],
    poll_seconds: float,
) -> Baseline | None:
    """Start the baseline job for a training job, wait for it, and return where its files are;
    None (and no call) when no environment monitors."""
    settings = baseline_settings(config)
    if settings is None:
        return None
    prefix = baseline_prefix(bucket, config.project, job_name)
    request = baseline_job_request(
        config,
        settings,
        job_name=job_name,
        data_uri=data_uri,
        output_uri=prefix,
        role_arn=role_arn,
        kms_key_arn=kms_key_arn,
        tags=tags,
    )
    sagemaker.create_processing_job(**request)
    print(f"started baseline job {job_name} over {data_uri}", flush=True)
    check_baseline_job(wait_for_baseline_job(sagemaker, job_name, poll_seconds))
    baseline = Baseline(prefix + monitoring.STATISTICS_FILE, prefix + monitoring.CONSTRAINTS_FILE)
    print(f"baseline: {baseline.statistics_uri}, {baseline.constraints_uri}")
    return baseline
