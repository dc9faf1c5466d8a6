"""Pull: resolve a reference on a registry, fetch what is missing, store it.

The order of a pull (moby's ``distribution/pull_v2.go``):

1. fetch the manifest by tag or digest and verify it against its digest; a
   manifest list or OCI index picks the platform's manifest (also verified);
2. ``Pulling from <repo>``; fetch and verify the image config;
3. each layer whose blob is stored with its chain unpacked is ``Already
   exists``; the others download 3 at a time into the content store through a
   writer that checks digest and size (a lying registry leaves nothing);
4. layers are unpacked in order, each on top of the previous chain, as soon
   as its blob is complete (``add_layer`` re-verifies the stored blob);
5. the image is recorded with its tag and ``name@digest``, and each layer's
   blob digest in v2 metadata (what later pushes HEAD or mount).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from dockyard import errdefs
from dockyard.distribution import manifests, progress
from dockyard.distribution.auth import AuthConfig, repository_scope
from dockyard.distribution.client import NO_BASIC_AUTH, Options, Registry, endpoints
from dockyard.distribution.v2metadata import Entry, V2Metadata
from dockyard.image import config as imgconfig
from dockyard.image import reference
from dockyard.image.reference import Reference

Emit = Callable[[dict[str, Any]], Awaitable[None]]

DOWNLOAD_CONCURRENCY = 3
_TICK = 0.1  # seconds between progress updates of one layer


@dataclass(frozen=True)
class _Resolved:
    manifest: manifests.Manifest
    digest: str  # of the top-level manifest (a list's digest when there is one)


def short(digest: str) -> str:
    return digest.partition(":")[2][:12]


def _translate(err: errdefs.DockyardError, ref: Reference) -> errdefs.DockyardError:
    """moby's ``translatePullError``."""
    text = err.message
    if text.endswith(NO_BASIC_AUTH):
        return err  # a transport error, not the registry's answer: as is
    if text.startswith(("unauthorized:", "denied:", "name unknown:")) or isinstance(
        err, errdefs.Unauthorized
    ):
        return errdefs.NotFound(
            f"pull access denied for {ref.familiar_name()}, repository does not exist or "
            f"may require 'docker login': {text}"
        )
    if text.startswith("manifest unknown:"):
        return errdefs.NotFound(f"manifest for {ref.familiar()} not found: {text}")
    return err


