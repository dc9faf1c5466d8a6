"""Network namespaces pinned by a bind mount on a file (like `ip netns add`,
but at any path: `<exec_root>/netns/<container id>`).

The daemon is a multithreaded asyncio process, so it never unshares itself:
util-linux `unshare --net=FILE` creates the namespace in a child, bind-mounts
its nsfs inode onto FILE (which must exist) and then runs `ip link set lo up`
inside it — one process spawn, ~3 ms. The namespace lives as long as the
bind mount does, even after every process in it has exited.
"""

from __future__ import annotations

import errno
import os
import subprocess
from pathlib import Path

from dockyard import errdefs
from dockyard.sys.mount import MNT_DETACH, umount


def create(path: Path) -> None:
    """A new network namespace pinned at ``path``, with ``lo`` up."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # O_EXCL: an existing pin belongs to someone (a live container); never replace it.
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o444))
    except FileExistsError:
        raise errdefs.Conflict(f"network namespace {path} already exists") from None
    proc = subprocess.run(
        ["unshare", f"--net={path}", "ip", "link", "set", "lo", "up"],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        delete(path)
        raise errdefs.System(f"create network namespace {path}: {proc.stderr.strip()}")


def delete(path: Path) -> None:
    """Unmount the pin and remove the file; nothing to do when absent."""
    # A pin may have been stacked twice by a crash between create and delete; drop all.
    for _ in range(8):
        try:
            umount(str(path), MNT_DETACH)
        except OSError as exc:
            if exc.errno in (errno.EINVAL, errno.ENOENT):
                break
            raise errdefs.System(f"unmount network namespace {path}: {exc}") from exc
    try:
        path.unlink()
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise errdefs.System(f"remove network namespace {path}: {exc}") from exc


def exists(path: Path) -> bool:
    """True when ``path`` is a mounted network namespace pin."""
    # The pin is an nsfs inode on its own device; the empty file left under
    # an unmounted pin shares its directory's device.
    try:
        return os.stat(path).st_dev != os.stat(path.parent).st_dev
    except OSError:
        return False
