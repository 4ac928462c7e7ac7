"""Resolve a template's intrinsic functions with placeholder values, and evaluate IAM identity
policies against requests (action, resource ARN, condition context).

The evaluation follows the IAM policy evaluation logic for one identity policy: a request is
allowed when some Allow statement matches it and no Deny statement does. Matching: actions
case-insensitively with `*`/`?` wildcards (Action / NotAction), resources case-sensitively with
the same wildcards (Resource / NotResource), every condition operator and key must hold (AND),
any of a key's values may match (OR). Unknown operators and unresolvable intrinsics raise: the
test must not pass on something the evaluator does not understand.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import Any

ACCOUNT = "123456789012"  # moto's default account, and the one tests/test_endpoint_test.py uses


@dataclass(frozen=True)
class Placeholders:
    """The values a template resolves with: pseudo parameters, stack parameters, and the physical
    names of resources whose names CloudFormation generates (by logical ID)."""

    region: str
    account: str = ACCOUNT
    partition: str = "aws"
    parameters: Mapping[str, Any] = field(default_factory=dict)
    names: Mapping[str, str] = field(default_factory=dict)


# What Ref and GetAtt return per resource type: the property holding a given name (else a
# generated one), whether Ref is the name, the ARN or an id, and the ARN's format.
@dataclass(frozen=True)
class _Kind:
    name_property: str | None
    ref: str  # "name", "arn" or "id"
    arn: str


_KINDS = {
    "AWS::S3::Bucket": _Kind("BucketName", "name", "arn:{partition}:s3:::{name}"),
    "AWS::S3::BucketPolicy": _Kind(None, "name", ""),
    "AWS::IAM::Role": _Kind("RoleName", "name", "arn:{partition}:iam::{account}:role/{name}"),
    "AWS::KMS::Key": _Kind(None, "id", "arn:{partition}:kms:{region}:{account}:key/{name}"),
    "AWS::KMS::Alias": _Kind("AliasName", "name", "arn:{partition}:kms:{region}:{account}:{name}"),
    "AWS::SNS::Topic": _Kind("TopicName", "arn", "arn:{partition}:sns:{region}:{account}:{name}"),
    "AWS::Logs::LogGroup": _Kind("LogGroupName", "name", "arn:{partition}:logs:{region}:{account}:log-group:{name}:*"),
    "AWS::CodeBuild::Project": _Kind("Name", "name", "arn:{partition}:codebuild:{region}:{account}:project/{name}"),
    "AWS::CodeBuild::ReportGroup": _Kind(
        "Name", "arn", "arn:{partition}:codebuild:{region}:{account}:report-group/{name}"
    ),
    "AWS::CodePipeline::Pipeline": _Kind("Name", "name", "arn:{partition}:codepipeline:{region}:{account}:{name}"),
    # Application Auto Scaling assigns a scalable target's ARN an ID of its own (service authorization
    # reference: scalable-target/${ResourceId}); Ref is resourceId|dimension|namespace, a name here.
    "AWS::ApplicationAutoScaling::ScalableTarget": _Kind(
        None, "id", "arn:{partition}:application-autoscaling:{region}:{account}:scalable-target/{name}"
    ),
    # A scaling policy's ARN (what a scaling alarm's AlarmActions hold) carries an ID the service assigns.
    "AWS::ApplicationAutoScaling::ScalingPolicy": _Kind(
        None, "arn", "arn:{partition}:autoscaling:{region}:{account}:scalingPolicy:{name}"
    ),
    "AWS::CodeStarConnections::Connection": _Kind(
        None, "arn", "arn:{partition}:codestar-connections:{region}:{account}:connection/{name}"
    ),
    "AWS::CloudWatch::Alarm": _Kind("AlarmName", "name", "arn:{partition}:cloudwatch:{region}:{account}:alarm:{name}"),
    "AWS::SageMaker::Model": _Kind("ModelName", "arn", "arn:{partition}:sagemaker:{region}:{account}:model/{name}"),
    "AWS::SageMaker::EndpointConfig": _Kind(
        "EndpointConfigName", "arn", "arn:{partition}:sagemaker:{region}:{account}:endpoint-config/{name}"
    ),
    "AWS::SageMaker::Endpoint": _Kind(
        "EndpointName", "arn", "arn:{partition}:sagemaker:{region}:{account}:endpoint/{name}"
    ),
    # Its registry schema's primaryIdentifier is MonitoringScheduleArn, so Ref gives the ARN.
    "AWS::SageMaker::MonitoringSchedule": _Kind(
        "MonitoringScheduleName", "arn", "arn:{partition}:sagemaker:{region}:{account}:monitoring-schedule/{name}"
    ),
}
_PSEUDO = {"AWS::NoValue", "AWS::Region", "AWS::AccountId", "AWS::Partition", "AWS::StackName", "AWS::URLSuffix"}
_SUB_VARIABLE = re.compile(r"\$\{([^}]*)\}")


class UnresolvableError(ValueError):
    """The template uses something the resolver has no value or rule for."""


class Resolver:
    """Turns a template's values into plain strings, lists and dicts with `placeholders`."""

    def __init__(self, template: Mapping[str, Any], placeholders: Placeholders, stack_name: str = "stack"):
        self.template = template
        self.placeholders = placeholders
        self.stack_name = stack_name

    def __call__(self, value: Any) -> Any:
        if isinstance(value, list):
            return [self(item) for item in value]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            ((key, arg),) = value.items()
            if key == "Ref":
                return self.ref(arg)
            if key == "Fn::GetAtt":
                logical_id, attribute = arg if isinstance(arg, list) else arg.split(".", 1)
                return self.get_att(logical_id, attribute)
            if key == "Fn::Sub":
                return self.sub(arg)
            if key == "Fn::FindInMap":
                name, top, second = (self(part) for part in arg)
                return self.template["Mappings"][name][top][second]
            if key == "Fn::Join":
                delimiter, items = arg
                return delimiter.join(str(item) for item in self(items))
            if key.startswith("Fn::") or key == "Condition":
                raise UnresolvableError(f"{key} is not supported by the test's resolver: add it to policy.Resolver")
        return {key: self(item) for key, item in value.items()}

    # --- names ----------------------------------------------------------------------------
    def resource(self, logical_id: str) -> tuple[str, Mapping[str, Any]]:
        """A resource's type and properties."""
        try:
            resource = self.template["Resources"][logical_id]
        except KeyError:
            raise UnresolvableError(f"no resource or parameter {logical_id} in the template") from None
        return resource["Type"], resource.get("Properties", {})

    def physical_name(self, logical_id: str) -> str:
        """The name given in its properties, the placeholder for it, or a generated one."""
        kind_name, properties = self.resource(logical_id)
        kind = _kind(kind_name)
        if kind.name_property and kind.name_property in properties:
            return str(self(properties[kind.name_property]))
        if logical_id in self.placeholders.names:
            return self.placeholders.names[logical_id]
        if kind.ref == "id" or kind_name == "AWS::CodeStarConnections::Connection":
            return str(uuid.uuid5(uuid.NAMESPACE_URL, f"{self.stack_name}/{logical_id}"))
        # CloudFormation's generated names: stack name, logical ID and a random suffix.
        return f"{self.stack_name}-{logical_id}-GENERATED"[:63]

    def arn(self, logical_id: str) -> str:
        """The resource's ARN."""
        kind = _kind(self.resource(logical_id)[0])
        if not kind.arn:
            raise UnresolvableError(f"{logical_id} has no ARN")
        p = self.placeholders
        return kind.arn.format(
            partition=p.partition, region=p.region, account=p.account, name=self.physical_name(logical_id)
        )

    # --- intrinsic functions --------------------------------------------------------------
    def ref(self, name: str) -> Any:
        """Ref: a pseudo parameter, a stack parameter or a resource."""
        p = self.placeholders
        pseudo = {
            "AWS::Region": p.region,
            "AWS::AccountId": p.account,
            "AWS::Partition": p.partition,
            "AWS::StackName": self.stack_name,
            "AWS::URLSuffix": "amazonaws.com",
        }
        if name in pseudo:
            return pseudo[name]
        if name in _PSEUDO:
            raise UnresolvableError(f"Ref {name} is not supported by the test's resolver")
        if name in self.template.get("Parameters", {}):
            if name in p.parameters:
                return p.parameters[name]
            default = self.template["Parameters"][name].get("Default")
            if default is None:
                raise UnresolvableError(f"parameter {name} has no placeholder value and no default")
            return default
        kind = _kind(self.resource(name)[0])
        if kind.ref == "arn":
            return self.arn(name)
        return self.physical_name(name)

    def get_att(self, logical_id: str, attribute: str) -> str:
        """GetAtt: the ARN (`Arn`, `...Arn`) or a name (`...Name`, `KeyId`) of a resource."""
        if attribute == "Arn" or attribute.endswith("Arn"):
            return self.arn(logical_id)
        if attribute.endswith("Name") or attribute in ("KeyId", "Id"):
            return self.physical_name(logical_id)
        raise UnresolvableError(f"GetAtt {logical_id}.{attribute} is not supported by the test's resolver")

    def sub(self, arg: Any) -> str:
        """Fn::Sub in its string and [string, variables] forms; ${!Literal} stays ${Literal}."""
        text, variables = (arg, {}) if isinstance(arg, str) else (arg[0], arg[1])

        def one(match: re.Match) -> str:
            name = match.group(1)
            if name.startswith("!"):
                return "${" + name[1:] + "}"
            if name in variables:
                return str(self(variables[name]))
            if "." in name:
                logical_id, attribute = name.split(".", 1)
                return str(self.get_att(logical_id, attribute))
            return str(self.ref(name))

        return _SUB_VARIABLE.sub(one, text)


