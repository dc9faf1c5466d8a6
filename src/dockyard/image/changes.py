"""A snapshot's changes against its parent: the list ``docker diff`` shows,
and the same changes written as an OCI layer tar (commit, build steps).

Two ways to find them, one per snapshotter kind:

* overlay (``whiteout_mode == "overlay"``): the snapshot's upper dir holds
  exactly what changed. A 0/0 character device is a deletion, a directory
  with ``trusted.overlay.opaque=y`` replaced the one below it. Whether an
  entry is Added or Changed is decided by looking its path up in the parent
  layers with overlay's own rules (a whiteout or a non-directory hides
  everything below it, an opaque directory hides the directories below it).
* copy (``"delete"``): the snapshot is a full tree; it is compared with its
  parent's full tree, both walked side by side. A regular file whose owner,
  mode, size and mtime are all unchanged is compared byte for byte (once per
  inode pair): a COPY of other content with the same mtime is a change.

Both walks go depth first with the names of each directory sorted bytewise,
as Go's ``filepath.Walk`` does, so the order is Docker's and the tar is
deterministic. Docker's rule for directories is kept: a directory that exists
below with the same size, mode and mtime is not a change by itself, but the
parent of an added or deleted entry always is.

Docker keeps the mount points the runtime needs (``/etc/hosts``, ``/proc``,
...) in an "init layer" under the container's own layer, so they never show
up as changes. We have no such layer: the runtime creates missing mount
points in the container's layer. An *added*, *empty* file or directory at
one of those paths is therefore left out of both the list and the tar, and so
is a directory whose only reason to be in the upper dir is such a mount point.
"""

from __future__ import annotations

import contextlib
import enum
import errno
import os
import stat
import tarfile
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from dockyard import errdefs
from dockyard.store.snapshots import Snapshotter, mount_all, unmount

WHITEOUT_PREFIX = ".wh."
OPAQUE_MARKER = ".wh..wh..opq"
_OPAQUE_XATTR = "trusted.overlay.opaque"
_SKIP_XATTR_PREFIXES = ("trusted.overlay.", "security.selinux")

#: what Docker's init layer holds (daemon/initlayer): mount points, not changes
MOUNT_POINTS = frozenset(
    {
        "/.dockerenv",
        "/dev",
        "/dev/console",
        "/dev/pts",
        "/dev/shm",
        "/etc/hostname",
        "/etc/hosts",
        "/etc/mtab",
        "/etc/resolv.conf",
        "/proc",
        "/sys",
    }
)


class ChangeKind(enum.IntEnum):
    """The wire values of ``GET /containers/{id}/changes``."""

    MODIFY = 0
    ADD = 1
    DELETE = 2

    @property
    def letter(self) -> str:
        return "CAD"[self]


@dataclass(frozen=True)
class Change:
    kind: ChangeKind
    path: str  # absolute inside the container: "/etc/passwd"

    def to_json(self) -> dict[str, object]:
        return {"Kind": int(self.kind), "Path": self.path}


@dataclass(frozen=True)
class _Node:
    """One entry the walk found. ``source`` is the file to archive (None for
    a deletion); ``record``: listed by ``changes``; ``archive``: in the tar."""

    path: str
    kind: ChangeKind
    source: str | None
    st: os.stat_result | None
    record: bool = True
    archive: bool = True
    opaque: bool = False


# -- helpers -------------------------------------------------------------------


def _lstat(path: str) -> os.stat_result | None:
    try:
        return os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None


def _is_whiteout(st: os.stat_result) -> bool:
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def _is_opaque(path: str) -> bool:
    try:
        return os.getxattr(path, _OPAQUE_XATTR, follow_symlinks=False) == b"y"
    except OSError:
        return False


def _sorted_names(path: str) -> list[str]:
    return sorted(os.listdir(path), key=os.fsencode)


def _same_dir(a: os.stat_result, b: os.stat_result) -> bool:
    """moby's test for "this directory was not itself changed"."""
    if a.st_mode != b.st_mode or a.st_size != b.st_size:
        return False
    sa, na = divmod(a.st_mtime_ns, 1_000_000_000)
    sb, nb = divmod(b.st_mtime_ns, 1_000_000_000)
    return sa == sb and (na == nb or na == 0 or nb == 0)


