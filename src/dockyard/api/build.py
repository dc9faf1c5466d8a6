"""``POST /build`` (the classic builder) and ``POST /build/prune``.

The context arrives as the request body (a tar, plain or compressed, or a
bare Dockerfile) and is unpacked while it streams in. The answer is
dockerd's JSON stream: ``{"stream": ...}`` lines, ``{"aux": {"ID": ...}}``
and, for a failure after the first line, ``{"errorDetail": ..., "error":
...}``. A failure before any output (a bad Dockerfile, tag or target) is a
plain HTTP error, as with dockerd.

A client that goes away (Ctrl-C on ``docker build``) stops the build at
once, as with dockerd: the build runs as its own task, which is cancelled
when a write fails or when the connection is seen closed. aiohttp does not
cancel a handler whose client left (``handler_cancellation`` is off, and
turning it on daemon-wide would cut short other handlers mid-change), but it
drops ``request.transport`` when the connection is lost; a RUN step
writes nothing for minutes, so a watcher polls that every ``_POLL`` seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging

from aiohttp import web

from dockyard import errdefs
from dockyard.api.app import json_response, query_bool
from dockyard.api.body import with_body
from dockyard.api.images import _NL

routes = web.RouteTableDef()
log = logging.getLogger(__name__)

_POLL = 0.1  # seconds between looks at the connection while a build runs


def _json_param(request: web.Request, name: str) -> dict:
    raw = request.query.get(name)
    if not raw:
        return {}
    try:
        value = json.loads(raw)
    except ValueError as exc:
        raise errdefs.InvalidArgument(f"invalid {name} parameter: {exc}")
    if not isinstance(value, dict):
        raise errdefs.InvalidArgument(f"invalid {name} parameter: not a JSON object")
    return value


def _int_param(request: web.Request, name: str) -> int:
    raw = request.query.get(name)
    if not raw:
        return 0
    try:
        return int(raw)
    except ValueError:
        raise errdefs.InvalidArgument(f"invalid {name} parameter: {raw!r}")


def options_from_query(request: web.Request):
    from dockyard.builder.executor import BuildOptions

    query = request.query
    if query.get("remote"):
        raise errdefs.NotImplemented("building from a remote context is not supported")
    if query.get("version") == "2":
        raise errdefs.InvalidArgument("BuildKit is not supported: use the classic builder")
    build_args = {
        str(k): None if v is None else str(v) for k, v in _json_param(request, "buildargs").items()
    }
    labels = {str(k): str(v) for k, v in _json_param(request, "labels").items()}
    hosts: list[str] = []
    for value in query.getall("extrahosts", []):
        hosts += [h for h in value.split(",") if h]
    return BuildOptions(
        dockerfile=query.get("dockerfile") or "Dockerfile",
        tags=tuple(t for t in query.getall("t", []) if t),
        build_args=build_args,
        no_cache=query_bool(request, "nocache"),
        pull=query_bool(request, "pull"),
        remove=query_bool(request, "rm", True),
        force_remove=query_bool(request, "forcerm"),
        target=query.get("target", ""),
        labels=labels,
        quiet=query_bool(request, "q"),
        network_mode=query.get("networkmode", ""),
        platform=query.get("platform", ""),
        extra_hosts=tuple(hosts),
        shm_size=_int_param(request, "shmsize"),
        memory=_int_param(request, "memory"),
        cpuset_cpus=query.get("cpusetcpus", ""),
    )


def _registry_configs(request: web.Request) -> dict:
    """``X-Registry-Config``: base64url JSON of auth configs by registry."""
    import base64

    header = (request.headers.get("X-Registry-Config") or "").strip()
    if not header:
        return {}
    try:
        data = json.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4)))
    except ValueError:
        raise errdefs.InvalidArgument("invalid X-Registry-Config header: not base64 JSON")
    return data if isinstance(data, dict) else {}


def _puller(request: web.Request, platform: str):
    """A pull function for the builder, or None when this daemon cannot pull."""
    try:
        from dockyard.api.distribution import _meta, _options
        from dockyard.distribution.auth import ANONYMOUS, auth_from_json
        from dockyard.distribution.pull import Puller
    except ImportError:
        return None
    from dockyard.image import reference

    puller = Puller(request.app["images"], _options(request), _meta(request))
    configs = _registry_configs(request)

    async def pull(name: str, emit) -> None:
        ref = reference.parse_named(name)
        keys = [ref.domain, f"https://{ref.domain}", f"http://{ref.domain}"]
        if ref.domain == "docker.io":
            keys.insert(0, "https://index.docker.io/v1/")
        entry = next((configs[k] for k in keys if isinstance(configs.get(k), dict)), None)
        auth = auth_from_json(entry) if entry else ANONYMOUS
        await puller.pull(ref, emit=emit, auth=auth, platform=platform or None)

    return pull


def _line(message: dict) -> bytes:
    return json.dumps(message).encode() + _NL


def _connection_lost(request: web.Request) -> bool:
    transport = request.transport
    return transport is None or transport.is_closing()


async def _watch(request: web.Request, task: asyncio.Task) -> None:
    """Cancel ``task`` once the client's connection is gone."""
    while not task.done():
        if _connection_lost(request):
            task.cancel()
            return
        await asyncio.sleep(_POLL)