class Puller:
    """Pulls into an ``ImageService`` (stateless: one may serve many pulls)."""

    def __init__(self, images: Any, options: Options, meta: V2Metadata | None = None) -> None:
        self.images = images
        self.options = options
        self.meta = meta

    async def pull(
        self,
        ref: Reference,
        *,
        emit: Emit,
        auth: AuthConfig,
        platform: str | None = None,
        all_tags: bool = False,
    ) -> None:
        """Pull ``ref`` (a tag or digest; all tags with ``all_tags``)."""
        # With an explicit --platform even a single manifest must match it.
        want = manifests.parse_platform(platform) if platform else None
        if not all_tags and ref.tag is None and ref.digest is None:
            ref = ref.with_tag(reference.DEFAULT_TAG)
        last: errdefs.DockyardError | None = None
        for endpoint in endpoints(ref.domain, self.options):
            try:
                async with Registry(endpoint, auth, certs_dir=self.options.certs_dir) as reg:
                    await self._pull_repo(reg, ref, want, emit=emit, all_tags=all_tags)
                return
            except errdefs.DockyardError as exc:
                last = _translate(exc, ref)
                # A mirror that fails or lacks the image: try the next endpoint.
                if not endpoint.mirror:
                    raise last from None
        assert last is not None
        raise last

    async def _pull_repo(self, reg: Registry, ref: Reference, want: manifests.Platform | None, *,
                         emit: Emit, all_tags: bool) -> None:  # fmt: skip
        scopes = [repository_scope(ref.path)]
        if not all_tags:
            updated = await self._pull_one(reg, ref, want, emit=emit, scopes=scopes)
        else:
            updated = False
            for tag in await reg.tags(ref.path, scopes=scopes):
                one = Reference(ref.domain, ref.path, tag)
                updated |= await self._pull_one(reg, one, want, emit=emit, scopes=scopes)
        shown = ref.familiar() if not all_tags else ref.familiar_name()
        if updated:
            await emit(progress.message(f"Status: Downloaded newer image for {shown}"))
        else:
            await emit(progress.message(f"Status: Image is up to date for {shown}"))

    async def _resolve(self, reg: Registry, ref: Reference, want: manifests.Platform | None,
                       scopes: list[str]) -> _Resolved:  # fmt: skip
        wanted = ref.digest or ref.tag or reference.DEFAULT_TAG
        body, ctype = await reg.get_manifest(ref.path, wanted, scopes=scopes)
        digest = manifests.digest_of(body)
        if ref.digest is not None and digest != ref.digest:
            raise errdefs.InvalidArgument(f"manifest verification failed for digest {ref.digest}")
        parsed = manifests.parse(body, ctype)
        if isinstance(parsed, manifests.Index):
            desc = manifests.select(parsed, want or manifests.host_platform())
            inner, ctype = await reg.get_manifest(ref.path, desc.digest, scopes=scopes)
            if manifests.digest_of(inner) != desc.digest:
                raise errdefs.InvalidArgument(
                    f"manifest verification failed for digest {desc.digest}"
                )
            parsed = manifests.parse(inner, ctype)
            if isinstance(parsed, manifests.Index):
                raise errdefs.InvalidArgument("invalid manifest: an index inside an index")
        return _Resolved(parsed, digest)

    async def _fetch_small(self, reg: Registry, path: str, desc: manifests.Descriptor,
                           scopes: list[str]) -> bytes:  # fmt: skip
        parts, size = [], 0
        async for chunk in reg.blob_chunks(path, desc.digest, scopes=scopes):
            size += len(chunk)
            if size > max(desc.size, 0) or size > 8 << 20:
                raise errdefs.InvalidArgument(f"config blob {desc.digest} is larger than expected")
            parts.append(chunk)
        data = b"".join(parts)
        if manifests.digest_of(data) != desc.digest:
            raise errdefs.InvalidArgument(f"image config verification failed for {desc.digest}")
        return data

    async def _pull_one(self, reg: Registry, ref: Reference, want: manifests.Platform | None, *,
                        emit: Emit, scopes: list[str]) -> bool:  # fmt: skip
        """Pull one tag or digest; whether the reference now names a new image."""
        resolved = await self._resolve(reg, ref, want, scopes)
        man = resolved.manifest
        # moby names the repository by its path only: "Pulling from library/busybox".
        await emit(progress.message(f"Pulling from {ref.path}", ref.digest or ref.tag))
        config_bytes = await self._fetch_small(reg, ref.path, man.config, scopes)
        if want is not None:
            _check_platform(ref, config_bytes, want)
        diff_ids = _diff_ids(config_bytes)
        if len(diff_ids) != len(man.layers):
            raise errdefs.InvalidArgument(
                "image config's rootfs.diff_ids do not match the manifest's layers"
            )
        job = _LayerJob(self, reg, ref.path, scopes, emit)
        layers = await job.run(list(man.layers), diff_ids)
        if self.meta is not None:
            # what each layer is on this repository: later pushes HEAD or mount it
            pulled = [
                Entry(layer.diff_id, desc.digest, desc.media_type, desc.size, ref.name())
                for layer, desc in zip(layers, man.layers, strict=True)
            ]
            await asyncio.to_thread(self.meta.add, pulled)
        by_digest = Reference(ref.domain, ref.path, None, resolved.digest)
        tagged = Reference(ref.domain, ref.path, ref.tag) if ref.digest is None else None
        before = await asyncio.to_thread(self._current, tagged or by_digest)
        image_id = await asyncio.to_thread(
            self.images.create_image,
            config_bytes,
            layers,
            reference=tagged,
            digest_reference=by_digest,
        )
        await emit(progress.message(f"Digest: {resolved.digest}"))
        return before != image_id

    def _current(self, ref: Reference) -> str | None:
        try:
            return self.images.resolve(ref.string())
        except errdefs.NotFound:
            return None


def _check_platform(ref: Reference, config_bytes: bytes, want: manifests.Platform) -> None:
    config = json.loads(config_bytes)
    got = manifests.normalize(
        manifests.Platform(
            str(config.get("os") or ""),
            str(config.get("architecture") or ""),
            str(config.get("variant") or ""),
        )
    )
    if (got.os, got.architecture) != (want.os, want.architecture):
        raise errdefs.NotFound(
            f"image with reference {ref.familiar()} was found but does not match the "
            f"specified platform: wanted {want}, actual: {got}"
        )


def _diff_ids(config_bytes: bytes) -> list[str]:
    try:
        ids = json.loads(config_bytes)["rootfs"]["diff_ids"]
    except (ValueError, KeyError, TypeError):
        raise errdefs.InvalidArgument("invalid image config: no rootfs.diff_ids")
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        raise errdefs.InvalidArgument("invalid image config: bad rootfs.diff_ids")
    return ids