def _mount_point_only(path: str, st: os.stat_result) -> bool:
    """An added entry the runtime made as a mount point (see the module doc)."""
    if path not in MOUNT_POINTS:
        return False
    if stat.S_ISREG(st.st_mode):
        return st.st_size == 0
    return stat.S_ISDIR(st.st_mode) or stat.S_ISLNK(st.st_mode)


def _with_parents(dir_node: _Node, children: list[_Node]) -> list[_Node]:
    """Docker's parent rule: an added or deleted entry's directory is recorded as changed."""
    if not dir_node.record and any(
        c.record and c.kind != ChangeKind.MODIFY and c.path.rpartition("/")[0] == dir_node.path
        for c in children
    ):
        dir_node = _Node(dir_node.path, ChangeKind.MODIFY, dir_node.source, dir_node.st)
    return [dir_node, *children]


# -- overlay -------------------------------------------------------------------


class _Lowers:
    """The parent layers (upper dirs, top first) seen through overlay's rules."""

    def __init__(self, layers: list[str]) -> None:
        self.layers = layers
        self._dirs: dict[str, list[int]] = {"": list(range(len(layers)))}

    def _dir_layers(self, rel: str) -> list[int]:
        """The layers that contribute to the merged directory ``rel``."""
        cached = self._dirs.get(rel)
        if cached is not None:
            return cached
        out: list[int] = []
        for i in self._dir_layers(rel.rpartition("/")[0]):
            st = _lstat(self.layers[i] + rel)
            if st is None:
                continue
            if not stat.S_ISDIR(st.st_mode):
                break  # a whiteout or a file hides everything below
            out.append(i)
            if _is_opaque(self.layers[i] + rel):
                break
        self._dirs[rel] = out
        return out

    def lookup(self, rel: str) -> os.stat_result | None:
        for i in self._dir_layers(rel.rpartition("/")[0]):
            st = _lstat(self.layers[i] + rel)
            if st is not None:
                return None if _is_whiteout(st) else st
        return None

    def names(self, rel: str) -> set[str]:
        seen: dict[str, bool] = {}
        for i in self._dir_layers(rel):
            with os.scandir(self.layers[i] + (rel or "/")) as it:
                for entry in it:
                    if entry.name not in seen:
                        seen[entry.name] = _is_whiteout(entry.stat(follow_symlinks=False))
        return {name for name, gone in seen.items() if not gone}


def _overlay_walk(upper: str, lowers: _Lowers, rel_dir: str, opaque: bool) -> list[_Node]:
    names = _sorted_names(upper + (rel_dir or "/"))
    hidden: set[str] = set()
    if opaque:
        hidden = lowers.names(rel_dir) - set(names)
        names = sorted([*names, *hidden], key=os.fsencode)
    out: list[_Node] = []
    for name in names:
        rel = f"{rel_dir}/{name}"
        if name in hidden:  # replaced by an opaque directory: gone, nothing to archive
            out.append(_Node(rel, ChangeKind.DELETE, None, None, archive=False))
            continue
        source = upper + rel
        st = os.lstat(source)
        below = lowers.lookup(rel)
        if _is_whiteout(st):
            if below is not None:
                out.append(_Node(rel, ChangeKind.DELETE, None, st))
            continue
        if stat.S_ISSOCK(st.st_mode):
            continue
        if below is None and _mount_point_only(rel, st) and not _has_entries(source, st):
            continue
        is_dir = stat.S_ISDIR(st.st_mode)
        is_opaque = is_dir and _is_opaque(source)
        kind = ChangeKind.ADD if below is None else ChangeKind.MODIFY
        record = True
        if is_dir and below is not None and stat.S_ISDIR(below.st_mode) and not is_opaque:
            record = not _same_dir(st, below)
        node = _Node(rel, kind, source, st, record=record, opaque=is_opaque)
        if not is_dir:
            out.append(node)
            continue
        children = _overlay_walk(upper, lowers, rel, is_opaque)
        if (
            not children
            and kind == ChangeKind.MODIFY
            and _same_owner(st, below)
            and _has_entries(source, st)
        ):
            continue  # only mount points inside: in the upper dir for the runtime's sake
        out.extend(_with_parents(node, children))
    return out


def _has_entries(path: str, st: os.stat_result) -> bool:
    if not stat.S_ISDIR(st.st_mode):
        return False
    with os.scandir(path) as it:
        return any(True for _ in it)


