"""The builtin OCI runtime: runs a bundle in-process, the way runc does.

``create`` forks twice. Child A joins the cgroup, joins or unshares the
namespaces and forks child B, which is PID 1 of the new pid namespace; A
reports B's host pid over the sync pipe and exits, so B is re-parented to the
caller (a child subreaper). B builds the root filesystem, pivots into it,
drops privileges, resolves the command, reports "created" and blocks reading
``exec.fifo`` until ``start`` writes to it; then it execs. Every failure in a
child is sent back as one JSON line and becomes ``RuntimeFailure``; a failed
create leaves no process, cgroup or state directory behind.

The fifo is opened O_RDWR by B so that its read blocks (there is always a
writer) and so that ``start`` can open it O_WRONLY|O_NONBLOCK: that fails with
ENXIO instead of hanging when B is gone. The fifo exists exactly while the
container is created and not yet started, which is how ``state`` tells the two
apart (as runc does).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import re
import resource
import select
import signal
import socket
import stat
import time
from pathlib import Path

from dockyard import errdefs
from dockyard.runtime.cgroups import Cgroup, hierarchies
from dockyard.sys import capabilities, namespaces, netdev, prctl, proc, seccomp, tty, uts
from dockyard.sys.mount import (
    MNT_DETACH,
    MS_BIND,
    MS_PRIVATE,
    MS_RDONLY,
    MS_REC,
    MS_REMOUNT,
    MS_SLAVE,
    PROPAGATION,
    mount,
    parse_options,
    pivot_root,
    umount,
)
from dockyard.sys.securejoin import secure_join

OCI_VERSION = "1.2.0"
CREATE_TIMEOUT = 60.0
_ID = re.compile(r"^[\w+\-.]+$")

# (name, major, minor): the devices every container gets (OCI runtime spec).
_DEFAULT_DEVICES = (
    ("null", 1, 3),
    ("zero", 1, 5),
    ("full", 1, 7),
    ("random", 1, 8),
    ("urandom", 1, 9),
    ("tty", 5, 0),
)
_DEV_SYMLINKS = (
    ("fd", "/proc/self/fd"),
    ("stdin", "/proc/self/fd/0"),
    ("stdout", "/proc/self/fd/1"),
    ("stderr", "/proc/self/fd/2"),
    ("ptmx", "pts/ptmx"),
)


class ExecError(Exception):
    """The command cannot be run; carries Docker's exit code (126/127)."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class BuiltinRuntime:
    """The Runtime protocol (runtime/base.py), implemented in-process."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    # -- lifecycle ---------------------------------------------------------

    def create(
        self,
        container_id: str,
        bundle: Path,
        *,
        pid_file: Path,
        stdio: tuple[int, int, int],
        console_socket: Path | None = None,
    ) -> int:
        if not _ID.match(container_id):
            raise errdefs.InvalidArgument(f"invalid container id: {container_id!r}")
        bundle = Path(bundle).absolute()
        config = _load_config(bundle)
        process = config.get("process") or {}
        if not process.get("args"):
            raise errdefs.InvalidArgument("process.args must not be empty")
        terminal = bool(process.get("terminal"))
        if terminal and console_socket is None:
            raise errdefs.InvalidArgument("a console socket is required for a terminal")
        state_dir = self.root / container_id
        self.root.mkdir(parents=True, exist_ok=True, mode=0o711)
        try:
            state_dir.mkdir(mode=0o711)
        except FileExistsError:
            raise errdefs.Conflict(f"container with id exists: {container_id}")
        fifo = state_dir / "exec.fifo"
        linux = config.get("linux") or {}
        cgroup = Cgroup(linux.get("cgroupsPath") or container_id)
        console: socket.socket | None = None
        pid = 0
        try:
            os.mkfifo(fifo, 0o622)
            cgroup.create(linux.get("resources"))
            if terminal:
                console = _connect(console_socket)
            ctx = _Context(
                config=config,
                seccomp=_compile_seccomp(linux, self.root / ".seccomp"),
                bundle=bundle,
                cgroup=cgroup,
                fifo=str(fifo),
                stdio=stdio,
                console_fd=console.fileno() if console else -1,
            )
            pid = _spawn(ctx)
            state = {
                "id": container_id,
                "pid": pid,
                "pid_start": proc.start_time(pid),
                "bundle": str(bundle),
                "rootfs": str(_rootfs(config, bundle)),
                "created": _now(),
                "status": "created",
                "cgroups_path": cgroup.path,
                "annotations": config.get("annotations") or {},
            }
            _write_json(state_dir / "state.json", state)
            _write_atomic(Path(pid_file), str(pid))
        except BaseException:
            if pid:
                _kill_and_reap(pid)
            with contextlib.suppress(errdefs.DockyardError):
                _drain(cgroup)
                cgroup.remove()
            _rmtree(state_dir)
            raise
        finally:
            if console is not None:
                console.close()
        return pid

    def start(self, container_id: str) -> None:
        state = self._load(container_id)
        fifo = self.root / container_id / "exec.fifo"
        # The fifo is the truth: it exists until start, and opening it for
        # writing fails (ENXIO) once nobody holds it, i.e. the init is gone.
        if not fifo.exists():
            status = self._status(container_id, state)
            raise errdefs.Conflict(f"cannot start a container that is {status}: {container_id}")
        try:
            fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as exc:  # ENXIO: nobody holds it open, the init is gone
            raise errdefs.RuntimeFailure(f"cannot start container {container_id}: {exc}")
        try:
            os.write(fd, b"0")
        finally:
            os.close(fd)
        fifo.unlink(missing_ok=True)
        state["status"] = "running"
        _write_json(self.root / container_id / "state.json", state)

    def kill(self, container_id: str, signal: int, *, all: bool = False) -> None:
        state = self._load(container_id)
        if all:
            for pid in Cgroup(state["cgroups_path"]).pids():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal)
            return
        if self._status(container_id, state) == "stopped":
            raise errdefs.Conflict(f"container not running: {container_id}")
        try:
            os.kill(state["pid"], signal)
        except ProcessLookupError:
            raise errdefs.Conflict(f"container not running: {container_id}")

    def delete(self, container_id: str, *, force: bool = False) -> None:
        state = self._load(container_id)
        status = self._status(container_id, state)
        if status == "running" and not force:
            raise errdefs.Conflict(
                f"cannot delete container {container_id} that is not stopped: {status}"
            )
        cgroup = Cgroup(state["cgroups_path"])
        if status != "stopped":
            with contextlib.suppress(ProcessLookupError):
                os.kill(state["pid"], signal.SIGKILL)
        _drain(cgroup)
        cgroup.remove()
        _rmtree(self.root / container_id)

    def state(self, container_id: str) -> dict:
        state = self._load(container_id)
        status = self._status(container_id, state)
        return {
            "ociVersion": OCI_VERSION,
            "id": container_id,
            "status": status,
            "pid": state["pid"] if status != "stopped" else 0,
            "bundle": state["bundle"],
            "rootfs": state.get("rootfs", ""),
            "created": state.get("created", ""),
            "annotations": state.get("annotations") or {},
        }

    def list(self) -> list[dict]:
        if not self.root.is_dir():
            return []
        out = []
        for entry in sorted(self.root.iterdir()):
            with contextlib.suppress(errdefs.NotFound):
                out.append(self.state(entry.name))
        return out

    # -- state ---------------------------------------------------------------

    def _load(self, container_id: str) -> dict:
        if not _ID.match(container_id):
            raise errdefs.NotFound(f"container does not exist: {container_id}")
        try:
            return json.loads((self.root / container_id / "state.json").read_text())
        except (FileNotFoundError, NotADirectoryError, json.JSONDecodeError):
            raise errdefs.NotFound(f"container does not exist: {container_id}")

    def _status(self, container_id: str, state: dict) -> str:
        if not proc.is_alive(state["pid"], state.get("pid_start")):
            return "stopped"
        if (self.root / container_id / "exec.fifo").exists():
            return "created"
        return "running"


# -- parent side helpers -------------------------------------------------------


def _load_config(bundle: Path) -> dict:
    try:
        return json.loads((bundle / "config.json").read_text())
    except FileNotFoundError:
        raise errdefs.InvalidArgument(f"no config.json in bundle {bundle}")
    except (OSError, json.JSONDecodeError) as exc:
        raise errdefs.InvalidArgument(f"invalid config.json in bundle {bundle}: {exc}")


def _rootfs(config: dict, bundle: Path) -> Path:
    path = Path((config.get("root") or {}).get("path") or "rootfs")
    return path if path.is_absolute() else bundle / path


def _connect(path: Path | None) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(str(path))
    except OSError as exc:
        sock.close()
        raise errdefs.RuntimeFailure(f"cannot connect to console socket {path}: {exc}")
    return sock


# -- seccomp: compiled here (errors reach the caller), installed by the init
def _compile_seccomp(linux: dict, cache: Path) -> seccomp.Program | None:
    """The filter's BPF, cached under the state root: compiling Docker's profile
    takes ~10 ms, reading it back ~0.1. The key covers everything the output
    depends on (profile, libseccomp version, kernel); the root is root-only."""
    if not linux.get("seccomp"):
        return None
    text = json.dumps(linux["seccomp"], sort_keys=True)
    key = f"{text}\0{seccomp.library_version()}\0{os.uname().release}\0{os.uname().machine}"
    path = cache / (_sha256_hex(key.encode()) + ".bpf")
    flags = seccomp.filter_flags(linux["seccomp"])
    with contextlib.suppress(FileNotFoundError, errdefs.InvalidArgument):
        return seccomp.program(path.read_bytes(), flags)
    program = seccomp.compile_filter(linux["seccomp"])
    cache.mkdir(mode=0o700, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(program.bpf)
    os.replace(tmp, path)
    return program


def _install_seccomp(ctx: _Context, *, no_new_privs: bool) -> None:
    """Install the filter at runc's point: without no_new_privs loading needs
    CAP_SYS_ADMIN, so before privileges are dropped; with it, as the very last
    step before execve, so the fewest syscalls run under the filter."""
    if ctx.seccomp is not None and no_new_privs == bool(ctx.process.get("noNewPrivileges")):
        seccomp.install(ctx.seccomp)


# -- end seccomp


def _now() -> str:
    """RFC 3339 UTC with microseconds, without importing datetime."""
    ns = time.time_ns()
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ns // 1_000_000_000))
    return f"{stamp}.{ns // 1000 % 1_000_000:06d}Z"


def _sha256_hex(data: bytes) -> str:
    # CPython's own SHA-256 module, not hashlib: hashlib maps OpenSSL's
    # libcrypto, 3.4 MB of RSS in every shim.
    try:
        from _sha256 import sha256  # CPython 3.11
    except ImportError:
        try:
            from _sha2 import sha256  # CPython 3.12+
        except ImportError:
            from hashlib import sha256
    return sha256(data).hexdigest()


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _write_json(path: Path, data: dict) -> None:
    _write_atomic(path, json.dumps(data))


def _kill_and_reap(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, 0)


def _drain(cgroup: Cgroup, timeout: float = 5.0) -> None:
    """SIGKILL whatever is left in the cgroup and wait until it is empty."""
    deadline = time.monotonic() + timeout
    while (pids := cgroup.pids()) and time.monotonic() < deadline:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.005)


class _Context:
    """What the children need; built before fork so they import nothing."""

    def __init__(
        self,
        *,
        config: dict,
        seccomp: seccomp.Program | None,
        bundle: Path,
        cgroup: Cgroup,
        fifo: str,
        stdio: tuple[int, int, int],
        console_fd: int,
    ) -> None:
        self.config = config
        self.process = config.get("process") or {}
        self.linux = config.get("linux") or {}
        self.seccomp = seccomp
        self.bundle = bundle
        self.rootfs = str(_rootfs(config, bundle))
        self.cgroup = cgroup
        self.fifo = fifo
        self.stdio = stdio
        self.console_fd = console_fd
        self.hierarchies = hierarchies()


def _spawn(ctx: _Context) -> int:
    """Fork child A, collect B's pid and its verdict; return B's pid."""
    sync_r, sync_w = os.pipe()
    try:
        child_a = os.fork()
        if child_a == 0:
            os.close(sync_r)
            _child_a(ctx, sync_w)  # never returns
        os.close(sync_w)
        sync_w = -1
        init_pid = 0
        try:
            for message in _messages(sync_r):
                if "pid" in message:
                    init_pid = message["pid"]
                elif "error" in message:
                    raise errdefs.RuntimeFailure(
                        message["error"], exit_code=message.get("exit_code", 125)
                    )
                elif message.get("created"):
                    return init_pid
            raise errdefs.RuntimeFailure("container init exited before it was created")
        except BaseException:
            if init_pid:
                _kill_and_reap(init_pid)
            raise
        finally:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(child_a, 0)
    finally:
        os.close(sync_r)
        if sync_w >= 0:
            os.close(sync_w)


def _messages(fd: int):
    """JSON lines from the sync pipe until EOF or the create timeout."""
    deadline = time.monotonic() + CREATE_TIMEOUT
    buffer = b""
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0 or not select.select([fd], [], [], remaining)[0]:
            raise errdefs.RuntimeFailure("timed out waiting for the container init")
        chunk = os.read(fd, 65536)
        if not chunk:
            return
        buffer += chunk
        while b"\n" in buffer:
            line, buffer = buffer.split(b"\n", 1)
            yield json.loads(line)


def _send(fd: int, message: dict) -> None:
    with contextlib.suppress(OSError):
        os.write(fd, json.dumps(message).encode() + b"\n")


# -- child A: cgroup and namespaces ------------------------------------------------


def _child_a(ctx: _Context, sync_w: int) -> None:
    code = 1
    try:
        ctx.cgroup.join()
        flags = 0
        for ns in ctx.linux.get("namespaces") or []:
            kind = ns.get("type", "")
            if kind not in namespaces.BY_OCI_TYPE or kind == "user":
                raise errdefs.RuntimeFailure(f"unsupported namespace type: {kind!r}")
            if ns.get("path"):
                fd = os.open(ns["path"], os.O_RDONLY | os.O_CLOEXEC)
                try:
                    namespaces.setns(fd, namespaces.BY_OCI_TYPE[kind])
                finally:
                    os.close(fd)
            else:
                flags |= namespaces.BY_OCI_TYPE[kind]
        namespaces.unshare(flags)
        init = os.fork()
        if init == 0:
            _child_b(ctx, sync_w, new_netns=bool(flags & namespaces.CLONE_NEWNET))
        _send(sync_w, {"pid": init})
        code = 0
    except BaseException as exc:
        _send(sync_w, {"error": _describe(exc)})
    finally:
        os._exit(code)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, errdefs.DockyardError):
        return exc.message
    return f"{type(exc).__name__}: {exc}" if not isinstance(exc, OSError) else str(exc)


# -- child B: the container's init ---------------------------------------------------


def _child_b(ctx: _Context, sync_w: int, *, new_netns: bool) -> None:
    try:
        _reset_signals()
        os.setsid()
        fifo = os.open(ctx.fifo, os.O_RDWR | os.O_CLOEXEC)
        _setup_rootfs(ctx)
        _setup_stdio(ctx)
        _setup_system(ctx, new_netns=new_netns)
        _finish_rootfs(ctx)
        path = _drop_privileges_and_resolve(ctx)
    except ExecError as exc:
        _send(sync_w, {"error": str(exc), "exit_code": exc.exit_code})
        os._exit(1)
    except BaseException as exc:
        _send(sync_w, {"error": "unable to start container process: " + _describe(exc)})
        os._exit(1)
    _send(sync_w, {"created": True})
    try:
        os.read(fifo, 1)
        os.close(fifo)
        os.close(sync_w)
        os.closerange(3, 1 << 20)
        try:
            _install_seccomp(ctx, no_new_privs=True)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.write(2, f"unable to init seccomp: {exc.strerror}\n".encode())
            os._exit(126)
        os.execve(path, ctx.process["args"], _env(ctx.process.get("env") or []))
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.write(2, f"exec {path}: {exc.strerror}\n".encode())
        os._exit(127 if exc.errno == errno.ENOENT else 126)
    finally:
        os._exit(126)


def _reset_signals() -> None:
    # Python ignores SIGPIPE and may have handlers or a blocked mask from the
    # caller; an exec'd program must start with the defaults.
    for sig in signal.valid_signals():
        with contextlib.suppress(OSError, ValueError, RuntimeError):
            signal.signal(sig, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_SETMASK, [])


def _env(entries: list[str]) -> dict[str, str]:
    env = {}
    for entry in entries:
        key, _, value = entry.partition("=")
        env[key] = value
    return env


def _setup_rootfs(ctx: _Context) -> None:
    propagation = PROPAGATION.get(ctx.linux.get("rootfsPropagation", ""), MS_PRIVATE | MS_REC)
    mount(None, "/", None, propagation)
    rootfs = ctx.rootfs
    mount(rootfs, rootfs, None, MS_BIND | MS_REC)
    for spec in ctx.config.get("mounts") or []:
        _mount_one(ctx, spec)
    _create_devices(ctx)
    for name, target in _DEV_SYMLINKS:
        with contextlib.suppress(FileExistsError):
            os.symlink(target, os.path.join(rootfs, "dev", name))
    if os.path.exists("/proc/kcore"):
        with contextlib.suppress(FileExistsError):
            os.symlink("/proc/kcore", os.path.join(rootfs, "dev", "core"))
    old_root = os.open("/", os.O_DIRECTORY | os.O_RDONLY)
    new_root = os.open(rootfs, os.O_DIRECTORY | os.O_RDONLY)
    try:
        os.fchdir(new_root)
        pivot_root(".", ".")
        os.fchdir(old_root)
        # Keep the detach from propagating anywhere before dropping the old root.
        mount(None, ".", None, MS_SLAVE | MS_REC)
        umount(".", MNT_DETACH)
    finally:
        os.close(old_root)
        os.close(new_root)
    os.chdir("/")


def _mount_one(ctx: _Context, spec: dict) -> None:
    dest = secure_join(ctx.rootfs, spec["destination"])
    flags, propagation, data = parse_options(spec.get("options") or [])
    fstype = spec.get("type") or ""
    source = spec.get("source") or ""
    if fstype == "bind" or flags & MS_BIND:
        if not os.path.isabs(source):
            source = str(ctx.bundle / source)
        _make_mountpoint(dest, is_dir=os.path.isdir(source))
        mount(source, dest, None, MS_BIND | (flags & MS_REC))
        extra = flags & ~(MS_BIND | MS_REC)
        if extra:
            mount(None, dest, None, extra | MS_BIND | MS_REMOUNT)
    elif fstype == "cgroup":
        _mount_cgroup(ctx, dest, flags)
    else:
        _make_mountpoint(dest, is_dir=True)
        mount(source or fstype, dest, fstype, flags, data or None)
    for flag in propagation:
        mount(None, dest, None, flag)


def _make_mountpoint(dest: str, *, is_dir: bool) -> None:
    if is_dir:
        os.makedirs(dest, exist_ok=True)
        return
    os.makedirs(os.path.dirname(dest), exist_ok=True)
    if not os.path.exists(dest):
        os.close(os.open(dest, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o644))


def _mount_cgroup(ctx: _Context, dest: str, flags: int) -> None:
    """The container's view of its cgroup: the namespace root of each hierarchy."""
    os.makedirs(dest, exist_ok=True)
    found = ctx.hierarchies
    if len(found) == 1 and found[0].version == 2:
        mount("cgroup2", dest, "cgroup2", flags)
        return
    mount("tmpfs", dest, "tmpfs", flags & ~MS_RDONLY, "mode=755")
    for h in found:
        if h.version != 1:
            continue
        sub = os.path.join(dest, os.path.basename(h.mountpoint))
        os.makedirs(sub, exist_ok=True)
        mount("cgroup", sub, "cgroup", flags, ",".join(h.controllers))
    if flags & MS_RDONLY:
        mount(None, dest, None, flags | MS_REMOUNT)


