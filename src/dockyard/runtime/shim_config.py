"""The shim's configuration record, shared by the shim and its daemon-side client.

The daemon writes it as JSON into the container's state dir; the shim reads it
back. Kept apart from both so the shim imports nothing heavy.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

CONFIG_FILE = "shim.json"
SOCKET_FILE = "shim.sock"
PID_FILE = "shim.pid"
INIT_PID_FILE = "init.pid"
EXIT_FILE = "exit.json"
LOG_FILE = "shim.log"


@dataclass(frozen=True)
class ShimConfig:
    container_id: str
    bundle: str  # dir with config.json and rootfs (already mounted by the daemon)
    state_dir: str  # shim.sock, shim.pid, exit.json, shim.log live here
    log_path: str = ""  # json-file log; "" = no logging
    log_max_size: int = 0  # bytes; 0 = never rotate
    log_max_file: int = 1
    runtime: str | None = None  # None = builtin (in-process), else a runc-compatible binary
    runtime_root: str = "/run/dockyard/runtime"
    tty: bool = False
    open_stdin: bool = False
    stdin_once: bool = False

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> ShimConfig:
        return cls(**json.loads(text))

    def path(self, name: str) -> Path:
        return Path(self.state_dir) / name


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