def _same_owner(a: os.stat_result, b: os.stat_result | None) -> bool:
    return (
        b is not None
        and stat.S_ISDIR(b.st_mode)
        and (a.st_mode, a.st_uid, a.st_gid) == (b.st_mode, b.st_uid, b.st_gid)
    )


# -- copy ----------------------------------------------------------------------

_COMPARE_CHUNK = 1 << 20
_Seen = dict[tuple[int, int, int, int], bool]  # (new dev, ino, old dev, ino) -> differs


def _differs(a: os.stat_result, b: os.stat_result, path_a: str, path_b: str, seen: _Seen) -> bool:
    if (a.st_mode, a.st_uid, a.st_gid) != (b.st_mode, b.st_uid, b.st_gid):
        return True
    if stat.S_ISDIR(a.st_mode):
        return False
    if a.st_size != b.st_size or a.st_mtime_ns != b.st_mtime_ns or a.st_rdev != b.st_rdev:
        return True
    if stat.S_ISLNK(a.st_mode):
        return os.readlink(path_a) != os.readlink(path_b)
    if not stat.S_ISREG(a.st_mode) or a.st_size == 0:
        return False
    # Same size and mtime is not the same file: a COPY of other content with
    # the same mtime (a context tar's zero mtimes) must still be a change.
    # Each inode is compared once (a copy keeps hard links: busybox's applets).
    key = (a.st_dev, a.st_ino, b.st_dev, b.st_ino)
    if key not in seen:
        seen[key] = not _same_content(path_a, path_b)
    return seen[key]


def _same_content(path_a: str, path_b: str) -> bool:
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC
    with open(os.open(path_a, flags), "rb") as fa, open(os.open(path_b, flags), "rb") as fb:
        while True:
            chunk = fa.read(_COMPARE_CHUNK)
            if chunk != fb.read(_COMPARE_CHUNK):
                return False
            if not chunk:
                return True


def _copy_walk(new: str, old: str | None, rel_dir: str, seen: _Seen | None = None) -> list[_Node]:
    seen = {} if seen is None else seen
    new_names = _sorted_names(new + (rel_dir or "/"))
    old_names = _sorted_names(old + (rel_dir or "/")) if old is not None else []
    out: list[_Node] = []
    for name in sorted(set(new_names) | set(old_names), key=os.fsencode):
        rel = f"{rel_dir}/{name}"
        source = new + rel
        old_path = (old or "") + rel
        st = _lstat(source)
        before = _lstat(old_path) if old is not None else None
        if st is None:
            if before is not None:  # the whiteout gets its directory's owner and mtime
                out.append(_Node(rel, ChangeKind.DELETE, None, os.lstat(new + (rel_dir or "/"))))
            continue
        if stat.S_ISSOCK(st.st_mode):
            continue
        is_dir = stat.S_ISDIR(st.st_mode)
        if before is None:
            if _mount_point_only(rel, st) and not _has_entries(source, st):
                continue
            out.append(_Node(rel, ChangeKind.ADD, source, st))
            if is_dir:
                out.extend(_copy_walk(new, None, rel, seen))
            continue
        if not is_dir or not stat.S_ISDIR(before.st_mode):
            if stat.S_ISDIR(before.st_mode) or _differs(st, before, source, old_path, seen):
                out.append(_Node(rel, ChangeKind.MODIFY, source, st))
                if is_dir:
                    out.extend(_copy_walk(new, None, rel, seen))
            continue
        children = _copy_walk(new, old, rel, seen)
        own = _differs(st, before, source, old_path, seen)
        if children or own:
            out.append(_Node(rel, ChangeKind.MODIFY, source, st))
            out.extend(children)
    return out


# -- the walk for a snapshot ------------------------------------------------------


def _walk(snapshotter: Snapshotter, key: str) -> list[_Node]:
    upper = str(snapshotter.upper_dir(key))
    parent = snapshotter.parent(key)
    try:
        if snapshotter.whiteout_mode == "overlay":
            layers = []
            while parent is not None:
                layers.append(str(snapshotter.upper_dir(parent)))
                parent = snapshotter.parent(parent)
            return _overlay_walk(upper, _Lowers(layers), "", False)
        old = str(snapshotter.upper_dir(parent)) if parent is not None else None
        return _copy_walk(upper, old, "")
    except OSError as exc:
        raise errdefs.System(f"reading the changes of snapshot {key}: {exc}")


def changes(snapshotter: Snapshotter, key: str) -> list[Change]:
    """What ``docker diff`` lists for snapshot ``key``, in Docker's order."""
    return [Change(n.kind, n.path) for n in _walk(snapshotter, key) if n.record]


