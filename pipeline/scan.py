"""Offline checks of rendered templates: cfn-lint (AWS's resource schemas) and cfripper (security).

Used by the test suite and by `make lint` (`python -m pipeline.scan build/templates/*.json`).
A cfripper finding can be suppressed only in the template itself, on the resource, with a reason:
    Metadata: {"cfripper": {"suppress": [{"rule": "RuleName", "reason": "why it does not apply"}]}}
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

# A placeholder account: lets cfripper's cross-account trust rules run.
SCAN_ACCOUNT_ID = "123456789012"


def cfn_lint_findings(template: dict, region: str = "us-east-1") -> list[str]:
    """Every cfn-lint error, warning and informational match, as text (empty when clean)."""
    from cfnlint.api import ManualArgs, lint

    # Rendered as synth writes it, so line numbers point into build/templates/*.json.
    text = json.dumps(template, indent=1, sort_keys=True)
    matches = lint(text, config=ManualArgs(regions=[region], include_checks=["I"]))
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


def scan(path: Path) -> list[str]:
    """All findings for one template file."""
    template = json.loads(path.read_text())
    return [f"{path}: {line}" for line in cfn_lint_findings(template) + cfripper_findings(template)]


def main(argv: list[str] | None = None) -> int:
    """Scan the given template files; exit 1 if anything was found."""
    paths = [Path(p) for p in (sys.argv[1:] if argv is None else argv)]
    if not paths:
        print("usage: python -m pipeline.scan TEMPLATE.json ...", file=sys.stderr)
        return 2
    findings = [line for path in paths for line in scan(path)]
    for line in findings:
        print(line)
    print(f"scanned {len(paths)} templates with cfn-lint and cfripper: {len(findings)} findings")
    return 1 if findings else 0


if __name__ == "__main__":
    sys.exit(main())
