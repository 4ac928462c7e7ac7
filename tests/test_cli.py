"""pipeline/cli.py: usage errors, the yes/no question, and what a synth imports (make bench)."""

from __future__ import annotations

import inspect
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
            "(choose from 'synth', 'schema', 'deploy', 'promote', 'rollback', 'destroy', 'status', 'cost')",
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


UNNEEDED = (
    "boto3",
    "botocore",
    "click",
    "pipeline.deploy",
    "pipeline.status",
    "pipeline.stacks.branch",
    "importlib.metadata",
    "importlib.resources",
)


def test_synth_loads_only_what_it_needs(tmp_path) -> None:
    """make bench times `python -m pipeline synth` in a fresh process: the AWS SDK, the AWS
    commands, the branch pipeline's stack and importlib.metadata and importlib.resources (pydantic's plugin loader
    imports; pipeline/__main__.py stands in for it) stay unloaded: each costs milliseconds of a
    0.3 s budget."""
    probe = (
        "import gc, runpy, sys\n"
        f"sys.argv = ['pipeline', 'synth', '--config', 'pipeline.yml', '--out', {str(tmp_path)!r}]\n"
        "try:\n"
        "    runpy.run_module('pipeline', run_name='__main__', alter_sys=True)\n"
        "except SystemExit as exc:\n"
        f"    print(exc.code, sorted(m for m in {UNNEEDED!r} if m in sys.modules), gc.isenabled())\n"
    )
    ran = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, check=True)
    # The garbage collector, off while the CLI is imported (pipeline/__main__.py), is on again.
    assert ran.stdout.splitlines()[-1] == "0 [] True"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["endpoint-prod.json", "endpoint-qa.json", "pipeline.json"]


def test_the_plugin_loader_stand_in_answers_as_pydantics(monkeypatch) -> None:
    """pipeline/__main__.py replaces pydantic.plugin._loader when plugins are disabled. That holds
    while pydantic asks the loader only for get_plugins() and the real one answers () then."""
    import pydantic
    from pydantic.plugin import _loader, _schema_validator

    users = [
        path.name
        for path in Path(pydantic.__file__).parent.rglob("*.py")
        if "_loader" in path.read_text() and path.name != "_loader.py"
    ]
    assert users == ["_schema_validator.py"]
    assert "from ._loader import get_plugins\n" in inspect.getsource(_schema_validator.create_schema_validator)
    monkeypatch.setenv("PYDANTIC_DISABLE_PLUGINS", "__all__")
    assert tuple(_loader.get_plugins()) == ()


def test_the_config_models_build_without_tokenizing() -> None:
    """pydantic reads each default_factory's signature; a builtin's (list, dict) is parsed from its
    text with tokenize, whose regex takes ~12 ms to compile: the config's factories are functions."""
    probe = (
        "import sys\n"
        "import pipeline.config\n"
        "tokenize = sys.modules.get('tokenize')\n"
        "print(tokenize._compile.cache_info().currsize if tokenize else 0)\n"
    )
    ran = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, check=True)
    assert ran.stdout.strip() == "0"
