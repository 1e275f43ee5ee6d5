"""Read a YAML or TOML file into plain data, keeping the line and column of every value.

YAML is read with YAML 1.2's core schema, not PyYAML's 1.1 default: `1e-3`
is a float, only true/false are booleans, `012` is twelve, and a duplicate
key is an error. TOML is read with tomllib, which keeps no positions; they
are found by scanning the text for the keys.
"""

from __future__ import annotations

import bisect
import math
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

import yaml

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from tfn.specs.errors import Diagnostic, SpecError, UserError, format_path

Position = tuple[int, int]  # 1-based line and column


@dataclass
class Document:
    """A parsed spec file: its data and where each value sits in the text."""

    path: str
    data: dict
    values: dict[tuple, Position] = field(default_factory=dict)  # path -> value position
    keys: dict[tuple, Position] = field(default_factory=dict)  # path -> key position
    overrides: dict[tuple, str] = field(default_factory=dict)  # path -> the option that gave its value (`--set K=V`)
    #: False for a text tfn wrote itself (a spec given as a dict): its lines mean nothing to the user
    shows_positions: bool = True

    def where(self, path: tuple, key: bool = False) -> Position | None:
        """The position of `path`, or of its nearest ancestor that has one."""
        path = tuple(path)
        while True:
            table = (self.keys, self.values) if key else (self.values, self.keys)
            for positions in table:
                if path in positions:
                    return positions[path]
            if not path:
                return None
            path = path[:-1]

    def error(self, path: tuple, message: str, key: bool = False) -> Diagnostic:
        """A diagnostic at `path`: in the file, or at the --set option that gave the value."""
        path = tuple(path)
        for k in range(len(path), 0, -1):
            if path[:k] in self.overrides:
                return Diagnostic(self.overrides[path[:k]], None, None, format_path(path), message)
        line, col = (self.where(path, key) if self.shows_positions else None) or (None, None)
        return Diagnostic(self.path, line, col, format_path(path), message)


FORMATS = {".yaml": "yaml", ".yml": "yaml", ".toml": "toml"}


def read_document(path: str | Path, text: str | None = None, display: str | None = None) -> Document:
    path = Path(path)
    name = display or str(path)
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise SpecError([Diagnostic(name, None, None, "", f"a spec is a .yaml, .yml or .toml file, got {path.suffix or 'no extension'!r}")])
    if text is None:
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            raise UserError(f"{name}: error: no such file") from None
        except OSError as exc:
            raise UserError(f"{name}: error: cannot read: {exc}") from None
        text = _decode(raw, name)
    doc = parse_yaml(text, name) if fmt == "yaml" else parse_toml(text, name)
    _check_depth(doc)
    if doc.data is None or doc.data == {}:
        raise SpecError([Diagnostic(name, 1, 1, "", f"the file holds no spec; a spec needs at least {EMPTY_HINT}")])
    if not isinstance(doc.data, dict):
        line, col = doc.where(()) or (1, 1)
        raise SpecError([Diagnostic(name, line, col, "", f"a spec is a mapping of sections ({EMPTY_HINT}), got a {_kind(doc.data)}")])
    return doc


EMPTY_HINT = "version, name, model, loss and data"

#: how deep mappings and lists may nest in a spec: far more than any spec needs (a node in
#: ten nested scopes sits 24 levels down), far less than Python's recursion limit
MAX_DEPTH = 100


