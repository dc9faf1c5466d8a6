"""Parsed nodes → typed instructions, grouped into build stages.

Ported from buildkit's ``frontend/dockerfile/instructions`` (which Docker's
classic builder also uses), with its messages: an instruction error reads
``dockerfile parse error on line N: <reason>``; a parser error (from
``parser``) has no prefix. Nothing here expands variables at parse time:
fields hold the words as written (quotes included for ENV/LABEL/ARG values)
and ``expand`` substitutes them with the environment the executor passes,
field by field as Docker's dispatcher does:

* expanded (one word each): ENV and LABEL keys and values, ARG names and
  defaults, ADD/COPY sources, destination, ``--chown``, ``--chmod``,
  ``--checksum`` (ADD) and ``--from`` (COPY), WORKDIR, USER, VOLUME,
  STOPSIGNAL; EXPOSE is split into several words; FROM's base name and
  ``--platform`` are expanded with the meta ARGs only (``expand_from``).
* not expanded: RUN, CMD, ENTRYPOINT, SHELL, HEALTHCHECK, MAINTAINER,
  ONBUILD (its trigger is expanded when it fires in a child build).

Note for the executor (Docker's classic builder): RUN flags (``--mount``,
``--network``, ``--security``) are parsed and kept, but the classic builder
refuses them with ``the --mount option requires BuildKit. ...``; a
Dockerfile with only ARGs has no stage (``No image was generated. Is your
Dockerfile empty?``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import ClassVar

from dockyard.builder import parser as _parser
from dockyard.builder.parser import DockerfileParseError, Heredoc, Node
from dockyard.builder.shell_lex import ShellLex
from dockyard.gofmt import go_quote

__all__ = [
    "Add",
    "Arg",
    "ArgSpec",
    "Cmd",
    "Copy",
    "Dockerfile",
    "DockerfileParseError",
    "Entrypoint",
    "Env",
    "Expose",
    "From",
    "Healthcheck",
    "Heredoc",
    "Instruction",
    "KeyValue",
    "Label",
    "Maintainer",
    "Onbuild",
    "Run",
    "Shell",
    "SourceContent",
    "Stage",
    "StopSignal",
    "User",
    "Volume",
    "Workdir",
    "expand",
    "expand_from",
    "parse_dockerfile",
    "parse_instruction",
    "parse_trigger",
]

INSTRUCTIONS = (
    "ADD ARG CMD COPY ENTRYPOINT ENV EXPOSE FROM HEALTHCHECK LABEL MAINTAINER "
    "ONBUILD RUN SHELL STOPSIGNAL USER VOLUME WORKDIR"
).split()


class _Error(Exception):
    """Internal: an instruction error, before it gets its line prefix."""


# --- records --------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Instruction:
    """Fields every instruction has. ``code`` is its source as Docker prints
    it in ``Step 2/5 : <code>``; ``line`` and ``end_line`` are 1-based."""

    keyword: ClassVar[str] = ""
    code: str
    line: int
    end_line: int


@dataclass(frozen=True)
class KeyValue:
    key: str
    value: str
    no_delim: bool = False  # written as legacy ``ENV key value``


@dataclass(frozen=True)
class ArgSpec:
    key: str
    value: str | None = None  # None: ``ARG name`` without a default


@dataclass(frozen=True)
class SourceContent:
    """A heredoc source of COPY/ADD: a file named ``path`` holding ``data``
    (tabs already chomped); ``expand`` says whether to substitute it."""

    path: str
    data: str
    expand: bool


@dataclass(frozen=True, kw_only=True)
class From(Instruction):
    keyword: ClassVar[str] = "FROM"
    base: str
    name: str = ""  # lower-cased ``AS`` name
    platform: str = ""


@dataclass(frozen=True, kw_only=True)
class Arg(Instruction):
    keyword: ClassVar[str] = "ARG"
    args: tuple[ArgSpec, ...]


@dataclass(frozen=True, kw_only=True)
class _CommandLine(Instruction):
    """RUN/CMD/ENTRYPOINT: ``cmd`` is the exec-form list, or one string when
    ``prepend_shell`` (shell form: run it with the stage's SHELL)."""

    cmd: tuple[str, ...]
    prepend_shell: bool
    files: tuple[Heredoc, ...] = ()


@dataclass(frozen=True, kw_only=True)
class Run(_CommandLine):
    keyword: ClassVar[str] = "RUN"
    mounts: tuple[str, ...] = ()  # raw ``--mount`` specs, in order
    network: str = "default"  # default | none | host
    security: str = "sandbox"  # sandbox | insecure
    flags_used: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True)
