"""The per-container shim: parent of the container, keeper of its stdio and exit status.

Run as ``python -m dockyard.runtime.shim <state_dir>/shim.json`` (a ``ShimConfig``).
The process forks: the child does ``setsid``, becomes a child subreaper,
creates the container through the runtime, writes ``shim.pid``, binds
``shim.sock`` and reports one JSON line to the original process, which copies
it to its stdout and exits (on failure only after the child is gone)::

    {"ok": true, "pid": <container init pid>, "shim_pid": <shim pid>}
    {"ok": false, "message": "...", "exit_code": 127}

Protocol on ``shim.sock``: the client sends one JSON object per line, the shim
answers each with one JSON line, ``{"ok": true, ...}`` or ``{"ok": false,
"kind": "<errdefs class name>", "message": "...", "exit_code": N}``.

* ``{"op": "info"}`` → ``pid``, ``shim_pid``, ``exited`` (bool)
* ``{"op": "start"}``
* ``{"op": "kill", "signal": 15, "all": false}``
* ``{"op": "state"}`` → ``state`` (the runtime's OCI state)
* ``{"op": "wait"}`` → answered when the container has exited: ``exit_code``
  (128+N for death by signal N), ``exited_at`` (RFC3339Nano UTC), ``oom_killed``
* ``{"op": "resize", "height": 24, "width": 80}`` (a no-op without a tty)
* ``{"op": "attach", "stdin": true, "stdout": true, "stderr": true}``: after the
  ok line the connection carries frames, each an 8-byte header (stream byte, 3
  zero bytes, big-endian uint32 length) and the payload. Shim → client:
  output, stream 1 (stdout, and everything of a tty) or 2 (stderr), starting
  with what the container writes after the attach; the shim closes the
  connection once the container has exited and its output is drained. Client
  → shim: stdin data (stream byte 0); a zero-length frame, like closing the
  connection, means the client's stdin ended, which closes the container's
  stdin when the container has ``stdin_once`` (and no tty). A client that
  cannot keep up loses its connection; it never slows the container or the log.

When the container's init exits (the shim reaps it, and any orphan), the shim
drains the output, writes ``exit.json`` (temp file + rename), deletes the
container from the runtime, answers the waiters, closes attach streams and
exits. Imports stay stdlib + ``dockyard.runtime``: one shim runs per container.
"""

from __future__ import annotations

import collections
import errno
import json
import os
import select
import socket
import struct
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

from dockyard import errdefs
from dockyard.runtime.jsonlog import STREAMS, JsonLogWriter, format_time
from dockyard.runtime.shim_files import (
    EXIT_FILE,
    INIT_PID_FILE,
    PID_FILE,
    SOCKET_FILE,
    socket_address,
)
from dockyard.sys import proc
from dockyard.sys.prctl import set_child_subreaper

TYPE_CHECKING = False  # typing itself is not worth its memory here
if TYPE_CHECKING:
    from dockyard.runtime.shim_config import ShimConfig

HEADER = struct.Struct(">BxxxI")
CLIENT_BACKLOG = 4 * 1024 * 1024  # bytes queued for one attach client before it is dropped
DRAIN_GRACE = 2.0  # seconds to wait for output after init exited (escaped holders of the pipes)
EXIT_GRACE = 1.0  # seconds for answers and attach streams to flush before the shim exits


def log(message: str) -> None:
    stamp = format_time(time.time_ns())
    sys.stderr.write(f"{stamp} shim[{os.getpid()}]: {message}\n")
    sys.stderr.flush()


