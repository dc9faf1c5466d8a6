"""Registry credentials and auth challenges, without I/O.

* ``X-Registry-Auth``: the docker CLI sends base64url(JSON AuthConfig) with
  ``username``, ``password``, ``serveraddress``, ``identitytoken`` and
  ``registrytoken``; the daemon never reads config.json itself.
* ``WWW-Authenticate``: RFC 7235 challenges, e.g.
  ``Bearer realm="https://auth.docker.io/token",service="registry.docker.io",
  scope="repository:library/busybox:pull"`` or ``Basic realm="r"``.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass, field

from dockyard import errdefs


@dataclass(frozen=True)
class AuthConfig:
    """Credentials for one registry (moby's ``registry.AuthConfig``)."""

    username: str = ""
    password: str = ""
    serveraddress: str = ""
    identitytoken: str = ""
    registrytoken: str = ""

    def empty(self) -> bool:
        return not (self.username or self.password or self.identitytoken or self.registrytoken)

    def to_json(self) -> dict[str, str]:
        return {k: v for k, v in self.__dict__.items() if v}


ANONYMOUS = AuthConfig()


def _b64decode(text: str) -> bytes:
    padded = text + "=" * (-len(text) % 4)
    try:
        return base64.urlsafe_b64decode(padded)
    except (binascii.Error, ValueError):
        return base64.b64decode(padded)


def auth_from_json(data: object) -> AuthConfig:
    """An AuthConfig from a decoded JSON object (field names are case-insensitive,
    as Go's encoding/json; an ``auth`` field holds base64 ``user:password``)."""
    if not isinstance(data, dict):
        raise errdefs.InvalidArgument("invalid X-Registry-Auth header: not a JSON object")
    lower = {str(k).lower(): v for k, v in data.items() if isinstance(v, str)}
    username, password = lower.get("username", ""), lower.get("password", "")
    if lower.get("auth") and not username:
        try:
            username, _, password = _b64decode(lower["auth"]).decode().partition(":")
        except (binascii.Error, ValueError, UnicodeDecodeError):
            raise errdefs.InvalidArgument("invalid auth configuration: bad auth field")
    return AuthConfig(
        username=username,
        password=password,
        serveraddress=lower.get("serveraddress", ""),
        identitytoken=lower.get("identitytoken", ""),
        registrytoken=lower.get("registrytoken", ""),
    )


def decode_registry_auth(header: str | None) -> AuthConfig:
    """The ``X-Registry-Auth`` header; empty or ``{}`` means anonymous."""
    if not header or not header.strip():
        return ANONYMOUS
    try:
        data = json.loads(_b64decode(header.strip()))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise errdefs.InvalidArgument("invalid X-Registry-Auth header: not base64 JSON")
    return auth_from_json(data)


def encode_registry_auth(auth: AuthConfig) -> str:
    """What the CLI sends: base64url of the JSON (with padding, as Go's URLEncoding)."""
    return base64.urlsafe_b64encode(json.dumps(auth.to_json()).encode()).decode()


@dataclass(frozen=True)
class Challenge:
    scheme: str  # lower case: "bearer", "basic"
    params: dict[str, str] = field(default_factory=dict)


_TOKEN = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_PARAM_RE = re.compile(rf'\s*({_TOKEN})\s*=\s*(?:"((?:[^"\\]|\\.)*)"|({_TOKEN}))\s*')
_SCHEME_RE = re.compile(rf"\s*({_TOKEN})(?:\s+|$)")


def parse_challenges(header: str) -> list[Challenge]:
    """Parse a ``WWW-Authenticate`` value into challenges; malformed parts
    end the parse (what was understood so far is kept)."""
    out: list[Challenge] = []
    pos, text = 0, header or ""
    while pos < len(text):
        while pos < len(text) and text[pos] in " ,":
            pos += 1
        match = _SCHEME_RE.match(text, pos)
        if match is None:
            break
        scheme = match.group(1).lower()
        pos = match.end()
        params: dict[str, str] = {}
        while pos < len(text):
            param = _PARAM_RE.match(text, pos)
            if param is None:
                break
            value = param.group(2)
            value = re.sub(r"\\(.)", r"\1", value) if value is not None else param.group(3)
            params[param.group(1).lower()] = value
            pos = param.end()
            if pos < len(text) and text[pos] == ",":
                pos += 1
        out.append(Challenge(scheme, params))
    return out


def repository_scope(path: str, actions: str = "pull") -> str:
    """A token scope: ``repository:library/busybox:pull,push``."""
    return f"repository:{path}:{actions}"


def basic_header(auth: AuthConfig) -> str:
    raw = f"{auth.username}:{auth.password}".encode()
    return "Basic " + base64.b64encode(raw).decode()