class Cmd(_CommandLine):
    keyword: ClassVar[str] = "CMD"


@dataclass(frozen=True, kw_only=True)
class Entrypoint(_CommandLine):
    keyword: ClassVar[str] = "ENTRYPOINT"


@dataclass(frozen=True, kw_only=True)
class Env(Instruction):
    keyword: ClassVar[str] = "ENV"
    pairs: tuple[KeyValue, ...]


@dataclass(frozen=True, kw_only=True)
class Label(Instruction):
    keyword: ClassVar[str] = "LABEL"
    pairs: tuple[KeyValue, ...]


@dataclass(frozen=True, kw_only=True)
class Expose(Instruction):
    keyword: ClassVar[str] = "EXPOSE"
    ports: tuple[str, ...]  # sorted as strings, as Docker does


@dataclass(frozen=True, kw_only=True)
class _Transfer(Instruction):
    sources: tuple[str, ...]
    dest: str
    contents: tuple[SourceContent, ...] = ()
    json: bool = False
    chown: str = ""
    chmod: str = ""
    link: bool = False
    excludes: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True)
class Copy(_Transfer):
    keyword: ClassVar[str] = "COPY"
    from_: str = ""
    parents: bool = False


@dataclass(frozen=True, kw_only=True)
class Add(_Transfer):
    keyword: ClassVar[str] = "ADD"
    keep_git_dir: bool | None = None
    checksum: str = ""
    unpack: bool | None = None


@dataclass(frozen=True, kw_only=True)
class Workdir(Instruction):
    keyword: ClassVar[str] = "WORKDIR"
    path: str


@dataclass(frozen=True, kw_only=True)
class User(Instruction):
    keyword: ClassVar[str] = "USER"
    user: str


@dataclass(frozen=True, kw_only=True)
class Volume(Instruction):
    keyword: ClassVar[str] = "VOLUME"
    volumes: tuple[str, ...]


@dataclass(frozen=True, kw_only=True)
class Shell(Instruction):
    keyword: ClassVar[str] = "SHELL"
    shell: tuple[str, ...]


@dataclass(frozen=True, kw_only=True)
class StopSignal(Instruction):
    keyword: ClassVar[str] = "STOPSIGNAL"
    signal: str


@dataclass(frozen=True, kw_only=True)
class Healthcheck(Instruction):
    """``test`` as Docker stores it: ``("NONE",)``, ``("CMD", ...)`` or
    ``("CMD-SHELL", "cmd")``; durations in nanoseconds, 0 when not given."""

    keyword: ClassVar[str] = "HEALTHCHECK"
    test: tuple[str, ...]
    interval: int = 0
    timeout: int = 0
    start_period: int = 0
    start_interval: int = 0
    retries: int = 0


@dataclass(frozen=True, kw_only=True)
class Onbuild(Instruction):
    """``expression`` is what goes into the image's ``OnBuild`` list."""

    keyword: ClassVar[str] = "ONBUILD"
    expression: str
    trigger: str  # the trigger's instruction word, upper-cased


@dataclass(frozen=True, kw_only=True)
class Maintainer(Instruction):
    keyword: ClassVar[str] = "MAINTAINER"
    maintainer: str


@dataclass(frozen=True)
class Stage:
    """One ``FROM`` and the instructions after it. ``name`` is lower-cased
    (``""`` when unnamed); ``base`` is unexpanded."""

    index: int
    name: str
    base: str
    platform: str
    line: int
    code: str
    instructions: tuple[Instruction, ...]


