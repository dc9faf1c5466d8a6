"""``dockyard build``: send a build context to ``POST /build`` and show the
classic builder's progress as the docker CLI does.

The context is a directory (tarred here, minus what ``.dockerignore``
excludes; the Dockerfile and ``.dockerignore`` always go), a tarball (sent
as it is), or ``-`` (stdin: a tar or a bare Dockerfile). The tar is spooled
to a temporary file and sent with ``sendfile``, so a large context is never
held in memory.
"""

from __future__ import annotations

import json
import os
import secrets
import sys
import tarfile
import tempfile
from typing import Any, BinaryIO

from dockyard.cli.common import parse_args
from dockyard.cli.flags import Flag
from dockyard.cli.main import Cli, ExitError
from dockyard.errdefs import DockyardError

USAGE = "build [OPTIONS] PATH | URL | -"


def context_tar(directory: str, dockerfile: str, out: BinaryIO) -> str:
    """Tar ``directory`` into ``out`` applying its ``.dockerignore``; returns
    the Dockerfile's name inside the archive (a Dockerfile outside the
    directory is added under a random name, as the docker CLI does)."""
    from dockyard.builder import dockerignore

    patterns: list[str] = []
    ignore_path = os.path.join(directory, ".dockerignore")
    if os.path.isfile(ignore_path):
        with open(ignore_path, encoding="utf-8", errors="replace") as f:
            patterns = dockerignore.read_patterns(f.read())
    matcher = dockerignore.PatternMatcher(patterns)
    dockerfile_path = os.path.abspath(dockerfile or os.path.join(directory, "Dockerfile"))
    root = os.path.abspath(directory)
    inside = dockerfile_path.startswith(root + os.sep)
    name = (
        os.path.relpath(dockerfile_path, root) if inside else f".dockerfile.{secrets.token_hex(10)}"
    )
    keep = set(dockerignore.always_sent(name))
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        for dirpath, dirnames, filenames in os.walk(root):
            rel_dir = os.path.relpath(dirpath, root)
            rel_dir = "" if rel_dir == "." else rel_dir
            kept_dirs = []
            for d in sorted(dirnames):
                rel = os.path.join(rel_dir, d)
                if matcher.matches(rel):
                    if matcher.may_match_inside(rel):
                        kept_dirs.append(d)  # entered, but not archived itself
                    continue
                kept_dirs.append(d)
                _add(tar, os.path.join(dirpath, d), rel)
            dirnames[:] = kept_dirs
            for f in sorted(filenames):
                rel = os.path.join(rel_dir, f)
                if rel in keep or not matcher.matches(rel):
                    _add(tar, os.path.join(dirpath, f), rel)
        if not inside:
            _add(tar, dockerfile_path, name)
    return name


def _add(tar: tarfile.TarFile, path: str, name: str) -> None:
    info = tar.gettarinfo(path, name)
    info.uid = info.gid = 0  # the daemon's COPY sets owners itself
    info.uname = info.gname = ""
    if info.isreg():
        with open(path, "rb") as f:
            tar.addfile(info, f)
    elif info.isdir() or info.issym() or info.islnk():
        tar.addfile(info)


def _build_args(values: list[str]) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for item in values:
        key, sep, value = item.partition("=")
        out[key] = value if sep else os.environ.get(key)
    return out


def _labels(values: list[str]) -> dict[str, str]:
    out = {}
    for item in values:
        key, _, value = item.partition("=")
        out[key] = value
    return out


def _send(cli: Cli, params: dict[str, Any], body: BinaryIO, size: int):
    from dockyard.client.api import error_for, query
    from dockyard.client.http import Response

    client = cli.client
    sock = client.endpoint.connect()
    head = (
        f"POST /v{client.version}/build{query(params)} HTTP/1.1\r\nHost: docker\r\n"
        "User-Agent: Docker-Client/28.2.2\r\nContent-Type: application/x-tar\r\n"
        f"Content-Length: {size}\r\n\r\n"
    )
    sock.sendall(head.encode("latin-1"))
    body.seek(0)
    sock.sendfile(body)  # type: ignore[arg-type]
    response = Response(sock)
    if response.status >= 400:
        raise error_for(response.status, response.read())
    return response


