"""Image references: Docker's grammar and normalization, without I/O.

The grammar (distribution/reference)::

    reference   := name [ ":" tag ] [ "@" digest ]
    name        := [domain "/"] path-component ["/" path-component]*
    domain      := host [":" port]            host := domain-name | "[" ipv6 "]"
    path-comp   := [a-z0-9]+ (separator [a-z0-9]+)*   separator := [._] | __ | -+
    tag         := [\\w][\\w.-]{0,127}
    digest      := algorithm ":" hex

Normalization (``ParseNormalizedNamed``): the first component is a domain
only if it contains ``.`` or ``:``, is ``localhost``, or has an uppercase
letter; otherwise the domain is ``docker.io``, and single-component names on
Docker Hub get ``library/``. ``index.docker.io`` means ``docker.io``. A
64-hex string is an image ID, never a repository name.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from dockyard import errdefs

DEFAULT_DOMAIN = "docker.io"
LEGACY_DEFAULT_DOMAIN = "index.docker.io"
OFFICIAL_PREFIX = "library/"
DEFAULT_TAG = "latest"
NAME_TOTAL_LENGTH_MAX = 255

_ALNUM = r"[a-z0-9]+"
_SEPARATOR = r"(?:[._]|__|[-]+)"
_PATH_COMPONENT = rf"{_ALNUM}(?:{_SEPARATOR}{_ALNUM})*"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN_NAME = rf"{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*"
_IPV6 = r"\[(?:[a-fA-F0-9:]+)\]"
_DOMAIN = rf"(?:{_DOMAIN_NAME}|{_IPV6})(?::[0-9]+)?"
_TAG = r"[\w][\w.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"
_NAME = rf"(?:{_DOMAIN}/)?{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*"

_REFERENCE_RE = re.compile(rf"({_NAME})(?::({_TAG}))?(?:@({_DIGEST}))?", re.ASCII)
_TAG_RE = re.compile(_TAG, re.ASCII)
_ID_RE = re.compile(r"[a-f0-9]{64}")
_SHORT_ID_RE = re.compile(r"[a-f0-9]{1,64}")

INVALID = "invalid reference format"


@dataclass(frozen=True)
class Reference:
    """A normalized reference; ``tag`` and ``digest`` may each be absent."""

    domain: str
    path: str
    tag: str | None = None
    digest: str | None = None

    def name(self) -> str:
        """Full repository name: ``docker.io/library/busybox``."""
        return f"{self.domain}/{self.path}"

    def familiar_name(self) -> str:
        """Short repository name: ``busybox``, ``user/app``, ``quay.io/x/y``."""
        if self.domain != DEFAULT_DOMAIN:
            return self.name()
        if self.path.startswith(OFFICIAL_PREFIX) and "/" not in self.path[len(OFFICIAL_PREFIX) :]:
            return self.path[len(OFFICIAL_PREFIX) :]
        return self.path

    def _suffix(self) -> str:
        out = ""
        if self.tag is not None:
            out += ":" + self.tag
        if self.digest is not None:
            out += "@" + self.digest
        return out

    def string(self) -> str:
        """Full form: ``docker.io/library/busybox:latest``."""
        return self.name() + self._suffix()

    def familiar(self) -> str:
        """Familiar form: ``busybox:latest``."""
        return self.familiar_name() + self._suffix()

    def with_tag(self, tag: str) -> Reference:
        if not _TAG_RE.fullmatch(tag):
            raise errdefs.InvalidArgument(f"{INVALID}: invalid tag format")
        return Reference(self.domain, self.path, tag, self.digest)

    def __str__(self) -> str:
        return self.string()


def is_id(text: str) -> bool:
    """Whether ``text`` is a full 64-hex image ID (without ``sha256:``)."""
    return _ID_RE.fullmatch(text) is not None


def is_short_id(text: str) -> bool:
    return _SHORT_ID_RE.fullmatch(text) is not None


def _split_domain(name: str) -> tuple[str, str]:
    first, sep, rest = name.partition("/")
    if not sep or (
        not any(c in first for c in ".:") and first != "localhost" and first.lower() == first
    ):
        domain, remainder = DEFAULT_DOMAIN, name
    else:
        domain, remainder = first, rest
    if domain == LEGACY_DEFAULT_DOMAIN:
        domain = DEFAULT_DOMAIN
    if domain == DEFAULT_DOMAIN and "/" not in remainder:
        remainder = OFFICIAL_PREFIX + remainder
    return domain, remainder


def _check_digest(digest: str) -> None:
    algorithm, _, hexpart = digest.partition(":")
    if algorithm == "sha256":
        if not re.fullmatch(r"[a-f0-9]{64}", hexpart):
            raise errdefs.InvalidArgument(f"{INVALID}: invalid checksum digest format")
    elif algorithm == "sha512":
        if not re.fullmatch(r"[a-f0-9]{128}", hexpart):
            raise errdefs.InvalidArgument(f"{INVALID}: invalid checksum digest format")
    else:
        raise errdefs.InvalidArgument(f"{INVALID}: unsupported digest algorithm")


def parse_named(ref: str) -> Reference:
    """``ParseNormalizedNamed``: normalize without adding a default tag."""
    if not isinstance(ref, str) or not ref:
        raise errdefs.InvalidArgument(INVALID)
    if is_id(ref):
        raise errdefs.InvalidArgument(
            f"invalid repository name ({ref}), cannot specify 64-byte hexadecimal strings"
        )
    domain, remainder = _split_domain(ref)
    remote = remainder.split(":", 1)[0]
    if remote.lower() != remote:
        raise errdefs.InvalidArgument(f"{INVALID}: repository name ({remote}) must be lowercase")
    full = f"{domain}/{remainder}"
    match = _REFERENCE_RE.fullmatch(full)
    if match is None:
        raise errdefs.InvalidArgument(INVALID)
    name, tag, digest = match.groups()
    if len(name) > NAME_TOTAL_LENGTH_MAX:
        raise errdefs.InvalidArgument(
            f"{INVALID}: repository name must not be more than {NAME_TOTAL_LENGTH_MAX} characters"
        )
    if digest is not None:
        _check_digest(digest)
    # the regexp may have taken a "domain" out of ``full``; recover our split
    path = name[len(domain) + 1 :]
    return Reference(domain, path, tag, digest)


def parse(ref: str) -> Reference:
    """Parse and normalize; a reference with neither tag nor digest gets ``latest``."""
    result = parse_named(ref)
    if result.tag is None and result.digest is None:
        return Reference(result.domain, result.path, DEFAULT_TAG, None)
    return result


def parse_repo_tag(repo: str, tag: str | None) -> Reference:
    """The ``repo``/``tag`` pair of the tag and import APIs: ``tag`` (if
    given) applies to ``repo``; a digest reference cannot be a tag target."""
    ref = parse_named(repo)
    if tag:
        ref = Reference(ref.domain, ref.path, None, ref.digest).with_tag(tag)
    if ref.digest is not None:
        raise errdefs.InvalidArgument("refusing to create a tag with a digest reference")
    if ref.tag is None:
        ref = ref.with_tag(DEFAULT_TAG)
    return ref
