"""Runtimes (builtin and runc), json-file logs (rotation, none, since/until),
layer sharing between images, cgroups, and the container's confinement, all
through the real docker CLI."""

from __future__ import annotations

import datetime
import json
import re
import shutil
import subprocess
import sys
import tarfile
import uuid
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(shutil.which("docker") is None, reason="docker CLI missing")

DEFAULT_CAPS = "00000000a80425fb"


def out(result) -> str:
    return result.stdout.decode().strip()


# --- runtimes --------------------------------------------------------------


@pytest.mark.parametrize(
    "runtime",
    [
        None,
        pytest.param(
            "runc",
            marks=pytest.mark.skipif(shutil.which("runc") is None, reason="runc missing"),
        ),
    ],
)
def test_runtime_runs_pid1_with_default_caps(daemon, runtime):
    flags = ["--runtime", runtime] if runtime else []
    script = "echo $$; cat /proc/self/status | grep CapEff"
    result = daemon.docker("run", "--rm", *flags, "busybox", "sh", "-c", script)
    lines = out(result).splitlines()
    assert lines[0] == "1"
    assert lines[1].split() == ["CapEff:", DEFAULT_CAPS]


@pytest.mark.skipif(shutil.which("runc") is None, reason="runc missing")
def test_runc_really_runs_the_container(daemon):
    cid = out(daemon.docker("run", "-d", "--runtime", "runc", "busybox", "sleep", "100"))
    try:
        assert out(daemon.docker("inspect", "-f", "{{.HostConfig.Runtime}}", cid)) == "runc"
        roots = [p for p in (daemon.exec_root / "runtime").glob("*") if (p / cid).exists()]
        assert roots, "runc keeps no state for the container"
        state = subprocess.run(
            ["runc", "--root", str(roots[0]), "state", cid],
            capture_output=True,
            check=True,
        )
        assert json.loads(state.stdout)["status"] == "running"
    finally:
        daemon.docker("rm", "-f", cid, check=False)


# --- logs ------------------------------------------------------------------


def test_log_rotation(daemon):
    script = "i=0; while [ $i -lt 3000 ]; do echo line-$i; i=$((i+1)); done"
    daemon.docker(
        "run",
        "--log-opt",
        "max-size=10k",
        "--log-opt",
        "max-file=2",
        "--name",
        "rot",
        "busybox",
        "sh",
        "-c",
        script,
    )
    try:
        log_path = Path(out(daemon.docker("inspect", "-f", "{{.LogPath}}", "rot")))
        files = sorted(log_path.parent.glob(log_path.name + "*"))
        assert 1 <= len(files) <= 2, files
        longest = max(len(line) for f in files for line in f.read_bytes().splitlines(True))
        for f in files:
            assert f.stat().st_size <= 10 * 1024 + longest, (f, f.stat().st_size)
        logs = out(daemon.docker("logs", "rot")).splitlines()
        assert logs[-1] == "line-2999"
        # What is kept is a contiguous, ordered tail of the output.
        first = int(logs[0].removeprefix("line-"))
        assert logs == [f"line-{i}" for i in range(first, 3000)]
        assert first > 0
        assert out(daemon.docker("logs", "--tail", "3", "rot")).splitlines() == [
            "line-2997",
            "line-2998",
            "line-2999",
        ]
    finally:
        daemon.docker("rm", "rot", check=False)


def test_log_driver_none(daemon):
    daemon.docker("run", "--log-driver", "none", "--name", "nolog", "busybox", "echo", "hi")
    try:
        result = daemon.docker("logs", "nolog", check=False)
        assert result.returncode == 1
        assert result.stderr == (
            b"Error response from daemon: configured logging driver does not support reading\n"
        )
        kind = out(daemon.docker("inspect", "-f", "{{.HostConfig.LogConfig.Type}}", "nolog"))
        assert kind == "none"
        cid = out(daemon.docker("inspect", "-f", "{{.Id}}", "nolog"))
        assert not list((daemon.data_root / "containers" / cid).glob("*-json.log*"))
    finally:
        daemon.docker("rm", "nolog", check=False)


def test_log_driver_none_has_no_log_path(daemon):
    daemon.docker("create", "--log-driver", "none", "--name", "nolog2", "busybox", "true")
    try:
        assert out(daemon.docker("inspect", "-f", "{{.LogPath}}", "nolog2")) == ""
    finally:
        daemon.docker("rm", "nolog2", check=False)


def _stamp(line: str) -> datetime.datetime:
    text = line.split()[0]  # RFC 3339 with nanoseconds: keep microseconds
    return datetime.datetime.fromisoformat(text[:26] + "+00:00")


def test_logs_since_until(daemon):
    daemon.docker("run", "--name", "when", "busybox", "sh", "-c", "echo one; sleep 0.3; echo two")
    try:
        stamped = out(daemon.docker("logs", "-t", "when")).splitlines()
        assert [line.split(" ", 1)[1] for line in stamped] == ["one", "two"]
        first, second = (_stamp(line) for line in stamped)
        assert (second - first).total_seconds() >= 0.25
        middle = f"{(first.timestamp() + second.timestamp()) / 2:.6f}"
        assert out(daemon.docker("logs", "--since", middle, "when")) == "two"
        assert out(daemon.docker("logs", "--until", middle, "when")) == "one"
        # Both bounds are inclusive, and RFC 3339 stamps work as given by -t.
        exact = stamped[1].split()[0]
        assert out(daemon.docker("logs", "--since", exact, "when")) == "two"
        assert out(daemon.docker("logs", "--until", exact, "when")) == "one\ntwo"
        assert out(daemon.docker("logs", "--since", "1h", "when")) == "one\ntwo"
        assert out(daemon.docker("logs", "--until", "1h", "when")) == ""
    finally:
        daemon.docker("rm", "when", check=False)


