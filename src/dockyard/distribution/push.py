"""Push: upload an image's layers, config and a Docker schema2 manifest.

Per layer (5 at a time, as dockerd): the candidate blobs are the stored
gzip blob and the ones v2 metadata (``v2metadata.py``) remembers for the
diff ID. A candidate the registry has (``HEAD``) is ``Layer already
exists``; one known in another repository of the same registry is mounted
(``Mounted from team/other``, up to 3 attempts); the rest are uploaded
(``POST``, ``PATCH`` streaming the bytes, ``PUT ?digest=``). Layers kept as
a plain tar are gzip-compressed on the way out, deterministically (no name,
mtime 0), so the same layer always gets the same digest; the digest is
computed while streaming and recorded in v2 metadata, so that even after a
restart the next push only ``HEAD``s it. The config goes up
monolithically, the manifest last; the pushed ``name@digest`` is recorded.
"""

from __future__ import annotations

import asyncio
import hashlib
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from dockyard import errdefs
from dockyard.distribution import manifests, progress
from dockyard.distribution.auth import AuthConfig, repository_scope
from dockyard.distribution.client import NO_BASIC_AUTH, Options, Registry, endpoints
from dockyard.distribution.v2metadata import Entry, V2Metadata
from dockyard.image.reference import Reference

Emit = Callable[[dict[str, Any]], Awaitable[None]]

UPLOAD_CONCURRENCY = 5
MAX_MOUNT_ATTEMPTS = 3  # moby's maxMountAttempts
_CHUNK = 1 << 20
_TICK = 0.1
GZIP_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"


def short(digest: str) -> str:
    return digest.partition(":")[2][:12]


def _is_gzip(media_type: str) -> bool:
    return media_type == GZIP_LAYER or media_type.endswith("+gzip")


def _split(repo: str) -> tuple[str, str]:
    domain, _, path = repo.partition("/")
    return domain, path


class Pusher:
    def __init__(self, images: Any, options: Options, meta: V2Metadata | None = None) -> None:
        self.images = images
        self.options = options
        self.meta = meta

    def _local_tags(self, ref: Reference) -> list[tuple[str, str]]:
        """(tag, image ID) for ``ref``'s tag, or for every tag of its repository."""
        if ref.tag is not None or ref.digest is not None:
            try:
                return [(ref.tag or "", self.images.resolve(ref.string()))]
            except errdefs.NotFound:
                raise errdefs.NotFound(
                    f"An image does not exist locally with the tag: {ref.familiar_name()}"
                ) from None
        found = [
            (other.tag, image_id)
            for other, image_id in self.images.references_by_name(ref)
            if other.tag is not None and other.digest is None
        ]
        if not found:
            raise errdefs.NotFound(
                f"An image does not exist locally with the tag: {ref.familiar_name()}"
            )
        return found

    def _known(self, layers: list[Any]) -> dict[str, list[Entry]]:
        """diff ID -> the registry blobs known for it (v2 metadata)."""
        if self.meta is None:
            return {}
        return {layer.diff_id: self.meta.for_diff_id(layer.diff_id) for layer in layers}

    def _mount_sources(self, image_id: str, ref: Reference,
                       known: dict[str, list[Entry]]) -> list[str]:  # fmt: skip
        """Other repositories of the same registry that may hold this image's
        blobs: where its layers were pulled from or pushed to, then the
        image's other names there."""
        out: list[str] = []
        for entries in known.values():
            for entry in entries:
                domain, path = _split(entry.repo)
                if domain == ref.domain and path != ref.path and path not in out:
                    out.append(path)
        for other in self.images.references(image_id):
            if other.domain == ref.domain and other.path != ref.path and other.path not in out:
                out.append(other.path)
        return out

    async def push(self, ref: Reference, *, emit: Emit, auth: AuthConfig) -> None:
        tags = await asyncio.to_thread(self._local_tags, ref)
        await emit(progress.message(f"The push refers to repository [{ref.name()}]"))
        endpoint = endpoints(ref.domain, self.options, push=True)[0]
        try:
            async with Registry(endpoint, auth, certs_dir=self.options.certs_dir) as reg:
                for tag, image_id in tags:
                    await self._push_tag(reg, Reference(ref.domain, ref.path, tag), image_id, emit)
        except errdefs.System as exc:
            if exc.message.endswith(NO_BASIC_AUTH):
                raise errdefs.System(NO_BASIC_AUTH) from None  # dockerd drops the URL
            raise

    async def _push_tag(self, reg: Registry, ref: Reference, image_id: str, emit: Emit) -> None:
        layers = await asyncio.to_thread(self.images.image_layers, image_id)
        config = await asyncio.to_thread(self.images.config_bytes, image_id)
        known = await asyncio.to_thread(self._known, layers)
        sources = await asyncio.to_thread(self._mount_sources, image_id, ref, known)
        sources = sources[:MAX_MOUNT_ATTEMPTS]
        scopes = [repository_scope(ref.path, "pull,push")]
        scopes += [repository_scope(s, "pull") for s in sources]
        job = _Uploads(reg, ref, scopes, sources, emit, self.images.content, known)
        descs = await job.run(layers)
        if self.meta is not None:
            pushed = [
                Entry(layer.diff_id, d.digest, d.media_type, d.size, ref.name())
                for layer, d in zip(layers, descs, strict=True)
            ]
            await asyncio.to_thread(self.meta.add, pushed)
            for diff_id, digest, repo in job.stale:
                await asyncio.to_thread(self.meta.forget, diff_id, digest, repo)
        config_desc = manifests.Descriptor(
            manifests.DOCKER_CONFIG, manifests.digest_of(config), len(config)
        )
        if not await reg.blob_exists(ref.path, config_desc.digest, scopes=scopes):
            await reg.put_blob(ref.path, config, config_desc.digest, scopes=scopes)
        body = manifests.schema2(config_desc, descs)
        digest = manifests.digest_of(body)
        await reg.put_manifest(ref.path, ref.tag or digest, body, manifests.DOCKER_MANIFEST,
                               scopes=scopes)  # fmt: skip
        await asyncio.to_thread(
            self.images.set_reference, Reference(ref.domain, ref.path, None, digest), image_id
        )
        await emit(progress.message(f"{ref.tag}: digest: {digest} size: {len(body)}"))
        await emit(progress.aux({"Tag": ref.tag, "Digest": digest, "Size": len(body)}))


