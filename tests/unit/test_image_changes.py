"""Changes and layer tars on the copying snapshotter (no root needed), the
tar header encoder, and the cp helpers' pure parts."""

from __future__ import annotations

import base64
import io
import json
import os
import stat
import tarfile
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dockyard.container.archive import PathStat, _abs_path, go_file_mode, go_time
from dockyard.image.changes import ChangeKind, _ustar, changes, write_layer_tar
from dockyard.store.snapshots import CopySnapshotter


@pytest.fixture
def sn(tmp_path: Path) -> CopySnapshotter:
    s = CopySnapshotter(tmp_path / "s")
    s.prepare("x", None)
    up = s.upper_dir("x")
    (up / "etc").mkdir()
    (up / "etc/passwd").write_text("root\n")
    (up / "etc/group").write_text("root\n")
    (up / "old").mkdir()
    (up / "old/a").write_text("a")
    s.commit("base", "x")
    s.prepare("ctr", "base")
    return s


def test_copy_changes_and_tar(sn: CopySnapshotter) -> None:
    up = sn.upper_dir("ctr")
    (up / "etc/passwd").write_text("root\nme\n")
    os.unlink(up / "etc/group")
    import shutil

    shutil.rmtree(up / "old")
    (up / "new").mkdir()
    (up / "new/f").write_text("f")
    (up / "etc/hostname").touch()  # a mount point the runtime made: not a change
    got = [(c.kind, c.path) for c in changes(sn, "ctr")]
    assert got == [
        (ChangeKind.MODIFY, "/etc"),
        (ChangeKind.DELETE, "/etc/group"),
        (ChangeKind.MODIFY, "/etc/passwd"),
        (ChangeKind.ADD, "/new"),
        (ChangeKind.ADD, "/new/f"),
        (ChangeKind.DELETE, "/old"),
    ]
    buf = io.BytesIO()
    write_layer_tar(sn, "ctr", buf)
    with tarfile.open(fileobj=io.BytesIO(buf.getvalue())) as tar:
        names = tar.getnames()
        assert tar.extractfile("etc/passwd").read() == b"root\nme\n"  # type: ignore[union-attr]
    assert names == ["etc", "etc/.wh.group", "etc/passwd", "new", "new/f", ".wh.old"]


def test_unchanged_snapshot_is_an_empty_tar(sn: CopySnapshotter) -> None:
    assert changes(sn, "ctr") == []
    buf = io.BytesIO()
    write_layer_tar(sn, "ctr", buf)
    assert buf.getvalue() == bytes(1024)  # Docker's empty layer: sha256:5f70bf18...


@given(
    name=st.text(st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=100),
    mode=st.integers(0, 0o7777),
    uid=st.integers(0, 0o7777777),
    size=st.integers(0, 0o77777777777),
    mtime=st.integers(0, 0o77777777777),
)
def test_ustar_header_reads_back(name: str, mode: int, uid: int, size: int, mtime: int) -> None:
    raw = _ustar(name.encode(), mode, uid, uid, size, mtime, tarfile.REGTYPE)
    assert raw is not None and len(raw) == 512
    info = tarfile.TarInfo.frombuf(raw, "utf-8", "surrogateescape")
    assert (info.name, info.mode, info.uid, info.size, info.mtime) == (name, mode, uid, size, mtime)


def test_ustar_refuses_what_needs_pax() -> None:
    assert _ustar(b"x" * 101, 0o644, 0, 0, 0, 0, tarfile.REGTYPE) is None
    assert _ustar("é".encode(), 0o644, 0, 0, 0, 0, tarfile.REGTYPE) is None
    assert _ustar(b"x", 0o644, 2**24, 0, 0, 0, tarfile.REGTYPE) is None


def test_go_file_mode_bits() -> None:
    assert go_file_mode(stat.S_IFDIR | 0o755) == (1 << 31) | 0o755
    assert go_file_mode(stat.S_IFLNK | 0o777) == (1 << 27) | 0o777
    assert go_file_mode(stat.S_IFREG | 0o4755) == (1 << 23) | 0o755
    assert go_file_mode(stat.S_IFCHR | 0o666) == (1 << 26) | (1 << 21) | 0o666
    assert go_file_mode(stat.S_IFDIR | 0o1777) == (1 << 31) | (1 << 20) | 0o777


def test_go_time_and_stat_header() -> None:
    assert go_time(1_700_000_000_120_000_000) == "2023-11-14T22:13:20.12Z"
    assert go_time(1_700_000_000_000_000_000) == "2023-11-14T22:13:20Z"
    header = PathStat("f", 3, 0o644, "2023-11-14T22:13:20Z", "").header()
    assert json.loads(base64.b64decode(header)) == {
        "name": "f",
        "size": 3,
        "mode": 0o644,
        "mtime": "2023-11-14T22:13:20Z",
        "linkTarget": "",
    }


@pytest.mark.parametrize(
    ("given_path", "expected"),
    [
        ("tmp", "/tmp"),
        ("/tmp/", "/tmp/"),
        ("/tmp/.", "/tmp/."),
        ("/tmp/../etc//passwd", "/etc/passwd"),
        ("/", "/"),
        (".", "/."),
        ("../../x", "/x"),
    ],
)
def test_abs_path_keeps_trailing_dot_and_slash(given_path: str, expected: str) -> None:
    assert _abs_path(given_path) == expected