def _create_devices(ctx: _Context) -> None:
    devices = [
        {"path": f"/dev/{name}", "type": "c", "major": major, "minor": minor, "fileMode": 0o666}
        for name, major, minor in _DEFAULT_DEVICES
    ]
    wanted = {d.get("path") for d in ctx.linux.get("devices") or []}
    devices = [d for d in devices if d["path"] not in wanted] + list(ctx.linux.get("devices") or [])
    for device in devices:
        _make_device(ctx.rootfs, device)


def _make_device(rootfs: str, device: dict) -> None:
    dest = secure_join(rootfs, device["path"])
    os.makedirs(os.path.dirname(dest), exist_ok=True)
    kind = {"c": stat.S_IFCHR, "u": stat.S_IFCHR, "b": stat.S_IFBLK, "p": stat.S_IFIFO}
    mode = device.get("fileMode", 0o666) & 0o7777
    with contextlib.suppress(FileNotFoundError):
        os.unlink(dest)
    try:
        os.mknod(
            dest,
            mode | kind[device.get("type", "c")],
            os.makedev(device.get("major", 0), device.get("minor", 0)),
        )
    except PermissionError:
        # Not allowed to mknod here (e.g. nested): bind the host's node instead.
        _make_mountpoint(dest, is_dir=False)
        mount(device["path"], dest, None, MS_BIND)
        return
    os.chmod(dest, mode)
    os.chown(dest, device.get("uid", 0), device.get("gid", 0))