def _kind(type_name: str) -> _Kind:
    if type_name not in _KINDS:
        raise UnresolvableError(f"resource type {type_name} has no placeholder rule: add it to policy._KINDS")
    return _KINDS[type_name]


# --- requests and statements ----------------------------------------------------------------


Context = Mapping[str, "str | tuple[str, ...]"]


@dataclass(frozen=True)
class Request:
    """One authorization IAM makes: an action on a resource ("*" for actions without resource
    types) with its condition context, and what made it (for failure messages)."""

    action: str
    resource: str
    context: Context = field(default_factory=dict)
    origin: str = ""

    def describe(self) -> str:
        """`s3:PutObject on arn:... [s3:prefix=...]`."""
        shown = ", ".join(f"{k}={v}" for k, v in sorted(self.context.items()) if not k.startswith("aws:TagKeys"))
        return f"{self.action} on {self.resource}" + (f" [{shown}]" if shown else "")


@cache
def _pattern(glob: str, ignore_case: bool) -> re.Pattern:
    body = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in glob)
    return re.compile(f"^{body}$", re.IGNORECASE | re.DOTALL if ignore_case else re.DOTALL)


def wildcard_match(glob: str, value: str, ignore_case: bool = False) -> bool:
    """IAM's `*` (any run of characters, `:` and `/` included) and `?` (one character)."""
    return bool(_pattern(glob, ignore_case).match(value))


