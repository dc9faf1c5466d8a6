"""Resolve a path inside a root directory as if that root were ``/``.

The root is hostile (an image's filesystem): symlinks are followed by hand,
absolute targets restart at the root and ``..`` never climbs above it, so the
result always lies inside the root. Like Go's filepath-securejoin, the last
component may be missing.
"""

from __future__ import annotations

import os

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
