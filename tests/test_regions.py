"""Regions: a config is accepted only where every resource type of its templates exists, the data
behind that is cfn-lint's, and cfn-lint agrees with every verdict on the sample's templates."""

from __future__ import annotations

import copy
import json
import re
import subprocess
import sys
from functools import cache
from pathlib import Path

import pytest
import yaml

from pipeline.cli import main as cli_main
from pipeline.config import PipelineConfig, parse_config
from pipeline.frameworks import all_regions
from pipeline.regions import CONNECTION_TYPE, DATA_DIR, Gap, RegionError, cfn_lint_data, gaps, main, verdicts
from pipeline.scan import cfn_lint_findings
from pipeline.scan import main as scan_main
from pipeline.synth import render, synthesize

REPO = Path(__file__).resolve().parent.parent
SAMPLE = yaml.safe_load((REPO / "pipeline.yml").read_text())
CONNECTION_ARN = "arn:aws:codestar-connections:us-east-1:111122223333:connection/0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0"


def _sample_in(region: str, **github: str) -> PipelineConfig:
    data = copy.deepcopy(SAMPLE)
    data["region"] = region
    data["source"]["github"].update(github)
    return parse_config(data, root=REPO)


@cache
def _verdicts() -> dict[str, list[Gap]]:
    """The sample's verdict for every region with scikit-learn images."""
    return verdicts(parse_config(copy.deepcopy(SAMPLE), root=REPO))


def _accepted() -> list[str]:
    return [region for region, found in _verdicts().items() if not found]


# ----- the data is cfn-lint's ------------------------------------------------------------------


def test_the_resource_type_lists_are_the_installed_cfn_lints():
    """pipeline/data/resource_types holds exactly what cfn-lint's provider schemas say, for every
    region with framework images that cfn-lint knows: after a cfn-lint upgrade, `make region-data`."""
    folder = REPO / "pipeline" / DATA_DIR
    expected = cfn_lint_data(all_regions())
    on_disk = {path.stem: path.read_text() for path in folder.glob("*.json")}
    assert sorted(on_disk) == sorted(expected), "run make region-data"
    for region, text in expected.items():
        assert on_disk[region] == text, f"{region}: run make region-data"


def test_the_data_knows_the_regions_the_issue_found_lacking():
    """Guards the test above against an empty or truncated copy: the types cfn-lint's own run
    found missing (issue 7) are missing in the data, and present where the sample is accepted."""
    lists = {path.stem: set(json.loads(path.read_text())["types"]) for path in (REPO / "pipeline" / DATA_DIR).iterdir()}
    assert CONNECTION_TYPE not in lists["af-south-1"] and CONNECTION_TYPE in lists["eu-west-1"]
    assert "AWS::CodeBuild::Project" not in lists["ca-west-1"] and "AWS::CodeBuild::Project" in lists["ca-central-1"]
    assert "AWS::SageMaker::Endpoint" not in lists["me-central-1"] and "AWS::SageMaker::Endpoint" in lists["us-east-1"]


# ----- cfn-lint agrees with every verdict on the sample ---------------------------------------


@cache
def _linted() -> tuple[list[str], list[str]]:
    """(the regions linted, cfn-lint's findings) for the sample's templates built for every region
    the check has data for. Templates that come out the same for several regions (all of them,
    today) are linted once for all those regions: one cfn-lint run takes many regions."""
    regions = [region for region, found in _verdicts().items() if all(gap.kind for gap in found)]
    by_body: dict[str, tuple[dict, list[str]]] = {}
    for region in regions:
        for template in render(_sample_in(region)).templates.values():
            by_body.setdefault(json.dumps(template, sort_keys=True), (template, []))[1].append(region)
    return regions, [line for template, among in by_body.values() for line in cfn_lint_findings(template, among)]


@pytest.mark.heavy
def test_cfn_lint_finds_nothing_in_any_accepted_region():
    """`cfn-lint --regions <each accepted region>` on the sample's templates built for that region
    reports nothing: every finding is a resource type missing in a refused region."""
    accepted = _accepted()
    assert "us-east-1" in accepted  # the sample's own region
    linted, findings = _linted()
    assert set(accepted) <= set(linted)
    refused_type = re.compile(r"Resource type '[A-Za-z0-9:]+' does not exist in '([a-z0-9-]+)'")
    for line in findings:
        match = refused_type.search(line)
        assert match and match.group(1) not in accepted, line