def _setup_stdio(ctx: _Context) -> None:
    if ctx.process.get("terminal"):
        master, slave, slave_path = tty.open_pty("/dev/pts")
        size = ctx.process.get("consoleSize") or {}
        if size.get("height") and size.get("width"):
            tty.set_winsize(slave, size["height"], size["width"])
        if os.path.exists("/dev"):
            _make_mountpoint("/dev/console", is_dir=False)
            mount(slave_path, "/dev/console", None, MS_BIND)
        fds = (slave, slave, slave)
    else:
        master = -1
        fds = ctx.stdio
    # Move out of the way first: the given fds may themselves be 0, 1 or 2.
    high = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 3) for fd in fds]
    for target, fd in enumerate(high):
        os.dup2(fd, target)
    for fd in high:
        os.close(fd)
    if master >= 0:
        tty.set_controlling_terminal(0)
        os.close(slave)
        with socket.socket(fileno=ctx.console_fd) as sock:
            socket.send_fds(sock, [b"/dev/ptmx"], [master])
        os.close(master)


def _setup_system(ctx: _Context, *, new_netns: bool) -> None:
    if ctx.config.get("hostname"):
        uts.sethostname(ctx.config["hostname"])
    if ctx.config.get("domainname"):
        uts.setdomainname(ctx.config["domainname"])
    if new_netns:
        netdev.set_up("lo")
    for key, value in (ctx.linux.get("sysctl") or {}).items():
        with open("/proc/sys/" + key.replace(".", "/"), "w") as f:
            f.write(str(value))
    if ctx.process.get("oomScoreAdj") is not None:
        with open("/proc/self/oom_score_adj", "w") as f:
            f.write(str(ctx.process["oomScoreAdj"]))
    for limit in ctx.process.get("rlimits") or []:
        which = getattr(resource, limit["type"], None)
        if which is None:
            raise errdefs.InvalidArgument(f"unknown rlimit {limit['type']}")
        try:
            resource.setrlimit(which, (limit["soft"], limit["hard"]))
        except (ValueError, OSError) as exc:
            raise errdefs.RuntimeFailure(f"error setting rlimit {limit['type']}: {exc}")


