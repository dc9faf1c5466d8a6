"""Dockerfile text → instruction nodes (buildkit ``frontend/dockerfile/parser``).

Rules, in the order they apply:

* Parser directives (``# syntax=``, ``# escape=``, ``# check=``) are honoured
  only at the very top: the first line that is not a directive (an
  instruction, another comment, an empty line) ends them. A repeated
  directive is an error; ``escape`` must be ``\\`` or a backtick.
* A line whose first non-blank character is ``#`` is a comment, also inside
  a continued instruction. A UTF-8 BOM at the start is dropped.
* The escape char as the last non-blank character continues the line; blank
  lines inside a continuation are skipped with a warning (not an error).
* The first word is the instruction (any case); ``--flags`` after it are
  split off (quotes and the escape char work in them, ``--`` ends them).
* The arguments are then parsed per instruction: exec (JSON) form for RUN,
  CMD, ENTRYPOINT, SHELL, HEALTHCHECK CMD, and JSON-or-words for ADD, COPY
  and VOLUME. Only a JSON array of strings is exec form; anything else that
  is not valid JSON falls back to shell form, a JSON array holding
  non-strings is an error.
* RUN, COPY and ADD in shell form (also under ONBUILD) may open heredocs
  (``<<EOF``, ``<<-EOF`` strips leading tabs, a quoted word means no
  expansion, several per line); their bodies follow the instruction.

The parser knows nothing of instruction semantics: unknown instructions are
kept and rejected by ``instructions``. Every node keeps its first and last
line (1-based) for ``dockerfile parse error on line N: ...``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from dockyard import errdefs
from dockyard.builder.shell_lex import GO_SPACES, ExpansionError, ShellLex, is_go_space
from dockyard.gofmt import go_quote

DEFAULT_ESCAPE = "\\"
MAX_LINE_BYTES = 64 * 1024  # bufio.MaxScanTokenSize: Docker's line limit

_VALID_DIRECTIVES = frozenset({"syntax", "escape", "check"})
_DIRECTIVE_RE = re.compile(r"([a-zA-Z][a-zA-Z0-9]*)[\t\n\f\r ]*=[\t\n\f\r ]*(.+?)[\t\n\f\r ]*\Z")
_WHITESPACE_RE = re.compile(r"[\t\v\f\r ]+")
_SPACE_RE = re.compile(f"[{re.escape(GO_SPACES)}]+")
_HEREDOC_RE = re.compile(r"([0-9]*)<<(-?)[\t\n\f\r ]*([^<]*)\Z")
_LEADING_TABS_RE = re.compile(r"^\t+", re.MULTILINE)
_NOT_STRING_ARRAY = "when using JSON array syntax, arrays must be comprised of strings only"

_HEREDOC_INSTRUCTIONS = frozenset({"add", "copy", "run"})
_JSON_TO_LIST = frozenset({"add", "copy", "volume"})
_MAYBE_JSON = frozenset({"cmd", "entrypoint", "run", "shell"})
_NAME_VAL = frozenset({"env", "label"})
_WORDS = frozenset({"expose", "from"})
_STRING = frozenset({"maintainer", "stopsignal", "user", "workdir"})


class DockerfileParseError(errdefs.InvalidArgument):
    """The Dockerfile is malformed. ``line`` is where (1-based, 0 if
    unknown); the message is Docker's, word for word."""

    def __init__(self, message: str, *, line: int = 0) -> None:
        super().__init__(message)
        self.line = line


@dataclass(frozen=True)
class Heredoc:
    """A here-document opened on an instruction line.

    ``content`` is the body as written (lines with their newlines, leading
    tabs not yet stripped: see ``chomp_heredoc``); ``expand`` is False when
    the delimiter word was quoted; ``fd`` is the ``N`` of ``N<<EOF``.
    """

    name: str
    content: str = ""
    expand: bool = True
    chomp: bool = False
    fd: int = 0