@dataclass(frozen=True)
class Dockerfile:
    """A parsed Dockerfile: ARGs before the first FROM, then the stages."""

    meta_args: tuple[Arg, ...]
    stages: tuple[Stage, ...]
    directives: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    escape: str = "\\"
    warnings: tuple[str, ...] = ()

    def find_stage(self, ref: str, *, before: int | None = None) -> int | None:
        """Index of the stage called ``ref`` (case-insensitive) or numbered
        ``ref``, among stages before ``before``; None if there is none."""
        limit = len(self.stages) if before is None else before
        lowered = ref.lower()
        for stage in self.stages[:limit]:
            if stage.name and stage.name == lowered:
                return stage.index
        if ref.isdecimal() and ref.isascii() and int(ref) < limit:
            return int(ref)
        return None

    def target_index(self, target: str | None) -> int:
        """The stage a ``--target`` names (default: the last one)."""
        if not self.stages:
            raise DockerfileParseError("No image was generated. Is your Dockerfile empty?")
        if not target:
            return len(self.stages) - 1
        lowered = target.lower()
        for stage in self.stages:
            if stage.name == lowered:
                return stage.index
        raise DockerfileParseError(f"failed to reach build target {target} in Dockerfile")

    def stages_needed(
        self, target: str | None = None, *, meta_env: Mapping[str, str] | None = None
    ) -> list[int]:
        """Indices, in build order, of the stages ``target`` depends on
        through ``FROM <stage>`` and ``COPY --from=<stage>`` (names and
        indices expanded with ``meta_env``, the meta ARG values)."""
        env = meta_env or {}
        lex = ShellLex(self.escape)
        needed: set[int] = set()
        todo = [self.target_index(target)]
        while todo:
            index = todo.pop()
            if index in needed:
                continue
            needed.add(index)
            for ref in _stage_refs(self.stages[index], lex, env):
                dep = self.find_stage(ref, before=index)
                if dep is not None and dep not in needed:
                    todo.append(dep)
        return sorted(needed)


def _stage_refs(stage: Stage, lex: ShellLex, env: Mapping[str, str]) -> list[str]:
    refs = [stage.base]
    refs += [i.from_ for i in stage.instructions if isinstance(i, Copy) and i.from_]
    out = []
    for ref in refs:
        try:
            out.append(lex.process_word(ref, env))
        except DockerfileParseError:
            raise
        except Exception:
            out.append(ref)  # a bad word is reported when the stage runs
    return out


# --- flags ----------------------------------------------------------------


class _Flags:
    """Builder flags of one instruction (buildkit's BFlags)."""

    def __init__(self, args: tuple[str, ...]) -> None:
        self.args = args
        self.kinds: dict[str, str] = {}
        self.values: dict[str, str] = {}
        self.lists: dict[str, list[str]] = {}
        self.used: list[str] = []

    def add(self, name: str, kind: str, default: str = "") -> None:
        self.kinds[name] = kind
        self.values[name] = default
        self.lists[name] = []

    def parse(self) -> None:
        for a in self.args:
            if a == "--":
                return
            if not a.startswith("--"):
                raise _Error(f"arg should start with -- : {a}")
            flag_name, has_value, value = a.partition("=")
            name = flag_name[2:]
            kind = self.kinds.get(name)
            if kind is None:
                msg = f"unknown flag: {flag_name}"
                match = _suggest(name, list(self.kinds), case_sensitive=True)
                raise _Error(f"{msg} (did you mean {match}?)" if match else msg)
            if name in self.used and kind != "strings":
                raise _Error(f"duplicate flag specified: {flag_name}")
            if name not in self.used:
                self.used.append(name)
            if kind == "bool":
                if has_value and value == "":
                    raise _Error(f"missing a value on flag: {flag_name}")
                lowered = value.lower()
                if lowered not in ("true", "", "false"):
                    raise _Error(f"expecting boolean value for flag {flag_name}, not: {value}")
                self.values[name] = "false" if lowered == "false" else "true"
            else:
                if not has_value:
                    raise _Error(f"missing a value on flag: {flag_name}")
                self.values[name] = value
                self.lists[name].append(value)

    def bool(self, name: str) -> bool:
        return self.values[name] == "true"

    def optional_bool(self, name: str) -> bool | None:
        return self.bool(name) if name in self.used else None


