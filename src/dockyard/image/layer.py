"""Applying a layer tar onto a directory, safely.

The input is hostile. Rules this module enforces:

* Names are made relative (a leading ``/`` is stripped, as Docker does) and
  normalized; a name that still climbs out (``../x``) is refused.
* The directory is walked with ``openat``-style calls (``dir_fd``) and
  ``O_NOFOLLOW``: a symlink met on the way to an entry's parent is resolved
  as if the target directory were the root (absolute targets restart at the
  target, ``..`` stops at it), the way Docker's chrooted extraction does, so
  ``a -> /tmp/outside`` followed by ``a/pwned`` writes ``<target>/tmp/outside/pwned``.
  The entry itself is never followed.
* Hard links must name a file inside the target.
* ``trusted.overlay.*`` xattrs from the archive are dropped (they would
  steer overlayfs); other xattrs are applied best effort.

OCI whiteouts (``.wh.<name>``, ``.wh..wh..opq``) become overlayfs whiteouts
(a 0/0 character device; ``trusted.overlay.opaque=y``) in ``"overlay"`` mode,
or deletions of the existing files in ``"delete"`` mode (for a snapshot that
is a full copy of its parent).

The diff ID is the sha256 of the whole uncompressed stream, trailing padding
included; the size is the sum of the regular files' sizes.

The tar format itself is ``image.tarstream``'s: each regular file goes from
the stream to its file in one copy. ``unpack`` is the general entry point
(the build context uses it to record each file's sha256 instead of the
stream's); ``apply_layer`` is a layer's.
"""

from __future__ import annotations

import errno
import gzip
import hashlib
import os
import posixpath
import shutil
import stat
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Literal

from dockyard import errdefs
from dockyard.image.tarstream import Member, TarReader
from dockyard.sys.securejoin import RootDir

if TYPE_CHECKING:
    from tarfile import TarInfo  # ``container.archive`` extracts with tarfile

WHITEOUT_PREFIX = ".wh."
OPAQUE_MARKER = ".wh..wh..opq"
_CHUNK = 1 << 20

WhiteoutMode = Literal["overlay", "delete"]


class _Prefixed:
    """A reader that first returns ``prefix`` then the rest of ``stream``."""

    def __init__(self, prefix: bytes, stream: BinaryIO) -> None:
        self._prefix = prefix
        self._stream = stream

    def read(self, size: int = -1) -> bytes:
        if self._prefix:
            if size < 0 or size >= len(self._prefix):
                out, self._prefix = self._prefix, b""
                rest = self._stream.read(-1 if size < 0 else size - len(out))
                return out + (rest or b"")
            out, self._prefix = self._prefix[:size], self._prefix[size:]
            return out
        return self._stream.read(size)


def _read_exact(stream: BinaryIO, size: int) -> bytes:
    out = b""
    while len(out) < size:
        chunk = stream.read(size - len(out))
        if not chunk:
            break
        out += chunk
    return out


def peek(stream: BinaryIO, size: int) -> tuple[bytes, BinaryIO]:
    """The first ``size`` bytes of ``stream`` and a reader that still returns them."""
    head = _read_exact(stream, size)
    return head, _Prefixed(head, stream)  # type: ignore[return-value]


def is_gzip(head: bytes) -> bool:
    return head[:2] == b"\x1f\x8b"


def decompressed(stream: BinaryIO) -> BinaryIO:
    """``stream`` uncompressed: gzip and zstd are detected by their magic."""
    magic, raw = peek(stream, 4)
    if is_gzip(magic):
        return gzip.GzipFile(fileobj=raw, mode="rb")  # type: ignore[arg-type]
    if magic == b"\x28\xb5\x2f\xfd":
        try:
            import zstandard  # optional: only needed for zstd layers
        except ImportError:
            raise errdefs.NotImplemented(
                "zstd-compressed layers need the 'zstandard' Python module"
            )
        return zstandard.ZstdDecompressor().stream_reader(raw)  # type: ignore[arg-type]
    if magic[:3] == b"BZh" or magic[:4] == b"\xfd7zX":
        raise errdefs.InvalidArgument("unsupported layer compression (bzip2/xz)")
    return raw  # type: ignore[return-value]


