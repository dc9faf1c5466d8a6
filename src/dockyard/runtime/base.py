"""The interface every OCI runtime driver implements (builtin, runc, crun).

A driver turns a bundle (``config.json`` + ``rootfs``) into a process. After
``create`` the process exists in its namespaces and cgroup, blocked before
``execve``; ``start`` lets it run. The caller of ``create`` must be a child
subreaper so that the container's process ends up as its child.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol


class Runtime(Protocol):
    def create(
        self,
        container_id: str,
        bundle: Path,
        *,
        pid_file: Path,
        stdio: tuple[int, int, int],
        console_socket: Path | None = None,
    ) -> int:
        """Create the container; return its init's pid (host pid namespace).

        Raises ``errdefs.RuntimeFailure`` with exit_code 127 when the command
        is not found, 126 when it cannot be executed, 125 otherwise.
        """

    def start(self, container_id: str) -> None: ...

    def kill(self, container_id: str, signal: int, *, all: bool = False) -> None: ...

    def delete(self, container_id: str, *, force: bool = False) -> None:
        """Forget the container and remove its cgroup."""

    def state(self, container_id: str) -> dict:
        """The OCI state: ociVersion, id, status, pid, bundle, annotations."""