def _levenshtein(a: str, b: str) -> int:
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


def _suggest(value: str, options: list[str], *, case_sensitive: bool) -> str:
    """Docker's "did you mean" (util/suggest): the closest option at a
    distance under 3, in the caller's case."""
    orig = value
    if not case_sensitive:
        value = value.lower()
    match, best = "", 3
    for opt in options:
        cmp = opt if case_sensitive else opt.lower()
        if cmp == value:
            return ""
        dist = _levenshtein(value, cmp)
        if dist < best:
            best = dist
            match = cmp
    if match and not case_sensitive:
        if orig == orig.lower():
            return match.lower()
        if orig == orig.upper():
            return match.upper()
    return match


# --- node → instruction ---------------------------------------------------

_VALID_STAGE_NAME = re.compile(r"[a-z][a-z0-9\-_.]*\Z")
_ONBUILD_PREFIX = re.compile(r"^\s*ONBUILD\s*", re.IGNORECASE)


def _at_least_one(cmd: str) -> _Error:
    return _Error(f"{cmd} requires at least one argument")


def _exactly_one(cmd: str) -> _Error:
    return _Error(f"{cmd} requires exactly one argument")


def _base(node: Node) -> dict[str, object]:
    return {
        "code": _parser._strip_space(node.original),
        "line": node.start_line,
        "end_line": node.end_line,
    }


def parse_instruction(node: Node) -> Instruction:
    """One node as a typed instruction; raises ``DockerfileParseError`` with
    Docker's ``dockerfile parse error on line N: ...`` message."""
    try:
        return _parse(node)
    except _Error as e:
        raise DockerfileParseError(
            f"dockerfile parse error on line {node.start_line}: {e.args[0]}", line=node.start_line
        ) from None


def _parse(node: Node) -> Instruction:
    keyword = node.keyword
    fn = _PARSERS.get(keyword)
    if fn is None:
        msg = f"unknown instruction: {node.cmd}"
        match = _suggest(node.cmd, INSTRUCTIONS, case_sensitive=False)
        raise _Error(f"{msg} (did you mean {match}?)" if match else msg)
    return fn(node, _Flags(node.flags))


def _kvps(args: tuple[str, ...], cmd: str) -> tuple[KeyValue, ...]:
    if not args:
        raise _at_least_one(cmd)
    if len(args) % 3:
        raise _Error(f"Bad input to {cmd}, too many arguments")
    out = []
    for j in range(0, len(args), 3):
        if not args[j]:
            raise _Error(f"{cmd} names can not be blank")
        out.append(KeyValue(args[j], args[j + 1], args[j + 2] == ""))
    return tuple(out)


def _env(node: Node, flags: _Flags) -> Instruction:
    flags.parse()
    return Env(pairs=_kvps(node.args, "ENV"), **_base(node))  # type: ignore[arg-type]


def _label(node: Node, flags: _Flags) -> Instruction:
    flags.parse()
    return Label(pairs=_kvps(node.args, "LABEL"), **_base(node))  # type: ignore[arg-type]


def _maintainer(node: Node, flags: _Flags) -> Instruction:
    if len(node.args) != 1:
        raise _exactly_one("MAINTAINER")
    flags.parse()
    return Maintainer(maintainer=node.args[0], **_base(node))  # type: ignore[arg-type]


