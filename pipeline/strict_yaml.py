"""Read the bytes of a YAML file into plain data, refusing what YAML would silently get wrong.

PyYAML's SafeLoader, narrowed so that a config cannot be tricked:

- the bytes must be UTF-8 (a UTF-8 byte-order mark is allowed), at most `MAX_BYTES` of them;
- a key set twice in one mapping is refused, at any depth, naming both lines (PyYAML keeps
  the last one silently);
- nesting is capped at `MAX_DEPTH` levels and the document, aliases expanded, at `MAX_VALUES`
  values (a "billion laughs" document is refused before anything walks it); an alias that
  contains itself is refused;
- scalars resolve the way YAML 1.2 reads them where YAML versions agree, and are refused where
  they disagree: `yes`/`no`/`on`/`off` (booleans in YAML 1.1, text in YAML 1.2), numbers with a
  leading zero (octal in YAML 1.1) and base-60 numbers (`1:30` is 90 in YAML 1.1); only
  `true`/`false` are booleans. `1e-3` is a number (YAML 1.1 would make it text); dates stay
  text as written.

Every problem comes back as `(path, message)`, the path being the keys and list indexes that
lead to it (empty for the document as a whole). Nothing here knows what a pipeline config holds.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import yaml
from yaml.constructor import ConstructorError
from yaml.error import MarkedYAMLError
from yaml.events import AliasEvent
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from yaml.parser import ParserError
from yaml.scanner import ScannerError

MAX_BYTES = 1024 * 1024
MAX_DEPTH = 20
MAX_VALUES = 10_000

Path = tuple[str | int, ...]

_MERGE = "tag:yaml.org,2002:merge"
_YAML11_BOOL = "tag:sagemaker-cd,2026:yaml11-bool"
_YAML11_NUMBER = "tag:sagemaker-cd,2026:yaml11-number"
_DIGITS = list("-+0123456789")


class YamlRefused(Exception):
    """The bytes are not a YAML document we read; `problems` holds (path, message) pairs."""

    def __init__(self, problems: list[tuple[Path, str]]):
        super().__init__("; ".join(message for _, message in problems))
        self.problems = problems


class _Refused(MarkedYAMLError):
    """A document this reader will not walk (too deep, too big, recursive)."""


def _where(mark: Any) -> str:
    return f"line {mark.line + 1}, column {mark.column + 1}"


def _yaml11_number_text(value: str) -> str:
    """Why a YAML 1.1 number reads differently in YAML 1.2, and what to write instead."""
    if ":" in value:
        digits = value.lstrip("+-").split(":")
        try:
            total: float = 0
            for part in digits[:-1]:
                total = total * 60 + int(part.replace("_", ""))
            total = total * 60 + float(digits[-1].replace("_", ""))
        except ValueError:
            return f"'{value}' reads as a base-60 number in YAML 1.1: quote it ('{value}') for text"
        shown = f"{total:g}" if isinstance(total, float) and not total.is_integer() else str(int(total))
        return f"'{value}' reads as the base-60 number {shown} in YAML 1.1: quote it ('{value}') for text, or write {shown}"
    return (
        f"'{value}' has a leading zero, which YAML 1.1 reads as an octal number and YAML 1.2 as a decimal one: "
        f"quote it ('{value}') for text, or write the number without the zero"
    )


class _Loader(yaml.SafeLoader):
    """SafeLoader that records each node's path, refuses duplicate keys, deep nesting and
    ambiguous scalars (collected in `problems`, or raised for what stops reading)."""

    # Our own, added below: YAML 1.2's reading where it agrees with YAML 1.1, a refusal where not.
    yaml_implicit_resolvers: dict = {}

    def __init__(self, stream: str):
        super().__init__(stream)
        self.problems: list[tuple[int, Path, str]] = []
        self._path: list[str | int] = []
        self._depth = 0
        self._paths: dict[int, Path] = {}  # id(node) -> where it is (the nodes live as long as the loader)

    # ----- composing: paths, depth, duplicate keys ------------------------------------------
    def compose_node(self, parent: Node | None, index: Any) -> Node | None:
        if self.check_event(AliasEvent):
            return super().compose_node(parent, index)
        pushed = index is not None
        if pushed:
            self._path.append(
                index if isinstance(index, int) else index.value if isinstance(index, ScalarNode) else "?"
            )
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise _Refused(
                    None,
                    None,
                    f"nests deeper than {MAX_DEPTH} levels (a pipeline config needs 4)",
                    self.peek_event().start_mark,
                )
            node = super().compose_node(parent, index)
            self._paths.setdefault(id(node), tuple(self._path))
            return node
        finally:
            self._depth -= 1
            if pushed:
                self._path.pop()

    def compose_mapping_node(self, anchor: Any) -> MappingNode:
        node = super().compose_mapping_node(anchor)
        first: dict[tuple[str, str], ScalarNode] = {}
        for key, _ in node.value:
            if not isinstance(key, ScalarNode) or key.tag == _MERGE:
                continue
            seen = first.setdefault((key.tag, key.value), key)
            if seen is not key:
                line = key.start_mark.line + 1
                self.problems.append(
                    (
                        line,
                        (*self._path, key.value),
                        f"set twice, on line {seen.start_mark.line + 1} and on line {line}: keep one "
                        "(YAML would silently use the last)",
                    )
                )
        return node

    # ----- constructing: errors with their line, ambiguous scalars --------------------------
    def construct_object(self, node: Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep)
        except yaml.YAMLError:
            raise
        except (ValueError, TypeError, KeyError, AttributeError, OverflowError):
            # e.g. an explicit `!!int abc`, or an integer of more digits than Python converts.
            tag = str(node.tag).replace("tag:yaml.org,2002:", "!!")
            text = node.value if isinstance(node, ScalarNode) else ""
            shown = f"'{text}'" if len(text) <= 40 else f"'{text[:40]}...' ({len(text):,} characters)"
            raise ConstructorError(None, None, f"cannot read {shown} as {tag}", node.start_mark) from None

    def _ambiguous(self, node: Node, message: str) -> str:
        self.problems.append((node.start_mark.line + 1, self._paths.get(id(node), ()), message))
        return str(self.construct_scalar(node))  # type: ignore[arg-type]

    def construct_yaml11_bool(self, node: Node) -> str:
        value = str(self.construct_scalar(node))  # type: ignore[arg-type]
        meaning = "true" if value.lower() in ("yes", "on") else "false"
        return self._ambiguous(
            node,
            f"'{value}' reads as the boolean {meaning} in YAML 1.1 and as text in YAML 1.2: "
            f"write {meaning} for a boolean, or quote it ('{value}') for text",
        )

    def construct_yaml11_number(self, node: Node) -> str:
        return self._ambiguous(node, _yaml11_number_text(str(self.construct_scalar(node))))  # type: ignore[arg-type]


for _tag, _pattern, _first in (
    ("tag:yaml.org,2002:bool", r"^(?:true|True|TRUE|false|False|FALSE)$", list("tTfF")),
    (_YAML11_BOOL, r"^(?:yes|Yes|YES|no|No|NO|on|On|ON|off|Off|OFF)$", list("yYnNoO")),
    ("tag:yaml.org,2002:null", r"^(?:~|null|Null|NULL|)$", ["~", "n", "N", ""]),
    ("tag:yaml.org,2002:int", r"^[-+]?(?:0|[1-9][0-9_]*|0x[0-9a-fA-F_]+|0b[01_]+)$", _DIGITS),
    (_YAML11_NUMBER, r"^[-+]?(?:0[0-9_]+|[0-9][0-9_]*(?::[0-5]?[0-9])+(?:\.[0-9_]*)?)$", _DIGITS),
    (
        "tag:yaml.org,2002:float",
        r"^[-+]?(?:\.[0-9][0-9_]*|[0-9][0-9_]*(?:\.[0-9_]*)?)(?:[eE][-+]?[0-9]+)?$|^[-+]?\.(?:inf|Inf|INF)$|^\.(?:nan|NaN|NAN)$",
        [*_DIGITS, "."],
    ),
    (_MERGE, r"^(?:<<)$", ["<"]),
):
    _Loader.add_implicit_resolver(_tag, re.compile(_pattern), _first)
_Loader.add_constructor(_YAML11_BOOL, _Loader.construct_yaml11_bool)
_Loader.add_constructor(_YAML11_NUMBER, _Loader.construct_yaml11_number)


def _children(node: Node) -> Iterator[Node]:
    if isinstance(node, MappingNode):
        for key, value in node.value:
            yield key
            yield value
    elif isinstance(node, SequenceNode):
        yield from node.value


def check_size(root: Node, limit: int = MAX_VALUES) -> None:
    """Refuse a document that, aliases expanded, holds more than `limit` values, or an alias
    that contains itself; the nodes are walked once each (no expansion happens)."""
    sizes: dict[int, int] = {}
    open_nodes: set[int] = set()
    stack: list[tuple[Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        if children_done:
            open_nodes.discard(id(node))
            size = 1 + sum(sizes[id(child)] for child in _children(node))
            if size > limit:
                raise _Refused(
                    None,
                    None,
                    f"holds more than {limit:,} values once its aliases are expanded "
                    "(a 'billion laughs' document?); a pipeline config has a few hundred",
                    node.start_mark,
                )
            sizes[id(node)] = size
            continue
        if id(node) in sizes:
            continue
        if id(node) in open_nodes:
            raise _Refused(None, None, "an alias refers to a node that contains it (recursive anchor)", node.start_mark)
        open_nodes.add(id(node))
        stack.append((node, True))
        stack.extend((child, False) for child in _children(node) if id(child) not in sizes)


def _reader_problem(text: str, exc: yaml.reader.ReaderError) -> str:
    before = text[: exc.position]
    line, column = before.count("\n") + 1, exc.position - (before.rfind("\n") + 1) + 1
    return (
        f"line {line}, column {column}: character U+{exc.character:04X} is not allowed in YAML (a control character?)"
    )


def _marked_problem(exc: MarkedYAMLError) -> str:
    mark = exc.problem_mark or exc.context_mark
    where = f"{_where(mark)}: " if mark is not None else ""
    kind = "YAML syntax error: " if isinstance(exc, (ScannerError, ParserError)) else ""
    if isinstance(exc, _Refused):
        kind = ""
    elif not kind:
        kind = "YAML error: "
    text = ", ".join(part for part in (exc.context, exc.problem) if part) or "not valid YAML"
    hint = " (YAML indents with spaces, not tabs)" if "'\\t'" in text else ""
    return f"{where}{kind}{text}{hint}"


def decode(data: bytes) -> str:
    """The bytes as text; YamlRefused says where they are not UTF-8 or too many."""
    if len(data) > MAX_BYTES:
        raise YamlRefused([((), f"is over {MAX_BYTES:,} bytes; a pipeline config is a few kilobytes")])
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise YamlRefused([((), "is UTF-16 text (it starts with a UTF-16 byte-order mark): save it as UTF-8")])
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise YamlRefused(
            [((), f"is not UTF-8 text: byte {exc.start} (line {line}) is 0x{data[exc.start]:02x}; save it as UTF-8")]
        ) from None


def parse(data: bytes) -> Any:
    """The YAML document in `data` as plain Python data (None for an empty document)."""
    text = decode(data)
    try:
        loader = _Loader(text)
    except yaml.reader.ReaderError as exc:  # the reader checks every character up front
        raise YamlRefused([((), _reader_problem(text, exc))]) from None
    try:
        node = loader.get_single_node()
        if node is not None:
            check_size(node)
        value = loader.construct_document(node) if node is not None else None
    except MarkedYAMLError as exc:
        raise YamlRefused([((), _marked_problem(exc))]) from None
    except yaml.YAMLError as exc:
        raise YamlRefused([((), f"not valid YAML: {' '.join(str(exc).split())}")]) from None
    except RecursionError:  # the caps above should make this unreachable; never a traceback
        raise YamlRefused([((), "nests too deeply to read")]) from None
    finally:
        loader.dispose()
    if loader.problems:
        raise YamlRefused([(path, message) for _, path, message in sorted(loader.problems, key=lambda p: p[0])])
    return value
