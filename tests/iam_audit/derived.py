"""Authorizations the pipeline's roles need for what AWS services do on their behalf:

- SageMaker, with the execution role, for a training job (from the recorded CreateTrainingJob
  request) and for a hosted model (from the endpoint template, resolved with the run's
  parameters). Source: SageMaker Developer Guide, "How to use SageMaker AI execution roles"
  (CreateTrainingJob and CreateModel API: execution role permissions) and the API reference of
  OutputDataConfig.KmsKeyId ("the SageMaker execution role must include permissions to call
  kms:Encrypt"); S3 objects in the stack's buckets are SSE-KMS (reference.S3_KMS_ACTIONS).
- CloudFormation, with the deploy role, for each resource of an endpoint template: every
  permission its registry schema's create, read, update and delete handlers list (cfn-lint ships
  the schemas). The list handler is left out: CloudFormation calls it for resource discovery
  (Cloud Control API ListResources, IaC generator scans), never while it creates, updates or
  deletes a stack, and the SageMaker List* actions it needs take no resource ARN to scope.
"""

from __future__ import annotations

import importlib.util
import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from .policy import Request, Resolver
from .reference import Storage, authorization_reference, privilege, resource_arns

HANDLERS = ("create", "read", "update", "delete")
# SageMaker API Permissions reference: CreateEndpoint and UpdateEndpoint also need kms:CreateGrant
# when the endpoint config names a KmsKeyId (SageMaker grants the hosts' volumes the key).
API_EXTRA_GRANTS = {"sagemaker:CreateEndpoint", "sagemaker:UpdateEndpoint"}
TRAINING_LOG_GROUP = "/aws/sagemaker/TrainingJobs"
PROCESSING_LOG_GROUP = "/aws/sagemaker/ProcessingJobs"
# Model Monitor's data-quality metrics of a real-time endpoint (Developer Guide, "CloudWatch Metrics"
# of Model Monitor: "/aws/sagemaker/Endpoints/data-metric", dimensions EndpointName, ScheduleName).
MONITOR_METRICS_NAMESPACE = "/aws/sagemaker/Endpoints/data-metric"
ENDPOINT_LOG_GROUP = "/aws/sagemaker/Endpoints/{name}"
TRANSFORM_LOG_GROUP = "/aws/sagemaker/TransformJobs"


def _s3(uri: str) -> tuple[str, str]:
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    return bucket, key


def _object_requests(
    actions: tuple[str, ...], uri: str, storage: Storage, region: str, account: str, origin: str, key_actions=()
) -> Iterator[Request]:
    bucket, key = _s3(uri)
    for action in actions:
        for arn in resource_arns(action, {"Bucket": bucket, "Key": key}, region, account):
            yield Request(action, arn, {}, origin)
    kms_key = storage.bucket_keys.get(bucket)
    for action in key_actions if kms_key else ():
        yield Request(action, kms_key, {"kms:ViaService": f"s3.{region}.amazonaws.com"}, origin + " (SSE-KMS)")


def _list_prefix(uri: str, region: str, account: str, origin: str) -> Iterator[Request]:
    bucket, prefix = _s3(uri)
    for arn in resource_arns("s3:ListBucket", {"Bucket": bucket}, region, account):
        yield Request("s3:ListBucket", arn, {"s3:prefix": prefix}, origin)


def _image_pull(image: str, region: str, origin: str) -> Iterator[Request]:
    """ECR: a token for the registry, then the image's layers from its repository."""
    registry, _, path = image.partition("/")
    registry_account, _, rest = registry.partition(".dkr.ecr.")
    registry_region = rest.split(".")[0]
    repository = re.split(r"[:@]", path)[0]
    yield Request("ecr:GetAuthorizationToken", "*", {}, origin)
    for action in ("ecr:BatchCheckLayerAvailability", "ecr:GetDownloadUrlForLayer", "ecr:BatchGetImage"):
        for arn in resource_arns(action, {"RepositoryName": repository}, registry_region, registry_account):
            yield Request(action, arn, {}, origin)