def _sources_and_dest(node: Node, cmd: str) -> dict[str, object]:
    *srcs, dest = node.args
    if _parser.parse_heredoc(dest) is not None:
        raise _Error(f"{cmd} cannot accept a heredoc as a destination")
    docs = {h.name: h for h in node.heredocs}
    paths: list[str] = []
    contents: list[SourceContent] = []
    for src in srcs:
        doc = _parser.parse_heredoc(src)
        if doc is None:
            paths.append(src)
            continue
        data = docs[doc.name].content if doc.name in docs else ""
        if doc.chomp:
            data = _parser.chomp_heredoc(data)
        contents.append(SourceContent(path=doc.name, data=data, expand=doc.expand))
    return {
        "sources": tuple(paths),
        "dest": dest,
        "contents": tuple(contents),
        "json": node.json,
    }


def _transfer(node: Node, flags: _Flags, cmd: str) -> dict[str, object]:
    if len(node.args) < 2:
        raise _Error(
            f"{cmd} requires at least two arguments, but only one was provided. "
            "Destination could not be determined"
        )
    flags.add("chown", "string")
    flags.add("chmod", "string")
    flags.add("link", "bool", "false")
    flags.add("exclude", "strings")
    if cmd == "COPY":
        flags.add("from", "string")
        flags.add("parents", "bool", "false")
    else:
        flags.add("keep-git-dir", "bool", "false")
        flags.add("checksum", "string")
        flags.add("unpack", "bool", "false")
    flags.parse()
    try:
        fields = _sources_and_dest(node, cmd)
    except _parser._Error as e:
        raise _Error(str(e)) from None
    fields.update(
        chown=flags.values["chown"],
        chmod=flags.values["chmod"],
        link=flags.bool("link"),
        excludes=tuple(flags.lists["exclude"]),
        **_base(node),
    )
    return fields


def _copy(node: Node, flags: _Flags) -> Instruction:
    fields = _transfer(node, flags, "COPY")
    return Copy(from_=flags.values["from"], parents=flags.bool("parents"), **fields)  # type: ignore[arg-type]


def _add(node: Node, flags: _Flags) -> Instruction:
    fields = _transfer(node, flags, "ADD")
    return Add(
        keep_git_dir=flags.optional_bool("keep-git-dir"),
        checksum=flags.values["checksum"],
        unpack=flags.optional_bool("unpack"),
        **fields,  # type: ignore[arg-type]
    )


def _from(node: Node, flags: _Flags) -> Instruction:
    args = node.args
    name = ""
    if len(args) == 3 and args[1].lower() == "as":
        name = args[2].lower()
        if not _VALID_STAGE_NAME.match(name):
            raise _Error(
                f"invalid name for build stage: {go_quote(args[2])}, "
                "name can't start with a number or contain symbols"
            )
    elif len(args) != 1:
        raise _Error("FROM requires either one or three arguments")
    flags.add("platform", "string")
    flags.parse()
    return From(base=args[0], name=name, platform=flags.values["platform"], **_base(node))  # type: ignore[arg-type]


def _onbuild(node: Node, flags: _Flags) -> Instruction:
    if not node.args:
        raise _at_least_one("ONBUILD")
    flags.parse()
    trigger = _parser._strip_space(node.args[0]).upper()
    if trigger == "ONBUILD":
        raise _Error("Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed")
    if trigger in ("MAINTAINER", "FROM"):
        raise _Error(f"{trigger} isn't allowed as an ONBUILD trigger")
    expression = _ONBUILD_PREFIX.sub("", node.original, count=1)
    for doc in node.heredocs:
        expression += "\n" + doc.content + doc.name
    return Onbuild(expression=expression, trigger=trigger, **_base(node))  # type: ignore[arg-type]


def _workdir(node: Node, flags: _Flags) -> Instruction:
    if len(node.args) != 1:
        raise _exactly_one("WORKDIR")
    flags.parse()
    return Workdir(path=node.args[0], **_base(node))  # type: ignore[arg-type]


def _command_line(node: Node, *, empty_as_none: bool = False) -> dict[str, object]:
    args = node.args
    if args and not node.json:
        args = (" ".join(args),)
    return {
        "cmd": args,
        "prepend_shell": not node.json,
        "files": node.heredocs,
        **_base(node),
    }


