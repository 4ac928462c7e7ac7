"""The Lint action's reports: cfn-nag's JSON results as JUnit (pipeline/lint_reports.py), and
pipeline.scan's cfn-lint/cfripper JUnit. The cfn-nag results have the shape cfn-nag writes
(`cfn_nag_scan --output-format json`: `JsonResults#render` of `audit_aggregate_across_files`, each
violation's `Violation#to_h`, stelligent/cfn_nag lib/cfn-nag/{cfn_nag,violation}.rb)."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from pipeline import lint_reports, scan
from pipeline.junit import Case, junit_xml

# cfn-nag 0.8.x: violations carry id, name, type, message, logical_resource_ids, line_numbers, element_types.
RESULTS = [
    {
        "filename": "build/templates/endpoint-qa.json",
        "file_results": {
            "failure_count": 0,
            "violations": [
                {
                    "id": "W11",
                    "name": "IamRoleWildcardResourceOnPermissionsPolicy",
                    "type": "WARN",
                    "message": "IAM role should not allow * resource on its permissions policy",
                    "logical_resource_ids": ["SageMakerRole"],
                    "line_numbers": [42],
                    "element_types": ["role"],
                }
            ],
        },
    },
    {
        "filename": "build/templates/pipeline.json",
        "file_results": {
            "failure_count": 3,
            "violations": [
                {
                    "id": "F3",
                    "name": "IamRolePolicyWildcardActionRule",
                    "type": "FAIL",
                    "message": "IAM role should not allow * action on its permissions policy",
                    "logical_resource_ids": ["LintRole", "TrainRole"],
                    "line_numbers": [120, 340],
                    "element_types": ["role", "role"],
                },
                {
                    "id": "F1000",
                    "name": "SecurityGroupMissingEgressRule",
                    "type": "FAIL",
                    "message": "Missing egress rule means all traffic is allowed outbound.",
                    "logical_resource_ids": ["Group"],
                    "line_numbers": [7],
                    "element_types": ["security_group"],
                },
            ],
        },
    },
    {"filename": "build/templates/endpoint-prod.json", "file_results": {"failure_count": 0, "violations": []}},
]

# Older releases: no name, line numbers or element types; a template cfn-nag cannot parse is a FATAL
# violation with no resource ids (nil -> null).
FATAL = [
    {
        "filename": "build/templates/broken.json",
        "file_results": {
            "failure_count": 1,
            "violations": [
                {"id": "FATAL", "type": "FAIL", "message": "unexpected token", "logical_resource_ids": None}
            ],
        },
    }
]


def cases_of(path: Path) -> dict[str, ET.Element]:
    return {case.get("name"): case for case in ET.parse(path).getroot().iter("testcase")}


def run(tmp_path: Path, results, monkeypatch=None) -> tuple[int, dict[str, ET.Element]]:
    source = tmp_path / "cfn-nag.json"
    source.write_text(results if isinstance(results, str) else json.dumps(results))
    code = lint_reports.main(
        [str(source), "--junit", str(tmp_path / "cfn-nag.xml"), "--exports", str(tmp_path / "exports.env")]
    )
    return code, cases_of(tmp_path / "cfn-nag.xml")


def test_each_template_is_a_case_failing_with_every_fail_violation(tmp_path, capsys):
    code, cases = run(tmp_path, RESULTS)
    assert code == 1
    assert list(cases) == ["endpoint-qa.json", "pipeline.json", "endpoint-prod.json"]
    (failure,) = cases["pipeline.json"].findall("failure")
    assert failure.text.splitlines() == [
        "F3 FAIL [LintRole, TrainRole] lines 120, 340: IAM role should not allow * action on its permissions policy",
        "F1000 FAIL [Group] line 7: Missing egress rule means all traffic is allowed outbound.",
    ]
    assert failure.get("message").startswith("2 findings: F3 FAIL")
    assert "cfn-nag: 3 templates, 1 failing: pipeline.json" in capsys.readouterr().out


def test_warnings_are_shown_beside_a_passing_case(tmp_path):
    code, cases = run(tmp_path, [RESULTS[0], RESULTS[2]])
    assert code == 0
    assert cases["endpoint-qa.json"].find("failure") is None
    assert cases["endpoint-qa.json"].find("system-out").text == (
        "W11 WARN [SageMakerRole] line 42: IAM role should not allow * resource on its permissions policy"
    )
    assert cases["endpoint-prod.json"].find("failure") is None


def test_a_template_cfn_nag_could_not_parse_fails_its_case(tmp_path):
    code, cases = run(tmp_path, FATAL)
    assert code == 1
    assert cases["broken.json"].find("failure").text == "FATAL FAIL: unexpected token"


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("", "not cfn-nag's JSON results: Expecting value at line 1"),
        ('{"filename": "x"}', "expected a list of {filename, file_results}"),
        ("[]", "cfn-nag found no templates to scan"),
    ],
)
def test_unreadable_results_fail_in_one_line_and_in_the_report(tmp_path, capsys, text, why):
    code, cases = run(tmp_path, text)
    assert code == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("cfn-nag: FAILED: ") and line.endswith(why)
    assert why in cases["cfn-nag.json"].find("failure").text


def test_exports_the_build_id_the_approval_links_to(tmp_path, monkeypatch):
    monkeypatch.setenv("CODEBUILD_BUILD_ARN", "arn:aws:codebuild:eu-west-1:123456789012:build/p-lint:u-1")
    run(tmp_path, RESULTS)
    assert (tmp_path / "exports.env").read_text() == "export LINT_BUILD_ID=p-lint%3Au-1\n"


def test_a_report_holds_only_characters_xml_can(tmp_path):
    tree = junit_xml({"s": [Case("t\x00", failures=("bad \x1b byte",))]})
    tree.write(tmp_path / "r.xml", encoding="utf-8", xml_declaration=True)
    (case,) = ET.parse(tmp_path / "r.xml").getroot().iter("testcase")
    assert case.get("name") == "t\ufffd"
    assert case.find("failure").text == "bad \ufffd byte"


def test_scan_reports_a_suite_per_tool_and_a_case_per_template(tmp_path, monkeypatch, capsys):
    findings = {"pipeline.json": {"cfn-lint": ["cfn-lint E3012 line 3: wrong type"], "cfripper": []}}
    monkeypatch.setattr(
        scan, "scan_by_tool", lambda path, region: findings.get(path.name, {"cfn-lint": [], "cfripper": []})
    )
    templates = [tmp_path / name for name in ("pipeline.json", "endpoint-qa.json", "stray.json")]
    report = tmp_path / "reports" / "scan.xml"
    code = scan.main(["--config", "pipeline.yml", "--junit", str(report), *map(str, templates)])
    assert code == 1
    suites = {s.get("name"): s for s in ET.parse(report).getroot().iter("testsuite")}
    assert set(suites) == {"cfn-lint", "cfripper"}
    lint = {c.get("name"): c for c in suites["cfn-lint"].iter("testcase")}
    assert lint["pipeline.json"].find("failure").text == "cfn-lint E3012 line 3: wrong type"
    assert lint["endpoint-qa.json"].find("failure") is None
    assert "region is unknown" in lint["stray.json"].find("failure").text
    assert [c.get("name") for c in suites["cfripper"].iter("testcase")] == ["pipeline.json", "endpoint-qa.json"]
    assert "pipeline.json: cfn-lint E3012 line 3: wrong type" in capsys.readouterr().out
