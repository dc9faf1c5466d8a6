"""Image commands: images, rmi, tag, import, history, image inspect."""

from __future__ import annotations

import sys
from typing import Any

from dockyard.cli.common import filters_param, parse_args, parse_filters, render
from dockyard.cli.flags import Flag
from dockyard.cli.main import Cli, ExitError
from dockyard.errdefs import DockyardError

DEFAULT_IMAGES_FORMAT = "table {{.Repository}}\t{{.Tag}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}"
DIGESTS_IMAGES_FORMAT = (
    "table {{.Repository}}\t{{.Tag}}\t{{.Digest}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}"
)
DEFAULT_HISTORY_FORMAT = "table {{.ID}}\t{{.CreatedSince}}\t{{.CreatedBy}}\t{{.Size}}\t{{.Comment}}"


def split_reference(ref: str) -> tuple[str, str]:
    """(repository, tag) with tag "" when none is given."""
    if "@" in ref:
        return ref, ""
    slash = ref.rfind("/")
    colon = ref.rfind(":")
    if colon > slash:
        return ref[:colon], ref[colon + 1 :]
    return ref, ""


def images_format(fmt: str | None, *, quiet: bool, digests: bool) -> str:
    if not fmt or fmt == "table":
        if quiet:
            return "{{.ID}}"
        return DIGESTS_IMAGES_FORMAT if digests else DEFAULT_IMAGES_FORMAT
    return fmt


def cmd_images(cli: Cli, argv: list[str]) -> int:
    from dockyard.cli.formatter import ImageContext, image_rows

    flags = [
        Flag("all", "a", "bool", help="Show all images (default hides intermediate images)"),
        Flag("digests", "", "bool", help="Show digests"),
        Flag("filter", "f", "list", help="Filter output based on conditions provided"),
        Flag("format", "", "str", help="Format output using a custom template"),
        Flag("no-trunc", "", "bool", help="Don't truncate output"),
        Flag("quiet", "q", "bool", help="Only show image IDs"),
        Flag("tree", "", "bool", help="List multi-platform images as a tree (EXPERIMENTAL)"),
    ]
    opts = parse_args(cli, argv, flags, "images [OPTIONS] [REPOSITORY[:TAG]]", max_args=1)
    filters = parse_filters(opts.filter)
    if opts.args:
        filters.setdefault("reference", []).append(opts.args[0])
    params = {"all": True if opts.all else None, "filters": filters_param(filters)}
    images = cli.client.get("/images/json", params)
    rows = image_rows(images, digests=opts.digests, trunc=not opts.no_trunc)
    fmt = images_format(opts.format, quiet=opts.quiet, digests=opts.digests)
    render(cli, fmt, rows, ImageContext.HEADERS)
    return 0


def cmd_rmi(cli: Cli, argv: list[str]) -> int:
    flags = [
        Flag("force", "f", "bool", help="Force removal of the image"),
        Flag("no-prune", "", "bool", help="Do not delete untagged parents"),
    ]
    opts = parse_args(cli, argv, flags, "rmi [OPTIONS] IMAGE [IMAGE...]", min_args=1)
    params = {"force": True if opts.force else None, "noprune": True if opts.no_prune else None}
    failed = False
    for name in opts.args:
        try:
            items = cli.client.delete(f"/images/{name}", params) or []
        except DockyardError as exc:
            cli.err.write(f"Error response from daemon: {exc.message}\n")
            failed = True
            continue
        for item in items:
            if item.get("Untagged"):
                cli.out.write(f"Untagged: {item['Untagged']}\n")
            if item.get("Deleted"):
                cli.out.write(f"Deleted: {item['Deleted']}\n")
    return 1 if failed else 0


def cmd_tag(cli: Cli, argv: list[str]) -> int:
    opts = parse_args(
        cli, argv, [], "tag SOURCE_IMAGE[:TAG] TARGET_IMAGE[:TAG]", min_args=2, max_args=2
    )
    repo, tag = split_reference(opts.args[1])
    cli.client.post(f"/images/{opts.args[0]}/tag", {"repo": repo, "tag": tag or "latest"})
    return 0


def print_progress(cli: Cli, messages: Any) -> dict[str, Any]:
    """jsonmessage.DisplayJSONMessagesStream, without the terminal tricks;
    returns the last message, raises on an ``error`` message."""
    last: dict[str, Any] = {}
    for msg in messages:
        last = msg
        if msg.get("error"):
            raise ExitError(1, msg["error"])
        status = msg.get("status") or msg.get("stream")
        if status is None:
            continue
        line = f"{msg['id']}: {status}" if msg.get("id") else status
        if msg.get("progress"):
            line += " " + msg["progress"]
        cli.out.write(line if line.endswith("\n") else line + "\n")
    return last


def cmd_import(cli: Cli, argv: list[str]) -> int:
    flags = [
        Flag("change", "c", "list", help="Apply Dockerfile instruction to the created image"),
        Flag("message", "m", "str", help="Set commit message for imported image"),
        Flag("platform", "", "str", help="Set platform if server is multi-platform capable"),
    ]
    opts = parse_args(
        cli, argv, flags, "import [OPTIONS] file|URL|- [REPOSITORY[:TAG]]", min_args=1, max_args=2
    )
    source = opts.args[0]
    repo, tag = split_reference(opts.args[1]) if len(opts.args) > 1 else ("", "")
    params: dict[str, Any] = {
        "fromSrc": source,
        "repo": repo or None,
        "tag": tag or None,
        "message": opts.message,
        "changes": opts.change or None,
        "platform": opts.platform,
    }
    data = b""
    if source == "-":
        data = sys.stdin.buffer.read()
    elif "://" not in source:
        try:
            with open(source, "rb") as fh:
                data = fh.read()
        except OSError as exc:
            raise ExitError(1, f"open {source}: {exc.strerror.lower() if exc.strerror else exc}")
        params["fromSrc"] = "-"
    headers = {"Content-Type": "application/x-tar"} if params["fromSrc"] == "-" else {}
    print_progress(
        cli,
        cli.client.stream_json("POST", "/images/create", params, data=data, headers=headers),
    )
    return 0


def cmd_history(cli: Cli, argv: list[str]) -> int:
    from dockyard.cli.formatter import HistoryContext

    flags = [
        Flag("format", "", "str", help="Format output using a custom template"),
        Flag("human", "H", "bool", True, help="Print sizes and dates in human readable format"),
        Flag("no-trunc", "", "bool", help="Don't truncate output"),
        Flag("platform", "", "str", help="Show history for the given platform"),
        Flag("quiet", "q", "bool", help="Only show image IDs"),
    ]
    opts = parse_args(cli, argv, flags, "history [OPTIONS] IMAGE", min_args=1, max_args=1)
    items = cli.client.get(f"/images/{opts.args[0]}/history") or []
    fmt = opts.format
    if not fmt or fmt == "table":
        fmt = "{{.ID}}" if opts.quiet else DEFAULT_HISTORY_FORMAT
    rows = [HistoryContext(h, trunc=not opts.no_trunc, human=opts.human) for h in items]
    headers = dict(HistoryContext.HEADERS)
    if not opts.human:
        headers["CreatedSince"] = "CREATED AT"
    render(cli, fmt, rows, headers)
    return 0


def cmd_image_inspect(cli: Cli, argv: list[str]) -> int:
    from dockyard.cli.container import inspect_objects

    flags = [Flag("format", "f", "str", help="Format output using a custom template")]
    opts = parse_args(cli, argv, flags, "image inspect [OPTIONS] IMAGE [IMAGE...]", min_args=1)
    return inspect_objects(cli, opts.args, "image", opts.format)
