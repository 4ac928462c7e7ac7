"""`make promote` and `make rollback`: put a registered model version on an environment's endpoint.

A version is one of the project's model package group (issue 9's contract: the group is named
after the project; Train registers each model that passes the gate, PendingManualApproval, with
the run parameters in CustomerMetadataProperties). Promote updates the environment's endpoint
stack in place from the same template the pipeline deploys (synthesized from the config), with
the version's run parameters and the pipeline stack's (its outputs), through deploy_stack: the
same change-set table, confirmation, live events and one-line errors as `make deploy`.

Decide, then do: `decide` (pure) picks the move from the version, the model serving and the
flags; `rollback_target` (pure) picks the version a rollback goes to.
"""

from __future__ import annotations

import enum
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from pipeline.aws import RETRIES, AwsError, aws_errors, describe_stack
from pipeline.config import Environment, PipelineConfig
from pipeline.deploy import Declined, StackDeployment, deploy_stack
from pipeline.stacks.endpoint import BASELINE_PARAMETERS, EndpointStack
from pipeline.synth import synthesize
from pipeline.tags import project_tags

APPROVED = "Approved"
# CustomerMetadataProperties keys Train writes on a version (scripts/registry.py uses these).
MODEL_VERSION_KEY, SOURCE_DIR_KEY = "model-version", "source-dir"
# The pipeline-supplied endpoint parameters that are a pipeline stack output as they are.
OUTPUT_PARAMETERS = {
    "ExecutionRoleArn": "SageMakerExecutionRoleArn",
    "KmsKeyArn": "ArtifactKeyArn",
    "AsyncTopicArn": "AsyncInferenceTopicArn",
}
# ... and those that are a folder of the model bucket (PipelineStack's *_prefix).
BUCKET_PARAMETERS = {
    "DataCaptureS3Uri": "data-capture",
    "MonitoringS3Uri": "monitoring",
    "AsyncOutputS3Uri": "async-output",
    "AsyncFailureS3Uri": "async-failures",
}


def package_group(config: PipelineConfig) -> str:
    """The project's model package group (the pipeline stack's ModelPackageGroup)."""
    return config.names.model_package_group


@dataclass(frozen=True)
class Version:
    """One model package version as promote needs it."""

    number: int
    arn: str
    status: str
    model_version: str  # the training job: what the endpoint stack's ModelVersion output names
    model_data: str
    image: str
    source_dir: str | None
    created: Any = None


def version_from(package: dict) -> Version:
    """A Version from DescribeModelPackage's answer. AwsError when it lacks what Train writes."""
    metadata = package.get("CustomerMetadataProperties", {})
    containers = package.get("InferenceSpecification", {}).get("Containers", [])
    number = package.get("ModelPackageVersion")
    if not containers or MODEL_VERSION_KEY not in metadata or not containers[0].get("ModelDataUrl"):
        raise AwsError(
            f"model package version {number} has no {MODEL_VERSION_KEY!r} metadata or no container with a "
            "ModelDataUrl: it was not registered by the pipeline's Train action"
        )
    return Version(
        number=int(number or 0),
        arn=package["ModelPackageArn"],
        status=package.get("ModelApprovalStatus", ""),
        model_version=metadata[MODEL_VERSION_KEY],
        model_data=containers[0]["ModelDataUrl"],
        image=containers[0]["Image"],
        source_dir=metadata.get(SOURCE_DIR_KEY),
        created=package.get("CreationTime"),
    )


# --- deciding ----------------------------------------------------------------------------------


class Step(enum.Enum):
    """What promote does."""

    NOTHING = "change nothing: the version already serves"
    DEPLOY = "update the endpoint stack to the version"
    DEPLOY_FORCED = "record the reason on the version, then update the endpoint stack to it"
    REFUSE = "stop with the one-line `say`"


@dataclass(frozen=True)
class Move:
    """A step and the line said with it."""

    step: Step
    say: str


