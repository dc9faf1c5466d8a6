"""A sans-IO subset of Go's ``text/template`` for ``--format``, with the
docker CLI's functions (json, join, split, lower, upper, title, pad,
truncate) on top of Go's builtins (index, len, printf, eq, and, ...).

``parse(text)`` gives a ``Template``; ``Template.execute(data)`` gives a str.
Every failure is a ``TemplateError`` whose text reads like Go's
(``template: :1: unclosed action``).
"""

from __future__ import annotations

import html
import re
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from dockyard.errdefs import InvalidArgument
from dockyard.gofmt import MISSING, format_value, go_json, go_type, sprintf


class TemplateError(InvalidArgument):
    """The template cannot be parsed, or failed while executing."""


# --- lexer -----------------------------------------------------------------

_SPACE = " \t\r\n"
_KEYWORDS = {"if", "else", "end", "range", "with", "break", "continue", "define", "template"}
_TOKEN = re.compile(
    r"""
    (?P<space>[ \t\r\n]+)
  | (?P<declare>:=)
  | (?P<assign>=)
  | (?P<pipe>\|)
  | (?P<lparen>\()
  | (?P<rparen>\))
  | (?P<comma>,)
  | (?P<string>"(?:[^"\\\n]|\\.)*")
  | (?P<raw>`[^`]*`)
  | (?P<char>'(?:[^'\\]|\\.)+')
  | (?P<number>[+-]?(?:0[xX][0-9a-fA-F_]+|(?:\d[\d_]*\.?\d*|\.\d+)(?:[eE][+-]?\d+)?))
  | (?P<field>(?:\.[A-Za-z_][A-Za-z0-9_]*)+)
  | (?P<dot>\.)
  | (?P<var>\$[A-Za-z0-9_]*)
  | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
    """,
    re.VERBOSE,
)


@dataclass(frozen=True)
class Token:
    kind: str
    text: str
    line: int
    col: int
    glued: bool  # no space between this token and the previous one


@dataclass(frozen=True)
class _Item:
    kind: str  # "text" | "action"
    text: str = ""
    tokens: tuple[Token, ...] = ()
    line: int = 1


def _err(line: int, msg: str) -> TemplateError:
    return TemplateError(f"template: :{line}: {msg}")


def _lex(src: str) -> list[_Item]:
    items: list[_Item] = []
    pos = 0
    line = 1
    trim_next = False
    while True:
        start = src.find("{{", pos)
        text = src[pos:] if start == -1 else src[pos:start]
        if trim_next:
            text = text.lstrip(_SPACE)
        if start == -1:
            if text:
                items.append(_Item("text", text))
            return items
        inner = start + 2
        if src.startswith("- ", inner) or src[inner : inner + 2] in ("-\t", "-\r", "-\n"):
            text = text.rstrip(_SPACE)
            inner += 1
        if text:
            items.append(_Item("text", text))
        line += src.count("\n", pos, start)
        tokens, end, trim_next = _lex_action(src, inner, line)
        line += src.count("\n", start, end)
        if tokens is not None:
            items.append(_Item("action", tokens=tokens, line=line))
        pos = end


def _lex_action(src: str, pos: int, line: int) -> tuple[tuple[Token, ...] | None, int, bool]:
    """Tokens of one action starting at ``pos``; returns (tokens, end, trim)."""
    stripped = pos
    while stripped < len(src) and src[stripped] in _SPACE:
        stripped += 1
    if src.startswith("/*", stripped):
        close = src.find("*/", stripped + 2)
        if close == -1:
            raise _err(line, "unclosed comment")
        after = close + 2
        if src.startswith(" -}}", after):
            return None, after + 4, True
        if src.startswith("}}", after):
            return None, after + 2, False
        raise _err(line, "comment ends before closing delimiter")
    tokens: list[Token] = []
    glued = True
    line_start = src.rfind("\n", 0, pos) + 1
    while True:
        if pos >= len(src):
            raise _err(line, "unclosed action")
        if src.startswith("}}", pos):
            return tuple(tokens), pos + 2, False
        if src[pos] in _SPACE and src.startswith("-}}", pos + 1):
            return tuple(tokens), pos + 4, True
        m = _TOKEN.match(src, pos)
        if m is None:
            ch = src[pos]
            if ch == "}" or ch == "{":
                raise _err(line, f'unexpected "{ch}" in command')
            raise _err(line, f"unrecognized character in action: {ch!r}")
        kind = m.lastgroup or ""
        if kind == "space":
            if "\n" in m.group():
                line += m.group().count("\n")
                line_start = src.rfind("\n", 0, m.end()) + 1
            glued = False
        else:
            col = pos - line_start
            tokens.append(Token(kind, m.group(), line, col, glued))
            glued = True
        pos = m.end()