def cmd_build(cli: Cli, argv: list[str]) -> int:
    from dockyard import units

    flags = [
        Flag("tag", "t", "list", help="Name and optionally a tag in the 'name:tag' format"),
        Flag("file", "f", "str", help="Name of the Dockerfile (Default is 'PATH/Dockerfile')"),
        Flag("build-arg", "", "list", help="Set build-time variables"),
        Flag("target", "", "str", help="Set the target build stage to build."),
        Flag("no-cache", "", "bool", help="Do not use cache when building the image"),
        Flag("pull", "", "bool", help="Always attempt to pull a newer version of the image"),
        Flag("quiet", "q", "bool", help="Suppress the build output and print image ID on success"),
        Flag("label", "", "list", help="Set metadata for an image"),
        Flag("iidfile", "", "str", help="Write the image ID to the file"),
        Flag("network", "", "str", help="Set the networking mode for the RUN instructions"),
        Flag("add-host", "", "list", help="Add a custom host-to-IP mapping (host:ip)"),
        Flag("shm-size", "", "str", help="Size of /dev/shm"),
        Flag("memory", "m", "str", help="Memory limit"),
        Flag("cpuset-cpus", "", "str", help="CPUs in which to allow execution (0-3, 0,1)"),
        Flag("rm", "", "bool", default=True, help="Remove intermediate containers"),
        Flag("force-rm", "", "bool", help="Always remove intermediate containers"),
        Flag("platform", "", "str", help="Set platform if server is multi-platform capable"),
    ]
    opts = parse_args(cli, argv, flags, USAGE, min_args=1, max_args=1)
    source = opts.args[0]
    params: dict[str, Any] = {
        "t": opts.tag or None,
        "target": opts.target or None,
        "nocache": "1" if opts.no_cache else None,
        "pull": "1" if opts.pull else None,
        "q": "1" if opts.quiet else None,
        "rm": "1" if opts.rm else "0",
        "forcerm": "1" if opts.force_rm else None,
        "networkmode": opts.network or None,
        "platform": opts.platform or None,
        "cpusetcpus": opts.cpuset_cpus or None,
        "buildargs": json.dumps(_build_args(opts.build_arg)) if opts.build_arg else None,
        "labels": json.dumps(_labels(opts.label)) if opts.label else None,
        "extrahosts": ",".join(opts.add_host) if opts.add_host else None,
        "shmsize": units.ram_in_bytes(opts.shm_size) if opts.shm_size else None,
        "memory": units.ram_in_bytes(opts.memory) if opts.memory else None,
    }
    with tempfile.TemporaryFile(prefix="dockyard-build-") as body:
        if source == "-":
            while chunk := sys.stdin.buffer.read(1 << 20):
                body.write(chunk)
            if opts.file:
                params["dockerfile"] = opts.file
        elif os.path.isdir(source):
            if opts.file == "-":
                raise ExitError(1, "reading a Dockerfile from stdin is not supported")
            dockerfile = opts.file
            if dockerfile and not os.path.isabs(dockerfile) and not os.path.exists(dockerfile):
                dockerfile = os.path.join(source, dockerfile)
            wanted = dockerfile or os.path.join(source, "Dockerfile")
            if not os.path.isfile(wanted):
                missing = os.path.abspath(wanted)
                raise ExitError(
                    1,
                    f"unable to prepare context: unable to evaluate symlinks in Dockerfile "
                    f"path: lstat {missing}: no such file or directory",
                )
            params["dockerfile"] = context_tar(source, dockerfile or "", body)
        elif os.path.isfile(source):
            with open(source, "rb") as f:
                while chunk := f.read(1 << 20):
                    body.write(chunk)
            if opts.file:
                params["dockerfile"] = opts.file
        else:
            raise ExitError(1, f"unable to prepare context: path {source!r} not found")
        size = body.tell()
        if not opts.quiet:
            cli.out.write(f"Sending build context to Docker daemon  {units.human_size(size)}\n\n")
            cli.out.flush()
        try:
            response = _send(cli, params, body, size)
        except DockyardError as exc:
            raise ExitError(1, f"Error response from daemon: {exc.message}")
        image_id = ""
        error = ""
        for line in response.iter_lines():
            try:
                message = json.loads(line)
            except ValueError:
                continue
            if message.get("error"):
                error = message["error"]
                break
            if "aux" in message:
                image_id = (message["aux"] or {}).get("ID", image_id)
            elif "stream" in message and not opts.quiet:
                cli.out.write(message["stream"])
                cli.out.flush()
        response.close()
    if error:
        cli.err.write(error + "\n")
        return 1
    if opts.quiet:
        cli.out.write(image_id + "\n")
    if opts.iidfile:
        with open(opts.iidfile, "w") as f:
            f.write(image_id)
    return 0


def cmd_prune(cli: Cli, argv: list[str]) -> int:
    from dockyard import units
    from dockyard.cli.common import confirm

    flags = [
        Flag("all", "a", "bool", help="Remove all unused build cache, not just dangling ones"),
        Flag("force", "f", "bool", help="Do not prompt for confirmation"),
        Flag("filter", "", "list", help="Provide filter values (e.g. 'until=24h')"),
    ]
    opts = parse_args(cli, argv, flags, "builder prune", max_args=0)
    warning = (
        "WARNING! This will remove all dangling build cache. Are you sure you want to continue?"
    )
    if not opts.force and not confirm(cli, warning):
        return 0
    result = cli.client.post("/build/prune", {"all": "1" if opts.all else None}) or {}
    deleted = result.get("CachesDeleted") or []
    if deleted:
        cli.out.write("Deleted build cache objects:\n")
        for item in deleted:
            cli.out.write(f"{item}\n")
        cli.out.write("\n")
    cli.out.write(f"Total reclaimed space: {units.human_size(result.get('SpaceReclaimed') or 0)}\n")
    return 0
