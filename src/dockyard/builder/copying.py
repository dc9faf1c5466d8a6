"""COPY and ADD on the file system: finding the sources in the context (or a
stage's root) with Docker's wildcard rules, their cache checksum, and
copying them into a build snapshot with ``--chown``/``--chmod``, ADD's
unpacking of local archives included.

Destinations are resolved inside the snapshot with ``secure_join``: the
snapshot belongs to the build (no container runs in it), and symlinks from
the image resolve as if its root were ``/``.
"""

from __future__ import annotations

import contextlib
import fnmatch
import hashlib
import os
import posixpath
import shutil
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from dockyard import errdefs

_CHUNK = 1 << 20


@dataclass(frozen=True)
class Source:
    path: str  # on the host, resolved inside its root
    name: str  # the base name it gets when copied into a directory
    is_dir: bool
    download: bool = False  # a URL download or a heredoc: never unpacked


def normalize_dest(workdir: str, dest: str) -> str:
    """Docker's ``normalizeDest``: a relative destination is joined to the
    working directory, and keeps a trailing slash."""
    if dest.startswith("/"):
        return dest
    joined = posixpath.normpath(posixpath.join("/", workdir, dest))
    if joined.startswith("//"):
        joined = joined[1:]
    return joined + "/" if dest.endswith("/") and joined != "/" else joined


def has_wildcard(paths) -> bool:
    return any(ch in p for p in paths for ch in "*?[")


def glob(root: str, pattern: str) -> list[str]:
    """Context paths matching ``pattern`` (Go's ``filepath.Match`` per path
    component), walking only as deep as the pattern goes."""
    parts = pattern.split("/")
    found = [""]
    for part in parts:
        nxt = []
        for prefix in found:
            directory = os.path.join(root, prefix) if prefix else root
            if not os.path.isdir(directory) or os.path.islink(directory):
                continue
            if not has_wildcard((part,)):
                candidate = f"{prefix}/{part}" if prefix else part
                if os.path.lexists(os.path.join(root, candidate)):
                    nxt.append(candidate)
                continue
            for name in sorted(os.listdir(directory)):
                if fnmatch.fnmatchcase(name, part):
                    nxt.append(f"{prefix}/{name}" if prefix else name)
        found = nxt
    return found


def hash_tree(path: str, known: Callable[[str, os.stat_result], str | None] | None = None) -> str:
    """A checksum of a file's or a tree's names, types, modes, link targets
    and contents (not mtimes: touching a file keeps the cache, as tarsum).
    ``known`` gives a file's content sha256 when it is already known."""
    h = hashlib.sha256()

    def content(p: str, st: os.stat_result) -> str:
        digest = known(p, st) if known is not None else None
        if digest is None:
            file_hash = hashlib.sha256()
            with open(p, "rb") as f:
                while chunk := f.read(_CHUNK):
                    file_hash.update(chunk)
            digest = file_hash.hexdigest()
        return digest

    def add_file(p: str, rel: str, st: os.stat_result) -> None:
        h.update(f"{rel}\0{stat.S_IFMT(st.st_mode)}\0{stat.S_IMODE(st.st_mode)}\0".encode())
        if stat.S_ISLNK(st.st_mode):
            h.update(os.readlink(p).encode("utf-8", "surrogateescape"))
        elif stat.S_ISREG(st.st_mode):
            h.update(content(p, st).encode())
        h.update(b"\n")

    st = os.stat(path)
    if not stat.S_ISDIR(st.st_mode):
        add_file(path, "", st)
        return h.hexdigest()
    for dirpath, dirnames, filenames in os.walk(path):
        dirnames.sort()
        rel_dir = os.path.relpath(dirpath, path)
        add_file(dirpath, rel_dir, os.lstat(dirpath))
        for name in sorted(filenames):
            full = os.path.join(dirpath, name)
            add_file(full, os.path.join(rel_dir, name), os.lstat(full))
        for name in dirnames:
            full = os.path.join(dirpath, name)
            if os.path.islink(full):
                add_file(full, os.path.join(rel_dir, name), os.lstat(full))
    return h.hexdigest()


def parse_chmod(text: str) -> int | None:
    if not text:
        return None
    try:
        mode = int(text, 8)
    except ValueError:
        raise errdefs.InvalidArgument(f"invalid chmod parameter: {text}")
    if mode > 0o7777:
        raise errdefs.InvalidArgument(f"invalid chmod parameter: {text}")
    return mode


def chown_ids(root: Path, chown: str) -> tuple[int, int]:
    """``--chown=user[:group]`` as ids, names looked up in the image's
    /etc/passwd and /etc/group; a lone user means the same-named group."""
    if not chown:
        return 0, 0
    from dockyard.runtime.spec import resolve_user

    user, sep, _ = chown.partition(":")
    if not sep:
        if user.isdigit():
            return int(user), int(user)
        uid, gid, _ = resolve_user(root, user)
        with contextlib.suppress(errdefs.InvalidArgument):
            gid = resolve_user(root, f"{user}:{user}")[1]
        return uid, gid
    uid, gid, _ = resolve_user(root, chown)
    return uid, gid