@dataclass(frozen=True)
class Node:
    """One instruction as the parser saw it.

    ``args`` is what the per-instruction line parser produced (for ENV and
    LABEL: triples key, value, ``"="`` or ``""`` for the legacy ``ENV k v``
    form; for ONBUILD: the trigger's instruction word then its args).
    ``original`` is the instruction's text with continuations joined.
    """

    cmd: str
    args: tuple[str, ...]
    flags: tuple[str, ...]
    original: str
    start_line: int
    end_line: int
    json: bool = False
    heredocs: tuple[Heredoc, ...] = ()
    sub: Node | None = None
    comments: tuple[str, ...] = ()

    @property
    def keyword(self) -> str:
        return self.cmd.lower()


@dataclass(frozen=True)
class ParseResult:
    """All instructions of a Dockerfile, its directives and warnings."""

    nodes: tuple[Node, ...]
    escape: str = DEFAULT_ESCAPE
    directives: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    warnings: tuple[str, ...] = ()


class _Directives:
    """Directive state: only lines before the first non-directive count."""

    __slots__ = ("continuation", "done", "escape", "seen")

    def __init__(self) -> None:
        self.done = False
        self.seen: dict[str, str] = {}
        self.escape = DEFAULT_ESCAPE
        self.continuation = _continuation_regex(DEFAULT_ESCAPE)

    def parse_line(self, line: str) -> bool:
        if self.done:
            return False
        if not line.startswith("#"):
            self.done = True
            return False
        m = _DIRECTIVE_RE.match(line[1:].lstrip(GO_SPACES))
        key = m.group(1).lower() if m else ""
        if key not in _VALID_DIRECTIVES:
            self.done = True
            return False
        assert m is not None
        if key in self.seen:
            raise _Error(f"only one {key} parser directive can be used")
        value = m.group(2)
        self.seen[key] = value
        if key == "escape":
            if value not in ("`", "\\"):
                raise _Error(f"invalid escape token '{value}' does not match ` or \\")
            self.escape = value
            self.continuation = _continuation_regex(value)
        return True


class _Error(Exception):
    """Internal: a parse error before its line number is known."""


def _continuation_regex(escape: str) -> re.Pattern[str]:
    e = re.escape(escape)
    # The escape char last on the line (bar blanks) continues it, unless it is
    # itself escaped... which, like Docker, we only check one char back.
    return re.compile(rf"([^{e}]){e}[ \t]*\Z|^{e}[ \t]*\Z")


def _trim_newline(s: str) -> str:
    return s.rstrip("\r\n")


def _lstrip_space(s: str) -> str:
    return s.lstrip(GO_SPACES)


def _strip_space(s: str) -> str:
    return s.strip(GO_SPACES)


def _is_comment(line: str) -> bool:
    return _lstrip_space(line)[:1] == "#"


def _split_lines(text: str) -> list[str]:
    # Only \n ends a line (bufio.ScanLines); keep the newline for heredocs.
    lines = text.split("\n")
    out = [line + "\n" for line in lines[:-1]]
    if lines[-1]:
        out.append(lines[-1])
    return out


