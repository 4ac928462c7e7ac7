"""Every example config (examples/*/pipeline.yml) synthesizes, and its templates are clean under
cfn-lint in the region each deploys to and under cfripper (make test), and under cfn-lint in every
region the example is accepted in (make test-heavy)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from pipeline.config import load_config, parse_config
from pipeline.regions import verdicts
from pipeline.scan import cfn_lint_findings, cfripper_findings
from pipeline.synth import render, synthesize

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = sorted(REPO.glob("examples/*/pipeline.yml"))
IDS = [path.parent.name for path in EXAMPLES]


def test_there_are_examples():
    assert set(IDS) >= {
        "async-sklearn",
        "batch-sklearn",
        "xgboost",
        "pytorch",
        "tensorflow",
        "own-container",
        "builtin-xgboost",
        "linear-learner",
        "image-classification",
    }


@pytest.mark.parametrize("path", EXAMPLES, ids=IDS)
def test_each_example_synthesizes_and_scans_clean(path: Path):
    synthesis = synthesize(load_config(path, check_payloads=True))
    assert "pipeline.json" in synthesis.templates
    findings = [
        f"{name}: {line}"
        for name, template in synthesis.templates.items()
        for line in cfn_lint_findings(template, [synthesis.regions[name]]) + cfripper_findings(template)
    ]
    assert findings == []


@pytest.mark.heavy
@pytest.mark.parametrize("path", EXAMPLES, ids=IDS)
def test_an_examples_templates_lint_clean_in_every_region_it_is_accepted_in(path: Path):
    data = yaml.safe_load(path.read_text())
    accepted = [region for region, gaps in verdicts(load_config(path)).items() if not gaps]
    assert data["region"] in accepted
    by_body: dict[str, tuple[dict, list[str]]] = {}  # templates the same in several regions: one run
    for region in accepted:
        config = parse_config({**data, "region": region}, root=path.parent)
        for template in render(config).templates.values():
            by_body.setdefault(json.dumps(template, sort_keys=True), (template, []))[1].append(region)
    assert [line for template, among in by_body.values() for line in cfn_lint_findings(template, among)] == []
