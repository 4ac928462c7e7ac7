"""Endpoint-test payload files: read and check one, or a folder of them; no AWS call.

Each case is one JSON file in `endpoint_tests.payloads_dir`:

    {"description": "...", "content_type": "text/csv", "accept": "application/json",
     "body": "5.1,3.5,1.4,0.2", "expected": {"predictions": ["setosa"]}}

A binary body (an image for image classification) goes in `body_base64` instead of `body`;
`tolerance` (default 0) lets each number in the answer differ from `expected` by that much.
The config check (`make synth`) reports every bad file, one line each; the endpoint test
(`scripts/endpoint_test.py`) reads the same files with the same rules before it sends them.
The limits are InvokeEndpoint's (botocore's sagemaker-runtime model: `BodyBlob`, `Header`).
"""

from __future__ import annotations

import dataclasses
import json
import stat
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REQUIRED_KEYS = ("content_type", "body", "expected")
OPTIONAL_KEYS = {"description": "", "accept": "application/json", "tolerance": 0}
# A binary body (an image for image classification) instead of `body`: base64 in the JSON file.
BINARY_BODY_KEY = "body_base64"
# InvokeEndpoint: the request body (BodyBlob) is at most 6 MiB; ContentType and Accept (Header)
# are ASCII, at most 1024 characters.
MAX_BODY_BYTES = 6 * 1024 * 1024
MAX_HEADER_CHARS = 1024
# A payload file holds its body JSON-escaped, which can double its size.
MAX_FILE_BYTES = 2 * MAX_BODY_BYTES + 64 * 1024


@dataclass(frozen=True)
class Case:
    """One payload file: what to send and what must come back."""

    name: str
    description: str
    content_type: str
    accept: str
    body: str
    expected: Any
    binary: bytes | None = None  # from body_base64; `body` then only says how many bytes
    # How far each number in the response may be from the expected one (a score, a probability).
    tolerance: float = 0.0

    @property
    def payload(self) -> bytes:
        """The request body as sent: the binary body, or `body` as UTF-8."""
        return self.binary if self.binary is not None else self.body.encode("utf-8")


class PayloadError(ValueError):
    """A payload file that cannot be sent; the message names the file and what is wrong."""


class _NotPlainJson(ValueError):
    """JSON that Python reads but that is ambiguous or not JSON at all."""


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object that names a key once only (json keeps the last one silently)."""
    found: dict[str, Any] = {}
    for key, value in pairs:
        if key in found:
            raise _NotPlainJson(f"key '{key}' appears twice in one object")
        found[key] = value
    return found


def _not_json_constant(name: str) -> Any:
    raise _NotPlainJson(f"{name} is not a JSON value (Python writes it, JSON does not allow it)")


def _unsendable(text: str) -> str | None:
    """Why a string cannot be sent as UTF-8 (a lone surrogate, e.g. from a "\\ud800" escape), or None."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return f"has an unpaired surrogate (U+{ord(text[exc.start]):04X}) that UTF-8 cannot encode"
    return None


