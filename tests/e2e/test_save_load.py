"""``docker save`` / ``docker load`` through our daemon: the docker CLI, our
CLI, the docker SDK, bad archives, and interop with a reference dockerd
(Debian's 20.10, which writes the old format) in both directions."""

from __future__ import annotations

import io
import json
import os
import pty
import shutil
import sys
import tarfile
from pathlib import Path

import docker
import pytest

from tests.unit.test_image_archive import config_for, layer_tar, make_archive, new_format, sha

pytestmark = pytest.mark.skipif(shutil.which("docker") is None, reason="docker CLI missing")


def blobs(daemon) -> set[str]:
    return set(os.listdir(daemon.data_root / "content" / "blobs" / "sha256"))


def image_ids(daemon) -> set[str]:
    return set(daemon.docker("images", "-aq", "--no-trunc").stdout.decode().split())


def test_docker_cli_save_then_load(daemon, tmp_path: Path) -> None:
    daemon.docker("tag", "busybox", "sl:1")
    target = tmp_path / "sl.tar"
    daemon.docker("save", "-o", str(target), "sl:1")
    with tarfile.open(target) as tar:
        names = tar.getnames()
        manifest = json.loads(tar.extractfile("manifest.json").read())  # type: ignore[union-attr]
    assert {"manifest.json", "index.json", "oci-layout", "repositories"} <= set(names)
    assert manifest[0]["RepoTags"] == ["sl:1"]
    daemon.docker("rmi", "sl:1")
    result = daemon.docker("load", "-i", str(target))
    assert result.stdout == b"Loaded image: sl:1\n"
    assert daemon.docker("run", "--rm", "sl:1", "echo", "ok").stdout == b"ok\n"
    # stdin works too, and -q changes nothing off a terminal
    result = daemon.docker("load", "-q", input=target.read_bytes())
    assert result.stdout == b"Loaded image: sl:1\n"
    daemon.docker("rmi", "sl:1")
    assert not list(Path(daemon.data_root / "tmp").iterdir())


def test_save_refuses_a_terminal(daemon) -> None:
    for cli in (["docker"], [str(Path(sys.executable).parent / "dockyard")]):
        pid, fd = pty.fork()
        if pid == 0:  # pragma: no cover - the child
            os.environ.update(daemon.env)
            os.execvp(cli[0], [*cli, "save", "busybox"])
        output = b""
        while True:
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                break
            if not chunk:
                break
            output += chunk
        _, status = os.waitpid(pid, 0)
        os.close(fd)
        assert os.waitstatus_to_exitcode(status) == 1
        assert b"cowardly refusing to save to a terminal. Use the -o flag or redirect" in output


def _members(data: bytes) -> list[tuple[str, bytes]]:
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return [
            (m.name, tar.extractfile(m).read() if m.isfile() else b"")  # type: ignore[union-attr]
            for m in tar.getmembers()
        ]


def test_dockyard_cli_save_and_load(daemon, tmp_path: Path) -> None:
    data = daemon.cli("save", "busybox").stdout
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        assert "manifest.json" in tar.getnames()
    result = daemon.cli("load", input=data)
    assert result.stdout == b"Loaded image: busybox:latest\n"
    daemon.cli("save", "-o", str(tmp_path / "b.tar"), "busybox")
    # the same archive but for index.json's mtime (the time of the save, as Docker)
    assert _members((tmp_path / "b.tar").read_bytes()) == _members(data)
    result = daemon.cli("load", "-q", "-i", str(tmp_path / "b.tar"))
    assert result.stdout == b"Loaded image: busybox:latest\n"
    result = daemon.cli("load", "-i", str(tmp_path / "missing.tar"), check=False)
    assert result.returncode == 1
    assert result.stderr == f"open {tmp_path}/missing.tar: no such file or directory\n".encode()


def test_sdk_save_and_load(daemon) -> None:
    client = docker.DockerClient(base_url=daemon.host, version="auto")
    try:
        image = client.images.get("busybox")
        data = b"".join(image.save(named=True))
        loaded = client.images.load(data)
        assert [i.id for i in loaded] == [image.id]
        assert "busybox:latest" in loaded[0].tags
        # by ID: no tag, "Loaded image ID: ..."
        data = b"".join(client.api.get_image(image.id))
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            manifest = json.loads(tar.extractfile("manifest.json").read())  # type: ignore[union-attr]
        assert manifest[0]["RepoTags"] is None
        assert [i.id for i in client.images.load(data)] == [image.id]
    finally:
        client.close()


