"""The ``/networks`` endpoints of the Engine API (``app["networks"]`` is the
network.service.NetworkService, ``app["containers"]`` resolves containers)."""

from __future__ import annotations

from aiohttp import web

from dockyard import errdefs
from dockyard.api.app import json_response, query_bool, query_filters, read_json

routes = web.RouteTableDef()


def _svc(request: web.Request):
    return request.app["networks"]


def _container(request: web.Request, ref: object):
    if not isinstance(ref, str) or not ref:
        raise errdefs.InvalidArgument("no container specified")
    return request.app["containers"].get(ref)


@routes.get("/networks")
async def list_networks(request: web.Request) -> web.Response:
    return json_response(_svc(request).list(query_filters(request)))


@routes.post("/networks/create")
async def create(request: web.Request) -> web.Response:
    body = await read_json(request)
    if not isinstance(body, dict):
        raise errdefs.InvalidArgument("invalid JSON body")
    return json_response(await _svc(request).create(body), status=201)


@routes.post("/networks/prune")
async def prune(request: web.Request) -> web.Response:
    return json_response(await _svc(request).prune(query_filters(request)))


@routes.get("/networks/{id}")
async def inspect(request: web.Request) -> web.Response:
    ref = request.match_info["id"]
    scope = request.query.get("scope", "")
    if scope and scope != "local":
        raise errdefs.NotFound(f"network {ref} not found")
    return json_response(_svc(request).inspect(ref, verbose=query_bool(request, "verbose")))


@routes.delete("/networks/{id}")
async def remove(request: web.Request) -> web.Response:
    await _svc(request).remove(request.match_info["id"])
    return web.Response(status=204)


@routes.post("/networks/{id}/connect")
async def connect(request: web.Request) -> web.Response:
    body = await read_json(request, default={}) or {}
    container = _container(request, body.get("Container"))
    config = body.get("EndpointConfig") or {}
    await _svc(request).connect(request.match_info["id"], container, config)
    return web.Response(status=200)


@routes.post("/networks/{id}/disconnect")
async def disconnect(request: web.Request) -> web.Response:
    body = await read_json(request, default={}) or {}
    container = _container(request, body.get("Container"))
    await _svc(request).disconnect(
        request.match_info["id"], container, force=bool(body.get("Force"))
    )
    return web.Response(status=200)
