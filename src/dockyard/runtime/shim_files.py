"""The files of a shim's state dir and how to reach its sockets.

Stdlib only and no dataclasses: the shim imports this, and one shim runs per
container, so its memory counts.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

CONFIG_FILE = "shim.json"
SOCKET_FILE = "shim.sock"
PID_FILE = "shim.pid"
INIT_PID_FILE = "init.pid"
EXIT_FILE = "exit.json"
LOG_FILE = "shim.log"


@contextmanager
def socket_address(path: Path) -> Iterator[str]:
    """Yield a name for the unix socket at ``path`` that fits in sun_path (108 bytes).

    A long path is reached through its opened directory as
    ``/proc/<our pid>/fd/<n>/<name>``; that name also works for another process
    (runc's --console-socket) while the directory fd stays open.
    """
    text = str(path)
    if len(text.encode()) < 100:
        yield text
        return
    fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        yield f"/proc/{os.getpid()}/fd/{fd}/{path.name}"
    finally:
        os.close(fd)