def _run(node: Node, flags: _Flags) -> Instruction:
    flags.add("mount", "strings")
    flags.add("network", "string", "default")
    flags.add("security", "string", "sandbox")
    flags.parse()
    network = flags.values["network"]
    if network not in ("default", "none", "host"):
        raise _Error(f"invalid network mode {go_quote(network)}")
    security = flags.values["security"]
    if security not in ("sandbox", "insecure"):
        raise _Error(f"security {go_quote(security)} is not valid")
    return Run(
        mounts=tuple(flags.lists["mount"]),
        network=network,
        security=security,
        flags_used=tuple(flags.used),
        **_command_line(node),  # type: ignore[arg-type]
    )


def _cmd(node: Node, flags: _Flags) -> Instruction:
    flags.parse()
    return Cmd(**_command_line(node))  # type: ignore[arg-type]


def _entrypoint(node: Node, flags: _Flags) -> Instruction:
    flags.parse()
    return Entrypoint(**_command_line(node))  # type: ignore[arg-type]


def _healthcheck(node: Node, flags: _Flags) -> Instruction:
    if not node.args:
        raise _at_least_one("HEALTHCHECK")
    typ = node.args[0].upper()
    rest = node.args[1:]
    if typ == "NONE":
        if rest:
            raise _Error("HEALTHCHECK NONE takes no arguments")
        return Healthcheck(test=("NONE",), **_base(node))  # type: ignore[arg-type]
    for name in ("interval", "timeout", "start-period", "start-interval", "retries"):
        flags.add(name, "string")
    flags.parse()
    if typ != "CMD":
        raise _Error(f"Unknown type {go_quote(typ)} in HEALTHCHECK (try CMD)")
    if not rest:
        raise _Error("Missing command after HEALTHCHECK CMD")
    test = ("CMD", *rest) if node.json else ("CMD-SHELL", " ".join(rest))
    retries = 0
    text = flags.values["retries"]
    if text:
        retries = _parse_int32(text)
        if retries < 0:
            raise _Error(f"--retries cannot be negative ({retries})")
    return Healthcheck(
        test=test,
        interval=_opt_interval(flags, "interval"),
        timeout=_opt_interval(flags, "timeout"),
        start_period=_opt_interval(flags, "start-period"),
        start_interval=_opt_interval(flags, "start-interval"),
        retries=retries,
        **_base(node),  # type: ignore[arg-type]
    )


def _parse_int32(text: str) -> int:
    if not re.fullmatch(r"[+-]?[0-9]+", text, re.ASCII):
        raise _Error(f"strconv.ParseInt: parsing {go_quote(text)}: invalid syntax")
    value = int(text)
    if not -(2**31) <= value < 2**31:
        raise _Error(f"strconv.ParseInt: parsing {go_quote(text)}: value out of range")
    return value


def _opt_interval(flags: _Flags, name: str) -> int:
    text = flags.values[name]
    if not text:
        return 0
    try:
        ns = parse_go_duration(text)
    except ValueError as e:
        raise _Error(str(e)) from None
    if ns == 0:
        return 0
    if ns < 1_000_000:
        raise _Error(f'Interval "{name}" cannot be less than 1ms')
    return ns


_UNITS = {
    "ns": 1,
    "us": 1_000,
    "µs": 1_000,  # U+00B5
    "μs": 1_000,  # U+03BC
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60_000_000_000,
    "h": 3_600_000_000_000,
}


