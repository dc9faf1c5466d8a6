"""Credential helpers (``credsStore``, ``credHelpers``): a fake
``docker-credential-test`` on PATH keeps the secrets in a JSON file; our CLI
and the docker CLI log in through it and push with what it gives back, and
each can use what the other stored."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.registry_peers import DistributionRegistry, credential_helper, htpasswd_file

pytestmark = pytest.mark.skipif(
    shutil.which("docker-registry") is None or shutil.which("docker") is None,
    reason="docker-registry or the docker CLI missing",
)

DOCKYARD = str(Path(sys.executable).parent / "dockyard")


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    base = tmp_path_factory.mktemp("credreg")
    reg = DistributionRegistry(base, htpasswd=htpasswd_file(base / "htpasswd", "alice", "s3cret"))
    yield reg
    reg.stop()


class Env:
    def __init__(self, daemon, base: Path, config: dict) -> None:
        self.daemon = daemon
        self.cfg = base / "cfg"
        self.cfg.mkdir()
        (self.cfg / "config.json").write_text(json.dumps(config))
        self.store = base / "secrets.json"
        credential_helper(base / "bin", "test", self.store)
        self.env = {
            **daemon.env,
            "DOCKER_CONFIG": str(self.cfg),
            "PATH": f"{base / 'bin'}:{os.environ['PATH']}",
        }

    def run(self, tool: str, *args: str, input: bytes | None = None, check: bool = True):
        binary = DOCKYARD if tool == "dockyard" else "docker"
        return subprocess.run([binary, *args], env=self.env, capture_output=True, input=input,
                              check=check, timeout=120)  # fmt: skip

    def actions(self) -> list[str]:
        log = Path(f"{self.store}.log")
        return log.read_text().split() if log.exists() else []

    def secrets(self) -> dict:
        return json.loads(self.store.read_text()) if self.store.exists() else {}

    def config(self) -> dict:
        return json.loads((self.cfg / "config.json").read_text())


def _login_push_logout(env: Env, login_tool: str, push_tool: str, host: str, name: str) -> None:
    out = env.run(login_tool, "login", host, "-u", "alice", "--password-stdin", input=b"s3cret\n")
    assert b"Login Succeeded" in out.stdout
    assert b"unencrypted" not in out.stderr  # the helper holds the secret
    assert env.secrets()[host] == ["alice", "s3cret"]
    assert env.config()["auths"][host] == {}
    assert "store" in env.actions()
    pushed = env.run(push_tool, "push", name)
    assert b"digest: sha256:" in pushed.stdout, pushed.stderr
    assert "get" in env.actions()
    out = env.run(login_tool, "logout", host)
    assert b"Removing login credentials" in out.stdout
    assert host not in env.secrets()
    assert "erase" in env.actions()
    denied = env.run(push_tool, "push", name, check=False)
    assert denied.returncode == 1


@pytest.mark.parametrize(
    ("login_tool", "push_tool"),
    [
        ("dockyard", "dockyard"),
        ("docker", "docker"),
        ("dockyard", "docker"),
        ("docker", "dockyard"),
    ],
)
def test_creds_store(daemon, registry, tmp_path, login_tool, push_tool):
    env = Env(daemon, tmp_path, {"credsStore": "test"})
    name = f"{registry.host}/alice/{login_tool}-{push_tool}:1"
    daemon.docker("tag", "busybox", name)
    try:
        _login_push_logout(env, login_tool, push_tool, registry.host, name)
    finally:
        daemon.docker("rmi", name)


def test_cred_helpers_per_registry(daemon, registry, tmp_path):
    env = Env(daemon, tmp_path, {"credHelpers": {registry.host: "test"}})
    name = f"{registry.host}/alice/helpers:1"
    daemon.docker("tag", "busybox", name)
    try:
        _login_push_logout(env, "dockyard", "dockyard", registry.host, name)
        # a registry without a helper is kept in config.json
        assert "credsStore" not in env.config()
    finally:
        daemon.docker("rmi", name)


def test_missing_helper_is_reported(daemon, registry, tmp_path):
    env = Env(daemon, tmp_path, {"credsStore": "absent"})
    result = env.run("dockyard", "push", f"{registry.host}/alice/x:1", check=False)
    assert result.returncode == 1
    assert b"docker-credential-absent" in result.stderr
