"""Every example config (examples/*/pipeline.yml) synthesizes, and its templates are clean under
cfn-lint in the region each deploys to and under cfripper (make test)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.config import load_config
from pipeline.scan import cfn_lint_findings, cfripper_findings
from pipeline.synth import synthesize

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = sorted(REPO.glob("examples/*/pipeline.yml"))


def test_there_are_examples():
    assert {path.parent.name for path in EXAMPLES} >= {
        "async-sklearn",
        "batch-sklearn",
        "xgboost",
        "pytorch",
        "tensorflow",
        "own-container",
    }


@pytest.mark.parametrize("path", EXAMPLES, ids=[path.parent.name for path in EXAMPLES])
def test_each_example_synthesizes_and_scans_clean(path: Path):
    synthesis = synthesize(load_config(path, check_payloads=True))
    assert "pipeline.json" in synthesis.templates
    findings = [
        f"{name}: {line}"
        for name, template in synthesis.templates.items()
        for line in cfn_lint_findings(template, [synthesis.regions[name]]) + cfripper_findings(template)
    ]
    assert findings == []
