"""The docker Python SDK against our daemon."""

from __future__ import annotations

import docker
import pytest


@pytest.fixture
def client(daemon):
    c = docker.DockerClient(base_url=daemon.host, version="auto")
    yield c
    c.close()


def test_ping_and_version(client):
    assert client.ping() is True
    assert client.version()["ApiVersion"] == "1.50"


def test_run_returns_output(client):
    assert client.containers.run("busybox", ["echo", "hi"], remove=True) == b"hi\n"


def test_run_nonzero_raises_container_error(client):
    with pytest.raises(docker.errors.ContainerError) as info:
        client.containers.run("busybox", ["sh", "-c", "exit 7"], remove=True)
    assert info.value.exit_status == 7


def test_detached_wait_logs_remove(client):
    c = client.containers.run("busybox", ["sh", "-c", "echo out; echo err >&2"], detach=True)
    try:
        assert c.wait()["StatusCode"] == 0
        assert c.logs(stdout=True, stderr=False) == b"out\n"
        assert c.logs(stdout=False, stderr=True) == b"err\n"
        c.reload()
        assert c.status == "exited"
    finally:
        c.remove(force=True)
    with pytest.raises(docker.errors.NotFound):
        client.containers.get(c.id)


def test_images_and_errors(client):
    tags = [t for image in client.images.list() for t in image.tags]
    assert "busybox:latest" in tags
    with pytest.raises(docker.errors.ImageNotFound):
        client.images.get("does-not-exist:1")
    with pytest.raises(docker.errors.NotFound):
        client.containers.get("does-not-exist")


def test_attach_socket_stdin(client):
    body = {"Image": "busybox", "Cmd": ["cat"], "OpenStdin": True, "StdinOnce": True}
    response = client.api._post_json(client.api._url("/containers/create"), data=body)
    created = client.api._result(response, json=True)
    c = client.containers.get(created["Id"])
    try:
        sock = client.api.attach_socket(c.id, params={"stdin": 1, "stdout": 1, "stream": 1})
        c.start()
        sock._sock.sendall(b"ping\n")
        sock._sock.shutdown(1)
        data = b""
        while len(data) < 13:
            chunk = sock._sock.recv(4096)
            if not chunk:
                break
            data += chunk
        assert data[8:] == b"ping\n"
        assert c.wait(timeout=10)["StatusCode"] == 0
    finally:
        c.remove(force=True)