def decide(
    *, number: int, status: str, model_version: str, serving: str | None, env: str, force: bool, reason: str | None
) -> Move:
    """The move for promoting version `number` (approval `status`, training job `model_version`) to
    `env`, whose endpoint serves `serving` (None: no endpoint stack, or it names no model)."""
    if force and not (reason or "").strip():
        return Move(Step.REFUSE, "--force needs --reason TEXT: the reason is recorded on the version")
    if serving is None:
        return Move(
            Step.REFUSE,
            f"{env} has no endpoint serving a model yet: the pipeline deploys the first one, promote replaces it",
        )
    if serving == model_version:
        return Move(Step.NOTHING, f"version {number} ({model_version}) already serves in {env}: nothing to change")
    if status != APPROVED:
        if not force:
            return Move(
                Step.REFUSE,
                f"version {number} is {status or 'without an approval status'}, not Approved: approve it first, "
                "or promote with --force --reason TEXT",
            )
        return Move(Step.DEPLOY_FORCED, f"promoting version {number} ({status}, forced: {reason}) to {env}")
    return Move(Step.DEPLOY, f"promoting version {number} ({model_version}) to {env}")


def rollback_target(versions: Sequence[Version], serving: str | None, env: str) -> Version | str:
    """The newest Approved version older than the one serving in `env`, or the one line saying why none."""
    if serving is None:
        return f"{env} has no endpoint serving a model: nothing to roll back"
    current = next((v for v in versions if v.model_version == serving), None)
    if current is None:
        return f"the model serving in {env} ({serving}) is no version of the registry: nothing to roll back from"
    older = [v for v in versions if v.number < current.number and v.status == APPROVED]
    if not older:
        return f"no Approved version older than version {current.number} (serving in {env}): nothing to roll back to"
    return max(older, key=lambda v: v.number)


# --- the parameters ------------------------------------------------------------------------------


def run_values(config: PipelineConfig, env: Environment, version: Version) -> dict[str, str]:
    """The parameters Train writes for `env`, from the version (contract: its container and metadata).
    The version's image is the last environment's: an environment on another processor (CPU, GPU)
    serves with the framework's image for its own, as Train writes it."""
    same = config.model.own_container or env.processor == config.environments[-1].processor
    image = version.image if same else config.serving_image(env)
    values = {"ModelDataUrl": version.model_data, "ImageUri": image, "ModelVersion": version.model_version}
    if config.script_mode:
        if not version.source_dir:
            raise AwsError(f"version {version.number} has no {SOURCE_DIR_KEY!r} metadata, which script mode needs")
        values["SourceDir"] = version.source_dir
    return values


def supplied_values(stack: EndpointStack, env: Environment, outputs: dict[str, str], pipeline_stack: str) -> dict:
    """The parameters the deploy action supplies, from the pipeline stack's outputs."""
    values = {}
    for name in stack.pipeline_parameters:
        key = OUTPUT_PARAMETERS.get(name, "ModelBucketName")
        if key not in outputs:
            raise AwsError(f"the pipeline stack {pipeline_stack} has no output {key}: run make deploy first")
        if name in BUCKET_PARAMETERS:
            values[name] = f"s3://{outputs[key]}/{stack.config.project}/{BUCKET_PARAMETERS[name]}/{env.name}/"
        else:
            values[name] = outputs[key]
    return values


def endpoint_deployment(config: PipelineConfig, env: Environment, parameters: dict[str, str], why: str):
    """The environment's endpoint stack as a StackDeployment: the synthesized template, these parameters."""
    stack = EndpointStack(config, env)
    template = synthesize(config).templates[stack.file_name]
    return StackDeployment(
        name=config.names.endpoint_stack(env.name),
        region=config.region,
        template_body=json.dumps(template, separators=(",", ":"), sort_keys=True),
        tags=project_tags(config),
        description=why,
        parameters=tuple(sorted(parameters.items())),
        protect=False,
    )


# --- doing ---------------------------------------------------------------------------------------


def _environment(config: PipelineConfig, name: str) -> Environment:
    for env in config.environments:
        if env.name == name:
            return env
    raise AwsError(f"--to {name}: no such environment (pipeline.yml has {', '.join(config.environment_names)})")


