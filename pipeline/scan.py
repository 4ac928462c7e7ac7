"""Offline checks of rendered templates: cfn-lint (AWS's resource schemas) and cfripper (security).

Used by the test suite and by `make lint` (`python -m pipeline.scan --config pipeline.yml
build/templates/*.json`; the Lint action adds `--junit` for its CodeBuild report). cfn-lint checks each template for the region its stack deploys to (the
config says which), since resource types differ by region.
A cfripper finding can be suppressed only in the template itself, on the resource, with a reason:
    Metadata: {"cfripper": {"suppress": [{"rule": "RuleName", "reason": "why it does not apply"}]}}
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from pipeline.junit import Case, write_junit

# A placeholder account: lets cfripper's cross-account trust rules run.
SCAN_ACCOUNT_ID = "123456789012"


def cfn_lint_findings(template: dict, regions: Sequence[str]) -> list[str]:
    """Every cfn-lint error, warning and informational match for any of `regions` (one cfn-lint run
    checks them all), as text; empty when clean."""
    from cfnlint.api import ManualArgs, lint

    # Rendered as synth writes it, so line numbers point into build/templates/*.json.
    text = json.dumps(template, indent=1, sort_keys=True)
    matches = lint(text, config=ManualArgs(regions=list(regions), include_checks=["I"]))
    return [f"cfn-lint {m.rule.id} line {m.linenumber}: {m.message}" for m in matches]


def _suppressed(template: dict) -> dict[str, dict[str, str]]:
    """resource -> {rule: reason} from the resources' cfripper metadata."""
    found: dict[str, dict[str, str]] = {}
    for logical_id, resource in template.get("Resources", {}).items():
        for entry in resource.get("Metadata", {}).get("cfripper", {}).get("suppress", []):
            if entry.get("rule") and entry.get("reason", "").strip():
                found.setdefault(logical_id, {})[entry["rule"]] = entry["reason"]
    return found


def cfripper_findings(template: dict) -> list[str]:
    """cfripper failures of every rule mode, less those suppressed with a reason in the template."""
    import pycfmodel
    from cfripper.config.config import Config
    from cfripper.config.pluggy.utils import get_all_rules
    from cfripper.rule_processor import RuleProcessor

    rules = get_all_rules()
    config = Config(rules=rules.keys(), aws_account_id=SCAN_ACCOUNT_ID)
    processor = RuleProcessor(*[rules[name](config) for name in config.rules])
    # pycfmodel logs a warning per intrinsic it cannot resolve offline (loggers named by file).
    logging.disable(logging.WARNING)
    try:
        model = pycfmodel.parse(template).resolve()
        result = processor.process_cf_template(model, config)
    finally:
        logging.disable(logging.NOTSET)
    suppressed = _suppressed(template)
    findings = [f"cfripper: scan error: {exc}" for exc in result.exceptions]
    for failure in result.failures:
        ids = sorted(failure.resource_ids or [])
        if ids and all(failure.rule in suppressed.get(rid, {}) for rid in ids):
            continue
        findings.append(f"cfripper {failure.rule} ({failure.rule_mode.value}) {', '.join(ids)}: {failure.reason}")
    return findings


def scan_by_tool(path: Path, region: str) -> dict[str, list[str]]:
    """One template file's findings by tool (cfn-lint for the region its stack deploys to, cfripper)."""
    template = json.loads(path.read_text())
    return {"cfn-lint": cfn_lint_findings(template, [region]), "cfripper": cfripper_findings(template)}


def scan(path: Path, region: str) -> list[str]:
    """All findings for one template file, linted for the region its stack deploys to."""
    return [f"{path}: {line}" for found in scan_by_tool(path, region).values() for line in found]


def main(argv: list[str] | None = None) -> int:
    """Scan the given template files of a config; exit 1 if anything was found."""
    parser = argparse.ArgumentParser(prog="python -m pipeline.scan", description=main.__doc__)
    parser.add_argument("--config", default="pipeline.yml", help="The config the templates were synthesized from")
    parser.add_argument("templates", nargs="+", type=Path, metavar="TEMPLATE.json")
    parser.add_argument(
        "--junit",
        type=Path,
        metavar="REPORT.xml",
        help="Also write a JUnit report: a suite per tool, a case per template",
    )
    args = parser.parse_args(argv)
    from pipeline.config import ConfigError, load_config
    from pipeline.synth import render

    try:
        regions = render(load_config(args.config)).regions
    except ConfigError as exc:
        for line in exc.problems:
            print(line, file=sys.stderr)
        return 2
    findings = []
    suites: dict[str, list[Case]] = {"cfn-lint": [], "cfripper": []}
    for path in args.templates:
        if path.name in regions:
            for tool, found in scan_by_tool(path, regions[path.name]).items():
                suites[tool].append(Case(path.name, tuple(found)))
                findings += [f"{path}: {line}" for line in found]
        else:
            findings.append(f"{path}: not a template of {args.config}, so its region is unknown: synthesize it again")
            suites["cfn-lint"].append(Case(path.name, (findings[-1],)))
    if args.junit:
        write_junit(args.junit, suites)
    for line in findings:
        print(line)
    where = ", ".join(sorted(set(regions.values())))
    print(f"scanned {len(args.templates)} templates with cfn-lint (for {where}) and cfripper: {len(findings)} findings")
    return 1 if findings else 0


if __name__ == "__main__":
    sys.exit(main())
