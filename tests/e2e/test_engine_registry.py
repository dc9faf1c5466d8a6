"""The engine against our own registry (``dockyard registry serve``): the
docker CLI through our daemon pushing, pulling and logging in with htpasswd,
with bearer tokens from the registry's ``/token`` endpoint, and over TLS with
a CA in the daemon's ``certs.d``; containerd's ``ctr`` pulling what the
engine pushed."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import pytest

from tests.e2e.registry_peers import htpasswd_file, make_pki, our_registry, stop

pytestmark = pytest.mark.skipif(shutil.which("docker") is None, reason="docker CLI missing")


def _round_trip(daemon, cfg: Path, host: str, repo: str) -> str:
    """Log in, push, rmi, pull; returns the pushed digest."""
    name = f"{host}/{repo}"
    daemon.docker("tag", "busybox", name)
    try:
        denied = daemon.docker("push", name, check=False, config=cfg)
        assert denied.returncode == 1
        assert b"unauthorized" in denied.stderr or b"no basic auth" in denied.stderr, denied.stderr

        wrong = daemon.docker("login", host, "-u", "alice", "-p", "nope", check=False, config=cfg)
        assert wrong.returncode == 1, wrong.stdout
        assert b"unauthorized" in wrong.stderr.lower() or b"401" in wrong.stderr

        ok = daemon.docker("login", host, "-u", "alice", "--password-stdin",
                           input=b"s3cret\n", config=cfg)  # fmt: skip
        assert b"Login Succeeded" in ok.stdout
        pushed = daemon.docker("push", name, config=cfg).stdout.decode()
        assert ": Pushed" in pushed or ": Layer already exists" in pushed, pushed
        digest = pushed.split("digest: ")[1].split()[0]
        again = daemon.docker("push", name, config=cfg).stdout.decode()
        assert ": Layer already exists" in again
        image_id = daemon.docker("image", "inspect", "-f", "{{.Id}}", name).stdout.strip()
        daemon.docker("rmi", name)
        pulled = daemon.docker("pull", name, config=cfg).stdout.decode()
        assert f"Digest: {digest}" in pulled
        assert f"Status: Downloaded newer image for {name}" in pulled
        assert daemon.docker("image", "inspect", "-f", "{{.Id}}", name).stdout.strip() == image_id
        out = daemon.docker("logout", host, config=cfg).stdout
        assert b"Removing login credentials" in out
        return digest
    finally:
        daemon.docker("rmi", name, check=False)


def test_htpasswd(daemon, tmp_path):
    htpasswd = htpasswd_file(tmp_path / "htpasswd", "alice", "s3cret")
    with our_registry(tmp_path / "root", "--htpasswd", str(htpasswd)) as host:
        _round_trip(daemon, tmp_path / "cfg", host, "team/busybox:1.0")


def test_token_auth(daemon, tmp_path):
    htpasswd = htpasswd_file(tmp_path / "htpasswd", "alice", "s3cret")
    with our_registry(tmp_path / "root", "--auth", "token", "--htpasswd", str(htpasswd)) as host:
        _round_trip(daemon, tmp_path / "cfg", host, "team/tokened:2")


def test_tls_with_ca_in_certs_dir(daemon, tmp_path):
    if shutil.which("openssl") is None:
        pytest.skip("openssl missing")
    pki = make_pki(tmp_path / "pki", "127.0.0.1")
    htpasswd = htpasswd_file(tmp_path / "htpasswd", "alice", "s3cret")
    extra = ("--tls-cert", str(pki.cert), "--tls-key", str(pki.key), "--htpasswd", str(htpasswd))
    with our_registry(tmp_path / "root", *extra) as host:
        certs = daemon.base / "certs.d" / host
        certs.mkdir(parents=True)
        shutil.copy(pki.ca, certs / "ca.crt")
        try:
            _round_trip(daemon, tmp_path / "cfg", host, "tls/busybox:3")
        finally:
            shutil.rmtree(certs)


# -- containerd's ctr ----------------------------------------------------------------------
def _containerd(base: Path) -> tuple[subprocess.Popen, Path]:
    sock = base / "containerd.sock"
    (base / "config.toml").write_text(
        f"""version = 2
root = "{base / "root"}"
state = "{base / "state"}"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "{sock}"
[ttrpc]
  address = "{sock}.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""
[plugins."io.containerd.internal.v1.opt"]
  path = "{base / "opt"}"
"""
    )
    with open(base / "containerd.log", "wb") as log:
        proc = subprocess.Popen(
            ["containerd", "--config", str(base / "config.toml")],
            stdout=subprocess.DEVNULL,
            stderr=log,
            start_new_session=True,
        )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if sock.exists():
            ok = subprocess.run(["ctr", "-a", str(sock), "version"], capture_output=True)
            if ok.returncode == 0:
                return proc, sock
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    stop(proc)
    raise RuntimeError((base / "containerd.log").read_text()[-3000:])


def test_ctr_pulls_what_the_engine_pushed(daemon, tmp_path):
    if shutil.which("containerd") is None or shutil.which("ctr") is None:
        pytest.skip("containerd missing")
    with our_registry(tmp_path / "root") as host:
        name = f"{host}/team/busybox:1.0"
        daemon.docker("tag", "busybox", name)
        try:
            pushed = daemon.docker("push", name).stdout.decode()
            digest = pushed.split("digest: ")[1].split()[0]
        finally:
            daemon.docker("rmi", name, check=False)
        base = tmp_path / "ctrd"
        base.mkdir()
        proc, sock = _containerd(base)
        try:
            ctr = ["ctr", "-a", str(sock), "-n", "dytest"]
            subprocess.run([*ctr, "images", "pull", "--plain-http", name], check=True,
                           capture_output=True, timeout=120)  # fmt: skip
            listed = subprocess.run([*ctr, "images", "ls"], check=True, capture_output=True,
                                    text=True).stdout  # fmt: skip
            line = next(ln for ln in listed.splitlines() if ln.startswith(name))
            assert digest in line
            check = subprocess.run([*ctr, "images", "check"], check=True, capture_output=True,
                                   text=True).stdout  # fmt: skip
            assert "complete" in check
            # the unpacked rootfs holds busybox
            snaps = subprocess.run([*ctr, "snapshots", "ls"], check=True, capture_output=True,
                                   text=True).stdout  # fmt: skip
            assert "Committed" in snaps
            subprocess.run([*ctr, "images", "rm", name], capture_output=True)
        finally:
            stop(proc)
            mounts = Path("/proc/self/mountinfo").read_text()
            for line in mounts.splitlines():
                if str(base) in line:
                    subprocess.run(["umount", "-l", line.split()[4]], capture_output=True)
            shutil.rmtree(base, ignore_errors=True)