def _finish_rootfs(ctx: _Context) -> None:
    for path in ctx.linux.get("readonlyPaths") or []:
        _readonly(path)
    for path in ctx.linux.get("maskedPaths") or []:
        _mask(path)
    if (ctx.config.get("root") or {}).get("readonly"):
        mount(None, "/", None, _statvfs_flags("/") | MS_BIND | MS_REMOUNT | MS_RDONLY)


def _readonly(path: str) -> None:
    try:
        mount(path, path, None, MS_BIND | MS_REC)
    except FileNotFoundError:
        return
    mount(None, path, None, _statvfs_flags(path) | MS_BIND | MS_REMOUNT | MS_RDONLY)


def _mask(path: str) -> None:
    try:
        if os.path.isdir(path):
            mount("tmpfs", path, "tmpfs", MS_RDONLY)
        else:
            mount("/dev/null", path, None, MS_BIND)
    except FileNotFoundError:
        pass


def _statvfs_flags(path: str) -> int:
    # ST_RDONLY/NOSUID/NODEV/NOEXEC have the same values as their MS_* flags.
    return os.statvfs(path).f_flag & 0xF


def _drop_privileges_and_resolve(ctx: _Context) -> str:
    process = ctx.process
    _install_seccomp(ctx, no_new_privs=False)
    caps = process.get("capabilities")
    if caps is not None:
        capabilities.drop_bounding(capabilities.mask(caps.get("bounding") or []))
    user = process.get("user") or {}
    uid, gid = user.get("uid", 0), user.get("gid", 0)
    os.umask(user.get("umask", 0o022))
    cwd = process.get("cwd") or "/"
    try:
        os.chdir(cwd)
    except OSError as exc:
        raise errdefs.RuntimeFailure(f"chdir to cwd ({cwd!r}) set in config.json failed: {exc}")
    prctl.set_keepcaps(True)
    os.setgroups(user.get("additionalGids") or [])
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)
    prctl.set_keepcaps(False)
    if caps is not None:
        capabilities.capset(
            capabilities.mask(caps.get("effective") or []),
            capabilities.mask(caps.get("permitted") or []),
            capabilities.mask(caps.get("inheritable") or []),
        )
        capabilities.set_ambient(capabilities.mask(caps.get("ambient") or []))
    if process.get("noNewPrivileges"):
        prctl.set_no_new_privs()
    return look_path(process["args"][0], _env(process.get("env") or []).get("PATH", ""))


def look_path(name: str, path_env: str) -> str:
    """Go's exec.LookPath, with its error messages and Docker's exit codes."""
    if "/" in name:
        _check_executable(name, name)
        return name
    for directory in path_env.split(":"):
        candidate = os.path.join(directory or ".", name)
        try:
            _check_executable(name, candidate)
        except ExecError:
            continue
        return candidate
    raise ExecError(f'exec: "{name}": executable file not found in $PATH', 127)


def _check_executable(name: str, path: str) -> None:
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise ExecError(f'exec: "{name}": stat {path}: no such file or directory', 127)
    except NotADirectoryError:
        raise ExecError(f'exec: "{name}": stat {path}: not a directory', 127)
    except PermissionError:
        raise ExecError(f'exec: "{name}": permission denied', 126)
    if stat.S_ISDIR(mode) or not mode & 0o111:
        raise ExecError(f'exec: "{name}": permission denied', 126)


def _rmtree(path: Path) -> None:
    # shutil is imported here, not at the top: it pulls in bz2 and lzma, which
    # every shim would then carry.
    import shutil

    shutil.rmtree(path, ignore_errors=True)
