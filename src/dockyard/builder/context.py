"""The build context: the tar stream a client sends to ``POST /build``,
unpacked into a private directory, and safe path lookups inside it.

The archive is hostile. It is unpacked with the layer applier
(``image.layer``: names climbing out with ``..`` or absolute names are
refused or made relative, parents are walked without following symlinks,
hard links must stay inside), streamed (no member is held in memory), and
every source path a COPY names is resolved with ``secure_join`` so a symlink
in the context pointing outward resolves inside the context directory.

Accepted bodies: a tar, plain or compressed with gzip, bzip2, xz or zstd;
or, as dockerd does, a bare Dockerfile (any body that is not an archive).
The directory lives under ``<data-root>/builder/<id>`` and ``close`` removes
it whatever happened.
"""

from __future__ import annotations

import bz2
import hashlib
import lzma
import os
import posixpath
import secrets
import shutil
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from dockyard import errdefs
from dockyard.image import layer as _layer
from dockyard.image.layer import decompressed, peek
from dockyard.sys.securejoin import secure_join

_CHUNK = 1 << 20
_BZIP2 = b"BZh"
_XZ = b"\xfd7zXZ\x00"


@dataclass(frozen=True)
class BuildContext:
    """An unpacked context; ``root`` is the directory that stands for ``.``."""

    root: Path
    #: host path of each regular file unpacked → (inode, sha256 hex): COPY's
    #: checksum need not read the file again
    digests: dict[str, tuple[int, str]] = field(default_factory=dict)

    def file_digest(self, path: str, st: os.stat_result) -> str | None:
        """The sha256 of a context file recorded while unpacking, if ``path``
        (lstat ``st``) is still that file."""
        known = self.digests.get(path)
        if known is not None and known[0] == st.st_ino:
            return known[1]
        return None

    def close(self) -> None:
        shutil.rmtree(self.root.parent, ignore_errors=True)

    def __enter__(self) -> BuildContext:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def resolve(self, path: str) -> str:
        """A host path for ``path`` (relative to the context) inside ``root``;
        symlinks are followed as if ``root`` were ``/``."""
        return secure_join(str(self.root), path)

    def read_dockerfile(self, name: str) -> str:
        """The Dockerfile's text; Docker's error when it is missing."""
        clean = relative_path(name or "Dockerfile")
        if clean is None:
            raise errdefs.InvalidArgument(f"Cannot locate specified Dockerfile: {name}")
        path = self.resolve(clean)
        if not os.path.isfile(path) and not name:
            # dockerd falls back to the lower-case name
            path = self.resolve("dockerfile")
        try:
            with open(path, "rb") as f:
                data = f.read()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise errdefs.InvalidArgument(
                f"Cannot locate specified Dockerfile: {name or 'Dockerfile'}"
            )
        return data.decode("utf-8", "replace")


def relative_path(path: str) -> str | None:
    """``path`` cleaned relative to the context root, or None when it climbs out."""
    norm = posixpath.normpath("/" + path.lstrip("/")) if path.startswith("/") else None
    if norm is not None:
        return norm.lstrip("/")
    norm = posixpath.normpath(path or ".")
    if norm == ".." or norm.startswith("../"):
        return None
    return "" if norm == "." else norm


def _is_tar_header(block: bytes) -> bool:
    if len(block) < 512:
        return False
    try:
        tarfile.TarInfo.frombuf(block[:512], "utf-8", "surrogateescape")
    except tarfile.HeaderError:
        return False
    return True


class _Reader:
    """Exact reads from the (decompressed) body."""

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream

    def exact(self, size: int) -> bytes:
        parts, left = [], size
        while left:
            chunk = self._stream.read(min(left, _CHUNK))
            if not chunk:
                raise errdefs.InvalidArgument("invalid build context: unexpected EOF")
            parts.append(chunk)
            left -= len(chunk)
        return b"".join(parts) if len(parts) != 1 else parts[0]

    def header(self) -> bytes:
        """The next 512-byte header; b"" at a clean end of the stream."""
        first = self._stream.read(512)
        if not first or len(first) == 512:
            return first
        return first + self.exact(512 - len(first))

    def drain(self) -> None:
        while self._stream.read(_CHUNK):
            pass


def _pax_records(data: bytes) -> dict[str, str]:
    records: dict[str, str] = {}
    pos = 0
    while pos < len(data):
        space = data.find(b" ", pos)
        if space < 0:
            break
        try:
            length = int(data[pos:space])
        except ValueError:
            raise errdefs.InvalidArgument("invalid build context: bad PAX header")
        if length <= 0:
            raise errdefs.InvalidArgument("invalid build context: bad PAX header")
        record = data[space + 1 : pos + length - 1]
        key, _, value = record.partition(b"=")
        records[key.decode("utf-8", "surrogateescape")] = value.decode("utf-8", "surrogateescape")
        pos += length
    return records


def _apply_pax(member: tarfile.TarInfo, records: dict[str, str]) -> None:
    for key, value in records.items():
        if key == "path":
            member.name = value
        elif key == "linkpath":
            member.linkname = value
        elif key in ("size", "uid", "gid"):
            setattr(member, key, int(value))
        elif key == "mtime":
            member.mtime = float(value)
    member.pax_headers = records


