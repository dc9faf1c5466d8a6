"""Bad input over raw HTTP on the daemon's socket: Docker's status and
`{"message": ...}` body, and nothing changed in the roots, the tables or the
mount table. Hostile import tarballs must not write outside the image."""

from __future__ import annotations

import http.client
import io
import json
import os
import socket
import subprocess
import sys
import tarfile
import uuid
from pathlib import Path

import pytest

API = "/v1.50"


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float = 30) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self._path)
        self.sock = sock


def call(
    daemon,
    method: str,
    path: str,
    body: bytes | None = None,
    content_type: str | None = "application/json",
) -> tuple[int, bytes]:
    conn = _UnixConnection(str(daemon.socket))
    try:
        headers = {"Content-Type": content_type} if content_type and body is not None else {}
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def message(body: bytes) -> str:
    return json.loads(body)["message"]


def _files(root: Path) -> set[str]:
    if not root.exists():
        return set()
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.name != "metadata.json"}


def _entries(directory: Path) -> list[str]:
    if not directory.is_dir():
        return []
    return sorted(p.name for p in directory.iterdir() if p.name != "metadata.json")


def world(daemon) -> dict[str, object]:
    """Everything a rejected request must leave as it was."""
    _, containers = call(daemon, "GET", f"{API}/containers/json?all=1")
    _, images = call(daemon, "GET", f"{API}/images/json?all=1")
    snapshots = daemon.data_root / "snapshots"
    mounts = [
        line.split()[4]
        for line in Path("/proc/self/mountinfo").read_text().splitlines()
        if str(daemon.base) in line
    ]
    return {
        "containers": sorted(c["Id"] for c in json.loads(containers)),
        "images": sorted(i["Id"] for i in json.loads(images)),
        "snapshots": _entries(snapshots) + _entries(snapshots / "snapshots"),
        "content": sorted(_files(daemon.data_root / "content")),
        "mounts": sorted(mounts),
    }


@pytest.fixture
def unchanged(daemon):
    """Asserts at teardown that the test left the daemon's world as it found it."""
    before = world(daemon)
    yield before
    assert world(daemon) == before


# --- requests -------------------------------------------------------------


def test_malformed_json_on_create(daemon, unchanged):
    status, body = call(daemon, "POST", f"{API}/containers/create", b'{"Image": "busybox",')
    assert status == 400
    assert message(body).startswith("invalid JSON: ")


def test_empty_body_and_non_object_on_create(daemon, unchanged):
    status, body = call(daemon, "POST", f"{API}/containers/create", b"")
    assert status == 400
    assert message(body).startswith("invalid JSON")
    status, body = call(daemon, "POST", f"{API}/containers/create", b'["busybox"]')
    assert status == 400
    assert message(body).startswith("invalid JSON")


def test_create_with_wrong_content_type(daemon, unchanged):
    status, body = call(
        daemon, "POST", f"{API}/containers/create", b'{"Image": "busybox"}', "text/plain"
    )
    try:
        assert status == 400
        assert message(body) == (
            "unsupported Content-Type header (text/plain): must be 'application/json'"
        )
    finally:
        if status == 201:
            call(daemon, "DELETE", f"{API}/containers/{json.loads(body)['Id']}?force=1")


def test_api_version_too_new(daemon, unchanged):
    status, body = call(daemon, "GET", "/v9.99/version")
    assert status == 400
    assert message(body) == (
        "client version 9.99 is too new. Maximum supported API version is 1.50"
    )


def test_api_version_too_old(daemon, unchanged):
    status, body = call(daemon, "GET", "/v1.12/version")
    assert status == 400
    assert message(body).startswith(
        "client version 1.12 is too old. Minimum supported API version is 1.24"
    )


def test_unknown_container(daemon, unchanged):
    status, body = call(daemon, "GET", f"{API}/containers/x/json")
    assert status == 404
    assert message(body) == "No such container: x"


def test_unknown_image_on_create(daemon, unchanged):
    status, body = call(daemon, "POST", f"{API}/containers/create", b'{"Image": "nosuch"}')
    assert status == 404
    assert message(body) == "No such image: nosuch:latest"


def test_tag_with_invalid_reference(daemon, unchanged):
    status, body = call(daemon, "POST", f"{API}/images/busybox/tag?repo=UPPER")
    assert status == 400
    assert message(body) == (
        "invalid reference format: repository name (library/UPPER) must be lowercase"
    )


