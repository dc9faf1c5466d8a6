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