def clean_name(name: str) -> list[str]:
    """The components of an archive name relative to the target; refuses escapes."""
    norm = posixpath.normpath(name.lstrip("/") or ".")
    parts = [p for p in norm.split("/") if p]
    if any(p == ".." for p in parts) or "\x00" in name:
        raise errdefs.InvalidArgument(f"invalid path in layer: {name!r} is outside of the root")
    return parts


def hardlink(
    open_dir: Callable[[list[str]], int], member: Member | TarInfo, name: str, parent: int
) -> None:
    """Makes ``name`` in directory ``parent`` a hard link to the member's
    ``linkname``, a name of the same archive: ``open_dir`` opens a directory
    of the target by its components, so the source stays inside it."""
    target = clean_name(member.linkname)
    if not target:
        raise errdefs.InvalidArgument(f"{member.name}: hard link to the root")
    source_dir = open_dir(target[:-1])
    try:
        os.link(target[-1], name, src_dir_fd=source_dir, dst_dir_fd=parent, follow_symlinks=False)
    except (FileNotFoundError, PermissionError) as exc:
        raise errdefs.InvalidArgument(
            f"{member.name}: invalid hard link to {member.linkname!r}: {exc.strerror}"
        )
    finally:
        os.close(source_dir)


def make_node(member: Member | TarInfo, name: str, parent: int) -> None:
    """A character or block device or a fifo entry, made in directory ``parent``."""
    if member.isfifo():
        os.mkfifo(name, member.mode & 0o7777, dir_fd=parent)
        return
    kind = stat.S_IFCHR if member.ischr() else stat.S_IFBLK
    dev = os.makedev(member.devmajor, member.devminor)
    os.mknod(name, kind | (member.mode & 0o7777), dev, dir_fd=parent)


class _Tree(RootDir):
    """The target directory; a path the archive cannot walk is its fault."""

    def open_dir(self, parts: list[str], *, create: bool = False) -> int:
        try:
            return super().open_dir(parts, create=create)
        except FileNotFoundError:
            raise errdefs.InvalidArgument(f"{'/'.join(parts)}: no such directory")
        except NotADirectoryError:
            raise errdefs.InvalidArgument(f"{'/'.join(parts)}: not a directory")
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise errdefs.InvalidArgument(f"{'/'.join(parts)}: too many symlinks")
            raise


def _lstat(name: str, dir_fd: int) -> os.stat_result | None:
    try:
        return os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return None


def _remove(name: str, dir_fd: int) -> None:
    st = _lstat(name, dir_fd)
    if st is None:
        return
    if stat.S_ISDIR(st.st_mode):
        shutil.rmtree(name, dir_fd=dir_fd)
    else:
        os.unlink(name, dir_fd=dir_fd)