class _HashingApplier(_layer._Applier):
    """The layer applier (its safety rules) writing each file straight from
    the body and recording its sha256 as it goes."""

    def __init__(self, tree, root: Path, digests: dict[str, tuple[int, str]], reader) -> None:
        super().__init__(tree, "delete")
        self._root = str(root)
        self._digests = digests
        self._reader = reader
        self._current = ""
        self.consumed = False

    def apply(self, tar, member: tarfile.TarInfo) -> None:
        self._current = "/".join(_layer.clean_name(member.name))
        self.consumed = False
        super().apply(tar, member)

    def _write_file(self, tar, member, name, parent) -> None:
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(name, flags, 0o600, dir_fd=parent)
        digest = hashlib.sha256()
        self.consumed = True
        try:
            left = member.size
            while left:
                chunk = self._reader.exact(min(left, _CHUNK))
                digest.update(chunk)
                _write_all(fd, chunk)
                left -= len(chunk)
            inode = os.fstat(fd).st_ino
        finally:
            os.close(fd)
        self.size += member.size
        self._digests[os.path.join(self._root, self._current)] = (inode, digest.hexdigest())


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _extract(stream: BinaryIO, context: BuildContext) -> None:
    """Unpack a tar stream with the layer applier's rules. The headers are
    parsed here (ustar, PAX and GNU long names) so file contents go from the
    body to disk in one copy: tarfile's stream mode copies each block
    several times, which costs more than the disk write."""
    reader = _Reader(stream)
    tree = _layer._Tree(context.root)
    try:
        applier = _HashingApplier(tree, context.root, context.digests, reader)
        pax: dict[str, str] = {}
        long_name = long_link = None
        while True:
            block = reader.header()
            if not block:
                break  # no end-of-archive blocks: Go's reader accepts that too
            try:
                member = tarfile.TarInfo.frombuf(block, "utf-8", "surrogateescape")
            except tarfile.EOFHeaderError:
                break
            except tarfile.HeaderError as exc:
                raise errdefs.InvalidArgument(f"invalid build context: {exc}")
            padding = -member.size % 512
            if member.type in (tarfile.XHDTYPE, tarfile.XGLTYPE, tarfile.GNUTYPE_LONGNAME,
                               tarfile.GNUTYPE_LONGLINK):  # fmt: skip
                data = reader.exact(member.size)
                reader.exact(padding) if padding else None
                if member.type == tarfile.XHDTYPE:
                    pax = _pax_records(data)
                elif member.type == tarfile.GNUTYPE_LONGNAME:
                    long_name = data.rstrip(b"\0").decode("utf-8", "surrogateescape")
                elif member.type == tarfile.GNUTYPE_LONGLINK:
                    long_link = data.rstrip(b"\0").decode("utf-8", "surrogateescape")
                continue
            if long_name is not None:
                member.name, long_name = long_name, None
            if long_link is not None:
                member.linkname, long_link = long_link, None
            if pax:
                _apply_pax(member, pax)
                padding = -member.size % 512
                pax = {}
            if member.type == tarfile.GNUTYPE_SPARSE:
                raise errdefs.InvalidArgument(
                    "invalid build context: sparse files are not supported"
                )
            if member.type == tarfile.AREGTYPE or member.type == tarfile.CONTTYPE:
                member.type = tarfile.REGTYPE
            applier.apply(None, member)
            if member.size and not (member.isreg() and applier.consumed):
                reader.exact(member.size)  # data the applier did not take
            if padding:
                reader.exact(padding)
        applier.finish()
        reader.drain()
    except (NotADirectoryError, IsADirectoryError, FileExistsError) as exc:
        raise errdefs.InvalidArgument(f"invalid build context: {exc}")
    except errdefs.DockyardError:
        raise
    except (OSError, EOFError, ValueError) as exc:
        raise errdefs.System(f"failed to unpack the build context: {exc}")
    finally:
        tree.close()


def _uncompressed(stream: BinaryIO) -> tuple[bytes, BinaryIO]:
    head, stream = peek(stream, 6)
    if head.startswith(_BZIP2):
        stream = bz2.BZ2File(stream)  # type: ignore[assignment]
    elif head.startswith(_XZ):
        stream = lzma.LZMAFile(stream)  # type: ignore[assignment]  # noqa: SIM115
    else:
        stream = decompressed(stream)  # gzip, zstd or plain
    return peek(stream, 512)


def receive(stream: BinaryIO, base: Path, *, dockerfile: str = "Dockerfile") -> BuildContext:
    """Unpack ``stream`` into a new directory under ``base``. A body that is
    not an archive is taken as the Dockerfile itself (saved as ``dockerfile``)."""
    workdir = Path(base) / secrets.token_hex(16)
    root = workdir / "context"
    root.mkdir(parents=True, mode=0o700)
    context = BuildContext(root)
    try:
        try:
            head, plain = _uncompressed(stream)
        except (OSError, EOFError, lzma.LZMAError) as exc:
            raise errdefs.InvalidArgument(f"failed to read the build context: {exc}")
        if not head:
            return context  # an empty body: an empty context
        if _is_tar_header(head) or head == b"\0" * 512:
            _extract(plain, context)
        else:
            name = relative_path(dockerfile or "Dockerfile") or "Dockerfile"
            target = Path(context.resolve(name))
            target.parent.mkdir(parents=True, exist_ok=True)
            with open(target, "wb") as out:
                shutil.copyfileobj(plain, out, 1 << 20)  # type: ignore[misc]
        os.chmod(root, 0o755)
    except BaseException:
        context.close()
        raise
    return context
