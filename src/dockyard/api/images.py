"""The images endpoints of the Engine API: list, inspect, history, tag,
remove, and ``POST /images/create`` (import from the request body, or a
pull: ``fromImage`` is handed to ``api/distribution.py``).

Image names hold slashes and colons, so the name routes use ``{name:.*}``;
aiohttp matches in registration order, so the fixed paths come first.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from aiohttp import web

from dockyard import errdefs
from dockyard.api.app import json_response, query_bool, query_filters, request_version
from dockyard.api.body import with_body
from dockyard.image import reference

routes = web.RouteTableDef()

_NL = b"\r\n"  # dockerd's JSON-stream line ending


def _service(request: web.Request):
    return request.app["images"]


@routes.get("/images/json")
async def list_images(request: web.Request) -> web.Response:
    filters = query_filters(request)
    if "filter" in request.query:  # the pre-1.28 reference filter
        filters.setdefault("reference", []).append(request.query["filter"])
    items = await asyncio.to_thread(
        _service(request).list, all=query_bool(request, "all"), filters=filters
    )
    if request_version(request) < (1, 43):
        for item in items:
            if not item["RepoTags"] and not item["RepoDigests"]:
                item["RepoTags"] = ["<none>:<none>"]
                item["RepoDigests"] = ["<none>@<none>"]
    return json_response(items)


@routes.post("/images/create")
async def create_image(request: web.Request) -> web.StreamResponse:
    if request.query.get("fromImage"):
        from dockyard.api.distribution import pull

        return await pull(request)
    source = request.query.get("fromSrc", "")
    if source != "-":
        if not source:
            raise errdefs.InvalidArgument("fromImage or fromSrc is required")
        raise errdefs.NotImplemented("importing from a URL is not supported")
    ref = _import_reference(request.query.get("repo", ""), request.query.get("tag", ""))
    message = request.query.get("message") or f"Imported from {source}"
    changes = request.query.getall("changes", [])
    image_id = await with_body(
        request,
        lambda body: _service(request).import_image(
            body,  # type: ignore[arg-type]
            reference=ref.string() if ref else None,
            changes=changes,
            message=message,
        ),
    )
    body = json.dumps({"status": image_id}).encode() + _NL
    return web.Response(body=body, content_type="application/json")


def _import_reference(repo: str, tag: str) -> reference.Reference | None:
    if not repo:
        return None
    named = reference.parse_named(repo)
    if named.digest is not None:
        raise errdefs.InvalidArgument("cannot import digest reference")
    return reference.parse_repo_tag(repo, tag or None)


@routes.get("/images/{name:.*}/json")
async def inspect_image(request: web.Request) -> web.Response:
    data = await asyncio.to_thread(_service(request).inspect, request.match_info["name"])
    return json_response(data)


@routes.get("/images/{name:.*}/history")
async def image_history(request: web.Request) -> web.Response:
    data = await asyncio.to_thread(_service(request).history, request.match_info["name"])
    return json_response(data)


@routes.post("/images/{name:.*}/tag")
async def tag_image(request: web.Request) -> web.Response:
    repo = request.query.get("repo", "")
    if not repo:
        raise errdefs.InvalidArgument("repository name must have at least one component")
    # As dockerd: the new name is checked before the source image is looked up.
    reference.parse_repo_tag(repo, request.query.get("tag") or None)
    await asyncio.to_thread(
        _service(request).tag, request.match_info["name"], repo, request.query.get("tag") or None
    )
    return web.Response(status=201)


@routes.delete("/images/{name:.*}")
async def remove_image(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    records: list[dict[str, Any]] = await asyncio.to_thread(
        _service(request).remove,
        name,
        force=query_bool(request, "force"),
        prune=not query_bool(request, "noprune"),
        containers_using=request.app["containers_using_image"],
    )
    return json_response(records)