def parse_go_duration(text: str) -> int:
    """Go's ``time.ParseDuration`` in nanoseconds (``"1m30s"``, ``"1.5h"``,
    ``"-2ms"``); ``ValueError`` with Go's message otherwise."""
    orig, s = text, text
    invalid = ValueError(f"time: invalid duration {go_quote(orig)}")
    neg = False
    if s[:1] in ("-", "+"):
        neg = s[0] == "-"
        s = s[1:]
    if s == "0":
        return 0
    if not s:
        raise invalid
    total = 0
    while s:
        m = re.match(r"([0-9]*)(?:\.([0-9]*))?", s)
        assert m is not None
        whole, frac = m.group(1), m.group(2)
        if not whole and not frac:
            raise invalid
        s = s[m.end() :]
        u = re.match(r"[^0-9.]*", s)
        assert u is not None
        unit = u.group(0)
        if not unit:
            raise ValueError(f"time: missing unit in duration {go_quote(orig)}")
        if unit not in _UNITS:
            raise ValueError(f"time: unknown unit {go_quote(unit)} in duration {go_quote(orig)}")
        s = s[len(unit) :]
        scale = _UNITS[unit]
        value = int(whole or "0") * scale
        if frac:
            value += int(frac) * scale // 10 ** len(frac)
        total += value
        if total > 2**63 - (0 if neg else 1):
            raise invalid
    return -total if neg else total


def _expose(node: Node, flags: _Flags) -> Instruction:
    if not node.args:
        raise _at_least_one("EXPOSE")
    flags.parse()
    return Expose(ports=tuple(sorted(node.args)), **_base(node))  # type: ignore[arg-type]


def _user(node: Node, flags: _Flags) -> Instruction:
    if len(node.args) != 1:
        raise _exactly_one("USER")
    flags.parse()
    return User(user=node.args[0], **_base(node))  # type: ignore[arg-type]


def _volume(node: Node, flags: _Flags) -> Instruction:
    if not node.args:
        raise _at_least_one("VOLUME")
    flags.parse()
    volumes = []
    for v in node.args:
        v = _parser._strip_space(v)
        if not v:
            raise _Error("VOLUME specified can not be an empty string")
        volumes.append(v)
    return Volume(volumes=tuple(volumes), **_base(node))  # type: ignore[arg-type]


def _stopsignal(node: Node, flags: _Flags) -> Instruction:
    if len(node.args) != 1:
        raise _exactly_one("STOPSIGNAL")
    return StopSignal(signal=node.args[0], **_base(node))  # type: ignore[arg-type]


def _arg(node: Node, flags: _Flags) -> Instruction:
    if not node.args:
        raise _at_least_one("ARG")
    specs = []
    for word in node.args:
        if "=" in word:
            key, value = word.split("=", 1)
            if not key:
                raise _Error("ARG names can not be blank")
            specs.append(ArgSpec(key, value))
        else:
            specs.append(ArgSpec(word))
    return Arg(args=tuple(specs), **_base(node))  # type: ignore[arg-type]


def _shell(node: Node, flags: _Flags) -> Instruction:
    flags.parse()
    if not node.args:
        raise _at_least_one("SHELL")
    if not node.json:
        raise _Error("SHELL requires the arguments to be in JSON form")
    return Shell(shell=node.args, **_base(node))  # type: ignore[arg-type]


_PARSERS = {
    "add": _add,
    "arg": _arg,
    "cmd": _cmd,
    "copy": _copy,
    "entrypoint": _entrypoint,
    "env": _env,
    "expose": _expose,
    "from": _from,
    "healthcheck": _healthcheck,
    "label": _label,
    "maintainer": _maintainer,
    "onbuild": _onbuild,
    "run": _run,
    "shell": _shell,
    "stopsignal": _stopsignal,
    "user": _user,
    "volume": _volume,
    "workdir": _workdir,
}


# --- the whole file -------------------------------------------------------


def parse_dockerfile(text: str) -> Dockerfile:
    """Parse a Dockerfile into meta ARGs and stages.

    Raises ``DockerfileParseError`` (an ``errdefs.InvalidArgument``) with
    Docker's message; nothing else, whatever the text.
    """
    if text == "":
        raise DockerfileParseError("the Dockerfile (Dockerfile) cannot be empty")
    result = _parser.parse(text)
    meta: list[Arg] = []
    stages: list[Stage] = []
    current: list[Instruction] = []
    for node in result.nodes:
        inst = parse_instruction(node)
        if isinstance(inst, From):
            if stages or current:
                _close(stages, current)
            stages.append(
                Stage(len(stages), inst.name, inst.base, inst.platform, inst.line, inst.code, ())
            )
            current = []
        elif not stages:
            if isinstance(inst, Arg):
                meta.append(inst)
                continue
            raise DockerfileParseError("no build stage in current context", line=node.start_line)
        else:
            current.append(inst)
    if stages:
        _close(stages, current)
    return Dockerfile(
        meta_args=tuple(meta),
        stages=tuple(stages),
        directives=result.directives,
        escape=result.escape,
        warnings=result.warnings,
    )