def _logs(group: str, stream: str, region: str, account: str, origin: str) -> Iterator[Request]:
    names = {"LogGroupName": group, "LogStreamName": stream}
    for action in ("logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"):
        for arn in resource_arns(action, names, region, account):
            yield Request(action, arn, {}, origin)


def _metrics(namespace: str, origin: str) -> Request:
    return Request("cloudwatch:PutMetricData", "*", {"cloudwatch:namespace": namespace}, origin)


def training_job_requests(create: Mapping[str, Any], storage: Storage, region: str, account: str) -> Iterator[Request]:
    """What SageMaker does with the execution role for the job a CreateTrainingJob request starts."""
    job = create["TrainingJobName"]
    origin = f"SageMaker runs training job {job}"
    yield from _image_pull(create["AlgorithmSpecification"]["TrainingImage"], region, origin + ": pulls the image")
    for channel in create.get("InputDataConfig", []):
        source = channel["DataSource"]["S3DataSource"]
        where = f"{origin}: reads channel {channel['ChannelName']}"
        yield from _list_prefix(source["S3Uri"], region, account, where)
        yield from _object_requests(
            ("s3:GetObject",), source["S3Uri"] + "part-00000", storage, region, account, where, ("kms:Decrypt",)
        )
    code = json.loads(create.get("HyperParameters", {}).get("sagemaker_submit_directory", "null"))
    if code:
        yield from _object_requests(
            ("s3:GetObject",), code, storage, region, account, origin + ": fetches the code", ("kms:Decrypt",)
        )
    output = create["OutputDataConfig"]
    where = origin + ": writes the model"
    yield from _object_requests(
        ("s3:PutObject",),
        f"{output['S3OutputPath']}{job}/output/model.tar.gz",
        storage,
        region,
        account,
        where,
        ("kms:GenerateDataKey",),
    )
    if output.get("KmsKeyId"):
        yield Request("kms:Encrypt", output["KmsKeyId"], {}, where + " with OutputDataConfig.KmsKeyId")
        yield Request(
            "kms:GenerateDataKey", output["KmsKeyId"], {"kms:ViaService": f"s3.{region}.amazonaws.com"}, where
        )
    checkpoints = create.get("CheckpointConfig", {}).get("S3Uri")
    if checkpoints:
        where = origin + ": syncs spot checkpoints"
        yield from _list_prefix(checkpoints, region, account, where)
        yield from _object_requests(
            ("s3:PutObject", "s3:GetObject"),
            checkpoints + "checkpoint-1.pt",
            storage,
            region,
            account,
            where,
            ("kms:GenerateDataKey", "kms:Decrypt"),
        )
    volume_key = create["ResourceConfig"].get("VolumeKmsKeyId")
    if volume_key:
        yield Request(
            "kms:CreateGrant",
            volume_key,
            {"kms:GrantIsForAWSResource": "true"},
            origin + ": encrypts the instances' volumes (ResourceConfig.VolumeKmsKeyId)",
        )
    yield from _logs(TRAINING_LOG_GROUP, f"{job}/algo-1-1700000000", region, account, origin + ": logs")
    yield _metrics(TRAINING_LOG_GROUP, origin + ": publishes metrics")


