"""Model Monitor's data-quality analyzer: where its image lives, and its container contract.

The analyzer (`sagemaker-model-monitor-analyzer`) both computes the baseline (a processing job the
train step starts over the training data) and checks captured traffic against it (the endpoint
stack's monitoring schedule). Its image is published per region by an AWS account; the table is a
copy of sagemaker-core's `sagemaker/core/image_uri_config/model-monitor.json` (its ``_source``
names the version), rewritten by `make image-data`.

The container contract (environment and paths) is the one the SageMaker Python SDK's
`DefaultModelMonitor.suggest_baseline` builds (`sagemaker/model_monitor/model_monitoring.py`:
`_generate_env_map`, `_CONTAINER_BASE_PATH` /opt/ml/processing, input `baseline_dataset_input`,
output `output`) and the Developer Guide's "Container Contract Inputs"
(model-monitor-byoc-contract-inputs: dataset_format, dataset_source, output_path,
publish_cloudwatch_metrics).
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

# The source's pin lives in pipeline.images, which writes every image table (this one included).
from pipeline.images import NOT_COMMERCIAL, SOURCE_PACKAGE, SOURCE_VERSION, source_path

TABLE_FILE = Path(__file__).parent / "data" / "images" / "model-monitor.json"
# Where the table comes from in the sagemaker-core wheel `make image-data` downloads (pipeline.images.main).
SOURCE_PATH = source_path("model-monitor")

# The analyzer's paths in the processing container (SDK: _CONTAINER_BASE_PATH, _CONTAINER_INPUT_PATH,
# _BASELINE_DATASET_INPUT_NAME, _CONTAINER_OUTPUT_PATH).
CONTAINER_BASE = "/opt/ml/processing"
BASELINE_INPUT_NAME = "baseline_dataset_input"
BASELINE_INPUT_PATH = f"{CONTAINER_BASE}/input/{BASELINE_INPUT_NAME}"
OUTPUT_NAME = "monitoring_output"  # SDK: _DEFAULT_OUTPUT_NAME
OUTPUT_PATH = f"{CONTAINER_BASE}/output"
ENDPOINT_INPUT_PATH = f"{CONTAINER_BASE}/input/endpoint"  # SDK: _CONTAINER_ENDPOINT_INPUT_PATH
# What the baseline job writes (SDK: STATISTICS_JSON_DEFAULT_FILE_NAME, CONSTRAINTS_JSON_DEFAULT_FILE_NAME).
STATISTICS_FILE = "statistics.json"
CONSTRAINTS_FILE = "constraints.json"

# Schedules, as the SDK's CronExpressionGenerator writes them (hourly(), daily(hour=0)).
SCHEDULES = {"hourly": "cron(0 * ? * * *)", "daily": "cron(0 0 ? * * *)"}


@cache
def _table() -> dict[str, Any]:
    table: dict[str, Any] = json.loads(TABLE_FILE.read_text())
    return table


def registry_accounts() -> dict[str, str]:
    """Region -> the AWS account that publishes the analyzer image there."""
    return dict(_table()["registries"])


def repository() -> str:
    """The analyzer's ECR repository (the same in every region)."""
    name: str = _table()["repository"]
    return name


def image_uri(region: str) -> str:
    """The analyzer image in `region` (the SDK's URI: no tag, so ECR's latest); KeyError where none is published."""
    account = registry_accounts()[region]
    return f"{account}.dkr.ecr.{region}.amazonaws.com/{repository()}"


def dataset_format(header: bool, label_position: str) -> str:
    """The analyzer's `dataset_format` for CSV training data (SDK: DatasetFormat.csv(header,
    output_columns_position)): whether files start with a header row, and whether the label
    column comes first (START) or last (END)."""
    return json.dumps({"csv": {"header": header, "output_columns_position": label_position.upper()}})


def baseline_environment(header: bool, label_position: str) -> dict[str, str]:
    """The baseline job's environment, as DefaultModelMonitor.suggest_baseline sets it."""
    return {
        "dataset_format": dataset_format(header, label_position),
        "dataset_source": BASELINE_INPUT_PATH,
        "output_path": OUTPUT_PATH,
        "publish_cloudwatch_metrics": "Disabled",
    }


# ----- `make image-data`: the copy of sagemaker-core's table ----------------------------------


def table_text(upstream: dict[str, Any]) -> str:
    """The shipped table's text from sagemaker-core's model-monitor.json: commercial regions only."""
    (entry,) = upstream["versions"].values()
    registries = {
        region: account
        for region, account in sorted(entry["registries"].items())
        if not region.startswith(NOT_COMMERCIAL)
    }
    body = {
        "_source": (
            f"Written by `make image-data` from {SOURCE_PACKAGE} {SOURCE_VERSION} (PyPI, Apache-2.0), "
            f"{SOURCE_PATH}: the Model Monitor analyzer image's registry account per region, commercial "
            "regions only."
        ),
        "repository": entry["repository"],
        "registries": registries,
    }
    return json.dumps(body, indent=2) + "\n"
