"""Login against an OAuth2 token server that hands out refresh tokens:
``/auth`` returns the refresh token as the IdentityToken, and a later
request with that identity token uses the ``refresh_token`` grant. The peer
is a small aiohttp app speaking Docker's token protocol on loopback."""

from __future__ import annotations

import asyncio
import base64

from aiohttp import web

from dockyard.distribution.auth import AuthConfig
from dockyard.distribution.client import Options, Registry, endpoints
from dockyard.distribution.login import login


def _app(seen: list[dict]) -> web.Application:
    async def v2(request: web.Request) -> web.Response:
        if request.headers.get("Authorization", "").startswith("Bearer access-"):
            return web.json_response({})
        realm = f"http://{request.host}/token"
        challenge = f'Bearer realm="{realm}",service="test"'
        return web.json_response({}, status=401, headers={"WWW-Authenticate": challenge})

    async def token(request: web.Request) -> web.Response:
        form = dict(await request.post()) if request.method == "POST" else {}
        seen.append({"method": request.method, **dict(request.query), **form})
        if request.method == "POST":
            if form.get("grant_type") == "refresh_token" and form.get("refresh_token") == "r-1":
                return web.json_response({"access_token": "access-2", "expires_in": 300})
            return web.json_response({"error": "invalid_grant"}, status=401)
        creds = base64.b64encode(b"alice:pw").decode()
        if request.headers.get("Authorization") != f"Basic {creds}":
            return web.json_response({"details": "bad credentials"}, status=401)
        body = {"token": "access-1", "expires_in": 300}
        if request.query.get("offline_token") == "true":
            body["refresh_token"] = "r-1"
        return web.json_response(body)

    app = web.Application()
    app.router.add_get("/v2/", v2)
    app.router.add_route("*", "/token", token)
    return app


async def _scenario() -> tuple[str, str, list[dict]]:
    seen: list[dict] = []
    runner = web.AppRunner(_app(seen))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    host = f"127.0.0.1:{port}"
    try:
        identity = await login(AuthConfig("alice", "pw", host), Options())
        endpoint = endpoints(host, Options())[0]
        async with Registry(
            endpoint, AuthConfig(identitytoken=identity, serveraddress=host)
        ) as reg:
            access = await reg.token(["repository:x/y:pull"])
    finally:
        await runner.cleanup()
    return identity, access, seen


def test_login_returns_the_refresh_token_and_it_is_used():
    identity, access, seen = asyncio.run(_scenario())
    assert identity == "r-1"
    assert access == "access-2"
    first = seen[0]
    assert first["method"] == "GET"
    assert (first["offline_token"], first["client_id"], first["account"]) == (
        "true",
        "docker",
        "alice",
    )
    last = seen[-1]
    assert last["method"] == "POST" and last["grant_type"] == "refresh_token"
    assert last["client_id"] == "docker" and last["scope"] == "repository:x/y:pull"
