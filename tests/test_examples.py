"""Every example (examples/*/pipeline.yml) synthesizes, and its templates pass cfn-lint in the
region each stack deploys to, and cfripper."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.config import load_config
from pipeline.scan import cfn_lint_findings, cfripper_findings
from pipeline.synth import synthesize

REPO = Path(__file__).resolve().parent.parent
CONFIGS = sorted((REPO / "examples").glob("*/pipeline.yml"))


@pytest.mark.parametrize("path", CONFIGS, ids=[path.parent.name for path in CONFIGS])
def test_the_example_synthesizes_and_scans_clean(path):
    synthesis = synthesize(load_config(path, check_payloads=True))
    findings = [
        f"{name}: {line}"
        for name, template in synthesis.templates.items()
        for line in cfn_lint_findings(template, [synthesis.regions[name]]) + cfripper_findings(template)
    ]
    assert findings == []