@pytest.mark.heavy
def test_cfn_lint_reports_each_missing_type_of_every_refused_region():
    """The other way round: where the check refuses the sample for a missing type, cfn-lint (for
    that region) reports the same type missing; so no refusal is the check's own invention."""
    linted, findings = _linted()
    refused = {region: found for region, found in _verdicts().items() if found and region in linted}
    assert {"af-south-1", "ca-west-1", "me-central-1"} <= set(refused)
    text = "\n".join(findings)
    for region, found in refused.items():
        for gap in found:
            assert f"Resource type '{gap.kind}' does not exist in '{region}'" in text


def test_a_region_without_data_is_refused_not_waved_through():
    """cfn-lint lints a region it has no schema for as us-east-1 (me-south-1 today), so its silence
    proves nothing there: such a region is refused, saying why."""
    templates = render(_sample_in("us-east-1")).templates
    assert gaps(templates, dict.fromkeys(templates, "xx-nowhere-1")) == [Gap("xx-nowhere-1", None)]
    assert (
        Gap("xx-nowhere-1", None)
        .line()
        .startswith(
            "region: xx-nowhere-1: the resource types CloudFormation offers there are not known (cfn-lint ships no schema"
        )
    )


@pytest.mark.heavy
def test_every_region_cfn_lint_does_not_lint_is_refused_as_unknown():
    # The sample's framework's regions (all_regions() also holds those only other frameworks publish in).
    unlinted = set(_verdicts()) - set(_linted()[0])
    assert unlinted <= set(all_regions())
    for region in unlinted:
        assert _verdicts()[region] == [Gap(region, None)]


# ----- what synth says -------------------------------------------------------------------------


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipeline", *args], cwd=REPO, capture_output=True, text=True)


def test_synth_refuses_a_region_one_line_per_missing_type(tmp_path):
    config = tmp_path / "pipeline.yml"
    config.write_text(yaml.safe_dump({**SAMPLE, "region": "me-central-1"}))
    result = _cli("synth", "--config", str(config), "--root", str(REPO), "--out", str(tmp_path / "out"))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    prefix = f"{config}: region: me-central-1 has no "
    assert lines[0] == (
        f"{prefix}{CONNECTION_TYPE} (used by pipeline.json/GitHubConnection, pipeline.json/Pipeline/Source/GitHub); "
        "an existing connection_arn does not help: CodePipeline offers no GitHub source action "
        "(CodeStarSourceConnection) where connections are missing, so choose another region "
        "(make regions lists the accepted ones)"
    )
    for kind, logical_id in (
        ("AWS::SageMaker::Model", "Model"),
        ("AWS::SageMaker::EndpointConfig", "EndpointConfig"),
        ("AWS::SageMaker::Endpoint", "Endpoint"),
    ):
        assert (
            f"{prefix}{kind} (used by endpoint-qa.json/{logical_id}, endpoint-prod.json/{logical_id}); "
            "choose another region (make regions lists the accepted ones)"
        ) in lines
    assert len(lines) == 4
    assert not (tmp_path / "out").exists(), "nothing is written for a refused region"


