"""``docker cp`` on the daemon side: stat a path in a container's root, tar a
path out, extract a tar in. ``root`` is a host directory holding the
container's filesystem (its mounted rootfs, or a temporary mount of its
snapshot).

Paths follow Docker's rules (daemon/archive.go):

* the path is taken as absolute inside the container; a trailing ``/`` or
  ``/.`` is kept (``/tmp/.`` means "the contents of /tmp");
* stat and tar-out resolve every component but the last with symlinks
  followed *inside* the root; the last component is not followed, so a
  symlink is reported and archived as a symlink (``-L`` is the client's
  business: it asks again for the link target);
* extraction resolves the destination fully (a symlink to a directory is a
  fine destination), which must exist and be a directory.

The archive given to ``extract`` is hostile: it is applied with directory
fds and ``O_NOFOLLOW`` only, every symlink met on the way to an entry's
parent is resolved inside the root, names climbing out are refused, hard
links must stay inside, and ``trusted.overlay.*`` xattrs are dropped. Unlike a
layer, ``.wh.`` names are ordinary files here.

The root may belong to a running container that changes it meanwhile
(CVE-2018-15664: swap a directory for a symlink to the host mid-copy). So
nothing is ever resolved by host path: stat, tar-out and extraction walk
with directory fds (``sys.securejoin.RootDir``, then ``openat`` with
``O_NOFOLLOW`` component by component), files are pinned with ``O_PATH``
before they are opened (``TarWriter.add_at``), and an entry that changed kind
between its stat and its open is left out.
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import errno
import json
import os
import shutil
import stat
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from dockyard import errdefs
from dockyard.image.changes import TarWriter
from dockyard.image.layer import clean_name, decompressed, hardlink, make_node
from dockyard.sys.securejoin import RootDir

_CHUNK = 1 << 20
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_MAX_LINKS = 255

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


def _not_found(path: str, container: str) -> errdefs.NotFound:
    return errdefs.NotFound(f"Could not find the file {path} in container {container}")


@dataclass(frozen=True)
class _Target:
    """What a stat/tar-out path names: the entry ``base`` of the directory
    open as ``fd``, or (``base`` None) the directory ``fd`` itself."""

    tree: RootDir
    fd: int
    base: str | None
    st: os.stat_result
    abs_path: str


@contextlib.contextmanager
def _target(root: Path, path: str, container: str) -> Iterator[_Target]:
    abs_path = _abs_path(path)
    tree = RootDir(root)
    try:
        dir_part, _, base = abs_path.rpartition("/")
        parts = dir_part.split("/")
        if base in ("", "."):  # "/x/", "/x/.", "/": the directory x, x resolved fully
            try:
                fd = tree.open_dir(parts)
            except FileNotFoundError:
                raise _not_found(abs_path, container)
            except NotADirectoryError:
                if base == "." or not _exists(tree, parts[:-1]):
                    raise _not_found(abs_path, container)
                raise errdefs.InvalidArgument(f"not a directory: {abs_path}")
            name = None
        else:
            try:
                fd = tree.open_dir(parts)
            except (FileNotFoundError, NotADirectoryError):
                raise _not_found(abs_path, container)
            name = base
        try:
            st = os.fstat(fd) if name is None else os.stat(name, dir_fd=fd, follow_symlinks=False)
        except (FileNotFoundError, NotADirectoryError):
            os.close(fd)
            raise _not_found(abs_path, container)
        try:
            yield _Target(tree, fd, name, st, abs_path)
        finally:
            os.close(fd)
    except OSError as exc:
        raise errdefs.System(f"{abs_path}: {exc.strerror or exc}")
    finally:
        tree.close()


def _exists(tree: RootDir, parts: list[str]) -> bool:
    try:
        os.close(tree.open_dir(parts))
    except OSError:
        return False
    return True


def _resolved_path(tree: RootDir, parts: list[str]) -> str:
    """The absolute path inside the root that ``parts`` leads to with every
    symlink followed there (a missing rest is kept as is, as ``secure_join``
    does); walked with fds, like ``RootDir.open_dir``."""
    names: list[str] = []
    fds = [os.dup(tree.fd)]  # fds[i]: the directory names[:i], while it exists
    pending = list(reversed(parts))
    links = 0
    try:
        while pending:
            part = pending.pop()
            if part in ("", "."):
                continue
            if part == "..":
                if names:
                    names.pop()
                    if len(fds) > len(names) + 1:
                        os.close(fds.pop())
                continue
            st = None
            if len(fds) == len(names) + 1:
                try:
                    st = os.stat(part, dir_fd=fds[-1], follow_symlinks=False)
                except (FileNotFoundError, NotADirectoryError):
                    pass
            if st is not None and stat.S_ISLNK(st.st_mode):
                links += 1
                if links > _MAX_LINKS:
                    raise OSError(errno.ELOOP, "too many levels of symbolic links")
                target = os.readlink(part, dir_fd=fds[-1])
                if target.startswith("/"):
                    names.clear()
                    while len(fds) > 1:
                        os.close(fds.pop())
                pending.extend(reversed(target.split("/")))
                continue
            names.append(part)
            if st is not None and stat.S_ISDIR(st.st_mode):
                try:
                    fds.append(os.open(part, _DIR_FLAGS, dir_fd=fds[-1]))
                except OSError:
                    pass  # replaced meanwhile: the rest is taken as missing
        return "/" + "/".join(names)
    finally:
        for fd in fds:
            os.close(fd)


def _path_stat(t: _Target, name: str) -> PathStat:
    target = ""
    if stat.S_ISLNK(t.st.st_mode):
        target = _resolved_path(t.tree, t.abs_path.split("/"))
    return PathStat(
        name, t.st.st_size, go_file_mode(t.st.st_mode), go_time(t.st.st_mtime_ns), target
    )


def stat_path(root: Path, path: str, *, container: str = "") -> PathStat:
    """What ``HEAD /containers/{id}/archive?path=`` reports."""
    with _target(root, path, container) as t:
        name = os.path.basename(t.abs_path.rstrip("/")) or "/"
        if t.abs_path.endswith("/."):
            name = "."
        return _path_stat(t, name)


# -- tar out -------------------------------------------------------------------


def archive_path(root: Path, path: str, out: BinaryIO, *, container: str = "") -> PathStat:
    """Stat ``path`` then write it to ``out`` as a tar whose top entry is
    named after the requested path's last element (Docker's rebase: a path
    that resolved through a symlink is still named as asked; ``/x/.`` gives
    ``./`` and the directory's contents)."""
    with _target(root, path, container) as t:
        base = os.path.basename(t.abs_path.rstrip("/")) or "."
        if t.abs_path.endswith("/."):
            base = "."
        result = _path_stat(t, base)
        writer = TarWriter(out)
        if t.base is None:
            _add_dir(writer, base, t.fd)
        else:
            _add_entry(writer, base, t.fd, t.base, t.st)
        writer.close()
    return result