# --- parse tree --------------------------------------------------------------


@dataclass
class Node:
    line: int = 1
    col: int = 0
    text: str = ""


@dataclass
class Field(Node):
    names: tuple[str, ...] = ()


@dataclass
class Dot(Node):
    pass


@dataclass
class Variable(Node):
    name: str = "$"
    names: tuple[str, ...] = ()


@dataclass
class Ident(Node):
    name: str = ""


@dataclass
class Literal(Node):
    value: Any = None


@dataclass
class Chain(Node):
    node: Node = field(default_factory=Node)
    names: tuple[str, ...] = ()


@dataclass
class Command(Node):
    args: list[Node] = field(default_factory=list)


@dataclass
class Pipeline(Node):
    decl: list[str] = field(default_factory=list)
    is_assign: bool = False
    cmds: list[Command] = field(default_factory=list)


@dataclass
class Text(Node):
    pass


@dataclass
class Action(Node):
    pipe: Pipeline = field(default_factory=Pipeline)


@dataclass
class Branch(Node):
    kind: str = "if"  # if | range | with
    pipe: Pipeline = field(default_factory=Pipeline)
    body: list[Node] = field(default_factory=list)
    orelse: list[Node] = field(default_factory=list)


@dataclass
class Control(Node):
    kind: str = "break"


def _unquote(tok: Token) -> Any:
    text = tok.text
    if tok.kind == "raw":
        return text[1:-1]
    if tok.kind == "string" or tok.kind == "char":
        body = text[1:-1]
        try:
            value = body.encode("latin-1", "backslashreplace").decode("unicode_escape")
            value = value.encode("latin-1").decode("utf-8")
        except (UnicodeError, ValueError):
            raise _err(tok.line, f"invalid syntax: {text}")
        if tok.kind == "char":
            if len(value) != 1:
                raise _err(tok.line, f"malformed character constant: {text}")
            return ord(value)
        return value
    clean = text.replace("_", "")
    try:
        if re.fullmatch(r"[+-]?(0[xX][0-9a-fA-F]+|\d+)", clean):
            return int(clean, 0) if not re.fullmatch(r"[+-]?0\d+", clean) else int(clean, 8)
        return float(clean)
    except ValueError:
        raise _err(tok.line, f"bad number syntax: {text!r}")


