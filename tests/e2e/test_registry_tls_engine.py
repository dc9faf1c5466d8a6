"""TLS registries for the engine: Debian's ``docker-registry`` with a
certificate from a throwaway CA, on an address outside 127.0.0.0/8 (loopback
registries are insecure by default, as in dockerd, so their certificates are
not checked). The daemon trusts the CA through ``<certs.d>/<host:port>/ca.crt``
and presents ``client.cert``/``client.key`` from there to a registry that
requires client certificates."""

from __future__ import annotations

import shutil

import pytest

from tests.e2e.registry_peers import DistributionRegistry, make_pki, non_loopback_ip

pytestmark = pytest.mark.skipif(
    shutil.which("docker-registry") is None
    or shutil.which("docker") is None
    or shutil.which("openssl") is None,
    reason="docker-registry, openssl or the docker CLI missing",
)


@pytest.fixture(scope="module")
def tls(tmp_path_factory):
    ip = non_loopback_ip()
    if not ip:
        pytest.skip("no address outside 127.0.0.0/8")
    base = tmp_path_factory.mktemp("tlsreg")
    pki = make_pki(base / "pki", ip)
    plain = DistributionRegistry(base / "server", ip=ip, pki=pki)
    mutual = DistributionRegistry(base / "mutual", ip=ip, pki=pki, client_cas=True)
    try:
        yield pki, plain, mutual
    finally:
        plain.stop()
        mutual.stop()


def _certs(daemon, host: str):
    path = daemon.base / "certs.d" / host
    path.mkdir(parents=True, exist_ok=True)
    return path


def test_untrusted_certificate_is_refused_in_dockers_words(daemon, tls):
    _, plain, _ = tls
    result = daemon.docker("pull", f"{plain.host}/team/none:1", check=False)
    assert result.returncode == 1
    expected = (
        f'Get "https://{plain.host}/v2/": tls: failed to verify certificate: '
        "x509: certificate signed by unknown authority"
    )
    assert expected in result.stderr.decode(), result.stderr


def test_ca_in_certs_dir_is_trusted(daemon, tls):
    pki, plain, _ = tls
    certs = _certs(daemon, plain.host)
    shutil.copy(pki.ca, certs / "ca.crt")
    name = f"{plain.host}/team/busybox:tls"
    daemon.docker("tag", "busybox", name)
    try:
        pushed = daemon.docker("push", name).stdout.decode()
        digest = pushed.split("digest: ")[1].split()[0]
        daemon.docker("rmi", name)
        pulled = daemon.docker("pull", name).stdout.decode()
        assert f"Digest: {digest}" in pulled
    finally:
        daemon.docker("rmi", name, check=False)
        shutil.rmtree(certs)


def test_client_certificate(daemon, tls):
    pki, _, mutual = tls
    certs = _certs(daemon, mutual.host)
    shutil.copy(pki.ca, certs / "ca.crt")
    name = f"{mutual.host}/team/busybox:mtls"
    daemon.docker("tag", "busybox", name)
    try:
        refused = daemon.docker("push", name, check=False)
        assert refused.returncode == 1
        # Go's server alerts "bad certificate" (TLS 1.2) or "certificate required" (1.3)
        err = refused.stderr.decode()
        assert f'"https://{mutual.host}/v2/": remote error: tls: ' in err, err
        shutil.copy(pki.client_cert, certs / "client.cert")
        shutil.copy(pki.client_key, certs / "client.key")
        assert ": Pushed" in daemon.docker("push", name).stdout.decode()
        daemon.docker("rmi", name)
        assert b"Downloaded newer image" in daemon.docker("pull", name).stdout
    finally:
        daemon.docker("rmi", name, check=False)
        shutil.rmtree(certs)
