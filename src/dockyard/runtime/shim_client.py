"""The daemon's side of the shim: spawn it, reconnect to it, and talk to it over shim.sock.

Every call opens its own connection (unix sockets are cheap), so any number
of ``wait`` and ``attach`` calls can be outstanding at once. The protocol is
documented in ``dockyard.runtime.shim``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from dockyard import errdefs
from dockyard.runtime.jsonlog import format_time
from dockyard.runtime.shim_config import (
    CONFIG_FILE,
    EXIT_FILE,
    LOG_FILE,
    PID_FILE,
    SOCKET_FILE,
    ShimConfig,
    socket_address,
)

__all__ = ["Attachment", "ExitStatus", "Shim", "ShimConfig"]

HEADER = struct.Struct(">BxxxI")
SPAWN_TIMEOUT = 60.0  # seconds; creating a container is normally a few tens of ms
LOST_SHIM_EXIT = 255  # what wait reports when the shim died without an exit record


@dataclass(frozen=True)
class ExitStatus:
    exit_code: int
    exited_at: str  # RFC3339 nano UTC
    oom_killed: bool = False


class _Gone(Exception):
    """The shim is not there any more (socket missing, refused or cut)."""


class Attachment:
    """An attach stream: framed output from the container, stdin to it."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer

    async def read(self) -> tuple[int, bytes] | None:
        """The next chunk of output as (stream 1|2, data); None once the container is done."""
        try:
            stream, length = HEADER.unpack(await self._reader.readexactly(HEADER.size))
            return stream, await self._reader.readexactly(length)
        except (asyncio.IncompleteReadError, ConnectionError):
            return None

    async def write(self, data: bytes) -> None:
        """Send ``data`` to the container's stdin."""
        if data:
            self._writer.write(HEADER.pack(0, len(data)) + data)
            await self._writer.drain()

    async def close_stdin(self) -> None:
        """Our stdin ended; with stdin_once the container's stdin is closed."""
        with contextlib.suppress(ConnectionError):
            self._writer.write(HEADER.pack(0, 0))
            await self._writer.drain()

    async def close(self) -> None:
        self._writer.close()
        with contextlib.suppress(ConnectionError):
            await self._writer.wait_closed()

    async def __aenter__(self) -> Attachment:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


class Launcher:
    """The daemon's side of the shim launcher (``runtime/shim_launcher.py``):
    a pre-loaded process that forks shims instead of starting interpreters."""

    def __init__(self) -> None:
        self._channel: socket.socket | None = None
        self._proc: asyncio.subprocess.Process | None = None

    async def start(self, *, python: str = sys.executable) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            # -S: no site-packages; every shim forked from the launcher carries
            # its RSS, and it needs nothing but the stdlib and this package.
            package_root = str(Path(__file__).resolve().parents[2])
            bootstrap = (
                f"import sys; sys.path.insert(0, {package_root!r}); "
                "from dockyard.runtime.shim_launcher import main; sys.exit(main(sys.argv))"
            )
            self._proc = await asyncio.create_subprocess_exec(
                python,
                "-S",
                "-c",
                bootstrap,
                str(theirs.fileno()),
                pass_fds=(theirs.fileno(),),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                start_new_session=True,
            )
        finally:
            theirs.close()
        ours.setblocking(False)
        self._channel = ours

    async def launch(self, config_path: Path, log_path: Path) -> bytes | None:
        """The shim's report line, or None when the launcher is unusable."""
        if self._channel is None or (self._proc and self._proc.returncode is not None):
            return None
        report_r, report_w = os.pipe()
        log_fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            socket.send_fds(self._channel, [os.fsencode(config_path)], [report_w, log_fd])
        except OSError:
            os.close(report_r)
            return None
        finally:
            os.close(report_w)
            os.close(log_fd)
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        transport, _ = await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(report_r, "rb", 0)
        )
        try:
            return await asyncio.wait_for(reader.readline(), SPAWN_TIMEOUT)
        finally:
            transport.close()

    async def close(self) -> None:
        if self._channel is not None:
            self._channel.close()
            self._channel = None
        if self._proc is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._proc.wait(), 5)
            self._proc = None


