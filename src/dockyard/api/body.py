"""A request body read by a worker thread while the event loop receives it.

Uploads (import, load, build contexts, ``docker cp`` into a container) are
consumed by blocking code in a worker thread. The event loop pushes each
chunk into a bounded queue as it arrives and the thread takes them: nothing
waits on a round trip per chunk, and at most ``DEPTH`` chunks (a few MB)
are held in memory, so a body of any size streams.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
from collections.abc import Callable
from typing import TypeVar

from aiohttp import web

T = TypeVar("T")

DEPTH = 64


class BodyReader:
    """``read(size)`` for the worker thread; ``pump`` runs on the event loop."""

    def __init__(self) -> None:
        self._queue: queue.Queue[bytes | None] = queue.Queue(DEPTH)
        self._buf = b""
        self._pos = 0
        self._eof = False
        self.closed = False

    async def pump(self, request: web.Request) -> None:
        loop = asyncio.get_running_loop()
        try:
            async for chunk in request.content.iter_any():
                if self.closed:
                    continue  # the reader is gone: drain the body
                try:
                    self._queue.put_nowait(chunk)
                except queue.Full:
                    await loop.run_in_executor(None, self._queue.put, chunk)
        finally:
            await loop.run_in_executor(None, self._queue.put, None)

    def close(self) -> None:
        """The reader stops: free the queue so a blocked ``pump`` goes on."""
        self.closed = True
        with contextlib.suppress(queue.Empty):
            while True:
                self._queue.get_nowait()

    def _next(self) -> bool:
        """Make the next chunk current; False at the end of the body."""
        while self._pos >= len(self._buf):
            if self._eof:
                return False
            chunk = self._queue.get()
            if chunk is None:
                self._eof = True
                return False
            self._buf, self._pos = chunk, 0
        return True

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            parts = []
            while self._next():
                parts.append(self._buf[self._pos :])
                self._pos = len(self._buf)
            return b"".join(parts)
        if not self._next():
            return b""
        out = self._buf[self._pos : self._pos + size]
        self._pos += len(out)
        return out


async def with_body(request: web.Request, work: Callable[[BodyReader], T]) -> T:
    """Run ``work(body)`` in a worker thread while the body streams into it."""
    body = BodyReader()
    pump = asyncio.ensure_future(body.pump(request))

    def run() -> T:
        try:
            return work(body)
        finally:
            body.close()

    try:
        return await asyncio.to_thread(run)
    finally:
        await pump
