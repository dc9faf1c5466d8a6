"""Image tools: ``diff``, ``commit``, ``export``, ``cp`` and ``image prune``,
with the docker CLI's flags, output and exit codes.

``cp`` follows the docker CLI's client side (cli/command/container/cp.go and
moby's archive.CopyTo rules): ``CONTAINER:PATH`` on one side, a local path
or ``-`` (a tar on stdin/stdout) on the other; a trailing ``/.`` copies a
directory's contents; ``-L`` follows a symlink source; ``-a`` keeps owners
(else files copied in belong to root). Archives are built in memory: the
client sends request bodies whole.
"""

from __future__ import annotations

import os
import sys

from dockyard.cli.common import PRUNE_FLAGS, confirm, filters_param, parse_args, parse_filters
from dockyard.cli.flags import Flag
from dockyard.cli.main import Cli, ExitError
from dockyard.errdefs import DockyardError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


def cmd_diff(cli: Cli, argv: list[str]) -> int:
    opts = parse_args(cli, argv, [], "diff CONTAINER", min_args=1, max_args=1)
    found = cli.client.get(f"/containers/{opts.args[0]}/changes") or []
    cli.out.write("".join(f"{'CAD'[c['Kind']]} {c['Path']}\n" for c in found))
    return 0


def cmd_commit(cli: Cli, argv: list[str]) -> int:
    flags = [
        Flag(
            "author", "a", "str", help='Author (e.g., "John Hannibal Smith <hannibal@a-team.com>")'
        ),
        Flag("change", "c", "list", help="Apply Dockerfile instruction to the created image"),
        Flag("message", "m", "str", help="Commit message"),
        Flag("pause", "p", "bool", True, help="Pause container during commit"),
        Flag("no-pause", "", "bool", help="Disable pausing container during commit"),
    ]
    opts = parse_args(
        cli, argv, flags, "commit [OPTIONS] CONTAINER [REPOSITORY[:TAG]]", min_args=1, max_args=2
    )
    from dockyard.cli.image import split_reference

    repo, tag = split_reference(opts.args[1]) if len(opts.args) > 1 else ("", "")
    params: dict[str, Any] = {
        "container": opts.args[0],
        "repo": repo or None,
        "tag": tag or None,
        "comment": opts.message or None,
        "author": opts.author or None,
        "pause": "0" if (opts.no_pause or not opts.pause) else "1",
        "changes": opts.change or None,
    }
    result = cli.client.post("/commit", params, body={}) or {}
    cli.out.write(f"{result.get('Id', '')}\n")
    return 0


def cmd_export(cli: Cli, argv: list[str]) -> int:
    flags = [Flag("output", "o", "str", help="Write to a file, instead of STDOUT")]
    opts = parse_args(cli, argv, flags, "export [OPTIONS] CONTAINER", min_args=1, max_args=1)
    if not opts.output and sys.stdout.isatty():
        raise ExitError(1, "cowardly refusing to save to a terminal. Use the -o flag or redirect")
    resp = cli.client.raw("GET", f"/containers/{opts.args[0]}/export")
    _write_stream(resp.iter_chunks(), opts.output)
    return 0


def _write_stream(chunks, output: str | None) -> None:
    if output:
        tmp = f"{output}.tmp-{os.getpid()}"
        try:
            with open(tmp, "wb") as f:
                for chunk in chunks:
                    f.write(chunk)
            os.replace(tmp, output)
        except OSError as exc:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise ExitError(1, f"failed to save: {exc.strerror or exc}")
        return
    out = sys.stdout.buffer
    for chunk in chunks:
        out.write(chunk)
    out.flush()


def cmd_image_prune(cli: Cli, argv: list[str]) -> int:
    from dockyard import units

    flags = [Flag("all", "a", "bool", help="Remove all unused images, not just dangling ones")]
    opts = parse_args(cli, argv, [*flags, *PRUNE_FLAGS], "image prune [OPTIONS]", max_args=0)
    filters = parse_filters(opts.filter)
    if opts.all:
        filters["dangling"] = ["false"]
    warning = (
        "This will remove all images without at least one container associated to them."
        if opts.all
        else "This will remove all dangling images."
    )
    if not opts.force and not confirm(cli, warning):
        return 0
    report = cli.client.post("/images/prune", {"filters": filters_param(filters)}) or {}
    deleted = report.get("ImagesDeleted") or []
    if deleted:
        lines = [
            f"untagged: {d['Untagged']}\n" if d.get("Untagged") else f"deleted: {d['Deleted']}\n"
            for d in deleted
        ]
        cli.out.write("Deleted Images:\n" + "".join(lines) + "\n")
    reclaimed = report.get("SpaceReclaimed", 0)
    cli.out.write(f"Total reclaimed space: {units.human_size(reclaimed)}\n")
    return 0


# -- cp ----------------------------------------------------------------------------


def _split(arg: str) -> tuple[str, str]:
    """docker's splitCpArg: ("container", "path") or ("", local path)."""
    if arg.startswith(("/", ".")) or ":" not in arg:
        return "", arg
    container, _, path = arg.partition(":")
    return container, path


