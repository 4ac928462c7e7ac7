"""Render every template for a config and write them to a folder; no AWS call."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from troposphere import Template

from pipeline.config import PipelineConfig
from pipeline.stacks.endpoint import build_endpoint_template
from pipeline.stacks.pipeline import PipelineStack
from pipeline.stages import describe


@dataclass
class Synthesis:
    """The rendered templates (file name -> template dict) and a summary of the stages."""

    templates: dict[str, dict]
    stage_lines: list[str]


def synthesize(config: PipelineConfig) -> Synthesis:
    """Build every template for the config."""
    stack = PipelineStack(config)
    rendered: dict[str, Template] = {
        "pipeline.json": stack.build(),
        "endpoint.json": build_endpoint_template(config.tags),
    }
    return Synthesis(
        templates={name: t.to_dict() for name, t in rendered.items()},
        stage_lines=describe(stack.stages),
    )


def write_templates(synthesis: Synthesis, out_dir: str | Path) -> list[Path]:
    """Write each template as indented JSON with a trailing newline; returns the paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, body in synthesis.templates.items():
        path = out / name
        path.write_text(json.dumps(body, indent=1, sort_keys=True) + "\n")
        written.append(path)
    return written