def parse_case(data: bytes, name: str) -> Case:
    """Check the bytes of one payload file; PayloadError("{name}: ...") says what is wrong."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise PayloadError(f"{name}: is not UTF-8 text (byte {exc.start} is 0x{data[exc.start]:02x})") from None
    try:
        value = json.loads(text, object_pairs_hook=_object, parse_constant=_not_json_constant)
    except json.JSONDecodeError as exc:
        raise PayloadError(f"{name}: not valid JSON (line {exc.lineno}: {exc.msg})") from None
    except _NotPlainJson as exc:
        raise PayloadError(f"{name}: {exc}") from None
    except RecursionError:
        raise PayloadError(f"{name}: nests too deeply to read") from None
    except ValueError as exc:  # e.g. an integer of more digits than Python converts
        raise PayloadError(f"{name}: not valid JSON ({str(exc).split(';')[0]})") from None
    return _case(value, name)


def _case(data: Any, name: str) -> Case:
    if not isinstance(data, dict):
        raise PayloadError(f"{name}: expected a JSON object with keys {', '.join(REQUIRED_KEYS)}")
    binary = None
    if BINARY_BODY_KEY in data:
        if "body" in data:
            raise PayloadError(f"{name}: give body or {BINARY_BODY_KEY}, not both")
        binary = _binary_body(data.pop(BINARY_BODY_KEY), name)
        data = {**data, "body": f"({len(binary):,} bytes)"}
    missing = [key for key in REQUIRED_KEYS if key not in data]
    if missing:
        raise PayloadError(f"{name}: missing key(s) {', '.join(missing)}")
    unknown = sorted(set(data) - set(REQUIRED_KEYS) - set(OPTIONAL_KEYS))
    if unknown:
        known = ", ".join([*REQUIRED_KEYS, BINARY_BODY_KEY, *OPTIONAL_KEYS])
        raise PayloadError(f"{name}: unknown key(s) {', '.join(unknown)} (known: {known})")
    values = {**OPTIONAL_KEYS, **data}
    for key in ("content_type", "accept", "body", "description"):
        if not isinstance(values[key], str):
            raise PayloadError(
                f"{name}: {key} must be a string, got {type(values[key]).__name__}"
                + (" (put the exact request body in a string, JSON bodies too)" if key == "body" else "")
            )
    for key in ("content_type", "accept"):
        header = values[key]
        if not header.strip():
            raise PayloadError(f"{name}: {key} is empty")
        if not header.isascii() or not header.isprintable() or len(header) > MAX_HEADER_CHARS:
            raise PayloadError(
                f"{name}: {key} must be printable ASCII of at most {MAX_HEADER_CHARS} characters (an HTTP header)"
            )
    tolerance = values["tolerance"]
    if isinstance(tolerance, bool) or not isinstance(tolerance, (int, float)) or not 0 <= tolerance < float("inf"):
        raise PayloadError(f"{name}: tolerance must be a number >= 0 (how far a number in the answer may be off)")
    body = values["body"]
    if not body:
        raise PayloadError(f"{name}: body is empty; the endpoint needs something to answer")
    for key in ("body", "description"):
        reason = _unsendable(values[key])
        if reason:
            raise PayloadError(f"{name}: {key} {reason}")
    size = len(binary) if binary is not None else len(body.encode("utf-8"))
    if size > MAX_BODY_BYTES:
        raise PayloadError(f"{name}: body is {size:,} bytes, over InvokeEndpoint's {MAX_BODY_BYTES:,}")
    bad = next((c for c in values["description"] if unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp")), None)
    if bad is not None:
        # The description lands in the JUnit report, which XML 1.0 cannot hold control characters in.
        raise PayloadError(f"{name}: description has a control character (U+{ord(bad):04X}); keep it one plain line")
    return Case(
        name=name,
        description=values["description"],
        content_type=values["content_type"],
        accept=values["accept"],
        body=body,
        expected=values["expected"],
        binary=binary,
        tolerance=float(tolerance),
    )


def _binary_body(value: Any, name: str) -> bytes:
    """The bytes of a body_base64 value; PayloadError when it is not base64 text or is empty."""
    import base64
    import binascii

    if not isinstance(value, str):
        raise PayloadError(f"{name}: {BINARY_BODY_KEY} must be a string of base64, got {type(value).__name__}")
    try:
        decoded = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise PayloadError(f"{name}: {BINARY_BODY_KEY} is not base64 (A-Z a-z 0-9 + /, = padding)") from None
    if not decoded:
        raise PayloadError(f"{name}: {BINARY_BODY_KEY} is empty; the endpoint needs something to answer")
    return decoded


def read_case(path: Path, shown: str | None = None) -> Case:
    """Read and check one payload file; the error names it as `shown` (default: the path)."""
    name = shown if shown is not None else str(path)
    try:
        info = path.stat()
        if not stat.S_ISREG(info.st_mode):
            raise PayloadError(f"{name}: is not a file")
        if info.st_size > MAX_FILE_BYTES:
            raise PayloadError(f"{name}: is {info.st_size:,} bytes; a case's body may be at most {MAX_BODY_BYTES:,}")
        with path.open("rb") as handle:
            data = handle.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise PayloadError(f"{name}: cannot read ({exc.strerror or exc})") from None
    return dataclasses.replace(parse_case(data, name), name=path.name)


def case_files(folder: Path) -> list[Path]:
    """The *.json files of the folder, in name order."""
    return sorted(folder.glob("*.json"))


def load_cases(folder: Path) -> list[Case]:
    """Every *.json case in the folder, in file-name order; PayloadError at the first bad one."""
    if not folder.is_dir():
        raise PayloadError(f"payloads folder '{folder}' does not exist")
    paths = case_files(folder)
    if not paths:
        raise PayloadError(f"no *.json test cases in '{folder}'")
    return [read_case(path) for path in paths]


def folder_problems(folder: Path, shown: str) -> list[str]:
    """One line per bad payload file in the folder (each named `shown/<file>`); [] when all are good."""
    problems = []
    for path in case_files(folder):
        try:
            read_case(path, f"{shown.rstrip('/')}/{path.name}")
        except PayloadError as exc:
            problems.append(str(exc))
    return problems