class _Parser:
    def __init__(self, items: list[_Item], funcs: Mapping[str, Callable[..., Any]]) -> None:
        self.items = items
        self.i = 0
        self.funcs = funcs
        self.vars: list[str] = ["$"]

    def parse(self) -> list[Node]:
        nodes, stop = self._list(())
        if stop is not None:
            raise _err(stop.line, f"unexpected {{{{{stop.tokens[0].text}}}}}")
        return nodes

    def _list(self, stops: tuple[str, ...]) -> tuple[list[Node], _Item | None]:
        nodes: list[Node] = []
        while self.i < len(self.items):
            item = self.items[self.i]
            self.i += 1
            if item.kind == "text":
                nodes.append(Text(text=item.text))
                continue
            toks = item.tokens
            if not toks:
                raise _err(item.line, "missing value for command")
            head = toks[0]
            if head.kind == "ident" and head.text in ("end", "else"):
                if head.text not in stops:
                    raise _err(item.line, f"unexpected {{{{{head.text}}}}}")
                return nodes, item
            if head.kind == "ident" and head.text in ("if", "range", "with"):
                nodes.append(self._branch(head.text, item))
            elif head.kind == "ident" and head.text in ("break", "continue"):
                if len(toks) > 1:
                    raise _err(item.line, f"unexpected {toks[1].text} in {{{{{head.text}}}}}")
                nodes.append(Control(line=item.line, kind=head.text))
            elif head.kind == "ident" and head.text in ("define", "template", "block"):
                raise _err(item.line, f"{{{{{head.text}}}}} is not supported")
            else:
                pipe = self._pipeline(list(toks), item.line, "command")
                nodes.append(Action(line=item.line, pipe=pipe))
        if stops:
            raise _err(self.items[-1].line if self.items else 1, "unexpected EOF")
        return nodes, None

    def _branch(self, kind: str, item: _Item) -> Branch:
        return self._branch_tokens(kind, list(item.tokens[1:]), item.line)

    def _branch_tokens(self, kind: str, toks: list[Token], line: int) -> Branch:
        saved = len(self.vars)
        pipe = self._pipeline(toks, line, kind)
        body, stop = self._list(("end", "else"))
        orelse: list[Node] = []
        assert stop is not None
        if stop.tokens[0].text == "else":
            rest = stop.tokens[1:]
            if rest and rest[0].kind == "ident" and rest[0].text in ("if", "with"):
                # {{else if x}} is {{else}}{{if x}}...{{end}}, sharing the {{end}}.
                orelse = [self._branch_tokens(rest[0].text, list(rest[1:]), stop.line)]
            else:
                if rest:
                    raise _err(stop.line, f"unexpected {rest[0].text} in else")
                orelse, _ = self._list(("end",))
        del self.vars[saved:]
        return Branch(line=line, kind=kind, pipe=pipe, body=body, orelse=orelse)

    def _pipeline(self, toks: list[Token], line: int, context: str) -> Pipeline:
        pipe = Pipeline(line=line)
        # Declarations: $x := ... or $i, $e := ... (range only)
        if toks and toks[0].kind == "var":
            if len(toks) > 1 and toks[1].kind in ("declare", "assign"):
                pipe.decl = [toks[0].text]
                pipe.is_assign = toks[1].kind == "assign"
                toks = toks[2:]
            elif (
                len(toks) > 3
                and toks[1].kind == "comma"
                and toks[2].kind == "var"
                and toks[3].kind in ("declare", "assign")
            ):
                if context != "range":
                    raise _err(line, f"too many declarations in {context}")
                pipe.decl = [toks[0].text, toks[2].text]
                pipe.is_assign = toks[3].kind == "assign"
                toks = toks[4:]
        for name in pipe.decl:
            if pipe.is_assign and name not in self.vars:
                raise _err(line, f"undefined variable: {name}")
        pos = 0
        cmd = Command(line=line)
        while pos < len(toks):
            tok = toks[pos]
            if tok.kind == "pipe":
                if not cmd.args:
                    raise _err(line, "missing command")
                pipe.cmds.append(cmd)
                cmd = Command(line=line)
                pos += 1
                continue
            node, pos = self._operand(toks, pos, line)
            cmd.args.append(node)
        if not cmd.args:
            if pipe.cmds:
                raise _err(line, "missing command")
            raise _err(line, f"missing value for {context}")
        pipe.cmds.append(cmd)
        if not pipe.is_assign:
            self.vars.extend(pipe.decl)
        return pipe

    def _operand(self, toks: list[Token], pos: int, line: int) -> tuple[Node, int]:
        tok = toks[pos]
        pos += 1
        node: Node
        kind = tok.kind
        if kind == "field":
            node = Field(tok.line, tok.col, tok.text, tuple(tok.text[1:].split(".")))
        elif kind == "dot":
            node = Dot(tok.line, tok.col, ".")
        elif kind == "var":
            if tok.text not in self.vars:
                raise _err(line, f"undefined variable: {tok.text}")
            node = Variable(tok.line, tok.col, tok.text, tok.text)
        elif kind in ("string", "raw", "char", "number"):
            node = Literal(tok.line, tok.col, tok.text, _unquote(tok))
        elif kind == "ident":
            if tok.text in ("true", "false"):
                node = Literal(tok.line, tok.col, tok.text, tok.text == "true")
            elif tok.text == "nil":
                node = Literal(tok.line, tok.col, "nil", None)
            elif tok.text in _KEYWORDS:
                raise _err(line, f"unexpected <{tok.text}> in command")
            elif tok.text not in self.funcs:
                raise _err(line, f'function "{tok.text}" not defined')
            else:
                node = Ident(tok.line, tok.col, tok.text, tok.text)
        elif kind == "lparen":
            depth = 1
            end = pos
            while end < len(toks) and depth:
                depth += {"lparen": 1, "rparen": -1}.get(toks[end].kind, 0)
                end += 1
            if depth:
                raise _err(line, "unclosed left paren")
            inner = self._pipeline(toks[pos : end - 1], line, "parenthesized pipeline")
            node = Chain(tok.line, tok.col, "(...)", inner, ())
            pos = end
        elif kind == "rparen":
            raise _err(line, "unexpected right paren")
        elif kind in ("declare", "assign"):
            raise _err(line, f'unexpected "{tok.text}" in command')
        else:
            raise _err(line, f"unexpected {tok.text!r} in operand")
        # Field chains glued to the operand: (x).A, $x.A.B
        while pos < len(toks) and toks[pos].kind == "field" and toks[pos].glued:
            names = tuple(toks[pos].text[1:].split("."))
            if isinstance(node, Variable):
                node = Variable(
                    node.line, node.col, node.text + toks[pos].text, node.name, node.names + names
                )
            elif isinstance(node, Chain):
                node = Chain(
                    node.line, node.col, node.text + toks[pos].text, node.node, node.names + names
                )
            elif isinstance(node, Field | Dot):
                raise _err(line, f"unexpected {toks[pos].text} in operand")
            else:
                raise _err(line, f"unexpected . after term {node.text!r}")
            pos += 1
        return node, pos


