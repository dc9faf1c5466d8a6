"""``save`` and ``load``: image archives to and from the daemon, streamed
(an archive is never held in memory whole)."""

from __future__ import annotations

import os
import sys

from dockyard.cli.common import parse_args
from dockyard.cli.flags import Flag
from dockyard.cli.main import Cli, ExitError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator
    from typing import Any, BinaryIO

    from dockyard.client.http import Response

_CHUNK = 1 << 20
_PLATFORM_HELP = 'variant. Formatted as "os[/arch[/variant]]" (e.g., "linux/amd64")'


def _binary_out(cli: Cli) -> BinaryIO:
    return getattr(cli.out, "buffer", None) or sys.stdout.buffer


def cmd_save(cli: Cli, argv: list[str]) -> int:
    flags = [
        Flag("output", "o", "str", help="Write to a file, instead of STDOUT"),
        Flag("platform", "", "str", help="Save only the given platform " + _PLATFORM_HELP),
    ]
    opts = parse_args(cli, argv, flags, "save [OPTIONS] IMAGE [IMAGE...]", min_args=1)
    if not opts.output and cli.out.isatty():
        raise ExitError(1, "cowardly refusing to save to a terminal. Use the -o flag or redirect")
    if opts.output:
        _validate_output(opts.output)
    params = {"names": opts.args, "platform": opts.platform}
    chunks = _checked_tar(cli.client.raw("GET", "/images/get", params).iter_chunks())
    if not opts.output:
        out = _binary_out(cli)
        cli.out.flush()
        for chunk in chunks:
            out.write(chunk)
        out.flush()
        return 0
    _copy_to_file(opts.output, chunks)
    return 0


def _validate_output(path: str) -> None:
    """The docker CLI's ``ValidateOutputPath``: the directory must exist and
    the file, if it exists, must be a regular file we may write."""
    parent = os.path.dirname(os.path.abspath(path))
    prefix = "failed to save image: invalid output path"
    try:
        os.stat(parent)
    except OSError as exc:
        raise ExitError(1, f"{prefix}: stat {os.path.dirname(path)}: {_reason(exc)}")
    if not os.path.isdir(parent):
        raise ExitError(1, f'{prefix}: "{os.path.dirname(path)}" is not a directory')
    if os.path.isdir(path):
        raise ExitError(1, f'{prefix}: "{path}" is a directory')


def _reason(exc: OSError) -> str:
    return (exc.strerror or str(exc)).lower()


def _checked_tar(chunks: Iterator[bytes]) -> Iterator[bytes]:
    """The chunks, and an error at the end when the archive was cut short (a
    daemon that fails mid-stream can only break the stream)."""
    tail = b""
    for chunk in chunks:
        tail = (tail + chunk)[-1024:]
        yield chunk
    if len(tail) < 1024 or tail.count(0) != 1024:
        raise ExitError(1, "unexpected EOF")


def _copy_to_file(path: str, chunks: Iterator[bytes]) -> None:
    """As the docker CLI's ``CopyToFile``: a temp file next to the target,
    renamed into place when complete."""
    import tempfile

    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".docker_temp_", dir=directory)
    try:
        with os.fdopen(fd, "wb") as out:
            for chunk in chunks:
                out.write(chunk)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def cmd_load(cli: Cli, argv: list[str]) -> int:
    from dockyard.cli.image import print_progress

    flags = [
        Flag("input", "i", "str", help="Read from tar archive file, instead of STDIN"),
        Flag("platform", "", "str", help="Load only the given platform " + _PLATFORM_HELP),
        Flag("quiet", "q", "bool", help="Suppress the load output"),
    ]
    opts = parse_args(cli, argv, flags, "load [OPTIONS]", min_args=0, max_args=0)
    if opts.input:
        try:
            source: Any = open(opts.input, "rb")  # noqa: SIM115 - closed below
        except OSError as exc:
            raise ExitError(1, f"open {opts.input}: {_reason(exc)}")
    else:
        if sys.stdin is None or sys.stdin.isatty():
            raise ExitError(1, "requested load from stdin, but stdin is empty")
        source = sys.stdin.buffer
    # As the docker CLI: no progress bars unless they go to a terminal.
    quiet = opts.quiet or not cli.out.isatty()
    try:
        params = {"quiet": quiet, "platform": opts.platform}
        response = _post_stream(cli, "/images/load", params, source)
        lines = response.iter_lines()
        print_progress(cli, (_decode(line) for line in lines))
    finally:
        if opts.input:
            source.close()
    return 0


def _decode(line: bytes) -> dict[str, Any]:
    import json

    try:
        data = json.loads(line)
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _post_stream(cli: Cli, path: str, params: dict[str, Any], source: BinaryIO) -> Response:
    """POST ``source`` as the body, chunked, without reading it whole."""
    from dockyard.client.api import error_for, query
    from dockyard.client.http import Response

    client = cli.client
    url = f"/v{client.version}{path}{query(params)}"
    sock = client.endpoint.connect()
    host = "docker" if client.endpoint.scheme == "unix" else client.endpoint.address
    head = (
        f"POST {url} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: Docker-Client/28.2.2\r\n"
        "Content-Type: application/x-tar\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    try:
        sock.sendall(head.encode("latin-1"))
        while chunk := source.read(_CHUNK):
            sock.sendall(b"%x\r\n" % len(chunk) + chunk + b"\r\n")
        sock.sendall(b"0\r\n\r\n")
    except OSError:
        pass  # the daemon answered early (an error); read its answer below
    response = Response(sock)
    if response.status >= 400:
        raise error_for(response.status, response.read())
    return response