class Shim:
    """A handle on one container's shim; holds no connection between calls."""

    def __init__(self, state_dir: Path, *, pid: int, shim_pid: int) -> None:
        self.state_dir = Path(state_dir)
        self.pid = pid
        self.shim_pid = shim_pid

    @classmethod
    async def spawn(
        cls,
        config: ShimConfig,
        *,
        python: str = sys.executable,
        launcher: Launcher | None = None,
    ) -> Shim:
        """Start a shim that creates the container; return once it is created.

        With a running ``launcher`` the shim is forked from it; otherwise a
        new interpreter is started. Raises ``errdefs.RuntimeFailure``
        (exit_code 125/126/127) when the container cannot be created; nothing
        is left running then.
        """
        state_dir = Path(config.state_dir)
        state_dir.mkdir(parents=True, exist_ok=True)
        (state_dir / EXIT_FILE).unlink(missing_ok=True)  # from an earlier run
        config_path = state_dir / CONFIG_FILE
        config_path.write_text(config.to_json())
        if launcher is not None:
            line = await launcher.launch(config_path, state_dir / LOG_FILE)
            if line is not None:
                return cls._from_report(line, state_dir)
        with open(state_dir / LOG_FILE, "ab") as log:
            proc = await asyncio.create_subprocess_exec(
                python,
                "-m",
                "dockyard.runtime.shim",
                str(config_path),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=log,
                start_new_session=True,  # the shim outlives the daemon
            )
        assert proc.stdout is not None
        try:
            line = await asyncio.wait_for(proc.stdout.readline(), SPAWN_TIMEOUT)
        except BaseException:
            _kill_stuck(proc.pid, state_dir)
            raise
        finally:
            await proc.wait()  # the original process exits once the shim has reported
        return cls._from_report(line, state_dir)

    @classmethod
    def _from_report(cls, line: bytes, state_dir: Path) -> Shim:
        try:
            report = json.loads(line)
        except ValueError:
            report = {"ok": False, "message": f"shim failed to start, see {state_dir / LOG_FILE}"}
        if not report.get("ok"):
            message = report.get("message") or "shim failed to start"
            raise errdefs.RuntimeFailure(message, exit_code=int(report.get("exit_code", 125)))
        return cls(state_dir, pid=int(report["pid"]), shim_pid=int(report["shim_pid"]))

    @classmethod
    async def connect(cls, state_dir: Path) -> Shim | None:
        """Reconnect after a daemon restart; None when the shim is gone."""
        try:
            info = await _request(Path(state_dir), {"op": "info"})
        except _Gone:
            return None
        return cls(Path(state_dir), pid=int(info["pid"]), shim_pid=int(info["shim_pid"]))

    async def start(self) -> None:
        await self._call({"op": "start"})

    async def kill(self, signal: int) -> None:
        await self._call({"op": "kill", "signal": int(signal)})

    async def resize(self, height: int, width: int) -> None:
        await self._call({"op": "resize", "height": int(height), "width": int(width)})

    async def state(self) -> dict:
        return (await self._call({"op": "state"}))["state"]

    async def wait(self) -> ExitStatus:
        """Wait for the container to exit; works after the shim is gone too."""
        try:
            reply = await _request(self.state_dir, {"op": "wait"})
        except _Gone:
            status = self.read_exit(self.state_dir)
            if status is None:
                status = ExitStatus(LOST_SHIM_EXIT, format_time(time.time_ns()))
            return status
        return ExitStatus(
            exit_code=int(reply["exit_code"]),
            exited_at=str(reply["exited_at"]),
            oom_killed=bool(reply.get("oom_killed", False)),
        )

    async def attach(self, *, stdin: bool, stdout: bool, stderr: bool) -> Attachment:
        """Attach to the container's stdio; output written from now on is seen."""
        request = {"op": "attach", "stdin": stdin, "stdout": stdout, "stderr": stderr}
        reader, writer = await _open(self.state_dir)
        try:
            await _exchange(reader, writer, request)
        except BaseException:
            writer.close()
            raise
        return Attachment(reader, writer)

    @staticmethod
    def read_exit(state_dir: Path) -> ExitStatus | None:
        """The exit record the shim left, None when there is none."""
        try:
            data = json.loads((Path(state_dir) / EXIT_FILE).read_text())
        except (OSError, ValueError):
            return None
        return ExitStatus(
            exit_code=int(data["exit_code"]),
            exited_at=str(data["exited_at"]),
            oom_killed=bool(data.get("oom_killed", False)),
        )

    async def _call(self, request: dict) -> dict:
        try:
            return await _request(self.state_dir, request)
        except _Gone:
            # the shim exits only after its container did
            raise errdefs.Conflict(f"container {self.state_dir.name} is not running")


async def _open(state_dir: Path) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    try:
        with socket_address(state_dir / SOCKET_FILE) as address:
            return await asyncio.open_unix_connection(address)
    except OSError as exc:  # missing, refused: the shim has exited
        raise _Gone(str(exc)) from exc


async def _exchange(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: dict
) -> dict:
    try:
        writer.write(json.dumps(request).encode() + b"\n")
        await writer.drain()
        line = await reader.readline()
    except OSError as exc:
        raise _Gone(str(exc)) from exc
    if not line:
        raise _Gone("the shim closed the connection")
    reply = json.loads(line)
    if not reply.get("ok"):
        kind = getattr(errdefs, str(reply.get("kind")), None)
        if not (isinstance(kind, type) and issubclass(kind, errdefs.DockyardError)):
            kind = errdefs.System
        message = str(reply.get("message", "shim error"))
        if issubclass(kind, errdefs.RuntimeFailure):
            raise kind(message, exit_code=int(reply.get("exit_code") or 125))
        raise kind(message)
    return reply


async def _request(state_dir: Path, request: dict) -> dict:
    reader, writer = await _open(state_dir)
    try:
        return await _exchange(reader, writer, request)
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


def _kill_stuck(parent: int, state_dir: Path) -> None:
    """A shim that never reported: kill it and the process that launched it."""
    pids = [parent]
    with contextlib.suppress(OSError, ValueError):
        pids.append(int((state_dir / PID_FILE).read_text()))
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
