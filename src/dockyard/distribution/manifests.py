"""Manifest media types, parsing, platform selection and the schema2
manifest a push writes. Pure: bytes in, records out.

Platform matching follows containerd's ``platforms.Only``: the OS and
architecture must match; for arm64 a missing variant means ``v8``; for arm
the requested variant or an older one matches (v7 runs v6 and v5), the
closest first.
"""

from __future__ import annotations

import hashlib
import json
import platform as _platform
from dataclasses import dataclass
from typing import Any

from dockyard import errdefs

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
DOCKER_SCHEMA1 = "application/vnd.docker.distribution.manifest.v1+prettyjws"

INDEX_TYPES = (DOCKER_LIST, OCI_INDEX)
MANIFEST_TYPES = (DOCKER_MANIFEST, OCI_MANIFEST)
ACCEPT = ", ".join((DOCKER_MANIFEST, DOCKER_LIST, OCI_MANIFEST, OCI_INDEX))


@dataclass(frozen=True)
class Descriptor:
    media_type: str
    digest: str
    size: int
    platform: Platform | None = None
    urls: tuple[str, ...] = ()


@dataclass(frozen=True)
class Platform:
    os: str
    architecture: str
    variant: str = ""

    def __str__(self) -> str:
        return "/".join(p for p in (self.os, self.architecture, self.variant) if p)


@dataclass(frozen=True)
class Manifest:
    media_type: str
    config: Descriptor
    layers: tuple[Descriptor, ...]


@dataclass(frozen=True)
class Index:
    media_type: str
    manifests: tuple[Descriptor, ...]


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "i686": "386", "i386": "386"}


def normalize(plat: Platform) -> Platform:
    """containerd's ``platforms.Normalize``."""
    os_ = plat.os.lower()
    arch, variant = plat.architecture.lower(), plat.variant.lower()
    arch = {"x86_64": "amd64", "x86-64": "amd64", "aarch64": "arm64", "i386": "386"}.get(arch, arch)
    if (arch == "amd64" and variant == "v1") or (arch == "arm64" and variant in ("8", "v8")):
        variant = ""
    elif arch == "arm":
        variant = {"": "v7", "5": "v5", "6": "v6", "7": "v7", "8": "v8"}.get(variant, variant)
    return Platform(os_, arch, variant)


def host_platform() -> Platform:
    machine = _platform.machine()
    return normalize(Platform("linux", _ARCH.get(machine, machine)))


def parse_platform(text: str | None) -> Platform:
    """``linux/arm64/v8``, ``linux/amd64``, ``arm64`` (OS defaults to linux)."""
    if not text:
        return host_platform()
    parts = text.strip().split("/")
    if len(parts) > 3 or not all(parts):
        raise errdefs.InvalidArgument(f'"{text}": unknown operating system or architecture')
    if len(parts) == 1:
        return normalize(Platform("linux", parts[0]))
    return normalize(Platform(parts[0], parts[1], parts[2] if len(parts) == 3 else ""))


def _variants(want: Platform) -> list[str]:
    if want.architecture == "arm" and want.variant in ("v5", "v6", "v7", "v8"):
        order = ["v8", "v7", "v6", "v5"]
        return order[order.index(want.variant) :]
    return [want.variant]


def select(index: Index, want: Platform) -> Descriptor:
    """The manifest for ``want``; the closest compatible variant wins."""
    want = normalize(want)
    candidates: list[tuple[int, Descriptor]] = []
    variants = _variants(want)
    for desc in index.manifests:
        if desc.platform is None or desc.media_type not in (*MANIFEST_TYPES, ""):
            continue
        got = normalize(desc.platform)
        if got.os != want.os or got.architecture != want.architecture:
            continue
        if got.variant in variants:
            candidates.append((variants.index(got.variant), desc))
    if not candidates:
        raise errdefs.NotFound(f"no matching manifest for {want} in the manifest list entries")
    return min(candidates, key=lambda c: c[0])[1]


def _descriptor(data: Any) -> Descriptor:
    if not isinstance(data, dict):
        raise errdefs.InvalidArgument("invalid manifest: descriptor is not an object")
    try:
        digest, size = str(data["digest"]), int(data["size"])
    except (KeyError, TypeError, ValueError):
        raise errdefs.InvalidArgument("invalid manifest: descriptor without digest or size")
    if not digest.startswith("sha256:") or len(digest) != 71 or size < 0:
        raise errdefs.InvalidArgument(f"invalid manifest: unsupported digest {digest!r}")
    plat = data.get("platform")
    platform = None
    if isinstance(plat, dict):
        platform = Platform(
            str(plat.get("os", "")), str(plat.get("architecture", "")), str(plat.get("variant", ""))
        )
    urls = tuple(str(u) for u in data.get("urls") or ())
    return Descriptor(str(data.get("mediaType", "")), digest, size, platform, urls)


def parse(data: bytes, content_type: str = "") -> Manifest | Index:
    """A manifest or an index; the body's ``mediaType`` wins over the header's."""
    try:
        doc = json.loads(data)
    except ValueError as exc:
        raise errdefs.InvalidArgument(f"invalid manifest: {exc}")
    if not isinstance(doc, dict):
        raise errdefs.InvalidArgument("invalid manifest: not a JSON object")
    media_type = str(doc.get("mediaType") or content_type.split(";")[0].strip())
    if doc.get("schemaVersion") == 1 or media_type == DOCKER_SCHEMA1:
        raise errdefs.InvalidArgument(
            "support for Docker Image Manifest Version 2, Schema 1 has been removed"
        )
    if media_type in INDEX_TYPES or (not media_type and "manifests" in doc):
        items = doc.get("manifests") or []
        return Index(media_type or OCI_INDEX, tuple(_descriptor(d) for d in items))
    if media_type in MANIFEST_TYPES or (not media_type and "config" in doc):
        layers = doc.get("layers") or []
        return Manifest(
            media_type or OCI_MANIFEST,
            _descriptor(doc.get("config")),
            tuple(_descriptor(d) for d in layers),
        )
    raise errdefs.InvalidArgument(f"unsupported manifest media type {media_type!r}")


def schema2(config: Descriptor, layers: list[Descriptor]) -> bytes:
    """A Docker schema2 manifest, formatted as dockerd writes it."""
    doc = {
        "schemaVersion": 2,
        "mediaType": DOCKER_MANIFEST,
        "config": {"mediaType": config.media_type, "size": config.size, "digest": config.digest},
        "layers": [{"mediaType": d.media_type, "size": d.size, "digest": d.digest} for d in layers],
    }
    return json.dumps(doc, indent=3).encode()