def test_deploy_refuses_a_region_before_any_aws_call(tmp_path, stub_aws, monkeypatch, capsys):
    config = tmp_path / "pipeline.yml"
    config.write_text(yaml.safe_dump({**SAMPLE, "region": "ca-west-1"}))
    (tmp_path / "model").symlink_to(REPO / "model")  # the folders the config names, next to it
    no_aws = stub_aws().session  # asking it for any client fails the test
    monkeypatch.setattr("pipeline.aws.session_for", lambda profile, region: no_aws)
    assert cli_main(["deploy", "--config", str(config), "--yes"]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert [line.split(" has no ")[1].split(" ")[0] for line in lines] == [
        CONNECTION_TYPE,
        "AWS::CodeBuild::Project",
        "AWS::CodeBuild::ReportGroup",
    ]
    assert all(line.startswith(f"{config}: region: ca-west-1 has no ") for line in lines)
    assert no_aws.asked == []


def test_an_existing_connection_does_not_make_a_region_without_connections_work():
    """With connection_arn the template holds no connection, but its source action still needs
    the service in the pipeline's region (README, "Regions")."""
    config = _sample_in("af-south-1", connection_arn=CONNECTION_ARN)
    assert "GitHubConnection" not in render(config).templates["pipeline.json"]["Resources"]
    with pytest.raises(RegionError) as refused:
        synthesize(config)
    (line,) = refused.value.problems
    assert line.startswith(
        f"region: af-south-1 has no {CONNECTION_TYPE} (used by pipeline.json/Pipeline/Source/GitHub); "
    )


def test_an_existing_connection_still_synthesizes_where_connections_exist():
    assert synthesize(_sample_in("eu-west-1", connection_arn=CONNECTION_ARN)).templates


def test_a_new_resource_type_is_checked_without_a_change_to_the_check():
    templates = copy.deepcopy(render(_sample_in("us-east-1")).templates)
    templates["endpoint-qa.json"]["Resources"]["Alarm"] = {"Type": "AWS::Made::Up", "Properties": {}}
    regions = dict.fromkeys(templates, "us-east-1")
    assert gaps(templates, regions) == [Gap("us-east-1", "AWS::Made::Up", ("endpoint-qa.json/Alarm",))]


def test_each_template_is_checked_for_the_region_it_deploys_to():
    """An endpoint stack elsewhere than the pipeline is checked for its own region only."""
    templates = render(_sample_in("us-east-1")).templates
    regions = {**dict.fromkeys(templates, "us-east-1"), "endpoint-prod.json": "me-central-1"}
    found = gaps(templates, regions)
    assert {gap.region for gap in found} == {"me-central-1"}
    assert {user for gap in found for user in gap.users} == {
        "endpoint-prod.json/Model",
        "endpoint-prod.json/EndpointConfig",
        "endpoint-prod.json/Endpoint",
    }


# ----- make regions, make lint and the README -------------------------------------------------


def test_make_regions_lists_the_accepted_regions_and_the_reasons(capsys):
    assert main(["--config", str(REPO / "pipeline.yml")]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].endswith(f"accepted in {len(_accepted())} regions: {', '.join(_accepted())}")
    assert (
        "  ca-west-1: no AWS::CodeStarConnections::Connection, AWS::CodeBuild::Project, AWS::CodeBuild::ReportGroup"
        in out
    )
    assert "  me-south-1: no resource schema known (cfn-lint ships none)" in out


def test_the_readme_lists_the_accepted_regions():
    readme = (REPO / "README.md").read_text()
    match = re.search(r"accepted in \d+ regions: ([a-z0-9, -]+)", readme)
    assert match, "README: the output of make regions"
    assert match.group(1).strip().split(", ") == _accepted()


def test_make_lint_lints_each_template_for_the_configs_region(tmp_path, capsys):
    """The scan takes each template's region from the config: a connection, fine in us-east-1, is
    reported in the pipeline template of an af-south-1 config."""
    config = tmp_path / "pipeline.yml"
    config.write_text(yaml.safe_dump({**SAMPLE, "region": "af-south-1"}))
    (tmp_path / "model").symlink_to(REPO / "model")  # the folders the config names, next to it
    template = {
        "Resources": {
            "Connection": {"Type": CONNECTION_TYPE, "Properties": {"ConnectionName": "c", "ProviderType": "GitHub"}}
        }
    }
    assert cfn_lint_findings(template, ["us-east-1"]) == []
    (tmp_path / "pipeline.json").write_text(json.dumps(template))
    (tmp_path / "stray.json").write_text("{}")
    assert scan_main(["--config", str(config), str(tmp_path / "pipeline.json"), str(tmp_path / "stray.json")]) == 1
    out = capsys.readouterr().out.splitlines()
    assert any(f"Resource type '{CONNECTION_TYPE}' does not exist in 'af-south-1'" in line for line in out)
    assert (
        f"{tmp_path / 'stray.json'}: not a template of {config}, so its region is unknown: synthesize it again" in out
    )
    assert out[-1].startswith("scanned 2 templates with cfn-lint (for af-south-1) and cfripper: ")
