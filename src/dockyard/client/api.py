"""``Client``: Engine API calls for the CLI, with version negotiation and
errors turned into ``errdefs`` kinds carrying the daemon's message."""

from __future__ import annotations

import json
import os

from dockyard import errdefs
from dockyard.client.http import DEFAULT_HOST, Endpoint, Response, request

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping
    from typing import Any

API_VERSION = "1.50"

_KINDS: dict[int, type[errdefs.DockyardError]] = {
    400: errdefs.InvalidArgument,
    401: errdefs.Unauthorized,
    403: errdefs.Forbidden,
    404: errdefs.NotFound,
    409: errdefs.Conflict,
    304: errdefs.NotModified,
    412: errdefs.FailedPrecondition,
    501: errdefs.NotImplemented,
    503: errdefs.Unavailable,
}


def error_for(status: int, body: bytes) -> errdefs.DockyardError:
    """The errdefs kind for an error response; the message is the daemon's."""
    try:
        message = json.loads(body).get("message", "")
    except (ValueError, AttributeError):
        message = body.decode("utf-8", "replace").strip()
    if not message:
        message = f"HTTP {status}"
    kind = _KINDS.get(status, errdefs.System)
    err = kind(message)
    err.status = status  # type: ignore[misc]  # keep the exact wire status
    return err


def _version_tuple(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(p) for p in text.split("."))
    except ValueError:
        return (0,)


def query(params: Mapping[str, Any] | None) -> str:
    """A query string; bools as 1/0, None dropped, dicts/lists as JSON."""
    if not params:
        return ""
    pairs: list[tuple[str, str]] = []
    for key, value in params.items():
        if value is None:
            continue
        if isinstance(value, bool):
            value = "1" if value else "0"
        elif isinstance(value, dict):
            value = json.dumps(value, separators=(",", ":"))
        elif isinstance(value, list | tuple):
            for item in value:
                pairs.append((key, str(item)))
            continue
        pairs.append((key, str(value)))
    return "?" + "&".join(f"{_quote(k)}={_quote(v)}" for k, v in pairs) if pairs else ""


_SAFE = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-~")


def _quote(text: str) -> str:
    """Percent-encoding for a query (urllib.parse is slow to import)."""
    return "".join(chr(b) if b in _SAFE else f"%{b:02X}" for b in text.encode())


class Client:
    """A small Engine API client; one connection per request."""

    def __init__(self, host: str | None = None, *, version: str | None = None) -> None:
        self.host = host or os.environ.get("DOCKER_HOST") or DEFAULT_HOST
        self.endpoint = Endpoint.parse(self.host)
        self._version = version or os.environ.get("DOCKER_API_VERSION") or None
        self.server_headers: dict[str, str] = {}

    # -- plumbing -------------------------------------------------------
    @property
    def version(self) -> str:
        """The API version to speak: min(ours, the server's), asked once."""
        if self._version is None:
            self._version = API_VERSION
            resp = request(self.endpoint, "GET", "/_ping")
            resp.read()
            self.server_headers = resp.headers
            server = resp.headers.get("api-version")
            if server and _version_tuple(server) < _version_tuple(API_VERSION):
                self._version = server
        return self._version

    def raw(
        self,
        method: str,
        path: str,
        params: Mapping[str, Any] | None = None,
        *,
        body: Any = None,
        data: bytes | None = None,
        headers: dict[str, str] | None = None,
        timeout: float | None = None,
        versioned: bool = True,
    ) -> Response:
        """Send a request; raise the errdefs kind on a 4xx/5xx answer."""
        hdrs = dict(headers or {})
        if body is not None:
            data = json.dumps(body).encode()
            hdrs.setdefault("Content-Type", "application/json")
        url = (f"/v{self.version}" if versioned else "") + path + query(params)
        resp = request(self.endpoint, method, url, body=data, headers=hdrs, timeout=timeout)
        if resp.status >= 400:
            raise error_for(resp.status, resp.read())
        return resp

    def call(
        self, method: str, path: str, params: Mapping[str, Any] | None = None, **kw: Any
    ) -> Any:
        """A request whose answer is JSON (or empty → None)."""
        data = self.raw(method, path, params, **kw).read()
        if not data.strip():
            return None
        return json.loads(data)

    def get(self, path: str, params: Mapping[str, Any] | None = None, **kw: Any) -> Any:
        return self.call("GET", path, params, **kw)

    def post(self, path: str, params: Mapping[str, Any] | None = None, **kw: Any) -> Any:
        return self.call("POST", path, params, **kw)

    def delete(self, path: str, params: Mapping[str, Any] | None = None, **kw: Any) -> Any:
        return self.call("DELETE", path, params, **kw)

    def stream_json(
        self, method: str, path: str, params: Mapping[str, Any] | None = None, **kw: Any
    ) -> Iterator[dict[str, Any]]:
        """JSON-lines progress messages as they arrive."""
        for line in self.raw(method, path, params, **kw).iter_lines():
            try:
                yield json.loads(line)
            except ValueError:
                continue

    def hijack(self, path: str, params: Mapping[str, Any] | None = None) -> Response:
        """POST with ``Upgrade: tcp``; the response's socket is then the raw
        stream (``take_buffered()`` first: bytes already read past the head)."""
        return self.raw(
            "POST",
            path,
            params,
            headers={"Connection": "Upgrade", "Upgrade": "tcp", "Content-Type": "text/plain"},
        )

    # -- conveniences ---------------------------------------------------
    def ping(self) -> dict[str, str]:
        resp = request(self.endpoint, "GET", "/_ping")
        resp.read()
        return resp.headers