# -- the layer tar -------------------------------------------------------------

_BLOCK = 512
_FLUSH = 1 << 20
_INLINE = 64 << 10  # smaller files are read into the buffer; larger ones go by sendfile
_OCTAL7 = 0o7777777
_OCTAL11 = 0o77777777777
_PATH_FLAGS = os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC


def _ustar(
    name: bytes,
    mode: int,
    uid: int,
    gid: int,
    size: int,
    mtime: int,
    kind: bytes,
    link: bytes = b"",
    dev: tuple[int, int] = (0, 0),
) -> bytes | None:
    """A plain ustar header as Go writes it, or None when a PAX header is needed."""
    if (
        len(name) > 100
        or len(link) > 100
        or uid > _OCTAL7
        or gid > _OCTAL7
        or size > _OCTAL11
        or not 0 <= mtime <= _OCTAL11
        or dev[0] > _OCTAL7
        or dev[1] > _OCTAL7
        or not (name + link).isascii()
    ):
        return None
    header = b"".join(
        (
            name.ljust(100, b"\0"),
            b"%07o\0" % mode,
            b"%07o\0" % uid,
            b"%07o\0" % gid,
            b"%011o\0" % size,
            b"%011o\0" % mtime,
            b"        ",
            kind,
            link.ljust(100, b"\0"),
            b"ustar\x0000",
            bytes(64),  # uname, gname: no lookups, as Docker's layer tars
            b"%07o\0" % dev[0],
            b"%07o\0" % dev[1],
            bytes(167),
        )
    )
    checksum = b"%06o\0 " % sum(header)
    return header[:148] + checksum + header[156:]


def _pax(
    name: str, st: os.stat_result, kind: bytes, size: int, link: str, xattrs: dict[str, str]
) -> bytes:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = stat.S_IMODE(st.st_mode)
    info.uid, info.gid = st.st_uid, st.st_gid
    info.size = size
    info.mtime = int(st.st_mtime)
    info.linkname = link
    if kind in (tarfile.CHRTYPE, tarfile.BLKTYPE):
        info.devmajor, info.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
    info.pax_headers = {f"SCHILY.xattr.{k}": v for k, v in xattrs.items()}
    return info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")


def _xattrs(target: str | int) -> dict[str, str]:
    """The xattrs of a path (never followed) or of an open fd."""
    # an fd cannot be combined with follow_symlinks=False (and needs no such care)
    follow = isinstance(target, int)
    try:
        keys = os.listxattr(target, follow_symlinks=follow)
    except OSError:
        return {}
    out = {}
    for key in keys:
        if key.startswith(_SKIP_XATTR_PREFIXES):
            continue
        try:
            value = os.getxattr(target, key, follow_symlinks=follow)
        except OSError:
            continue
        out[key] = value.decode("utf-8", "surrogateescape")
    return out


