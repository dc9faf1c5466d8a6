"""``docker cp`` on the daemon side: stat a path in a container's root, tar a
path out, extract a tar in. ``root`` is a host directory holding the
container's filesystem (its mounted rootfs, or a temporary mount of its
snapshot).

Paths follow Docker's rules (daemon/archive.go):

* the path is taken as absolute inside the container; a trailing ``/`` or
  ``/.`` is kept (``/tmp/.`` means "the contents of /tmp");
* stat and tar-out resolve every component but the last with symlinks
  followed *inside* the root (``sys.securejoin``: absolute targets restart
  at the root, ``..`` stops there); the last component is not followed, so
  a symlink is reported and archived as a symlink (``-L`` is the client's
  business: it asks again for the link target);
* extraction resolves the destination fully (a symlink to a directory is a
  fine destination), which must exist and be a directory.

The archive given to ``extract`` is hostile: it is applied with directory
fds and ``O_NOFOLLOW`` only, every symlink met on the way to an entry's
parent is resolved inside the root, names climbing out are refused, hard
links must stay inside, and ``trusted.overlay.*`` xattrs are dropped. Unlike a
layer, ``.wh.`` names are ordinary files here.

Known limit: the container may race a tar-out by swapping a directory on the
way for a symlink (CVE-2018-15664 class); tar-out opens files ``O_NOFOLLOW``
but walks directories by path. Extraction does not have this gap.
"""

from __future__ import annotations

import base64
import datetime
import json
import os
import shutil
import stat
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from dockyard import errdefs
from dockyard.image.changes import TarWriter
from dockyard.image.layer import clean_name, decompressed
from dockyard.sys.securejoin import RootDir, secure_join

_CHUNK = 1 << 20

# Go's os.FileMode type bits, as the X-Docker-Container-Path-Stat header carries them
MODE_DIR = 1 << 31
MODE_SYMLINK = 1 << 27
MODE_DEVICE = 1 << 26
MODE_NAMED_PIPE = 1 << 25
MODE_SOCKET = 1 << 24
MODE_SETUID = 1 << 23
MODE_SETGID = 1 << 22
MODE_CHAR_DEVICE = 1 << 21
MODE_STICKY = 1 << 20


def go_file_mode(st_mode: int) -> int:
    """A stat mode as Go's ``os.FileMode`` (what Docker puts on the wire)."""
    mode = st_mode & 0o777
    fmt = stat.S_IFMT(st_mode)
    if fmt == stat.S_IFDIR:
        mode |= MODE_DIR
    elif fmt == stat.S_IFLNK:
        mode |= MODE_SYMLINK
    elif fmt == stat.S_IFBLK:
        mode |= MODE_DEVICE
    elif fmt == stat.S_IFCHR:
        mode |= MODE_DEVICE | MODE_CHAR_DEVICE
    elif fmt == stat.S_IFIFO:
        mode |= MODE_NAMED_PIPE
    elif fmt == stat.S_IFSOCK:
        mode |= MODE_SOCKET
    if st_mode & stat.S_ISUID:
        mode |= MODE_SETUID
    if st_mode & stat.S_ISGID:
        mode |= MODE_SETGID
    if st_mode & stat.S_ISVTX:
        mode |= MODE_STICKY
    return mode


