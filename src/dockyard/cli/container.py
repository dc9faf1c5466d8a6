"""Container commands that need no attach: ps, stop, kill, restart, rm,
logs, wait, rename, prune, inspect."""

from __future__ import annotations

from typing import Any

from dockyard.cli.common import (
    PRUNE_FLAGS,
    confirm,
    dump_objects,
    each,
    filters_param,
    parse_args,
    parse_filters,
    render,
)
from dockyard.cli.flags import Flag
from dockyard.cli.main import Cli, ExitError
from dockyard.errdefs import DockyardError, NotFound

DEFAULT_PS_FORMAT = (
    "table {{.ID}}\t{{.Image}}\t{{.Command}}\t{{.RunningFor}}\t{{.Status}}\t{{.Ports}}\t{{.Names}}"
)

PS_FLAGS = [
    Flag("all", "a", "bool", help="Show all containers (default shows just running)"),
    Flag("filter", "f", "list", help="Filter output based on conditions provided"),
    Flag("format", "", "str", help="Format output using a custom template"),
    Flag("last", "n", "int", -1, help="Show n last created containers (includes all states)"),
    Flag("latest", "l", "bool", help="Show the latest created container (includes all states)"),
    Flag("no-trunc", "", "bool", help="Don't truncate output"),
    Flag("quiet", "q", "bool", help="Only display container IDs"),
    Flag("size", "s", "bool", help="Display total file sizes"),
]


def ps_format(fmt: str | None, *, quiet: bool, size: bool) -> str:
    """formatter.NewContainerFormat."""
    if not fmt or fmt == "table":
        if quiet:
            return "{{.ID}}"
        return DEFAULT_PS_FORMAT + ("\t{{.Size}}" if size else "")
    if fmt == "raw":
        return "container_id: {{.ID}}\nimage: {{.Image}}\ncommand: {{.Command}}\n" + (
            "created_at: {{.CreatedAt}}\nstate: {{- pad .State 1 0}}\n"
            "status: {{- pad .Status 1 0}}\nnames: {{.Names}}\nlabels: {{- pad .Labels 1 0}}\n"
            "ports: {{- pad .Ports 1 0}}\n"
        )
    return fmt


def cmd_ps(cli: Cli, argv: list[str]) -> int:
    from dockyard.cli.formatter import ContainerContext
    from dockyard.cli.template import TemplateError, parse

    opts = parse_args(cli, argv, PS_FLAGS, "ps [OPTIONS]", max_args=0)
    size = opts.size
    if opts.format:
        try:
            parse(opts.format.removeprefix("table")).execute(ContainerContext({}))
        except TemplateError as exc:
            word = "parse" if exc.message.count(":") < 3 else "execute"
            raise ExitError(1, f"failed to {word} template: {exc.message}")
        if not opts.quiet and "size" not in opts.changed and ".Size" in opts.format:
            size = True
    limit = opts.last
    if opts.latest and limit == -1:
        limit = 1
    params: dict[str, Any] = {
        "all": True if (opts.all or limit > 0) else None,
        "limit": limit if limit > 0 else None,
        "size": True if size else None,
        "filters": filters_param(parse_filters(opts.filter)),
    }
    containers = cli.client.get("/containers/json", params)
    fmt = ps_format(opts.format, quiet=opts.quiet, size=size)
    rows = [ContainerContext(c, trunc=not opts.no_trunc) for c in containers]
    render(cli, fmt, rows, ContainerContext.HEADERS)
    return 0


def _finish(failed: list[str], message: str | None = None) -> int:
    if failed and message:
        raise ExitError(1, message)
    return 1 if failed else 0


def cmd_stop(cli: Cli, argv: list[str]) -> int:
    flags = [
        Flag("signal", "s", "str", help="Signal to send to the container"),
        Flag("time", "t", "int", help="Seconds to wait before killing the container"),
    ]
    opts = parse_args(cli, argv, flags, "stop [OPTIONS] CONTAINER [CONTAINER...]", min_args=1)
    params = {"t": opts.time, "signal": opts.signal}
    return _finish(each(cli, opts.args, lambda n: cli.client.post(f"/containers/{n}/stop", params)))


