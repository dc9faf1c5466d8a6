"""container/archive.py against a real directory tree standing in for a
container's root: stat, tar-out naming, and extraction of hostile tars that
must never write outside the root."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import pytest

from dockyard import errdefs
from dockyard.container.archive import (
    MODE_DIR,
    MODE_SYMLINK,
    ExtractOptions,
    archive_path,
    extract,
    stat_path,
)

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (chown, mknod)")


@pytest.fixture
def root(tmp_path: Path) -> Path:
    r = tmp_path / "root"
    (r / "etc").mkdir(parents=True)
    (r / "etc/passwd").write_text("root:x:0:0\n")
    (r / "data/sub").mkdir(parents=True)
    (r / "data/sub/f").write_text("f")
    os.symlink("/etc", r / "etc-link")
    os.symlink(str(tmp_path / "outside"), r / "escape")  # absolute: resolves inside the root
    os.symlink("../../../..", r / "data/up")
    return r


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    o = tmp_path / "outside"
    o.mkdir()
    return o


def _tar(*entries: tuple[str, str, object]) -> io.BytesIO:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, kind, payload in entries:
            info = tarfile.TarInfo(name)
            info.mtime = 1_000_000
            if kind == "file":
                data = str(payload).encode()
                info.size, info.mode, info.uid, info.gid = len(data), 0o640, 1234, 567
                tar.addfile(info, io.BytesIO(data))
                continue
            if kind == "dir":
                info.type, info.mode = tarfile.DIRTYPE, 0o750
            elif kind == "sym":
                info.type, info.linkname = tarfile.SYMTYPE, str(payload)
            elif kind == "link":
                info.type, info.linkname = tarfile.LNKTYPE, str(payload)
            tar.addfile(info)
    buf.seek(0)
    return buf


def test_stat_reports_go_modes_and_link_targets(root: Path) -> None:
    st = stat_path(root, "/data")
    assert st.name == "data" and st.mode & MODE_DIR and st.mode & 0o777 == 0o755
    link = stat_path(root, "/etc-link")
    assert link.mode & MODE_SYMLINK and link.link_target == "/etc"
    escape = stat_path(root, "/escape")
    assert escape.link_target.startswith("/") and not escape.link_target.startswith(str(root))
    assert stat_path(root, "/etc-link/passwd").name == "passwd"  # followed on the way
    with pytest.raises(errdefs.NotFound, match="Could not find the file /nope in container c"):
        stat_path(root, "/nope", container="c")


def _names(root: Path, path: str) -> list[str]:
    buf = io.BytesIO()
    archive_path(root, path, buf)
    with tarfile.open(fileobj=io.BytesIO(buf.getvalue())) as tar:
        return tar.getnames()


def test_tar_out_names_follow_dockers_rebase(root: Path) -> None:
    assert _names(root, "/data") == ["data", "data/sub", "data/sub/f", "data/up"]
    assert _names(root, "/data/.") == [".", "./sub", "./sub/f", "./up"]
    assert _names(root, "/etc/passwd") == ["passwd"]
    assert _names(root, "/etc-link") == ["etc-link"]  # the link itself, not followed
    assert _names(root, "/etc-link/") == ["etc-link", "etc-link/passwd"]


def test_extract_plain_and_with_owner_override(root: Path) -> None:
    extract(root, "/data", _tar(("new", "dir", None), ("new/g", "file", "g")))
    g = root / "data/new/g"
    assert g.read_text() == "g" and (g.stat().st_uid, g.stat().st_gid) == (1234, 567)
    extract(root, "/data", _tar(("h", "file", "h")), options=ExtractOptions(chown=(7, 8)))
    h = (root / "data/h").stat()
    assert (h.st_uid, h.st_gid, h.st_mode & 0o777) == (7, 8, 0o640)
    # ".wh." names are plain files here, not deletions
    extract(root, "/data", _tar((".wh.sub", "file", "x")))
    assert (root / "data/sub/f").exists() and (root / "data/.wh.sub").exists()


def test_extract_through_symlinks_stays_inside(root: Path, outside: Path) -> None:
    with pytest.raises(errdefs.NotFound):  # the link's target, inside the root, is missing
        extract(root, "/escape", _tar(("p0", "file", "x")))
    (root / str(outside).lstrip("/")).mkdir(parents=True)
    extract(root, "/escape", _tar(("p1", "file", "x")), options=ExtractOptions())
    extract(root, "/data/up", _tar(("p2", "file", "x")))
    extract(root, "/", _tar(("escape/p3", "file", "x"), ("data/up/p4", "file", "x")))
    extract(root, "/", _tar(("evil", "sym", str(outside)), ("evil/p5", "file", "x")))
    assert list(outside.iterdir()) == []
    assert (root / str(outside).lstrip("/") / "p1").exists()
    assert (root / "p2").exists() and (root / "p4").exists()
    assert (root / str(outside).lstrip("/") / "p5").exists()


def test_extract_refuses_escaping_names_and_links(root: Path, outside: Path) -> None:
    with pytest.raises(errdefs.InvalidArgument):
        extract(root, "/", _tar(("../../outside/x", "file", "x")))
    with pytest.raises(errdefs.InvalidArgument):
        extract(root, "/", _tar(("hl", "link", "../../../etc/hostname")))
    assert list(outside.iterdir()) == []


def test_extract_destination_rules(root: Path) -> None:
    with pytest.raises(errdefs.NotFound):
        extract(root, "/missing", _tar(("x", "file", "x")))
    with pytest.raises(errdefs.InvalidArgument, match="extraction point is not a directory"):
        extract(root, "/etc/passwd", _tar(("x", "file", "x")))
    # a symlink to a directory is a fine destination (resolved inside the root)
    extract(root, "/etc-link", _tar(("vialink", "file", "x")))
    assert (root / "etc/vialink").exists()
    options = ExtractOptions(no_overwrite_dir_non_dir=True)
    with pytest.raises(errdefs.InvalidArgument, match="cannot overwrite directory"):
        extract(root, "/data", _tar(("sub", "file", "x")), options=options)
    with pytest.raises(errdefs.InvalidArgument, match="cannot overwrite non-directory"):
        extract(root, "/etc", _tar(("passwd", "dir", None)), options=options)
    extract(root, "/data", _tar(("sub", "file", "x")))  # allowed without the option
    assert (root / "data/sub").read_text() == "x"


def test_extract_corrupt_archive(root: Path) -> None:
    data = _tar(("big", "file", "y" * 5000)).getvalue()[:1500]
    with pytest.raises(errdefs.InvalidArgument):
        extract(root, "/data", io.BytesIO(data))


def _archives_while(root: Path, swap, seconds: float) -> list[bytes]:
    """Tar-out and stat in a loop while ``swap()`` runs in another thread."""
    import threading
    import time

    from dockyard.container.archive import export_rootfs

    stop = threading.Event()

    def swapper() -> None:
        while not stop.is_set():
            swap()

    thread = threading.Thread(target=swapper)
    thread.start()
    out: list[bytes] = []
    try:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            for path in ("/d", "/d/", "/d/.", "/d/f", "/"):
                buf = io.BytesIO()
                try:
                    archive_path(root, path, buf)
                    stat_path(root, path)
                except (errdefs.NotFound, errdefs.InvalidArgument, errdefs.System):
                    # caught mid-swap: a link to nowhere in the root, or a
                    # component that changed kind between its stat and its open
                    continue
                out.append(buf.getvalue())
            buf = io.BytesIO()
            export_rootfs(root, buf)
            out.append(buf.getvalue())
    finally:
        stop.set()
        thread.join()
    return out


def test_tar_out_races_cannot_read_the_host(tmp_path: Path) -> None:
    """CVE-2018-15664: the container swaps a directory for a symlink to a host
    directory (absolute and relative) and a file for a FIFO while the daemon
    archives; nothing of the host is ever read and nothing blocks."""
    host = tmp_path / "host"
    host.mkdir()
    (host / "f").write_text("SECRET-HOST-DATA\n")
    (host / "g").write_text("SECRET-HOST-DATA\n")
    root = tmp_path / "root"
    (root / "d").mkdir(parents=True)
    (root / "d/f").write_text("benign\n")
    os.symlink(str(host), root / "abs-link")
    os.symlink("../" * 8 + str(host).lstrip("/"), root / "rel-link")
    os.mkfifo(root / "fifo")
    fds_before = len(os.listdir("/proc/self/fd"))
    state = {"n": 0}

    def swap() -> None:
        n = state["n"] = state["n"] + 1
        link = root / ("abs-link" if n % 2 else "rel-link")
        os.rename(root / "d", root / "d.real")
        os.rename(link, root / "d")
        os.rename(root / "d", link)
        os.rename(root / "d.real", root / "d")
        os.rename(root / "d/f", root / "f.real")
        os.rename(root / "fifo", root / "d/f")
        os.rename(root / "d/f", root / "fifo")
        os.rename(root / "f.real", root / "d/f")

    archives = _archives_while(root, swap, 1.0)
    assert state["n"] > 100 and len(archives) > 50
    seen_fifo = False
    for data in archives:
        assert b"SECRET" not in data
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            names = tar.getnames()
            seen_fifo |= any(m.isfifo() and m.name.endswith("f") for m in tar.getmembers())
        assert not any(n.endswith("/g") or n == "g" for n in names)
    assert seen_fifo  # the swaps really were met mid-walk
    assert len(os.listdir("/proc/self/fd")) == fds_before
    assert (host / "f").read_text() == "SECRET-HOST-DATA\n"
