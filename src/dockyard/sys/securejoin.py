"""Resolve a path inside a root directory as if that root were ``/``.

The root is hostile (an image's filesystem): symlinks are followed by hand,
absolute targets restart at the root and ``..`` never climbs above it, so the
result always lies inside the root. Like Go's filepath-securejoin, the last
component may be missing.

``secure_join`` returns a path (fine for a root nobody changes meanwhile);
``RootDir.open_dir`` returns a directory fd reached with ``openat`` and
``O_NOFOLLOW`` one component at a time, so a root that changes under it
(a running container, a layer being unpacked) cannot steer it outside.
"""

from __future__ import annotations

import errno
import os
import stat

_MAX_LINKS = 255


def secure_join(root: str, unsafe: str) -> str:
    root = os.path.abspath(root)
    pending = [p for p in unsafe.split("/") if p]
    pending.reverse()
    parts: list[str] = []
    links = 0
    while pending:
        part = pending.pop()
        if part == ".":
            continue
        if part == "..":
            if parts:
                parts.pop()
            continue
        candidate = os.path.join(root, *parts, part)
        try:
            target = os.readlink(candidate)
        except OSError:  # not a link, or missing: keep as is
            parts.append(part)
            continue
        links += 1
        if links > _MAX_LINKS:
            raise OSError(40, f"too many levels of symbolic links: {unsafe}")
        if target.startswith("/"):
            parts = []
        extra = [p for p in target.split("/") if p]
        pending.extend(reversed(extra))
    return os.path.join(root, *parts)


_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class RootDir:
    """A directory treated as ``/``, walked with directory fds."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)

    def close(self) -> None:
        os.close(self.fd)

    def open_dir(self, parts: list[str], *, create: bool = False) -> int:
        """A new fd on the directory ``parts`` (from the root), symlinks on the
        way resolved inside the root; missing directories are made (0755)
        when ``create``. Raises FileNotFoundError, NotADirectoryError, or
        OSError(ELOOP) after too many links."""
        stack = [os.dup(self.fd)]
        pending = list(reversed(parts))
        links = 0
        try:
            while pending:
                part = pending.pop()
                if part in ("", "."):
                    continue
                if part == "..":
                    if len(stack) > 1:
                        os.close(stack.pop())
                    continue
                cur = stack[-1]
                try:
                    st = os.stat(part, dir_fd=cur, follow_symlinks=False)
                except FileNotFoundError:
                    if not create:
                        raise
                    os.mkdir(part, 0o755, dir_fd=cur)
                    st = os.stat(part, dir_fd=cur, follow_symlinks=False)
                if stat.S_ISLNK(st.st_mode):
                    links += 1
                    if links > _MAX_LINKS:
                        raise OSError(errno.ELOOP, "too many symlinks", "/".join(parts))
                    target = os.readlink(part, dir_fd=cur)
                    if target.startswith("/"):
                        while len(stack) > 1:
                            os.close(stack.pop())
                    pending.extend(reversed(target.split("/")))
                    continue
                if not stat.S_ISDIR(st.st_mode):
                    raise NotADirectoryError(errno.ENOTDIR, "not a directory", "/".join(parts))
                stack.append(os.open(part, _DIR_FLAGS, dir_fd=cur))
            return stack.pop()
        finally:
            for fd in stack:
                os.close(fd)