def go_time(ns: int) -> str:
    """RFC 3339 with nanoseconds, trailing zeros trimmed (Go's ``RFC3339Nano``), UTC."""
    seconds, nanos = divmod(ns, 1_000_000_000)
    base = datetime.datetime.fromtimestamp(seconds, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S")
    frac = f".{nanos:09d}".rstrip("0") if nanos else ""
    return f"{base}{frac}Z"


@dataclass(frozen=True)
class PathStat:
    name: str
    size: int
    mode: int  # Go os.FileMode bits
    mtime: str
    link_target: str

    def to_json(self) -> dict[str, object]:
        return {
            "name": self.name,
            "size": self.size,
            "mode": self.mode,
            "mtime": self.mtime,
            "linkTarget": self.link_target,
        }

    def header(self) -> str:
        """The value of ``X-Docker-Container-Path-Stat``."""
        return base64.b64encode(json.dumps(self.to_json()).encode()).decode()


# -- paths ---------------------------------------------------------------------


def _abs_path(path: str) -> str:
    """Docker's ``PreserveTrailingDotOrSeparator(filepath.Join("/", path), path)``."""
    clean = os.path.normpath("/" + path)
    clean = "/" + clean.lstrip("/")
    if path.endswith("/.") or path == ".":
        return clean.rstrip("/") + "/."
    if path.endswith("/") and clean != "/":
        return clean + "/"
    return clean


def _resolve(root: Path, path: str) -> tuple[str, str]:
    """(host path with the last component unresolved, the absolute container path)."""
    abs_path = _abs_path(path)
    dir_part, _, base = abs_path.rpartition("/")
    resolved_dir = secure_join(str(root), dir_part or "/")
    return (resolved_dir.rstrip("/") + "/" + base if base else resolved_dir), abs_path


def _not_found(path: str, container: str) -> errdefs.NotFound:
    return errdefs.NotFound(f"Could not find the file {path} in container {container}")


def _stat(root: Path, resolved: str, abs_path: str, container: str) -> tuple[os.stat_result, str]:
    try:
        st = os.lstat(resolved)
    except (FileNotFoundError, NotADirectoryError):
        raise _not_found(abs_path, container)
    target = ""
    if stat.S_ISLNK(st.st_mode):
        full = secure_join(str(root), abs_path)
        target = "/" + os.path.relpath(full, os.path.abspath(root)).lstrip(".").lstrip("/")
        if target == "/.":
            target = "/"
    if abs_path.endswith("/") and not stat.S_ISDIR(os.stat(resolved).st_mode):
        raise errdefs.InvalidArgument(f"not a directory: {abs_path}")
    return st, target


def stat_path(root: Path, path: str, *, container: str = "") -> PathStat:
    """What ``HEAD /containers/{id}/archive?path=`` reports."""
    resolved, abs_path = _resolve(root, path)
    st, target = _stat(root, resolved, abs_path, container)
    name = os.path.basename(abs_path.rstrip("/")) or "/"
    if abs_path.endswith("/."):
        name = "."
    return PathStat(name, st.st_size, go_file_mode(st.st_mode), go_time(st.st_mtime_ns), target)


# -- tar out -------------------------------------------------------------------


def archive_path(root: Path, path: str, out: BinaryIO, *, container: str = "") -> PathStat:
    """Stat ``path`` then write it to ``out`` as a tar whose top entry is
    named after the requested path's last element (Docker's rebase: a path
    that resolved through a symlink is still named as asked; ``/x/.`` gives
    ``./`` and the directory's contents)."""
    resolved, abs_path = _resolve(root, path)
    st, target = _stat(root, resolved, abs_path, container)
    base = os.path.basename(abs_path.rstrip("/")) or "."
    if abs_path.endswith("/."):
        base = "."
    result = PathStat(
        "." if base == "." else base,
        st.st_size,
        go_file_mode(st.st_mode),
        go_time(st.st_mtime_ns),
        target,
    )
    source = resolved.rstrip("/") if not resolved.endswith("/.") else resolved[:-2]
    writer = TarWriter(out)
    try:
        _add_tree(writer, base, source or "/", st)
    except OSError as exc:
        raise errdefs.System(f"archiving {abs_path}: {exc}")
    writer.close()
    return result


def export_rootfs(root: Path, out: BinaryIO) -> None:
    """``docker export``: the whole tree, names relative (``bin/``, ``etc/passwd``)."""
    writer = TarWriter(out)
    try:
        for child in sorted(os.listdir(root), key=os.fsencode):
            path = os.path.join(root, child)
            _add_tree(writer, child, path, os.lstat(path))
    except OSError as exc:
        raise errdefs.System(f"exporting the container's filesystem: {exc}")
    writer.close()


def _add_tree(writer: TarWriter, name: str, source: str, st: os.stat_result) -> None:
    if stat.S_ISSOCK(st.st_mode):
        return
    writer.add(name, source, st)
    if not stat.S_ISDIR(st.st_mode):
        return
    prefix = name + "/"  # "./sub" under ".", as dockerd names them
    for child in sorted(os.listdir(source), key=os.fsencode):
        path = os.path.join(source, child)
        try:
            child_st = os.lstat(path)
        except FileNotFoundError:
            continue  # gone meanwhile (a running container)
        _add_tree(writer, prefix + child, path, child_st)


# -- extract in ----------------------------------------------------------------


@dataclass(frozen=True)
class ExtractOptions:
    no_overwrite_dir_non_dir: bool = False
    chown: tuple[int, int] | None = None  # every entry owned by this uid/gid (copyUIDGID)


def extract(
    root: Path,
    path: str,
    stream: BinaryIO,
    *,
    options: ExtractOptions = ExtractOptions(),
    container: str = "",
) -> None:
    """``PUT /containers/{id}/archive?path=``: unpack a tar (plain or gzip)
    into directory ``path`` of the container."""
    abs_path = _abs_path(path)
    tree = RootDir(root)
    try:
        try:
            dest = tree.open_dir(abs_path.split("/"))
        except FileNotFoundError:
            raise _not_found(abs_path, container)
        except NotADirectoryError:
            raise errdefs.InvalidArgument("extraction point is not a directory")
        try:
            _Extractor(tree, dest, abs_path.split("/"), options).run(stream)
        finally:
            os.close(dest)
    finally:
        tree.close()


class _Extractor:
    def __init__(
        self, tree: RootDir, dest: int, dest_parts: list[str], options: ExtractOptions
    ) -> None:
        self.tree = tree
        self.dest = dest
        self.dest_parts = dest_parts
        self.options = options
        self.dir_times: list[tuple[list[str], int]] = []

    def run(self, stream: BinaryIO) -> None:
        try:
            with tarfile.open(fileobj=decompressed(stream), mode="r|") as tar:  # type: ignore[call-overload]
                for member in tar:
                    self._member(tar, member)
            self._finish()
        except (tarfile.TarError, EOFError) as exc:
            raise errdefs.InvalidArgument(f"invalid tar archive: {exc or 'unexpected EOF'}")
        except errdefs.DockyardError:
            raise
        except (NotADirectoryError, IsADirectoryError, FileExistsError) as exc:
            raise errdefs.InvalidArgument(f"extracting archive: {exc}")
        except OSError as exc:
            raise errdefs.System(f"extracting archive: {exc}")

    def _parent(self, parts: list[str], *, create: bool) -> int:
        # from the root each time: symlinks in the entries resolve inside the
        # container's root, as Docker's chrooted extraction does
        return self.tree.open_dir(self.dest_parts + parts, create=create)

    def _member(self, tar: tarfile.TarFile, member: tarfile.TarInfo) -> None:
        parts = clean_name(member.name)
        if not parts:
            if member.isdir():  # "./": the destination itself takes its metadata
                self._metadata(member, self.dest, None, [])
            return
        name = parts[-1]
        parent = self._parent(parts[:-1], create=True)
        try:
            self._entry(tar, member, parts, name, parent)
        finally:
            os.close(parent)

    def _entry(
        self,
        tar: tarfile.TarFile,
        member: tarfile.TarInfo,
        parts: list[str],
        name: str,
        parent: int,
    ) -> None:
        try:
            existing = os.stat(name, dir_fd=parent, follow_symlinks=False)
        except FileNotFoundError:
            existing = None
        if existing is not None:
            is_dir = stat.S_ISDIR(existing.st_mode)
            if self.options.no_overwrite_dir_non_dir:
                if is_dir and not member.isdir():
                    raise errdefs.InvalidArgument(
                        f"cannot overwrite directory {'/' + '/'.join(parts)!r} "
                        f"with non-directory {member.name!r}"
                    )
                if not is_dir and member.isdir():
                    raise errdefs.InvalidArgument(
                        f"cannot overwrite non-directory {'/' + '/'.join(parts)!r} "
                        f"with directory {member.name!r}"
                    )
            if not (is_dir and member.isdir()):
                if is_dir:
                    shutil.rmtree(name, dir_fd=parent)
                else:
                    os.unlink(name, dir_fd=parent)
        if member.isdir():
            if existing is None or not stat.S_ISDIR(existing.st_mode):
                os.mkdir(name, 0o700, dir_fd=parent)
        elif member.isreg():
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
            with os.fdopen(os.open(name, flags, 0o600, dir_fd=parent), "wb") as out:
                source = tar.extractfile(member)
                if source is not None:
                    shutil.copyfileobj(source, out, _CHUNK)
        elif member.issym():
            os.symlink(member.linkname, name, dir_fd=parent)
        elif member.islnk():
            self._hardlink(member, name, parent)
            return
        elif member.ischr() or member.isblk():
            kind = stat.S_IFCHR if member.ischr() else stat.S_IFBLK
            dev = os.makedev(member.devmajor, member.devminor)
            os.mknod(name, kind | (member.mode & 0o7777), dev, dir_fd=parent)
        elif member.isfifo():
            os.mkfifo(name, member.mode & 0o7777, dir_fd=parent)
        else:
            return  # Docker skips what it cannot represent
        self._metadata(member, parent, name, parts)

    def _hardlink(self, member: tarfile.TarInfo, name: str, parent: int) -> None:
        target = clean_name(member.linkname)
        if not target:
            raise errdefs.InvalidArgument(f"{member.name}: hard link to the root")
        source_dir = self._parent(target[:-1], create=False)
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

    def _metadata(
        self, member: tarfile.TarInfo, parent: int, name: str | None, parts: list[str]
    ) -> None:
        uid, gid = self.options.chown or (member.uid, member.gid)
        if name is None:  # the destination directory itself
            os.fchown(parent, uid, gid)
            os.fchmod(parent, member.mode & 0o7777)
        else:
            os.chown(name, uid, gid, dir_fd=parent, follow_symlinks=False)
            if not member.issym():  # after chown, which clears setuid/setgid
                os.chmod(name, member.mode & 0o7777, dir_fd=parent)
        where = f"/proc/self/fd/{parent}" + (f"/{name}" if name is not None else "")
        for key, value in member.pax_headers.items():
            if key.startswith("SCHILY.xattr.") and not key.startswith(
                "SCHILY.xattr.trusted.overlay."
            ):
                try:
                    os.setxattr(
                        where,
                        key[len("SCHILY.xattr.") :],
                        value.encode("utf-8", "surrogateescape"),
                        follow_symlinks=False,
                    )
                except OSError:
                    pass  # best effort, as Docker
        mtime = int(member.mtime * 1_000_000_000)
        if member.isdir():
            self.dir_times.append((parts, mtime))  # last: children change it
        elif name is not None:
            os.utime(name, ns=(mtime, mtime), dir_fd=parent, follow_symlinks=False)

    def _finish(self) -> None:
        for parts, mtime in reversed(self.dir_times):
            if not parts:
                os.utime(self.dest, ns=(mtime, mtime))
                continue
            parent = self._parent(parts[:-1], create=False)
            try:
                os.utime(parts[-1], ns=(mtime, mtime), dir_fd=parent, follow_symlinks=False)
            finally:
                os.close(parent)