def cmd_restart(cli: Cli, argv: list[str]) -> int:
    flags = [
        Flag("signal", "s", "str", help="Signal to send to the container"),
        Flag("time", "t", "int", help="Seconds to wait before killing the container"),
    ]
    opts = parse_args(cli, argv, flags, "restart [OPTIONS] CONTAINER [CONTAINER...]", min_args=1)
    params = {"t": opts.time, "signal": opts.signal}
    return _finish(
        each(cli, opts.args, lambda n: cli.client.post(f"/containers/{n}/restart", params))
    )


def cmd_kill(cli: Cli, argv: list[str]) -> int:
    flags = [Flag("signal", "s", "str", help="Signal to send to the container")]
    opts = parse_args(cli, argv, flags, "kill [OPTIONS] CONTAINER [CONTAINER...]", min_args=1)
    params = {"signal": opts.signal}
    return _finish(each(cli, opts.args, lambda n: cli.client.post(f"/containers/{n}/kill", params)))


def cmd_rm(cli: Cli, argv: list[str]) -> int:
    flags = [
        Flag("force", "f", "bool", help="Force the removal of a running container (uses SIGKILL)"),
        Flag("link", "l", "bool", help="Remove the specified link"),
        Flag("volumes", "v", "bool", help="Remove anonymous volumes associated with the container"),
    ]
    opts = parse_args(cli, argv, flags, "rm [OPTIONS] CONTAINER [CONTAINER...]", min_args=1)
    params = {
        "force": True if opts.force else None,
        "v": True if opts.volumes else None,
        "link": True if opts.link else None,
    }
    failed = 0
    for name in opts.args:
        if not name.strip("/"):
            cli.err.write("Error: Container name cannot be empty\n")
            failed += 1
            continue
        try:
            cli.client.delete(f"/containers/{name}", params)
        except DockyardError as exc:
            cli.err.write(f"Error response from daemon: {exc.message}\n")
            # docker rm -f reports a missing container but does not fail
            failed += 0 if (opts.force and isinstance(exc, NotFound)) else 1
            continue
        cli.out.write(name + "\n")
    return 1 if failed else 0


def cmd_wait(cli: Cli, argv: list[str]) -> int:
    opts = parse_args(cli, argv, [], "wait CONTAINER [CONTAINER...]", min_args=1)

    def wait(name: str) -> str:
        result = cli.client.post(f"/containers/{name}/wait") or {}
        return str(result.get("StatusCode", 0))

    return _finish(each(cli, opts.args, wait))


def cmd_rename(cli: Cli, argv: list[str]) -> int:
    opts = parse_args(cli, argv, [], "rename CONTAINER NEW_NAME", min_args=2, max_args=2)
    old, new = opts.args[0].strip(), opts.args[1].strip()
    if not old or not new:
        raise ExitError(1, "Error: Neither old nor new names may be empty")
    cli.client.post(f"/containers/{old}/rename", {"name": new})
    return 0


def cmd_prune(cli: Cli, argv: list[str]) -> int:
    from dockyard import units

    opts = parse_args(cli, argv, PRUNE_FLAGS, "container prune [OPTIONS]", max_args=0)
    if not opts.force and not confirm(cli, "This will remove all stopped containers."):
        return 0
    report = (
        cli.client.post("/containers/prune", {"filters": filters_param(parse_filters(opts.filter))})
        or {}
    )
    deleted = report.get("ContainersDeleted") or []
    if deleted:
        cli.out.write("Deleted Containers:\n" + "".join(f"{i}\n" for i in deleted) + "\n")
    reclaimed = report.get("SpaceReclaimed", 0) if deleted else 0
    cli.out.write(f"Total reclaimed space: {units.human_size(reclaimed)}\n")
    return 0


# --- logs ----------------------------------------------------------------------


def _timestamp(value: str | None, now: float) -> str | None:
    """timetypes.GetTimestamp: a Go duration ("10m") before now, RFC 3339,
    or seconds since the epoch."""
    if not value:
        return None
    import re

    if re.fullmatch(r"\d+(\.\d+)?", value):
        return value
    dur = re.fullmatch(r"((\d+(\.\d+)?)(ns|us|µs|ms|s|m|h))+", value)
    if dur:
        scale = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600}
        total = sum(
            float(n) * scale[u]
            for n, _, u in re.findall(r"(\d+(\.\d+)?)(ns|us|µs|ms|s|m|h)", value)
        )
        return f"{now - total:.9f}".rstrip("0").rstrip(".")
    from dockyard.units import parse_time

    try:
        moment = parse_time(value)
    except ValueError:
        moment = None
    if moment is None:
        raise ExitError(
            1, f'invalid value for "since": failed to parse value as time or duration: "{value}"'
        )
    return f"{moment.timestamp():.9f}".rstrip("0").rstrip(".")


