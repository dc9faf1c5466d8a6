"""The registry HTTP client: endpoints, TLS, the auth challenge flow and the
Distribution API calls a pull or push makes.

Endpoints (moby's ``registry.Service``): docker.io means the mirrors given
by ``--registry-mirror`` (pull only), then ``https://registry-1.docker.io``.
Any other host is HTTPS with the system CAs plus ``<certs_dir>/<host>/*.crt``
and a client certificate ``*.cert``/``*.key`` from the same directory; a
host on loopback or listed by ``--insecure-registry`` (host or CIDR) is
tried over HTTPS without verification first, then over plain HTTP.

Auth: ``GET /v2/`` answers 401 with ``WWW-Authenticate``. ``Bearer`` means:
fetch a token from ``realm`` (``service``, ``scope``; basic credentials if we
have any, or the refresh-token grant for an identity token) and send it;
``Basic`` means send the credentials. Tokens are cached per scope for the
life of one ``Registry`` (one pull or push).

aiohttp's client is imported here only, so an idle daemon never loads it.
"""

from __future__ import annotations

import errno
import ipaddress
import json
import os
import re
import ssl
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urljoin

import aiohttp

from dockyard import errdefs
from dockyard.distribution import manifests
from dockyard.distribution.auth import (
    ANONYMOUS,
    AuthConfig,
    Challenge,
    basic_header,
    parse_challenges,
)
from dockyard.image.reference import DEFAULT_DOMAIN

DOCKER_HUB_URL = "https://registry-1.docker.io"
USER_AGENT = "docker/28.0.0 go/go1.23 os/linux arch/amd64 (dockyard)"
_CHUNK = 1 << 20
NO_BASIC_AUTH = "no basic auth credentials"


@dataclass(frozen=True)
class Options:
    """The daemon's registry settings."""

    mirrors: tuple[str, ...] = ()
    insecure: tuple[str, ...] = ()
    certs_dir: Path = Path("/etc/dockyard/certs.d")


@dataclass(frozen=True)
class Endpoint:
    url: str  # scheme://host[:port], no trailing slash
    host: str  # host[:port]: names the certs.d directory and error messages
    verify: bool = True
    mirror: bool = False
    fallback: tuple[Endpoint, ...] = field(default=(), compare=False)


def _host_of(url: str) -> str:
    return url.split("://", 1)[-1].split("/", 1)[0]


def is_insecure(host: str, insecure: tuple[str, ...]) -> bool:
    """Loopback, or a host/CIDR listed by ``--insecure-registry``."""
    name = host.rsplit(":", 1)[0] if host.count(":") == 1 or host.startswith("[") else host
    name = name.strip("[]")
    if name == "localhost":
        return True
    if host in insecure or name in insecure:
        return True
    try:
        addr = ipaddress.ip_address(name)
    except ValueError:
        return False
    if addr.is_loopback:
        return True
    for item in insecure:
        try:
            if addr in ipaddress.ip_network(item, strict=False):
                return True
        except ValueError:
            continue
    return False


def endpoints(domain: str, options: Options, *, push: bool = False) -> list[Endpoint]:
    """Where to reach ``domain``, in order of preference."""
    if domain == DEFAULT_DOMAIN:
        found = []
        if not push:
            for mirror in options.mirrors:
                url = mirror.rstrip("/")
                host = _host_of(url)
                verify = url.startswith("https://") and not is_insecure(host, options.insecure)
                found.append(Endpoint(url, host, verify, mirror=True))
        return [*found, Endpoint(DOCKER_HUB_URL, "registry-1.docker.io")]
    if is_insecure(domain, options.insecure):
        plain = Endpoint(f"http://{domain}", domain)
        return [Endpoint(f"https://{domain}", domain, verify=False, fallback=(plain,))]
    return [Endpoint(f"https://{domain}", domain)]


def ssl_context(endpoint: Endpoint, certs_dir: Path) -> ssl.SSLContext | bool:
    """TLS for an endpoint: certs.d CAs and client certificates."""
    if not endpoint.url.startswith("https://"):
        return False
    directory = certs_dir / endpoint.host
    if not endpoint.verify:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    else:
        ctx = ssl.create_default_context()
    if directory.is_dir():
        for entry in sorted(directory.iterdir()):
            if entry.suffix == ".crt" and endpoint.verify:
                ctx.load_verify_locations(cafile=str(entry))
            elif entry.suffix == ".cert":
                key = entry.with_suffix(".key")
                if not key.exists():
                    raise errdefs.InvalidArgument(f"missing key {key.name} for client certificate")
                ctx.load_cert_chain(str(entry), str(key))
    return ctx