def _decode(raw: bytes, name: str) -> str:
    """UTF-8 text with universal newlines, as read_text gives; a bad byte is reported at its line and column."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        before = raw[: exc.start]
        line = before.count(b"\n") + 1
        col = len(before[before.rfind(b"\n") + 1 :].decode("utf-8", errors="replace")) + 1
        byte = raw[exc.start : exc.start + 1].hex()
        raise SpecError([Diagnostic(name, line, col, "", f"not UTF-8 text: byte 0x{byte} ({exc.reason}); save the spec as UTF-8")]) from None
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _position(text: str, offset: int) -> Position:
    """The 1-based line and column of a character offset into `text`."""
    line = text.count("\n", 0, offset) + 1
    return line, offset - (text.rfind("\n", 0, offset) + 1) + 1


def _nesting_error(name: str, position: Position | None) -> SpecError:
    line, col = position or (1, 1)
    return SpecError([Diagnostic(name, line, col, "", f"mappings and lists nest more than {MAX_DEPTH} levels deep here; a spec needs far fewer")])


def _check_depth(doc: Document) -> None:
    """Nesting that the reader let through (TOML's dotted keys, a.b.c... = 1) is bounded too."""
    stack = [(doc.data, ())]
    while stack:
        value, path = stack.pop()
        if len(path) > MAX_DEPTH:
            raise _nesting_error(doc.path, doc.where(path, key=True))
        items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
        stack.extend((v, path + (k,)) for k, v in items)


def _kind(value) -> str:
    return {list: "list", str: "string", int: "number", float: "number", bool: "boolean"}.get(type(value), type(value).__name__)


# --- YAML ------------------------------------------------------------------

_INT = re.compile(r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$")
_FLOAT = re.compile(r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$")
_BOOL = re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$")
_NULL = re.compile(r"^(?:~|null|Null|NULL|)$")


class _NestingTooDeep(Exception):
    def __init__(self, mark):
        self.mark = mark


class _Yaml12Loader(yaml.SafeLoader):
    """Composes nodes with YAML 1.2 core-schema tag resolution, to a bounded depth
    (PyYAML's composer recurses once per level)."""

    depth = 0

    def compose_node(self, parent, index):
        self.depth += 1
        try:
            if self.depth > MAX_DEPTH:
                raise _NestingTooDeep(self.peek_event().start_mark)
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1


_Yaml12Loader.yaml_implicit_resolvers = {}
for _tag, _regexp, _first in (
    ("bool", _BOOL, "tTfF"),
    ("int", _INT, "-+0123456789"),
    ("float", _FLOAT, "-+0123456789."),
    ("null", _NULL, ["~", "n", "N", ""]),
):
    _Yaml12Loader.add_implicit_resolver(f"tag:yaml.org,2002:{_tag}", _regexp, list(_first))


def parse_yaml(text: str, name: str) -> Document:
    try:
        root = yaml.compose(text, Loader=_Yaml12Loader)
    except _NestingTooDeep as exc:
        raise _nesting_error(name, (exc.mark.line + 1, exc.mark.column + 1)) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        message = f"YAML syntax: {exc.problem or exc.context}"
        start = exc.context_mark
        if exc.problem and exc.context and start and start is not mark:
            if "end of stream" in exc.problem:  # never closed: the opening is where to look
                what = exc.context.removeprefix("while ").removeprefix("scanning ").removeprefix("parsing ")
                line, col = start.line + 1, start.column + 1
                message = f"YAML syntax: {what} starts here and is never closed (the file ends at line {mark.line + 1})"
            else:
                message += f" ({exc.context.removeprefix('while ')} that starts at line {start.line + 1}, column {start.column + 1})"
        raise SpecError([Diagnostic(name, line, col, "", message)]) from None
    except yaml.reader.ReaderError as exc:
        line, col = _position(text, exc.position)
        code = exc.character if isinstance(exc.character, int) else ord(exc.character)
        raise SpecError([Diagnostic(name, line, col, "", f"YAML syntax: control character U+{code:04X} is not allowed in a spec")]) from None
    except yaml.YAMLError as exc:
        raise SpecError([Diagnostic(name, 1, 1, "", f"YAML syntax: {exc}")]) from None
    doc = Document(name, {})
    problems: list[Diagnostic] = []
    doc.data = _convert(root, (), doc, problems) if root is not None else None
    if problems:
        raise SpecError(problems)
    return doc


def _pos(node) -> Position:
    return node.start_mark.line + 1, node.start_mark.column + 1


def _convert(node, path: tuple, doc: Document, problems: list):
    doc.values[path] = _pos(node)
    if isinstance(node, yaml.MappingNode):
        out: dict = {}
        for key_node, value_node in node.value:
            key = _convert(key_node, path + ("<key>",), doc, problems)
            doc.values.pop(path + ("<key>",), None)
            if not isinstance(key, (str, int)):
                problems.append(Diagnostic(doc.path, *_pos(key_node), "", "a mapping key must be a string"))
                continue
            if key in out:
                first = doc.keys[path + (key,)]
                message = f"duplicate key {key!r} (first defined at line {first[0]})"
                problems.append(Diagnostic(doc.path, *_pos(key_node), format_path(path + (key,)), message))
                continue
            doc.keys[path + (key,)] = _pos(key_node)
            out[key] = _convert(value_node, path + (key,), doc, problems)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_convert(item, path + (i,), doc, problems) for i, item in enumerate(node.value)]
    tag, value = node.tag, node.value
    if tag.endswith(":str"):
        return value
    if tag.endswith(":bool"):
        return value.lower() == "true"
    if tag.endswith(":null"):
        return None
    if tag.endswith(":int"):
        if value[:2] in ("0o", "0x"):
            return int(value[2:], 8 if value[1] == "o" else 16)
        return int(value)
    if tag.endswith(":float"):
        low = value.lower()
        if low.endswith("inf"):
            return -math.inf if low.startswith("-") else math.inf
        return math.nan if low.endswith("nan") else float(value)
    problems.append(Diagnostic(doc.path, *_pos(node), "", f"unsupported YAML tag {tag!r}"))
    return None


# --- TOML ------------------------------------------------------------------

_TOML_POS = re.compile(r"at line (\d+), column (\d+)")
_KEY = r'(?:[A-Za-z0-9_-]+|"[^"]*"|\'[^\']*\')'
_DOTTED = rf"{_KEY}(?:\s*\.\s*{_KEY})*"
_TABLE = re.compile(rf"^\s*(\[\[?)\s*({_DOTTED})\s*\]\]?")
_ASSIGN = re.compile(rf"({_DOTTED})\s*=")


def parse_toml(text: str, name: str) -> Document:
    _check_toml_nesting(text, name)  # before tomllib, which recurses once per level
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        match = _TOML_POS.search(str(exc))
        if match:
            line, col = int(match[1]), int(match[2])
        else:  # "(at end of document)": the last character
            line, col = _position(text, len(text.rstrip("\n")))
        message = _TOML_POS.sub("", str(exc)).replace("(at end of document)", "at the end of the file").replace("()", "").strip()
        if not match and "Unterminated string" in message:  # the opening quote is where to look
            line, col = _position(text, _unclosed_quote(text))
            message = f"a string starts here and is never closed (the file ends at line {text.rstrip(chr(10)).count(chr(10)) + 1})"
        duplicate = _toml_duplicate(text, line) if message.startswith("Cannot overwrite") else None
        if duplicate:
            key, col, first = duplicate
            message = f"duplicate key {key!r}" + (f" (first defined at line {first})" if first else "")
            raise SpecError([Diagnostic(name, line, col, "", message)]) from None
        raise SpecError([Diagnostic(name, line, col, "", f"TOML syntax: {message}")]) from None
    doc = Document(name, data, values={(): (1, 1)})
    _toml_positions(text, doc)
    return doc


def _unclosed_quote(text: str) -> int:
    """The offset of the first quote that opens no complete string (tomllib names only the end of the file)."""
    end, offset = 0, None
    for m in [*_TOKEN.finditer(text), None]:
        quote = re.search("[\"']", text[end : m.start() if m else len(text)])
        if quote:
            offset = end + quote.start()
            break
        end = m.end() if m else end
    if offset is None:
        return len(text.rstrip("\n"))
    if text[max(0, offset - 2) : offset + 1] in ('"""', "'''"):
        offset -= 2  # a multi-line string's opening, its first two quotes read as an empty string
    return offset


def _check_toml_nesting(text: str, name: str) -> None:
    depth = 0
    for m in _TOKEN.finditer(text):
        if m.group() in ("[", "{"):
            depth += 1
            if depth > MAX_DEPTH:
                raise _nesting_error(name, _position(text, m.start()))
        elif m.group() in ("]", "}"):
            depth = max(0, depth - 1)


def _toml_duplicate(text: str, line: int | None) -> tuple[str, int, int | None] | None:
    """For tomllib's 'Cannot overwrite a value' at `line`: the key, its column and
    the line of its first definition in the same table (None if not found)."""
    lines = text.splitlines()
    if line is None or not 0 < line <= len(lines):
        return None
    code = lines[line - 1]
    m = _ASSIGN.match(code.lstrip())
    if not m:
        return None
    key = _split_key(m[1])
    for back in range(line - 2, -1, -1):
        earlier = lines[back].lstrip()
        if _TABLE.match(earlier):
            break
        other = _ASSIGN.match(earlier)
        if other and _split_key(other[1]) == key:
            return ".".join(key), len(code) - len(code.lstrip()) + 1, back + 1
    return ".".join(key), len(code) - len(code.lstrip()) + 1, None


def _split_key(dotted: str) -> tuple:
    return tuple(part.strip().strip("\"'") for part in re.findall(_KEY, dotted))


_TOKEN = re.compile(
    r"""(?P<space>[ \t]+)
    |(?P<comment>\#[^\n]*)
    |(?P<newline>\r?\n)
    |(?P<string>\"\"\"(?:[^\\]|\\.)*?\"\"\"|'''.*?'''|"(?:[^"\\\n]|\\.)*"|'[^'\n]*')
    |(?P<punct>[\[\]{}=,.])
    |(?P<bare>[^\s\[\]{}=,.\#"']+)""",
    re.VERBOSE | re.DOTALL,
)


class _TomlScanner:
    """Finds the position of every key, table and array item of a TOML text that
    tomllib has accepted: a tokenizer and a recursive descent over its tokens."""

    def __init__(self, text: str, doc: Document):
        self.doc = doc
        starts = [0] + [m.end() for m in re.finditer(r"\n", text)]
        self.tokens = []  # (kind, text, line, column)
        for m in _TOKEN.finditer(text):
            if m.lastgroup not in ("space", "comment"):
                line = bisect.bisect_right(starts, m.start())
                self.tokens.append((m.lastgroup, m.group(), line, m.start() - starts[line - 1] + 1))
        self.i = 0
        self.arrays: dict[tuple, int] = {}  # array-of-tables path -> index of its last table

    def peek(self, skip_newlines: bool = False):
        while skip_newlines and self.i < len(self.tokens) and self.tokens[self.i][0] == "newline":
            self.i += 1
        return self.tokens[self.i] if self.i < len(self.tokens) else ("end", "", 0, 0)

    def take(self):
        token = self.peek()
        self.i += 1
        return token

    def mark(self, path: tuple, token) -> None:
        self.doc.keys[path] = self.doc.values[path] = (token[2], token[3])

    def key(self) -> tuple:
        parts = [self.take()[1]]
        while self.peek()[1] == ".":
            self.take()
            parts.append(self.take()[1])
        return tuple(p[1:-1] if p[:1] in "\"'" else p for p in parts)

    def scan(self) -> None:
        table: tuple = ()
        while (token := self.peek(skip_newlines=True))[0] != "end":
            if token[1] == "[":  # a [table] or [[array of tables]] header
                self.take()
                double = self.peek()[1] == "[" and self.peek()[3] == token[3] + 1
                if double:
                    self.take()
                start = self.peek()
                table = self.resolve(self.key(), double)
                self.mark(table, start)
                while self.peek()[0] not in ("newline", "end"):
                    self.take()
            else:
                path = table + self.key()
                self.mark(path, token)
                self.take()  # =
                self.value(path)

    def resolve(self, key: tuple, new_item: bool) -> tuple:
        """A header's key -> the document path, through the last table of each array of tables."""
        path: tuple = ()
        for k, part in enumerate(key):
            path += (part,)
            if k == len(key) - 1 and new_item:
                self.arrays[path] = self.arrays.get(path, -1) + 1
            if path in self.arrays:
                path += (self.arrays[path],)
        return path

    def value(self, path: tuple) -> None:
        token = self.take()
        if token[1] == "[":
            index = 0
            while (item := self.peek(skip_newlines=True))[1] != "]" and item[0] != "end":
                if item[1] == ",":
                    self.take()
                    continue
                self.mark(path + (index,), item)
                self.value(path + (index,))
                index += 1
            self.take()
        elif token[1] == "{":
            while (item := self.peek())[1] != "}" and item[0] != "end":
                if item[1] == ",":
                    self.take()
                    continue
                key = path + self.key()
                self.mark(key, item)
                self.take()  # =
                self.value(key)
            self.take()
        else:  # a scalar: its tokens up to the next delimiter (1.5 is three tokens)
            while self.peek()[1] not in (",", "]", "}") and self.peek()[0] not in ("newline", "end"):
                self.take()


def _toml_positions(text: str, doc: Document) -> None:
    _TomlScanner(text, doc).scan()