class TarWriter:
    """Writes tar entries to a binary stream in large writes (also used by
    ``container/archive.py`` for ``docker cp``); ``close`` ends the archive."""

    def __init__(self, out: BinaryIO) -> None:
        self.out = out
        self.buf = bytearray()
        try:
            self.fd: int | None = out.fileno()
        except (AttributeError, OSError, ValueError):
            self.fd = None
        self.links: dict[tuple[int, int], str] = {}

    def flush(self) -> None:
        if self.buf:
            self.out.write(self.buf)
            self.buf = bytearray()

    def header(
        self,
        name: str,
        st: os.stat_result,
        kind: bytes,
        *,
        size: int = 0,
        link: str = "",
        mode: int | None = None,
        xattrs: dict[str, str] | None = None,
    ) -> None:
        raw = None
        if not xattrs:
            dev = (os.major(st.st_rdev), os.minor(st.st_rdev)) if st.st_rdev else (0, 0)
            raw = _ustar(
                os.fsencode(name),
                stat.S_IMODE(st.st_mode) if mode is None else mode,
                st.st_uid,
                st.st_gid,
                size,
                int(st.st_mtime),
                kind,
                os.fsencode(link),
                dev,
            )
        if raw is None:
            if mode is not None:
                st = os.stat_result((stat.S_IFMT(st.st_mode) | mode, *st[1:]))
            raw = _pax(name, st, kind, size, link, xattrs or {})
        self.buf += raw

    def entry(self, node: _Node) -> None:
        if node.source is None:
            assert node.st is not None
            self.whiteout(node.path[1:], node.st)
            return
        assert node.st is not None
        self.add(node.path[1:], node.source, node.st, opaque=node.opaque)

    def whiteout(self, name: str, st: os.stat_result) -> None:
        """A ``.wh.`` entry deleting ``name``; owner and mtime from ``st``."""
        base_dir, _, base = name.rpartition("/")
        wh = f"{base_dir}/{WHITEOUT_PREFIX}{base}" if base_dir else WHITEOUT_PREFIX + base
        self.header(wh, st, tarfile.REGTYPE, mode=0o600)

    def add(self, name: str, source: str, st: os.stat_result, *, opaque: bool = False) -> None:
        """The file at ``source`` (never followed) as entry ``name``; a
        directory is named with a trailing slash; sockets are skipped."""
        mode = st.st_mode
        xattrs = _xattrs(source)
        if stat.S_ISDIR(mode):
            self.header(name.rstrip("/") + "/", st, tarfile.DIRTYPE, xattrs=xattrs)
            if opaque:
                self.header(f"{name}/{OPAQUE_MARKER}", st, tarfile.REGTYPE, mode=stat.S_IMODE(mode))
        elif stat.S_ISLNK(mode):
            self.header(name, st, tarfile.SYMTYPE, link=os.readlink(source), xattrs=xattrs)
        elif stat.S_ISREG(mode):
            if self._hardlink(name, st, xattrs):
                return
            self.header(name, st, tarfile.REGTYPE, size=st.st_size, xattrs=xattrs)
            self._content(source, st.st_size)
        elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
            kind = tarfile.CHRTYPE if stat.S_ISCHR(mode) else tarfile.BLKTYPE
            self.header(name, st, kind, xattrs=xattrs)
        elif stat.S_ISFIFO(mode):
            self.header(name, st, tarfile.FIFOTYPE, xattrs=xattrs)

    # -- fd-based: for trees that change meanwhile (docker cp, export) --------

    def add_dir_fd(self, name: str, fd: int) -> os.stat_result:
        """The directory open as ``fd`` as entry ``name/``; returns its stat."""
        st = os.fstat(fd)
        self.header(name.rstrip("/") + "/", st, tarfile.DIRTYPE, xattrs=_xattrs(fd))
        return st

    def add_at(self, name: str, dir_fd: int, base: str, st: os.stat_result) -> None:
        """The non-directory ``base`` of the directory open as ``dir_fd`` as
        entry ``name``, nothing resolved by path: a container swapping
        entries for symlinks or device nodes meanwhile cannot make this read
        anything but the file it names. ``st`` is its ``lstat``; an entry
        gone or turned into a directory since is left out."""
        if stat.S_ISREG(st.st_mode):
            # O_PATH pins the inode without opening it (a device node swapped
            # in is never opened); only a regular file is then reopened to read
            try:
                pinned = os.open(base, _PATH_FLAGS, dir_fd=dir_fd)
            except FileNotFoundError:
                return
            try:
                st = os.fstat(pinned)
                if stat.S_ISREG(st.st_mode):
                    self._regular_fd(name, pinned, st)
                    return
            finally:
                os.close(pinned)
        if stat.S_ISDIR(st.st_mode) or stat.S_ISSOCK(st.st_mode):
            return
        # symlinks, devices, fifos are never opened: the magic link pins the
        # directory, the last component is not followed
        try:
            self.add(name, f"/proc/self/fd/{dir_fd}/{base}", st)
        except OSError as exc:
            # gone, or no longer a symlink when read: nothing was written yet
            if exc.errno not in (errno.ENOENT, errno.EINVAL):
                raise

    def _regular_fd(self, name: str, pinned: int, st: os.stat_result) -> None:
        fd = os.open(f"/proc/self/fd/{pinned}", os.O_RDONLY | os.O_CLOEXEC)
        try:
            xattrs = _xattrs(fd)
            if self._hardlink(name, st, xattrs):
                return
            self.header(name, st, tarfile.REGTYPE, size=st.st_size, xattrs=xattrs)
            self._content_fd(fd, st.st_size)
        finally:
            os.close(fd)

    def _hardlink(self, name: str, st: os.stat_result, xattrs: dict[str, str]) -> bool:
        """Write a link entry when this inode was archived before under another name."""
        if st.st_nlink > 1:
            first = self.links.setdefault((st.st_dev, st.st_ino), name)
            if first != name:
                self.header(name, st, tarfile.LNKTYPE, link=first, xattrs=xattrs)
                return True
        return False

    def _content(self, path: str, size: int) -> None:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            self._content_fd(fd, size)
        finally:
            os.close(fd)

    def _content_fd(self, fd: int, size: int) -> None:
        # The file may change under a running container: exactly ``size``
        # bytes go out (zero-padded if it shrank) so the archive stays valid.
        if size <= _INLINE or self.fd is None:
            left = size
            while left > 0:
                chunk = os.read(fd, min(left, _FLUSH))
                if not chunk:
                    break
                self.buf += chunk
                left -= len(chunk)
                if len(self.buf) >= _FLUSH:
                    self.flush()
            self.buf += bytes(left)
        else:
            self.flush()
            self.out.flush()
            sent = 0
            while sent < size:
                n = os.sendfile(self.fd, fd, sent, size - sent)
                if n == 0:
                    break
                sent += n
            self.buf += bytes(size - sent)
        self.buf += bytes(-size % _BLOCK)
        if len(self.buf) >= _FLUSH:
            self.flush()

    def close(self) -> None:
        self.buf += bytes(2 * _BLOCK)  # the end-of-archive marker, as Go writes it
        self.flush()
        self.out.flush()