# -- errors --------------------------------------------------------------


def connection_error(method: str, url: str, exc: BaseException) -> errdefs.DockyardError:
    """Go's ``*url.Error`` text: ``Get "https://h/v2/": dial tcp h: connect: ...``."""
    verb = method.capitalize()
    host = _host_of(url)
    if not ((":" in host) and not host.endswith("]")):
        host += ":443" if url.startswith("https") else ":80"
    os_error = getattr(exc, "os_error", None) or exc
    code = getattr(os_error, "errno", None)
    dns_error = getattr(aiohttp, "ClientConnectorDNSError", ())
    if isinstance(exc, dns_error):
        reason = f"dial tcp: lookup {host.rsplit(':', 1)[0]}: no such host"
    elif (tls := tls_reason(exc)) is not None:
        reason = tls
    elif code is not None and code in errno.errorcode:
        reason = f"dial tcp {host}: connect: {os.strerror(code).lower()}"
    elif isinstance(exc, TimeoutError):
        reason = f"dial tcp {host}: i/o timeout"
    else:
        reason = str(exc) or type(exc).__name__
    return errdefs.System(f'{verb} "{url}": {reason}')


# OpenSSL verify codes -> Go's x509 texts
_X509 = {
    10: "x509: certificate has expired or is not yet valid",
    18: "x509: certificate signed by unknown authority",
    19: "x509: certificate signed by unknown authority",
    20: "x509: certificate signed by unknown authority",
    21: "x509: certificate signed by unknown authority",
    62: "x509: certificate is not valid for the requested name",
}
# OpenSSL reasons -> Go's crypto/tls texts
_TLS = {
    "TLSV13_ALERT_CERTIFICATE_REQUIRED": "remote error: tls: certificate required",
    "SSLV3_ALERT_BAD_CERTIFICATE": "remote error: tls: bad certificate",
    "TLSV1_ALERT_UNKNOWN_CA": "remote error: tls: unknown certificate authority",
    "SSLV3_ALERT_HANDSHAKE_FAILURE": "remote error: tls: handshake failure",
    "WRONG_VERSION_NUMBER": "http: server gave HTTP response to HTTPS client",
}


def tls_reason(exc: BaseException) -> str | None:
    """Go's words for a TLS failure anywhere in ``exc``'s chain, else None."""
    seen: list[BaseException] = []
    todo: list[BaseException | None] = [exc]
    while todo:
        err = todo.pop()
        if err is None or any(err is e for e in seen):
            continue
        seen.append(err)
        inner = getattr(err, "certificate_error", None) or getattr(err, "os_error", None)
        if inner is not None and inner is not err:  # aiohttp's wrappers
            todo.append(inner)
            continue
        code = getattr(err, "verify_code", None)
        if isinstance(err, ssl.SSLCertVerificationError) and code is not None:
            text = _X509.get(code, f"x509: {getattr(err, 'verify_message', err)}")
            return f"tls: failed to verify certificate: {text}"
        found = re.search(r"\[SSL: ([A-Z0-9_]+)\]", str(err))
        if isinstance(err, ssl.SSLError) or found:
            name = str(getattr(err, "reason", None) or (found.group(1) if found else ""))
            if name == "CERTIFICATE_VERIFY_FAILED":
                unknown = re.search(r"issuer|self.signed", str(err))
                text = _X509[20] if unknown else "x509: certificate is not valid"
                return f"tls: failed to verify certificate: {text}"
            return _TLS.get(name, f"tls: {name.lower().replace('_', ' ') or err}")
        todo += [err.__cause__, err.__context__]
    return None


def registry_error(status: int, body: bytes, *, fallback: str = "") -> errdefs.DockyardError:
    """A registry's JSON error list as Docker prints it (``code words: message``)."""
    text = ""
    try:
        errors = json.loads(body).get("errors") or []
        parts = [
            f"{str(e.get('code', 'unknown')).lower().replace('_', ' ')}: {e.get('message', '')}"
            for e in errors
            if isinstance(e, dict)
        ]
        if len(parts) == 1:
            text = parts[0]
        elif parts:
            text = "errors:\n" + "\n".join(parts) + "\n"
    except (ValueError, AttributeError):
        pass
    if not text:
        text = fallback or f"unexpected status code {status}"
    if status == 401:
        return errdefs.Unauthorized(text)
    if status == 403:
        return errdefs.Forbidden(text)
    if status == 404:
        return errdefs.NotFound(text)
    if status == 400:
        return errdefs.InvalidArgument(text)
    return errdefs.System(text)


