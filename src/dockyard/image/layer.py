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
"""

from __future__ import annotations

import errno
import gzip
import hashlib
import os
import posixpath
import shutil
import stat
import tarfile
import zlib
from pathlib import Path
from typing import BinaryIO, Literal

from dockyard import errdefs
from dockyard.sys.securejoin import RootDir

WHITEOUT_PREFIX = ".wh."
OPAQUE_MARKER = ".wh..wh..opq"
_CHUNK = 1 << 20


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


class _Hashing:
    """Hashes every byte read through it."""

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream
        self.hash = hashlib.sha256()

    def read(self, size: int = -1) -> bytes:
        data = self._stream.read(size)
        self.hash.update(data)
        return data


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
    def __init__(self, tree: _Tree, whiteout: Literal["overlay", "delete"]) -> None:
        self.tree = tree
        self.whiteout = whiteout
        self.size = 0
        self.unpacked: set[str] = set()
        self.dir_times: list[tuple[list[str], int]] = []

    def apply(self, tar: tarfile.TarFile, member: tarfile.TarInfo) -> None:
        parts = clean_name(member.name)
        if not parts:
            return  # the root itself: its metadata belongs to the snapshot
        base = parts[-1]
        parent = self.tree.open_dir(parts[:-1], create=True)
        try:
            if base == OPAQUE_MARKER:
                self._opaque(parts[:-1], parent)
            elif base.startswith(WHITEOUT_PREFIX):
                self._whiteout(base[len(WHITEOUT_PREFIX) :], parent)
            else:
                self._entry(tar, member, parts, parent)
                self.unpacked.add("/".join(parts))
        finally:
            os.close(parent)

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

    def _entry(
        self, tar: tarfile.TarFile, member: tarfile.TarInfo, parts: list[str], parent: int
    ) -> None:
        name = parts[-1]
        existing = _lstat(name, parent)
        if existing is not None and not (member.isdir() and stat.S_ISDIR(existing.st_mode)):
            _remove(name, parent)
        if member.isdir():
            if existing is None or not stat.S_ISDIR(existing.st_mode):
                os.mkdir(name, 0o700, dir_fd=parent)
        elif member.isreg():
            self._write_file(tar, member, name, parent)
        elif member.issym():
            os.symlink(member.linkname, name, dir_fd=parent)
        elif member.islnk():
            self._hardlink(member, name, parent)
            return  # shares the inode: its metadata is the target's
        elif member.ischr() or member.isblk():
            kind = stat.S_IFCHR if member.ischr() else stat.S_IFBLK
            dev = os.makedev(member.devmajor, member.devminor)
            os.mknod(name, kind | (member.mode & 0o7777), dev, dir_fd=parent)
        elif member.isfifo():
            os.mkfifo(name, member.mode & 0o7777, dir_fd=parent)
        else:
            raise errdefs.InvalidArgument(
                f"{member.name}: unhandled tar entry type {member.type!r}"
            )
        self._metadata(member, parts, name, parent)

    def _write_file(
        self, tar: tarfile.TarFile, member: tarfile.TarInfo, name: str, parent: int
    ) -> None:
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(name, flags, 0o600, dir_fd=parent)
        with os.fdopen(fd, "wb") as out:
            source = tar.extractfile(member)
            if source is not None:
                shutil.copyfileobj(source, out, _CHUNK)
        self.size += member.size

    def _hardlink(self, member: tarfile.TarInfo, name: str, parent: int) -> None:
        target = clean_name(member.linkname)
        if not target:
            raise errdefs.InvalidArgument(f"{member.name}: hard link to the root")
        source_dir = self.tree.open_dir(target[:-1], create=False)
        try:
            os.link(
                target[-1], name, src_dir_fd=source_dir, dst_dir_fd=parent, follow_symlinks=False
            )
        except (FileNotFoundError, PermissionError) as exc:
            raise errdefs.InvalidArgument(
                f"{member.name}: invalid hard link to {member.linkname!r}: {exc.strerror}"
            )
        finally:
            os.close(source_dir)

    def _metadata(self, member: tarfile.TarInfo, parts: list[str], name: str, parent: int) -> None:
        os.chown(name, member.uid, member.gid, dir_fd=parent, follow_symlinks=False)
        if not member.issym():
            # after chown, which clears the setuid/setgid bits
            os.chmod(name, member.mode & 0o7777, dir_fd=parent)
        for key, value in member.pax_headers.items():
            if key.startswith("SCHILY.xattr.") and not key.startswith(
                "SCHILY.xattr.trusted.overlay."
            ):
                try:
                    os.setxattr(
                        f"/proc/self/fd/{parent}/{name}",
                        key[len("SCHILY.xattr.") :],
                        value.encode("utf-8", "surrogateescape"),
                        follow_symlinks=False,
                    )
                except OSError:
                    pass  # best effort: the filesystem may not support this namespace
        mtime = int(member.mtime * 1_000_000_000)
        if member.isdir():
            self.dir_times.append((parts, mtime))  # set last: children change it
        else:
            os.utime(name, ns=(mtime, mtime), dir_fd=parent, follow_symlinks=False)

    def finish(self) -> None:
        for parts, mtime in reversed(self.dir_times):
            parent = self.tree.open_dir(parts[:-1], create=False)
            try:
                os.utime(parts[-1], ns=(mtime, mtime), dir_fd=parent, follow_symlinks=False)
            finally:
                os.close(parent)


_CORRUPT = (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile)


def apply_layer(
    stream: BinaryIO, target: Path, *, whiteout: Literal["overlay", "delete"]
) -> tuple[str, int]:
    """Unpack a layer tar (plain, gzip or zstd) into ``target``; returns
    ``(diff_id, size)``. A corrupt or truncated archive raises InvalidArgument
    and leaves a partial tree that the caller must remove."""
    try:
        hashing = _Hashing(decompressed(stream))
        tree = _Tree(target)
        try:
            applier = _Applier(tree, whiteout)
            with tarfile.open(fileobj=hashing, mode="r|") as tar:  # type: ignore[call-overload]
                for member in tar:
                    applier.apply(tar, member)
            applier.finish()
            while hashing.read(_CHUNK):
                pass  # the diff ID covers the padding after the end-of-archive blocks
        finally:
            tree.close()
    except _CORRUPT as exc:
        raise errdefs.InvalidArgument(f"invalid layer archive: {exc or 'unexpected EOF'}")
    except errdefs.DockyardError:
        raise
    except (NotADirectoryError, IsADirectoryError, FileExistsError) as exc:
        raise errdefs.InvalidArgument(f"invalid layer archive: {exc}")
    except OSError as exc:
        raise errdefs.System(f"failed to apply layer: {exc}")
    except Exception as exc:
        if type(exc).__name__ == "ZstdError":
            raise errdefs.InvalidArgument(f"invalid layer archive: {exc}")
        raise
    return "sha256:" + hashing.hash.hexdigest(), applier.size
