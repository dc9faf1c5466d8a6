"""Our registry errors in dockerd's words: the same docker CLI command
against our daemon and against the reference dockerd (Debian's docker.io
20.10), both talking to the same ``docker-registry``, must print the same
error. Skipped when dockerd is not installed."""

from __future__ import annotations

import shutil

import pytest

from tests.e2e.registry_peers import DistributionRegistry, free_port, htpasswd_file

pytestmark = pytest.mark.skipif(
    shutil.which("dockerd") is None
    or shutil.which("docker-registry") is None
    or shutil.which("docker") is None,
    reason="dockerd, docker-registry or the docker CLI missing",
)


@pytest.fixture(scope="module")
def registries(daemon, tmp_path_factory):
    base = tmp_path_factory.mktemp("errreg")
    open_reg = DistributionRegistry(base / "open")
    locked = DistributionRegistry(
        base / "locked", htpasswd=htpasswd_file(base / "htpasswd", "alice", "s3cret")
    )
    known = f"{open_reg.host}/team/known:1"
    daemon.docker("tag", "busybox", known)
    daemon.docker("push", known)
    daemon.docker("rmi", known)
    try:
        yield open_reg, locked
    finally:
        open_reg.stop()
        locked.stop()


def _both(daemon, dockerd, *args: str) -> tuple[str, str]:
    ours = daemon.docker(*args, check=False)
    theirs = dockerd.docker(*args, check=False)
    assert ours.returncode == theirs.returncode, (ours, theirs)
    return ours.stderr.decode().strip(), theirs.stderr.decode().strip()


def test_unknown_repository(daemon, dockerd, registries):
    reg, _ = registries
    ours, theirs = _both(daemon, dockerd, "pull", f"{reg.host}/nope/nothing:1")
    assert ours == theirs


def test_unknown_tag(daemon, dockerd, registries):
    reg, _ = registries
    ours, theirs = _both(daemon, dockerd, "pull", f"{reg.host}/team/known:nope")
    assert ours == theirs


def test_unauthorized_pull(daemon, dockerd, registries):
    _, locked = registries
    ours, theirs = _both(daemon, dockerd, "pull", f"{locked.host}/alice/x:1")
    assert ours == theirs


def test_unauthorized_push(daemon, dockerd, registries):
    _, locked = registries
    name = f"{locked.host}/alice/busybox:1"
    daemon.docker("tag", "busybox", name)
    dockerd.docker("tag", "busybox", name)
    try:
        ours, theirs = _both(daemon, dockerd, "push", name)
        # the progress lines before the error differ in layer IDs only
        assert ours.splitlines()[-1] == theirs.splitlines()[-1]
    finally:
        daemon.docker("rmi", name)
        dockerd.docker("rmi", name)


def test_wrong_password(daemon, dockerd, registries, tmp_path):
    _, locked = registries
    ours, theirs = _both(daemon, dockerd, "login", locked.host, "-u", "alice", "-p", "wrong")
    assert ours == theirs


def test_unreachable_registry(daemon, dockerd):
    host = f"127.0.0.1:{free_port()}"
    ours, theirs = _both(daemon, dockerd, "pull", f"{host}/x/y:1")
    assert ours == theirs
