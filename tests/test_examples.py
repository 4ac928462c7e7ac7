"""Every example (examples/<name>/pipeline.yml) synthesizes, and its templates are clean under
cfn-lint in the example's region and under cfripper."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.config import load_config
from pipeline.scan import cfn_lint_findings, cfripper_findings
from pipeline.synth import synthesize

EXAMPLES = sorted((Path(__file__).resolve().parent.parent / "examples").glob("*/pipeline.yml"))


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.parent.name for p in EXAMPLES])
def test_example_synthesizes_and_scans_clean(path: Path):
    config = load_config(path, check_payloads=True)
    synthesis = synthesize(config)
    for name, template in synthesis.templates.items():
        assert cfn_lint_findings(template, [synthesis.regions[name]]) == [], name
        assert cfripper_findings(template) == [], name
