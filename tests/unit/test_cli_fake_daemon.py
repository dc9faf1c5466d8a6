"""The CLI and its client against a tiny fake Engine API on a unix socket."""

from __future__ import annotations

import io
import json
import socketserver
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from dockyard.cli.main import Cli, run
from dockyard.client import Client

CONTAINER = {
    "Id": "f" * 64, "Names": ["/web"], "Image": "busybox", "ImageID": "sha256:" + "1" * 64,
    "Command": "sleep 1000", "Created": 0, "Ports": [], "Labels": {}, "State": "running",
    "Status": "Up 3 seconds",
}  # fmt: skip


class _Handler(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        request_line = self.rfile.readline().decode()
        while self.rfile.readline() not in (b"\r\n", b""):
            pass
        method, path, _ = request_line.split(" ", 2)
        self.server.seen.append((method, path))  # type: ignore[attr-defined]
        status, body, headers = 200, b"", {"Api-Version": "1.45"}
        if path == "/_ping":
            body = b"OK"
        elif path.startswith("/v1.45/containers/json"):
            body = json.dumps([CONTAINER]).encode()
        elif path.startswith("/v1.45/containers/nope"):
            status, body = 404, b'{"message":"No such container: nope"}'
        else:
            status, body = 404, b'{"message":"page not found"}'
        head = f"HTTP/1.1 {status} X\r\nContent-Length: {len(body)}\r\n"
        head += "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        self.wfile.write(head.encode() + b"\r\n" + body)


class _Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[tuple[str, list[tuple[str, str]]]]:
    sock = tmp_path / "d.sock"
    server = _Server(str(sock), _Handler)
    server.seen = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"unix://{sock}", server.seen  # type: ignore[attr-defined]
    server.shutdown()
    server.server_close()
    thread.join()


def _run(host: str, *argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = run(["-H", host, *argv], Cli(out=out, err=err))
    return code, out.getvalue(), err.getvalue()


def test_version_negotiation(daemon: tuple[str, list]) -> None:
    host, seen = daemon
    client = Client(host)
    assert client.version == "1.45"
    assert client.get("/containers/json")[0]["Names"] == ["/web"]
    assert seen[-1] == ("GET", "/v1.45/containers/json")


def test_ps(daemon: tuple[str, list]) -> None:
    host, seen = daemon
    code, out, _ = _run(host, "ps", "--format", "{{.ID}} {{.Names}} {{.Command}}")
    assert (code, out) == (0, 'ffffffffffff web "sleep 1000"\n')
    code, out, _ = _run(host, "container", "ls", "-q", "-a")
    assert out == "ffffffffffff\n"
    assert seen[-1] == ("GET", "/v1.45/containers/json?all=1")


def test_daemon_error_and_usage_errors(daemon: tuple[str, list]) -> None:
    host, _ = daemon
    code, _, err = _run(host, "rm", "nope")
    assert (code, err) == (1, "Error response from daemon: No such container: nope\n")
    code, _, err = _run(host, "ps", "--bogus")
    assert code == 125 and err.startswith("unknown flag: --bogus\n\nUsage:  docker ps [OPTIONS]")
    code, _, err = _run(host, "rm")
    assert code == 1 and err.startswith("docker: 'docker rm' requires at least 1 argument")


def test_cannot_connect(tmp_path: Path) -> None:
    code, _, err = _run(f"unix://{tmp_path}/none.sock", "ps")
    assert code == 1
    assert err.startswith(f"Cannot connect to the Docker daemon at unix://{tmp_path}/none.sock")
