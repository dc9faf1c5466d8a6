"""Helpers every command uses: flag parsing with the docker CLI's usage
errors, ``--format`` rendering, per-object error reporting."""

from __future__ import annotations

from dockyard.cli.flags import Flag, FlagError, HelpRequested, Parsed, parse, usage_text
from dockyard.cli.main import PROG, Cli, ExitError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping
    from typing import Any

FORMAT = Flag("format", "", "str", None, "Format output using a custom template")


def parse_args(
    cli: Cli,
    argv: list[str],
    flags: list[Flag],
    usage: str,
    *,
    short: str = "",
    min_args: int = 0,
    max_args: int | None = None,
    interspersed: bool = True,
) -> Parsed:
    """Parse a command's flags; usage errors exit as docker's do
    (125 for a bad flag, 1 for a wrong number of arguments)."""
    full = f"{PROG} {cli.command}"
    shown_usage = f"{PROG} {usage}"
    try:
        parsed = parse(argv, flags, interspersed=interspersed)
    except HelpRequested:
        cli.out.write(usage_text(shown_usage, short, flags))
        raise ExitError(0)
    except FlagError as exc:
        raise ExitError(
            125,
            f"{exc.message}\n\nUsage:  {shown_usage}\n\nRun '{full} --help' for more information",
        )
    n = len(parsed.args)
    words = None
    if max_args is not None and min_args == max_args and n != min_args:
        plural = "argument" if min_args == 1 else "arguments"
        words = f"requires {min_args} {plural}", "Run"
        if min_args == 0:
            words = "accepts no arguments", "Run"
    elif n < min_args:
        plural = "argument" if min_args == 1 else "arguments"
        words = f"requires at least {min_args} {plural}", "See"
    elif max_args is not None and n > max_args:
        plural = "argument" if max_args == 1 else "arguments"
        words = f"requires at most {max_args} {plural}", "See"
    if words:
        text, verb = words
        raise ExitError(
            1,
            f"{PROG}: '{full}' {text}\n\nUsage:  {shown_usage}\n\n"
            f"{verb} '{full} --help' for more information",
        )
    return parsed


def render(cli: Cli, fmt: str, rows: Iterable[Any], headers: Mapping[str, str]) -> None:
    """Write rows with a ``--format``; template errors exit 1."""
    from dockyard.cli.formatter import FormatError
    from dockyard.cli.formatter import render as do_render

    try:
        cli.out.write(do_render(fmt, rows, headers))
    except FormatError as exc:
        raise ExitError(1, exc.message)


def each(cli: Cli, names: Iterable[str], action: Callable[[str], Any], *,
         echo: bool = True) -> list[str]:  # fmt: skip
    """Run ``action`` on each name; print the name (or the result) on
    success and the daemon's error on failure; return the failed names."""
    from dockyard.errdefs import DockyardError

    failed: list[str] = []
    for name in names:
        try:
            result = action(name)
        except DockyardError as exc:
            cli.err.write(f"Error response from daemon: {exc.message}\n")
            failed.append(name)
            continue
        if echo:
            cli.out.write(f"{result if isinstance(result, str) else name}\n")
    return failed


def parse_filters(items: list[str]) -> dict[str, list[str]]:
    """``-f key=value`` flags into the API's filters map."""
    filters: dict[str, list[str]] = {}
    for item in items:
        key, eq, value = item.partition("=")
        if not eq:
            raise ExitError(
                125,
                f'invalid argument "{item}" for "-f, --filter" flag: bad format of filter '
                "(expected name=value)",
            )
        filters.setdefault(key.strip().lower(), []).append(value)
    return filters


def filters_param(filters: Mapping[str, list[str]]) -> str | None:
    """The ``filters`` query value: JSON of {key: {value: true}} (docker's form)."""
    if not filters:
        return None
    import json

    return json.dumps({k: dict.fromkeys(v, True) for k, v in filters.items()})


PRUNE_FLAGS = [
    Flag("filter", "", "list", help='Provide filter values (e.g. "until=<timestamp>")'),
    Flag("force", "f", "bool", help="Do not prompt for confirmation"),
]


def confirm(cli: Cli, warning: str) -> bool:
    """Docker's prune prompt: the warning, then "[y/N]" read from stdin."""
    cli.out.write(f"WARNING! {warning}\nAre you sure you want to continue? [y/N] ")
    cli.out.flush()
    import sys

    answer = sys.stdin.readline().strip().lower() if sys.stdin else ""
    return answer in ("y", "yes")


def dump_objects(cli: Cli, items: list[Any], fmt: str | None) -> None:
    """``inspect`` output: a JSON array, or each item through ``--format``
    (exit 64 for a template that does not parse, 1 for one that fails)."""
    if not fmt:
        import json

        cli.out.write(json.dumps(items, indent=4, ensure_ascii=False) + "\n")
        return
    from dockyard.cli.template import TemplateError, parse

    try:
        tmpl = parse(fmt.replace("\\t", "\t").replace("\\n", "\n"))
    except TemplateError as exc:
        raise ExitError(64, f"template parsing error: {exc.message}")
    for item in items:
        try:
            cli.out.write(tmpl.execute(item) + "\n")
        except TemplateError as exc:
            raise ExitError(1, f"template parsing error: {exc.message}")
