"""``docker save`` and ``docker load`` over the Engine API:
``GET /images/{name}/get``, ``GET /images/get?names=…`` (a tar streamed as
it is made) and ``POST /images/load`` (JSON messages).

Load checks the whole archive before it answers, so a bad archive is a
plain 400; once the headers are out, errors travel as JSON messages.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from aiohttp import web

from dockyard import errdefs
from dockyard.api.app import query_bool
from dockyard.api.body import BodyReader, with_body
from dockyard.api.images import _NL
from dockyard.image.archive import (
    ArchiveLoad,
    ImageToLoad,
    LoadProgress,
    SaveTarget,
    check_saveable,
    resolve_names,
    write_archive,
)

routes = web.RouteTableDef()
log = logging.getLogger(__name__)

_FLUSH_SIZE = 1 << 20


class _ResponseWriter:
    """A blocking ``write`` into a StreamResponse, for a worker thread: data
    goes out in ~1 MB pieces and each waits for the client (backpressure)."""

    def __init__(self, response: web.StreamResponse, loop: asyncio.AbstractEventLoop) -> None:
        self._response = response
        self._loop = loop
        self._buf = bytearray()

    def write(self, data: bytes) -> int:
        self._buf += data
        if len(self._buf) >= _FLUSH_SIZE:
            self.flush()
        return len(data)

    def flush(self) -> None:
        if self._buf:
            data, self._buf = bytes(self._buf), bytearray()
            asyncio.run_coroutine_threadsafe(self._response.write(data), self._loop).result()


@routes.get("/images/get")
async def save_images(request: web.Request) -> web.StreamResponse:
    return await _save(request, request.query.getall("names", []))


@routes.get("/images/{name:.*}/get")
async def save_image(request: web.Request) -> web.StreamResponse:
    return await _save(request, [request.match_info["name"]])


async def _save(request: web.Request, names: list[str]) -> web.StreamResponse:
    service = request.app["images"]

    def prepare() -> list[SaveTarget]:
        targets = resolve_names(service, names)
        check_saveable(service, targets)
        return targets

    targets = await asyncio.to_thread(prepare)
    response = web.StreamResponse(headers={"Content-Type": "application/x-tar"})
    await response.prepare(request)
    writer = _ResponseWriter(response, asyncio.get_running_loop())

    def produce() -> None:
        write_archive(service, targets, writer)  # type: ignore[arg-type]
        writer.flush()

    try:
        await asyncio.to_thread(produce)
    except (ConnectionError, asyncio.CancelledError):
        raise
    except Exception:
        # The headers are out: the only honest signal left is a broken
        # stream (no final chunk), which clients report as an error.
        log.exception("saving %s failed", names)
        if request.transport is not None:
            request.transport.close()
        return response
    await response.write_eof()
    return response


@routes.post("/images/load")
async def load_images(request: web.Request) -> web.StreamResponse:
    service = request.app["images"]
    quiet = query_bool(request, "quiet")
    loop = asyncio.get_running_loop()
    load = await asyncio.to_thread(ArchiveLoad, request.app["config"].data_root / "tmp")
    try:
        images = await with_body(request, lambda body: _spool_and_plan(load, body))
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        await response.prepare(request)

        def emit(message: dict[str, Any]) -> None:
            line = json.dumps(message).encode() + _NL
            asyncio.run_coroutine_threadsafe(response.write(line), loop).result()

        try:
            await asyncio.to_thread(load.commit, service, images, LoadProgress(emit, quiet))
        except errdefs.DockyardError as exc:
            await response.write(_error_line(exc.message))
        except (ConnectionError, asyncio.CancelledError):
            raise
        except Exception as exc:
            log.exception("loading images failed")
            await response.write(_error_line(str(exc) or exc.__class__.__name__))
        await response.write_eof()
        return response
    finally:
        await asyncio.to_thread(load.close)


def _spool_and_plan(load: ArchiveLoad, reader: BodyReader) -> list[ImageToLoad]:
    try:
        load.spool(reader)  # type: ignore[arg-type]
        return load.plan()
    except BaseException:
        # Read what the client still sends, so that it gets our answer
        # instead of a broken pipe.
        try:
            while reader.read(1 << 20):
                pass
        except Exception:
            pass
        raise


def _error_line(message: str) -> bytes:
    return json.dumps({"errorDetail": {"message": message}, "error": message}).encode() + _NL
