"""Pull, push and login through our daemon against real registries on
loopback: Debian's ``docker-registry`` (the CNCF Distribution registry),
seeded by our own pushes and by skopeo; the docker CLI, our CLI and the
docker SDK as clients."""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import shutil
import socket
import subprocess
import tarfile
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from tests.integration.registry_helpers import skopeo_push, write_oci_layout

pytestmark = pytest.mark.skipif(
    shutil.which("docker-registry") is None or shutil.which("docker") is None,
    reason="docker-registry or the docker CLI missing",
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Registry:
    def __init__(self, base: Path, *, htpasswd: Path | None = None) -> None:
        self.port = _free_port()
        self.host = f"127.0.0.1:{self.port}"
        config = (
            "version: 0.1\nlog: {level: error}\n"
            f"storage: {{filesystem: {{rootdirectory: {base / 'data'}}}}}\n"
            f"http: {{addr: {self.host}}}\n"
        )
        if htpasswd:
            config += f"auth: {{htpasswd: {{realm: r, path: {htpasswd}}}}}\n"
        (base / "config.yml").write_text(config)
        self.proc = subprocess.Popen(
            ["docker-registry", "serve", str(base / "config.yml")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("docker-registry did not start")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    reg = Registry(tmp_path_factory.mktemp("registry"))
    yield reg
    reg.stop()


@pytest.fixture(scope="module")
def auth_registry(tmp_path_factory):
    import bcrypt

    base = tmp_path_factory.mktemp("authreg")
    hashed = bcrypt.hashpw(b"s3cret", bcrypt.gensalt(rounds=4)).decode()
    (base / "htpasswd").write_text(f"alice:{hashed}\n")
    reg = Registry(base, htpasswd=base / "htpasswd")
    yield reg
    reg.stop()


def _image_id(daemon, ref: str) -> str:
    return daemon.docker("image", "inspect", "-f", "{{.Id}}", ref).stdout.decode().strip()


def _blobs(daemon) -> set[str]:
    return {p.name for p in (daemon.data_root / "content" / "blobs" / "sha256").iterdir()}


def test_push_rmi_pull_round_trip(daemon, registry, tmp_path):
    name = f"{registry.host}/team/busybox:1.0"
    daemon.docker("tag", "busybox", name)
    pushed = daemon.docker("push", name).stdout.decode()
    assert f"The push refers to repository [{registry.host}/team/busybox]" in pushed
    assert ": Pushed" in pushed
    assert "1.0: digest: sha256:" in pushed and "size: " in pushed
    again = daemon.docker("push", name).stdout.decode()
    assert ": Layer already exists" in again
    original = _image_id(daemon, name)
    digest = pushed.split("digest: ")[1].split()[0]

    daemon.docker("rmi", name)
    pulled = daemon.docker("pull", name).stdout.decode()
    assert "1.0: Pulling from team/busybox" in pulled
    assert f"Digest: {digest}" in pulled
    assert f"Status: Downloaded newer image for {name}" in pulled
    assert _image_id(daemon, name) == original
    repo_digests = daemon.docker("image", "inspect", "-f", "{{json .RepoDigests}}", name)
    assert f"{registry.host}/team/busybox@{digest}" in json.loads(repo_digests.stdout)

    second = daemon.docker("pull", name).stdout.decode()
    assert f"Status: Image is up to date for {name}" in second

    by_digest = f"{registry.host}/team/busybox@{digest}"
    out = daemon.docker("pull", by_digest).stdout.decode()
    assert f"Digest: {digest}" in out
    assert _image_id(daemon, by_digest) == original


def test_fresh_pull_downloads_and_runs(daemon, registry):
    """A layer the engine has never seen: downloaded, verified, unpacked, runnable."""
    name = f"{registry.host}/sk/hello:1"
    diff_id = _skopeo_seed(name, {"hello.txt": b"from the registry\n"})
    out = daemon.cli("pull", name).stdout.decode()
    assert "Pulling fs layer" in out and "Download complete" in out and "Pull complete" in out
    info = json.loads(daemon.docker("image", "inspect", name).stdout)[0]
    assert info["RootFS"]["Layers"] == [diff_id]
    upper = Path(info["GraphDriver"]["Data"]["UpperDir"])
    assert (upper / "hello.txt").read_bytes() == b"from the registry\n"
    daemon.docker("rmi", name)


def test_pull_all_tags_and_platform_errors(daemon, registry):
    base = f"{registry.host}/team/multi"
    for tag in ("a", "b"):
        daemon.docker("tag", "busybox", f"{base}:{tag}")
        daemon.docker("push", f"{base}:{tag}")
        daemon.docker("rmi", f"{base}:{tag}")
    out = daemon.docker("pull", "-a", base).stdout.decode()
    assert "a: Pulling from team/multi" in out and "b: Pulling from team/multi" in out
    tags = daemon.docker("images", "--format", "{{.Tag}}", base).stdout.decode().split()
    assert sorted(tags) == ["a", "b"]
    bad = daemon.docker("pull", "--platform", "linux/s390x", f"{base}:a", check=False)
    assert bad.returncode != 0


def test_unknown_tag_and_repo(daemon, registry):
    result = daemon.docker("pull", f"{registry.host}/team/busybox:nope", check=False)
    assert result.returncode == 1
    assert b"manifest unknown" in result.stderr
    assert b"not found" in result.stderr


def test_unreachable_registry_names_the_host(daemon):
    port = _free_port()
    result = daemon.docker("pull", f"127.0.0.1:{port}/x/y:1", check=False)
    assert result.returncode == 1
    err = result.stderr.decode()
    assert f'"http://127.0.0.1:{port}/v2/"' in err and "connection refused" in err
    assert "Traceback" not in err


def test_login_and_authenticated_push_pull(daemon, auth_registry, tmp_path):
    cfg = tmp_path / "cfg"
    name = f"{auth_registry.host}/alice/busybox:1"
    daemon.docker("tag", "busybox", name)
    denied = daemon.docker("push", name, check=False, config=cfg)
    assert denied.returncode == 1
    assert denied.stderr.strip().endswith(b"no basic auth credentials")  # as dockerd

    wrong = daemon.docker(
        "login", auth_registry.host, "-u", "alice", "-p", "x", check=False, config=cfg
    )
    assert wrong.returncode == 1
    assert b"401 Unauthorized" in wrong.stderr

    ok = daemon.docker(
        "login", auth_registry.host, "-u", "alice", "--password-stdin",
        input=b"s3cret\n", config=cfg,
    )  # fmt: skip
    assert b"Login Succeeded" in ok.stdout
    stored = json.loads((cfg / "config.json").read_text())
    assert auth_registry.host in stored["auths"]
    assert b": Pushed" in daemon.docker("push", name, config=cfg).stdout
    daemon.docker("rmi", name)
    assert b"Downloaded newer image" in daemon.docker("pull", name, config=cfg).stdout

    # our CLI reads the same config.json
    ours = subprocess.run(
        [daemon.cli_path if hasattr(daemon, "cli_path") else _dockyard(), "push", name],
        env={**daemon.env, "DOCKER_CONFIG": str(cfg)},
        capture_output=True,
        timeout=60,
    )
    assert ours.returncode == 0, ours.stderr
    assert b"Layer already exists" in ours.stdout
    out = daemon.docker("logout", auth_registry.host, config=cfg).stdout
    assert b"Removing login credentials" in out
    daemon.docker("rmi", name)


def _dockyard() -> str:
    import sys

    return str(Path(sys.executable).parent / "dockyard")


def test_sdk_pull_and_push(daemon, registry):
    docker = pytest.importorskip("docker")
    client = docker.DockerClient(base_url=daemon.host)
    repo = f"{registry.host}/sdk/busybox"
    client.images.get("busybox").tag(repo, "7")
    lines = list(client.images.push(repo, tag="7", stream=True, decode=True))
    assert any("aux" in line and line["aux"]["Tag"] == "7" for line in lines)
    client.images.remove(f"{repo}:7")
    image = client.images.pull(repo, tag="7")
    assert image.id == client.images.get("busybox").id
    client.images.remove(f"{repo}:7")
    client.close()


# -- a registry that lies ---------------------------------------------------------------------
class _CorruptingProxy:
    """Forwards to the registry, flipping one byte of every blob it serves."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.port = _free_port()
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        assert self.ready.wait(10)

    def _run(self) -> None:
        from aiohttp import ClientSession, web

        async def handle(request: web.Request) -> web.Response:
            async with ClientSession(auto_decompress=False) as session:
                headers = {k: v for k, v in request.headers.items() if k.lower() != "host"}
                url = f"http://{self.upstream}{request.path_qs}"
                async with session.request(request.method, url, headers=headers) as resp:
                    body = await resp.read()
                    if "/blobs/" in request.path and request.method == "GET" and body:
                        mid = len(body) // 2
                        body = body[:mid] + bytes([body[mid] ^ 0xFF]) + body[mid + 1 :]
                    keep = {"Content-Type", "Docker-Content-Digest", "WWW-Authenticate"}
                    hdrs = {k: v for k, v in resp.headers.items() if k in keep}
                    return web.Response(status=resp.status, body=body, headers=hdrs)

        async def main() -> None:
            app = web.Application()
            app.router.add_route("*", "/{tail:.*}", handle)
            self.runner = web.AppRunner(app)
            await self.runner.setup()
            await web.TCPSite(self.runner, "127.0.0.1", self.port).start()
            self.ready.set()

        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(main())
        self.loop.run_forever()

    def stop(self) -> None:
        fut = asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop)
        fut.result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


def test_corrupt_blob_fails_cleanly(daemon, registry):
    _skopeo_seed(f"{registry.host}/sk/corrupt:1", {"data.bin": bytes(range(256)) * 512})
    proxy = _CorruptingProxy(registry.host)
    try:
        before = _blobs(daemon)
        result = daemon.docker("pull", f"127.0.0.1:{proxy.port}/sk/corrupt:1", check=False)
        assert result.returncode == 1
        err = result.stderr.decode()
        assert "verification failed" in err, err
        assert _blobs(daemon) == before
        assert not list((daemon.data_root / "content" / "ingest").iterdir())
        images = daemon.docker("images", "-q", f"127.0.0.1:{proxy.port}/sk/corrupt").stdout
        assert images.strip() == b""
    finally:
        proxy.stop()


# -- seeding with skopeo from an OCI layout ----------------------------------------------------
def _skopeo_seed(ref: str, files: dict[str, bytes]) -> str:
    """Pushes a one-layer image of ``files`` to ``ref`` with skopeo; returns the diff ID."""
    if shutil.which("skopeo") is None:
        pytest.skip("skopeo missing")
    import tempfile

    layer = _plain_tar(files)
    with tempfile.TemporaryDirectory() as tmp:
        write_oci_layout(Path(tmp), layer, tag="1")
        skopeo_push(Path(tmp), ref, tag="1")
    return "sha256:" + hashlib.sha256(layer).hexdigest()


def test_registry_digest_matches_what_skopeo_sees(daemon, registry):
    """Our push is readable by another client: skopeo inspects the manifest."""
    if shutil.which("skopeo") is None:
        pytest.skip("skopeo missing")
    name = f"{registry.host}/team/inspected:2"
    daemon.docker("tag", "busybox", name)
    out = daemon.docker("push", name).stdout.decode()
    digest = out.split("digest: ")[1].split()[0]
    seen = subprocess.run(
        ["skopeo", "inspect", "--tls-verify=false", f"docker://{name}"],
        capture_output=True,
        check=True,
        timeout=60,
    )
    assert json.loads(seen.stdout)["Digest"] == digest
    with urllib.request.urlopen(f"http://{registry.host}/v2/team/inspected/tags/list") as resp:
        assert json.loads(resp.read())["tags"] == ["2"]
    daemon.docker("rmi", name)


# -- v2 metadata: cross-repository mounts, and what survives a restart --------------------------
def _plain_tar(files: dict[str, bytes]) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))
    return raw.getvalue()


def test_push_mounts_from_another_repository(daemon, registry):
    """Docker's ``Mounted from``: the second repository gets the layer by a
    cross-repository mount, not by upload (docker-registry supports mount)."""
    first, second = f"{registry.host}/team/mnt-a:1", f"{registry.host}/team/mnt-b:1"
    daemon.docker("import", "-", first, input=_plain_tar({"m": b"mount me " * 1000}))
    daemon.docker("tag", first, second)
    try:
        assert ": Pushed" in daemon.docker("push", first).stdout.decode()
        out = daemon.docker("push", second).stdout.decode()
        assert ": Mounted from team/mnt-a" in out, out
        assert "Pushing" not in out
    finally:
        daemon.docker("rmi", first, second)


def test_pushed_digest_survives_a_restart(daemon, registry):
    """The gzip made at push for a plain-tar layer is remembered in the
    metadata DB: after a restart the next push only HEADs it."""
    name = f"{registry.host}/team/persist:1"
    daemon.docker("import", "-", name, input=_plain_tar({"p": b"persist " * 1000}))
    try:
        first = daemon.docker("push", name).stdout.decode()
        assert ": Pushed" in first
        daemon.stop()
        daemon.start()
        again = daemon.docker("push", name).stdout.decode()
        assert ": Layer already exists" in again, again
        assert "Pushed" not in again and "Pushing" not in again
        assert again.split("digest: ")[1].split()[0] == first.split("digest: ")[1].split()[0]
        # and another repository mounts it rather than compressing again
        other = f"{registry.host}/team/persist-b:1"
        daemon.docker("tag", name, other)
        out = daemon.docker("push", other).stdout.decode()
        assert ": Mounted from team/persist" in out, out
        daemon.docker("rmi", other)
    finally:
        daemon.docker("rmi", name)