def _close(stages: list[Stage], instructions: list[Instruction]) -> None:
    stages[-1] = replace(stages[-1], instructions=tuple(instructions))


def parse_trigger(expression: str) -> Instruction:
    """An ``OnBuild`` entry of a base image, parsed when a child build runs
    it (Docker re-parses the text)."""
    result = _parser.parse(expression)
    if len(result.nodes) != 1:
        raise DockerfileParseError("onbuild trigger should be a single expression")
    inst = parse_instruction(result.nodes[0])
    if isinstance(inst, Onbuild):
        raise DockerfileParseError("Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed")
    if isinstance(inst, (From, Maintainer)):
        raise DockerfileParseError(f"{inst.keyword} isn't allowed as an ONBUILD trigger")
    return inst


# --- expansion ------------------------------------------------------------


def expand(inst: Instruction, env: Mapping[str, str], *, escape: str = "\\") -> Instruction:
    """``inst`` with its words substituted from ``env`` (the stage's ARGs
    and ENV as the executor scopes them). Instructions Docker does not
    expand come back unchanged. Raises ``ExpansionError``."""
    lex = ShellLex(escape)

    def word(s: str) -> str:
        return lex.process_word(s, env)

    def pairs(kvs: tuple[KeyValue, ...]) -> tuple[KeyValue, ...]:
        return tuple(KeyValue(word(kv.key), word(kv.value), kv.no_delim) for kv in kvs)

    if isinstance(inst, Env):
        return replace(inst, pairs=pairs(inst.pairs))
    if isinstance(inst, Label):
        return replace(inst, pairs=pairs(inst.pairs))
    if isinstance(inst, Arg):
        args = tuple(
            ArgSpec(word(a.key), None if a.value is None else word(a.value)) for a in inst.args
        )
        return replace(inst, args=args)
    if isinstance(inst, _Transfer):
        changes: dict[str, object] = {
            "sources": tuple(word(s) for s in inst.sources),
            "dest": word(inst.dest),
            "chown": word(inst.chown),
            "chmod": word(inst.chmod),
        }
        if isinstance(inst, Copy):
            changes["from_"] = word(inst.from_)
        if isinstance(inst, Add):
            changes["checksum"] = word(inst.checksum)
        return replace(inst, **changes)  # type: ignore[arg-type]
    if isinstance(inst, Workdir):
        return replace(inst, path=word(inst.path))
    if isinstance(inst, User):
        return replace(inst, user=word(inst.user))
    if isinstance(inst, Volume):
        return replace(inst, volumes=tuple(word(v) for v in inst.volumes))
    if isinstance(inst, StopSignal):
        return replace(inst, signal=word(inst.signal))
    if isinstance(inst, Expose):
        ports = [p for port in inst.ports for p in lex.process_words(port, env)]
        return replace(inst, ports=tuple(ports))
    return inst


def expand_heredoc(content: SourceContent, env: Mapping[str, str]) -> str:
    """The data of a COPY/ADD heredoc source, substituted when its delimiter
    was unquoted (quotes in the body are kept, the escape char works)."""
    if not content.expand:
        return content.data
    # buildkit uses a backslash lexer here whatever the escape directive says.
    return ShellLex("\\", skip_process_quotes=True).process_word(content.data, env)


def expand_from(
    stage: Stage, meta_env: Mapping[str, str], *, escape: str = "\\"
) -> tuple[str, str]:
    """A stage's base name and platform, substituted with the meta ARGs."""
    lex = ShellLex(escape)
    return lex.process_word(stage.base, meta_env), lex.process_word(stage.platform, meta_env)