def transform_job_requests(create: Mapping[str, Any], storage: Storage, region: str, account: str) -> Iterator[Request]:
    """What SageMaker does with the model's execution role for the job a CreateTransformJob request
    starts: lists and reads the input prefix, writes `<key>.out` under the output path (SSE-KMS with
    TransformOutput.KmsKeyId), keys the instances' volumes, logs."""
    job = create["TransformJobName"]
    origin = f"SageMaker runs transform job {job}"
    source = create["TransformInput"]["DataSource"]["S3DataSource"]["S3Uri"]
    yield from _list_prefix(source, region, account, origin + ": lists the input")
    yield from _object_requests(
        ("s3:GetObject",), source + "rows.csv", storage, region, account, origin + ": reads the input", ("kms:Decrypt",)
    )
    output = create["TransformOutput"]
    where = origin + ": writes the outputs"
    yield from _object_requests(
        ("s3:PutObject",),
        output["S3OutputPath"].rstrip("/") + "/rows.csv.out",
        storage,
        region,
        account,
        where,
        ("kms:GenerateDataKey",),
    )
    if output.get("KmsKeyId"):
        yield Request(
            "kms:GenerateDataKey", output["KmsKeyId"], {"kms:ViaService": f"s3.{region}.amazonaws.com"}, where
        )
    volume_key = create["TransformResources"].get("VolumeKmsKeyId")
    if volume_key:
        yield Request(
            "kms:CreateGrant",
            volume_key,
            {"kms:GrantIsForAWSResource": "true"},
            origin + ": encrypts the instances' volumes (TransformResources.VolumeKmsKeyId)",
        )
    yield from _logs(TRANSFORM_LOG_GROUP, f"{job}/i-0123456789abcdef0", region, account, origin + ": logs")


def _job_output(uri: str, key: str | None, storage, region: str, account: str, origin: str) -> Iterator[Request]:
    """A processing or monitoring job's upload of its output under `uri`, SSE-KMS with `key` when given."""
    yield from _object_requests(
        ("s3:PutObject",),
        uri.rstrip("/") + "/statistics.json",
        storage,
        region,
        account,
        origin,
        ("kms:GenerateDataKey",),
    )
    if key:
        yield Request("kms:Encrypt", key, {}, origin + " with the output config's KmsKeyId")
        yield Request("kms:GenerateDataKey", key, {"kms:ViaService": f"s3.{region}.amazonaws.com"}, origin)


def processing_job_requests(
    create: Mapping[str, Any], storage: Storage, region: str, account: str
) -> Iterator[Request]:
    """What SageMaker does with the execution role for the job a CreateProcessingJob request starts
    (the Model Monitor baseline): pull the image, read the inputs, write the outputs, log."""
    job = create["ProcessingJobName"]
    origin = f"SageMaker runs processing job {job}"
    yield from _image_pull(create["AppSpecification"]["ImageUri"], region, origin + ": pulls the image")
    for item in create.get("ProcessingInputs", []):
        uri = item["S3Input"]["S3Uri"]
        where = f"{origin}: reads input {item['InputName']}"
        yield from _list_prefix(uri, region, account, where)
        yield from _object_requests(
            ("s3:GetObject",), uri + "part-00000", storage, region, account, where, ("kms:Decrypt",)
        )
    output = create["ProcessingOutputConfig"]
    for item in output["Outputs"]:
        yield from _job_output(
            item["S3Output"]["S3Uri"], output.get("KmsKeyId"), storage, region, account, origin + ": writes its output"
        )
    volume_key = create["ProcessingResources"]["ClusterConfig"].get("VolumeKmsKeyId")
    if volume_key:
        yield Request(
            "kms:CreateGrant", volume_key, {"kms:GrantIsForAWSResource": "true"}, origin + ": encrypts the volumes"
        )
    yield from _logs(PROCESSING_LOG_GROUP, f"{job}/algo-1-1700000000", region, account, origin + ": logs")


