"""Reading a tar stream, one member at a time, for hostile input.

This module owns the tar format (ustar, GNU long names and links, PAX
extended and global headers) and nothing about the filesystem: ``TarReader``
yields ``Member`` records and copies the current member's data to a file
descriptor in one copy (stream → ``os.write``), optionally hashing it. Data a
consumer does not take is skipped before the next header. tarfile's stream
mode copies each block several times, which costs more than the disk write.

Headers are parsed as ``tarfile.TarInfo.frombuf`` parses them (checksum,
octal and base-256 numbers, the ustar prefix, a V7 regular file whose name
ends in ``/`` being a directory), and extension headers are applied as
tarfile applies them: global PAX headers first, then the member's own
extension headers, the first one read winning. Where tarfile silently stops
at a bad header after the first member, this reader refuses it, as Go's
does. Header-only types (links, devices, directories, fifos) carry no data
whatever their size field says.

``TarReader(stream, hash_stream=True)`` hashes every byte it reads from
``stream`` (headers, padding, end-of-archive blocks and whatever follows
once ``finish`` drains it): a layer's diff ID.

Every error is ``errdefs.InvalidArgument("invalid <what>: ...")``; errors of
the underlying stream (decompression, I/O) pass through for the caller.
"""

from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, BinaryIO

from dockyard import errdefs

if TYPE_CHECKING:
    from hashlib import _Hash

BLOCK = 512
REGTYPE = b"0"
AREGTYPE = b"\0"
LNKTYPE = b"1"
SYMTYPE = b"2"
CHRTYPE = b"3"
BLKTYPE = b"4"
DIRTYPE = b"5"
FIFOTYPE = b"6"
CONTTYPE = b"7"
GNU_LONGNAME = b"L"
GNU_LONGLINK = b"K"
GNU_SPARSE = b"S"
PAX_HEADER = b"x"
PAX_GLOBAL = b"g"
SOLARIS_PAX = b"X"

REGULAR_TYPES = frozenset((REGTYPE, AREGTYPE, CONTTYPE, GNU_SPARSE))
#: types whose size field is ignored: no data follows them (tarfile and Go agree)
_HEADER_ONLY = frozenset((LNKTYPE, SYMTYPE, CHRTYPE, BLKTYPE, DIRTYPE, FIFOTYPE))
_GNU_TYPES = frozenset((GNU_LONGNAME, GNU_LONGLINK, GNU_SPARSE))
_EXTENSIONS = frozenset((GNU_LONGNAME, GNU_LONGLINK, PAX_HEADER, PAX_GLOBAL, SOLARIS_PAX))
#: an extension header is held in memory: bound it as Go does
MAX_EXTENSION = 1 << 20
_ZERO_BLOCK = bytes(BLOCK)
_BUFFER = 64 * 1024  # read-ahead for headers and small files
_CHUNK = 1 << 20  # bigger bodies are read straight from the stream in this size
_XATTR = "SCHILY.xattr."


@dataclass(frozen=True, slots=True)
class Member:
    """One archive entry, extension headers applied. ``mtime`` is an int
    from the header or a float from PAX; ``xattrs`` are PAX ``SCHILY.xattr.*``."""

    name: str
    type: bytes
    mode: int
    uid: int
    gid: int
    size: int
    mtime: int | float
    linkname: str
    devmajor: int
    devminor: int
    xattrs: tuple[tuple[str, bytes], ...] = ()

    def isreg(self) -> bool:
        return self.type in REGULAR_TYPES

    def isdir(self) -> bool:
        return self.type == DIRTYPE

    def issym(self) -> bool:
        return self.type == SYMTYPE

    def islnk(self) -> bool:
        return self.type == LNKTYPE

    def ischr(self) -> bool:
        return self.type == CHRTYPE

    def isblk(self) -> bool:
        return self.type == BLKTYPE

    def isfifo(self) -> bool:
        return self.type == FIFOTYPE

    def has_data(self) -> bool:
        return self.type not in _HEADER_ONLY


class HeaderError(ValueError):
    """A block that is not a valid header (sans-IO level; the reader turns
    it into InvalidArgument)."""


def _nts(field: bytes) -> str:
    end = field.find(b"\0")
    return (field if end < 0 else field[:end]).decode("utf-8", "surrogateescape")


def _number(field: bytes) -> int:
    """tarfile's ``nti``: octal text, or base-256 (GNU) when the top bit is set."""
    if field[0] in (0o200, 0o377):
        n = int.from_bytes(field[1:], "big")
        return n - (1 << (8 * (len(field) - 1))) if field[0] == 0o377 else n
    end = field.find(b"\0")
    text = field if end < 0 else field[:end]
    try:
        if text.isascii():
            return int(text.strip() or b"0", 8)
    except ValueError:
        pass
    try:
        return int(text.decode("ascii").strip() or "0", 8)  # tarfile's exact rule
    except ValueError:
        raise HeaderError("invalid number in header")


