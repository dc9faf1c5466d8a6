"""The registry's HTTP edge: an aiohttp app serving the OCI Distribution
Spec v1.1 (``/v2/...``) and the token endpoint (``/token``).

Handlers authorize, call the storage and shape responses; registry errors
become the spec's JSON bodies in one middleware. Bodies are streamed: blob
GETs are ``FileResponse`` (sendfile, Range → 206), uploads are read from the
socket and appended in 1 MiB pieces, and the final hash check and fsync run
in a thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from aiohttp import web

from dockyard.registry import auth, gc, manifests
from dockyard.registry.errors import RegistryError
from dockyard.registry.names import check_digest, check_name, check_reference, is_digest
from dockyard.registry.storage import FilesystemStorage, FileUpload

log = logging.getLogger(__name__)

API_VERSION = {"Docker-Distribution-API-Version": "registry/2.0"}
_ROUTES = [
    ("catalog", re.compile(r"_catalog")),
    ("tags", re.compile(r"(?P<name>.+)/tags/list")),
    ("manifest", re.compile(r"(?P<name>.+)/manifests/(?P<ref>[^/]+)")),
    ("upload", re.compile(r"(?P<name>.+)/blobs/uploads/(?P<uuid>[^/]*)")),
    ("blob", re.compile(r"(?P<name>.+)/blobs/(?P<digest>[^/]+)")),
    ("referrers", re.compile(r"(?P<name>.+)/referrers/(?P<digest>[^/]+)")),
]
_RANGE_RE = re.compile(r"(?:bytes[= ])?(\d+)-(\d+)")


@dataclass(frozen=True)
class Config:
    root: Path
    auth: auth.Mode = "none"
    htpasswd: Path | None = None
    token_realm: str | None = None  # default: <scheme>://<host>/token of the request
    service: str = "dockyard-registry"
    anonymous_pull: bool = False
    gc_interval: float = 0.0  # seconds between online collections; 0 = never
    gc_grace: float = 3600.0


def _pull(name: str) -> auth.Scope:
    return auth.Scope("repository", name, ("pull",))


def _range(offset: int) -> str:
    return f"0-{max(offset - 1, 0)}"


class Registry:
    """The registry: configuration, storage and the request handlers."""

    def __init__(self, config: Config, storage: FilesystemStorage | None = None) -> None:
        self.config = config
        self.storage = storage or FilesystemStorage(config.root)
        self.htpasswd = auth.Htpasswd(config.htpasswd) if config.htpasswd else None
        self.tokens = auth.TokenIssuer(config.service)
        if config.auth != "none" and self.htpasswd is None:
            raise ValueError(f"--auth {config.auth} needs --htpasswd")

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._errors])
        app.router.add_get("/token", self.token)
        app.router.add_post("/token", self.token)
        app.router.add_route("*", "/v2", self.base)
        app.router.add_route("*", "/v2/", self.base)
        app.router.add_route("*", "/v2/{tail:.+}", self.dispatch)
        if self.config.gc_interval > 0:
            app.cleanup_ctx.append(self._gc_loop)
        return app

    @web.middleware
    async def _errors(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        try:
            response = await handler(request)
        except RegistryError as exc:
            body = exc.body() if request.method != "HEAD" else None
            response = web.Response(
                status=exc.status, body=body, content_type="application/json",
                headers=exc.headers,
            )  # fmt: skip
        except web.HTTPException as exc:
            exc.headers.update(API_VERSION)
            raise
        if not response.prepared:
            response.headers.update(API_VERSION)
        return response

    async def _gc_loop(self, app: web.Application) -> AsyncIterator[None]:
        async def loop() -> None:
            while True:
                await asyncio.sleep(self.config.gc_interval)
                try:
                    report = await asyncio.to_thread(
                        gc.collect, self.storage, grace=self.config.gc_grace
                    )
                    log.info("gc: %d blobs deleted", len(report.deleted))
                except Exception:
                    log.exception("gc failed")

        task = asyncio.create_task(loop())
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    # auth ------------------------------------------------------------------
    async def _authorize(self, request: web.Request, need: auth.Scope | None) -> None:
        mode = self.config.auth
        if mode == "none":
            return
        header = request.headers.get("Authorization")
        anonymous_ok = (
            self.config.anonymous_pull
            and need is not None
            and need.type == "repository"
            and need.actions == ("pull",)
        )
        error = None
        if mode == "htpasswd":
            creds = auth.parse_basic(header)
            if creds is not None and await self._check_password(*creds):
                return
            if creds is None and anonymous_ok:
                return
        else:
            token = auth.parse_bearer(header)
            claims = self.tokens.verify(token) if token else None
            if claims is not None and (need is None or auth.allows(claims, need)):
                return
            if token is None and anonymous_ok:
                return
            if claims is not None:
                error = "insufficient_scope"
        realm = self.config.token_realm or f"{request.scheme}://{request.host}/token"
        if mode == "htpasswd":
            realm = "Registry Realm"
        challenge = auth.challenge(
            mode, realm=realm, service=self.config.service, need=need, error=error
        )
        raise RegistryError(
            "UNAUTHORIZED",
            detail=[{"Type": need.type, "Name": need.name, "Action": a} for a in need.actions]
            if need
            else None,
            headers={"WWW-Authenticate": challenge},
        )

    async def _check_password(self, user: str, password: str) -> bool:
        assert self.htpasswd is not None
        if self.htpasswd.cached(user, password):
            return True
        return await asyncio.to_thread(self.htpasswd.check, user, password)

    async def token(self, request: web.Request) -> web.Response:
        if self.htpasswd is None:
            raise RegistryError("UNSUPPORTED", "no token service configured", status=404)
        query: Any = request.query
        creds = auth.parse_basic(request.headers.get("Authorization"))
        if request.method == "POST":
            query = await request.post()
            if query.get("grant_type") != "password":
                raise RegistryError("UNSUPPORTED", "only grant_type=password", status=400)
            creds = (str(query.get("username", "")), str(query.get("password", "")))
        if creds is not None and not await self._check_password(*creds):
            raise RegistryError("UNAUTHORIZED", "invalid username or password")
        scopes = [
            auth.Scope.parse(s)
            for value in query.getall("scope", [])
            for s in str(value).split()
        ]  # fmt: skip
        granted = auth.grant(
            scopes, authenticated=creds is not None, anonymous_pull=self.config.anonymous_pull
        )
        subject = creds[0] if creds else ""
        return web.json_response(self.tokens.issue(subject, granted))

    # routing ---------------------------------------------------------------
    async def base(self, request: web.Request) -> web.Response:
        if request.method not in ("GET", "HEAD"):
            raise RegistryError("UNSUPPORTED")
        await self._authorize(request, None)
        return web.json_response({})

    async def dispatch(self, request: web.Request) -> web.StreamResponse:
        tail = request.match_info["tail"]
        for kind, pattern in _ROUTES:
            m = pattern.fullmatch(tail)
            if m is None:
                continue
            handler = getattr(self, f"{kind}_{request.method.lower()}", None)
            if handler is None:
                raise RegistryError("UNSUPPORTED", f"{request.method} not allowed here")
            params = m.groupdict()
            if "name" in params:
                check_name(params["name"])
            return await handler(request, **params)
        raise RegistryError("NAME_INVALID", f"not a registry path: {tail[:200]!r}", status=404)

    # blobs -----------------------------------------------------------------
    async def blob_get(self, request: web.Request, name: str, digest: str) -> web.StreamResponse:
        await self._authorize(request, _pull(name))
        info = self.storage.blob(name, check_digest(digest), touch=request.method == "HEAD")
        return web.FileResponse(
            info.path,
            chunk_size=1 << 20,
            headers={
                "Content-Type": "application/octet-stream",
                "Docker-Content-Digest": info.digest,
                "Cache-Control": "max-age=31536000",
            },
        )

    blob_head = blob_get

    async def blob_delete(self, request: web.Request, name: str, digest: str) -> web.Response:
        await self._authorize(request, auth.Scope("repository", name, ("delete",)))
        self.storage.unlink_blob(name, check_digest(digest))
        return web.Response(status=202, headers={"Content-Length": "0"})

    # uploads ---------------------------------------------------------------
    def _upload_headers(self, name: str, uuid: str, offset: int) -> dict[str, str]:
        return {
            "Location": f"/v2/{name}/blobs/uploads/{uuid}",
            "Range": _range(offset),
            "Docker-Upload-UUID": uuid,
            "Content-Length": "0",
        }

    def _blob_created(self, name: str, digest: str) -> web.Response:
        headers = {"Location": f"/v2/{name}/blobs/{digest}", "Docker-Content-Digest": digest}
        return web.Response(status=201, headers={**headers, "Content-Length": "0"})

    async def upload_post(self, request: web.Request, name: str, uuid: str) -> web.Response:
        if uuid:
            raise RegistryError("UNSUPPORTED", "POST to an upload session")
        await self._authorize(request, auth.Scope("repository", name, ("pull", "push")))
        mount, source = request.query.get("mount"), request.query.get("from")
        if mount is not None:
            check_digest(mount)
            if source is not None:
                check_name(source)
                await self._authorize(request, _pull(source))
            if await asyncio.to_thread(self.storage.mount_blob, name, mount, source):
                return self._blob_created(name, mount)
        session = self.storage.start_upload(name)
        digest = request.query.get("digest")
        if digest is not None:
            check_digest(digest)
            await self._receive(request, name, session, None)
            return await self._finish(name, session, digest)
        return web.Response(status=202, headers=self._upload_headers(name, session, 0))

    async def upload_get(self, request: web.Request, name: str, uuid: str) -> web.Response:
        await self._authorize(request, auth.Scope("repository", name, ("pull", "push")))
        offset = self.storage.upload_offset(name, uuid)
        return web.Response(status=204, headers=self._upload_headers(name, uuid, offset))

    async def upload_delete(self, request: web.Request, name: str, uuid: str) -> web.Response:
        await self._authorize(request, auth.Scope("repository", name, ("pull", "push")))
        self.storage.cancel_upload(name, uuid)
        return web.Response(status=204)

    async def upload_patch(self, request: web.Request, name: str, uuid: str) -> web.Response:
        await self._authorize(request, auth.Scope("repository", name, ("pull", "push")))
        offset = await self._receive(request, name, uuid, request.headers.get("Content-Range"))
        return web.Response(status=202, headers=self._upload_headers(name, uuid, offset))

    async def upload_put(self, request: web.Request, name: str, uuid: str) -> web.Response:
        await self._authorize(request, auth.Scope("repository", name, ("pull", "push")))
        digest = request.query.get("digest")
        if digest is None:
            raise RegistryError("DIGEST_INVALID", "digest missing")
        check_digest(digest)
        self.storage.upload_offset(name, uuid)  # BLOB_UPLOAD_UNKNOWN before reading a body
        if request.body_exists:
            await self._receive(request, name, uuid, request.headers.get("Content-Range"))
        return await self._finish(name, uuid, digest)

    async def _finish(self, name: str, uuid: str, digest: str) -> web.Response:
        info = await asyncio.to_thread(self.storage.finish_upload, name, uuid, digest)
        return self._blob_created(name, info.digest)

    async def _receive(
        self, request: web.Request, name: str, uuid: str, content_range: str | None
    ) -> int:
        """Append the request body to the session; the new offset."""
        upload: FileUpload = self.storage.open_upload(name, uuid)
        try:
            expected: int | None = None
            if content_range:
                m = _RANGE_RE.fullmatch(content_range.strip())
                if m is None:
                    raise RegistryError("RANGE_INVALID", f"bad Content-Range {content_range!r}")
                start, end = int(m[1]), int(m[2])
                length = request.content_length
                if start != upload.offset or end < start or (
                    length is not None and length != end - start + 1
                ):  # fmt: skip
                    raise RegistryError(
                        "RANGE_INVALID",
                        f"range {start}-{end} does not continue at {upload.offset}",
                        headers={
                            k: v
                            for k, v in self._upload_headers(name, uuid, upload.offset).items()
                            if k != "Content-Length"
                        },
                    )
                expected = upload.offset + end - start + 1
            async for chunk in request.content.iter_chunked(1 << 20):
                upload.write(chunk)
            if expected is not None and upload.offset != expected:
                raise RegistryError("SIZE_INVALID", "body shorter than its Content-Range")
        finally:
            upload.close()
        return upload.offset

    # manifests -------------------------------------------------------------
    async def manifest_put(self, request: web.Request, name: str, ref: str) -> web.Response:
        await self._authorize(request, auth.Scope("repository", name, ("pull", "push")))
        check_reference(ref)
        body = await _read_limited(request, manifests.MAX_SIZE + 1)
        parsed = manifests.parse(body, request.headers.get("Content-Type"))
        tags = [] if is_digest(ref) else [ref]
        if is_digest(ref):
            tags += request.query.getall("tag", [])
        refs = [d.digest for d in parsed.blobs if not d.has_urls]
        children = [d.digest for d in parsed.manifests]
        digest_of = "sha256:" + hashlib.sha256(body).hexdigest()
        if is_digest(ref) and ref != digest_of:
            if not ref.startswith("sha256:"):
                raise RegistryError("UNSUPPORTED", "manifests are addressed by sha256")
            raise RegistryError("DIGEST_INVALID", detail={"digest": ref, "actual": digest_of})
        referrer = None
        if parsed.subject is not None:
            entry = manifests.referrer_descriptor(parsed, digest_of, len(body))
            referrer = (parsed.subject.digest, entry)
        digest = await asyncio.to_thread(
            self.storage.put_manifest, name, body, refs, children, tags, referrer
        )
        headers = {
            "Location": f"/v2/{name}/manifests/{digest}",
            "Docker-Content-Digest": digest,
            "Content-Length": "0",
        }
        if parsed.subject is not None:
            headers["OCI-Subject"] = parsed.subject.digest
        response = web.Response(status=201, headers=headers)
        for tag in tags if is_digest(ref) else ():
            response.headers.add("OCI-Tag", tag)
        return response

    async def manifest_get(self, request: web.Request, name: str, ref: str) -> web.Response:
        await self._authorize(request, _pull(name))
        check_reference(ref)
        digest, body = self.storage.get_manifest(name, ref)
        media_type = _media_type(body)
        if not is_digest(ref):
            accept = {
                part.split(";", 1)[0].strip()
                for value in request.headers.getall("Accept", [])
                for part in value.split(",")
            } - {""}
            if accept and media_type not in accept and not accept & {"*/*", "application/*"}:
                raise RegistryError(
                    "MANIFEST_UNKNOWN",
                    f"manifest is {media_type}, which the Accept header does not allow",
                )
        headers = {
            "Docker-Content-Digest": digest,
            "ETag": f'"{digest}"',
            "Content-Length": str(len(body)),
        }
        if request.method == "HEAD":
            response = web.Response(status=200, headers=headers)
            response.content_type = media_type
            return response
        return web.Response(body=body, headers=headers, content_type=media_type)

    manifest_head = manifest_get

    async def manifest_delete(self, request: web.Request, name: str, ref: str) -> web.Response:
        await self._authorize(request, auth.Scope("repository", name, ("delete",)))
        check_reference(ref)
        if is_digest(ref):
            _, body = self.storage.get_manifest(name, ref)
            subject = _subject(body)
            self.storage.delete_manifest(name, ref, subject)
        else:
            self.storage.delete_tag(name, ref)
        return web.Response(status=202, headers={"Content-Length": "0"})

    # discovery -------------------------------------------------------------
    async def tags_get(self, request: web.Request, name: str) -> web.Response:
        await self._authorize(request, _pull(name))
        page, link = _paginate(request, self.storage.tags(name), f"/v2/{name}/tags/list")
        return web.json_response({"name": name, "tags": page}, headers=link)

    async def catalog_get(self, request: web.Request) -> web.Response:
        await self._authorize(request, auth.Scope("registry", "catalog", ("*",)))
        repos = await asyncio.to_thread(self.storage.repositories)
        page, link = _paginate(request, repos, "/v2/_catalog")
        return web.json_response({"repositories": page}, headers=link)

    async def referrers_get(self, request: web.Request, name: str, digest: str) -> web.Response:
        await self._authorize(request, _pull(name))
        if not is_digest(digest):
            raise RegistryError("DIGEST_INVALID", f"invalid digest: {digest[:200]!r}")
        entries = self.storage.referrers(name, digest)
        headers = {}
        wanted = request.query.get("artifactType")
        if wanted is not None:
            entries = [e for e in entries if e.get("artifactType") == wanted]
            headers["OCI-Filters-Applied"] = "artifactType"
        index = {"schemaVersion": 2, "mediaType": manifests.OCI_INDEX, "manifests": entries}
        return web.Response(
            body=json.dumps(index).encode(), content_type=manifests.OCI_INDEX, headers=headers
        )


def _paginate(request: web.Request, items: list[str], path: str) -> tuple[list[str], dict]:
    last = request.query.get("last")
    if last:
        items = [i for i in items if i > last]
    n_text = request.query.get("n")
    if n_text is None:
        return items, {}
    try:
        n = int(n_text)
        if n < 0:
            raise ValueError
    except ValueError:
        raise RegistryError("UNSUPPORTED", f"invalid n={n_text!r}", status=400)
    page = items[:n]
    if len(items) <= n or not page:
        return page, {}
    query = urlencode({"n": n, "last": page[-1]}, quote_via=quote)
    return page, {"Link": f'<{path}?{query}>; rel="next"'}


async def _read_limited(request: web.Request, limit: int) -> bytes:
    """The body, or at most ``limit`` bytes of it (``read(n)`` may return less)."""
    buf = bytearray()
    while len(buf) < limit:
        chunk = await request.content.read(limit - len(buf))
        if not chunk:
            break
        buf += chunk
    return bytes(buf)


def _media_type(body: bytes) -> str:
    try:
        doc = json.loads(body)
    except ValueError:
        doc = {}
    declared = doc.get("mediaType") if isinstance(doc, dict) else None
    if isinstance(declared, str) and declared:
        return declared
    return manifests.OCI_INDEX if "manifests" in doc else manifests.OCI_MANIFEST


def _subject(body: bytes) -> str | None:
    with contextlib.suppress(ValueError, AttributeError, TypeError):
        subject = json.loads(body).get("subject")
        if isinstance(subject, dict) and is_digest(str(subject.get("digest"))):
            return subject["digest"]
    return None
