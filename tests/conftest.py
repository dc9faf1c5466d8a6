"""Shared fixtures: a real daemon per test session (per xdist worker) in
temporary roots, with its own socket and cgroup parent, torn down completely
at the end; the reference dockerd (started by ``bench/run.py``'s helpers)
for the tests that compare against it; snapshotters of each kind and the
busybox rootfs tar for the image tests."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent


def _bin(name: str) -> str:
    path = VENV_BIN / name
    return str(path) if path.exists() else name


class DaemonHandle:
    """A running dockyardd in temporary roots."""

    def __init__(self, base: Path, tag: str) -> None:
        self.base = base
        self.tag = tag
        self.data_root = base / "data"
        self.exec_root = base / "run"
        self.socket = self.exec_root / "d.sock"
        self.host = f"unix://{self.socket}"
        self.cgroup_parent = f"dockyard-test-{tag}"
        # Its own bridge and subnet, so that daemons run side by side.
        digest = hashlib.sha256(f"{tag}-{base}".encode()).digest()
        self.bridge = f"dyb{digest[:3].hex()}"
        self.subnet_prefix = f"10.{200 + digest[3] % 50}.{digest[4]}"
        self.bip = f"{self.subnet_prefix}.1/24"
        self.log = base / "daemon.log"
        self.proc: subprocess.Popen | None = None

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "DOCKER_HOST": self.host}

    def daemon_args(self) -> list[str]:
        return [
            _bin("dockyardd"),
            "-H",
            self.host,
            "--data-root",
            str(self.data_root),
            "--exec-root",
            str(self.exec_root),
            "--cgroup-parent",
            self.cgroup_parent,
            "--config-file",
            str(self.base / "daemon.json"),
            "--bridge",
            self.bridge,
            "--bip",
            self.bip,
        ]

    def cleanup_network(self) -> None:
        subprocess.run([*self.daemon_args(), "--cleanup"], capture_output=True, timeout=60)

    def start(self) -> None:
        args = self.daemon_args()
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.socket.exists() and self.cli("version", check=False).returncode == 0:
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise RuntimeError(f"dockyardd did not start:\n{self.log.read_text()[-4000:]}")

    def stop(self, sig: int = 15) -> None:
        if self.proc is None:
            return
        self.proc.send_signal(sig)
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def cli(self, *args: str, check: bool = True, input: bytes | None = None, timeout=60):
        """Run our own `dockyard` CLI against this daemon."""
        return subprocess.run(
            [_bin("dockyard"), *args],
            env=self.env,
            capture_output=True,
            input=input,
            check=check,
            timeout=timeout,
        )

    def docker(
        self,
        *args: str,
        check: bool = True,
        input: bytes | None = None,
        timeout=60,
        config: Path | None = None,
    ):
        """Run the real docker CLI against this daemon (with its client config,
        logins included, in ``config`` when given)."""
        return subprocess.run(
            ["docker", *args],
            env={**self.env, "DOCKER_CONFIG": str(config or self.base / "dcfg")},
            capture_output=True,
            input=input,
            check=check,
            timeout=timeout,
        )

    def import_busybox(self, ref: str = "busybox:latest") -> None:
        tar = subprocess.run(
            [sys.executable, "-m", "dockyard.image.busybox", "-"], capture_output=True, check=True
        ).stdout
        self.cli("import", "-c", 'CMD ["sh"]', "-", ref, input=tar)

    def cleanup_containers(self) -> None:
        ids = self.cli("ps", "-aq", check=False).stdout.split()
        if ids:
            self.cli("rm", "-f", *[i.decode() for i in ids], check=False)

    def teardown(self) -> list[str]:
        """Removes the containers, stops the daemon, its network and cgroups,
        deletes its roots; returns what it left behind (``leftovers``)."""
        try:
            if self.proc is not None:
                self.cleanup_containers()
        finally:
            self.stop()
            self.cleanup_network()
            left = leftovers(self)
            remove_cgroup_parent(self)
            shutil.rmtree(self.base, ignore_errors=True)
        return left


def leftovers(handle: DaemonHandle) -> list[str]:
    """Mounts, processes and cgroups the daemon left behind."""
    found = []
    mounts = Path("/proc/self/mountinfo").read_text()
    for line in mounts.splitlines():
        if str(handle.base) in line:
            found.append("mount: " + line.split()[4])
    for controller in Path("/sys/fs/cgroup").iterdir():
        if (controller / handle.cgroup_parent).exists():
            children = [p for p in (controller / handle.cgroup_parent).iterdir() if p.is_dir()]
            if children:
                found.append(f"cgroup: {controller.name}/{handle.cgroup_parent}: {children}")
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    if f" {handle.bridge}:" in links or f"master {handle.bridge} " in links:
        found.append(f"link: the bridge {handle.bridge} or a veth on it")
    rules = subprocess.run(["iptables-save"], capture_output=True, text=True).stdout
    if handle.bridge.upper() in rules:
        found.append(f"iptables: rules for {handle.bridge}")
    out = subprocess.run(["ps", "-eo", "pid=,args="], capture_output=True, text=True).stdout
    for line in out.splitlines():
        if str(handle.base) in line:
            found.append("process: " + line.strip())
    return found


def remove_cgroup_parent(handle: DaemonHandle) -> None:
    for controller in Path("/sys/fs/cgroup").iterdir():
        path = controller / handle.cgroup_parent
        if path.is_dir():
            for child in sorted(path.glob("*/"), reverse=True):
                try:
                    child.rmdir()
                except OSError:
                    pass
            try:
                path.rmdir()
            except OSError:
                pass


@pytest.fixture(scope="session")
def daemon():
    if os.geteuid() != 0:
        pytest.skip("needs root")
    tag = f"{os.getpid()}"
    base = Path(tempfile.mkdtemp(prefix="dy-", dir="/tmp"))
    handle = DaemonHandle(base, tag)
    handle.start()
    handle.import_busybox()
    try:
        yield handle
    finally:
        try:
            if handle.proc is None:
                handle.start()  # a test stopped it: its containers go through it
        finally:
            left = handle.teardown()
        assert not left, f"the daemon left things behind: {left}"


@pytest.fixture(params=["overlay", "copy"])
def sn(request, tmp_path: Path):
    """A fresh snapshotter of each kind under ``tmp_path``."""
    from dockyard.store.snapshots import CopySnapshotter, OverlaySnapshotter

    kind = OverlaySnapshotter if request.param == "overlay" else CopySnapshotter
    return kind(tmp_path / "snapshots")


@pytest.fixture(scope="session")
def busybox_tar() -> bytes:
    """The host's busybox as a rootfs tar (``dockyard.image.busybox``)."""
    import io

    from dockyard.image.busybox import build_rootfs_tar

    buf = io.BytesIO()
    build_rootfs_tar(buf)
    return buf.getvalue()


@pytest.fixture(scope="module")
def dockerd():
    """The reference dockerd (Debian's docker.io) with busybox imported, as
    ``bench/run.py`` starts it (an ``Engine``); skipped when not installed."""
    from bench import run as bench_run

    if os.geteuid() != 0:
        pytest.skip("needs root")
    engine = bench_run.start_engine("dockerd", prefix="dy-ref")
    if engine is None:
        pytest.skip("dockerd is not installed")
    try:
        bench_run.import_busybox(engine)
        yield engine
    finally:
        bench_run.stop(engine)