# --- functions -----------------------------------------------------------------


def _truth(value: Any) -> bool:
    if value is None or value is MISSING:
        return False
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return value != 0
    if isinstance(value, str | Mapping | Sequence):
        return len(value) > 0
    return True


def _need_str(name: str, value: Any) -> str:
    if not isinstance(value, str):
        raise TemplateError(f"wrong type for value; expected string; got {go_type(value)}")
    return value


def _need_int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise TemplateError(f"wrong type for value; expected int; got {go_type(value)}")
    return value


def _title(text: str) -> str:
    out: list[str] = []
    prev_sep = True
    for ch in text:
        out.append(ch.upper() if prev_sep else ch)
        prev_sep = not (ch.isalnum() or ch == "_")
    return "".join(out)


def _join(items: Any, sep: Any) -> str:
    if items is None or items is MISSING:
        items = []
    if not isinstance(items, list | tuple):
        raise TemplateError(f"wrong type for value; expected []string; got {go_type(items)}")
    for item in items:
        if not isinstance(item, str):
            raise TemplateError(f"wrong type for value; expected []string; got {go_type(items)}")
    return _need_str("join", sep).join(items)


def _split(text: Any, sep: Any) -> list[str]:
    text, sep = _need_str("split", text), _need_str("split", sep)
    if sep == "":
        return list(text)
    return text.split(sep)


def _pad(text: Any, prefix: Any, suffix: Any) -> str:
    text = _need_str("pad", text)
    if text == "":
        return text
    return " " * _need_int(prefix) + text + " " * _need_int(suffix)


def _truncate(text: Any, length: Any) -> str:
    text = _need_str("truncate", text)
    length = _need_int(length)
    return text if len(text) < length else text[:length]


def _index(item: Any, *keys: Any) -> Any:
    for key in keys:
        if item is None or item is MISSING:
            raise TemplateError("index of untyped nil")
        if isinstance(item, Mapping):
            item = item.get(key, MISSING)
        elif isinstance(item, list | tuple | str):
            k = _need_int(key)
            if not 0 <= k < len(item):
                raise TemplateError(f"index out of range: {k}")
            item = item[k]
        else:
            raise TemplateError(f"can't index item of type {go_type(item)}")
    return item


def _len(item: Any) -> int:
    if isinstance(item, str | Mapping | list | tuple):
        return len(item)
    raise TemplateError(f"len of type {go_type(item)}")


