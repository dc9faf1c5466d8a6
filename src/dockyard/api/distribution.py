"""Registry endpoints of the Engine API: pull (``POST /images/create`` with
``fromImage``, dispatched here from ``api/images.py``), ``POST
/images/{name}/push`` and ``POST /auth``.

Pull and push answer with a JSON-lines progress stream. As dockerd, the
status line goes out with the first message: an error before it (unknown
repository, unreachable registry) is a plain HTTP error; after it, an
``{"errorDetail":…,"error":…}`` line ends the stream.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from aiohttp import web

from dockyard import errdefs
from dockyard.image import reference

routes = web.RouteTableDef()
log = logging.getLogger(__name__)


def _options(request: web.Request) -> Any:
    from dockyard.distribution.client import Options

    config = request.app["config"]
    return Options(
        mirrors=tuple(config.registry_mirrors or ()),
        insecure=tuple(config.insecure_registries or ()),
        certs_dir=config.certs_dir,
    )


def _meta(request: web.Request) -> Any:
    from dockyard.distribution.v2metadata import V2Metadata

    return V2Metadata(request.app["db"])


def _auth(request: web.Request) -> Any:
    from dockyard.distribution.auth import decode_registry_auth

    return decode_registry_auth(request.headers.get("X-Registry-Auth"))


class _Stream:
    """A progress stream whose HTTP status is sent with the first message."""

    def __init__(self, request: web.Request) -> None:
        self.request = request
        self.response: web.StreamResponse | None = None

    async def emit(self, msg: dict[str, Any]) -> None:
        from dockyard.distribution.progress import encode

        if self.response is None:
            self.response = web.StreamResponse(headers={"Content-Type": "application/json"})
            self.response.enable_chunked_encoding()
            await self.response.prepare(self.request)
        await self.response.write(encode(msg))

    async def run(self, work: Any) -> web.StreamResponse:
        from dockyard.distribution.progress import encode, error

        try:
            await work
        except errdefs.DockyardError as exc:
            if self.response is None:
                raise
            await self.response.write(encode(error(exc.message)))
        except Exception as exc:  # an engine bug: still end the stream readably
            log.exception("registry operation failed")
            if self.response is None:
                raise errdefs.System(str(exc) or type(exc).__name__)
            await self.response.write(encode(error(str(exc) or type(exc).__name__)))
        if self.response is None:
            await self.emit({"status": ""})  # nothing was said: still a valid stream
        assert self.response is not None
        await self.response.write_eof()
        return self.response


def _pull_reference(image: str, tag: str) -> tuple[reference.Reference, bool]:
    """(reference, all tags?) from ``fromImage`` and ``tag`` as dockerd reads them."""
    ref = reference.parse_named(image)
    if tag:
        if tag.startswith("sha256:"):
            ref = reference.parse_named(f"{ref.name()}@{tag}")
        else:
            ref = ref.with_tag(tag)
    return ref, ref.tag is None and ref.digest is None


async def pull(request: web.Request) -> web.StreamResponse:
    """``POST /images/create?fromImage=…&tag=…&platform=…``."""
    from dockyard.distribution.pull import Puller

    ref, all_tags = _pull_reference(request.query["fromImage"], request.query.get("tag", ""))
    auth = _auth(request)
    puller = Puller(request.app["images"], _options(request), _meta(request))
    stream = _Stream(request)
    work = puller.pull(
        ref,
        emit=stream.emit,
        auth=auth,
        platform=request.query.get("platform") or None,
        all_tags=all_tags,
    )
    return await stream.run(work)


@routes.post("/images/{name:.*}/push")
async def push(request: web.Request) -> web.StreamResponse:
    from dockyard.distribution.push import Pusher

    ref = reference.parse_named(request.match_info["name"])
    tag = request.query.get("tag", "")
    if tag:
        ref = ref.with_tag(tag)
    auth = _auth(request)
    pusher = Pusher(request.app["images"], _options(request), _meta(request))
    stream = _Stream(request)
    return await stream.run(pusher.push(ref, emit=stream.emit, auth=auth))


@routes.post("/auth")
async def auth(request: web.Request) -> web.Response:
    from dockyard.distribution.auth import auth_from_json
    from dockyard.distribution.login import login

    try:
        body = json.loads(await request.read() or b"{}")
    except ValueError as exc:
        raise errdefs.InvalidArgument(f"invalid JSON: {exc}")
    creds = auth_from_json(body)
    token = await login(creds, _options(request))
    return web.json_response({"Status": "Login Succeeded", "IdentityToken": token})
