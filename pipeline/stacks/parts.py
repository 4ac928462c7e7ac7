"""Explicit assembly: a stack is a list of parts, each part the resources that belong together
and the outputs that describe them, side by side. Only what a part lists enters the template."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from troposphere import Output, Template


@dataclass(frozen=True)
class Part:
    """Resources that belong together, the outputs that describe them, and mappings they read."""

    resources: Sequence[Any]
    outputs: Sequence[Output] = ()
    mappings: Mapping[str, dict] = field(default_factory=dict)


def output(name: str, value: Any, description: str) -> Output:
    """A stack output (named `<LogicalId>Arn` / `<LogicalId>Name` where it describes a resource)."""
    return Output(name, Value=value, Description=description)


def assemble(description: str, parts: Sequence[Part], parameters: Sequence[Any] = ()) -> Template:
    """A template holding exactly the given parameters and parts, in that order."""
    template = Template(Description=description)
    for parameter in parameters:
        template.add_parameter(parameter)
    for part in parts:
        for name, mapping in part.mappings.items():
            template.add_mapping(name, mapping)
        for resource in part.resources:
            template.add_resource(resource)
        for item in part.outputs:
            template.add_output(item)
    return template