def test_tag_with_invalid_reference_checked_before_source(daemon, unchanged):
    status, body = call(daemon, "POST", f"{API}/images/x/tag?repo=UPPER")
    assert status == 400
    assert message(body).startswith("invalid reference format")


def test_duplicate_container_name(daemon):
    status, body = call(
        daemon, "POST", f"{API}/containers/create?name=dupname", b'{"Image": "busybox"}'
    )
    assert status == 201
    first = json.loads(body)["Id"]
    try:
        before = world(daemon)
        status, body = call(
            daemon, "POST", f"{API}/containers/create?name=dupname", b'{"Image": "busybox"}'
        )
        assert status == 409
        assert message(body) == (
            f'Conflict. The container name "/dupname" is already in use by container '
            f'"{first}". You have to remove (or rename) that container to be able to '
            "reuse that name."
        )
        assert world(daemon) == before
    finally:
        call(daemon, "DELETE", f"{API}/containers/{first}?force=1")


@pytest.mark.parametrize("name", ["a/b", "-lead", "sp ace", "ü"])
def test_invalid_container_name(daemon, unchanged, name):
    quoted = name.replace("/", "%2F").replace(" ", "%20").replace("ü", "%C3%BC")
    status, body = call(
        daemon, "POST", f"{API}/containers/create?name={quoted}", b'{"Image": "busybox"}'
    )
    assert status == 400
    assert message(body) == (
        f"Invalid container name ({name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
    )


def test_state_conflicts(daemon):
    status, body = call(
        daemon,
        "POST",
        f"{API}/containers/create?name=states",
        b'{"Image": "busybox", "Cmd": ["sleep", "100"]}',
    )
    assert status == 201
    cid = json.loads(body)["Id"]
    try:
        status, body = call(daemon, "POST", f"{API}/containers/states/kill")
        assert status == 409
        assert message(body).startswith("Cannot kill container: states: ")
        assert message(body).lower().endswith(f"container {cid} is not running")
        status, _ = call(daemon, "POST", f"{API}/containers/states/stop")
        assert status == 304
        assert call(daemon, "POST", f"{API}/containers/states/start")[0] == 204
        status, body = call(daemon, "POST", f"{API}/containers/states/start")
        assert status == 304
        assert body == b""
        assert call(daemon, "POST", f"{API}/containers/states/stop?t=0")[0] == 204
        status, body = call(daemon, "POST", f"{API}/containers/states/stop")
        assert status == 304
        assert body == b""
        assert call(daemon, "POST", f"{API}/containers/states/kill")[0] == 409
    finally:
        call(daemon, "DELETE", f"{API}/containers/{cid}?force=1")


# --- hostile imports --------------------------------------------------------


def _member(tf: tarfile.TarFile, name: str, data: bytes = b"x\n", **attrs) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o644
    for key, value in attrs.items():
        setattr(info, key, value)
    if info.isreg():
        tf.addfile(info, io.BytesIO(data))
    else:
        info.size = 0
        tf.addfile(info)