def monitoring_requests(
    endpoint_template: Mapping[str, Any], resolve: Resolver, storage: Storage
) -> Iterator[tuple[str, Request]]:
    """What SageMaker does with a monitoring schedule's role on each run: pull the analyzer, read
    the endpoint's captured data and the baseline, write the reports, log and publish metrics
    (Developer Guide, Model Monitor: "Container Contract Inputs" and "CloudWatch Metrics")."""
    p = resolve.placeholders
    resources = endpoint_template["Resources"]
    captures = [
        resolve(r["Properties"])["DataCaptureConfig"]["DestinationS3Uri"]
        for r in resources.values()
        if r["Type"] == "AWS::SageMaker::EndpointConfig" and "DataCaptureConfig" in r["Properties"]
    ]
    for logical_id, resource in resources.items():
        if resource["Type"] != "AWS::SageMaker::MonitoringSchedule":
            continue
        schedule = resolve(resource["Properties"])
        job = schedule["MonitoringScheduleConfig"]["MonitoringJobDefinition"]
        role, origin = job["RoleArn"], f"SageMaker runs {logical_id}"
        image = job["MonitoringAppSpecification"]["ImageUri"]
        for request in _image_pull(image, p.region, origin + ": pulls the analyzer"):
            yield role, request
        endpoint = job["MonitoringInputs"][0]["EndpointInput"]["EndpointName"]
        for capture in captures:
            where = origin + ": reads the captured data"
            prefix = f"{capture.rstrip('/')}/{endpoint}/AllTraffic/"
            for request in _list_prefix(prefix, p.region, p.account, where):
                yield role, request
            for request in _object_requests(
                ("s3:GetObject",),
                prefix + "2026/01/01/00/capture.jsonl",
                storage,
                p.region,
                p.account,
                where,
                ("kms:Decrypt",),
            ):
                yield role, request
        for kind in ("StatisticsResource", "ConstraintsResource"):
            for request in _object_requests(
                ("s3:GetObject",),
                job["BaselineConfig"][kind]["S3Uri"],
                storage,
                p.region,
                p.account,
                origin + ": reads the baseline",
                ("kms:Decrypt",),
            ):
                yield role, request
        output = job["MonitoringOutputConfig"]
        for item in output["MonitoringOutputs"]:
            for request in _job_output(
                item["S3Output"]["S3Uri"],
                output.get("KmsKeyId"),
                storage,
                p.region,
                p.account,
                origin + ": writes its reports",
            ):
                yield role, request
        volume_key = job["MonitoringResources"]["ClusterConfig"].get("VolumeKmsKeyId")
        if volume_key:
            yield (
                role,
                Request(
                    "kms:CreateGrant",
                    volume_key,
                    {"kms:GrantIsForAWSResource": "true"},
                    origin + ": encrypts the volumes",
                ),
            )
        for request in _logs(PROCESSING_LOG_GROUP, f"{logical_id}/algo-1-1700000000", p.region, p.account, origin):
            yield role, request
        yield role, _metrics(MONITOR_METRICS_NAMESPACE, origin + ": publishes data-quality metrics")


def hosting_requests(
    endpoint_template: Mapping[str, Any], resolve: Resolver, storage: Storage
) -> Iterator[tuple[str, Request]]:
    """What SageMaker does with each model's execution role when it hosts it: (role ARN, request)."""
    p = resolve.placeholders
    for logical_id, resource in endpoint_template["Resources"].items():
        if resource["Type"] != "AWS::SageMaker::Model":
            continue
        model = resolve(resource["Properties"])
        role = model["ExecutionRoleArn"]
        containers = [model["PrimaryContainer"]] if "PrimaryContainer" in model else model.get("Containers", [])
        endpoints = [
            resolve(r["Properties"]["EndpointName"])
            for r in endpoint_template["Resources"].values()
            if r["Type"] == "AWS::SageMaker::Endpoint"
        ]
        for container in containers:
            origin = f"SageMaker hosts {logical_id}"
            for request in _image_pull(container["Image"], p.region, origin + ": pulls the image"):
                yield role, request
            for request in _object_requests(
                ("s3:GetObject",),
                container["ModelDataUrl"],
                storage,
                p.region,
                p.account,
                origin + ": loads the model",
                ("kms:Decrypt",),
            ):
                yield role, request
            code = container.get("Environment", {}).get("SAGEMAKER_SUBMIT_DIRECTORY")
            if code:
                for request in _object_requests(
                    ("s3:GetObject",),
                    code,
                    storage,
                    p.region,
                    p.account,
                    origin + ": fetches the code",
                    ("kms:Decrypt",),
                ):
                    yield role, request
        for endpoint in endpoints:
            group = ENDPOINT_LOG_GROUP.format(name=endpoint)
            for request in _logs(group, "AllTraffic/i-0123456789abcdef0", p.region, p.account, f"{origin}: logs"):
                yield role, request
            yield role, _metrics("/aws/sagemaker/Endpoints", f"{origin}: publishes metrics")
        for request in _capture_and_rollback(endpoint_template, resolve, storage, origin):
            yield role, request
        for request in _asynchronous(endpoint_template, resolve, storage, origin):
            yield role, request