def _slice(item: Any, *idx: Any) -> Any:
    if not isinstance(item, str | list | tuple):
        raise TemplateError(f"can't slice item of type {go_type(item)}")
    bounds = [_need_int(i) for i in idx]
    if len(bounds) > 2 or any(b < 0 or b > len(item) for b in bounds):
        raise TemplateError("slice index out of range")
    return item[slice(*bounds)] if bounds else item


def _compare_values(a: Any, b: Any) -> tuple[Any, Any]:
    numeric = (int, float)
    if isinstance(a, bool) != isinstance(b, bool):
        raise TemplateError("incompatible types for comparison")
    if isinstance(a, numeric) and isinstance(b, numeric):
        return a, b
    if type(a) is not type(b) and not (a is None or b is None):
        raise TemplateError("incompatible types for comparison")
    return a, b


def _eq(a: Any, *others: Any) -> bool:
    if not others:
        raise TemplateError("missing argument for comparison")
    a = None if a is MISSING else a
    for b in others:
        b = None if b is MISSING else b
        if isinstance(a, Mapping | list) or isinstance(b, Mapping | list):
            raise TemplateError("non-comparable type")
        x, y = _compare_values(a, b) if a is not None and b is not None else (a, b)
        if x == y:
            return True
    return False


def _ordered(op: Callable[[Any, Any], bool]) -> Callable[[Any, Any], bool]:
    def compare(a: Any, b: Any) -> bool:
        x, y = _compare_values(a, b)
        if not isinstance(x, int | float | str) or isinstance(x, bool):
            raise TemplateError("invalid type for comparison")
        return op(x, y)

    return compare


def _print(*args: Any) -> str:
    # fmt.Sprint: spaces only between operands when neither is a string.
    out = ""
    for i, arg in enumerate(args):
        if i and not isinstance(arg, str) and not isinstance(args[i - 1], str):
            out += " "
        out += format_value(arg, top=False)
    return out


def _printf(fmt: Any, *args: Any) -> str:
    return sprintf(_need_str("printf", fmt), *args)


def _and(*args: Any) -> Any:
    for arg in args:
        if not _truth(arg):
            return arg
    return args[-1]


def _or(*args: Any) -> Any:
    for arg in args:
        if _truth(arg):
            return arg
    return args[-1]


BUILTINS: dict[str, Callable[..., Any]] = {
    "and": _and,
    "or": _or,
    "not": lambda x: not _truth(x),
    "len": _len,
    "index": _index,
    "slice": _slice,
    "print": _print,
    "printf": _printf,
    "println": lambda *a: " ".join(format_value(x, top=False) for x in a) + "\n",
    "eq": _eq,
    "ne": lambda a, b: not _eq(a, b),
    "lt": _ordered(lambda a, b: a < b),
    "le": _ordered(lambda a, b: a <= b),
    "gt": _ordered(lambda a, b: a > b),
    "ge": _ordered(lambda a, b: a >= b),
    "html": lambda *a: html.escape(_print(*a)).replace("&#x27;", "&#39;"),
    "js": lambda *a: _print(*a).replace("\\", "\\\\").replace("'", "\\'").replace('"', '\\"'),
    "urlquery": lambda *a: urllib.parse.quote_plus(_print(*a)),
    # docker/cli templates.basicFunctions
    "json": go_json,
    "split": _split,
    "join": _join,
    "title": lambda s: _title(_need_str("title", s)),
    "lower": lambda s: _need_str("lower", s).lower(),
    "upper": lambda s: _need_str("upper", s).upper(),
    "pad": _pad,
    "truncate": _truncate,
}

# docker/cli templates.HeaderFunctions: render a table header from the
# header map; each function just passes its first argument through.
HEADER_FUNCS: dict[str, Callable[..., Any]] = {
    **BUILTINS,
    "json": lambda v, *_: v,
    "split": lambda v, *_: v,
    "join": lambda v, *_: v,
    "title": lambda v, *_: v,
    "lower": lambda v, *_: v,
    "upper": lambda v, *_: v,
    "pad": lambda v, *_: v,
    "truncate": lambda v, *_: v,
}


# --- execution -------------------------------------------------------------------


class _Break(Exception):
    pass


class _Continue(Exception):
    pass


