"""A minimal HTTP/1.1 client over one socket per request (unix or tcp).

The stdlib ``http.client`` costs ~30 ms to import (it pulls in ssl and
email); the CLI must start faster than that. One request per connection
keeps it simple, and hijacking for attach is a matter of keeping the socket.
"""

from __future__ import annotations

import socket

from dockyard.errdefs import InvalidArgument, Unavailable

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator

DEFAULT_HOST = "unix:///run/dockyard/dockyard.sock"


class Endpoint:
    """Where the daemon listens: a unix socket path or a tcp host:port."""

    __slots__ = ("address", "scheme", "url")

    def __init__(self, scheme: str, address: str, url: str) -> None:
        self.scheme = scheme  # "unix" | "tcp"
        self.address = address  # path, or host:port
        self.url = url

    @classmethod
    def parse(cls, url: str) -> Endpoint:
        if url.startswith("unix://"):
            return cls("unix", url[len("unix://") :] or "/run/dockyard/dockyard.sock", url)
        if url.startswith(("tcp://", "http://")):
            rest = url.split("://", 1)[1].rstrip("/")
            if ":" not in rest:
                rest += ":2375"
            return cls("tcp", rest, url)
        if url.startswith("/"):
            return cls("unix", url, "unix://" + url)
        raise InvalidArgument(f"unable to parse docker host `{url}`")

    def connect(self, timeout: float | None = None) -> socket.socket:
        try:
            if self.scheme == "unix":
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                sock.settimeout(timeout)
                sock.connect(self.address)
            else:
                host, _, port = self.address.rpartition(":")
                sock = socket.create_connection((host.strip("[]"), int(port)), timeout)
        except OSError:
            raise Unavailable(
                f"Cannot connect to the Docker daemon at {self.url}. Is the docker daemon running?"
            )
        return sock


class Response:
    """Status, headers and a body read on demand from the socket."""

    def __init__(self, sock: socket.socket, *, head: bool = False) -> None:
        self.sock = sock
        self._buf = b""
        self._eof = False
        line = self._readline()
        parts = line.decode("latin-1").split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/"):
            raise Unavailable(f"malformed HTTP response {line!r}")
        self.status = int(parts[1])
        self.headers: dict[str, str] = {}
        while True:
            line = self._readline()
            if line in (b"\r\n", b"\n", b""):
                break
            key, _, value = line.decode("latin-1").partition(":")
            self.headers[key.strip().lower()] = value.strip()
        self._chunked = "chunked" in self.headers.get("transfer-encoding", "").lower()
        length = self.headers.get("content-length")
        self._remaining = int(length) if length is not None and not self._chunked else None
        if self.status in (101, 204, 304) or head:
            # a HEAD answer carries the Content-Length of the GET, never a body
            self._remaining = 0 if self.status != 101 else None

    # -- low level ------------------------------------------------------
    def _fill(self) -> bool:
        if self._eof:
            return False
        data = self.sock.recv(65536)
        if not data:
            self._eof = True
            return False
        self._buf += data
        return True

    def _readline(self) -> bytes:
        while b"\n" not in self._buf:
            if not self._fill():
                line, self._buf = self._buf, b""
                return line
        idx = self._buf.index(b"\n") + 1
        line, self._buf = self._buf[:idx], self._buf[idx:]
        return line

    def _read_exact(self, size: int) -> bytes:
        while len(self._buf) < size and self._fill():
            pass
        data, self._buf = self._buf[:size], self._buf[size:]
        return data

    def take_buffered(self) -> bytes:
        """Bytes already read past the headers (for a hijacked stream)."""
        data, self._buf = self._buf, b""
        return data

    # -- body -----------------------------------------------------------
    def iter_chunks(self) -> Iterator[bytes]:
        """The body as it arrives (chunked encoding decoded)."""
        try:
            if self._chunked:
                while True:
                    size_line = self._readline()
                    if not size_line:
                        return
                    size = int(size_line.split(b";")[0].strip() or b"0", 16)
                    if size == 0:
                        return
                    data = self._read_exact(size)
                    self._read_exact(2)
                    if data:
                        yield data
            elif self._remaining is not None:
                while self._remaining > 0:
                    if not self._buf and not self._fill():
                        return
                    data = self._buf[: self._remaining]
                    self._buf = self._buf[len(data) :]
                    self._remaining -= len(data)
                    yield data
            else:
                if self._buf:
                    data, self._buf = self._buf, b""
                    yield data
                while self._fill():
                    data, self._buf = self._buf, b""
                    yield data
        finally:
            self.close()

    def read(self) -> bytes:
        return b"".join(self.iter_chunks())

    def iter_lines(self) -> Iterator[bytes]:
        """Newline-separated records (JSON-lines progress)."""
        pending = b""
        for chunk in self.iter_chunks():
            pending += chunk
            while b"\n" in pending:
                line, pending = pending.split(b"\n", 1)
                if line.strip():
                    yield line
        if pending.strip():
            yield pending

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


def request(
    endpoint: Endpoint,
    method: str,
    path: str,
    *,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    timeout: float | None = None,
) -> Response:
    """Send one request and read the response head."""
    sock = endpoint.connect(timeout)
    host = "docker" if endpoint.scheme == "unix" else endpoint.address
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}", "User-Agent: Docker-Client/28.2.2"]
    hdrs = dict(headers or {})
    if body is not None:
        hdrs.setdefault("Content-Length", str(len(body)))
    for key, value in hdrs.items():
        lines.append(f"{key}: {value}")
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    try:
        sock.sendall(head + (body or b""))
        return Response(sock, head=method == "HEAD")
    except OSError as exc:
        sock.close()
        raise Unavailable(f"error during connect: {exc}")
