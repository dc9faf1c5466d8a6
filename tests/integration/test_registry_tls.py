"""``dockyard registry serve --tls-cert --tls-key``: HTTPS with our own CA,
and skopeo pushing to it with that CA."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time

import pytest
import requests

from tests.e2e.registry_peers import free_port
from tests.integration.registry_helpers import ROOT, write_oci_layout

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl")


def _wait_https(url: str, cert: str) -> None:
    for _ in range(200):
        try:
            requests.get(url, verify=cert, timeout=1)
            return
        except requests.exceptions.ConnectionError:
            time.sleep(0.05)
    raise AssertionError(f"{url} did not come up")


def test_tls(tmp_path):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True,
    )  # fmt: skip
    port = free_port()
    url = f"https://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [sys.executable, "-m", "dockyard.cli.registry", "serve", "--addr", f"127.0.0.1:{port}",
         "--root", str(tmp_path / "root"), "--tls-cert", str(cert), "--tls-key", str(key)],
        cwd=ROOT / "src",
    )  # fmt: skip
    try:
        _wait_https(f"{url}/v2/", str(cert))
        assert requests.get(f"{url}/v2/", verify=str(cert)).status_code == 200
        with pytest.raises(requests.exceptions.SSLError):
            requests.get(f"{url}/v2/")  # not trusted without our CA
        with pytest.raises(requests.exceptions.ConnectionError):
            requests.get(f"http://127.0.0.1:{port}/v2/", timeout=5)
        if shutil.which("skopeo"):
            certs = tmp_path / "certs.d"
            certs.mkdir()
            shutil.copy(cert, certs / "ca.crt")
            write_oci_layout(tmp_path / "img", b"\0" * 1024, tag="1")
            subprocess.run(
                ["skopeo", "--insecure-policy", "copy", "--dest-cert-dir", str(certs),
                 f"oci:{tmp_path / 'img'}:1", f"docker://127.0.0.1:{port}/tls/img:1"],
                check=True, capture_output=True, timeout=60,
            )  # fmt: skip
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(10)