class _Applier:
    def __init__(
        self,
        tree: _Tree,
        reader: TarReader,
        whiteout: WhiteoutMode,
        file_digests: dict[str, tuple[int, str]] | None,
        root: str,
    ) -> None:
        self.tree = tree
        self.reader = reader
        self.whiteout = whiteout
        self.file_digests = file_digests
        self.root = root
        self.size = 0
        self.unpacked: set[str] = set()
        self.dir_times: list[tuple[list[str], int]] = []
        # The last parent directory, kept open only while entries are new
        # regular files in it: adding a name that did not exist cannot change
        # what the walk to that parent resolves to (the walk would have created
        # it), so reusing the fd gives what a fresh walk would. Anything else
        # (a replacement, a directory, a link, a whiteout) drops it.
        self._parent: tuple[list[str], int] | None = None

    def apply(self, member: Member) -> None:
        parts = clean_name(member.name)
        if not parts:
            return  # the root itself: its metadata belongs to the snapshot
        base = parts[-1]
        dir_parts = parts[:-1]
        if self._parent is not None and self._parent[0] == dir_parts:
            parent = self._parent[1]
        else:
            self.close()
            parent = self.tree.open_dir(dir_parts, create=True)
        self._parent = None
        keep = False
        try:
            if base == OPAQUE_MARKER:
                self._opaque(dir_parts, parent)
            elif base.startswith(WHITEOUT_PREFIX):
                self._whiteout(base[len(WHITEOUT_PREFIX) :], parent)
            else:
                keep = self._entry(member, parts, parent)
                self.unpacked.add("/".join(parts))
        finally:
            if keep:
                self._parent = (dir_parts, parent)
            else:
                os.close(parent)

    def close(self) -> None:
        if self._parent is not None:
            os.close(self._parent[1])
            self._parent = None

    def _opaque(self, dir_parts: list[str], parent: int) -> None:
        if self.whiteout == "overlay":
            os.setxattr(parent, "trusted.overlay.opaque", b"y")
            return
        prefix = "/".join(dir_parts)
        for name in os.listdir(parent):
            if posixpath.join(prefix, name) not in self.unpacked:
                _remove(name, parent)

    def _whiteout(self, name: str, parent: int) -> None:
        if not name or name in (".", "..") or "/" in name:
            raise errdefs.InvalidArgument(f"invalid whiteout name: {name!r}")
        _remove(name, parent)
        if self.whiteout == "overlay":
            os.mknod(name, stat.S_IFCHR | 0o000, os.makedev(0, 0), dir_fd=parent)

    def _entry(self, member: Member, parts: list[str], parent: int) -> bool:
        """Unpacks one entry; True when it was a new regular file."""
        name = parts[-1]
        existing = _lstat(name, parent)
        if existing is not None and not (member.isdir() and stat.S_ISDIR(existing.st_mode)):
            _remove(name, parent)
        if member.isreg():
            self._write_file(member, parts, parent)
            return existing is None
        if member.isdir():
            if existing is None or not stat.S_ISDIR(existing.st_mode):
                os.mkdir(name, 0o700, dir_fd=parent)
        elif member.issym():
            os.symlink(member.linkname, name, dir_fd=parent)
        elif member.islnk():
            hardlink(self.tree.open_dir, member, name, parent)
            return False  # shares the inode: its metadata is the target's
        elif member.ischr() or member.isblk() or member.isfifo():
            make_node(member, name, parent)
        else:
            raise errdefs.InvalidArgument(
                f"{member.name}: unhandled tar entry type {member.type!r}"
            )
        self._metadata(member, parts, name, parent)
        return False

    def _write_file(self, member: Member, parts: list[str], parent: int) -> None:
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(parts[-1], flags, 0o600, dir_fd=parent)
        try:
            digest = hashlib.sha256() if self.file_digests is not None else None
            self.size += self.reader.copy_data(fd, digest)
            # the same steps as _metadata, on the fd we hold (no lookups)
            os.fchown(fd, member.uid, member.gid)
            os.fchmod(fd, member.mode & 0o7777)  # after chown, which clears setuid/setgid
            for key, value in _xattrs(member):
                try:
                    os.setxattr(fd, key, value)
                except OSError:
                    pass  # best effort: the filesystem may not support this namespace
            mtime = int(member.mtime * 1_000_000_000)
            os.utime(fd, ns=(mtime, mtime))
            if digest is not None and self.file_digests is not None:
                path = os.path.join(self.root, "/".join(parts))
                self.file_digests[path] = (os.fstat(fd).st_ino, digest.hexdigest())
        finally:
            os.close(fd)

    def _metadata(self, member: Member, parts: list[str], name: str, parent: int) -> None:
        os.chown(name, member.uid, member.gid, dir_fd=parent, follow_symlinks=False)
        if not member.issym():
            # after chown, which clears the setuid/setgid bits
            os.chmod(name, member.mode & 0o7777, dir_fd=parent)
        for key, value in _xattrs(member):
            try:
                os.setxattr(f"/proc/self/fd/{parent}/{name}", key, value, follow_symlinks=False)
            except OSError:
                pass  # best effort: the filesystem may not support this namespace
        mtime = int(member.mtime * 1_000_000_000)
        if member.isdir():
            self.dir_times.append((parts, mtime))  # set last: children change it
        else:
            os.utime(name, ns=(mtime, mtime), dir_fd=parent, follow_symlinks=False)

    def finish(self) -> None:
        self.close()
        for parts, mtime in reversed(self.dir_times):
            parent = self.tree.open_dir(parts[:-1], create=False)
            try:
                os.utime(parts[-1], ns=(mtime, mtime), dir_fd=parent, follow_symlinks=False)
            finally:
                os.close(parent)


