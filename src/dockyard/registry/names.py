"""Validation of what a client names: repositories, tags and digests.

Every path the storage builds comes from a name that passed these checks, so
nothing a client sends can reach outside the storage root: repository
components match the spec's ``[a-z0-9]+((\\.|_|__|-+)[a-z0-9]+)*`` (no ``..``,
no leading ``_`` that could collide with the storage's own ``_layers`` dirs),
tags match ``[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}`` and digests are
``sha256:<64 hex>`` or ``sha512:<128 hex>``.
"""

from __future__ import annotations

import re

from dockyard.registry.errors import RegistryError

_COMPONENT = r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*"
NAME_RE = re.compile(rf"{_COMPONENT}(?:/{_COMPONENT})*")
TAG_RE = re.compile(r"[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}")
DIGEST_RE = re.compile(r"(sha256:[a-f0-9]{64}|sha512:[a-f0-9]{128})")
ALGORITHMS = ("sha256", "sha512")
MAX_NAME = 255


def check_name(name: str) -> str:
    """``name`` if it is a valid repository name, else NAME_INVALID."""
    if len(name) > MAX_NAME or not NAME_RE.fullmatch(name):
        raise RegistryError("NAME_INVALID", f"invalid repository name: {name[:300]!r}")
    return name


def is_digest(ref: str) -> bool:
    return DIGEST_RE.fullmatch(ref) is not None


def check_digest(digest: str) -> str:
    """``digest`` if well formed, else DIGEST_INVALID."""
    if not is_digest(digest):
        raise RegistryError("DIGEST_INVALID", f"invalid digest: {digest[:200]!r}")
    return digest


def check_tag(tag: str) -> str:
    if not TAG_RE.fullmatch(tag):
        raise RegistryError("MANIFEST_INVALID", f"invalid tag: {tag[:200]!r}")
    return tag


def check_reference(ref: str) -> str:
    """A tag or a digest (the ``<reference>`` of manifest URLs)."""
    if ":" in ref:
        return check_digest(ref)
    return check_tag(ref)