def _listed(value: Any) -> list:
    return list(value) if isinstance(value, (list, tuple)) else [value]


@dataclass(frozen=True)
class Statement:
    """One resolved policy statement; `where` names it for messages (role, index, Sid)."""

    effect: str
    actions: tuple[str, ...]
    resources: tuple[str, ...]
    conditions: Mapping[str, Mapping[str, Any]]
    where: str
    not_actions: bool = False
    not_resources: bool = False

    @classmethod
    def parse(cls, data: Mapping[str, Any], where: str) -> Statement:
        """From a resolved statement dict."""
        # Principal belongs to resource policies; it plays no part in an identity policy's evaluation.
        known = {"Sid", "Effect", "Principal", "Action", "NotAction", "Resource", "NotResource", "Condition"}
        unknown = set(data) - known
        if unknown:
            raise UnresolvableError(f"{where}: statement keys {sorted(unknown)} are not evaluated by the test")
        action_key = "Action" if "Action" in data else "NotAction"
        resource_key = "Resource" if "Resource" in data else "NotResource"
        for value in [*_listed(data[action_key]), *_listed(data.get(resource_key, "*"))]:
            if not isinstance(value, str) or "${" in value:
                raise UnresolvableError(f"{where}: unresolved value {value!r}")
        return cls(
            effect=data["Effect"],
            actions=tuple(_listed(data[action_key])),
            resources=tuple(_listed(data.get(resource_key, "*"))),
            conditions=data.get("Condition", {}),
            where=where,
            not_actions=action_key == "NotAction",
            not_resources=resource_key == "NotResource",
        )

    def matches_action(self, action: str) -> bool:
        """Whether the statement applies to the action."""
        hit = any(wildcard_match(a, action, ignore_case=True) for a in self.actions)
        return hit != self.not_actions

    def matching_resources(self, resource: str) -> list[str]:
        """The statement's resource entries that match the request's resource."""
        return [r for r in self.resources if wildcard_match(r, resource)]

    def matches(self, request: Request) -> bool:
        """Action, resource and every condition."""
        if not self.matches_action(request.action):
            return False
        if bool(self.matching_resources(request.resource)) == self.not_resources:
            return False
        return conditions_hold(self.conditions, request.context)


