"""Every example (examples/<name>/pipeline.yml) synthesizes, and its templates scan clean: cfn-lint
for the region each stack deploys to, and cfripper."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.config import load_config
from pipeline.scan import scan
from pipeline.synth import synthesize, write_templates

EXAMPLES = sorted((Path(__file__).resolve().parent.parent / "examples").glob("*/pipeline.yml"))


@pytest.mark.parametrize("config_path", EXAMPLES, ids=[path.parent.name for path in EXAMPLES])
def test_an_example_synthesizes_and_scans_clean(config_path, tmp_path):
    synthesis = synthesize(load_config(config_path, check_payloads=True))
    written = write_templates(synthesis, tmp_path)
    assert written
    findings = [line for path in written for line in scan(path, synthesis.regions[path.name])]
    assert findings == []
