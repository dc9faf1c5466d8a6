"""The builtin runtime against the real kernel (root), with runc as a reference."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import uuid
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from dockyard import errdefs
from dockyard.runtime import cgroups, spec
from dockyard.runtime.builtin import BuiltinRuntime
from dockyard.sys import prctl

sys.path.insert(0, str(Path(__file__).parent))
from runtime_helpers import busybox_rootfs, run_to_exit, write_bundle

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")


@pytest.fixture(scope="module", autouse=True)
def subreaper():
    prctl.set_child_subreaper(True)
    yield
    prctl.set_child_subreaper(False)


@dataclass
class Env:
    tmp: Path
    rootfs: Path
    runtime: BuiltinRuntime
    parent: str

    def options(self, args: list[str], cid: str = "c1", **kw) -> spec.SpecOptions:
        kw.setdefault("hostname", "box")
        return spec.SpecOptions(
            rootfs=str(self.rootfs),
            args=args,
            env=[],
            cgroups_path=f"{self.parent}/{cid}",
            **kw,
        )

    def bundle(self, options: spec.SpecOptions, cid: str = "c1") -> Path:
        path = self.tmp / f"bundle-{cid}"
        write_bundle(path, options)
        return path


@pytest.fixture
def env(tmp_path: Path):
    e = Env(
        tmp=tmp_path,
        rootfs=busybox_rootfs(tmp_path / "rootfs"),
        runtime=BuiltinRuntime(tmp_path / "state"),
        parent=f"/dockyard-test-{uuid.uuid4().hex[:8]}",
    )
    yield e
    for state in e.runtime.list():
        e.runtime.delete(state["id"], force=True)
    _reap()
    for h in cgroups.hierarchies():
        path = os.path.join(h.mountpoint, e.parent.lstrip("/"))
        if os.path.isdir(path):
            os.rmdir(path)
    mounts = subprocess.run(["findmnt", "-rn", "-o", "TARGET"], capture_output=True, text=True)
    assert str(tmp_path) not in mounts.stdout


def _reap() -> None:
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def run(env: Env, args: list[str], cid: str = "c1", **kw) -> tuple[int, str]:
    """Create, start, collect output and exit status, delete."""
    bundle = env.bundle(env.options(args, cid, **kw), cid)
    return run_to_exit(env.runtime, cid, bundle, env.tmp)


def test_runs_as_pid1_with_hostname_and_exit_status(env: Env) -> None:
    assert run(env, ["sh", "-c", "echo $$; hostname; exit 7"]) == (7, "1\nbox\n")


def test_proc_shows_only_the_container(env: Env) -> None:
    code, out = run(env, ["sh", "-c", "for p in /proc/[0-9]*; do echo $p; done"])
    assert (code, out) == (0, "/proc/1\n")


def test_host_root_is_not_visible(env: Env, tmp_path: Path) -> None:
    marker = Path("/tmp") / f"dockyard-marker-{uuid.uuid4().hex}"
    marker.touch()
    try:
        code, out = run(env, ["sh", "-c", f"test -e {marker} || echo absent; ls /"])
    finally:
        marker.unlink()
    assert code == 0
    assert out.splitlines()[0] == "absent"
    assert set(out.split()[1:]) >= {"bin", "dev", "etc", "proc", "sys"}


def test_capabilities_no_new_privs_and_masked_paths(env: Env) -> None:
    script = (
        "grep -E 'CapEff|CapBnd|NoNewPrivs' /proc/self/status;"
        "cat /proc/timer_list | wc -c; ls /sys/firmware | wc -l;"
        "(echo 1 > /proc/sys/vm/drop_caches) 2>/dev/null && echo writable || echo readonly"
    )
    code, out = run(env, ["sh", "-c", script])
    assert code == 0
    fields = [line.split() for line in out.splitlines()]
    assert fields[0] == ["CapEff:", "00000000a80425fb"]
    assert fields[1] == ["CapBnd:", "00000000a80425fb"]
    assert fields[2] == ["NoNewPrivs:", "1"]
    assert fields[3:] == [["0"], ["0"], ["readonly"]]


def test_user_switch(env: Env) -> None:
    code, out = run(env, ["sh", "-c", "id; grep CapEff /proc/self/status"], user="nobody")
    assert code == 0
    assert out.splitlines() == [
        "uid=65534(nobody) gid=65534(nogroup) groups=65534(nogroup)",
        "CapEff:\t0000000000000000",
    ]


def test_readonly_rootfs_and_binds(env: Env) -> None:
    host = env.tmp / "hosts"
    host.write_text("127.0.0.1 box\n")
    code, out = run(
        env,
        ["sh", "-c", "cat /etc/hosts; touch /x 2>/dev/null || echo ro; touch /etc/hosts || true"],
        readonly_rootfs=True,
        binds=((str(host), "/etc/hosts", True),),
    )
    assert code == 0
    assert out.splitlines()[:2] == ["127.0.0.1 box", "ro"]
    assert host.read_text() == "127.0.0.1 box\n"


@pytest.mark.parametrize(
    ("args", "exit_code", "message"),
    [
        (["nosuchcmd"], 127, 'exec: "nosuchcmd": executable file not found in $PATH'),
        (["/etc/passwd"], 126, 'exec: "/etc/passwd": permission denied'),
        (["/nope/x"], 127, "no such file or directory"),
    ],
)
def test_failed_create_leaves_nothing(env: Env, args, exit_code, message) -> None:
    bundle = env.bundle(env.options(args))
    with pytest.raises(errdefs.RuntimeFailure) as exc:
        env.runtime.create("c1", bundle, pid_file=env.tmp / "pid", stdio=(0, 1, 2))
    assert exc.value.exit_code == exit_code
    assert message in exc.value.message
    assert not (env.tmp / "state" / "c1").exists()
    assert not cgroups.Cgroup(f"{env.parent}/c1").exists()
    with pytest.raises(errdefs.NotFound):
        env.runtime.state("c1")


def test_lifecycle_states_kill_and_delete(env: Env) -> None:
    bundle = env.bundle(env.options(["sleep", "100"]))
    pid = env.runtime.create("c1", bundle, pid_file=env.tmp / "pid", stdio=(0, 1, 2))
    assert (env.tmp / "pid").read_text() == str(pid)
    state = env.runtime.state("c1")
    assert (state["status"], state["pid"], state["bundle"]) == ("created", pid, str(bundle))
    with pytest.raises(errdefs.Conflict):
        env.runtime.create("c1", bundle, pid_file=env.tmp / "pid", stdio=(0, 1, 2))
    env.runtime.start("c1")
    assert env.runtime.state("c1")["status"] == "running"
    with pytest.raises(errdefs.Conflict):
        env.runtime.delete("c1")
    cgroup = cgroups.Cgroup(f"{env.parent}/c1")
    assert cgroup.pids() == [pid]
    env.runtime.kill("c1", signal.SIGKILL)
    _, status = os.waitpid(pid, 0)
    assert os.WTERMSIG(status) == signal.SIGKILL
    assert env.runtime.state("c1")["status"] == "stopped"
    env.runtime.delete("c1")
    assert not cgroup.exists()
    assert env.runtime.list() == []


def test_sigterm_reaches_a_trapping_init(env: Env) -> None:
    script = "trap 'exit 3' TERM; echo ready; while :; do sleep 0.05; done"
    bundle = env.bundle(env.options(["sh", "-c", script]))
    r, w = os.pipe()
    pid = env.runtime.create("c1", bundle, pid_file=env.tmp / "pid", stdio=(0, w, w))
    os.close(w)
    env.runtime.start("c1")
    assert os.read(r, 100) == b"ready\n"
    env.runtime.kill("c1", signal.SIGTERM)
    _, status = os.waitpid(pid, 0)
    os.close(r)
    assert os.waitstatus_to_exitcode(status) == 3
    env.runtime.delete("c1")


def test_delete_force_kills_created_container(env: Env) -> None:
    bundle = env.bundle(env.options(["sleep", "100"]))
    pid = env.runtime.create("c1", bundle, pid_file=env.tmp / "pid", stdio=(0, 1, 2))
    env.runtime.delete("c1", force=True)
    os.waitpid(pid, 0)
    with pytest.raises(errdefs.NotFound):
        env.runtime.state("c1")
    assert not cgroups.Cgroup(f"{env.parent}/c1").exists()


def test_terminal_over_console_socket(env: Env) -> None:
    sock_path = env.tmp / "console.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(sock_path))
    listener.listen(1)
    bundle = env.bundle(env.options(["sh", "-c", "tty; echo $TERM"], tty=True))
    pid = env.runtime.create(
        "c1", bundle, pid_file=env.tmp / "pid", stdio=(0, 1, 2), console_socket=sock_path
    )
    conn, _ = listener.accept()
    _, fds, _, _ = socket.recv_fds(conn, 1024, 1)
    conn.close()
    listener.close()
    master = fds[0]
    env.runtime.start("c1")
    out = b""
    while True:
        try:
            chunk = os.read(master, 1024)
        except OSError:  # EIO once the slave side is gone
            break
        if not chunk:
            break
        out += chunk
    os.close(master)
    _, status = os.waitpid(pid, 0)
    assert status == 0
    assert out.decode().split() == ["/dev/pts/0", "xterm"]
    env.runtime.delete("c1")


def test_same_bundle_runs_under_runc(env: Env) -> None:
    bundle = env.bundle(env.options(["sh", "-c", "echo $$; hostname; id -u"], cid="r1"), "r1")
    proc = subprocess.run(
        ["/usr/sbin/runc", "--root", str(env.tmp / "runc"), "run", "-b", str(bundle), "r1"],
        capture_output=True,
        text=True,
        timeout=30,
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "1\nbox\n0\n"


def test_cli_drop_in(env: Env) -> None:
    bundle = env.bundle(env.options(["sh", "-c", "echo cli; sleep 100"], cid="k1"), "k1")
    cli = [sys.executable, "-m", "dockyard.runtime.cli", "--root", str(env.tmp / "cli")]
    r, w = os.pipe()
    subprocess.run(
        [*cli, "create", "--bundle", str(bundle), "--pid-file", str(env.tmp / "k1.pid"), "k1"],
        check=True,
        stdout=w,
        stderr=w,
        timeout=30,
    )
    os.close(w)
    pid = int((env.tmp / "k1.pid").read_text())
    state = json.loads(subprocess.check_output([*cli, "state", "k1"]))
    assert (state["status"], state["pid"]) == ("created", pid)
    subprocess.run([*cli, "start", "k1"], check=True)
    assert os.read(r, 100) == b"cli\n"
    listing = subprocess.check_output([*cli, "list"], text=True)
    assert "k1" in listing and "running" in listing
    subprocess.run([*cli, "kill", "k1", "KILL"], check=True)
    os.waitpid(pid, 0)  # re-parented to us, the subreaper
    os.close(r)
    assert json.loads(subprocess.check_output([*cli, "state", "k1"]))["status"] == "stopped"
    subprocess.run([*cli, "delete", "k1"], check=True)
    failed = subprocess.run([*cli, "state", "k1"], capture_output=True, text=True)
    assert failed.returncode == 1 and "does not exist" in failed.stderr


def test_spec_options_are_frozen(env: Env) -> None:
    options = env.options(["true"])
    assert replace(options, hostname="x").hostname == "x"
