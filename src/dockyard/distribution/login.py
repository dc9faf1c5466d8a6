"""``POST /auth``: check credentials against a registry (moby's ``loginV2``).

The server address may be a URL (``https://index.docker.io/v1/``,
``http://127.0.0.1:5000``) or a bare host; Docker Hub's legacy index
address means ``registry-1.docker.io``. With a token server, login asks
for offline access; a refresh token it returns is the ``IdentityToken`` the
CLI stores instead of the password (later pulls and pushes use the
``refresh_token`` grant).
"""

from __future__ import annotations

from dockyard import errdefs
from dockyard.distribution.auth import AuthConfig, basic_header
from dockyard.distribution.client import Options, Registry, endpoints
from dockyard.image.reference import DEFAULT_DOMAIN

INDEX_SERVER = "https://index.docker.io/v1/"


def registry_host(server: str) -> str:
    """``host[:port]`` of a server address; Docker Hub's names map to docker.io."""
    host = server.strip()
    if "://" in host:
        host = host.split("://", 1)[1]
    host = host.split("/", 1)[0]
    if host in ("", "index.docker.io", "docker.io", "registry-1.docker.io"):
        return DEFAULT_DOMAIN
    return host


async def login(auth: AuthConfig, options: Options) -> str:
    """Verify ``auth`` with the registry; the identity token to keep ("" if none)."""
    domain = registry_host(auth.serveraddress or INDEX_SERVER)
    endpoint = endpoints(domain, options, push=True)[0]
    async with Registry(endpoint, auth, certs_dir=options.certs_dir) as reg:
        if reg.challenge("bearer") is not None:
            await reg.token([], offline=True)
            return reg.refresh_token
        if reg.challenge("basic") is None:
            return ""  # the registry asks for nothing
        url = reg.url("/v2/")
        async with reg.session.get(url, headers={"Authorization": basic_header(auth)}) as resp:
            await resp.read()
            if resp.status == 200:
                return ""
            text = f"{resp.status} {resp.reason or ''}".strip()
        raise errdefs.Unauthorized(f"login attempt to {url} failed with status: {text}")