def cmd_cp(cli: Cli, argv: list[str]) -> int:
    flags = [
        Flag("archive", "a", "bool", help="Archive mode (copy all uid/gid information)"),
        Flag("follow-link", "L", "bool", help="Always follow symbol link in SRC_PATH"),
        Flag("quiet", "q", "bool", help="Suppress progress output during copy"),
    ]
    usage = (
        "cp [OPTIONS] CONTAINER:SRC_PATH DEST_PATH|-\n"
        "\tdocker cp [OPTIONS] SRC_PATH|- CONTAINER:DEST_PATH"
    )
    opts = parse_args(cli, argv, flags, usage, min_args=2, max_args=2)
    src_container, src = _split(opts.args[0])
    dst_container, dst = _split(opts.args[1])
    if src_container and dst_container:
        raise ExitError(1, "copying between containers is not supported")
    if not src_container and not dst_container:
        raise ExitError(1, "must specify at least one container source")
    if src_container:
        if not src:
            raise ExitError(1, "source can not be empty")
        size = _from_container(cli, src_container, src, dst, follow=opts.follow_link)
        shown = dst
    else:
        if not dst:
            raise ExitError(1, "destination can not be empty")
        size = _to_container(cli, src, dst_container, dst, keep_owner=opts.archive)
        shown = f"{dst_container}:{dst}"
    if not opts.quiet and dst != "-":
        from dockyard import units

        cli.err.write(f"Successfully copied {units.human_size(size)} to {shown}\n")
    return 0


def _stat(cli: Cli, container: str, path: str) -> dict[str, Any] | None:
    import base64
    import json

    try:
        resp = cli.client.raw("HEAD", f"/containers/{container}/archive", {"path": path})
    except DockyardError as exc:
        if getattr(exc, "status", 0) == 404:
            return None
        raise
    resp.close()
    header = resp.headers.get("x-docker-container-path-stat", "")
    return json.loads(base64.b64decode(header)) if header else None


_MODE_DIR = 1 << 31
_MODE_SYMLINK = 1 << 27


def _has_trailing(path: str) -> bool:
    return path.endswith("/") or path.endswith("/.") or path == "."


def _from_container(cli: Cli, container: str, src: str, dst: str, *, follow: bool) -> int:
    import posixpath

    rebase = ""
    if follow:
        st = _stat(cli, container, src)
        if st and st["mode"] & _MODE_SYMLINK:
            target = st["linkTarget"]
            if not target.startswith("/"):
                target = posixpath.join(posixpath.dirname(src.rstrip("/")), target)
            rebase = posixpath.basename(src.rstrip("/"))
            src = target
    resp = cli.client.raw("GET", f"/containers/{container}/archive", {"path": src})
    data = resp.read()
    if dst == "-":
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
        return len(data)
    _extract_local(data, dst, rebase)
    return len(data)


def _extract_local(data: bytes, dst: str, rebase: str) -> None:
    """moby's CopyTo: into an existing directory, or as the new name ``dst``."""
    import io
    import tarfile

    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        members = tar.getmembers()
        if not members:
            return
        top = members[0].name.rstrip("/") or "."
        src_is_dir = members[0].isdir()
        if os.path.isdir(dst):
            target_dir, new_top = dst, (rebase or top)
        else:
            if os.path.exists(dst) and src_is_dir:
                raise ExitError(1, f"cannot copy a directory to a file: {dst}")
            if _has_trailing(dst) and not src_is_dir:
                raise ExitError(1, f"destination directory {dst} must exist")
            target_dir = os.path.dirname(os.path.abspath(dst))
            if not os.path.isdir(target_dir):
                raise ExitError(1, f"destination directory {target_dir} must exist")
            new_top = os.path.basename(os.path.abspath(dst))
        if new_top != top:
            for m in members:
                if m.name.rstrip("/") == top or m.name.startswith(top + "/"):
                    m.name = new_top + m.name.rstrip("/")[len(top) :]
        tar.extractall(target_dir, members=members, filter="tar")


def _to_container(cli: Cli, src: str, container: str, dst: str, *, keep_owner: bool) -> int:
    import posixpath

    params: dict[str, Any] = {"copyUIDGID": "true" if keep_owner else None}
    if src == "-":
        data = sys.stdin.buffer.read()
        params.update(path=dst, noOverwriteDirNonDir="true")
        cli.client.raw("PUT", f"/containers/{container}/archive", params, data=data).read()
        return len(data)
    if not os.path.lexists(src):
        raise ExitError(1, f"lstat {os.path.abspath(src)}: no such file or directory")
    st = _stat(cli, container, dst)
    contents = src.endswith("/.") or src == "."
    base = "." if contents else os.path.basename(os.path.abspath(src))
    if st is not None and st["mode"] & _MODE_DIR:
        dest_dir, name = dst, base
    elif st is not None and os.path.isdir(src):
        raise ExitError(1, "Error response from daemon: cannot copy a directory to a file")
    else:
        if st is None and _has_trailing(dst):
            raise ExitError(
                1, f"Error response from daemon: destination directory {dst} must exist"
            )
        dest_dir = posixpath.dirname(dst.rstrip("/")) or "/"
        name = posixpath.basename(dst.rstrip("/"))
    data = _tar_local(src, name, keep_owner=keep_owner)
    params.update(path=dest_dir, noOverwriteDirNonDir="true")
    cli.client.raw("PUT", f"/containers/{container}/archive", params, data=data).read()
    return len(data)


def _tar_local(src: str, name: str, *, keep_owner: bool) -> bytes:
    import io
    import tarfile

    def owner(info: tarfile.TarInfo) -> tarfile.TarInfo:
        if not keep_owner:
            info.uid = info.gid = 0
            info.uname = info.gname = ""
        return info

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        tar.add(src.rstrip("/") if not src.endswith("/.") else src[:-2] or "/", arcname=name,
                filter=owner)  # fmt: skip
    return buf.getvalue()