class _State:
    def __init__(self, funcs: Mapping[str, Callable[..., Any]], root: Any) -> None:
        self.funcs = funcs
        self.vars: list[tuple[str, Any]] = [("$", root)]
        self.out: list[str] = []
        self.node: Node | None = None

    def fail(self, msg: str) -> TemplateError:
        node = self.node
        if node is None:
            return TemplateError(f"template: :1: {msg}")
        return TemplateError(
            f'template: :{node.line}:{node.col}: executing "" at <{node.text}>: {msg}'
        )

    def lookup(self, name: str) -> Any:
        for var, value in reversed(self.vars):
            if var == name:
                return value
        raise self.fail(f"undefined variable: {name}")

    def assign(self, name: str, value: Any) -> None:
        for i in range(len(self.vars) - 1, -1, -1):
            if self.vars[i][0] == name:
                self.vars[i] = (name, value)
                return
        raise self.fail(f"undefined variable: {name}")


def _get_field(state: _State, recv: Any, name: str, args: list[Any], last: bool) -> Any:
    if isinstance(recv, Mapping):
        if args:
            raise state.fail(f"{name} is not a method but has arguments")
        value = recv.get(name, MISSING)
        if value is MISSING:
            # The data is the API's JSON; docker's templates name Go struct
            # fields, which differ from the JSON keys mostly in case
            # (APIVersion / ApiVersion).
            folded = name.lower()
            for key, candidate in recv.items():
                if isinstance(key, str) and key.lower() == folded:
                    return candidate
        return value
    if recv is None or recv is MISSING:
        raise state.fail(f"nil pointer evaluating interface {{}}.{name}")
    if isinstance(recv, str | int | float | bool | list | tuple):
        raise state.fail(f"can't evaluate field {name} in type {go_type(recv)}")
    if name.startswith("_") or not hasattr(recv, name):
        kind = getattr(type(recv), "GO_TYPE", type(recv).__name__)
        raise state.fail(f"can't evaluate field {name} in type {kind}")
    attr = getattr(recv, name)
    if callable(attr):
        try:
            return attr(*args)
        except TypeError as exc:
            raise state.fail(f"wrong number of args for {name}: {exc}")
    if args:
        raise state.fail(f"{name} is not a method but has arguments")
    return attr


def _walk_fields(state: _State, recv: Any, names: tuple[str, ...], args: list[Any]) -> Any:
    for i, name in enumerate(names):
        last = i == len(names) - 1
        recv = _get_field(state, recv, name, args if last else [], last)
    return recv


