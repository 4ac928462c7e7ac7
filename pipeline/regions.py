"""Where the pipeline can be deployed: a region is accepted only where every resource type its templates use exists.

Which resource types CloudFormation offers in a region comes from cfn-lint's per-region provider
schemas (`cfnlint/data/schemas/providers/<region>.json`, keyed by resource type), copied to
`pipeline/data/resource_types/<region>.json` by `make region-data`, so that synth neither needs
cfn-lint (a test tool) nor reads its large files; a test checks the copy against the installed
cfn-lint. The types checked are those of the templates actually built for the config, so a new
resource type is checked without a change here.

`python -m pipeline.regions` (`make regions`) prints the regions a config is accepted in, and why
it is refused in the others.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

DATA_DIR = "data/resource_types"
CONNECTION_TYPE = "AWS::CodeStarConnections::Connection"

# An action can need a service whose resource the template does not contain: the GitHub source
# action (CodeStarSourceConnection) uses a connection even when it is given as an existing ARN.
# AWS documents that action as unavailable in the regions without connections, and a source
# action cannot run in another region than the pipeline's (README, "Regions").
ACTION_PROVIDER_NEEDS = {"CodeStarSourceConnection": CONNECTION_TYPE}

WHAT_TO_DO = "choose another region (make regions lists the accepted ones)"
WHAT_TO_DO_CONNECTION = (
    "an existing connection_arn does not help: CodePipeline offers no GitHub source action "
    f"(CodeStarSourceConnection) where connections are missing, so {WHAT_TO_DO}"
)


class RegionError(Exception):
    """Templates that cannot be deployed where the config says; `problems` holds one line per
    problem, each starting with the setting it is about (``region: ...``)."""

    def __init__(self, problems: list[str]):
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class Gap:
    """A resource type a region lacks and what uses it; `kind` None: nothing is known of the region."""

    region: str
    kind: str | None
    users: tuple[str, ...] = ()

    def line(self) -> str:
        """The problem as one line, starting with the setting it is about."""
        if self.kind is None:
            return (
                f"region: {self.region}: the resource types CloudFormation offers there are not known (cfn-lint "
                f"ships no schema for it), so the templates cannot be checked for it; {WHAT_TO_DO}"
            )
        advice = WHAT_TO_DO_CONNECTION if self.kind == CONNECTION_TYPE else WHAT_TO_DO
        return f"region: {self.region} has no {self.kind} (used by {', '.join(self.users)}); {advice}"


@cache
def resource_types(region: str) -> frozenset[str] | None:
    """The CloudFormation resource types offered in `region`, or None when no data is known for it."""
    try:
        text = (Path(__file__).parent / DATA_DIR / f"{region}.json").read_text()
    except FileNotFoundError:
        return None
    return frozenset(json.loads(text)["types"])


def _providers(resource: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    """(``stage/action``, provider) of every action of a CodePipeline::Pipeline resource."""
    for stage in resource.get("Properties", {}).get("Stages", []):
        for action in stage.get("Actions", []):
            yield f"{stage['Name']}/{action['Name']}", action["ActionTypeId"]["Provider"]


def requirements(template_name: str, template: Mapping[str, Any]) -> dict[str, list[str]]:
    """Resource type -> what in the template needs it: ``<template>/<logical id>``, or for a
    pipeline action ``<template>/<logical id>/<stage>/<action>``."""
    needs: dict[str, list[str]] = {}
    for logical_id, resource in template.get("Resources", {}).items():
        needs.setdefault(resource["Type"], []).append(f"{template_name}/{logical_id}")
        if resource["Type"] == "AWS::CodePipeline::Pipeline":
            for action, provider in _providers(resource):
                if provider in ACTION_PROVIDER_NEEDS:
                    needs.setdefault(ACTION_PROVIDER_NEEDS[provider], []).append(
                        f"{template_name}/{logical_id}/{action}"
                    )
    return needs


def gaps(templates: Mapping[str, Mapping[str, Any]], regions: Mapping[str, str]) -> list[Gap]:
    """Every resource type missing in the region a template deploys to (`regions`: template ->
    region), one per region and type; empty when every template can be deployed where it goes."""
    missing: dict[tuple[str, str | None], list[str]] = {}
    for name, template in templates.items():
        region = regions[name]
        offered = resource_types(region)
        if offered is None:
            missing.setdefault((region, None), [])
            continue
        for kind, users in requirements(name, template).items():
            if kind not in offered:
                missing.setdefault((region, kind), []).extend(users)
    return [Gap(region, kind, tuple(users)) for (region, kind), users in missing.items()]


def check(templates: Mapping[str, Mapping[str, Any]], regions: Mapping[str, str]) -> None:
    """Raise RegionError, one line per gap, when a template uses a resource type its region lacks."""
    found = gaps(templates, regions)
    if found:
        raise RegionError([gap.line() for gap in found])


# ----- `make regions`: where a config can go ---------------------------------------------------


def verdicts(config: Any) -> dict[str, list[Gap]]:
    """Every region with the framework's images -> the gaps of the config's templates built for it."""
    from pipeline.synth import render

    found = {}
    for region in config.framework.regions(config.image_version):
        # Environments that name the pipeline's region explicitly move with it.
        environments = [
            env.model_copy(update={"region": region}) if env.region == config.region else env
            for env in config.environments
        ]
        synthesis = render(config.model_copy(update={"region": region, "environments": environments}))
        found[region] = gaps(synthesis.templates, synthesis.regions)
    return found


def _reason(region_gaps: list[Gap]) -> str:
    kinds = [gap.kind for gap in region_gaps if gap.kind]
    return "no " + ", ".join(kinds) if kinds else "no resource schema known (cfn-lint ships none)"


# ----- `make region-data`: the copy of cfn-lint's lists ----------------------------------------


def cfn_lint_data(regions: list[str]) -> dict[str, str]:
    """Region -> the data file's text, from the installed cfn-lint's provider schemas (regions it
    has none for are left out). Needs cfn-lint (`make region-data` and the tests)."""
    from importlib import resources
    from importlib.metadata import version

    schemas = resources.files("cfnlint").joinpath("data/schemas")
    schema_date = json.loads(schemas.joinpath("version.json").read_text())["schema_date"]
    texts = {}
    for region in regions:
        provider = schemas.joinpath(f"providers/{region}.json")
        if not provider.is_file():
            continue
        body = {
            "_source": (
                f"Written by `make region-data` from cfn-lint {version('cfn-lint')} (PyPI, MIT-0), "
                f"cfnlint/data/schemas/providers/{region}.json (schemas of {schema_date}): "
                f"the CloudFormation resource types offered in {region}."
            ),
            "types": sorted(json.loads(provider.read_text())),
        }
        texts[region] = json.dumps(body, indent=0) + "\n"
    return texts


def write_data(folder: Path) -> list[Path]:
    """Rewrite the data files for every region some framework has images in; returns them."""
    from pipeline.frameworks import all_regions

    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob("*.json"):
        stale.unlink()
    written = []
    for region, text in cfn_lint_data(all_regions()).items():
        path = folder / f"{region}.json"
        path.write_text(text)
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    """Print the regions the config is accepted in and why it is refused in the others
    (or, with --write-data, regenerate the data files from cfn-lint)."""
    import argparse  # not at the top: synth imports this module and needs no argparse

    parser = argparse.ArgumentParser(prog="python -m pipeline.regions", description=main.__doc__)
    parser.add_argument("--config", default="pipeline.yml")
    parser.add_argument("--write-data", metavar="FOLDER", help="write the per-region resource type lists here")
    args = parser.parse_args(argv)
    if args.write_data:
        written = write_data(Path(args.write_data))
        print(f"wrote {len(written)} region lists to {args.write_data}")
        return 0
    from pipeline.config import ConfigError, load_config

    try:
        config = load_config(args.config)
    except ConfigError as exc:
        for line in exc.problems:
            print(line, file=sys.stderr)
        return 2
    found = verdicts(config)
    accepted = [region for region, region_gaps in found.items() if not region_gaps]
    refused = {region: region_gaps for region, region_gaps in found.items() if region_gaps}
    print(f"{args.config}: accepted in {len(accepted)} regions: {', '.join(accepted)}")
    print(f"refused in {len(refused)} of the regions with {config.framework.title} images:")
    for region, region_gaps in refused.items():
        print(f"  {region}: {_reason(region_gaps)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