def list_versions(sagemaker: Any, config: PipelineConfig, only: int | None = None) -> list[Version]:
    """The versions of the project's group, newest first, described: every one, or only version `only`."""
    summaries: list[dict] = []
    # ModelPackageType defaults to UNVERSIONED (botocore's model): a group's versions need VERSIONED.
    kwargs = {
        "ModelPackageGroupName": package_group(config),
        "ModelPackageType": "VERSIONED",
        "SortBy": "CreationTime",
        "SortOrder": "Descending",
    }
    while True:
        page = sagemaker.list_model_packages(**kwargs)
        summaries += page.get("ModelPackageSummaryList", [])
        if not page.get("NextToken"):
            break
        kwargs["NextToken"] = page["NextToken"]
    if only is not None:
        summaries = [s for s in summaries if s.get("ModelPackageVersion") == only]
    return [version_from(sagemaker.describe_model_package(ModelPackageName=s["ModelPackageArn"])) for s in summaries]


def _serving(cfn: Any, config: PipelineConfig, env: str) -> str | None:
    stack = describe_stack(cfn, config.names.endpoint_stack(env)) or {}
    return {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}.get("ModelVersion")


def promote(
    config: PipelineConfig,
    session: Any,
    *,
    to: str,
    number: int | None = None,
    force: bool = False,
    reason: str | None = None,
    echo: Callable[[str], None] = print,
    confirm: Callable[[str], bool] = lambda question: False,
    yes: bool = False,
    dry_run: bool = False,
    interactive: bool = False,
    sleep: Callable[[float], None] = time.sleep,
    poll_seconds: float = 5,
) -> int:
    """`make promote` (version `number`) or, with number None, `make rollback`: deploy the version to
    `to`'s endpoint stack. 0 when done or nothing to do, 1 when declined; AwsError (one line) when
    refused, and on a failure, saying which model still serves."""
    env = _environment(config, to)
    if config.monitors:
        raise AwsError(
            "promote does not support monitored configs yet: a registered version carries no baseline "
            f"({', '.join(BASELINE_PARAMETERS)})"
        )
    with aws_errors():
        sagemaker = session.client("sagemaker", config=RETRIES)
        cfn = session.client("cloudformation", config=RETRIES)
        serving = _serving(cfn, config, to)
        versions = list_versions(sagemaker, config, only=number)
    if number is None:
        target = rollback_target(versions, serving, to)
        if isinstance(target, str):
            raise AwsError(target)
        echo(f"rolling back {to} to version {target.number} ({target.model_version}), the newest Approved before")
    else:
        found = next((v for v in versions if v.number == number), None)
        if found is None:
            raise AwsError(f"no version {number} in model package group {package_group(config)}")
        target = found
    move = decide(
        number=target.number,
        status=target.status,
        model_version=target.model_version,
        serving=serving,
        env=to,
        force=force,
        reason=reason,
    )
    if move.step is Step.REFUSE:
        raise AwsError(move.say)
    echo(move.say)
    if move.step is Step.NOTHING:
        return 0
    with aws_errors():
        pipeline_stack = describe_stack(cfn, config.names.pipeline_stack) or {}
    outputs = {o["OutputKey"]: o["OutputValue"] for o in pipeline_stack.get("Outputs", [])}
    stack = EndpointStack(config, env)
    parameters = run_values(config, env, target) | supplied_values(stack, env, outputs, config.names.pipeline_stack)
    verb = "rollback" if number is None else "promote"
    deployment = endpoint_deployment(config, env, parameters, f"make {verb} of version {target.number} to {to}")
    try:
        done = deploy_stack(
            deployment,
            session,
            echo=echo,
            confirm=confirm,
            yes=yes,
            dry_run=dry_run,
            interactive=interactive,
            sleep=sleep,
            poll_seconds=poll_seconds,
        )
    except Declined:
        return 1
    except AwsError as exc:
        raise AwsError(f"{exc}; {to} still serves {serving}") from None
    if done is None:
        return 0
    if move.step is Step.DEPLOY_FORCED:
        with aws_errors():
            sagemaker.update_model_package(
                ModelPackageArn=target.arn, ApprovalDescription=f"forced promote to {to}: {reason}"[:1024]
            )
        echo(f"recorded on version {target.number}: forced promote to {to}: {reason}")
    echo(f"{to} now serves version {target.number} ({target.model_version})")
    return 0
