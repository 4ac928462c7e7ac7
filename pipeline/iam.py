"""Small builders for least-privilege IAM with awacs: statements, trust policies, roles."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from awacs.aws import Allow, Condition, Deny, Policy, Principal, Statement
from awacs.sts import AssumeRole
from troposphere import Tags, iam


def allow(
    actions: Iterable, resources: Iterable | Any, condition: Condition | None = None, sid: str | None = None
) -> Statement:
    """An Allow statement; `resources` may be one value or a list."""
    kwargs: dict[str, Any] = dict(
        Effect=Allow,
        Action=list(actions),
        Resource=list(resources) if isinstance(resources, (list, tuple)) else [resources],
    )
    if condition is not None:
        kwargs["Condition"] = condition
    if sid:
        kwargs["Sid"] = sid
    return Statement(**kwargs)


def deny(actions: Iterable, resources: Iterable, principal: Principal, condition: Condition, sid: str) -> Statement:
    """A Deny statement for resource policies (e.g. refuse plain-HTTP access)."""
    return Statement(
        Sid=sid, Effect=Deny, Principal=principal, Action=list(actions), Resource=list(resources), Condition=condition
    )


def document(*statements: Statement) -> Policy:
    """A policy document from statements."""
    return Policy(Version="2012-10-17", Statement=list(statements))


def trust(service: str) -> Policy:
    """A trust policy letting one AWS service assume the role."""
    return document(Statement(Effect=Allow, Principal=Principal("Service", service), Action=[AssumeRole]))


def role(logical_id: str, service: str, description: str, statements: list[Statement], tags: Tags) -> iam.Role:
    """A role for one service with one inline policy holding exactly `statements`."""
    return iam.Role(
        logical_id,
        Description=description,
        AssumeRolePolicyDocument=trust(service),
        Policies=[iam.Policy(PolicyName=f"{logical_id}Policy", PolicyDocument=document(*statements))],
        Tags=tags,
    )
