"""Receiving a build context: every accepted encoding, hostile archives,
clean-up, and memory that stays flat for a large context."""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from dockyard import errdefs
from dockyard.builder.context import receive, relative_path

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")


def _tar(entries: list[tuple[str, bytes | None, str]]) -> bytes:
    """(name, data, link target) entries; data None and a target: a symlink."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data, target in entries:
            info = tarfile.TarInfo(name)
            if target:
                info.type = tarfile.SYMTYPE
                info.linkname = target
                tar.addfile(info)
            else:
                info.size = len(data or b"")
                tar.addfile(info, io.BytesIO(data or b""))
    return buf.getvalue()


@pytest.mark.parametrize(
    "compress",
    [lambda b: b, gzip.compress, bz2.compress, lzma.compress],
    ids=["plain", "gzip", "bzip2", "xz"],
)
def test_every_encoding(tmp_path: Path, compress):
    body = compress(_tar([("Dockerfile", b"FROM busybox\n", ""), ("dir/a.txt", b"A", "")]))
    with receive(io.BytesIO(body), tmp_path) as ctx:
        assert ctx.read_dockerfile("Dockerfile") == "FROM busybox\n"
        assert Path(ctx.resolve("dir/a.txt")).read_bytes() == b"A"
        assert ctx.root.parent.parent == tmp_path
    assert list(tmp_path.iterdir()) == []


def test_bare_dockerfile_and_empty_body(tmp_path: Path):
    with receive(io.BytesIO(b"FROM busybox\nRUN true\n"), tmp_path, dockerfile="Custom") as ctx:
        assert ctx.read_dockerfile("Custom") == "FROM busybox\nRUN true\n"
    missing = pytest.raises(errdefs.InvalidArgument, match="Cannot locate specified Dockerfile")
    with receive(io.BytesIO(b""), tmp_path) as ctx, missing:
        ctx.read_dockerfile("Dockerfile")


def test_hostile_members(tmp_path: Path):
    outside = tmp_path / "outside"
    outside.mkdir()
    base = tmp_path / "builds"
    with pytest.raises(errdefs.InvalidArgument):
        receive(io.BytesIO(_tar([("../../outside/x", b"pwned", "")])), base)
    assert list(outside.iterdir()) == []
    assert list(base.iterdir()) == []  # removed after the failure
    # absolute names land inside the context
    with receive(io.BytesIO(_tar([("/etc/abs", b"in", "")])), base) as ctx:
        assert Path(ctx.resolve("etc/abs")).read_bytes() == b"in"
    # a symlink pointing outward, then a file through it: stays inside
    body = _tar([("link", None, str(outside)), ("link/through", b"pwned", "")])
    with receive(io.BytesIO(body), base) as ctx:
        assert list(outside.iterdir()) == []
        resolved = ctx.resolve("link/through")
        assert resolved.startswith(str(ctx.root))
    # lookups never leave the root
    body = _tar([("up", None, "../../../../"), ("abs", None, "/etc/passwd")])
    with receive(io.BytesIO(body), base) as ctx:
        assert ctx.resolve("up/etc/passwd").startswith(str(ctx.root))
        assert not os.path.exists(ctx.resolve("abs"))


def test_relative_path():
    assert relative_path(".") == ""
    assert relative_path("a/../b") == "b"
    assert relative_path("/abs/x") == "abs/x"
    assert relative_path("../x") is None
    assert relative_path("a/../../x") is None


_STREAM_SCRIPT = r"""
import io, sys, tarfile
from pathlib import Path
from dockyard.builder.context import receive

SIZE = 500 * 1024 * 1024

class Body:
    # a tar of one 500 MB file, produced on the fly
    def __init__(self):
        info = tarfile.TarInfo("big.bin")
        info.size = SIZE
        self.head = info.tobuf(tarfile.PAX_FORMAT)
        self.left = SIZE
        self.tail = b"\0" * (1024 + (-SIZE % 512))
    def read(self, n=-1):
        if n == 0:
            return b""
        n = n if n > 0 else 1 << 20
        if self.head:
            out, self.head = self.head[:n], self.head[n:]
            return out
        if self.left:
            take = min(self.left, 1 << 20, n)
            self.left -= take
            return b"x" * take
        out, self.tail = self.tail[:n], self.tail[n:]
        return out

def rss():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1])

before = rss()
ctx = receive(Body(), Path(sys.argv[1]))
size = (ctx.root / "big.bin").stat().st_size
ctx.close()
print(size, rss() - before)
"""


def test_large_context_is_streamed(tmp_path: Path):
    out = subprocess.run(
        [sys.executable, "-c", _STREAM_SCRIPT, str(tmp_path)],
        capture_output=True,
        check=True,
        timeout=300,
    ).stdout.split()
    size, grown_kib = int(out[0]), int(out[1])
    assert size == 500 * 1024 * 1024
    assert grown_kib < 100 * 1024, f"peak RSS grew by {grown_kib} KiB"
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("fmt", [tarfile.PAX_FORMAT, tarfile.GNU_FORMAT, tarfile.USTAR_FORMAT])
def test_long_names_links_and_digests(tmp_path: Path, fmt: int):
    import hashlib

    long_dir = "d" * 90 + "/" + "e" * 90
    name = long_dir + ("/" + "f" * 120 if fmt != tarfile.USTAR_FORMAT else "/f")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tar:
        info = tarfile.TarInfo(name)
        info.size = 3
        info.mode = 0o640
        tar.addfile(info, io.BytesIO(b"abc"))
        short = tarfile.TarInfo("short")
        short.size = 1
        tar.addfile(short, io.BytesIO(b"s"))
        hard = tarfile.TarInfo("hard")
        hard.type = tarfile.LNKTYPE
        hard.linkname = "short" if fmt == tarfile.USTAR_FORMAT else name
        tar.addfile(hard)
        sym = tarfile.TarInfo("sym")
        sym.type = tarfile.SYMTYPE
        sym.linkname = "t" * 150 if fmt != tarfile.USTAR_FORMAT else "t"
        tar.addfile(sym)
        empty = tarfile.TarInfo("empty")
        tar.addfile(empty, io.BytesIO(b""))
    with receive(io.BytesIO(buf.getvalue()), tmp_path) as ctx:
        path = Path(ctx.resolve(name))
        assert path.read_bytes() == b"abc"
        assert path.stat().st_mode & 0o777 == 0o640
        linked = "short" if fmt == tarfile.USTAR_FORMAT else name
        assert os.path.samefile(ctx.resolve("hard"), ctx.resolve(linked))
        assert os.readlink(ctx.root / "sym") == sym.linkname
        assert (ctx.root / "empty").read_bytes() == b""
        assert ctx.file_digest(str(path), path.stat()) == hashlib.sha256(b"abc").hexdigest()
    # a truncated archive is refused, and nothing stays
    with pytest.raises(errdefs.InvalidArgument):
        receive(io.BytesIO(buf.getvalue()[:700]), tmp_path / "t")
    assert list((tmp_path / "t").iterdir()) == []