def _checksum_ok(block: bytes) -> bool:
    stored = _number(block[148:156])
    unsigned = 256 + sum(block) - sum(block[148:156])
    if stored == unsigned:
        return True
    # some old tars summed signed chars
    high = sum(1 for b in block[:148] if b > 127) + sum(1 for b in block[156:] if b > 127)
    return stored == unsigned - 256 * high


def parse_header(block: bytes) -> Member | None:
    """A 512-byte header as a Member (extension headers not applied), or
    None for an all-zero block (the end of the archive). Raises HeaderError."""
    if len(block) != BLOCK:
        raise HeaderError("truncated header")
    if block == _ZERO_BLOCK:
        return None
    if not _checksum_ok(block):
        raise HeaderError("bad checksum")
    name = _nts(block[0:100])
    kind = block[156:157]
    if kind == AREGTYPE and name.endswith("/"):
        kind = DIRTYPE  # V7: a directory is a regular file with a trailing slash
    if kind == DIRTYPE:
        name = name.rstrip("/")
    prefix = _nts(block[345:500])
    if prefix and kind not in _GNU_TYPES:
        name = prefix + "/" + name
    return Member(
        name=name,
        type=kind,
        mode=_number(block[100:108]),
        uid=_number(block[108:116]),
        gid=_number(block[116:124]),
        size=_number(block[124:136]),
        mtime=_number(block[136:148]),
        linkname=_nts(block[157:257]),
        devmajor=_number(block[329:337]),
        devminor=_number(block[337:345]),
    )


def parse_pax(data: bytes) -> dict[str, bytes]:
    """PAX records (``"<len> <key>=<value>\\n"``); values stay bytes. Raises HeaderError."""
    records: dict[str, bytes] = {}
    pos = 0
    while pos < len(data):
        if data[pos] == 0:
            break  # padding some writers leave inside the header's size
        space = data.find(b" ", pos, pos + 21)
        if space < 0:
            raise HeaderError("bad PAX record")
        digits = data[pos:space]
        if not digits.isdigit():
            raise HeaderError("bad PAX record length")
        length = int(digits)
        end = pos + length
        if length <= space - pos + 1 or end > len(data) or data[end - 1] != 0x0A:
            raise HeaderError("bad PAX record")
        key, eq, value = data[space + 1 : end - 1].partition(b"=")
        if not eq or not key:
            raise HeaderError("bad PAX record")
        records[key.decode("utf-8", "surrogateescape")] = value
        pos = end
    return records


def _pax_int(value: bytes) -> int:
    if not value.isdigit():
        raise HeaderError(f"invalid PAX number {value!r}")
    return int(value)


def _pax_float(value: bytes) -> float:
    try:
        seconds = float(value.decode("ascii"))
    except ValueError:
        raise HeaderError(f"invalid PAX time {value!r}")
    if not math.isfinite(seconds):
        raise HeaderError(f"invalid PAX time {value!r}")
    return seconds


def apply_pax(fields: dict[str, object], records: dict[str, bytes]) -> None:
    """Patch a member's ``fields`` with PAX ``records`` as tarfile does."""
    xattrs = fields["xattrs"]
    assert isinstance(xattrs, dict)
    for key, value in records.items():
        if key.startswith("GNU.sparse."):
            raise HeaderError("sparse files are not supported")
        if key == "path":
            fields["name"] = value.decode("utf-8", "surrogateescape").rstrip("/")
        elif key == "linkpath":
            fields["linkname"] = value.decode("utf-8", "surrogateescape")
        elif key in ("size", "uid", "gid"):
            fields[key] = _pax_int(value)
        elif key == "mtime":
            fields["mtime"] = _pax_float(value)
        elif key.startswith(_XATTR):
            xattrs[key[len(_XATTR) :]] = value