class _Client:
    """One attach connection's outgoing side: a bounded queue and its sender thread."""

    def __init__(self, sock: socket.socket, streams: set[int]) -> None:
        self.sock = sock
        self.streams = streams
        self._queue: collections.deque[bytes] = collections.deque()
        self._queued = 0
        self._cond = threading.Condition()
        self._ending = False
        self._dropped = False
        self.thread = threading.Thread(target=self._run, daemon=True)

    def push(self, stream: int, data: bytes) -> None:
        if stream not in self.streams:
            return
        with self._cond:
            if self._dropped:
                return
            if self._queued + len(data) > CLIENT_BACKLOG:
                self._dropped = True  # too slow: better to lose it than to stall output
            else:
                self._queue.append(HEADER.pack(stream, len(data)) + data)
                self._queued += len(data)
            self._cond.notify()

    def end(self) -> None:
        """Send what is queued, then close."""
        with self._cond:
            self._ending = True
            self._cond.notify()

    def _run(self) -> None:
        try:
            while True:
                with self._cond:
                    while not (self._queue or self._ending or self._dropped):
                        self._cond.wait()
                    if self._dropped or not self._queue:
                        break
                    frame = self._queue.popleft()
                    self._queued -= len(frame) - HEADER.size
                self.sock.sendall(frame)
        except OSError:
            pass
        finally:
            try:
                self.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class Shim:
    def __init__(self, config: ShimConfig) -> None:
        self.config = config
        self.state_dir = Path(config.state_dir)
        self.runtime = _make_runtime(config)
        self.pid = 0
        self.pid_start: int | None = None  # the init's start time, against pid reuse
        self.lock = threading.Lock()  # guards clients, stdin_fd
        # Held around every runtime call after create: the reaper takes it before
        # reaping an unknown child, so it never steals the exit status of the
        # runtime's own subprocess (runc kill, runc start).
        self.runtime_lock = threading.Lock()
        self.clients: list[_Client] = []
        self.output_done = False
        self.init_exited = False
        self.exited = threading.Event()
        self.exit_status: dict = {}
        self.stdin_fd: int | None = None
        self.master_fd: int | None = None
        self.outputs: dict[int, int] = {}  # fd -> stream
        self.drain_deadline: float | None = None
        self.conn_threads: set[threading.Thread] = set()
        self.logger: JsonLogWriter | None = None

    # -- set-up -----------------------------------------------------------------

    def create(self) -> None:
        """Create the container; single-threaded on purpose (the runtime may fork)."""
        config = self.config
        container_fds: list[int] = []
        console = None
        try:
            if config.tty:
                console = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                console_path = self.state_dir / "console.sock"
                console_path.unlink(missing_ok=True)
                with socket_address(console_path) as address:
                    console.bind(address)
                    console.listen(1)
                    devnull = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
                    container_fds.append(devnull)
                    self.pid = self.runtime.create(
                        config.container_id,
                        Path(config.bundle),
                        pid_file=self.state_dir / INIT_PID_FILE,
                        stdio=(devnull, devnull, devnull),
                        console_socket=Path(address),
                    )
                self.master_fd = _receive_master(console)
                self.outputs[self.master_fd] = 1
                if config.open_stdin:
                    self.stdin_fd = self.master_fd
            else:
                if config.open_stdin:
                    stdin_r, self.stdin_fd = os.pipe()
                else:
                    stdin_r = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
                out_r, out_w = os.pipe()
                err_r, err_w = os.pipe()
                container_fds += [stdin_r, out_w, err_w]
                self.outputs = {out_r: 1, err_r: 2}
                self.pid = self.runtime.create(
                    config.container_id,
                    Path(config.bundle),
                    pid_file=self.state_dir / INIT_PID_FILE,
                    stdio=(stdin_r, out_w, err_w),
                )
        finally:
            if self.pid > 1:
                self.pid_start = proc.start_time(self.pid)
            for fd in container_fds:
                os.close(fd)
            if console is not None:
                console.close()
                (self.state_dir / "console.sock").unlink(missing_ok=True)

    def listen(self) -> socket.socket:
        _write_atomic(self.state_dir / PID_FILE, f"{os.getpid()}\n")
        path = self.state_dir / SOCKET_FILE
        path.unlink(missing_ok=True)
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        with socket_address(path) as address:
            listener.bind(address)
        listener.listen(64)
        if self.config.log_path:
            self.logger = JsonLogWriter(
                Path(self.config.log_path),
                max_size=self.config.log_max_size,
                max_file=self.config.log_max_file,
            )
        return listener

    # -- running ----------------------------------------------------------------

    def serve(self, listener: socket.socket) -> None:
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            thread = threading.Thread(target=self._handle, args=(conn,), daemon=True)
            with self.lock:
                self.conn_threads.add(thread)
            thread.start()

    def pump(self) -> None:
        """Copy container output to the log and the attach clients until EOF."""
        poller = select.poll()
        for fd in self.outputs:
            poller.register(fd, select.POLLIN)
        open_fds = set(self.outputs)
        while open_fds:
            deadline = self.drain_deadline
            if deadline is not None and time.monotonic() > deadline:
                log("output still open after the container exited; giving up on it")
                break
            for fd, _ in poller.poll(100 if deadline is not None else 500):
                try:
                    data = os.read(fd, 65536)
                except OSError as exc:
                    if exc.errno != errno.EIO:  # EIO: the pty's other side is gone
                        raise
                    data = b""
                if data:
                    self._publish(self.outputs[fd], data)
                else:
                    poller.unregister(fd)
                    open_fds.discard(fd)
        if self.logger is not None:
            for stream in self.outputs.values():
                self.logger.flush(STREAMS[stream])
        with self.lock:
            self.output_done = True
            clients, self.clients = self.clients, []
        for client in clients:
            client.end()

    def _publish(self, stream: int, data: bytes) -> None:
        if self.logger is not None:
            try:
                self.logger.write(STREAMS[stream], data)
            except OSError as exc:  # a full disk must not stop the container
                log(f"log write failed: {exc}")
        with self.lock:
            for client in self.clients:
                client.push(stream, data)

    def reap(self) -> int:
        """Reap children until the container's init exits; return Docker's exit code."""
        while True:
            try:
                info = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOWAIT)
            except ChildProcessError:
                # init is not our child yet (its parent, e.g. `runc create`, has
                # just exited and the kernel is reparenting it to us) or at all:
                # poll for it, a zombie included, by pid and start time so that
                # a reused pid does not keep us here
                if self.pid <= 1 or not self._init_exists():
                    return 255
                time.sleep(0.05)
                continue
            except InterruptedError:
                continue
            if info is None:
                continue
            if info.si_pid == self.pid:
                _, status = os.waitpid(self.pid, 0)
                code = os.waitstatus_to_exitcode(status)
                return 128 - code if code < 0 else code
            with self.runtime_lock:  # a runtime subprocess reaps itself
                try:
                    os.waitpid(info.si_pid, os.WNOHANG)
                except ChildProcessError:
                    pass

    def _init_exists(self) -> bool:
        fields = proc.stat_fields(self.pid)
        return fields is not None and (self.pid_start is None or int(fields[19]) == self.pid_start)

    def finish(self, exit_code: int, pump: threading.Thread) -> None:
        """Record the exit once all output is in the log, then let the waiters know."""
        exited_at = format_time(time.time_ns())
        self.init_exited = True
        self.drain_deadline = time.monotonic() + DRAIN_GRACE
        pump.join()
        if self.logger is not None:
            self.logger.close()
        oom = _oom_killed(Path(self.config.bundle))
        self.exit_status = {"exit_code": exit_code, "exited_at": exited_at, "oom_killed": oom}
        _write_atomic(self.state_dir / EXIT_FILE, json.dumps(self.exit_status))
        with self.runtime_lock:
            _reap_orphans()
            try:
                self.runtime.delete(self.config.container_id, force=True)
            except Exception as exc:
                log(f"runtime delete failed: {exc}")
        self.exited.set()
        log(f"container exited with {exit_code}")

    def wind_down(self) -> None:
        """Give answers and attach streams a moment to flush."""
        (self.state_dir / SOCKET_FILE).unlink(missing_ok=True)
        deadline = time.monotonic() + EXIT_GRACE
        with self.lock:
            threads = list(self.conn_threads)
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))

    # -- requests ---------------------------------------------------------------

    def _handle(self, conn: socket.socket) -> None:
        reader = conn.makefile("rb")
        try:
            while True:
                line = reader.readline(1 << 16)
                if not line:
                    return
                try:
                    request = json.loads(line)
                    op = request["op"]
                except (ValueError, KeyError, TypeError):
                    conn.sendall(_error("InvalidArgument", "bad request") + b"\n")
                    continue
                if op == "attach":
                    self._attach(conn, reader, request)
                    return
                conn.sendall(self._dispatch(op, request) + b"\n")
        except OSError:
            pass
        finally:
            reader.close()
            conn.close()
            with self.lock:
                self.conn_threads.discard(threading.current_thread())

    def _dispatch(self, op: str, request: dict) -> bytes:
        try:
            if op == "wait":
                self.exited.wait()
                return json.dumps({"ok": True, **self.exit_status}).encode()
            if op == "info":
                result = {"pid": self.pid, "shim_pid": os.getpid(), "exited": self.init_exited}
            elif op == "start":
                self._runtime_call(self.runtime.start, self.config.container_id)
                result = {}
            elif op == "kill":
                signal = int(request.get("signal", 15))
                all_ = bool(request.get("all", False))
                self._runtime_call(self.runtime.kill, self.config.container_id, signal, all=all_)
                result = {}
            elif op == "state":
                result = {"state": self._state()}
            elif op == "resize":
                self._resize(int(request["height"]), int(request["width"]))
                result = {}
            else:
                return _error("InvalidArgument", f"unknown operation {op!r}")
        except Exception as exc:
            kind = type(exc).__name__ if hasattr(exc, "message") else "System"
            return _error(kind, str(exc), getattr(exc, "exit_code", None))
        return json.dumps({"ok": True, **result}).encode()

    def _runtime_call(self, method, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        with self.runtime_lock:
            if self.init_exited:
                raise errdefs.Conflict(f"container {self.config.container_id} is not running")
            method(*args, **kwargs)

    def _state(self) -> dict:
        with self.runtime_lock:
            if not self.init_exited:
                return self.runtime.state(self.config.container_id)
        return {
            "ociVersion": "1.0.2",
            "id": self.config.container_id,
            "status": "stopped",
            "pid": 0,
            "bundle": self.config.bundle,
        }

    def _resize(self, height: int, width: int) -> None:
        if self.master_fd is None:
            return
        import fcntl
        import termios

        fcntl.ioctl(self.master_fd, termios.TIOCSWINSZ, struct.pack("HHHH", height, width, 0, 0))

    def _attach(self, conn: socket.socket, reader, request: dict) -> None:  # type: ignore[no-untyped-def]
        streams = {n for n, key in ((1, "stdout"), (2, "stderr")) if request.get(key)}
        client = _Client(conn, streams)
        with self.lock:
            done = self.output_done
            if not done:
                self.clients.append(client)
        conn.sendall(json.dumps({"ok": True}).encode() + b"\n")
        if done:
            client.end()
        client.thread.start()
        try:
            if request.get("stdin") and self.stdin_fd is not None:
                self._copy_stdin(reader)
            # output keeps flowing until the client hangs up or the shim ends it
            while reader.read1(65536):
                pass
        except OSError:
            pass
        finally:
            with self.lock:
                if client in self.clients:
                    self.clients.remove(client)
            client.end()
            client.thread.join(EXIT_GRACE)

    def _copy_stdin(self, reader) -> None:  # type: ignore[no-untyped-def]
        while True:
            header = reader.read(HEADER.size)
            if len(header) < HEADER.size:
                break
            _, length = HEADER.unpack(header)
            if length == 0:
                break
            data = reader.read(length)
            with self.lock:
                fd = self.stdin_fd
            if fd is None:
                continue
            try:
                _write_all(fd, data)
            except OSError:
                pass  # the container closed its stdin or is gone
            if len(data) < length:
                return
        self._stdin_ended()

    def _stdin_ended(self) -> None:
        if not self.config.stdin_once or self.config.tty:
            return
        with self.lock:
            fd, self.stdin_fd = self.stdin_fd, None
        if fd is not None:
            os.close(fd)


def _traceback() -> str:
    import traceback  # only on the way down

    return traceback.format_exc()


def _error(kind: str, message: str, exit_code: int | None = None) -> bytes:
    body: dict = {"ok": False, "kind": kind, "message": message}
    if exit_code is not None:
        body["exit_code"] = exit_code
    return json.dumps(body).encode()


def _make_runtime(config: ShimConfig):  # type: ignore[no-untyped-def]
    root = Path(config.runtime_root)
    if config.runtime is None:
        from dockyard.runtime.builtin import BuiltinRuntime

        return BuiltinRuntime(root)
    from dockyard.runtime.external import ExternalRuntime

    return ExternalRuntime(config.runtime, root)


def _receive_master(console: socket.socket) -> int:
    """Accept the runtime's connection and take the pty master it sends (SCM_RIGHTS)."""
    console.settimeout(10)
    conn, _ = console.accept()
    with conn:
        _, fds, _, _ = socket.recv_fds(conn, 4096, 1)
    if not fds:
        raise OSError(errno.EPROTO, "the runtime sent no terminal")
    os.set_inheritable(fds[0], False)
    return fds[0]


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _reap_orphans() -> None:
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def _oom_killed(bundle: Path) -> bool:
    """Whether the kernel's OOM killer struck in the container's memory cgroup."""
    try:
        spec = json.loads((bundle / "config.json").read_text())
        cgroup = spec.get("linux", {}).get("cgroupsPath", "")
    except (OSError, ValueError):
        return False
    if not cgroup.startswith("/"):
        return False
    for path in (
        Path("/sys/fs/cgroup/memory", cgroup.lstrip("/"), "memory.oom_control"),
        Path("/sys/fs/cgroup", cgroup.lstrip("/"), "memory.events"),
    ):
        try:
            for line in path.read_text().splitlines():
                key, _, value = line.partition(" ")
                if key == "oom_kill" and value.strip() not in ("", "0"):
                    return True
        except OSError:
            continue
    return False


def _run_child(config: ShimConfig, report_fd: int) -> int:
    os.setsid()
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)
    os.dup2(devnull, 1)  # the daemon's pipe is the original process's business
    os.close(devnull)
    try:
        set_child_subreaper()
        shim = Shim(config)
        shim.create()
        listener = shim.listen()
    except Exception as exc:
        if not hasattr(exc, "message"):
            log(_traceback())
        try:
            _make_runtime(config).delete(config.container_id, force=True)
        except Exception:
            pass  # usually: the runtime never got as far as recording it
        _reap_orphans()
        report = {"ok": False, "message": str(exc), "exit_code": getattr(exc, "exit_code", 125)}
        os.write(report_fd, json.dumps(report).encode() + b"\n")
        return 1
    pump = threading.Thread(target=shim.pump, daemon=True)
    pump.start()
    shim.serve(listener)
    report = {"ok": True, "pid": shim.pid, "shim_pid": os.getpid()}
    os.write(report_fd, json.dumps(report).encode() + b"\n")
    os.close(report_fd)
    log(f"container {config.container_id} created, init pid {shim.pid}")
    shim.finish(shim.reap(), pump)
    shim.wind_down()
    listener.close()
    return 0


def _relay(report_fd: int, child: int) -> int:
    """In the original process: pass the child's report on, then get out of the way."""
    data = b""
    while b"\n" not in data:
        chunk = os.read(report_fd, 4096)
        if not chunk:
            break
        data += chunk
    line = data.split(b"\n", 1)[0]
    try:
        ok = bool(json.loads(line).get("ok"))
    except ValueError:
        ok = False
        line = json.dumps({"ok": False, "message": "shim failed to start", "exit_code": 125})
        line = line.encode()
    if not ok:
        os.waitpid(child, 0)  # the daemon must find nothing left running
    os.write(1, line + b"\n")
    return 0


def main(argv: list[str]) -> int:
    # the fields of ShimConfig, without importing dataclasses into every shim
    config: ShimConfig = SimpleNamespace(**json.loads(Path(argv[1]).read_text()))  # type: ignore[assignment]
    report_r, report_w = os.pipe()
    child = os.fork()
    if child:
        os.close(report_w)
        return _relay(report_r, child)
    os.close(report_r)
    code = 1
    try:
        code = _run_child(config, report_w)
    except BaseException:
        log(_traceback())
    finally:
        sys.stderr.flush()
        os._exit(code)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