def _status_text(status: int) -> str:
    from http import HTTPStatus

    try:
        return f"{status} {HTTPStatus(status).phrase}"
    except ValueError:
        return str(status)


# -- the client ------------------------------------------------------------


class Registry:
    """One registry endpoint as seen by one pull or push (an async context
    manager around an aiohttp session)."""

    def __init__(self, endpoint: Endpoint, auth: AuthConfig = ANONYMOUS, *,
                 certs_dir: Path = Options.certs_dir) -> None:  # fmt: skip
        self.endpoint = endpoint
        self.auth = auth
        self._certs_dir = certs_dir
        self._session: aiohttp.ClientSession | None = None
        self._challenges: list[Challenge] | None = None
        self._tokens: dict[str, tuple[str, float]] = {}
        self.refresh_token = ""  # from a token server asked for offline access

    async def __aenter__(self) -> Registry:
        """Open and ping: the endpoint (HTTPS or HTTP) is settled before any
        URL is built from it."""
        await self.open()
        try:
            await self.ping()
        except BaseException:
            await self.close()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def open(self) -> None:
        self._session = self._new_session(self.endpoint)

    def _new_session(self, endpoint: Endpoint) -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(
            ssl=ssl_context(endpoint, self._certs_dir), limit=16, force_close=False
        )
        return aiohttp.ClientSession(
            connector=connector,
            headers={"User-Agent": USER_AGENT},
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=30, sock_read=300),
            auto_decompress=False,
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    @property
    def session(self) -> aiohttp.ClientSession:
        assert self._session is not None, "Registry used outside its context"
        return self._session

    def url(self, path: str) -> str:
        return f"{self.endpoint.url}{path}"

    # -- auth ----------------------------------------------------------
    async def ping(self) -> None:
        """``GET /v2/``: reachability and the auth challenge; an insecure
        endpoint falls back from HTTPS to HTTP here."""
        try:
            await self._ping_once()
        except errdefs.System:
            if not self.endpoint.fallback:
                raise
            await self.close()
            self.endpoint = self.endpoint.fallback[0]
            await self.open()
            await self._ping_once()

    async def _ping_once(self) -> None:
        url = self.url("/v2/")
        try:
            async with self.session.get(url, allow_redirects=True) as resp:
                await resp.read()
                if resp.status == 401:
                    self._challenges = parse_challenges(resp.headers.get("WWW-Authenticate", ""))
                elif resp.status >= 400 and resp.status != 404:
                    raise errdefs.System(
                        f'Get "{url}": unexpected status code {_status_text(resp.status)}'
                    )
                else:
                    self._challenges = []
        except aiohttp.ClientError as exc:
            raise connection_error("GET", url, exc)
        except (OSError, TimeoutError) as exc:
            raise connection_error("GET", url, exc)

    def challenge(self, scheme: str) -> Challenge | None:
        for challenge in self._challenges or []:
            if challenge.scheme == scheme:
                return challenge
        return None

    async def authorization(self, scopes: list[str]) -> str | None:
        """The Authorization header for requests needing ``scopes``."""
        if self._challenges is None:
            await self.ping()
        if self.challenge("bearer") is not None:
            return "Bearer " + await self.token(scopes)
        if self.challenge("basic") is not None and self.auth.username:
            return basic_header(self.auth)
        return None

    async def token(self, scopes: list[str], *, offline: bool = False) -> str:
        """A bearer token for ``scopes``. ``offline`` (login) asks the token
        server for a refresh token too (``offline_token=true``), kept in
        ``refresh_token``: the identity token ``/auth`` hands back."""
        if self.auth.registrytoken:
            return self.auth.registrytoken
        key = " ".join(scopes)
        cached = self._tokens.get(key)
        if cached and cached[1] > time.monotonic():
            return cached[0]
        challenge = self.challenge("bearer")
        assert challenge is not None
        realm = challenge.params.get("realm", "")
        if not realm:
            raise errdefs.Unauthorized("bearer challenge without a realm")
        params: list[tuple[str, str]] = []
        if challenge.params.get("service"):
            params.append(("service", challenge.params["service"]))
        params += [("scope", s) for s in scopes]
        try:
            if self.auth.identitytoken:
                form = [
                    ("grant_type", "refresh_token"),
                    ("refresh_token", self.auth.identitytoken),
                    ("client_id", "docker"),
                    *params,
                ]
                ctx = self.session.post(realm, data=urlencode(form), headers={
                    "Content-Type": "application/x-www-form-urlencoded"})  # fmt: skip
            else:
                headers = {}
                if self.auth.username:
                    headers["Authorization"] = basic_header(self.auth)
                    params.append(("account", self.auth.username))
                    if offline:
                        params += [("offline_token", "true"), ("client_id", "docker")]
                url = realm + ("&" if "?" in realm else "?") + urlencode(params)
                ctx = self.session.get(url, headers=headers)
            async with ctx as resp:
                body = await resp.read()
                if resp.status >= 400:
                    err = registry_error(resp.status, body)
                    if resp.status == 401 and "errors" not in body.decode("utf-8", "replace"):
                        err = errdefs.Unauthorized(
                            f'Get "{realm}": unauthorized: incorrect username or password'
                        )
                    raise err
        except aiohttp.ClientError as exc:
            raise connection_error("GET", realm, exc)
        try:
            data = json.loads(body)
            token = data.get("token") or data.get("access_token")
        except (ValueError, AttributeError):
            token = None
        if not token:
            raise errdefs.Unauthorized(f"token server {realm} returned no token")
        if isinstance(data.get("refresh_token"), str):
            self.refresh_token = data["refresh_token"]
        expires = int(data.get("expires_in") or 60)
        self._tokens[key] = (token, time.monotonic() + max(expires - 5, 1))
        return token

    async def request(
        self,
        method: str,
        url: str,
        *,
        scopes: list[str],
        headers: dict[str, str] | None = None,
        data: Any = None,
        retry_auth: bool = True,
        shown_method: str | None = None,
    ) -> aiohttp.ClientResponse:
        """Send with auth; a 401 drops the cached token and retries once (only
        for bodies that can be sent again: None or bytes). The caller must
        release the response. ``shown_method`` names the request in errors
        where dockerd's request would differ (it HEADs a tag's manifest first)."""
        hdrs = dict(headers or {})
        auth = await self.authorization(scopes)
        if auth:
            hdrs["Authorization"] = auth
        elif self.challenge("basic") is not None and self.challenge("bearer") is None:
            # Go's basic auth handler refuses before sending anything. A
            # transport error, so not a 401: on a 401 from the daemon the
            # docker CLI would prompt for a login.
            verb = (shown_method or method).capitalize()
            raise errdefs.System(f'{verb} "{url}": {NO_BASIC_AUTH}')
        try:
            resp = await self.session.request(method, url, headers=hdrs, data=data)
        except aiohttp.ClientError as exc:
            raise connection_error(method, url, exc)
        except (OSError, TimeoutError) as exc:
            raise connection_error(method, url, exc)
        if resp.status == 401 and retry_auth and (data is None or isinstance(data, bytes)):
            challenges = parse_challenges(resp.headers.get("WWW-Authenticate", ""))
            resp.release()
            if challenges:
                self._challenges = challenges
            self._tokens.clear()
            return await self.request(
                method, url, scopes=scopes, headers=headers, data=data, retry_auth=False
            )
        return resp

    async def error(
        self, resp: aiohttp.ClientResponse, fallback: str = ""
    ) -> errdefs.DockyardError:
        body = await resp.read()
        resp.release()
        return registry_error(resp.status, body, fallback=fallback)

    # -- API calls -------------------------------------------------------
    async def get_manifest(self, path: str, ref: str, *, scopes: list[str]) -> tuple[bytes, str]:
        """(body, content type) of a manifest by tag or digest."""
        resp = await self.request(
            "GET",
            self.url(f"/v2/{path}/manifests/{ref}"),
            scopes=scopes,
            headers={"Accept": manifests.ACCEPT},
            shown_method="HEAD" if ":" not in ref else None,
        )
        if resp.status != 200:
            raise await self.error(resp)
        try:
            body = await resp.content.read(4 << 20 + 1)
            if len(body) > 4 << 20:
                raise errdefs.InvalidArgument("manifest too big")
            return body, resp.headers.get("Content-Type", "")
        finally:
            resp.release()

    async def blob_chunks(
        self, path: str, digest: str, *, scopes: list[str]
    ) -> AsyncIterator[bytes]:
        """A blob's bytes as they arrive (redirects followed)."""
        resp = await self.request("GET", self.url(f"/v2/{path}/blobs/{digest}"), scopes=scopes)
        try:
            if resp.status != 200:
                raise await self.error(resp)
            try:
                async for chunk in resp.content.iter_chunked(_CHUNK):
                    yield chunk
            except aiohttp.ClientError as exc:
                raise errdefs.System(f"error pulling blob {digest}: {exc}")
        finally:
            resp.release()

    async def blob_exists(self, path: str, digest: str, *, scopes: list[str]) -> bool:
        resp = await self.request("HEAD", self.url(f"/v2/{path}/blobs/{digest}"), scopes=scopes)
        resp.release()
        if resp.status == 200:
            return True
        if resp.status == 404:
            return False
        if resp.status == 401:
            raise errdefs.Unauthorized("unauthorized: authentication required")
        raise registry_error(resp.status, b"")

    async def start_upload(
        self, path: str, *, scopes: list[str], mount: str | None = None, source: str | None = None
    ) -> str | None:
        """``POST /blobs/uploads/`` (with a cross-repo mount when asked):
        the upload URL, or None when the blob was mounted."""
        url = self.url(f"/v2/{path}/blobs/uploads/")
        if mount and source:
            url += "?" + urlencode({"mount": mount, "from": source})
        resp = await self.request("POST", url, scopes=scopes, data=b"")
        if resp.status == 201 and mount:
            resp.release()
            return None
        if resp.status != 202:
            raise await self.error(resp)
        location = resp.headers.get("Location", "")
        resp.release()
        if not location:
            raise errdefs.System("registry gave no upload location")
        return urljoin(self.url("/"), location)

    async def cancel_upload(self, location: str, *, scopes: list[str]) -> None:
        """Abandon an upload session (best effort: the registry expires it anyway)."""
        try:
            resp = await self.request("DELETE", location, scopes=scopes)
            resp.release()
        except errdefs.DockyardError:
            pass

    async def finish_upload(
        self, location: str, digest: str, *, scopes: list[str], body: Any = None
    ) -> None:
        """PATCH the streamed body (if any), then ``PUT ?digest=``."""
        if body is not None:
            resp = await self.request(
                "PATCH",
                location,
                scopes=scopes,
                data=body,
                headers={"Content-Type": "application/octet-stream"},
                retry_auth=False,
            )
            if resp.status not in (202, 204):
                raise await self.error(resp)
            location = urljoin(location, resp.headers.get("Location", location))
            resp.release()
        sep = "&" if "?" in location else "?"
        resp = await self.request(
            "PUT",
            location + sep + urlencode({"digest": digest}),
            scopes=scopes,
            data=b"",
            headers={"Content-Type": "application/octet-stream"},
        )
        if resp.status != 201:
            raise await self.error(resp)
        resp.release()

    async def put_blob(self, path: str, data: bytes, digest: str, *, scopes: list[str]) -> None:
        """Monolithic upload of a small blob (the image config)."""
        location = await self.start_upload(path, scopes=scopes)
        assert location is not None
        sep = "&" if "?" in location else "?"
        resp = await self.request(
            "PUT",
            location + sep + urlencode({"digest": digest}),
            scopes=scopes,
            data=data,
            headers={"Content-Type": "application/octet-stream"},
        )
        if resp.status != 201:
            raise await self.error(resp)
        resp.release()

    async def put_manifest(
        self, path: str, ref: str, data: bytes, media_type: str, *, scopes: list[str]
    ) -> None:
        resp = await self.request(
            "PUT",
            self.url(f"/v2/{path}/manifests/{ref}"),
            scopes=scopes,
            data=data,
            headers={"Content-Type": media_type},
        )
        if resp.status not in (200, 201):
            raise await self.error(resp)
        resp.release()

    async def tags(self, path: str, *, scopes: list[str]) -> list[str]:
        """All tags of a repository (following ``Link`` pagination)."""
        out: list[str] = []
        url: str | None = self.url(f"/v2/{path}/tags/list")
        while url:
            resp = await self.request("GET", url, scopes=scopes)
            if resp.status != 200:
                raise await self.error(resp)
            data = json.loads(await resp.read())
            link = resp.headers.get("Link", "")
            resp.release()
            out += list(data.get("tags") or [])
            url = None
            if link.startswith("<") and 'rel="next"' in link:
                url = urljoin(self.url("/"), link[1 : link.index(">")])
        return out
