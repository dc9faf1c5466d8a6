"""The daemon on tcp:// with mutual TLS, driven by the docker CLI."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from tests.conftest import _bin

pytestmark = pytest.mark.skipif(
    shutil.which("openssl") is None or shutil.which("docker") is None,
    reason="needs openssl and the docker CLI",
)


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def _make_certs(d: Path) -> None:
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=ca",
             "-keyout", "ca-key.pem", "-out", "ca.pem", cwd=d)  # fmt: skip
    (d / "ext.cnf").write_text("subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n")
    (d / "client.cnf").write_text("extendedKeyUsage=clientAuth\n")
    for name, ext in (("server", "ext.cnf"), ("client", "client.cnf")):
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}",
                 "-keyout", f"{name}-key.pem", "-out", f"{name}.csr", cwd=d)  # fmt: skip
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca-key.pem",
                 "-CAcreateserial", "-days", "2", "-extfile", ext, "-out", f"{name}.pem",
                 cwd=d)  # fmt: skip
    # the docker CLI reads these names from DOCKER_CERT_PATH
    shutil.copy(d / "client.pem", d / "cert.pem")
    shutil.copy(d / "client-key.pem", d / "key.pem")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_mutual_tls(tmp_path):
    base = Path(tempfile.mkdtemp(prefix="dy-tls-", dir="/tmp"))
    certs = tmp_path / "certs"
    certs.mkdir()
    _make_certs(certs)
    port = _free_port()
    host = f"tcp://127.0.0.1:{port}"
    daemon = [_bin("dockyardd"), "-H", host, "--data-root", str(base / "data"),
              "--exec-root", str(base / "run"), "--config-file", str(base / "none.json"),
              "--bridge", f"dyt{port}", "--bip", f"10.249.{port % 250}.1/24"]  # fmt: skip
    proc = subprocess.Popen(
        [*daemon,
         "--tlsverify", "--tlscacert", str(certs / "ca.pem"),
         "--tlscert", str(certs / "server.pem"), "--tlskey", str(certs / "server-key.pem")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    env = {**os.environ, "DOCKER_HOST": host, "DOCKER_CONFIG": str(base / "cfg")}
    try:
        trusted = {**env, "DOCKER_TLS_VERIFY": "1", "DOCKER_CERT_PATH": str(certs)}
        for _ in range(100):
            version = subprocess.run(
                ["docker", "version", "--format", "{{.Server.APIVersion}}"],
                env=trusted,
                capture_output=True,
                text=True,
            )
            if version.returncode == 0:
                break
            time.sleep(0.1)
        assert version.stdout.strip() == "1.50", version.stderr
        # Without a client certificate the handshake is refused.
        (certs / "cert.pem").unlink()
        (certs / "key.pem").unlink()
        anonymous = {**env, "DOCKER_TLS_VERIFY": "", "DOCKER_CERT_PATH": ""}
        refused = subprocess.run(
            ["docker", "--tls", "--tlscacert", str(certs / "ca.pem"), "version"],
            env=anonymous,
            capture_output=True,
            text=True,
        )
        assert refused.returncode != 0
        assert "Server:" not in refused.stdout
    finally:
        proc.terminate()
        proc.wait(20)
        subprocess.run([*daemon, "--cleanup"], capture_output=True, timeout=60)
        shutil.rmtree(base, ignore_errors=True)