class _Uploads:
    """The layers of one image, uploaded concurrently."""

    def __init__(self, reg: Registry, ref: Reference, scopes: list[str], sources: list[str],
                 emit: Emit, content: Any, known: dict[str, list[Entry]]) -> None:  # fmt: skip
        self.reg = reg
        self.path = ref.path
        self.domain = ref.domain
        self.scopes = scopes
        self.sources = sources
        self.emit = emit
        self.content = content
        self.known = known
        self.stale: list[tuple[str, str, str]] = []  # (diff ID, digest, repo): mount refused
        self.slots = asyncio.Semaphore(UPLOAD_CONCURRENCY)

    async def run(self, layers: list[Any]) -> list[manifests.Descriptor]:
        for layer in reversed(layers):
            await self.emit(progress.update("Preparing", short(layer.diff_id)))
        for layer in list(reversed(layers))[UPLOAD_CONCURRENCY:]:
            await self.emit(progress.update("Waiting", short(layer.diff_id)))
        tasks = [asyncio.create_task(self._one(layer)) for layer in reversed(layers)]
        try:
            done = await asyncio.gather(*tasks)
        except BaseException:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise
        return list(reversed(done))

    def _candidates(self, layer: Any) -> list[tuple[manifests.Descriptor, list[str]]]:
        """The gzip blobs that would do for this layer, each with the
        repositories of this registry known to hold it: the stored blob
        first, then what v2 metadata remembers (newest first)."""
        out: dict[str, tuple[manifests.Descriptor, list[str]]] = {}
        if _is_gzip(layer.media_type):
            out[layer.blob] = (manifests.Descriptor(GZIP_LAYER, layer.blob, layer.blob_size), [])
        for entry in self.known.get(layer.diff_id, []):
            if not _is_gzip(entry.media_type):
                continue
            _, repos = out.setdefault(
                entry.digest, (manifests.Descriptor(GZIP_LAYER, entry.digest, entry.size), [])
            )
            domain, path = _split(entry.repo)
            if domain == self.domain and path != self.path and path in self.sources:
                repos.append(path)
        return list(out.values())

    async def _one(self, layer: Any) -> manifests.Descriptor:
        sid = short(layer.diff_id)
        if not layer.blob:
            raise errdefs.NotImplemented(
                f"layer {layer.diff_id} has no stored blob to push (stored by an older version)"
            )
        async with self.slots:
            candidates = self._candidates(layer)
            for desc, _ in candidates:
                if await self.reg.blob_exists(self.path, desc.digest, scopes=self.scopes):
                    await self.emit(progress.update("Layer already exists", sid))
                    return desc
            # A cross-repository mount: first where the blob is known to be,
            # then (for the stored blob) the image's other repositories.
            attempts: list[tuple[manifests.Descriptor, str]] = []
            for desc, repos in candidates:
                attempts += [(desc, repo) for repo in repos]
            if _is_gzip(layer.media_type):
                stored = candidates[0][0]
                attempts += [(stored, s) for s in self.sources if (stored, s) not in attempts]
            location = None
            for desc, source in attempts[:MAX_MOUNT_ATTEMPTS]:
                if location is not None:
                    await self.reg.cancel_upload(location, scopes=self.scopes)
                location = await self.reg.start_upload(
                    self.path, scopes=self.scopes, mount=desc.digest, source=source
                )
                if location is None:
                    await self.emit(progress.update(f"Mounted from {source}", sid))
                    return desc
                self.stale.append((layer.diff_id, desc.digest, f"{self.domain}/{source}"))
            # The last refused mount opened an upload session: upload through it.
            if not _is_gzip(layer.media_type):
                return await self._upload_compressed(layer, sid, location)
            desc = candidates[0][0]
            if location is None:
                location = await self.reg.start_upload(self.path, scopes=self.scopes)
            assert location is not None
            body = self._read(layer.blob, sid, layer.blob_size)
            await self.reg.finish_upload(location, desc.digest, scopes=self.scopes, body=body)
            await self.emit(progress.update("Pushed", sid))
            return desc

    async def _read(self, blob: str, sid: str, total: int) -> AsyncIterator[bytes]:
        """A stored blob's bytes, with ``Pushing`` progress."""
        with self.content.open(blob) as f:
            done, last = 0, 0.0
            while True:
                chunk = await asyncio.to_thread(f.read, _CHUNK)
                if not chunk:
                    break
                done += len(chunk)
                yield chunk
                now = asyncio.get_running_loop().time()
                if now - last >= _TICK or done == total:
                    last = now
                    await self.emit(progress.update("Pushing", sid, done, total))

    async def _upload_compressed(self, layer: Any, sid: str,
                                 location: str | None) -> manifests.Descriptor:  # fmt: skip
        """Gzip a plain tar blob on the fly; its digest is known at the end."""
        if location is None:
            location = await self.reg.start_upload(self.path, scopes=self.scopes)
        assert location is not None
        state = {"hash": hashlib.sha256(), "size": 0}

        async def body() -> AsyncIterator[bytes]:
            # wbits 31: a gzip stream whose header has no name and mtime 0.
            zip_ = zlib.compressobj(6, zlib.DEFLATED, 31)
            async for chunk in self._read(layer.blob, sid, layer.blob_size):
                out = await asyncio.to_thread(zip_.compress, chunk)
                if out:
                    state["hash"].update(out)
                    state["size"] += len(out)
                    yield out
            out = zip_.flush()
            state["hash"].update(out)
            state["size"] += len(out)
            yield out

        # PATCH the stream, then PUT with the digest computed meanwhile.
        resp = await self.reg.request(
            "PATCH",
            location,
            scopes=self.scopes,
            data=body(),
            headers={"Content-Type": "application/octet-stream"},
            retry_auth=False,
        )
        if resp.status not in (202, 204):
            raise await self.reg.error(resp)
        from urllib.parse import urljoin

        location = urljoin(location, resp.headers.get("Location", location))
        resp.release()
        digest = "sha256:" + state["hash"].hexdigest()
        await self.reg.finish_upload(location, digest, scopes=self.scopes)
        await self.emit(progress.update("Pushed", sid))
        return manifests.Descriptor(GZIP_LAYER, digest, int(state["size"]))