class TarReader:
    """The members of a tar stream, in order; see the module docstring."""

    def __init__(
        self, stream: BinaryIO, *, hash_stream: bool = False, what: str = "tar archive"
    ) -> None:
        self._stream = stream
        self._hash = hashlib.sha256() if hash_stream else None
        self._what = what
        self._buf = b""
        self._pos = 0
        self._left = 0  # data bytes of the current member not consumed yet
        self._pad = 0
        self._global: dict[str, bytes] = {}
        self._started = False

    def error(self, detail: str) -> errdefs.InvalidArgument:
        return errdefs.InvalidArgument(f"invalid {self._what}: {detail}")

    # --- reading -------------------------------------------------------------

    def _read(self, size: int) -> bytes:
        data = self._stream.read(size)
        if data and self._hash is not None:
            self._hash.update(data)
        return data or b""

    def _some(self, limit: int) -> bytes | memoryview:
        """Between 1 and ``limit`` bytes; EOF is the archive's fault."""
        if self._pos < len(self._buf):
            end = min(len(self._buf), self._pos + limit)
            out = memoryview(self._buf)[self._pos : end]
            self._pos = end
            return out
        if limit >= _BUFFER:
            data = self._read(min(limit, _CHUNK))
            if not data:
                raise self.error("unexpected EOF")
            return data
        self._buf, self._pos = self._read(_BUFFER), 0
        if not self._buf:
            raise self.error("unexpected EOF")
        return self._some(limit)

    def _exact(self, size: int) -> bytes:
        parts = []
        while size:
            chunk = self._some(size)
            parts.append(chunk)
            size -= len(chunk)
        return b"".join(parts)

    def _skip(self, size: int) -> None:
        while size:
            size -= len(self._some(size))

    def _header(self) -> bytes:
        """The next header block; b"" when the stream ends cleanly before it."""
        if self._pos >= len(self._buf):
            self._buf, self._pos = self._read(_BUFFER), 0
            if not self._buf:
                return b""
        return self._exact(BLOCK)

    # --- members -------------------------------------------------------------

    def __iter__(self) -> Iterator[Member]:
        while True:
            member = self.next()
            if member is None:
                return
            yield member

    def next(self) -> Member | None:
        """The next member (its data not consumed yet), or None at the end."""
        self._skip(self._left + self._pad)
        self._left = self._pad = 0
        pending: list[tuple[bytes, bytes]] = []  # extension headers, in arrival order
        while True:
            block = self._header()
            if not block:
                if not self._started:
                    raise self.error("empty archive")
                if pending:
                    raise self.error("unexpected EOF")
                return None  # no end-of-archive blocks: Go's reader accepts that too
            self._started = True
            try:
                header = parse_header(block)
            except HeaderError as exc:
                raise self.error(str(exc))
            if header is None:
                if pending:
                    raise self.error("extension header without a member")
                return None
            if header.type not in _EXTENSIONS:
                break
            if not 0 <= header.size <= MAX_EXTENSION:
                raise self.error("extension header too large")
            data = self._exact(header.size)
            self._skip(-header.size % BLOCK)
            if header.type == PAX_GLOBAL:
                try:
                    self._global.update(parse_pax(data))
                except HeaderError as exc:
                    raise self.error(str(exc))
            else:
                pending.append((header.type, data))
        try:
            member = self._extended(header, pending)
        except HeaderError as exc:
            raise self.error(f"{header.name}: {exc}")
        if member.type == GNU_SPARSE:
            raise self.error(f"{member.name}: sparse files are not supported")
        if member.size < 0:
            raise self.error(f"{member.name}: negative size")
        self._left = member.size if member.has_data() else 0
        self._pad = -self._left % BLOCK
        return member

    def _extended(self, header: Member, pending: list[tuple[bytes, bytes]]) -> Member:
        if not pending and not self._global:
            return header
        fields: dict[str, object] = {
            "name": header.name,
            "linkname": header.linkname,
            "size": header.size,
            "uid": header.uid,
            "gid": header.gid,
            "mtime": header.mtime,
            "xattrs": {},
        }
        apply_pax(fields, self._global)
        # tarfile nests: the first extension header read is applied last
        for kind, data in reversed(pending):
            if kind == GNU_LONGNAME:
                fields["name"] = _nts(data)
            elif kind == GNU_LONGLINK:
                fields["linkname"] = _nts(data)
            else:
                apply_pax(fields, parse_pax(data))
        xattrs = fields.pop("xattrs")
        assert isinstance(xattrs, dict)
        return Member(
            type=header.type,
            mode=header.mode,
            devmajor=header.devmajor,
            devminor=header.devminor,
            xattrs=tuple(xattrs.items()),
            **fields,  # type: ignore[arg-type]
        )

    # --- data ----------------------------------------------------------------

    def copy_data(self, fd: int, digest: _Hash | None = None) -> int:
        """Write the current member's remaining data to ``fd`` (and into
        ``digest``); returns the number of bytes written."""
        total = 0
        while self._left:
            chunk = self._some(min(self._left, _CHUNK))
            if digest is not None:
                digest.update(chunk)
            written = os.write(fd, chunk)
            if written < len(chunk):
                view = memoryview(chunk)[written:]
                while view:
                    view = view[os.write(fd, view) :]
            self._left -= len(chunk)
            total += len(chunk)
        return total

    def read_data(self, limit: int = MAX_EXTENSION) -> bytes:
        """The current member's remaining data in memory (at most ``limit`` bytes)."""
        if self._left > limit:
            raise self.error("member too large to read into memory")
        data = self._exact(self._left)
        self._left = 0
        return data

    def finish(self) -> str | None:
        """Read the stream to its end; the sha256 hex of all of it when hashing."""
        self._left = self._pad = 0
        self._buf, self._pos = b"", 0
        while self._read(_CHUNK):
            pass
        return self._hash.hexdigest() if self._hash is not None else None
