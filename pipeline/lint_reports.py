"""The Lint action's cfn-nag report (offline, no AWS call): cfn-nag's JSON results as JUnit, one testcase per template.

cfn-nag writes txt, json (and in newer releases sarif, colortxt), not JUnit, so the Lint action
(`make ci-lint`) runs `cfn_nag_scan --output-format json` and then

    python -m pipeline.lint_reports CFN_NAG.json --junit build/reports/cfn-nag.xml --exports build/lint-exports.env

A template's testcase fails with every FAIL violation listed (`FATAL` ones too: a template cfn-nag
could not parse); WARN violations are shown beside it and do not fail it, as in cfn-nag's own exit
code. It prints one line per violation and exits 1 if any template fails (cfn-nag's own exit code is
its failure count, which a shell sees modulo 256), 2 if the results cannot be read. The exports file
carries LINT_BUILD_ID, which the approval message's link to these reports is built around.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pipeline.aws import codebuild_build_id
from pipeline.junit import Case, write_junit

SUITE = "cfn-nag"


def violation_line(violation: dict[str, Any]) -> str:
    """`F3 FAIL [Role, Other] lines 12, 30: message` from one cfn-nag violation (its `to_h`)."""
    ids = violation.get("logical_resource_ids") or []
    lines = violation.get("line_numbers") or []
    where = f" [{', '.join(map(str, ids))}]" if ids else ""
    at = f" line{'s' if len(lines) > 1 else ''} {', '.join(map(str, lines))}" if lines else ""
    return f"{violation.get('id', '?')} {violation.get('type', '?')}{where}{at}: {violation.get('message', '')}"


def cfn_nag_cases(results: Sequence[dict[str, Any]]) -> list[Case]:
    """One testcase per template of cfn-nag's JSON results (`[{filename, file_results: {failure_count,
    violations}}]`): its FAIL violations are its failures, its warnings its output."""
    cases = []
    for result in results:
        violations = result["file_results"]["violations"]
        failures = tuple(violation_line(v) for v in violations if v.get("type") == "FAIL")
        warnings = [violation_line(v) for v in violations if v.get("type") != "FAIL"]
        cases.append(Case(name=Path(result["filename"]).name, failures=failures, output="\n".join(warnings)))
    return cases


def read_results(path: Path) -> list[dict[str, Any]]:
    """cfn-nag's JSON results; a ValueError with one line saying what is wrong with them."""
    try:
        results = json.loads(path.read_text())
    except OSError as exc:
        raise ValueError(f"{path}: cannot read cfn-nag's results: {exc.strerror}") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not cfn-nag's JSON results: {exc.msg} at line {exc.lineno}") from None
    shape_ok = isinstance(results, list) and all(
        isinstance(r, dict)
        and isinstance(r.get("filename"), str)
        and isinstance(r.get("file_results"), dict)
        and isinstance(r["file_results"].get("violations"), list)
        for r in results
    )
    if not shape_ok:
        raise ValueError(f"{path}: not cfn-nag's JSON results: expected a list of {{filename, file_results}}")
    if not results:
        raise ValueError(f"{path}: cfn-nag found no templates to scan")
    return results


def main(argv: list[str] | None = None) -> int:
    """Write cfn-nag's results as a JUnit report; exit 1 if a template fails, 2 on unreadable results."""
    parser = argparse.ArgumentParser(prog="python -m pipeline.lint_reports", description=main.__doc__)
    parser.add_argument("results", type=Path, metavar="CFN_NAG.json", help="cfn_nag_scan --output-format json")
    parser.add_argument("--junit", type=Path, default=Path("build/reports/cfn-nag.xml"), help="the JUnit report")
    parser.add_argument(
        "--exports", type=Path, default=Path("build/lint-exports.env"), help="LINT_BUILD_ID for the buildspec"
    )
    args = parser.parse_args(argv)
    args.exports.parent.mkdir(parents=True, exist_ok=True)
    lint_build_id = codebuild_build_id(os.environ.get("CODEBUILD_BUILD_ARN"))
    args.exports.write_text(f"export LINT_BUILD_ID={shlex.quote(lint_build_id)}\n")
    try:
        cases = cfn_nag_cases(read_results(args.results))
    except ValueError as exc:
        write_junit(args.junit, {SUITE: [Case(name=args.results.name, failures=(str(exc),))]})
        print(f"cfn-nag: FAILED: {exc}", file=sys.stderr)
        return 2
    write_junit(args.junit, {SUITE: cases})
    for case in cases:
        for line in (*case.failures, *case.output.splitlines()):
            print(f"{case.name}: {line}")
    failed = [case.name for case in cases if case.failures]
    print(f"cfn-nag: {len(cases)} templates, {len(failed)} failing{': ' + ', '.join(failed) if failed else ''}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