def _capture_and_rollback(
    endpoint_template: Mapping[str, Any], resolve: Resolver, storage: Storage, origin: str
) -> Iterator[Request]:
    """Data capture: SageMaker writes sampled requests and responses under DestinationS3Uri,
    SSE-KMS with the config's KmsKeyId (API reference, DataCaptureConfig.KmsKeyId). Guardrails:
    SageMaker reads the auto-rollback alarms during an update ("Ensure that your IAM execution role
    has permission to perform the cloudwatch:DescribeAlarms action on the auto-rollback alarms",
    Developer Guide, deployment-guardrails-configuration)."""
    p = resolve.placeholders
    for resource in endpoint_template["Resources"].values():
        properties = resolve(resource.get("Properties", {}))
        capture = properties.get("DataCaptureConfig") if resource["Type"] == "AWS::SageMaker::EndpointConfig" else None
        if capture:
            uri = capture["DestinationS3Uri"].rstrip("/") + "/AllTraffic/2026/01/01/00/capture.jsonl"
            yield from _object_requests(
                ("s3:PutObject",),
                uri,
                storage,
                p.region,
                p.account,
                f"{origin}: writes captured data",
                ("kms:GenerateDataKey",),
            )
        rollback = properties.get("DeploymentConfig", {}).get("AutoRollbackConfiguration", {})
        for alarm in rollback.get("Alarms", []) if resource["Type"] == "AWS::SageMaker::Endpoint" else []:
            for arn in resource_arns(
                "cloudwatch:DescribeAlarms", {"AlarmName": alarm["AlarmName"]}, p.region, p.account
            ):
                yield Request("cloudwatch:DescribeAlarms", arn, {}, f"{origin}: reads its rollback alarm")


def _asynchronous(
    endpoint_template: Mapping[str, Any], resolve: Resolver, storage: Storage, origin: str
) -> Iterator[Request]:
    """Asynchronous Inference: SageMaker writes each answer under S3OutputPath and each failure under
    S3FailurePath, SSE-KMS with the output config's KmsKeyId (API reference, AsyncInferenceOutputConfig),
    and publishes to the success and error topics with the execution role ("your IAM role must have
    sns:Publish permissions", Developer Guide, async-inference-check-predictions)."""
    p = resolve.placeholders
    for resource in endpoint_template["Resources"].values():
        if resource["Type"] != "AWS::SageMaker::EndpointConfig":
            continue
        output = resolve(resource.get("Properties", {})).get("AsyncInferenceConfig", {}).get("OutputConfig")
        if not output:
            continue
        for path, what in (("S3OutputPath", "an answer"), ("S3FailurePath", "a failure")):
            yield from _object_requests(
                ("s3:PutObject",),
                output[path].rstrip("/") + "/0a1b2c3d-answer.out",
                storage,
                p.region,
                p.account,
                f"{origin}: writes {what} of an asynchronous request",
                ("kms:GenerateDataKey",),
            )
        notify = output.get("NotificationConfig", {})
        for topic in sorted({notify[k] for k in ("SuccessTopic", "ErrorTopic") if k in notify}):
            yield Request("sns:Publish", topic, {}, f"{origin}: tells the topic of an asynchronous result")


