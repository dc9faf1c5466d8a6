"""The external-runtime driver: runc, crun or ``dockyard-runtime`` through their CLI.

Each operation is one run of ``<binary> --root <root> <command> ...``. runc
prints its errors on stderr, which during ``create`` is the container's stderr,
so ``create`` also asks for a JSON ``--log`` file and takes the message from it.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from dockyard import errdefs


def exit_code_for(message: str) -> int:
    """The CLI exit code Docker gives a failed start, judged from the runtime's words."""
    lowered = message.lower()
    if "executable file not found" in lowered or "no such file or directory" in lowered:
        return 127
    if "permission denied" in lowered:
        return 126
    return 125


def _last_error(log: Path) -> str:
    """The last error-level message of runc's JSON log, "" when there is none."""
    message = ""
    try:
        lines = log.read_text(errors="replace").splitlines()
    except FileNotFoundError:
        return ""
    for line in lines:
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict) and entry.get("level") in ("error", "fatal"):
            message = str(entry.get("msg", ""))
    return message


class ExternalRuntime:
    """A runc-compatible binary driven through its command line."""

    def __init__(self, binary: str, root: Path) -> None:
        self.binary = binary
        self.root = Path(root)

    def _argv(self, *args: str) -> list[str]:
        return [self.binary, "--root", str(self.root), *args]

    def _run(self, *args: str) -> str:
        try:
            done = subprocess.run(self._argv(*args), capture_output=True, stdin=subprocess.DEVNULL)
        except OSError as exc:
            raise errdefs.RuntimeFailure(f"runtime {self.binary}: {exc.strerror}") from exc
        if done.returncode != 0:
            message = done.stderr.decode(errors="replace").strip() or f"{args[0]} failed"
            raise self._error(args[0], message)
        return done.stdout.decode(errors="replace")

    def _error(self, command: str, message: str) -> errdefs.DockyardError:
        if "does not exist" in message:
            return errdefs.NotFound(f"{self.binary} {command}: {message}")
        if "not running" in message or "stopped" in message:
            return errdefs.Conflict(f"{self.binary} {command}: {message}")
        return errdefs.RuntimeFailure(f"{self.binary} {command}: {message}")

    def create(
        self,
        container_id: str,
        bundle: Path,
        *,
        pid_file: Path,
        stdio: tuple[int, int, int],
        console_socket: Path | str | None = None,
    ) -> int:
        self.root.mkdir(parents=True, exist_ok=True)
        log = self.root / f".{container_id}.create.log"
        args = ["--log", str(log), "--log-format", "json", "create"]
        args += ["--bundle", str(bundle), "--pid-file", str(pid_file)]
        if console_socket is not None:
            args += ["--console-socket", str(console_socket)]
        try:
            done = subprocess.run(
                [self.binary, "--root", str(self.root), *args, container_id],
                stdin=stdio[0],
                stdout=stdio[1],
                stderr=stdio[2],
            )
        except OSError as exc:
            log.unlink(missing_ok=True)
            raise errdefs.RuntimeFailure(f"runtime {self.binary}: {exc.strerror}") from exc
        message = _last_error(log)
        log.unlink(missing_ok=True)
        if done.returncode != 0:
            message = message or f"{self.binary} create exited with {done.returncode}"
            raise errdefs.RuntimeFailure(message, exit_code=exit_code_for(message))
        return int(Path(pid_file).read_text().strip())

    def start(self, container_id: str) -> None:
        self._run("start", container_id)

    def kill(self, container_id: str, signal: int, *, all: bool = False) -> None:
        self._run("kill", *(["--all"] if all else []), container_id, str(signal))

    def delete(self, container_id: str, *, force: bool = False) -> None:
        self._run("delete", *(["--force"] if force else []), container_id)

    def state(self, container_id: str) -> dict:
        return json.loads(self._run("state", container_id))
