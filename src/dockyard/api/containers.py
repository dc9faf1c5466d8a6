"""The ``/containers`` endpoints of the Engine API."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from pathlib import Path

from aiohttp import web

from dockyard import errdefs
from dockyard.api.app import json_response, query_bool, query_filters, read_json
from dockyard.api.stream import MULTIPLEXED_STREAM, RAW_STREAM, HijackedResponse, frame

routes = web.RouteTableDef()


def _svc(request: web.Request):
    return request.app["containers"]


def _int(request: web.Request, name: str, default: int | None = None) -> int | None:
    value = request.query.get(name)
    if value in (None, ""):
        return default
    try:
        return int(value)
    except ValueError:
        raise errdefs.InvalidArgument(f"invalid value for {name}: {value!r}")


@routes.post("/containers/create")
async def create(request: web.Request) -> web.Response:
    body = await read_json(request)
    name = request.query.get("name") or None
    container = await _svc(request).create(body, name=name)
    return json_response({"Id": container.id, "Warnings": []}, status=201)


@routes.get("/containers/json")
async def list_containers(request: web.Request) -> web.Response:
    filters = query_filters(request)
    items = await asyncio.to_thread(
        _svc(request).list,
        all=query_bool(request, "all"),
        limit=_int(request, "limit", -1) or -1,
        size=query_bool(request, "size"),
        filters=filters,
    )
    return json_response(items)


@routes.post("/containers/prune")
async def prune(request: web.Request) -> web.Response:
    return json_response(await _svc(request).prune(query_filters(request)))


@routes.get("/containers/{id}/json")
async def inspect(request: web.Request) -> web.Response:
    data = await asyncio.to_thread(
        _svc(request).inspect, request.match_info["id"], size=query_bool(request, "size")
    )
    return json_response(data)


@routes.post("/containers/{id}/start")
async def start(request: web.Request) -> web.Response:
    await _svc(request).start(request.match_info["id"])
    return web.Response(status=204)


@routes.post("/containers/{id}/stop")
async def stop(request: web.Request) -> web.Response:
    await _svc(request).stop(
        request.match_info["id"], timeout=_int(request, "t"), signal=request.query.get("signal")
    )
    return web.Response(status=204)


@routes.post("/containers/{id}/restart")
async def restart(request: web.Request) -> web.Response:
    await _svc(request).restart(
        request.match_info["id"], timeout=_int(request, "t"), signal=request.query.get("signal")
    )
    return web.Response(status=204)


@routes.post("/containers/{id}/kill")
async def kill(request: web.Request) -> web.Response:
    await _svc(request).kill(request.match_info["id"], request.query.get("signal"))
    return web.Response(status=204)


@routes.post("/containers/{id}/rename")
async def rename(request: web.Request) -> web.Response:
    name = request.query.get("name", "")
    if not name:
        raise errdefs.InvalidArgument("Neither old nor new names may be empty")
    await _svc(request).rename(request.match_info["id"], name)
    return web.Response(status=204)


@routes.delete("/containers/{id}")
async def remove(request: web.Request) -> web.Response:
    await _svc(request).remove(request.match_info["id"], force=query_bool(request, "force"))
    return web.Response(status=204)


@routes.post("/containers/{id}/resize")
async def resize(request: web.Request) -> web.Response:
    await _svc(request).resize(
        request.match_info["id"], height=_int(request, "h", 0), width=_int(request, "w", 0)
    )
    return web.Response(status=200)


@routes.post("/containers/{id}/wait")
async def wait(request: web.Request) -> web.StreamResponse:
    svc = _svc(request)
    future = svc.register_wait(request.match_info["id"], request.query.get("condition", ""))
    # Headers go out at once: the docker CLI starts the container only after
    # it has seen them, and reads the body when the container exits.
    response = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
    await response.prepare(request)
    try:
        code = await future
    except errdefs.DockyardError as exc:
        body = {"StatusCode": -1, "Error": {"Message": exc.message}}
    else:
        body = {"StatusCode": code, "Error": None}
    with contextlib.suppress(ConnectionResetError):  # the client stopped waiting
        await response.write(json.dumps(body).encode() + b"\n")
        await response.write_eof()
    return response


@routes.get("/containers/{id}/logs")
async def logs(request: web.Request) -> web.StreamResponse:
    from dockyard.container.logs import parse_time, read_logs

    svc = _svc(request)
    container = svc.get(request.match_info["id"])
    stdout, stderr = query_bool(request, "stdout"), query_bool(request, "stderr")
    if not (stdout or stderr):
        raise errdefs.InvalidArgument("Bad parameters: you must choose at least one stream")
    if container.host_config.get("LogConfig", {}).get("Type") == "none":
        raise errdefs.InvalidArgument("configured logging driver does not support reading")
    now = time.time()
    since = parse_time(request.query["since"], now) if request.query.get("since") else 0
    until = parse_time(request.query["until"], now) if request.query.get("until") else 0
    tail_text = request.query.get("tail", "all")
    tail = None if tail_text in ("", "all") else _int(request, "tail")
    if tail is not None and tail < 0:
        tail = None
    timestamps = query_bool(request, "timestamps")
    follow = query_bool(request, "follow")
    tty = bool(container.config.get("Tty"))

    def stopped() -> bool:
        try:
            return not svc.get(container.id).state.running
        except errdefs.NotFound:
            return True

    response = web.StreamResponse(
        status=200, headers={"Content-Type": RAW_STREAM if tty else MULTIPLEXED_STREAM}
    )
    await response.prepare(request)
    async for entry in read_logs(
        Path(container.log_path),
        stdout=stdout,
        stderr=stderr,
        since=since,
        until=until,
        tail=tail,
        follow=follow,
        stopped=stopped,
    ):
        data = entry.data
        if timestamps:
            data = entry.time.encode() + b" " + data
        await response.write(data if tty else frame(entry.stream, data))
    await response.write_eof()
    return response


@routes.post("/containers/{id}/attach")
async def attach(request: web.Request) -> web.StreamResponse:
    svc = _svc(request)
    container = svc.get(request.match_info["id"])
    tty = bool(container.config.get("Tty"))
    want_stdin = query_bool(request, "stdin")
    want_stdout = query_bool(request, "stdout")
    want_stderr = query_bool(request, "stderr")
    stream = query_bool(request, "stream")
    upgrade = request.headers.get("Upgrade", "").lower() == "tcp"
    pending = None
    if stream:
        pending = svc.attach(container.id, stdin=want_stdin, stdout=want_stdout, stderr=want_stderr)
    response = HijackedResponse(
        upgrade=upgrade, content_type=RAW_STREAM if tty else MULTIPLEXED_STREAM
    )
    await response.prepare(request)
    if pending is None:
        response.close_connection()
        return response
    try:
        attachment = await pending
    except errdefs.DockyardError:
        response.close_connection()
        return response
    stdin_task = None
    if want_stdin:
        stdin_task = asyncio.get_running_loop().create_task(_pump_stdin(response, attachment))
    try:
        while True:
            item = await attachment.read()
            if item is None:
                break
            stream_id, data = item
            await response.send(data if tty else frame(stream_id, data))
    except (ConnectionError, OSError):
        pass
    finally:
        if stdin_task is not None:
            stdin_task.cancel()
            with contextlib.suppress(BaseException):
                await stdin_task
        with contextlib.suppress(Exception):
            await attachment.close()
        response.close_connection()
    return response


async def _pump_stdin(response: HijackedResponse, attachment) -> None:
    while True:
        chunk = await response.receive()
        if not chunk:
            with contextlib.suppress(Exception):
                await attachment.close_stdin()
            return
        await attachment.write(chunk)
