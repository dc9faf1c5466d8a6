"""The shim's configuration record, shared by the shim and its daemon-side client.

The daemon writes it as JSON into the container's state dir; the shim reads it
back. The shim itself reads the JSON without this class (see ``shim_files``).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from dockyard.runtime.shim_files import (  # noqa: F401 - re-exported
    CONFIG_FILE,
    EXIT_FILE,
    INIT_PID_FILE,
    LOG_FILE,
    PID_FILE,
    SOCKET_FILE,
    socket_address,
)


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
