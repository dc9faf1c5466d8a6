"""apply_layer against crafted, hostile and whiteout-bearing tars."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import stat
import tarfile
from pathlib import Path

import pytest

from dockyard import errdefs
from dockyard.image.layer import apply_layer

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (chown, mknod)")


def _tar(*entries: tuple) -> bytes:
    """entries: (name, kind, payload) with kind file|dir|sym|link|chr."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, kind, payload in entries:
            info = tarfile.TarInfo(name)
            info.mtime = 1_000_000
            if kind == "file":
                data = payload.encode() if isinstance(payload, str) else payload
                info.size = len(data)
                info.mode = 0o644
                tar.addfile(info, io.BytesIO(data))
                continue
            if kind == "dir":
                info.type, info.mode = tarfile.DIRTYPE, 0o755
            elif kind == "sym":
                info.type, info.linkname = tarfile.SYMTYPE, payload
            elif kind == "link":
                info.type, info.linkname = tarfile.LNKTYPE, payload
            tar.addfile(info)
    return buf.getvalue()


@pytest.fixture
def root(tmp_path: Path) -> Path:
    path = tmp_path / "root"
    path.mkdir()
    return path


def _apply(data: bytes, target: Path, mode: str = "delete") -> tuple[str, int]:
    return apply_layer(io.BytesIO(data), target, whiteout=mode)  # type: ignore[arg-type]


def test_plain_and_gzip_give_the_same_diff_id(root: Path, tmp_path: Path) -> None:
    data = _tar(("bin", "dir", None), ("bin/sh", "file", "#!x"), ("sh", "sym", "bin/sh"))
    diff_id, size = _apply(data, root)
    assert diff_id == "sha256:" + hashlib.sha256(data).hexdigest()
    assert size == 3
    assert (root / "bin" / "sh").read_text() == "#!x"
    assert os.readlink(root / "sh") == "bin/sh"
    assert (root / "bin" / "sh").stat().st_mtime == 1_000_000
    other = tmp_path / "other"
    other.mkdir()
    assert _apply(gzip.compress(data), other)[0] == diff_id


def test_dotdot_is_refused(root: Path, tmp_path: Path) -> None:
    with pytest.raises(errdefs.InvalidArgument):
        _apply(_tar(("../x", "file", "pwned")), root)
    assert not (tmp_path / "x").exists()


def test_absolute_names_are_made_relative(root: Path) -> None:
    _apply(_tar(("/abs", "file", "in")), root)
    assert (root / "abs").read_text() == "in"


def test_symlinked_parent_stays_inside(root: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    _apply(_tar(("a", "sym", str(outside)), ("a/pwned", "file", "x")), root)
    assert not (outside / "pwned").exists()
    assert (root / str(outside).lstrip("/") / "pwned").read_text() == "x"
    assert os.readlink(root / "a") == str(outside)  # stored as given


def test_relative_symlink_climbing_out_stays_inside(root: Path, tmp_path: Path) -> None:
    _apply(_tar(("a", "sym", "../../../.."), ("a/pwned", "file", "x")), root)
    assert (root / "pwned").read_text() == "x"
    assert not (tmp_path / "pwned").exists()


def test_symlink_entry_is_replaced_not_followed(root: Path, tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text("safe")
    _apply(_tar(("f", "sym", str(victim)), ("f", "file", "over")), root)
    assert victim.read_text() == "safe"
    assert (root / "f").read_text() == "over"


def test_hardlink_outside_is_refused(root: Path) -> None:
    with pytest.raises(errdefs.InvalidArgument):
        _apply(_tar(("passwd", "link", "/etc/passwd")), root)
    assert not (root / "passwd").exists()
    with pytest.raises(errdefs.InvalidArgument):
        _apply(_tar(("p2", "link", "../../etc/passwd")), root)


def test_hardlink_inside(root: Path) -> None:
    _apply(_tar(("a", "file", "x"), ("b", "link", "/a")), root)
    assert (root / "a").stat().st_ino == (root / "b").stat().st_ino


def test_truncated_gzip(root: Path) -> None:
    data = gzip.compress(_tar(("big", "file", os.urandom(100_000))))
    with pytest.raises(errdefs.InvalidArgument):
        _apply(data[: len(data) // 2], root)


def test_truncated_tar(root: Path) -> None:
    data = _tar(("big", "file", os.urandom(100_000)))
    with pytest.raises(errdefs.InvalidArgument):
        _apply(data[:20_000], root)


def test_garbage(root: Path) -> None:
    with pytest.raises(errdefs.InvalidArgument):
        _apply(b"\x1f\x8b" + os.urandom(2000), root)


def test_whiteouts_delete_mode(root: Path) -> None:
    _apply(_tar(("d", "dir", None), ("d/old", "file", "1"), ("gone", "file", "1")), root)
    _apply(
        _tar(
            ("d", "dir", None),
            ("d/new", "file", "2"),
            ("d/.wh..wh..opq", "file", ""),
            (".wh.gone", "file", ""),
        ),
        root,
    )
    assert sorted(os.listdir(root / "d")) == ["new"]
    assert not (root / "gone").exists()


def test_whiteouts_overlay_mode(root: Path) -> None:
    _apply(_tar(("d/.wh..wh..opq", "file", ""), (".wh.gone", "file", "")), root, "overlay")
    st = os.lstat(root / "gone")
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == 0
    assert os.getxattr(root / "d", "trusted.overlay.opaque") == b"y"
    assert not (root / ".wh.gone").exists()


def test_ownership_and_setuid(root: Path) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo("su")
        info.mode, info.uid, info.gid, info.size = 0o4755, 1000, 1001, 1
        tar.addfile(info, io.BytesIO(b"x"))
        link = tarfile.TarInfo("l")
        link.type, link.linkname, link.uid, link.gid = tarfile.SYMTYPE, "su", 7, 8
        tar.addfile(link)
    _apply(buf.getvalue(), root)
    st = os.lstat(root / "su")
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (1000, 1001, 0o4755)
    assert os.lstat(root / "l").st_uid == 7