def cmd_logs(cli: Cli, argv: list[str]) -> int:
    import time

    flags = [
        Flag("details", "", "bool", help="Show extra details provided to logs"),
        Flag("follow", "f", "bool", help="Follow log output"),
        Flag("since", "", "str", help="Show logs since timestamp or relative"),
        Flag("tail", "n", "str", "all", help="Number of lines to show from the end of the logs"),
        Flag("timestamps", "t", "bool", help="Show timestamps"),
        Flag("until", "", "str", help="Show logs before a timestamp or relative"),
    ]
    opts = parse_args(cli, argv, flags, "logs [OPTIONS] CONTAINER", min_args=1, max_args=1)
    name = opts.args[0]
    info = cli.client.get(f"/containers/{name}/json")
    now = time.time()
    params = {
        "stdout": True,
        "stderr": True,
        "follow": True if opts.follow else None,
        "since": _timestamp(opts.since, now),
        "until": _timestamp(opts.until, now),
        "timestamps": True if opts.timestamps else None,
        "tail": opts.tail,
        "details": True if opts.details else None,
    }
    resp = cli.client.raw("GET", f"/containers/{name}/logs", params)
    tty = bool((info.get("Config") or {}).get("Tty"))
    copy_stream(cli, resp.iter_chunks(), tty=tty)
    return 0


def copy_stream(cli: Cli, chunks: Any, *, tty: bool) -> None:
    """Write a (possibly stdcopy-framed) stream to stdout/stderr."""
    out = getattr(cli.out, "buffer", None)
    err = getattr(cli.err, "buffer", None)
    cli.out.flush()

    def write(stream: int, data: bytes) -> None:
        if stream == 2:
            if err is not None:
                err.write(data)
                err.flush()
            else:
                cli.err.write(data.decode("utf-8", "replace"))
        elif out is not None:
            out.write(data)
            out.flush()
        else:
            cli.out.write(data.decode("utf-8", "replace"))

    if tty:
        for chunk in chunks:
            write(1, chunk)
        return
    from dockyard.client.stdcopy import Demuxer

    demux = Demuxer()
    for chunk in chunks:
        for stream, payload in demux.feed(chunk):
            write(stream, payload)


# --- inspect -------------------------------------------------------------------


def inspect_objects(cli: Cli, names: list[str], kind: str, fmt: str | None, *,
                    size: bool = False) -> int:  # fmt: skip
    """Inspect each name as ``kind`` ("container", "image" or "" for any)."""
    found: list[Any] = []
    errors: list[str] = []
    for name in names:
        obj = None
        error = f"Error: No such object: {name}"
        for what, path, params in (
            ("container", f"/containers/{name}/json", {"size": True if size else None}),
            ("image", f"/images/{name}/json", None),
        ):
            if kind not in ("", what):
                continue
            try:
                obj = cli.client.get(path, params)
                break
            except NotFound as exc:
                if kind:
                    error = f"Error response from daemon: {exc.message}"
        if obj is None:
            errors.append(error)
            continue
        found.append(obj)
    if found or not fmt:
        dump_objects(cli, found, fmt)
    if errors:
        raise ExitError(1, "\n".join(errors))
    return 0


def cmd_inspect(cli: Cli, argv: list[str]) -> int:
    flags = [
        Flag("format", "f", "str", help="Format output using a custom template"),
        Flag("size", "s", "bool", help="Display total file sizes if the type is container"),
        Flag("type", "", "str", "", help="Only inspect objects of the given type"),
    ]
    opts = parse_args(cli, argv, flags, "inspect [OPTIONS] NAME|ID [NAME|ID...]", min_args=1)
    if opts.type not in ("", "container", "image"):
        raise ExitError(1, f'"{opts.type}" is not a valid value for --type')
    return inspect_objects(cli, opts.args, opts.type, opts.format, size=opts.size)


def cmd_container_inspect(cli: Cli, argv: list[str]) -> int:
    flags = [
        Flag("format", "f", "str", help="Format output using a custom template"),
        Flag("size", "s", "bool", help="Display total file sizes"),
    ]
    opts = parse_args(
        cli, argv, flags, "container inspect [OPTIONS] CONTAINER [CONTAINER...]", min_args=1
    )
    return inspect_objects(cli, opts.args, "container", opts.format, size=opts.size)
