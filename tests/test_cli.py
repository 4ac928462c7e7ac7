"""pipeline/cli.py: usage errors, the yes/no question, and what a synth imports (make bench)."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline import cli

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize(
    ("argv", "error"),
    [
        ([], "the following arguments are required: COMMAND"),
        (
            ["bogus"],
            "argument COMMAND: invalid choice: 'bogus' "
            "(choose from 'synth', 'schema', 'deploy', 'destroy', 'status', 'cost')",
        ),
        (["cost", "--runs-per-month", "-1"], "argument --runs-per-month: -1 is not in the range x>=0"),
        (["cost", "--action-minutes-per-run", "0"], "argument --action-minutes-per-run: 0 is not in the range x>=1"),
        (["cost", "--runs-per-month", "many"], "argument --runs-per-month: 'many' is not a valid integer"),
        (["synth", "--bogus"], "unrecognized arguments: --bogus"),
    ],
)
def test_a_usage_error_exits_2_naming_what_is_wrong(argv, error, capsys) -> None:
    assert cli.main(argv) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.splitlines()[-1].endswith(f": error: {error}")


@pytest.mark.parametrize(
    ("typed", "answer"), [("y\n", True), ("YES\n", True), ("\n", False), ("n\n", False), ("maybe\nyes\n", True)]
)
def test_confirm_says_yes_only_to_yes(typed, answer, monkeypatch) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO(typed))
    assert cli.confirm("Deploy?") is answer


def test_confirm_stops_at_the_end_of_input(monkeypatch, capsys) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    with pytest.raises(SystemExit) as stopped:
        cli.confirm("Deploy?")
    assert stopped.value.code == 1
    assert capsys.readouterr().err.strip() == "Aborted!"


def test_synth_loads_only_what_it_needs(tmp_path) -> None:
    """make bench times a synth in a fresh process: the AWS SDK, the AWS commands and the branch
    pipeline's stack stay unloaded (each costs tens of milliseconds of a 0.3 s budget)."""
    probe = (
        "import sys; from pipeline.cli import main; "
        f"code = main(['synth', '--config', 'pipeline.yml', '--out', {str(tmp_path)!r}]); "
        "print(code, sorted(m for m in ('boto3', 'botocore', 'click', 'pipeline.deploy', 'pipeline.status', "
        "'pipeline.stacks.branch') if m in sys.modules))"
    )
    ran = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, check=True)
    assert ran.stdout.splitlines()[-1] == "0 []"