def write_layer_tar(snapshotter: Snapshotter, key: str, out: BinaryIO) -> None:
    """Write snapshot ``key``'s changes to ``out`` as an uncompressed OCI layer tar.

    Deletions become ``.wh.<name>`` entries and opaque directories a
    ``.wh..wh..opq`` entry after the directory; directories come before their
    contents, in the order of ``changes``, so the same tree gives the same
    bytes. Owners, modes (setuid/setgid/sticky included), mtimes (whole
    seconds, as Docker), xattrs (not overlay's own), symlinks (never
    followed) and hard links (within the layer) are kept; sockets are
    skipped; uname/gname are left empty.

    Speed: plain ustar headers are formatted directly (PAX only for long
    names, xattrs or huge values), output is buffered into ~1 MiB writes,
    and files over 64 KiB go by ``sendfile`` when ``out`` has a file
    descriptor (a file or a pipe). The snapshot should not change meanwhile
    (pause a running container); a file that does is still written with the
    size first seen, so the archive stays well formed.
    """
    writer = TarWriter(out)
    try:
        for node in _walk(snapshotter, key):
            if node.archive:
                writer.entry(node)
    except OSError as exc:
        raise errdefs.System(f"archiving the changes of snapshot {key}: {exc}")
    writer.close()


# -- a temporary mount of a snapshot -------------------------------------------


@contextlib.contextmanager
def mounted(snapshotter: Snapshotter, key: str, *, readonly: bool = True) -> Iterator[Path]:
    """Mount snapshot ``key`` on a private temporary directory for the body
    of the ``with``; always unmounted and removed after.

    ``readonly`` mounts a stack of all the snapshot's layers (its own
    included) as overlay lowerdirs, so no upper or work dir is touched: safe
    even while the snapshot is mounted elsewhere. Otherwise the snapshot's
    own mounts are used (writable; the snapshot must not be mounted
    elsewhere at the same time).
    """
    target = tempfile.mkdtemp(prefix="dockyard-mnt-")
    try:
        mounts = snapshotter.mounts(key)
        if readonly:
            mounts = _readonly_mounts(snapshotter, key, mounts)
        try:
            mount_all(mounts, target)
        except OSError as exc:
            raise errdefs.System(f"mounting snapshot {key}: {exc}")
        try:
            yield Path(target)
        finally:
            unmount(target)
    finally:
        os.rmdir(target)


def _readonly_mounts(snapshotter: Snapshotter, key: str, mounts: list) -> list:
    from dockyard.store.snapshots import Mount

    if snapshotter.whiteout_mode != "overlay":
        return [
            Mount(m.type, m.source, (*(o for o in m.options if o != "rw"), "ro")) for m in mounts
        ]
    layers = []
    current: str | None = key
    while current is not None:
        layers.append(str(snapshotter.upper_dir(current)))
        current = snapshotter.parent(current)
    if len(layers) == 1:
        return [Mount("bind", layers[0], ("rbind", "ro"))]
    return [Mount("overlay", "overlay", ("lowerdir=" + ":".join(layers), "index=off", "ro"))]
