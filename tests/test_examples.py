"""Every example (examples/<name>/pipeline.yml) synthesizes, and its templates scan clean: cfn-lint
for the region each stack deploys to, and cfripper (make test); cfn-lint in every region the example
is accepted in (make test-heavy)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from pipeline.config import load_config, parse_config
from pipeline.regions import verdicts
from pipeline.scan import cfn_lint_findings, scan
from pipeline.synth import render, synthesize, write_templates

EXAMPLES = sorted((Path(__file__).resolve().parent.parent / "examples").glob("*/pipeline.yml"))
IDS = [path.parent.name for path in EXAMPLES]


@pytest.mark.parametrize("config_path", EXAMPLES, ids=IDS)
def test_an_example_synthesizes_and_scans_clean(config_path, tmp_path):
    synthesis = synthesize(load_config(config_path, check_payloads=True))
    written = write_templates(synthesis, tmp_path)
    assert written
    findings = [line for path in written for line in scan(path, synthesis.regions[path.name])]
    assert findings == []


@pytest.mark.heavy
@pytest.mark.parametrize("config_path", EXAMPLES, ids=IDS)
def test_an_examples_templates_lint_clean_in_every_region_it_is_accepted_in(config_path):
    data = yaml.safe_load(config_path.read_text())
    accepted = [region for region, gaps in verdicts(load_config(config_path)).items() if not gaps]
    assert data["region"] in accepted
    by_body: dict[str, tuple[dict, list[str]]] = {}  # templates the same in several regions: one run
    for region in accepted:
        config = parse_config({**data, "region": region}, root=config_path.parent)
        for template in render(config).templates.values():
            by_body.setdefault(json.dumps(template, sort_keys=True), (template, []))[1].append(region)
    assert [line for template, among in by_body.values() for line in cfn_lint_findings(template, among)] == []
