"""The real docker CLI (v28) against our daemon: the foundation's flow."""

from __future__ import annotations

import json
import shutil
import time

import pytest

pytestmark = pytest.mark.skipif(shutil.which("docker") is None, reason="docker CLI missing")


def out(result) -> str:
    return result.stdout.decode().strip()


def test_version_and_info(daemon):
    assert out(daemon.docker("version", "--format", "{{.Server.APIVersion}}")) == "1.50"
    info = json.loads(out(daemon.docker("info", "--format", "{{json .}}")))
    assert info["OSType"] == "linux"
    assert info["Images"] >= 1


def test_run_attached_prints_and_exits_with_status(daemon):
    result = daemon.docker("run", "--rm", "busybox", "echo", "Hello world")
    assert result.stdout == b"Hello world\n"
    result = daemon.docker(
        "run", "--rm", "busybox", "sh", "-c", "echo err >&2; exit 3", check=False
    )
    assert result.returncode == 3
    assert b"err\n" in result.stderr


def test_run_rm_removes_the_container(daemon):
    daemon.docker("run", "--rm", "--name", "gone", "busybox", "true")
    assert daemon.docker("inspect", "gone", check=False).returncode != 0


def test_command_not_found_exits_127(daemon):
    result = daemon.docker("run", "--rm", "busybox", "nonexistent-cmd", check=False)
    assert result.returncode == 127
    assert b"executable file not found" in result.stderr


def test_container_is_isolated(daemon):
    script = "echo $$; hostname; ls /proc | grep -c '^[0-9]'; cat /proc/self/status | grep CapEff"
    result = daemon.docker("run", "--rm", "--hostname", "box", "busybox", "sh", "-c", script)
    lines = out(result).splitlines()
    assert lines[0] == "1"
    assert lines[1] == "box"
    assert int(lines[2]) <= 3  # sh, grep and ls: the host's processes are not visible
    assert lines[3].split()[-1] == "00000000a80425fb"


def test_env_workdir_user_entrypoint(daemon):
    result = daemon.docker(
        "run",
        "--rm",
        "-e",
        "FOO=bar",
        "-w",
        "/tmp",
        "-u",
        "nobody",
        "--entrypoint",
        "sh",
        "busybox",
        "-c",
        "echo $FOO; pwd; id -un",
    )
    assert out(result).splitlines() == ["bar", "/tmp", "nobody"]


def test_detached_lifecycle_ps_logs_stop(daemon):
    cid = out(
        daemon.docker(
            "run",
            "-d",
            "--name",
            "sleeper",
            "-l",
            "team=a",
            "busybox",
            "sh",
            "-c",
            "echo started; exec sleep 100",
        )
    )
    assert len(cid) == 64
    try:
        ps = out(daemon.docker("ps", "--filter", "name=sleeper", "--format", "{{.ID}} {{.Status}}"))
        assert ps.startswith(cid[:12] + " Up ")
        assert out(daemon.docker("ps", "-q", "--filter", "label=team=a")) == cid[:12]
        for _ in range(50):
            if out(daemon.docker("logs", "sleeper")) == "started":
                break
            time.sleep(0.05)
        assert out(daemon.docker("logs", "sleeper")) == "started"
        daemon.docker("stop", "-t", "1", "sleeper")
        state = json.loads(out(daemon.docker("inspect", "--format", "{{json .State}}", "sleeper")))
        assert state["Status"] == "exited"
        assert state["ExitCode"] == 137  # PID 1 ignores SIGTERM: killed after the timeout
        assert state["FinishedAt"] > state["StartedAt"]
        ps = out(daemon.docker("ps", "-a", "--filter", "name=sleeper", "--format", "{{.Status}}"))
        assert ps.startswith("Exited (137) ")
    finally:
        daemon.docker("rm", "-f", "sleeper", check=False)


def test_kill_wait_restart(daemon):
    daemon.docker("run", "-d", "--name", "k1", "busybox", "sleep", "100")
    try:
        daemon.docker("kill", "-s", "KILL", "k1")
        assert out(daemon.docker("wait", "k1")) == "137"
        daemon.docker("restart", "-t", "0", "k1")
        assert out(daemon.docker("inspect", "-f", "{{.State.Running}}", "k1")) == "true"
    finally:
        daemon.docker("rm", "-f", "k1", check=False)


