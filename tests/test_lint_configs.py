"""cfn-lint over every test config's templates, for the region each template deploys to.

The sample here (make test); the other configs, and the sample in every region it is accepted in
(tests/test_regions.py), in make test-heavy (CI runs both).
"""

from __future__ import annotations

import pytest
from test_templates import CONFIGS

from pipeline.scan import cfn_lint_findings
from pipeline.synth import synthesize


@pytest.mark.parametrize(
    "name", [name if name == "sample" else pytest.param(name, marks=pytest.mark.heavy) for name in sorted(CONFIGS)]
)
def test_cfn_lint_finds_nothing_in_the_region_each_template_deploys_to(name):
    synthesis = synthesize(CONFIGS[name]())
    for file, template in synthesis.templates.items():
        assert cfn_lint_findings(template, [synthesis.regions[file]]) == [], file
