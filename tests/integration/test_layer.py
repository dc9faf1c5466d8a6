"""apply_layer against crafted, hostile and whiteout-bearing tars."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import shutil
import stat
import tarfile
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

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


# --- the streaming reader: parity with tarfile, digests, hostile bytes ---------


def _rich_tar(fmt: int) -> bytes:
    """Long names and links (but in ustar), xattrs (PAX), devices, a fifo."""
    long = "l" * 90 + "/" + "m" * 90 + "/" + "n" * 120
    if fmt == tarfile.USTAR_FORMAT:
        long = "l" * 90 + "/" + "m" * 60 + "/n"
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tar:

        def add(name: str, kind: bytes, data: bytes | None = None, **attrs: object) -> None:
            info = tarfile.TarInfo(name)
            info.type, info.mtime, info.mode = kind, 1_500_000_000, 0o640
            for key, value in attrs.items():
                setattr(info, key, value)
            if data is not None:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)

        add("l" * 90, tarfile.DIRTYPE, mode=0o750, uid=3)
        add("l" * 90 + "/" + "m" * (90 if fmt != tarfile.USTAR_FORMAT else 60), tarfile.DIRTYPE)
        add(long, tarfile.REGTYPE, os.urandom(3000), uid=1000, gid=1001, mode=0o2755)
        add("empty", tarfile.REGTYPE, b"")
        add("hard", tarfile.LNKTYPE, linkname=long if fmt != tarfile.USTAR_FORMAT else "empty")
        add("sym", tarfile.SYMTYPE, linkname="s" * (150 if fmt != tarfile.USTAR_FORMAT else 50))
        add("null", tarfile.CHRTYPE, devmajor=1, devminor=3, mode=0o666)
        add("fifo", tarfile.FIFOTYPE)
        if fmt == tarfile.PAX_FORMAT:
            add(
                "x",
                tarfile.REGTYPE,
                b"data",
                pax_headers={
                    "SCHILY.xattr.user.note": "h\u00e9llo",
                    "SCHILY.xattr.trusted.overlay.opaque": "y",
                },
                uid=3_000_000,
            )
    return buf.getvalue()


@pytest.mark.parametrize(
    "fmt", [tarfile.USTAR_FORMAT, tarfile.GNU_FORMAT, tarfile.PAX_FORMAT], ids=str
)
def test_unpacks_what_tarfile_reads(root: Path, fmt: int) -> None:
    data = _rich_tar(fmt)
    diff_id, size = _apply(data, root, "overlay")
    assert diff_id == "sha256:" + hashlib.sha256(data).hexdigest()
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        members = tar.getmembers()
        assert size == sum(m.size for m in members if m.isreg())
        for m in members:
            path = root / m.name
            st = os.lstat(path)
            if m.islnk():
                assert st.st_ino == os.lstat(root / m.linkname).st_ino
                continue
            assert (st.st_uid, st.st_gid, st.st_mtime) == (m.uid, m.gid, m.mtime), m.name
            if m.issym():
                assert os.readlink(path) == m.linkname
                continue
            assert stat.S_IMODE(st.st_mode) == m.mode, m.name
            if m.isreg():
                assert path.read_bytes() == tar.extractfile(m).read()  # type: ignore[union-attr]
            elif m.ischr():
                assert (os.major(st.st_rdev), os.minor(st.st_rdev)) == (1, 3)
            elif m.isfifo():
                assert stat.S_ISFIFO(st.st_mode)
    if fmt == tarfile.PAX_FORMAT:
        assert os.getxattr(root / "x", "user.note") == "h\u00e9llo".encode()
        with pytest.raises(OSError):
            os.getxattr(root / "x", "trusted.overlay.opaque")


def test_diff_id_covers_trailing_bytes(root: Path) -> None:
    data = _tar(("a", "file", "x")) + b"\0" * 10_240
    assert _apply(data, root)[0] == "sha256:" + hashlib.sha256(data).hexdigest()


def test_unpack_records_file_digests(root: Path) -> None:
    from dockyard.image.layer import unpack

    digests: dict[str, tuple[int, str]] = {}
    data = _tar(("d", "dir", None), ("d/a", "file", "A"), ("b", "file", "BB"), ("c", "sym", "b"))
    result = unpack(
        io.BytesIO(data), root, whiteout="delete", hash_stream=False, file_digests=digests
    )
    assert (result.diff_id, result.size) == (None, 3)
    assert digests == {
        str(root / "d/a"): ((root / "d/a").stat().st_ino, hashlib.sha256(b"A").hexdigest()),
        str(root / "b"): ((root / "b").stat().st_ino, hashlib.sha256(b"BB").hexdigest()),
    }


def test_parent_replaced_between_files(root: Path, tmp_path: Path) -> None:
    """Consecutive files share their parent's fd; a link replacing that
    parent must be walked again."""
    outside = tmp_path / "outside"
    outside.mkdir()
    _apply(
        _tar(
            ("d", "dir", None),
            ("d/one", "file", "1"),
            ("e", "dir", None),
            ("d", "sym", "e"),
            ("d/two", "file", "2"),
            ("a", "sym", "e/sub/.."),
            ("a/three", "file", "3"),
            ("a/sub", "file", "now a file"),
        ),
        root,
    )
    assert sorted(os.listdir(root / "e")) == ["sub", "three", "two"]
    assert (root / "e" / "sub").read_text() == "now a file"
    with pytest.raises(errdefs.InvalidArgument):
        _apply(_tar(("a/four", "file", "4")), root)  # a -> e/sub/.. : sub is a file now
    assert list(outside.iterdir()) == []


def test_header_only_types_ignore_their_size(root: Path) -> None:
    sym = tarfile.TarInfo("s")
    sym.type, sym.linkname, sym.size = tarfile.SYMTYPE, "t", 0
    block = bytearray(sym.tobuf(tarfile.USTAR_FORMAT))
    block[124:136] = b"%011o\0" % 5  # a size on a symlink: no data follows
    block[148:156] = b" " * 8
    block[148:156] = b"%06o\0 " % sum(block)
    data = bytes(block) + _tar(("f", "file", "ok"))
    _apply(data, root)
    assert os.readlink(root / "s") == "t"
    assert (root / "f").read_text() == "ok"


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=3000), st.booleans())
def test_hostile_bytes_only_raise_invalid_argument(data: bytes, as_tar: bool) -> None:
    if as_tar:  # a valid prefix then garbage: gets past the first header
        data = _tar(("a", "file", "x"))[:1024] + data
    base = Path(tempfile.mkdtemp())
    try:
        target = base / "t"
        target.mkdir()
        try:
            _apply(data, target)
        except errdefs.InvalidArgument:
            pass
        except errdefs.NotImplemented:
            assert data.startswith(b"\x28\xb5\x2f\xfd")  # zstd without the module
        assert os.listdir(base) == ["t"]
    finally:
        shutil.rmtree(base)
