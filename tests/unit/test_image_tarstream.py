"""image.tarstream against tarfile: the same members for what tarfile writes
(ustar, GNU, PAX: long names and links, xattrs, devices), and nothing but
InvalidArgument for arbitrary or corrupted input."""

from __future__ import annotations

import hashlib
import io
import os
import tarfile

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dockyard import errdefs
from dockyard.image.tarstream import TarReader, parse_header

FORMATS = [tarfile.USTAR_FORMAT, tarfile.GNU_FORMAT, tarfile.PAX_FORMAT]


def _read_all(data: bytes, *, hash_stream: bool = False) -> tuple[list, str | None]:
    """(member, its data) for every member, then the stream digest."""
    reader = TarReader(io.BytesIO(data), hash_stream=hash_stream)
    out = []
    for member in reader:
        out.append((member, reader.read_data(1 << 30) if member.isreg() else b""))
    return out, reader.finish()


def _tarfile_view(data: bytes) -> list[tuple]:
    with tarfile.open(fileobj=io.BytesIO(data), mode="r|") as tar:
        out = []
        for info in tar:
            body = tar.extractfile(info).read() if info.isreg() else b""  # type: ignore[union-attr]
            xattrs = {
                k[len("SCHILY.xattr.") :]: v.encode("utf-8", "surrogateescape")
                for k, v in info.pax_headers.items()
                if k.startswith("SCHILY.xattr.")
            }
            out.append(_fields(info, xattrs, body))
        return out


def _fields(m, xattrs: dict, body: bytes) -> tuple:
    return (
        m.name,
        m.type,
        m.mode,
        m.uid,
        m.gid,
        m.size if m.isreg() else 0,
        m.mtime,
        m.linkname,
        m.devmajor,
        m.devminor,
        xattrs,
        body,
    )


def _ours(data: bytes) -> list[tuple]:
    members, _ = _read_all(data)
    return [_fields(m, dict(m.xattrs), body) for m, body in members]


def _write(fmt: int, entries: list[tarfile.TarInfo], bodies: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tar:
        for info in entries:
            body = bodies.get(info.name)
            tar.addfile(info, io.BytesIO(body) if body is not None else None)
    return buf.getvalue()


def _sample(fmt: int) -> bytes:
    long = "d" * 90 + "/" + "e" * 90 + "/" + "f" * 120
    if fmt == tarfile.USTAR_FORMAT:
        long = "d" * 90 + "/" + "e" * 60 + "/f"  # fits name + prefix
    entries, bodies = [], {}

    def add(name: str, kind: bytes = tarfile.REGTYPE, **attrs: object) -> tarfile.TarInfo:
        info = tarfile.TarInfo(name)
        info.type = kind
        info.mtime = 1_600_000_000
        for key, value in attrs.items():
            setattr(info, key, value)
        entries.append(info)
        return info

    add("dir", tarfile.DIRTYPE, mode=0o755, uid=1000, gid=1000)
    for name, body in (("dir/a", b"hello"), (long, os.urandom(1500)), ("empty", b"")):
        info = add(name, mode=0o4755, uid=5, gid=6)
        info.size = len(body)
        bodies[name] = body
    add("sym", tarfile.SYMTYPE, linkname="t" * 150 if fmt != tarfile.USTAR_FORMAT else "dir/a")
    add("hard", tarfile.LNKTYPE, linkname=long if fmt != tarfile.USTAR_FORMAT else "dir/a")
    add("null", tarfile.CHRTYPE, devmajor=1, devminor=3, mode=0o666)
    add("loop", tarfile.BLKTYPE, devmajor=7, devminor=0)
    add("fifo", tarfile.FIFOTYPE, mode=0o600)
    if fmt == tarfile.PAX_FORMAT:
        info = add("xattr", size=2, mtime=1_600_000_000.25)
        info.pax_headers = {
            "SCHILY.xattr.user.k": "v\u00e9",
            "SCHILY.xattr.trusted.overlay.opaque": "y",
        }
        info.uid = 10_000_000  # does not fit in octal: PAX carries it
        bodies["xattr"] = b"xx"
    return _write(fmt, entries, bodies)


@pytest.mark.parametrize("fmt", FORMATS, ids=["ustar", "gnu", "pax"])
def test_same_members_as_tarfile(fmt: int) -> None:
    data = _sample(fmt)
    assert _ours(data) == _tarfile_view(data)


def test_stream_digest_covers_every_byte() -> None:
    data = _sample(tarfile.PAX_FORMAT) + b"\0" * 4096 + b"trailing"
    _, digest = _read_all(data, hash_stream=True)
    assert digest == hashlib.sha256(data).hexdigest()


def test_unread_data_is_skipped_and_copy_writes_it(tmp_path) -> None:
    data = _sample(tarfile.GNU_FORMAT)
    reader = TarReader(io.BytesIO(data))
    names = []
    for member in reader:
        names.append(member.name)
        if member.name == "dir/a":
            with open(tmp_path / "a", "wb") as f:
                digest = hashlib.sha256()
                assert reader.copy_data(f.fileno(), digest) == 5
            assert digest.hexdigest() == hashlib.sha256(b"hello").hexdigest()
    assert (tmp_path / "a").read_bytes() == b"hello"
    assert "fifo" in names


def test_global_and_chained_extension_headers() -> None:
    buf = io.BytesIO()
    with tarfile.open(
        fileobj=buf, mode="w", format=tarfile.PAX_FORMAT, pax_headers={"uid": "42"}
    ) as tar:
        info = tarfile.TarInfo("n" * 200)
        info.size = 1
        tar.addfile(info, io.BytesIO(b"x"))
    data = buf.getvalue()
    assert _ours(data) == _tarfile_view(data)
    assert _ours(data)[0][3] == 42


def test_v7_directory_and_no_end_blocks() -> None:
    info = tarfile.TarInfo("olddir/")
    info.type = tarfile.AREGTYPE
    block = info.tobuf(tarfile.USTAR_FORMAT)
    members, _ = _read_all(block)  # no end-of-archive blocks: accepted
    assert [(m.name, m.isdir()) for m, _ in members] == [("olddir", True)]


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"x" * 100,
        b"\x01" * 512,
        _sample(tarfile.GNU_FORMAT)[:700],  # truncated data
        _sample(tarfile.GNU_FORMAT)[:1000],  # truncated in the middle of a header
        _write(tarfile.PAX_FORMAT, [tarfile.TarInfo("n" * 200)], {})[:1024],  # PAX header only
    ],
)
def test_bad_archives(data: bytes) -> None:
    with pytest.raises(errdefs.InvalidArgument, match=r"^invalid tar archive: "):
        _read_all(data)


