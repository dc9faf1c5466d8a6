"""Command-line flags with spf13/pflag's rules, as the docker CLI parses them:
``--name value``, ``--name=value``, ``-abc`` (bundled shorthands), ``-ovalue``,
``--`` ends flags, bool flags take no separate value (``--rm=false`` works),
repeatable flags collect a list, and a command may stop at the first
positional argument (``run IMAGE CMD -x`` keeps ``-x`` for CMD).
"""

from __future__ import annotations

from dockyard.errdefs import InvalidArgument

TYPE_CHECKING = False  # keep typing out of start-up
if TYPE_CHECKING:
    from typing import Any

Kind = str  # "bool" | "str" | "int" | "list" | "float"


class FlagError(InvalidArgument):
    """A bad flag or bad flag value (the CLI exits 125 with a usage hint)."""


class Flag:
    """One flag. (A plain slotted class: dataclasses and typing cost start-up.)"""

    __slots__ = ("default", "help", "hidden", "kind", "name", "short")

    def __init__(self, name: str, short: str = "", kind: Kind = "str", default: Any = None,
                 help: str = "", hidden: bool = False) -> None:  # fmt: skip
        self.name, self.short, self.kind = name, short, kind
        self.default, self.help, self.hidden = default, help, hidden

    @property
    def dest(self) -> str:
        return self.name.replace("-", "_")


class Parsed:
    """Flag values by ``dest`` name, positionals, and which flags were set."""

    def __init__(self, values: dict[str, Any], args: list[str], changed: set[str]) -> None:
        self.values = values
        self.args = args
        self.changed = changed

    def __getattr__(self, name: str) -> Any:
        try:
            return self.values[name]
        except KeyError:
            raise AttributeError(name)


_TRUE = {"1", "t", "T", "TRUE", "true", "True"}
_FALSE = {"0", "f", "F", "FALSE", "false", "False"}


def _convert(flag: Flag, text: str, shown: str) -> Any:
    if flag.kind == "bool":
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
        raise FlagError(
            f'invalid argument "{text}" for "{shown}" flag: strconv.ParseBool: '
            f'parsing "{text}": invalid syntax'
        )
    if flag.kind == "int":
        try:
            return int(text, 0) if text.lower().startswith(("0x", "0o", "0b")) else int(text)
        except ValueError:
            raise FlagError(
                f'invalid argument "{text}" for "{shown}" flag: strconv.ParseInt: '
                f'parsing "{text}": invalid syntax'
            )
    if flag.kind == "float":
        try:
            return float(text)
        except ValueError:
            raise FlagError(
                f'invalid argument "{text}" for "{shown}" flag: strconv.ParseFloat: '
                f'parsing "{text}": invalid syntax'
            )
    return text


def _shown(flag: Flag) -> str:
    return f"-{flag.short}, --{flag.name}" if flag.short else f"--{flag.name}"


def parse(argv: list[str], flags: list[Flag], *, interspersed: bool = True) -> Parsed:
    """Parse ``argv`` against ``flags``; raises FlagError as pflag words it."""
    by_long = {f.name: f for f in flags}
    by_short = {f.short: f for f in flags if f.short}
    values: dict[str, Any] = {}
    for f in flags:
        values[f.dest] = list(f.default or []) if f.kind == "list" else f.default
        if f.kind == "bool" and f.default is None:
            values[f.dest] = False
    args: list[str] = []
    changed: set[str] = set()

    def store(flag: Flag, raw: str) -> None:
        value = _convert(flag, raw, _shown(flag))
        if flag.kind == "list":
            if flag.dest not in changed:
                values[flag.dest] = []
            values[flag.dest].append(value)
        else:
            values[flag.dest] = value
        changed.add(flag.dest)

    i = 0
    while i < len(argv):
        arg = argv[i]
        i += 1
        if arg == "--":
            args.extend(argv[i:])
            break
        if arg.startswith("--") and len(arg) > 2:
            name, eq, raw = arg[2:].partition("=")
            flag = by_long.get(name)
            if flag is None:
                if name == "help":
                    raise HelpRequested()
                raise FlagError(f"unknown flag: --{name}")
            if eq:
                store(flag, raw)
            elif flag.kind == "bool":
                store(flag, "true")
            elif i < len(argv):
                store(flag, argv[i])
                i += 1
            else:
                raise FlagError(f"flag needs an argument: --{name}")
        elif arg.startswith("-") and len(arg) > 1:
            shorts = arg[1:]
            j = 0
            while j < len(shorts):
                ch = shorts[j]
                flag = by_short.get(ch)
                if flag is None:
                    if ch == "h" and "help" not in by_long:
                        raise HelpRequested()
                    raise FlagError(f"unknown shorthand flag: '{ch}' in -{shorts}")
                rest = shorts[j + 1 :]
                if flag.kind == "bool":
                    if rest.startswith("="):
                        store(flag, rest[1:])
                        break
                    store(flag, "true")
                    j += 1
                    continue
                if rest.startswith("="):
                    store(flag, rest[1:])
                elif rest:
                    store(flag, rest)
                elif i < len(argv):
                    store(flag, argv[i])
                    i += 1
                else:
                    raise FlagError(f"flag needs an argument: '{ch}' in -{shorts}")
                break
        else:
            args.append(arg)
            if not interspersed:
                args.extend(argv[i:])
                break
    return Parsed(values, args, changed)


class HelpRequested(Exception):
    """``--help`` / ``-h`` was given: print the usage and exit 0."""


def usage_text(usage: str, short: str, flags: list[Flag], *, aliases: str = "") -> str:
    """The ``--help`` page in the docker CLI's layout."""
    lines = [f"\nUsage:  {usage}\n", short, ""]
    if aliases:
        lines += ["Aliases:", f"  {aliases}", ""]
    visible = [f for f in flags if not f.hidden]
    if visible:
        lines.append("Options:")
        cols = []
        for f in visible:
            head = f"  -{f.short}, --{f.name}" if f.short else f"      --{f.name}"
            if f.kind != "bool":
                head += " " + {"int": "int", "list": "list", "float": "float"}.get(f.kind, "string")
            cols.append((head, f.help))
        width = max(len(h) for h, _ in cols) + 3
        lines += [h.ljust(width) + text for h, text in cols]
    return "\n".join(lines) + "\n"
