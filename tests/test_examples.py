"""Every example config (examples/*/pipeline.yml) synthesizes through `make synth`'s command (make
test); its templates are clean under cfripper and under cfn-lint in every region the example is
accepted in, its own included (make test-heavy, which CI runs)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from pipeline.cli import main as cli_main
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
def test_make_synth_writes_each_examples_templates(path: Path, tmp_path, capsys):
    # What `make synth CONFIG=examples/<name>/pipeline.yml` runs; the payloads checked too.
    assert cli_main(["synth", "--config", str(path), "--out", str(tmp_path)]) == 0
    synthesis = synthesize(load_config(path, check_payloads=True))
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(synthesis.templates)
    assert capsys.readouterr().err == ""


# The scans cost ~5 s of CPU per example (cfn-lint and cfripper over a 55 KB pipeline template):
# make test-heavy (CI runs it), to keep make test well under a minute on two cores.
@pytest.mark.heavy
@pytest.mark.parametrize("path", EXAMPLES, ids=IDS)
def test_each_examples_templates_are_clean_under_cfripper(path: Path):
    synthesis = synthesize(load_config(path))
    assert [
        f"{name}: {line}" for name, template in synthesis.templates.items() for line in cfripper_findings(template)
    ] == []


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


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("linear-learner", "Linear Learner is a built-in algorithm: it runs only in SageMaker's image"),
        ("own-container", "its own image: needs Docker (docker build, then docker run IMAGE train / serve)"),
    ],
)
def test_make_test_examples_says_why_it_cannot_run_an_example_here(name, why):
    from scripts import test_examples

    assert test_examples.run_example(REPO / "examples" / name / "pipeline.yml") == test_examples.Result(
        name, False, why
    )


def test_make_test_examples_trains_on_the_seed_folder_of_data_kept_in_the_model_bucket():
    from scripts import test_examples

    config = load_config(REPO / "examples" / "async-sklearn" / "pipeline.yml")
    assert config.training_data.model_bucket_prefix is not None
    assert test_examples.data_folder(config) == config.training_data.seed_dir