def export_rootfs(root: Path, out: BinaryIO) -> None:
    """``docker export``: the whole tree, names relative (``bin/``, ``etc/passwd``)."""
    writer = TarWriter(out)
    try:
        fd = os.open(root, _DIR_FLAGS)
        try:
            _add_children(writer, "", fd)
        finally:
            os.close(fd)
    except OSError as exc:
        raise errdefs.System(f"exporting the container's filesystem: {exc}")
    writer.close()


def _add_entry(writer: TarWriter, name: str, parent: int, base: str, st: os.stat_result) -> None:
    if not stat.S_ISDIR(st.st_mode):
        writer.add_at(name, parent, base, st)
        return
    try:
        fd = os.open(base, _DIR_FLAGS, dir_fd=parent)
    except (FileNotFoundError, NotADirectoryError):
        return  # gone or replaced meanwhile (a running container)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return  # swapped for a symlink: never followed
        raise
    try:
        _add_dir(writer, name, fd)
    finally:
        os.close(fd)


def _add_dir(writer: TarWriter, name: str, fd: int) -> None:
    writer.add_dir_fd(name, fd)
    _add_children(writer, name + "/", fd)  # "./sub" under ".", as dockerd names them


def _add_children(writer: TarWriter, prefix: str, fd: int) -> None:
    with os.scandir(fd) as it:
        names = sorted((entry.name for entry in it), key=os.fsencode)
    for child in names:
        try:
            child_st = os.stat(child, dir_fd=fd, follow_symlinks=False)
        except FileNotFoundError:
            continue  # gone meanwhile (a running container)
        _add_entry(writer, prefix + child, fd, child, child_st)


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
            # hard link targets name entries of this archive: under the destination
            hardlink(lambda parts: self._parent(parts, create=False), member, name, parent)
            return
        elif member.ischr() or member.isblk() or member.isfifo():
            make_node(member, name, parent)
        else:
            return  # Docker skips what it cannot represent
        self._metadata(member, parent, name, parts)

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