def parse(text: str) -> ParseResult:
    """Split ``text`` into nodes. Raises ``DockerfileParseError`` only."""
    if text.startswith("\ufeff"):
        text = text[1:]
    lines = _split_lines(text)
    d = _Directives()
    nodes: list[Node] = []
    warnings: list[str] = []
    comments: list[str] = []
    current = 0
    i = 0
    n = len(lines)
    while i < n:
        raw = lines[i]
        i += 1
        if len(raw) > MAX_LINE_BYTES // 4 and len(raw.encode()) > MAX_LINE_BYTES:
            raise DockerfileParseError(
                f"dockerfile line greater than max allowed size of {MAX_LINE_BYTES - 1}",
                line=current + 1,
            )
        if _is_comment(raw):
            comment = _strip_space(_lstrip_space(raw)[1:])
            if comment:
                comments.append(comment)
            else:
                comments = []
        line = _lstrip_space(_trim_newline(raw))
        try:
            if d.parse_line(line) and comments:
                comments.pop()
        except _Error as e:
            raise DockerfileParseError(str(e), line=current) from None
        if _is_comment(line):
            line = ""
        current += 1
        start = current
        line, eol = _trim_continuation(line, d)
        if eol and not line:
            continue
        parts = [line]
        empty_continuation = False
        while not eol and i < n:
            raw = lines[i]
            i += 1
            current += 1
            if _is_comment(raw):
                continue
            part = _trim_newline(raw)
            if not _lstrip_space(part):
                empty_continuation = True
                continue
            part, eol = _trim_continuation(part, d)
            parts.append(part)
        joined = "".join(parts)
        if empty_continuation:
            warnings.append(f"Empty continuation line found in: {joined}")
        try:
            node = _node_from_line(joined, d, tuple(comments))
        except _Error as e:
            raise DockerfileParseError(str(e), line=start) from None
        if _can_contain_heredoc(node) and "<<" in joined:
            heredocs: list[Heredoc] = []
            try:
                found = _heredocs_from_line(joined)
            except _Error as e:
                raise DockerfileParseError(str(e), line=start) from None
            for doc in found:
                body: list[str] = []
                terminated = False
                while i < n:
                    raw = lines[i]
                    i += 1
                    current += 1
                    candidate = _trim_newline(raw)
                    if doc.chomp:
                        candidate = candidate.lstrip("\t")
                    if candidate == doc.name:
                        terminated = True
                        break
                    body.append(raw)
                if not terminated:
                    raise DockerfileParseError("unterminated heredoc", line=start)
                heredocs.append(Heredoc(doc.name, "".join(body), doc.expand, doc.chomp, doc.fd))
            node = _finish(node, start, current, tuple(heredocs))
        else:
            node = _finish(node, start, current, ())
        nodes.append(node)
        comments = []
    if not nodes:
        raise DockerfileParseError("file with no instructions", line=current)
    return ParseResult(
        nodes=tuple(nodes),
        escape=d.escape,
        directives=MappingProxyType(dict(d.seen)),
        warnings=tuple(warnings),
    )


def _finish(node: Node, start: int, end: int, heredocs: tuple[Heredoc, ...]) -> Node:
    # Explicit construction: dataclasses.replace costs a tenth of a parse.
    return Node(
        node.cmd,
        node.args,
        node.flags,
        node.original,
        start,
        end,
        node.json,
        heredocs,
        node.sub,
        node.comments,
    )


def _trim_continuation(line: str, d: _Directives) -> tuple[str, bool]:
    m = d.continuation.search(line)
    if m is None:
        return line, True
    return line[: m.start()] + (m.group(1) or ""), False


def _can_contain_heredoc(node: Node) -> bool:
    if node.keyword == "onbuild" and node.sub is not None:
        node = node.sub
    return node.keyword in _HEREDOC_INSTRUCTIONS and not node.json


# --- one instruction line -------------------------------------------------


def _node_from_line(line: str, d: _Directives, comments: tuple[str, ...]) -> Node:
    cmd, flags, rest = _split_command(line, d)
    keyword = cmd.lower()
    args: tuple[str, ...] = ()
    is_json = False
    sub: Node | None = None
    if keyword in _MAYBE_JSON:
        args, is_json = _parse_maybe_json(rest)
    elif keyword in _JSON_TO_LIST:
        args, is_json = _parse_maybe_json_to_list(rest)
    elif keyword in _NAME_VAL:
        args = _parse_name_val(rest, keyword.upper(), d)
    elif keyword == "arg":
        args = tuple(_parse_words(rest, d))
    elif keyword in _WORDS:
        args = _split_whitespace(rest)
    elif keyword in _STRING:
        args = (rest,) if rest else ()
    elif keyword == "healthcheck":
        args, is_json = _parse_health_config(rest)
    elif keyword == "onbuild" and rest:
        sub = _node_from_line(rest, d, ())
        args = (sub.cmd, *sub.args)
    return Node(
        cmd=cmd,
        args=args,
        flags=tuple(flags),
        original=line,
        start_line=0,
        end_line=0,
        json=is_json,
        sub=sub,
        comments=comments,
    )