@pytest.fixture(scope="module")
def busybox_tar(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("bb") / "busybox.tar"
    subprocess.run([sys.executable, "-m", "dockyard.image.busybox", str(path)], check=True)
    return path


def _on_busybox(busybox_tar: Path, dest: Path, add) -> bytes:
    """The busybox rootfs followed by hostile members, so the result can run."""
    with tarfile.open(busybox_tar) as src, tarfile.open(dest, "w", format=tarfile.GNU_FORMAT) as tf:
        for info in src.getmembers():
            tf.addfile(info, src.extractfile(info) if info.isreg() else None)
        add(tf)
    return dest.read_bytes()


def import_tar(daemon, data: bytes, repo: str = "hostile", tag: str = "1") -> tuple[int, bytes]:
    return call(
        daemon,
        "POST",
        f"{API}/images/create?fromSrc=-&repo={repo}&tag={tag}",
        data,
        "application/x-tar",
    )


def assert_import_failed(status: int, body: bytes) -> None:
    """dockerd answers either an error status or, once the progress stream
    has started, 200 with an error line in the JSON stream."""
    if status >= 400:
        assert message(body)
        return
    assert status == 200
    lines = [json.loads(line) for line in body.splitlines() if line.strip()]
    assert any("error" in line or "errorDetail" in line for line in lines), lines


def _not_on_host(name: str) -> None:
    for where in (Path("/"), Path("/tmp"), Path("/etc"), Path.cwd()):
        assert not (where / name).exists(), f"{where / name} was written on the host"


def test_import_truncated_gzip(daemon, unchanged, tmp_path):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        _member(tf, "big", os.urandom(300_000))
    data = buf.getvalue()
    assert_import_failed(*import_tar(daemon, data[: len(data) // 2]))


def test_import_garbage(daemon, unchanged):
    assert_import_failed(*import_tar(daemon, os.urandom(8192)))


def test_import_dotdot_member(daemon, unchanged, tmp_path):
    name = f"dy-escape-{uuid.uuid4().hex[:8]}"
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tf:
        _member(tf, "ok")
        _member(tf, f"../{name}")
        _member(tf, "../" * 12 + f"tmp/{name}")
    assert_import_failed(*import_tar(daemon, buf.getvalue()))
    _not_on_host(name)
    assert not list(daemon.base.rglob(name))


def test_import_absolute_member_lands_inside(daemon, tmp_path, busybox_tar):
    name = f"dy-evil-{uuid.uuid4().hex[:8]}"
    data = _on_busybox(
        busybox_tar, tmp_path / "abs.tar", lambda tf: _member(tf, f"/etc/{name}", b"evil\n")
    )
    before = world(daemon)
    status, body = import_tar(daemon, data, "absolute")
    try:
        assert status == 200, body
        result = daemon.docker("run", "--rm", "absolute:1", "cat", f"/etc/{name}")
        assert result.stdout == b"evil\n"
        _not_on_host(name)
    finally:
        daemon.docker("rmi", "absolute:1", check=False)
    assert world(daemon) == before


def test_import_symlink_then_member_through_it(daemon, tmp_path, busybox_tar):
    name = f"dy-pwned-{uuid.uuid4().hex[:8]}"

    def add(tf: tarfile.TarFile) -> None:
        _member(tf, "lnk", type=tarfile.SYMTYPE, linkname="/tmp")
        _member(tf, f"lnk/{name}", b"pwned\n")

    data = _on_busybox(busybox_tar, tmp_path / "sym.tar", add)
    before = world(daemon)
    status, body = import_tar(daemon, data, "symlinked")
    try:
        if status == 200 and b"error" not in body:
            # As dockerd: the link is resolved inside the layer's root.
            result = daemon.docker("run", "--rm", "symlinked:1", "cat", f"/tmp/{name}")
            assert result.stdout == b"pwned\n"
        else:
            assert_import_failed(status, body)
        _not_on_host(name)
    finally:
        daemon.docker("rmi", "symlinked:1", check=False)
    assert world(daemon) == before


@pytest.mark.parametrize("target", ["/etc/passwd", "../../../../../../etc/passwd"])
def test_import_hardlink_outside(daemon, unchanged, target):
    links = os.stat("/etc/passwd").st_nlink
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tf:
        _member(tf, "ok")
        _member(tf, "pw", type=tarfile.LNKTYPE, linkname=target)
    assert_import_failed(*import_tar(daemon, buf.getvalue()))
    assert os.stat("/etc/passwd").st_nlink == links


def test_import_hardlink_absolute_resolves_inside(daemon, tmp_path, busybox_tar):
    """dockerd joins a hardlink's target to the layer root: `/etc/passwd`
    means the image's own passwd, never the host's."""
    links = os.stat("/etc/passwd").st_nlink
    data = _on_busybox(
        busybox_tar,
        tmp_path / "hard.tar",
        lambda tf: _member(tf, "pw", type=tarfile.LNKTYPE, linkname="/etc/passwd"),
    )
    before = world(daemon)
    status, body = import_tar(daemon, data, "hardlinked")
    try:
        assert status == 200, body
        image = daemon.docker("run", "--rm", "hardlinked:1", "cat", "/pw").stdout
        assert image == daemon.docker("run", "--rm", "busybox", "cat", "/etc/passwd").stdout
        assert os.stat("/etc/passwd").st_nlink == links
    finally:
        daemon.docker("rmi", "hardlinked:1", check=False)
    assert world(daemon) == before