# --- CloudFormation handlers ------------------------------------------------------------------


def _schemas() -> Path:
    # Located without importing cfnlint (its import takes a second and more).
    spec = importlib.util.find_spec("cfnlint")
    assert spec and spec.submodule_search_locations
    return Path(spec.submodule_search_locations[0]) / "data" / "schemas"


@cache
def _provider(region: str) -> dict[str, str]:
    base = _schemas() / "providers"
    path = base / f"{region}.json"
    return json.loads((path if path.is_file() else base / "us-east-1.json").read_text())


@cache
def resource_schema(region: str, type_name: str) -> dict[str, Any]:
    """The registry schema of a resource type as cfn-lint ships it for the region."""
    name = _provider(region)[type_name]
    return json.loads((_schemas() / "resources" / f"{name}.json").read_text())


# Resource types whose service prefix and reference resource name do not follow from the type name.
_REFERENCE_TYPES = {
    "AWS::ApplicationAutoScaling::ScalableTarget": ("application-autoscaling", "ScalableTarget"),
    "AWS::ApplicationAutoScaling::ScalingPolicy": ("application-autoscaling", "ScalingPolicy"),
}


def _reference_type(type_name: str) -> tuple[str, str]:
    """AWS::SageMaker::EndpointConfig -> ("sagemaker", "endpoint-config")."""
    if type_name in _REFERENCE_TYPES:
        return _REFERENCE_TYPES[type_name]
    _, service, name = type_name.split("::")
    return service.lower(), re.sub(r"(?<!^)(?=[A-Z])", "-", name).lower()


def _arn_pattern(prefix: str, resource_type: str) -> re.Pattern:
    arn = authorization_reference()[prefix]["resources"][resource_type]["arn"]
    parts = re.split(r"\$\{[^}]+\}", arn)
    return re.compile("^" + "[^:]*".join(re.escape(p) for p in parts[:-1]) + ".+" + re.escape(parts[-1]) + "$")


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)
    elif isinstance(value, str):
        yield value


def _references(value: Any) -> Iterator[str]:
    """Logical IDs a (not yet resolved) property value points at with Ref or GetAtt."""
    if isinstance(value, dict):
        if set(value) == {"Ref"}:
            yield value["Ref"]
        elif set(value) == {"Fn::GetAtt"}:
            yield value["Fn::GetAtt"][0]
        for item in value.values():
            yield from _references(item)
    elif isinstance(value, list):
        for item in value:
            yield from _references(item)


@dataclass(frozen=True)
class HandlerNeed:
    """One handler permission on one resource, as a request, or why it needs none here."""

    type_name: str
    logical_id: str
    handler: str
    permission: str
    request: Request | None
    not_applicable: str = ""


