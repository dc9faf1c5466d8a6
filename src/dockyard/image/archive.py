"""The docker-archive format both ways: ``docker save`` and ``docker load``.

Save writes what Docker 25+ writes: an OCI image layout (``oci-layout``,
``index.json``, ``blobs/sha256/`` with the configs, OCI manifests and the
layers as plain tars) plus Docker's ``manifest.json`` and ``repositories``.
The tar is produced while the client reads it (layers are copied from the
content store, gzip blobs decompressed on the way); a layer shared by two
saved images is written once.

Load reads that format, Docker's older one (``<id>/layer.tar``,
``<hex>.json``, ``manifest.json``, links between layer dirs) and a plain OCI
layout (``index.json`` only). The input is hostile, so:

* members are spooled under a private temp dir by number, never by name; a
  name must be a clean relative path, a link must stay inside the archive;
* every path the manifests name must be a member; JSON members are capped;
* configs and blobs named by a digest must match it; every layer's diff ID
  must match the config before anything is stored (a bad archive leaves
  nothing behind), and ``create_image`` checks them again.
"""

from __future__ import annotations

import hashlib
import json
import os
import posixpath
import shutil
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from dockyard import errdefs, units
from dockyard.image import reference
from dockyard.image.layer import decompressed, peek
from dockyard.image.service import (
    GZIP_MEDIA_TYPE,
    TAR_MEDIA_TYPE,
    ImageService,
    Layer,
    parse_time,
)

MANIFEST_FILE = "manifest.json"
REPOSITORIES_FILE = "repositories"
INDEX_FILE = "index.json"
LAYOUT_FILE = "oci-layout"
LAYOUT_CONTENT = b'{"imageLayoutVersion": "1.0.0"}'

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
ZSTD_MEDIA_TYPE = "application/vnd.oci.image.layer.v1.tar+zstd"
OCI_GZIP_MEDIA_TYPE = "application/vnd.oci.image.layer.v1.tar+gzip"
ANNOTATION_IMAGE_NAME = "io.containerd.image.name"
ANNOTATION_REF_NAME = "org.opencontainers.image.ref.name"

MAX_JSON_SIZE = 10 << 20  # a manifest or config larger than this is an attack
MAX_MEMBERS = 1 << 20
_CHUNK = 1 << 20
_BLOCK = 512
_MAX_LINKS = 40


def _json(data: Any) -> bytes:
    """Go's ``json.Marshal``: compact, keys in the order given."""
    return json.dumps(data, separators=(",", ":")).encode()


# ---------------------------------------------------------------------------
# save


@dataclass(frozen=True)
class SaveTarget:
    """One image to save, with the tags to record for it (none when it was
    named by ID or digest)."""

    image_id: str
    tags: tuple[reference.Reference, ...] = ()


def resolve_names(service: ImageService, names: Iterable[str]) -> list[SaveTarget]:
    """Docker's ``parseNames``: a name without tag means all its tags; an ID,
    a digest reference or a short ID means the image without tags. Images
    keep the order they were first named in."""
    order: list[str] = []
    tags: dict[str, list[reference.Reference]] = {}

    def add(image_id: str, ref: reference.Reference | None) -> None:
        if image_id not in tags:
            order.append(image_id)
            tags[image_id] = []
        if ref is not None and ref.digest is None and ref not in tags[image_id]:
            tags[image_id].append(ref)

    for name in names:
        if _is_id_like(name):
            add(service.resolve(name), None)
            continue
        ref = reference.parse_named(name)
        if ref.tag is None and ref.digest is None:
            found = service.references_by_name(ref)
            for tagged, image_id in found:
                add(image_id, tagged)
            if not found:
                add(_search(service, name), None)
        elif ref.digest is not None:
            add(_by_reference(service, name), None)
        else:
            add(_by_reference(service, name), ref)
    return [SaveTarget(i, tuple(tags[i])) for i in order]


def check_saveable(service: ImageService, targets: list[SaveTarget]) -> None:
    """Refuse, before any byte is written, images with a layer stored without
    its blob (rows from before blobs were kept)."""
    for target in targets:
        for layer in service.image_layers(target.image_id):
            _check_blob(layer)


def _check_blob(layer: Layer) -> None:
    if not layer.blob:
        raise errdefs.NotImplemented(
            f"layer {layer.diff_id} has no stored blob (stored by an older version); "
            "it cannot be saved"
        )