def _split_command(line: str, d: _Directives) -> tuple[str, list[str], str]:
    parts = _WHITESPACE_RE.split(_strip_space(line), maxsplit=1)
    if len(parts) < 2:
        return parts[0], [], ""
    rest, flags = _extract_builder_flags(parts[1], d)
    return parts[0], flags, _strip_space(rest)


def _extract_builder_flags(line: str, d: _Directives) -> tuple[str, list[str]]:
    """Split leading ``--flag[=value]`` words off ``line``."""
    words: list[str] = []
    buf: list[str] = []
    in_word = in_quote = False
    quote = ""
    blank_ok = False
    pos, n = 0, len(line)
    escape = d.escape
    while True:
        if pos == n:
            if in_word or in_quote:
                word = "".join(buf)
                if word != "--" and (blank_ok or word):
                    words.append(word)
            return "", words
        ch = line[pos]
        if not in_word and not in_quote:
            if is_go_space(ch):
                pos += 1
                continue
            if ch != "-" or pos + 1 == n or line[pos + 1] != "-":
                return line[pos:], words
            in_word = True
        if in_word:
            if is_go_space(ch):
                word = "".join(buf)
                in_word = False
                if word == "--":
                    return line[pos:], words
                if blank_ok or word:
                    words.append(word)
                buf.clear()
                blank_ok = False
                pos += 1
                continue
            if ch in ("'", '"'):
                quote = ch
                blank_ok = True
                in_word, in_quote = False, True
                pos += 1
                continue
            if ch == escape:
                if pos + 1 == n:
                    pos += 1
                    continue
                pos += 1
                ch = line[pos]
            buf.append(ch)
            pos += 1
            continue
        # in a quote
        if ch == quote:
            in_word, in_quote = True, False
            pos += 1
            continue
        if ch == escape:
            if pos + 1 == n:
                in_word, in_quote = True, False
                pos += 1
                continue
            pos += 1
            ch = line[pos]
        buf.append(ch)
        pos += 1


def _parse_words(rest: str, d: _Directives) -> list[str]:
    """Split on blanks outside quotes; quotes and escapes are kept for the
    expansion step to remove."""
    escape = d.escape
    if escape not in rest and "'" not in rest and '"' not in rest:
        return [w for w in _SPACE_RE.split(rest) if w]
    words: list[str] = []
    buf: list[str] = []
    in_word = in_quote = False
    quote = ""
    blank_ok = False
    pos, n = 0, len(rest)
    while True:
        if pos == n:
            if (in_word or in_quote) and (blank_ok or buf):
                words.append("".join(buf))
            return words
        ch = rest[pos]
        if not in_word and not in_quote:
            if is_go_space(ch):
                pos += 1
                continue
            in_word = True
        if in_word:
            if is_go_space(ch):
                in_word = False
                if blank_ok or buf:
                    words.append("".join(buf))
                buf.clear()
                blank_ok = False
                pos += 1
                continue
            if ch in ("'", '"'):
                quote = ch
                blank_ok = True
                in_word, in_quote = False, True
            if ch == escape:
                if pos + 1 == n:
                    pos += 1
                    continue
                buf.append(ch)
                pos += 1
                ch = rest[pos]
            buf.append(ch)
            pos += 1
            continue
        # in a quote
        if ch == quote:
            in_word, in_quote = True, False
        if ch == escape and quote != "'":
            if pos + 1 == n:
                in_word, in_quote = True, False
                pos += 1
                continue
            buf.append(ch)
            pos += 1
            ch = rest[pos]
        buf.append(ch)
        pos += 1