def test_conflicts_and_unknowns(daemon):
    daemon.docker("create", "--name", "dup", "busybox", "true")
    try:
        result = daemon.docker("create", "--name", "dup", "busybox", "true", check=False)
        assert result.returncode != 0
        assert b'The container name "/dup" is already in use' in result.stderr
        result = daemon.docker("inspect", "nosuchthing", check=False)
        assert result.returncode == 1
        assert b"No such object: nosuchthing" in result.stderr
        result = daemon.docker("rm", "nosuchcontainer", check=False)
        assert b"No such container: nosuchcontainer" in result.stderr
        result = daemon.docker("run", "--rm", "Invalid:Ref:x", check=False)
        assert result.returncode == 125
        assert b"invalid reference format" in result.stderr
    finally:
        daemon.docker("rm", "dup", check=False)


def test_rm_running_needs_force(daemon):
    daemon.docker("run", "-d", "--name", "busy", "busybox", "sleep", "100")
    result = daemon.docker("rm", "busy", check=False)
    assert result.returncode == 1
    assert b"You cannot remove a running container" in result.stderr
    daemon.docker("rm", "-f", "busy")
    assert daemon.docker("inspect", "busy", check=False).returncode == 1


def test_writable_layer_survives_stop_start_not_rm(daemon):
    daemon.docker("run", "--name", "w1", "busybox", "sh", "-c", "echo data > /f")
    try:
        daemon.docker("start", "w1")
        daemon.docker("wait", "w1")
        result = daemon.docker("run", "--rm", "busybox", "cat", "/f", check=False)
        assert result.returncode == 1  # other containers do not see it
        daemon.docker("rm", "w1")
        daemon.docker("create", "--name", "w1", "busybox", "cat", "/f")
        result = daemon.docker("start", "-a", "w1", check=False)
        assert result.returncode == 1
    finally:
        daemon.docker("rm", "-f", "w1", check=False)


def test_rename_and_prune(daemon):
    daemon.docker("create", "--name", "before", "busybox", "true")
    daemon.docker("rename", "before", "after")
    assert out(daemon.docker("inspect", "-f", "{{.Name}}", "after")) == "/after"
    daemon.docker("container", "prune", "-f", "--filter", "label=none")
    deleted = out(daemon.docker("container", "prune", "-f"))
    assert "Deleted Containers:" in deleted
    assert daemon.docker("inspect", "after", check=False).returncode == 1


def test_logs_tail_timestamps_follow(daemon):
    daemon.docker(
        "run", "--name", "lg", "busybox", "sh", "-c", "for i in 1 2 3 4; do echo $i; done"
    )
    try:
        assert out(daemon.docker("logs", "--tail", "2", "lg")) == "3\n4"
        stamped = out(daemon.docker("logs", "-t", "lg")).splitlines()
        assert stamped[0].endswith(" 1") and stamped[0][:4].isdigit()
        assert out(daemon.docker("logs", "-f", "lg")) == "1\n2\n3\n4"
    finally:
        daemon.docker("rm", "lg", check=False)


def test_import_tag_rmi(daemon, tmp_path):
    import subprocess
    import sys

    tar = tmp_path / "bb.tar"
    subprocess.run([sys.executable, "-m", "dockyard.image.busybox", str(tar)], check=True)
    daemon.docker("import", "-c", "ENV A=1", "-c", 'CMD ["env"]', str(tar), "mine:1")
    assert "A=1" in out(daemon.docker("run", "--rm", "mine:1"))
    daemon.docker("tag", "mine:1", "mine:2")
    images = out(daemon.docker("images", "mine", "--format", "{{.Repository}}:{{.Tag}}"))
    assert sorted(images.splitlines()) == ["mine:1", "mine:2"]
    assert b"Untagged: mine:2" in daemon.docker("rmi", "mine:2").stdout
    result = daemon.docker("rmi", "mine:1").stdout
    assert b"Deleted: sha256:" in result
    assert daemon.docker("image", "inspect", "mine:1", check=False).returncode == 1


def test_restart_policy_restarts_until_stopped(daemon):
    daemon.docker(
        "run",
        "-d",
        "--name",
        "pol",
        "--restart",
        "always",
        "busybox",
        "sh",
        "-c",
        "sleep 0.2; exit 1",
    )
    try:
        deadline = time.monotonic() + 10
        while int(out(daemon.docker("inspect", "-f", "{{.RestartCount}}", "pol"))) < 2:
            assert time.monotonic() < deadline, "the policy did not restart the container"
            time.sleep(0.1)
        daemon.docker("stop", "-t", "1", "pol")
        count = out(daemon.docker("inspect", "-f", "{{.RestartCount}}", "pol"))
        time.sleep(1.5)
        assert out(daemon.docker("inspect", "-f", "{{.RestartCount}}", "pol")) == count
        assert out(daemon.docker("inspect", "-f", "{{.State.Running}}", "pol")) == "false"
    finally:
        daemon.docker("rm", "-f", "pol", check=False)