def mkdir_all(root: str, path: str, uid: int, gid: int) -> str:
    """``mkdir -p`` of ``path`` inside ``root`` (symlinks resolved inside it);
    the directories it creates get mode 0755 and ``uid:gid``. Returns the
    host path."""
    from dockyard.sys.securejoin import secure_join

    current = ""
    host = root
    for part in [p for p in path.split("/") if p]:
        current += "/" + part
        host = secure_join(root, current)
        if not os.path.isdir(host):
            if os.path.lexists(host):
                raise errdefs.InvalidArgument(f"mkdir {current}: not a directory")
            os.mkdir(host, 0o755)
            os.chown(host, uid, gid)
            os.chmod(host, 0o755)
    return host


def is_archive(path: str) -> bool:
    from dockyard.builder.context import is_tar_header, uncompressed

    try:
        with open(path, "rb") as f:
            head, _ = uncompressed(f)
    except Exception:
        return False
    return is_tar_header(head)


def copy_source(
    root: str,
    source: Source,
    dest: str,
    uid: int,
    gid: int,
    mode: int | None,
    *,
    unpack: bool,
) -> None:
    from dockyard.sys.securejoin import secure_join

    if source.is_dir:
        mkdir_all(root, dest, uid, gid)
        copy_tree(root, source.path, dest.rstrip("/") or "/", uid, gid, mode)
        return
    if unpack and is_archive(source.path):
        target = mkdir_all(root, dest, 0, 0)
        from dockyard.image.layer import apply_layer

        with open(source.path, "rb") as f:
            from dockyard.builder.context import uncompressed

            _, plain = uncompressed(f)
            apply_layer(plain, Path(target), whiteout="delete")  # type: ignore[arg-type]
        return
    dest_host = secure_join(root, dest)
    if dest.endswith("/") or os.path.isdir(dest_host):
        file_dest = posixpath.join(dest, source.name)
    else:
        file_dest = dest
    parent = posixpath.dirname(file_dest.rstrip("/")) or "/"
    mkdir_all(root, parent, uid, gid)
    copy_file(source.path, secure_join(root, file_dest), uid, gid, mode)


def copy_file(src: str, dst: str, uid: int, gid: int, mode: int | None) -> None:
    st = os.stat(src)
    if os.path.islink(dst) or (os.path.lexists(dst) and not os.path.isdir(dst)):
        os.unlink(dst)
    elif os.path.isdir(dst):
        shutil.rmtree(dst)
    with open(src, "rb") as fin:
        fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "wb") as fout:
            shutil.copyfileobj(fin, fout, _CHUNK)
    os.chown(dst, uid, gid)
    os.chmod(dst, mode if mode is not None else stat.S_IMODE(st.st_mode))
    os.utime(dst, ns=(st.st_atime_ns, st.st_mtime_ns))


def copy_tree(root: str, src: str, dest: str, uid: int, gid: int, mode: int | None) -> None:
    """Copy the contents of directory ``src`` into ``dest`` (inside ``root``)."""
    from dockyard.sys.securejoin import secure_join

    dir_times: list[tuple[str, os.stat_result]] = []
    top = secure_join(root, dest)
    src_st = os.stat(src)
    os.chmod(top, mode if mode is not None else stat.S_IMODE(src_st.st_mode))
    os.chown(top, uid, gid)
    dir_times.append((top, src_st))
    for dirpath, dirnames, filenames in os.walk(src):
        rel = os.path.relpath(dirpath, src)
        base = dest if rel == "." else posixpath.join(dest, rel)
        for name in list(dirnames):
            full = os.path.join(dirpath, name)
            st = os.lstat(full)
            target = secure_join(root, posixpath.join(base, name))
            if stat.S_ISLNK(st.st_mode):
                dirnames.remove(name)
                copy_link(full, target, uid, gid, st)
                continue
            if not os.path.isdir(target):
                if os.path.lexists(target):
                    os.unlink(target)
                os.mkdir(target, 0o700)
            os.chown(target, uid, gid)
            os.chmod(target, mode if mode is not None else stat.S_IMODE(st.st_mode))
            dir_times.append((target, st))
        for name in filenames:
            full = os.path.join(dirpath, name)
            st = os.lstat(full)
            target = secure_join(root, posixpath.join(base, name))
            if stat.S_ISLNK(st.st_mode):
                copy_link(full, target, uid, gid, st)
            elif stat.S_ISREG(st.st_mode):
                copy_file(full, target, uid, gid, mode)
    for path, st in reversed(dir_times):
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def copy_link(src: str, dst: str, uid: int, gid: int, st: os.stat_result) -> None:
    if os.path.lexists(dst):
        if os.path.isdir(dst) and not os.path.islink(dst):
            shutil.rmtree(dst)
        else:
            os.unlink(dst)
    os.symlink(os.readlink(src), dst)
    os.chown(dst, uid, gid, follow_symlinks=False)
    os.utime(dst, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)