def _parse_name_val(rest: str, key: str, d: _Directives) -> tuple[str, ...]:
    words = _parse_words(rest, d)
    if not words:
        return ()
    if "=" not in words[0]:
        parts = _WHITESPACE_RE.split(rest, maxsplit=1)
        if len(parts) < 2:
            raise _Error(f"{key} must have two arguments")
        return (parts[0], parts[1], "")
    out: list[str] = []
    for word in words:
        if "=" not in word:
            raise _Error(
                f"Syntax error - can't find = in {go_quote(word)}. Must be of the form: name=value"
            )
        k, v = word.split("=", 1)
        out += (k, v, "=")
    return tuple(out)


def _split_whitespace(rest: str) -> tuple[str, ...]:
    if not rest:
        return ()
    return tuple(_WHITESPACE_RE.split(rest))


def _reject_constant(name: str) -> object:
    raise ValueError(name)  # Go's JSON has no NaN/Infinity


def _parse_json(rest: str) -> tuple[str, ...] | None:
    """The strings of a JSON array, or None when ``rest`` is not one."""
    rest = _lstrip_space(rest)
    if not rest.startswith("["):
        return None
    try:
        value = json.loads(rest, parse_constant=_reject_constant)
    except (ValueError, RecursionError):
        return None
    if not isinstance(value, list):
        return None
    if not all(isinstance(v, str) for v in value):
        raise _Error(_NOT_STRING_ARRAY)
    return tuple(value)


def _parse_maybe_json(rest: str) -> tuple[tuple[str, ...], bool]:
    if not rest:
        return (), False
    parsed = _parse_json(rest)
    if parsed is not None:
        return parsed, True
    return (rest,), False


def _parse_maybe_json_to_list(rest: str) -> tuple[tuple[str, ...], bool]:
    parsed = _parse_json(rest)
    if parsed is not None:
        return parsed, True
    return _split_whitespace(rest), False


def _parse_health_config(rest: str) -> tuple[tuple[str, ...], bool]:
    sep = 0
    while sep < len(rest) and not is_go_space(rest[sep]):
        sep += 1
    if sep == 0:
        return (), False
    nxt = sep
    while nxt < len(rest) and is_go_space(rest[nxt]):
        nxt += 1
    cmd, is_json = _parse_maybe_json(rest[nxt:])
    return (rest[:sep], *cmd), is_json


# --- heredocs -------------------------------------------------------------

_NO_ENV: Mapping[str, str] = MappingProxyType({})


def parse_heredoc(word: str) -> Heredoc | None:
    """The heredoc a word like ``<<EOF``, ``<<-'EOF'`` or ``3<<EOF`` opens,
    or None if it opens none. COPY/ADD use it to tell heredoc sources."""
    m = _HEREDOC_RE.match(word)
    if m is None:
        return None
    fd_text, dash, rest = m.groups()
    if not rest:
        return None
    try:
        words = ShellLex(skip_unset_env=True).process_words(rest, _NO_ENV)
        if len(words) != 1:
            return None
        raw = ShellLex(skip_unset_env=True, raw_quotes=True).process_words(rest, _NO_ENV)
    except ExpansionError as e:
        raise _Error(e.message) from None
    if len(raw) != len(words):
        raise _Error(f"internal lexing of heredoc produced inconsistent results: {rest}")
    name = words[0]

    def quotes(s: str) -> int:
        return s.count("'") + s.count('"')

    fd = int(fd_text) if fd_text and len(fd_text) < 20 else 0
    return Heredoc(name=name, expand=quotes(name) == quotes(raw[0]), chomp=dash == "-", fd=fd)


def _heredocs_from_line(line: str) -> list[Heredoc]:
    lex = ShellLex(raw_quotes=True, raw_escapes=True, skip_unset_env=True)
    try:
        words = lex.process_words(line, _NO_ENV)
    except ExpansionError:
        return []
    docs: list[Heredoc] = []
    for word in words:
        doc = parse_heredoc(word)
        if doc is not None:
            docs.append(doc)
    return docs


def chomp_heredoc(content: str) -> str:
    """Strip leading tabs from every line (``<<-EOF``)."""
    return _LEADING_TABS_RE.sub("", content)