def is_allowed(statements: Iterable[Statement], request: Request) -> bool:
    """Allowed by some Allow and denied by no Deny."""
    statements = list(statements)
    if any(s.effect == "Deny" and s.matches(request) for s in statements):
        return False
    return any(s.effect == "Allow" and s.matches(request) for s in statements)


# --- conditions -----------------------------------------------------------------------------

_STRING_OPS = {
    "StringEquals": (lambda want, got: want == got, False),
    "StringNotEquals": (lambda want, got: want == got, True),
    "StringEqualsIgnoreCase": (lambda want, got: want.lower() == got.lower(), False),
    "StringNotEqualsIgnoreCase": (lambda want, got: want.lower() == got.lower(), True),
    "StringLike": (lambda want, got: wildcard_match(want, got), False),
    "StringNotLike": (lambda want, got: wildcard_match(want, got), True),
    "ArnEquals": (lambda want, got: want == got, False),
    "ArnNotEquals": (lambda want, got: want == got, True),
    "ArnLike": (lambda want, got: wildcard_match(want, got), False),
    "ArnNotLike": (lambda want, got: wildcard_match(want, got), True),
    "Bool": (lambda want, got: want.lower() == got.lower(), False),
}


def _context_value(context: Context, key: str) -> str | tuple[str, ...] | None:
    # Condition key names are case-insensitive.
    for name, value in context.items():
        if name.lower() == key.lower():
            return value
    return None


def conditions_hold(conditions: Mapping[str, Mapping[str, Any]], context: Context) -> bool:
    """Every operator's every key holds (AND); a key holds if any of its values match (OR)."""
    for operator, block in conditions.items():
        for key, wanted in block.items():
            if not _holds(
                operator, key, [str(w).lower() if isinstance(w, bool) else str(w) for w in _listed(wanted)], context
            ):
                return False
    return True


def _holds(operator: str, key: str, wanted: Sequence[str], context: Context) -> bool:
    got = _context_value(context, key)
    if operator == "Null":
        return (got is None) == (wanted[0].lower() == "true")
    quantifier, _, base = operator.rpartition(":")
    if_exists = base.endswith("IfExists")
    base = base.removesuffix("IfExists")
    if base not in _STRING_OPS or quantifier not in ("", "ForAnyValue", "ForAllValues"):
        raise UnresolvableError(f"condition operator {operator} is not evaluated by the test: add it to policy.py")
    match, negated = _STRING_OPS[base]
    if got is None:
        if if_exists or quantifier == "ForAllValues":
            return True
        return negated and not quantifier

    def single(value: str) -> bool:
        hit = any(match(w, value) for w in wanted)
        return not hit if negated else hit

    values = got if isinstance(got, tuple) else (got,)
    if quantifier == "ForAllValues":
        return all(single(v) for v in values)
    if quantifier == "ForAnyValue":
        return any(single(v) for v in values)
    if isinstance(got, tuple):
        raise UnresolvableError(f"{key} is multivalued: a condition on it needs ForAnyValue or ForAllValues")
    return single(got)


# --- roles ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Role:
    """A role of the template: its logical ID, the service that assumes it, its statements."""

    logical_id: str
    service: str
    statements: tuple[Statement, ...]

    def allows(self, request: Request) -> bool:
        """Whether the role's policies allow the request."""
        return is_allowed(self.statements, request)


def roles(template: Mapping[str, Any], resolve: Resolver) -> dict[str, Role]:
    """Every AWS::IAM::Role with its inline policies (and AWS::IAM::Policy resources attached to
    it), resolved."""
    found: dict[str, list[Statement]] = {}
    services: dict[str, str] = {}
    for logical_id, resource in template["Resources"].items():
        if resource["Type"] != "AWS::IAM::Role":
            continue
        properties = resource["Properties"]
        (trust,) = properties["AssumeRolePolicyDocument"]["Statement"]
        services[logical_id] = resolve(trust["Principal"]["Service"])
        found[logical_id] = []
        for policy in properties.get("Policies", []):
            document = resolve(policy["PolicyDocument"])
            for index, statement in enumerate(document["Statement"]):
                where = f"{logical_id} {policy['PolicyName']} statement {index}" + (
                    f" ({statement['Sid']})" if "Sid" in statement else ""
                )
                found[logical_id].append(Statement.parse(statement, where))
    for logical_id, resource in template["Resources"].items():
        if resource["Type"] == "AWS::IAM::Policy":
            raise UnresolvableError(f"{logical_id}: managed AWS::IAM::Policy resources are not evaluated yet")
    return {lid: Role(lid, services[lid], tuple(statements)) for lid, statements in found.items()}
