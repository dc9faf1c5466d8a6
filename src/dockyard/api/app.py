"""The aiohttp application: routing under bare and ``/v1.NN`` paths, API
version checks, and the translation of ``errdefs`` kinds into responses."""

from __future__ import annotations

import json
import logging
import re

from aiohttp import web

from dockyard import errdefs

API_VERSION = "1.50"
MIN_API_VERSION = "1.24"

log = logging.getLogger(__name__)

_VERSION_RE = re.compile(r"^\d+\.\d+$")


def _version_tuple(text: str) -> tuple[int, int]:
    major, minor = text.split(".")
    return int(major), int(minor)


def error_response(status: int, message: str) -> web.Response:
    return web.Response(
        status=status,
        body=json.dumps({"message": message}).encode() + b"\n",
        content_type="application/json",
    )


@web.middleware
async def _middleware(request: web.Request, handler):
    version = request.match_info.get("version")
    if version is not None:
        if not _VERSION_RE.match(version):
            return error_response(404, "page not found")
        wanted = _version_tuple(version)
        if wanted > _version_tuple(API_VERSION):
            return error_response(
                400,
                f"client version {version} is too new. "
                f"Maximum supported API version is {API_VERSION}",
            )
        if wanted < _version_tuple(MIN_API_VERSION):
            return error_response(
                400,
                f"client version {version} is too old. Minimum supported API version is "
                f"{MIN_API_VERSION}, please upgrade your client to a newer version",
            )
    try:
        response = await handler(request)
    except errdefs.DockyardError as exc:
        if exc.status == 304:
            return web.Response(status=304)
        return error_response(exc.status, exc.message)
    except web.HTTPException:
        raise
    except ConnectionError:
        # The client went away mid-answer (the docker CLI closes a `cp` stream
        # once it has the tar's end, before the last chunk): not an error. A
        # fresh response lets aiohttp end the exchange quietly.
        return web.Response(status=499)
    except Exception as exc:  # the API edge: anything else is a 500 with its text
        log.exception("%s %s failed", request.method, request.path)
        return error_response(500, str(exc) or exc.__class__.__name__)
    if isinstance(response, web.StreamResponse):
        response.headers.setdefault("Api-Version", API_VERSION)
        response.headers.setdefault("Server", "Docker/28.2.2 (linux)")
    return response


def request_version(request: web.Request) -> tuple[int, int]:
    """The API version a request was made with (bare paths get the newest)."""
    version = request.match_info.get("version")
    return _version_tuple(version) if version else _version_tuple(API_VERSION)


async def read_json(request: web.Request, *, default=None):
    """The request body as JSON; a malformed body is a 400 as with dockerd."""
    body = await request.read()
    if not body.strip():
        if default is not None:
            return default
        raise errdefs.InvalidArgument("invalid JSON: empty body")
    content_type = request.headers.get("Content-Type")
    if content_type and content_type.split(";")[0].strip().lower() != "application/json":
        raise errdefs.InvalidArgument(
            f"unsupported Content-Type header ({content_type}): must be 'application/json'"
        )
    try:
        return json.loads(body)
    except ValueError as exc:
        raise errdefs.InvalidArgument(f"invalid JSON: {exc}")


def json_response(data, status: int = 200) -> web.Response:
    return web.Response(
        status=status, body=json.dumps(data).encode() + b"\n", content_type="application/json"
    )


def query_bool(request: web.Request, name: str, default: bool = False) -> bool:
    value = request.query.get(name)
    if value is None:
        return default
    return value.lower() not in ("", "0", "false", "no")


def query_filters(request: web.Request) -> dict[str, list[str]]:
    """Docker's ``filters`` query parameter: {"key": ["v", ...]} or the
    older {"key": {"v": true}} form."""
    raw = request.query.get("filters")
    if not raw:
        return {}
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise errdefs.InvalidArgument(f"invalid filter: {exc}")
    if not isinstance(data, dict):
        raise errdefs.InvalidArgument("invalid filter")
    out: dict[str, list[str]] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            out[key] = [k for k, v in value.items() if v]
        elif isinstance(value, list):
            out[key] = [str(v) for v in value]
        else:
            raise errdefs.InvalidArgument(f"invalid filter '{key}'")
    return out


def make_app(services: dict, route_tables: list[web.RouteTableDef]) -> web.Application:
    app = web.Application(middlewares=[_middleware], client_max_size=0)
    for key, value in services.items():
        app[key] = value
    for table in route_tables:
        for route in table:
            assert isinstance(route, web.RouteDef)
            for path in (route.path, "/v{version}" + route.path):
                app.router.add_route(route.method, path, route.handler, **route.kwargs)
                if route.method == "GET" and route.path == "/_ping":
                    app.router.add_route("HEAD", path, route.handler)
    return app