# --- images share layers -----------------------------------------------------


def _snapshot_dirs(daemon) -> set[str]:
    root = daemon.data_root / "snapshots" / "snapshots"
    return {p.name for p in root.iterdir()} if root.is_dir() else set()


def test_images_share_their_layer(daemon, tmp_path):
    base = tmp_path / "bb.tar"
    subprocess.run([sys.executable, "-m", "dockyard.image.busybox", str(base)], check=True)
    # A layer no other image has: busybox plus one unique file.
    layer = tmp_path / "layer.tar"
    marker = tmp_path / "marker"
    marker.write_text(uuid.uuid4().hex)
    with tarfile.open(base) as src, tarfile.open(layer, "w") as tf:
        for info in src.getmembers():
            tf.addfile(info, src.extractfile(info) if info.isreg() else None)
        tf.add(marker, "marker")
    before = _snapshot_dirs(daemon)
    daemon.docker("import", "-c", "ENV WHICH=one", str(layer), "share:one")
    try:
        after_one = _snapshot_dirs(daemon)
        daemon.docker("import", "-c", "ENV WHICH=two", str(layer), "share:two")
        after_two = _snapshot_dirs(daemon)
        assert len(after_one - before) == 1
        assert after_two == after_one
        ids = {
            out(daemon.docker("image", "inspect", "-f", "{{.Id}}", f"share:{n}"))
            for n in ("one", "two")
        }
        assert len(ids) == 2  # two images, one layer
        layers = {
            out(daemon.docker("image", "inspect", "-f", "{{json .RootFS.Layers}}", f"share:{n}"))
            for n in ("one", "two")
        }
        assert len(layers) == 1
        assert out(daemon.docker("run", "--rm", "share:two", "sh", "-c", "echo $WHICH")) == "two"
        daemon.docker("rmi", "share:one")
        assert _snapshot_dirs(daemon) == after_one  # still used by share:two
    finally:
        daemon.docker("rmi", "share:one", "share:two", check=False)
    assert _snapshot_dirs(daemon) == before


# --- cgroups and confinement ------------------------------------------------


@pytest.mark.skipif(
    not Path("/sys/fs/cgroup/memory").is_dir(), reason="needs the cgroup v1 memory controller"
)
def test_cgroup_holds_the_container_and_goes_with_it(daemon):
    cid = out(daemon.docker("run", "-d", "busybox", "sleep", "100"))
    group = Path("/sys/fs/cgroup/memory") / daemon.cgroup_parent / cid
    try:
        pid = out(daemon.docker("inspect", "-f", "{{.State.Pid}}", cid))
        assert pid in (group / "cgroup.procs").read_text().split()
    finally:
        daemon.docker("rm", "-f", cid)
    assert not group.exists()


def test_etc_files_are_bind_mounts(daemon):
    script = (
        "grep -E ' /etc/(hostname|hosts|resolv.conf) ' /proc/self/mountinfo; "
        "echo ---; cat /etc/hostname"
    )
    result = daemon.docker("run", "--rm", "--hostname", "boxname", "busybox", "sh", "-c", script)
    mounts, hostname = out(result).split("---")
    assert hostname.strip() == "boxname"
    targets = {}
    for line in mounts.strip().splitlines():
        fields = line.split()
        targets[fields[4]] = fields[3]
    assert sorted(targets) == ["/etc/hostname", "/etc/hosts", "/etc/resolv.conf"]
    for target, source in targets.items():
        name = target.removeprefix("/etc/")
        assert re.search(rf"/containers/[0-9a-f]{{64}}/{re.escape(name)}$", source), source


def test_user_nobody(daemon):
    assert out(daemon.docker("run", "--rm", "-u", "nobody", "busybox", "id", "-u")) == "65534"


def test_masked_proc_paths_read_empty(daemon):
    paths = [p for p in ("/proc/kcore", "/proc/keys", "/proc/timer_list") if Path(p).exists()]
    if not paths:
        pytest.skip("the kernel has none of the masked /proc files")
    script = "; ".join(
        f"ls {p} >/dev/null && [ -c {p} ] && cat {p} | head -c1 | wc -c" for p in paths
    )
    result = daemon.docker("run", "--rm", "busybox", "sh", "-c", script)
    assert out(result).split() == ["0"] * len(paths)


def test_sys_is_read_only(daemon):
    result = daemon.docker("run", "--rm", "busybox", "touch", "/sys/x", check=False)
    assert result.returncode == 1
    assert b"Read-only file system" in result.stderr


def test_read_only_rootfs(daemon):
    result = daemon.docker("run", "--rm", "--read-only", "busybox", "touch", "/x", check=False)
    assert result.returncode == 1
    assert b"Read-only file system" in result.stderr
    # Without --read-only the same write works.
    daemon.docker("run", "--rm", "busybox", "touch", "/x")
