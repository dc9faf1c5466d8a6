"""``--registry-mirror``: a daemon whose mirrors for docker.io are a dead
port, Debian's ``docker-registry`` seeded with ``library/busybox`` and our
own registry seeded with ``library/other``. ``docker pull busybox`` comes
through the mirrors; a name no mirror has falls back to docker.io, which is
unreachable here, and the error names that host."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path

import pytest

from tests.conftest import DaemonHandle
from tests.e2e.registry_peers import DistributionRegistry, free_port, our_registry

pytestmark = pytest.mark.skipif(
    shutil.which("docker-registry") is None or shutil.which("docker") is None,
    reason="docker-registry or the docker CLI missing",
)


class MirroredDaemon(DaemonHandle):
    def __init__(self, base: Path, tag: str, mirrors: list[str]) -> None:
        super().__init__(base, tag)
        self.mirrors = mirrors

    def daemon_args(self) -> list[str]:
        args = super().daemon_args()
        for mirror in self.mirrors:
            args += ["--registry-mirror", mirror]
        return args


def _seed(daemon, host: str, name: str) -> None:
    """Push the session daemon's busybox as ``host/name``."""
    daemon.docker("tag", "busybox", f"{host}/{name}")
    try:
        daemon.docker("push", f"{host}/{name}")
    finally:
        daemon.docker("rmi", f"{host}/{name}")


@pytest.fixture(scope="module")
def mirrored(daemon, tmp_path_factory):
    if os.geteuid() != 0:
        pytest.skip("needs root")
    dist = DistributionRegistry(tmp_path_factory.mktemp("mirror-dist"))
    ours_root = tmp_path_factory.mktemp("mirror-ours")
    with our_registry(ours_root) as ours:
        try:
            _seed(daemon, dist.host, "library/busybox:latest")
            _seed(daemon, ours, "library/other:1")
            dead = f"http://127.0.0.1:{free_port()}"
            base = Path(tempfile.mkdtemp(prefix="dym-", dir="/tmp"))
            handle = MirroredDaemon(
                base, f"{os.getpid()}m", [dead, f"http://{dist.host}", f"http://{ours}/"]
            )
            try:
                handle.start()
                yield handle
            finally:
                left = handle.teardown()
                assert not left, left
        finally:
            dist.stop()


def test_pull_busybox_through_the_mirror(mirrored):
    started = time.monotonic()
    out = mirrored.docker("pull", "busybox").stdout.decode()
    elapsed = time.monotonic() - started
    assert "Using default tag: latest" in out
    assert "latest: Pulling from library/busybox" in out
    assert "Pull complete" in out
    assert "Status: Downloaded newer image for busybox:latest" in out
    assert "docker.io/library/busybox:latest" in out
    assert elapsed < 10
    digests = mirrored.docker("images", "--digests", "--format", "{{.Repository}} {{.Digest}}")
    assert digests.stdout.decode().split()[0] == "busybox"
    assert mirrored.docker("run", "--rm", "busybox", "echo", "hi").stdout == b"hi\n"
    again = mirrored.docker("pull", "busybox").stdout.decode()
    assert "Status: Image is up to date for busybox:latest" in again


def test_second_mirror_is_tried_when_the_first_lacks_the_image(mirrored):
    """docker-registry answers 404 for library/other: our registry has it."""
    out = mirrored.docker("pull", "other:1").stdout.decode()
    assert "Status: Downloaded newer image for other:1" in out


def test_no_mirror_has_it_falls_back_to_docker_io(mirrored):
    result = mirrored.docker("pull", "nosuchimage:1", check=False)
    assert result.returncode == 1
    err = result.stderr.decode()
    assert "registry-1.docker.io" in err, err
    assert "Traceback" not in err
    # nothing was stored for the failed pull
    listed = mirrored.docker("images", "-q", "nosuchimage").stdout
    assert listed.strip() == b""


def test_push_to_docker_io_never_uses_a_mirror(mirrored):
    empty_tar = b"\0" * 1024  # an empty tar archive: a one-layer image of nothing
    mirrored.docker("import", "-", "someone/busybox:1", input=empty_tar)
    try:
        result = mirrored.docker("push", "someone/busybox:1", check=False)
        assert result.returncode == 1
        assert "registry-1.docker.io" in result.stderr.decode()
    finally:
        mirrored.docker("rmi", "someone/busybox:1")