def _xattrs(member: Member) -> list[tuple[str, bytes]]:
    """The archive's xattrs but ``trusted.overlay.*``, which would steer overlayfs."""
    return [(k, v) for k, v in member.xattrs if not k.startswith("trusted.overlay.")]


@dataclass(frozen=True)
class Unpacked:
    """What ``unpack`` did: the stream's diff ID (when hashed) and the
    regular files' total size."""

    diff_id: str | None
    size: int


#: errors of the decompressors under the tar stream: the archive's fault
_CORRUPT = (EOFError, zlib.error, gzip.BadGzipFile, ValueError, OverflowError)
_CORRUPT_NAMES = ("ZstdError", "LZMAError")


def unpack(
    stream: BinaryIO,
    target: Path,
    *,
    whiteout: WhiteoutMode,
    hash_stream: bool = True,
    file_digests: dict[str, tuple[int, str]] | None = None,
    what: str = "layer archive",
) -> Unpacked:
    """Unpack the (uncompressed) tar ``stream`` into ``target`` with this
    module's rules. ``hash_stream``: compute the diff ID. ``file_digests``:
    record each regular file unpacked as host path (``target`` joined with its
    archive name) → (inode, sha256 hex). A corrupt or truncated archive
    raises InvalidArgument("invalid <what>: ...") and leaves a partial tree
    that the caller must remove; the stream is read to its end otherwise."""
    try:
        reader = TarReader(stream, hash_stream=hash_stream, what=what)
        tree = _Tree(target)
        try:
            applier = _Applier(tree, reader, whiteout, file_digests, str(target))
            try:
                for member in reader:
                    applier.apply(member)
                applier.finish()
            finally:
                applier.close()
            diff_id = reader.finish()  # covers the padding after the end-of-archive blocks
        finally:
            tree.close()
    except errdefs.DockyardError:
        raise
    except (*_CORRUPT, NotADirectoryError, IsADirectoryError, FileExistsError) as exc:
        raise errdefs.InvalidArgument(f"invalid {what}: {str(exc) or 'unexpected EOF'}")
    except OSError as exc:
        raise errdefs.System(f"failed to unpack the {what}: {exc}")
    except Exception as exc:
        if type(exc).__name__ in _CORRUPT_NAMES:
            raise errdefs.InvalidArgument(f"invalid {what}: {exc}")
        raise
    return Unpacked(diff_id="sha256:" + diff_id if diff_id else None, size=applier.size)


def apply_layer(stream: BinaryIO, target: Path, *, whiteout: WhiteoutMode) -> tuple[str, int]:
    """Unpack a layer tar (plain, gzip or zstd) into ``target``; returns
    ``(diff_id, size)``. A corrupt or truncated archive raises InvalidArgument
    and leaves a partial tree that the caller must remove."""
    try:
        plain = decompressed(stream)
    except OSError as exc:
        raise errdefs.System(f"failed to read the layer: {exc}")
    result = unpack(plain, target, whiteout=whiteout)
    assert result.diff_id is not None
    return result.diff_id, result.size