def handler_requests(
    endpoint_template: Mapping[str, Any], resolve: Resolver, stack_tags: Mapping[str, str]
) -> Iterator[HandlerNeed]:
    """Every create/read/update/delete handler permission of every resource of the template.

    Context: tags passed on create are request tags (the handler passes the template's and the
    stack's tags on create when the schema says `tagOnCreate`), every other call sees the
    resource's tags; on update the request carries only the tags that change, so no request tag
    is assumed. A permission on another service's resource (iam:PassRole, kms:DescribeKey) is
    authorized on the ARNs of that type in the resource's properties; with none, it is not
    exercised by this template.
    """
    region = resolve.placeholders.region
    resources = endpoint_template["Resources"]

    def tags_of(logical_id: str, on_create: bool = False) -> dict[str, str]:
        type_name = resources[logical_id]["Type"]
        schema = resource_schema(region, type_name)
        if on_create and not schema.get("tagging", {}).get("tagOnCreate"):
            return {}  # the handler creates the resource untagged and tags it afterwards
        own = {t["Key"]: str(t["Value"]) for t in resolve(resources[logical_id].get("Properties", {}).get("Tags", []))}
        system = (
            {"aws:cloudformation:stack-name": resolve.stack_name, "aws:cloudformation:logical-id": logical_id}
            if schema.get("tagging", {}).get("cloudFormationSystemTags")
            else {}
        )
        return {**stack_tags, **own, **system}

    def arn_of(logical_id: str) -> str:
        return resolve.arn(logical_id)

    for logical_id, resource in resources.items():
        type_name = resource["Type"]
        schema = resource_schema(region, type_name)
        properties = resource.get("Properties", {})
        resolved = resolve(properties)
        own_prefix, own_type = _reference_type(type_name)
        referenced = {
            _reference_type(resources[ref]["Type"]): ref for ref in _references(properties) if ref in resources
        }
        for handler in HANDLERS:
            for permission in schema.get("handlers", {}).get(handler, {}).get("permissions", []):
                entry = privilege(permission)
                if entry is None:
                    raise LookupError(f"{type_name} {handler} handler: {permission} is not in the reference")
                prefix = permission.split(":")[0]
                types = [t for t in entry["resource_types"] if t]
                required = {t for t, v in entry["resource_types"].items() if t and v["required"]}
                needs = list(
                    _handler_requests(
                        permission,
                        prefix,
                        types,
                        required,
                        handler,
                        logical_id,
                        (own_prefix, own_type),
                        referenced,
                        resolved,
                        tags_of,
                        arn_of,
                    )
                )
                if not needs:
                    yield HandlerNeed(
                        type_name,
                        logical_id,
                        handler,
                        permission,
                        None,
                        f"no {'/'.join(types)} in {logical_id}'s properties",
                    )
                for request in needs:
                    yield HandlerNeed(type_name, logical_id, handler, permission, request)
                if permission in API_EXTRA_GRANTS:
                    for ref in referenced.values():
                        key = resolve(resources[ref].get("Properties", {})).get("KmsKeyId")
                        if key:
                            yield HandlerNeed(
                                type_name,
                                logical_id,
                                handler,
                                "kms:CreateGrant",
                                Request(
                                    "kms:CreateGrant",
                                    key,
                                    {"kms:GrantIsForAWSResource": "true"},
                                    f"{permission} with {ref}'s KmsKeyId (SageMaker API permissions reference)",
                                ),
                            )


def _handler_requests(
    permission, prefix, types, required, handler, logical_id, own, referenced, resolved, tags_of, arn_of
) -> Iterator[Request]:
    origin = f"CloudFormation {handler} handler of {logical_id}"
    if not types:
        yield Request(permission, "*", {}, origin)
        return
    for resource_type in types:
        if (prefix, resource_type) == own:
            creating = handler == "create" and permission.split(":")[1].startswith(("Create", "AddTags"))
            tags = tags_of(logical_id, on_create=creating)
            context: dict[str, Any] = (
                {**{f"aws:RequestTag/{k}": v for k, v in tags.items()}, "aws:TagKeys": tuple(tags)}
                if creating
                else {f"aws:ResourceTag/{k}": v for k, v in tags.items()}
            )
            yield Request(permission, arn_of(logical_id), context, origin)
        elif (prefix, resource_type) in referenced and resource_type in required:
            ref = referenced[(prefix, resource_type)]
            context = {f"aws:ResourceTag/{k}": v for k, v in tags_of(ref).items()}
            yield Request(permission, arn_of(ref), context, origin + f" (on {ref})")
        elif prefix != own[0] and resource_type in authorization_reference()[prefix]["resources"]:
            pattern = _arn_pattern(prefix, resource_type)
            for value in sorted(set(_strings(resolved))):
                if pattern.match(value):
                    context = {"iam:PassedToService": f"{own[0]}.amazonaws.com"} if permission == "iam:PassRole" else {}
                    yield Request(permission, value, context, origin + f" ({resource_type} in its properties)")