def _search(service: ImageService, name: str) -> str:
    """An image by short ID, with Docker's message when there is none."""
    try:
        return service.resolve(name)
    except errdefs.NotFound:
        raise errdefs.NotFound(f"No such image: {name}")


def _by_reference(service: ImageService, name: str) -> str:
    try:
        return service.resolve(name)
    except errdefs.NotFound:
        raise errdefs.NotFound("reference does not exist")


def _is_id_like(name: str) -> bool:
    bare = name[7:] if name.startswith("sha256:") else name
    return reference.is_id(bare) or (name.startswith("sha256:") and reference.is_short_id(bare))


class _TarWriter:
    """A minimal streaming tar writer (USTAR, PAX for long names or sizes):
    headers from ``tarfile``, data copied in large chunks."""

    def __init__(self, out: BinaryIO) -> None:
        self._out = out

    def _header(self, name: str, size: int, *, mtime: float, directory: bool = False) -> None:
        info = tarfile.TarInfo(name)
        info.size = 0 if directory else size
        info.mtime = int(mtime)
        info.mode = 0o755 if directory else 0o644
        info.type = tarfile.DIRTYPE if directory else tarfile.REGTYPE
        info.uname = info.gname = ""
        self._out.write(info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape"))

    def directory(self, name: str, *, mtime: float = 0) -> None:
        self._header(name.rstrip("/") + "/", 0, mtime=mtime, directory=True)

    def file(self, name: str, data: bytes, *, mtime: float = 0) -> None:
        self._header(name, len(data), mtime=mtime)
        self._out.write(data)
        self._pad(len(data))

    def stream(self, name: str, source: BinaryIO, size: int, *, mtime: float = 0) -> None:
        """A member of ``size`` bytes read from ``source``; a source that ends
        early or runs long breaks the archive, so it is an error."""
        self._header(name, size, mtime=mtime)
        left = size
        while left:
            chunk = source.read(min(_CHUNK, left))
            if not chunk:
                raise errdefs.System(f"{name}: content ended {left} bytes early")
            self._out.write(chunk)
            left -= len(chunk)
        if source.read(1):
            raise errdefs.System(f"{name}: content is longer than {size} bytes")
        self._pad(size)

    def _pad(self, size: int) -> None:
        if size % _BLOCK:
            self._out.write(b"\0" * (_BLOCK - size % _BLOCK))

    def close(self) -> None:
        self._out.write(b"\0" * (2 * _BLOCK))


def _created(config: dict[str, Any]) -> float:
    return parse_time(config.get("created", "")) or 0.0


def _layer_source(service: ImageService, layer: Layer) -> tuple[int, Callable[[], Any]]:
    """(uncompressed size, opener of the uncompressed stream) of a layer blob.
    A compressed blob is read once to learn its size (the tar header comes
    first) and to check that it still hashes to the diff ID."""
    _check_blob(layer)
    if layer.blob == layer.diff_id:
        return layer.blob_size, lambda: service.content.open(layer.blob)
    h, size = hashlib.sha256(), 0
    with service.content.open(layer.blob) as raw:
        stream = decompressed(raw)
        while chunk := stream.read(_CHUNK):
            h.update(chunk)
            size += len(chunk)
    if "sha256:" + h.hexdigest() != layer.diff_id:
        raise errdefs.System(f"layer {layer.diff_id}: stored blob does not match its diff ID")

    @contextmanager
    def opener() -> Iterator[BinaryIO]:
        with service.content.open(layer.blob) as raw:
            yield decompressed(raw)

    return size, opener


def write_archive(service: ImageService, targets: list[SaveTarget], out: BinaryIO) -> None:
    """Write the archive of ``targets`` to ``out`` (anything with ``write``)."""
    tar = _TarWriter(out)
    tar.directory("blobs")
    tar.directory("blobs/sha256")
    written: set[str] = set()
    manifest: list[dict[str, Any]] = []
    index: list[dict[str, Any]] = []
    repositories: dict[str, dict[str, str]] = {}
    for target in targets:
        config_bytes = service.config_bytes(target.image_id)
        config = json.loads(config_bytes)
        created = _created(config)
        layers = service.image_layers(target.image_id)
        layer_descs = []
        for layer in layers:
            name = "blobs/sha256/" + layer.diff_id[7:]
            size, opener = _layer_source(service, layer)
            if layer.diff_id not in written:
                with opener() as source:
                    tar.stream(name, source, size, mtime=created)
                written.add(layer.diff_id)
            layer_descs.append({"mediaType": TAR_MEDIA_TYPE, "digest": layer.diff_id, "size": size})
        if target.image_id not in written:
            tar.file("blobs/sha256/" + target.image_id[7:], config_bytes, mtime=created)
            written.add(target.image_id)
        platform = {"architecture": config.get("architecture", ""), "os": config.get("os", "")}
        if config.get("variant"):
            platform["variant"] = config["variant"]
        oci_manifest = _json(
            {
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "config": {
                    "mediaType": OCI_CONFIG,
                    "digest": target.image_id,
                    "size": len(config_bytes),
                },
                "layers": layer_descs,
            }
        )
        manifest_digest = "sha256:" + hashlib.sha256(oci_manifest).hexdigest()
        if manifest_digest not in written:
            tar.file("blobs/sha256/" + manifest_digest[7:], oci_manifest)
            written.add(manifest_digest)
        descriptor = {
            "mediaType": OCI_MANIFEST,
            "digest": manifest_digest,
            "size": len(oci_manifest),
            "platform": platform,
        }
        for ref in target.tags:
            index.append(
                {
                    **descriptor,
                    "annotations": {
                        ANNOTATION_IMAGE_NAME: ref.string(),
                        ANNOTATION_REF_NAME: ref.tag or "",
                    },
                }
            )
            if layers:
                repositories.setdefault(ref.familiar_name(), {})[ref.tag or ""] = layers[
                    -1
                ].diff_id[7:]
        if not target.tags:
            index.append(descriptor)
        manifest.append(
            {
                "Config": "blobs/sha256/" + target.image_id[7:],
                "RepoTags": [ref.familiar() for ref in target.tags] or None,
                "Layers": ["blobs/sha256/" + layer.diff_id[7:] for layer in layers],
            }
        )
    tar.file(
        INDEX_FILE,
        _json({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": index}),
        mtime=time.time(),
    )
    tar.file(MANIFEST_FILE, _json(manifest) + b"\n")
    tar.file(LAYOUT_FILE, LAYOUT_CONTENT)
    if repositories:
        tar.file(REPOSITORIES_FILE, _json(repositories) + b"\n")
    tar.close()


# ---------------------------------------------------------------------------
# load


@dataclass(frozen=True)
class _Member:
    """A spooled regular file, or a link to another member."""

    kind: str  # "file" | "symlink" | "hardlink"
    path: Path | None = None  # the spool file (file)
    size: int = 0
    digest: str = ""
    target: str = ""  # normalized member name (links)


@dataclass(frozen=True)
class LayerToLoad:
    path: Path
    blob: str  # sha256 of the member's bytes as stored in the archive
    diff_id: str
    media_type: str
    size: int


@dataclass(frozen=True)
class ImageToLoad:
    config: bytes
    layers: tuple[LayerToLoad, ...]
    tags: tuple[reference.Reference, ...]


@dataclass(frozen=True)
class LoadProgress:
    """Where messages go: ``emit`` gets Docker JSON-message dicts; ``quiet``
    drops the per-layer progress."""

    emit: Callable[[dict[str, Any]], None]
    quiet: bool = False


def member_name(name: str) -> str:
    """A member name made canonical (``./a//b`` → ``a/b``); refuses absolute
    names and any ``..`` component."""
    if not name or "\x00" in name or name.startswith("/"):
        raise errdefs.InvalidArgument(f"invalid archive: member {name!r} is not a relative path")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if any(p == ".." for p in parts):
        raise errdefs.InvalidArgument(f"invalid archive: member {name!r} is outside of the archive")
    return "/".join(parts)


def _link_target(name: str, target: str) -> str:
    """The member a symlink at ``name`` points to; refuses absolute and
    escaping targets."""
    if not target or target.startswith("/") or "\x00" in target:
        raise errdefs.InvalidArgument(
            f"invalid archive: link {name!r} points outside of the archive ({target!r})"
        )
    joined = posixpath.normpath(posixpath.join(posixpath.dirname(name), target))
    if joined == ".." or joined.startswith("../"):
        raise errdefs.InvalidArgument(
            f"invalid archive: link {name!r} points outside of the archive ({target!r})"
        )
    return "" if joined == "." else joined


class ArchiveLoad:
    """One ``docker load``: ``spool`` the archive, ``plan`` (checks
    everything, stores nothing), then ``commit``. Use as a context manager:
    the spool dir goes whatever happens."""

    def __init__(self, spool_root: Path) -> None:
        spool_root.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.dir = Path(tempfile.mkdtemp(prefix="load-", dir=spool_root))
        self._members: dict[str, _Member] = {}
        self._count = 0

    def __enter__(self) -> ArchiveLoad:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)

    # -- spool ---------------------------------------------------------------

    def spool(self, stream: BinaryIO) -> None:
        """Read the whole archive (plain, gzip, bzip2 or xz) into the spool dir."""
        try:
            with tarfile.open(fileobj=stream, mode="r|*") as tar:  # type: ignore[call-overload]
                for info in tar:
                    self._add(tar, info)
        except tarfile.TarError as exc:
            raise errdefs.InvalidArgument(f"invalid archive: {exc}")
        except EOFError:
            raise errdefs.InvalidArgument("invalid archive: unexpected EOF")

    def _add(self, tar: tarfile.TarFile, info: tarfile.TarInfo) -> None:
        self._count += 1
        if self._count > MAX_MEMBERS:
            raise errdefs.InvalidArgument("invalid archive: too many members")
        name = member_name(info.name)
        if info.isdir() or not name:
            return
        if info.issym():
            self._members[name] = _Member("symlink", target=_link_target(name, info.linkname))
        elif info.islnk():
            target = member_name(info.linkname)
            if target not in self._members:
                raise errdefs.InvalidArgument(
                    f"invalid archive: hard link {name!r} to a missing member {info.linkname!r}"
                )
            self._members[name] = _Member("hardlink", target=target)
        elif info.isreg():
            source = tar.extractfile(info)
            assert source is not None
            path = self.dir / str(self._count)
            h = hashlib.sha256()
            with open(path, "wb") as out:
                while chunk := source.read(_CHUNK):
                    h.update(chunk)
                    out.write(chunk)
            digest = "sha256:" + h.hexdigest()
            self._members[name] = _Member("file", path, info.size, digest)
        # devices, fifos and the like have no place in an image archive: ignored

    def _lookup(self, name: str) -> _Member:
        """The regular file ``name`` names, links followed inside the archive."""
        try:
            current = member_name(name)
        except errdefs.InvalidArgument:
            raise errdefs.InvalidArgument(f"invalid archive: path {name!r} is outside the archive")
        for _ in range(_MAX_LINKS):
            member = self._resolve_dirs(current)
            if member is None:
                raise errdefs.InvalidArgument(
                    f"invalid archive: open {name}: no such file or directory"
                )
            if member.kind == "file":
                return member
            current = member.target
        raise errdefs.InvalidArgument(f"invalid archive: {name}: too many levels of links")

    def _resolve_dirs(self, name: str) -> _Member | None:
        """The member at ``name``, following symlinked parent directories."""
        if name in self._members:
            return self._members[name]
        parts = name.split("/")
        for i in range(len(parts) - 1, 0, -1):
            parent = self._members.get("/".join(parts[:i]))
            if parent is not None and parent.kind == "symlink":
                rest = "/".join(parts[i:])
                joined = posixpath.normpath(posixpath.join(parent.target, rest))
                if joined.startswith("../") or joined == "..":
                    return None
                return _Member("symlink", target=joined)
        return None

    def _read_json(self, name: str, *, digest: str | None = None) -> tuple[bytes, Any]:
        member = self._lookup(name)
        if member.size > MAX_JSON_SIZE:
            raise errdefs.InvalidArgument(
                f"invalid archive: {name} is too large ({member.size} bytes, "
                f"the limit is {MAX_JSON_SIZE})"
            )
        if digest is not None and member.digest != digest:
            raise errdefs.InvalidArgument(
                f"invalid archive: {name} does not match its digest {digest} "
                f"(its content is {member.digest})"
            )
        assert member.path is not None
        data = member.path.read_bytes()
        try:
            return data, json.loads(data)
        except ValueError as exc:
            raise errdefs.InvalidArgument(f"invalid archive: {name}: invalid JSON: {exc}")

    # -- plan ------------------------------------------------------------------

    def plan(self) -> list[ImageToLoad]:
        """Every image of the archive, checked; nothing is stored."""
        if MANIFEST_FILE in self._members:
            return self._plan_docker()
        if INDEX_FILE in self._members:
            return self._plan_oci()
        raise errdefs.InvalidArgument(
            f"invalid archive: open {MANIFEST_FILE}: no such file or directory"
        )

    def _plan_docker(self) -> list[ImageToLoad]:
        _, items = self._read_json(MANIFEST_FILE)
        if items is None:
            raise errdefs.InvalidArgument(
                "invalid manifest, manifest cannot be null (but can be [])"
            )
        if not isinstance(items, list):
            raise errdefs.InvalidArgument("invalid manifest: not a list")
        images = []
        for item in items:
            if not isinstance(item, dict) or not isinstance(item.get("Config"), str):
                raise errdefs.InvalidArgument("invalid manifest: an entry has no Config")
            layer_paths = item.get("Layers") or []
            tags = item.get("RepoTags") or []
            if not _str_list(layer_paths) or not _str_list(tags):
                raise errdefs.InvalidArgument("invalid manifest: Layers and RepoTags are lists")
            config_path = item["Config"]
            config, parsed = self._read_json(config_path, digest=_digest_in_name(config_path))
            diff_ids = _config_diff_ids(parsed)
            if len(layer_paths) != len(diff_ids):
                raise errdefs.InvalidArgument(
                    "invalid manifest, layers length mismatch: "
                    f"expected {len(layer_paths)}, got {len(diff_ids)}"
                )
            layers = []
            for i, (path, diff_id) in enumerate(zip(layer_paths, diff_ids, strict=True)):
                member = self._lookup(path)
                expected = _digest_in_name(path)
                if expected is not None and member.digest != expected:
                    raise errdefs.InvalidArgument(
                        f"invalid archive: {path} does not match its digest {expected}"
                    )
                layers.append(self._layer(i, member, diff_id, media_type=None))
            images.append(ImageToLoad(config, tuple(layers), tuple(_tags(tags))))
        return images

    def _plan_oci(self) -> list[ImageToLoad]:
        _, index = self._read_json(INDEX_FILE)
        images = []
        for desc, name in self._manifests(index, None, depth=0):
            manifest = self._blob_json(desc)
            config_desc = manifest.get("config")
            if not isinstance(config_desc, dict):
                raise errdefs.InvalidArgument("invalid archive: manifest has no config")
            config = self._blob_bytes(config_desc)
            try:
                parsed = json.loads(config)
            except ValueError as exc:
                raise errdefs.InvalidArgument(f"invalid archive: image config: {exc}")
            diff_ids = _config_diff_ids(parsed)
            layer_descs = manifest.get("layers") or []
            if not isinstance(layer_descs, list) or len(layer_descs) != len(diff_ids):
                raise errdefs.InvalidArgument(
                    "invalid manifest, layers length mismatch: "
                    f"expected {len(layer_descs)}, got {len(diff_ids)}"
                )
            layers = []
            for i, (ldesc, diff_id) in enumerate(zip(layer_descs, diff_ids, strict=True)):
                member = self._blob_member(ldesc)
                layers.append(self._layer(i, member, diff_id, media_type=ldesc.get("mediaType")))
            tags = _tags([name]) if name else []
            images.append(ImageToLoad(config, tuple(layers), tuple(tags)))
        return images

    def _manifests(self, index: Any, name: str | None, *, depth: int) -> Iterator[tuple[dict, str]]:
        """(manifest descriptor, image name) for each image of an index; a
        nested index contributes its linux/amd64 (or only) manifest."""
        if depth > 4 or not isinstance(index, dict):
            raise errdefs.InvalidArgument("invalid archive: malformed index")
        manifests = index.get("manifests") or []
        if not isinstance(manifests, list):
            raise errdefs.InvalidArgument("invalid archive: malformed index")
        nested = depth > 0
        chosen = _pick_platform(manifests) if nested else manifests
        for desc in chosen:
            if not isinstance(desc, dict):
                raise errdefs.InvalidArgument("invalid archive: malformed index")
            image_name = name if nested else _image_name(desc.get("annotations"))
            media_type = desc.get("mediaType")
            if media_type in (OCI_INDEX, DOCKER_LIST):
                yield from self._manifests(self._blob_json(desc), image_name, depth=depth + 1)
            elif media_type in (OCI_MANIFEST, DOCKER_MANIFEST):
                yield desc, image_name or ""
            # other artifacts (attestations, signatures) are not images

    def _blob_member(self, desc: Any) -> _Member:
        if not isinstance(desc, dict) or not isinstance(desc.get("digest"), str):
            raise errdefs.InvalidArgument("invalid archive: malformed descriptor")
        digest = desc["digest"]
        if not digest.startswith("sha256:") or not reference.is_id(digest[7:]):
            raise errdefs.InvalidArgument(f"invalid archive: unsupported digest {digest!r}")
        member = self._lookup("blobs/sha256/" + digest[7:])
        if member.digest != digest:
            raise errdefs.InvalidArgument(
                f"invalid archive: blobs/sha256/{digest[7:]} does not match its digest"
            )
        size = desc.get("size")
        if isinstance(size, int) and size != member.size:
            raise errdefs.InvalidArgument(
                f"invalid archive: blob {digest} has size {member.size}, expected {size}"
            )
        return member

    def _blob_bytes(self, desc: Any) -> bytes:
        member = self._blob_member(desc)
        if member.size > MAX_JSON_SIZE:
            raise errdefs.InvalidArgument(f"invalid archive: blob {desc['digest']} is too large")
        assert member.path is not None
        return member.path.read_bytes()

    def _blob_json(self, desc: Any) -> dict[str, Any]:
        try:
            data = json.loads(self._blob_bytes(desc))
        except ValueError as exc:
            raise errdefs.InvalidArgument(f"invalid archive: blob {desc['digest']}: {exc}")
        if not isinstance(data, dict):
            raise errdefs.InvalidArgument(f"invalid archive: blob {desc['digest']} is not JSON")
        return data

    def _layer(self, i: int, member: _Member, diff_id: str, *, media_type: Any) -> LayerToLoad:
        """Check a layer's content against the config's diff ID (uncompressing
        it when it is compressed) before anything is stored."""
        assert member.path is not None
        with open(member.path, "rb") as raw:
            head, stream = peek(raw, 4)
            plain = head[:2] != b"\x1f\x8b" and head != b"\x28\xb5\x2f\xfd"
            if plain:
                actual = member.digest
            else:
                h = hashlib.sha256()
                with decompressed(stream) as inner:  # type: ignore[attr-defined]
                    while chunk := inner.read(_CHUNK):
                        h.update(chunk)
                actual = "sha256:" + h.hexdigest()
        if actual != diff_id:
            raise errdefs.InvalidArgument(
                f'invalid diffID for layer {i}: expected "{diff_id}", got "{actual}"'
            )
        if plain:
            kind = TAR_MEDIA_TYPE
        elif head[:2] == b"\x1f\x8b":
            kind = media_type if media_type == OCI_GZIP_MEDIA_TYPE else GZIP_MEDIA_TYPE
        else:
            kind = ZSTD_MEDIA_TYPE
        return LayerToLoad(member.path, member.digest, diff_id, kind, member.size)

    # -- commit ----------------------------------------------------------------

    def commit(
        self, service: ImageService, images: list[ImageToLoad], progress: LoadProgress
    ) -> list[str]:
        """Store the planned images; returns their IDs. Messages as Docker's."""
        ids_text = ""
        tagged = 0
        loaded = []
        for image in images:
            layers: list[Layer] = []
            parent: str | None = None
            for planned in image.layers:
                layer = service.layer_by_diff_id(planned.diff_id, parent_chain=parent)
                if layer is None:
                    layer = self._add_layer(service, planned, parent, progress)
                layers.append(layer)
                parent = layer.chain_id
            image_id = service.create_image(image.config, layers)
            loaded.append(image_id)
            ids_text += f"Loaded image ID: {image_id}\n"
            tagged = 0
            for ref in image.tags:
                try:
                    previous = service.resolve(ref.string())
                except errdefs.NotFound:
                    previous = None
                if previous is not None and previous != image_id:
                    progress.emit(
                        {
                            "stream": f"The image {ref.familiar()} already exists, renaming the "
                            f"old one with ID {previous} to empty string\n"
                        }
                    )
                service.set_reference(ref, image_id)
                progress.emit({"stream": f"Loaded image: {ref.familiar()}\n"})
                tagged += 1
        if tagged == 0 and ids_text:  # as Docker: only when the last image had no tag
            progress.emit({"stream": ids_text})
        return loaded

    def _add_layer(
        self,
        service: ImageService,
        planned: LayerToLoad,
        parent: str | None,
        progress: LoadProgress,
    ) -> Layer:
        short = planned.diff_id[7:19]
        if not progress.quiet:
            progress.emit(_progress(short, 0, planned.size))
        with open(planned.path, "rb") as f:
            layer = service.add_layer(
                f,  # type: ignore[arg-type]
                parent_chain=parent,
                expected_blob=planned.blob,
                media_type=planned.media_type,
            )
        if not progress.quiet:
            progress.emit(_progress(short, planned.size, planned.size))
        return layer


def load_archive(
    service: ImageService,
    stream: BinaryIO,
    *,
    spool_root: Path,
    emit: Callable[[dict[str, Any]], None],
    quiet: bool = False,
) -> list[str]:
    """Spool, check and store an archive in one call (for callers that need
    no split between checking and storing)."""
    with ArchiveLoad(spool_root) as load:
        load.spool(stream)
        images = load.plan()
        return load.commit(service, images, LoadProgress(emit, quiet))


def _progress(short_id: str, current: int, total: int) -> dict[str, Any]:
    """A JSON progress message as Docker's ``progress.NewProgressReader``
    renders it (``JSONProgress.String`` at the daemon's width of 200)."""
    filled = min(50, int(current / total * 100) // 2) if total else 50
    bar = f"[{'=' * filled}>{' ' * (50 - filled)}] "
    numbers = f"{units.human_size(current):>8}/{units.human_size(total)}"
    return {
        "status": "Loading layer",
        "progressDetail": {"current": current, "total": total},
        "progress": bar + numbers,
        "id": short_id,
    }


def _str_list(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def _digest_in_name(path: str) -> str | None:
    """The digest a member's name claims: ``blobs/sha256/<hex>`` or ``<hex>.json``."""
    base = posixpath.basename(path)
    if base.endswith(".json"):
        base = base[:-5]
    return "sha256:" + base if reference.is_id(base) else None


def _config_diff_ids(config: Any) -> list[str]:
    try:
        diff_ids = config["rootfs"]["diff_ids"] or []
    except (KeyError, TypeError):
        raise errdefs.InvalidArgument("invalid image config: no rootfs.diff_ids")
    if not _str_list(diff_ids):
        raise errdefs.InvalidArgument("invalid image config: malformed rootfs.diff_ids")
    os_name = config.get("os") or "linux"
    if os_name != "linux":
        raise errdefs.InvalidArgument(f"cannot load {os_name} image on linux")
    return list(diff_ids)


def _tags(names: list[str]) -> list[reference.Reference]:
    out = []
    for name in names:
        ref = reference.parse_named(name)
        if ref.tag is None or ref.digest is not None:
            raise errdefs.InvalidArgument(f'invalid tag "{name}"')
        out.append(ref)
    return out


def _image_name(annotations: Any) -> str | None:
    """The image name an OCI index entry carries (containerd's annotation,
    or a full reference as ref.name); a bare tag names nothing."""
    if not isinstance(annotations, dict):
        return None
    name = annotations.get(ANNOTATION_IMAGE_NAME)
    if isinstance(name, str) and name:
        return name
    ref_name = annotations.get(ANNOTATION_REF_NAME)
    if isinstance(ref_name, str) and ("/" in ref_name or ":" in ref_name):
        try:
            if reference.parse_named(ref_name).tag is not None:
                return ref_name
        except errdefs.InvalidArgument:
            return None
    return None


def _pick_platform(manifests: list[Any]) -> list[Any]:
    """The manifest of a nested index to load: this host's platform."""
    arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(os.uname().machine, os.uname().machine)
    for desc in manifests:
        platform = desc.get("platform") if isinstance(desc, dict) else None
        if (
            isinstance(platform, dict)
            and platform.get("os") == "linux"
            and platform.get("architecture") == arch
        ):
            return [desc]
    images = [d for d in manifests if isinstance(d, dict) and d.get("platform") is None]
    return images[:1]
