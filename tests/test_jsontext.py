"""pipeline/jsontext.py: the templates' text is exactly json.dumps(indent=1, sort_keys=True)'s."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline import jsontext

GOLDEN = Path(__file__).resolve().parent / "golden"


def _standard(value: object) -> str:
    return json.dumps(value, indent=1, sort_keys=True)


@pytest.mark.parametrize("name", sorted(p.name for p in GOLDEN.glob("*.json")))
def test_a_golden_template_is_written_as_json_dumps_writes_it_without_falling_back(name) -> None:
    body = json.loads((GOLDEN / name).read_text())
    parts: list[str] = []
    jsontext._value(body, parts, "\n")  # raises _NotPlain if the template needed the fallback
    assert "".join(parts) == _standard(body)


@pytest.mark.parametrize(
    "value",
    [
        {},
        [],
        "",
        0,
        -7,
        10**30,
        True,
        None,
        1.5,
        -0.0,
        1e300,
        ("a", 1),
        {"b": {}, "a": [[], [{}], {"z": None, "Z": False}]},
        {'quote"back\\slash': "é \u2028 \ud800 \x00 tab\t"},
        float("nan"),
        [float("inf"), float("-inf")],
        {2: "int keys", 1: "sorted as numbers"},
    ],
    ids=repr,
)
def test_any_value_comes_out_as_json_dumps_writes_it(value) -> None:
    assert jsontext.dumps(value) == _standard(value)


def test_what_json_cannot_write_fails_as_with_json_dumps() -> None:
    for value in ({"a": object()}, {1: 1, "a": 2}, {None: 1, True: 2}):
        with pytest.raises(TypeError) as standard:
            _standard(value)
        with pytest.raises(TypeError) as ours:
            jsontext.dumps(value)
        assert str(ours.value) == str(standard.value)
