"""Parsing and validation of pushed manifests (sans-IO).

Four kinds are accepted: Docker schema2 manifests and manifest lists, OCI
image manifests and OCI image indexes. ``parse`` returns what the registry
needs to know to store one: its media type, the blobs it references (config
and layers, which must be in the repository), the manifests it references
(an index's children, which must be in the repository too), its ``subject``
(for the referrers API) and the descriptor a referrers list shows for it.
Docker schema1 is refused, as current registries do.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from dockyard.registry.errors import RegistryError
from dockyard.registry.names import is_digest

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
SCHEMA1 = (
    "application/vnd.docker.distribution.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v1+prettyjws",
)
IMAGE_TYPES = (DOCKER_MANIFEST, OCI_MANIFEST)
INDEX_TYPES = (DOCKER_LIST, OCI_INDEX)
MANIFEST_TYPES = (*IMAGE_TYPES, *INDEX_TYPES)
MAX_SIZE = 4 * 1024 * 1024


@dataclass(frozen=True)
class Descriptor:
    media_type: str
    digest: str
    size: int
    has_urls: bool = False  # a foreign layer: served elsewhere, need not be here


@dataclass(frozen=True)
class Manifest:
    media_type: str
    blobs: tuple[Descriptor, ...]  # config and layers
    manifests: tuple[Descriptor, ...]  # an index's children
    subject: Descriptor | None
    artifact_type: str | None  # what a referrers list shows for it
    annotations: dict[str, str] = field(default_factory=dict)


def _invalid(message: str) -> RegistryError:
    return RegistryError("MANIFEST_INVALID", message)


def _descriptor(value: Any, where: str) -> Descriptor:
    if not isinstance(value, dict):
        raise _invalid(f"{where}: descriptor must be an object")
    media_type, digest, size = value.get("mediaType"), value.get("digest"), value.get("size")
    if not isinstance(media_type, str) or not media_type:
        raise _invalid(f"{where}: missing mediaType")
    if not isinstance(digest, str) or not is_digest(digest):
        raise _invalid(f"{where}: invalid digest {digest!r}")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise _invalid(f"{where}: invalid size {size!r}")
    urls = value.get("urls")
    return Descriptor(media_type, digest, size, has_urls=bool(urls))


def _media_type(doc: dict[str, Any], content_type: str | None) -> str:
    declared = doc.get("mediaType")
    if declared is not None and not isinstance(declared, str):
        raise _invalid("mediaType must be a string")
    ctype = (content_type or "").split(";", 1)[0].strip()
    if declared and ctype in MANIFEST_TYPES and ctype != declared:
        raise _invalid(f"mediaType in manifest should be {ctype!r} not {declared!r}")
    if declared:
        return declared
    if ctype in MANIFEST_TYPES:
        return ctype
    # OCI makes mediaType optional: tell the kinds apart by their fields
    return OCI_INDEX if "manifests" in doc else OCI_MANIFEST


def parse(body: bytes, content_type: str | None = None) -> Manifest:
    """Validate ``body``; MANIFEST_INVALID (or UNSUPPORTED for schema1) if bad."""
    if len(body) > MAX_SIZE:
        raise RegistryError("PAYLOAD_TOO_LARGE", f"manifest larger than {MAX_SIZE} bytes")
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise _invalid(f"manifest is not JSON: {exc}")
    if not isinstance(doc, dict):
        raise _invalid("manifest must be a JSON object")
    if doc.get("schemaVersion") == 1 or (content_type or "").startswith(SCHEMA1):
        raise RegistryError("MANIFEST_INVALID", "schema1 manifests are not supported")
    if doc.get("schemaVersion") != 2:
        raise _invalid("schemaVersion must be 2")
    media_type = _media_type(doc, content_type)
    if media_type in IMAGE_TYPES:
        return _parse_image(doc, media_type)
    if media_type in INDEX_TYPES:
        return _parse_index(doc, media_type)
    raise _invalid(f"unsupported manifest media type {media_type!r}")


def _subject_and_annotations(doc: dict[str, Any]) -> tuple[Descriptor | None, dict[str, str]]:
    subject = _descriptor(doc["subject"], "subject") if doc.get("subject") is not None else None
    annotations = doc.get("annotations") or {}
    if not isinstance(annotations, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in annotations.items()
    ):
        raise _invalid("annotations must map strings to strings")
    return subject, annotations


def _parse_image(doc: dict[str, Any], media_type: str) -> Manifest:
    config = _descriptor(doc.get("config"), "config")
    layers = doc.get("layers")
    if not isinstance(layers, list):
        raise _invalid("layers must be a list")
    if media_type == DOCKER_MANIFEST and not layers:
        raise _invalid("a Docker image manifest needs at least one layer")
    blobs = [config, *(_descriptor(d, f"layers[{i}]") for i, d in enumerate(layers))]
    subject, annotations = _subject_and_annotations(doc)
    artifact_type = doc.get("artifactType")
    if artifact_type is not None and not isinstance(artifact_type, str):
        raise _invalid("artifactType must be a string")
    return Manifest(
        media_type,
        tuple(blobs),
        (),
        subject,
        artifact_type or config.media_type,
        annotations,
    )


def _parse_index(doc: dict[str, Any], media_type: str) -> Manifest:
    children = doc.get("manifests")
    if not isinstance(children, list):
        raise _invalid("manifests must be a list")
    manifests = tuple(_descriptor(d, f"manifests[{i}]") for i, d in enumerate(children))
    subject, annotations = _subject_and_annotations(doc)
    artifact_type = doc.get("artifactType")
    if artifact_type is not None and not isinstance(artifact_type, str):
        raise _invalid("artifactType must be a string")
    return Manifest(media_type, (), manifests, subject, artifact_type or None, annotations)


def referrer_descriptor(manifest: Manifest, digest: str, size: int) -> dict[str, Any]:
    """The entry a referrers list shows for ``manifest``."""
    entry: dict[str, Any] = {"mediaType": manifest.media_type, "digest": digest, "size": size}
    if manifest.artifact_type:
        entry["artifactType"] = manifest.artifact_type
    if manifest.annotations:
        entry["annotations"] = manifest.annotations
    return entry


def references(body: bytes) -> list[str]:
    """Every digest a stored manifest points at (for GC marking); tolerant of
    anything, since what is stored was validated when pushed."""
    try:
        doc = json.loads(body)
    except ValueError:
        return []
    if not isinstance(doc, dict):
        return []
    out: list[str] = []
    descs = [doc.get("config"), *(doc.get("layers") or []), *(doc.get("manifests") or [])]
    for d in descs:
        if isinstance(d, dict) and isinstance(d.get("digest"), str):
            out.append(d["digest"])
    return out
