"""JUnit XML for CodeBuild test reports: one testsuite per check, one testcase per thing checked.

CodeBuild's JUNITXML reports read `testsuite`/`testcase` and a testcase's `failure`; the Lint
action's checks (cfn-nag, cfn-lint, cfripper) write theirs through here so a reviewer sees each
template's findings in the console.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

# Characters XML 1.0 cannot hold (ElementTree writes them anyway, and the report no longer parses).
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def xml_text(text: str) -> str:
    """`text` with the characters an XML report cannot hold made U+FFFD."""
    return _NOT_XML.sub("\ufffd", text)


@dataclass(frozen=True)
class Case:
    """One testcase: fails if it has failures (one line each); `output` is shown beside it."""

    name: str
    failures: tuple[str, ...] = ()
    output: str = ""


def junit_xml(suites: Mapping[str, Sequence[Case]]) -> ET.ElementTree:
    """A JUnit report: a testsuite per key, its cases in order; a failing case lists all its failures."""
    root = ET.Element("testsuites")
    for suite_name, cases in suites.items():
        suite = ET.SubElement(
            root,
            "testsuite",
            name=suite_name,
            tests=str(len(cases)),
            failures=str(sum(1 for c in cases if c.failures)),
            errors="0",
        )
        for case in cases:
            element = ET.SubElement(suite, "testcase", classname=suite_name, name=xml_text(case.name))
            if case.failures:
                count = len(case.failures)
                failure = ET.SubElement(
                    element,
                    "failure",
                    message=xml_text(f"{count} finding{'s' if count != 1 else ''}: {case.failures[0]}"),
                )
                failure.text = xml_text("\n".join(case.failures))
            if case.output:
                ET.SubElement(element, "system-out").text = xml_text(case.output)
    ET.indent(root)
    return ET.ElementTree(root)


def write_junit(path: str | Path, suites: Mapping[str, Sequence[Case]]) -> None:
    """Write the report, making its folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    junit_xml(suites).write(path, encoding="utf-8", xml_declaration=True)