class Template:
    """A parsed template; ``execute`` may run many times."""

    def __init__(self, nodes: list[Node], funcs: Mapping[str, Callable[..., Any]]) -> None:
        self._nodes = nodes
        self._funcs = funcs

    def execute(self, data: Any, *, funcs: Mapping[str, Callable[..., Any]] | None = None) -> str:
        state = _State(funcs or self._funcs, data)
        try:
            self._run(state, self._nodes, data)
        except (_Break, _Continue):
            raise TemplateError("template: :1: break or continue outside range")
        except RecursionError:
            raise TemplateError("template: exceeded maximum template depth")
        return "".join(state.out)

    def _run(self, st: _State, nodes: list[Node], dot: Any) -> None:
        for node in nodes:
            if isinstance(node, Text):
                st.out.append(node.text)
            elif isinstance(node, Action):
                value = self._pipe(st, node.pipe, dot)
                if not node.pipe.decl:
                    st.out.append(self._printable(st, value))
            elif isinstance(node, Branch):
                self._branch(st, node, dot)
            elif isinstance(node, Control):
                raise _Break() if node.kind == "break" else _Continue()

    def _printable(self, st: _State, value: Any) -> str:
        if callable(value) and not isinstance(value, type):
            raise st.fail("can't print function value")
        return format_value(value)

    def _branch(self, st: _State, node: Branch, dot: Any) -> None:
        mark = len(st.vars)
        try:
            if node.kind == "range":
                self._range(st, node, dot)
                return
            value = self._pipe(st, node.pipe, dot, declare=True)
            if _truth(value):
                self._run(st, node.body, value if node.kind == "with" else dot)
            else:
                self._run(st, node.orelse, dot)
        finally:
            del st.vars[mark:]

    def _range(self, st: _State, node: Branch, dot: Any) -> None:
        value = self._pipe(st, node.pipe, dot, declare=False)
        pairs: list[tuple[Any, Any]]
        if value is None or value is MISSING:
            pairs = []
        elif isinstance(value, Mapping):
            pairs = [(k, value[k]) for k in sorted(value)]
        elif isinstance(value, list | tuple):
            pairs = list(enumerate(value))
        elif isinstance(value, int) and not isinstance(value, bool):
            pairs = [(i, i) for i in range(value)]
        else:
            st.node = node.pipe.cmds[0].args[0]
            raise st.fail(f"range can't iterate over {format_value(value)}")
        if not pairs:
            self._run(st, node.orelse, dot)
            return
        mark = len(st.vars)
        for key, elem in pairs:
            del st.vars[mark:]
            if len(node.pipe.decl) == 1:
                st.vars.append((node.pipe.decl[0], elem))
            elif len(node.pipe.decl) == 2:
                st.vars.append((node.pipe.decl[0], key))
                st.vars.append((node.pipe.decl[1], elem))
            try:
                self._run(st, node.body, elem)
            except _Break:
                break
            except _Continue:
                continue

    def _pipe(self, st: _State, pipe: Pipeline, dot: Any, *, declare: bool = True) -> Any:
        value: Any = MISSING
        first = True
        for cmd in pipe.cmds:
            value = self._command(st, cmd, dot, None if first else (value,))
            first = False
        if pipe.decl and declare:
            if pipe.is_assign:
                st.assign(pipe.decl[0], value)
            else:
                st.vars.append((pipe.decl[0], value))
        return value

    def _command(self, st: _State, cmd: Command, dot: Any, piped: tuple[Any] | None) -> Any:
        head = cmd.args[0]
        st.node = head
        extra = list(piped or ())
        if isinstance(head, Ident):
            fn = st.funcs.get(head.name)
            if fn is None:
                raise st.fail(f'function "{head.name}" not defined')
            args = [self._arg(st, a, dot) for a in cmd.args[1:]] + extra
            st.node = head
            try:
                return fn(*args)
            except TemplateError as exc:
                raise st.fail(f"error calling {head.name}: {_bare(exc)}")
            except (TypeError, ValueError, OverflowError, IndexError, KeyError) as exc:
                raise st.fail(f"error calling {head.name}: {exc}")
        if isinstance(head, Field | Variable | Chain):
            args = [self._arg(st, a, dot) for a in cmd.args[1:]] + extra
            st.node = head
            return self._eval(st, head, dot, args)
        if len(cmd.args) > 1 or extra:
            raise st.fail(f"can't give argument to non-function {head.text}")
        return self._eval(st, head, dot, [])

    def _arg(self, st: _State, node: Node, dot: Any) -> Any:
        st.node = node
        if isinstance(node, Ident):
            fn = st.funcs[node.name]
            try:
                return fn()
            except TypeError:
                raise st.fail(f"wrong number of args for {node.name}")
        return self._eval(st, node, dot, [])

    def _eval(self, st: _State, node: Node, dot: Any, args: list[Any]) -> Any:
        if isinstance(node, Field):
            return _walk_fields(st, dot, node.names, args)
        if isinstance(node, Dot):
            return dot
        if isinstance(node, Variable):
            return _walk_fields(st, st.lookup(node.name), node.names, args)
        if isinstance(node, Chain):
            assert isinstance(node.node, Pipeline)
            base = self._pipe(st, node.node, dot)
            st.node = node
            if not node.names:
                if args:
                    raise st.fail("can't give argument to non-function")
                return base
            return _walk_fields(st, base, node.names, args)
        if isinstance(node, Literal):
            return node.value
        raise st.fail("can't evaluate")


def _bare(exc: TemplateError) -> str:
    return exc.message


def parse(text: str, funcs: Mapping[str, Callable[..., Any]] | None = None) -> Template:
    """Parse a Go template; raises TemplateError."""
    table = funcs if funcs is not None else BUILTINS
    items = _lex(text)
    try:
        nodes = _Parser(items, table).parse()
    except RecursionError:
        raise TemplateError("template: :1: max nesting depth exceeded")
    return Template(nodes, table)
