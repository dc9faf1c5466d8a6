"""Stream helpers for the Engine API: stdcopy framing and hijacked
connections (``101 UPGRADED`` followed by a raw byte stream both ways).

stdcopy frames are an 8-byte header — stream byte (0 stdin, 1 stdout,
2 stderr, 3 system error), three zero bytes, big-endian uint32 length —
then the payload. TTY streams are sent raw, without frames.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Callable

from aiohttp import web
from aiohttp.web_protocol import RequestHandler

RAW_STREAM = "application/vnd.docker.raw-stream"
MULTIPLEXED_STREAM = "application/vnd.docker.multiplexed-stream"


# Clients half-close a hijacked connection when they have no stdin to send
# (the docker CLI does). asyncio closes a transport on EOF unless the
# protocol's eof_received returns True, which would cut off the output; the
# handler uses __slots__, so the hook is patched on the class and consults
# this table of hijacked connections.
_HALF_CLOSED: dict[int, Callable[[], None]] = {}
_plain_eof_received = RequestHandler.eof_received


def _eof_received(self: RequestHandler) -> bool | None:
    callback = _HALF_CLOSED.get(id(self))
    if callback is None:
        return _plain_eof_received(self)
    callback()
    return True


RequestHandler.eof_received = _eof_received  # type: ignore[method-assign]


def frame(stream: int, data: bytes) -> bytes:
    return struct.pack(">BxxxI", stream, len(data)) + data


class _RawReader:
    """A payload parser that hands the connection's bytes to a queue; the
    protocol calls it in place of the HTTP parser once we hijacked."""

    def __init__(self, queue: asyncio.Queue) -> None:
        self._queue = queue

    def feed_data(self, data: bytes) -> tuple[bool, bytes]:
        self._queue.put_nowait(bytes(data))
        return False, b""

    def feed_eof(self) -> None:
        self._queue.put_nowait(b"")


class HijackedResponse(web.StreamResponse):
    """A response that turns the connection into a raw duplex stream."""

    _length_check = False

    def __init__(self, *, upgrade: bool, content_type: str) -> None:
        super().__init__(status=101 if upgrade else 200, reason="UPGRADED" if upgrade else "OK")
        self.headers["Content-Type"] = content_type
        if upgrade:
            self.headers["Connection"] = "Upgrade"
            self.headers["Upgrade"] = "tcp"
        self._incoming: asyncio.Queue[bytes] = asyncio.Queue()
        self._request: web.Request | None = None
        self.force_close()

    async def prepare(self, request: web.BaseRequest):
        if self._request is not None:  # aiohttp prepares again when the handler returns
            return await super().prepare(request)
        writer = await super().prepare(request)
        self._request = request
        protocol = request.protocol
        if request.headers.get("Upgrade", "").lower() == "tcp":
            protocol.set_parser(_RawReader(self._incoming))  # type: ignore[arg-type]
            _HALF_CLOSED[id(protocol)] = lambda: self._incoming.put_nowait(b"")
        else:
            self._spawn_body_pump(request)
        protocol.keep_alive(False)
        return writer

    def _spawn_body_pump(self, request: web.BaseRequest) -> None:
        # Without an upgrade the client's bytes arrive as the request body.
        async def pump() -> None:
            try:
                async for chunk in request.content.iter_any():
                    self._incoming.put_nowait(chunk)
            finally:
                self._incoming.put_nowait(b"")

        self._pump = asyncio.get_running_loop().create_task(pump())

    async def send(self, data: bytes) -> None:
        transport = self._request.transport if self._request else None
        if transport is None or transport.is_closing():
            raise ConnectionResetError("client went away")
        transport.write(data)
        await self._drain()

    async def _drain(self) -> None:
        transport = self._request.transport if self._request else None
        if transport is None:
            return
        # Back-pressure: wait while the transport's buffer is large.
        while transport.get_write_buffer_size() > 1 << 20 and not transport.is_closing():
            await asyncio.sleep(0.005)

    async def receive(self) -> bytes:
        """The next chunk from the client; b"" when it closed its side."""
        return await self._incoming.get()

    def close_connection(self) -> None:
        if self._request is not None:
            _HALF_CLOSED.pop(id(self._request.protocol), None)
        transport = self._request.transport if self._request else None
        if transport is not None and not transport.is_closing():
            if transport.can_write_eof():
                transport.write_eof()
            transport.close()