@routes.post("/build")
async def build(request: web.Request) -> web.StreamResponse:
    from dockyard.builder import context as build_context
    from dockyard.builder.executor import build as run_build

    options = options_from_query(request)
    config = request.app["config"]
    base = config.data_root / "builder"
    ctx = await with_body(
        request,
        lambda body: build_context.receive(body, base, dockerfile=options.dockerfile),  # type: ignore[arg-type]
    )
    response = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
    prepared = False
    gone = False
    task: asyncio.Task | None = None

    def abandon() -> None:
        nonlocal gone
        gone = True
        if task is not None:
            task.cancel()

    async def start() -> None:
        nonlocal prepared
        if not prepared:
            prepared = True
            try:
                await response.prepare(request)
            except ConnectionResetError:
                abandon()

    async def emit(message: dict) -> None:
        await start()
        if gone:
            return
        try:
            await response.write(_line(message))
        except ConnectionResetError:
            abandon()

    try:
        task = asyncio.ensure_future(
            run_build(
                images=request.app["images"],
                containers=request.app["containers"],
                db=request.app["db"],
                context=ctx,
                options=options,
                emit=emit,
                started=start,
                pull=_puller(request, options.platform),
            )
        )
        watcher = asyncio.ensure_future(_watch(request, task))
        try:
            await task
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                # this handler was cancelled (daemon shutdown): so is the
                # build; let it clean up before the context goes
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task
                raise
            gone = True  # the watcher or a failed write cancelled the build
        finally:
            watcher.cancel()
    except errdefs.DockyardError as exc:
        if not prepared:
            raise
        await emit({"errorDetail": {"message": exc.message}, "error": exc.message})
    except Exception as exc:
        log.exception("build failed")
        if not prepared:
            raise errdefs.System(str(exc))
        message = str(exc) or type(exc).__name__
        await emit({"errorDetail": {"message": message}, "error": message})
    finally:
        await asyncio.to_thread(ctx.close)
    if gone:
        log.info("build cancelled: the client went away")
        return response
    with contextlib.suppress(ConnectionResetError):
        await response.write_eof()
    return response


@routes.post("/build/prune")
async def prune(request: web.Request) -> web.Response:
    from dockyard.builder.cache import BuildCache

    cache = BuildCache(request.app["db"])
    everything = query_bool(request, "all") or True
    removed = await asyncio.to_thread(cache.prune, everything=everything)
    return json_response({"CachesDeleted": removed or None, "SpaceReclaimed": 0})


@routes.post("/build/cancel")
async def cancel(request: web.Request) -> web.Response:
    return web.Response(status=200)
