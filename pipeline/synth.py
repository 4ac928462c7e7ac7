"""Render every template for a config and write them to a folder; no AWS call."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from troposphere import Template

from pipeline.config import PipelineConfig
from pipeline.jsontext import dumps
from pipeline.regions import check
from pipeline.stacks.pipeline import PipelineStack
from pipeline.stages import describe

PIPELINE_TEMPLATE = "pipeline.json"


@dataclass
class Synthesis:
    """The rendered templates (file name -> template dict), the region each deploys to, and a
    summary of the stages."""

    templates: dict[str, dict]
    regions: dict[str, str]
    stage_lines: list[str]


def render(config: PipelineConfig, branch: str | None = None) -> Synthesis:
    """Build every template for the config: the pipeline stack's and one endpoint stack's per
    environment, whether or not their regions offer what they use (see `synthesize`). With a
    branch: its pipeline's (pipeline.branches; check branch_problem_for first)."""
    if branch:
        from pipeline.stacks.branch import BranchPipelineStack  # only a branch's synth needs it

        stack: PipelineStack = BranchPipelineStack(config, branch)
    else:
        stack = PipelineStack(config)
    rendered: dict[str, Template] = {PIPELINE_TEMPLATE: stack.build()}
    regions = {PIPELINE_TEMPLATE: config.region}
    for env in stack.config.environments:
        endpoint = stack.endpoint_stack(env)
        rendered[endpoint.file_name] = endpoint.build()
        regions[endpoint.file_name] = endpoint.region
    return Synthesis(
        templates={name: t.to_dict() for name, t in rendered.items()},
        regions=regions,
        stage_lines=describe(stack.stages),
    )


def synthesize(config: PipelineConfig, branch: str | None = None) -> Synthesis:
    """Build every template for the config (or its branch's pipeline); raises RegionError (one line
    per problem) when a template uses a resource type the region it deploys to does not offer."""
    synthesis = render(config, branch)
    check(synthesis.templates, synthesis.regions)
    return synthesis


def write_templates(synthesis: Synthesis, out_dir: str | Path) -> list[Path]:
    """Write each template as indented JSON with a trailing newline; returns the paths.

    Templates of environments no longer in the config are removed, so the folder (the Lint
    step's artifact) holds exactly this synthesis.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for stale in out.glob("endpoint*.json"):
        if stale.name not in synthesis.templates:
            stale.unlink()
    written = []
    for name, body in synthesis.templates.items():
        path = out / name
        path.write_text(dumps(body) + "\n")  # json.dumps(body, indent=1, sort_keys=True)
        written.append(path)
    return written