class _LayerJob:
    """The layers of one image: concurrent downloads, in-order extraction."""

    def __init__(self, puller: Puller, reg: Registry, path: str, scopes: list[str],
                 emit: Emit) -> None:  # fmt: skip
        self.images = puller.images
        self.content = puller.images.content
        self.reg = reg
        self.path = path
        self.scopes = scopes
        self.emit = emit
        self.slots = asyncio.Semaphore(DOWNLOAD_CONCURRENCY)
        self.fetched: list[str] = []  # blobs this pull stored (removed on failure)

    async def run(self, descs: list[manifests.Descriptor], diff_ids: list[str]) -> list[Any]:
        chains = imgconfig.chain_ids(diff_ids)
        present: list[Any] = []
        for i, desc in enumerate(descs):
            parent = chains[i - 1] if i else None
            layer = await asyncio.to_thread(self._have, desc.digest, diff_ids[i], parent)
            present.append(layer)
        missing: list[str] = []
        for desc, layer in zip(descs, present, strict=True):
            if layer is not None:
                await self.emit(progress.update("Already exists", short(desc.digest)))
            elif desc.digest not in missing:
                missing.append(desc.digest)
                await self.emit(progress.update("Pulling fs layer", short(desc.digest)))
        for digest in missing[DOWNLOAD_CONCURRENCY:]:
            await self.emit(progress.update("Waiting", short(digest)))
        downloads: dict[str, asyncio.Task[None]] = {}
        try:
            for desc, layer in zip(descs, present, strict=True):
                if layer is None and desc.digest not in downloads:
                    downloads[desc.digest] = asyncio.create_task(self._download(desc))
            layers = []
            for i, (desc, layer) in enumerate(zip(descs, present, strict=True)):
                if layer is None:
                    await downloads[desc.digest]
                    parent = layers[-1].chain_id if layers else None
                    layer = await self._extract(desc, parent)
                    if layer.diff_id != diff_ids[i]:
                        raise errdefs.InvalidArgument(
                            f"layer {desc.digest}: diff ID {layer.diff_id} does not match "
                            f"the image config's {diff_ids[i]}"
                        )
                layers.append(layer)
            return layers
        except BaseException:
            for task in downloads.values():
                task.cancel()
            await asyncio.gather(*downloads.values(), return_exceptions=True)
            await asyncio.to_thread(self._forget_fetched)
            raise

    def _have(self, blob: str, diff_id: str, parent: str | None) -> Any:
        """The stored layer for this blob, or for its diff ID (the same content
        kept under another blob, e.g. imported as a plain tar), when unpacked."""
        layer = self.images.layer_by_blob(blob, parent_chain=parent)
        if layer is not None and layer.diff_id == diff_id:
            return layer
        return self.images.layer_by_diff_id(diff_id, parent_chain=parent)

    def _forget_fetched(self) -> None:
        for digest in self.fetched:
            if not self.images.has_layer_blob(digest):
                try:
                    self.content.delete(digest)
                except errdefs.NotFound:
                    pass

    async def _download(self, desc: manifests.Descriptor) -> None:
        sid = short(desc.digest)
        async with self.slots:
            if self.content.has(desc.digest):
                await self.emit(progress.update("Download complete", sid))
                return
            writer = self.content.writer(desc.digest, size=desc.size)
            try:
                done, last = 0, 0.0
                async for chunk in self.reg.blob_chunks(self.path, desc.digest, scopes=self.scopes):
                    done += len(chunk)
                    if done > desc.size:
                        raise errdefs.InvalidArgument(
                            f"filesystem layer verification failed for digest {desc.digest}"
                        )
                    writer.write(chunk)
                    now = time.monotonic()
                    if now - last >= _TICK:
                        last = now
                        await self.emit(progress.update("Downloading", sid, done, desc.size))
                await self.emit(progress.update("Downloading", sid, done, desc.size))
                await self.emit(progress.update("Verifying Checksum", sid))
                try:
                    await asyncio.to_thread(writer.commit)
                except errdefs.InvalidArgument:
                    raise errdefs.InvalidArgument(
                        f"filesystem layer verification failed for digest {desc.digest}"
                    ) from None
            except BaseException:
                writer.abort()
                raise
            self.fetched.append(desc.digest)
            await self.emit(progress.update("Download complete", sid))

    async def _extract(self, desc: manifests.Descriptor, parent: str | None) -> Any:
        sid = short(desc.digest)
        counter = _Counting(self.content.open(desc.digest))
        task = asyncio.create_task(
            asyncio.to_thread(
                self.images.add_layer,
                counter,
                parent_chain=parent,
                expected_blob=desc.digest,
                media_type=desc.media_type or None,
            )
        )
        try:
            while not task.done():
                await asyncio.wait({task}, timeout=_TICK)
                if counter.count and not task.done():
                    await self.emit(progress.update("Extracting", sid, counter.count, desc.size))
            layer = task.result()
        finally:
            if not task.done():
                task.cancel()
            counter.close()
        await self.emit(progress.update("Extracting", sid, desc.size, desc.size))
        await self.emit(progress.update("Pull complete", sid))
        return layer


class _Counting:
    """A file whose reads are counted (the extraction progress)."""

    def __init__(self, f: Any) -> None:
        self._f = f
        self.count = 0

    def read(self, size: int = -1) -> bytes:
        data = self._f.read(size)
        self.count += len(data)
        return data

    def close(self) -> None:
        self._f.close()