# --- CodeBuild ---------------------------------------------------------------------------------


def codebuild_requests(pipeline_template: Mapping[str, Any], resolve: Resolver) -> Iterator[tuple[str, Request]]:
    """What CodeBuild does with each CodeBuild action's project role: fetch the action's input
    artifacts and store its output artifacts (SSE-KMS objects in the artifact store), write the
    build's logs, publish its test reports. (role logical ID, request).

    Source: CodeBuild User Guide, "Allow CodeBuild to interact with other AWS services" (the
    service role's CloudWatch Logs, S3 get/put object and bucket location, and report group
    permissions) and "Test reporting" (a buildspec report `R` of project `P` goes to the report
    group `P-R`); SSE-KMS per reference.S3_KMS_ACTIONS.
    """
    p = resolve.placeholders
    resources = pipeline_template["Resources"]
    (pipeline,) = [r["Properties"] for r in resources.values() if r["Type"] == "AWS::CodePipeline::Pipeline"]
    store = resolve(pipeline["ArtifactStore"])
    bucket, key = store["Location"], store.get("EncryptionKey", {}).get("Id")
    prefix = resolve(pipeline["Name"])[:20]
    for stage in pipeline["Stages"]:
        for action in stage["Actions"]:
            if action["ActionTypeId"]["Provider"] != "CodeBuild":
                continue
            project_id = action["Configuration"]["ProjectName"]["Ref"]
            project = resources[project_id]["Properties"]
            role = project["ServiceRole"]["Fn::GetAtt"][0]
            origin = f"CodeBuild runs {stage['Name']}/{action['Name']}"
            s3 = {"kms:ViaService": f"s3.{p.region}.amazonaws.com"}
            yield role, Request("s3:GetBucketLocation", f"arn:{p.partition}:s3:::{bucket}", {}, origin)
            for artifact in action.get("InputArtifacts", []):
                obj = f"arn:{p.partition}:s3:::{bucket}/{prefix}/{artifact['Name'][:20]}/AbCdEfG"
                for name in ("s3:GetObject", "s3:GetObjectVersion"):
                    yield role, Request(name, obj, {}, f"{origin}: fetches {artifact['Name']}")
                if key:
                    yield role, Request("kms:Decrypt", key, s3, f"{origin}: fetches {artifact['Name']} (SSE-KMS)")
            for artifact in action.get("OutputArtifacts", []):
                obj = f"arn:{p.partition}:s3:::{bucket}/{prefix}/{artifact['Name'][:20]}/HiJkLmN"
                yield role, Request("s3:PutObject", obj, {}, f"{origin}: stores {artifact['Name']}")
                if key:
                    yield (
                        role,
                        Request("kms:GenerateDataKey", key, s3, f"{origin}: stores {artifact['Name']} (SSE-KMS)"),
                    )
            group = resolve(project.get("LogsConfig", {}).get("CloudWatchLogs", {}).get("GroupName"))
            if group:
                stream = {"LogGroupName": group, "LogStreamName": "0b9f6a1e-1c2d-4e5f-8a9b-0c1d2e3f4a5b"}
                for name in ("logs:CreateLogStream", "logs:PutLogEvents"):
                    for arn in resource_arns(name, stream, p.region, p.account):
                        yield role, Request(name, arn, {}, f"{origin}: writes the build log")
            spec = yaml.safe_load(project["Source"]["BuildSpec"])
            for report in spec.get("reports", {}):
                group_arn = f"arn:{p.partition}:codebuild:{p.region}:{p.account}:report-group/{resolve(project['Name'])}-{report}"
                for name in ("codebuild:CreateReport", "codebuild:UpdateReport", "codebuild:BatchPutTestCases"):
                    yield role, Request(name, group_arn, {}, f"{origin}: publishes report {report}")