def test_images_digests_column(daemon) -> None:
    ours = daemon.cli("images", "--digests", "busybox").stdout.decode().splitlines()
    theirs = daemon.docker("images", "--digests", "busybox").stdout.decode().splitlines()
    assert theirs[0].split() == ["REPOSITORY", "TAG", "DIGEST", "IMAGE", "ID", "CREATED", "SIZE"]
    assert [line.split()[:3] for line in ours] == [line.split()[:3] for line in theirs]
    assert theirs[1].split()[:3] == ["busybox", "latest", "<none>"]


LAYER = layer_tar({"hello": b"world"})


def _config_wrong_digest() -> bytes:
    config = config_for(LAYER)
    manifest = [
        {
            "Config": "blobs/sha256/" + sha(config)[7:],
            "RepoTags": ["bad:1"],
            "Layers": ["blobs/sha256/" + sha(LAYER)[7:]],
        }
    ]
    return make_archive(
        [
            ("blobs/sha256/" + sha(LAYER)[7:], LAYER),
            ("blobs/sha256/" + sha(config)[7:], config + b" "),
            ("manifest.json", json.dumps(manifest).encode()),
        ]
    )


def _layer_wrong_diff_id() -> bytes:
    config = config_for(LAYER)
    manifest = [{"Config": "c.json", "RepoTags": ["bad:1"], "Layers": ["l/layer.tar"]}]
    return make_archive(
        [
            ("l/layer.tar", layer_tar({"other": b"content"})),
            ("c.json", config),
            ("manifest.json", json.dumps(manifest).encode()),
        ]
    )


BAD_ARCHIVES = {
    "dotdot": (make_archive([("../x", b"pwn")]), "outside of the archive"),
    "missing-member": (
        make_archive(
            [("manifest.json", b'[{"Config":"nope.json","RepoTags":["bad:1"],"Layers":[]}]')]
        ),
        "open nope.json: no such file or directory",
    ),
    "config-digest": (_config_wrong_digest(), "does not match its digest"),
    "layer-diff-id": (_layer_wrong_diff_id(), "invalid diffID for layer 0"),
    "not-a-tar": (b"\x00garbage" * 300, "invalid archive"),
}


@pytest.mark.parametrize("case", sorted(BAD_ARCHIVES))
def test_bad_archives_are_refused_and_store_nothing(daemon, case: str) -> None:
    data, message = BAD_ARCHIVES[case]
    images, stored = image_ids(daemon), blobs(daemon)
    result = daemon.docker("load", input=data, check=False)
    assert result.returncode == 1
    assert message in result.stderr.decode()
    assert result.stderr.decode().startswith("Error response from daemon: ")
    assert image_ids(daemon) == images
    assert blobs(daemon) == stored
    assert not list(Path(daemon.data_root / "tmp").iterdir())


def test_good_synthetic_archive_loads(daemon) -> None:
    result = daemon.docker("load", input=new_format(LAYER, tags=("synthetic:1",)))
    assert result.stdout == b"Loaded image: synthetic:1\n"
    daemon.docker("rmi", "synthetic:1")


# -- interop with a reference dockerd ---------------------------------------------


def test_ours_to_dockerd_and_back(daemon, dockerd, tmp_path: Path) -> None:
    daemon.docker("tag", "busybox", "interop:ours")
    ours = daemon.docker("save", "interop:ours").stdout
    assert dockerd.docker("load", input=ours).stdout == b"Loaded image: interop:ours\n"
    ran = dockerd.docker("run", "--rm", "--network", "none", "interop:ours", "echo", "in-dockerd")
    assert ran.stdout == b"in-dockerd\n"

    # dockerd 20.10 writes the old format: <v1 id>/layer.tar and <id>.json
    dockerd.docker("tag", "interop:ours", "interop:theirs")
    theirs = dockerd.docker("save", "interop:theirs").stdout
    with tarfile.open(fileobj=io.BytesIO(theirs)) as tar:
        assert any(n.endswith("/layer.tar") for n in tar.getnames())
    daemon.docker("rmi", "interop:ours")
    assert daemon.docker("load", input=theirs).stdout == b"Loaded image: interop:theirs\n"
    ran = daemon.docker("run", "--rm", "interop:theirs", "echo", "in-dockyard")
    assert ran.stdout == b"in-dockyard\n"
    assert (
        daemon.docker("image", "inspect", "-f", "{{.Id}}", "interop:theirs").stdout
        == dockerd.docker("image", "inspect", "-f", "{{.Id}}", "interop:theirs").stdout
    )
    daemon.docker("rmi", "interop:theirs")
