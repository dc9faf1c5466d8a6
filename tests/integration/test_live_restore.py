"""Stop the daemon (SIGTERM or SIGKILL) and start it again: containers,
images, logs and exit codes are all still there, and running containers keep
running and can be stopped, logged and waited on."""

from __future__ import annotations

import os
import signal
import tempfile
import time
from pathlib import Path

import pytest

from tests.conftest import DaemonHandle


@pytest.fixture
def own_daemon():
    base = Path(tempfile.mkdtemp(prefix="dy-lr-", dir="/tmp"))
    handle = DaemonHandle(base, f"lr{os.getpid()}")
    handle.start()
    handle.import_busybox()
    try:
        yield handle
    finally:
        if handle.proc is None:
            handle.start()
        left = handle.teardown()
        assert not left


def _out(result) -> str:
    return result.stdout.decode().strip()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_containers_survive_daemon_restart(own_daemon, sig):
    d = own_daemon
    d.cli(
        "run",
        "-d",
        "--name",
        "live",
        "busybox",
        "sh",
        "-c",
        "echo one; trap 'echo bye; exit 5' TERM; while true; do sleep 0.1; done",
    )
    d.cli("run", "--name", "done", "busybox", "sh", "-c", "echo finished; exit 4", check=False)
    pid = int(_out(d.cli("inspect", "-f", "{{.State.Pid}}", "live")))
    d.stop(sig)
    os.kill(pid, 0)  # still running without the daemon
    d.start()
    assert _out(d.cli("inspect", "-f", "{{.State.Status}}", "live")) == "running"
    assert _out(d.cli("inspect", "-f", "{{.State.ExitCode}}", "done")) == "4"
    assert _out(d.cli("logs", "done")) == "finished"
    assert _out(d.cli("logs", "live")) == "one"
    d.cli("stop", "live")
    assert _out(d.cli("wait", "live")) == "5"
    assert _out(d.cli("logs", "live")) == "one\nbye"


def test_container_exiting_while_daemon_is_down(own_daemon):
    d = own_daemon
    d.cli("run", "-d", "--name", "short", "busybox", "sh", "-c", "sleep 1; exit 9")
    d.stop(signal.SIGKILL)
    time.sleep(1.5)
    d.start()
    assert _out(d.cli("wait", "short")) == "9"
    assert _out(d.cli("inspect", "-f", "{{.State.Status}}", "short")) == "exited"


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_networking_survives_daemon_restart(own_daemon):
    import urllib.request

    d = own_daemon
    net = f"lrnet{os.getpid()}"
    d.cli("network", "create", "--subnet", f"10.198.{os.getpid() % 250}.0/24", net)
    port = _free_port()
    d.cli("run", "-d", "--name", "srv", "--net", net, "-p", f"127.0.0.1:{port}:80", "busybox",
          "sh", "-c", "mkdir /w; echo up > /w/index.html; httpd -f -p 80 -h /w")  # fmt: skip
    d.cli("run", "-d", "--name", "peer", "--net", net, "busybox", "sleep", "100")

    def check() -> None:
        deadline = time.monotonic() + 5
        while True:
            try:
                body = urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2).read()
                break
            except OSError:
                assert time.monotonic() < deadline
                time.sleep(0.1)
        assert body == b"up\n"
        lookup = d.cli("run", "--rm", "--net", net, "busybox", "nslookup", "srv", "127.0.0.11")
        assert b"Address" in lookup.stdout

    check()
    d.stop(signal.SIGKILL)
    d.start()
    check()
    d.cli("rm", "-f", "srv", "peer")
    d.cli("network", "rm", net)