def test_corrupt_checksum_after_first_member_is_refused() -> None:
    data = bytearray(_write(tarfile.USTAR_FORMAT, _two(), {"a": b"1", "b": b"2"}))
    data[1024 + 10] ^= 0xFF  # second header's name
    with pytest.raises(errdefs.InvalidArgument, match="bad checksum"):
        _read_all(bytes(data))


def _two() -> list[tarfile.TarInfo]:
    out = []
    for name in ("a", "b"):
        info = tarfile.TarInfo(name)
        info.size = 1
        out.append(info)
    return out


def _only_invalid_argument(data: bytes) -> None:
    try:
        _read_all(data, hash_stream=True)
    except errdefs.InvalidArgument:
        pass


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=4096))
def test_arbitrary_bytes(data: bytes) -> None:
    _only_invalid_argument(data)


def _with_checksum(block: bytearray) -> bytes:
    block[148:156] = b" " * 8
    block[148:156] = b"%06o\0 " % sum(block)
    return bytes(block)


@settings(max_examples=500, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 511), st.binary(min_size=1, max_size=12)), min_size=1, max_size=8
    ),
    st.sampled_from(FORMATS),
    st.integers(0, 2),
)
def test_mutated_headers(edits: list[tuple[int, bytes]], fmt: int, which: int) -> None:
    """Valid checksums over garbage fields: still only InvalidArgument, and
    whatever parses as a header also parses the same for tarfile."""
    data = bytearray(_sample(fmt))
    starts = [0, 512, 1024]
    start = starts[which]
    block = bytearray(data[start : start + 512])
    for offset, patch in edits:
        block[offset : offset + len(patch)] = patch[: 512 - offset]
    block = bytearray(_with_checksum(block))
    data[start : start + 512] = block
    _only_invalid_argument(bytes(data))
    try:
        ours = parse_header(bytes(block))
    except ValueError:
        ours = False
    try:
        theirs = tarfile.TarInfo.frombuf(bytes(block), "utf-8", "surrogateescape")
    except tarfile.EOFHeaderError:
        theirs = None
    except tarfile.HeaderError:
        theirs = False
    if ours is None or ours is False:
        assert ours is theirs
        return
    assert theirs
    # tarfile parses sparse maps from the header; we refuse sparse members later
    assert (ours.name, ours.type, ours.mode, ours.uid, ours.gid, ours.size) == (
        theirs.name,
        theirs.type,
        theirs.mode,
        theirs.uid,
        theirs.gid,
        theirs.size,
    )
    assert (ours.mtime, ours.linkname, ours.devmajor, ours.devminor) == (
        theirs.mtime,
        theirs.linkname,
        theirs.devmajor,
        theirs.devminor,
    )
