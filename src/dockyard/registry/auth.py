"""Who may do what: no auth, htpasswd basic auth, or bearer tokens.

* ``htpasswd``: ``user:<bcrypt hash>`` lines (``htpasswd -B``); a checked
  password is remembered (by its sha256) for a while, since bcrypt costs
  ~100 ms and clients send the credentials with every request.
* ``token``: the flow Docker Hub uses. An unauthenticated request gets
  ``401`` with ``WWW-Authenticate: Bearer realm="<realm>",service="<svc>",
  scope="repository:<name>:pull,push"``; the client asks ``<realm>`` (our own
  ``/token`` endpoint, with basic credentials checked against the htpasswd
  file, or none for anonymous) for a token for that scope and retries with
  ``Authorization: Bearer <token>``. Tokens are JWTs signed with HS256 under
  a per-process secret: ``{"iss", "sub", "aud", "exp", "iat", "access":
  [{"type", "name", "actions"}]}``.

Everything here is sans-IO except reading the htpasswd file.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from dockyard.registry.errors import RegistryError

Mode = Literal["none", "htpasswd", "token"]
ALL_ACTIONS = ("pull", "push", "delete")


@dataclass(frozen=True)
class Scope:
    """One access request: ``repository:team/app:pull,push``."""

    type: str
    name: str
    actions: tuple[str, ...]

    @classmethod
    def parse(cls, text: str) -> Scope:
        kind, sep, rest = text.partition(":")
        name, sep2, actions = rest.rpartition(":")
        if not sep or not sep2 or not kind or not name:
            raise RegistryError("UNAUTHORIZED", f"invalid scope {text!r}", status=400)
        return cls(kind, name, tuple(a for a in actions.split(",") if a))

    def __str__(self) -> str:
        return f"{self.type}:{self.name}:{','.join(self.actions)}"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def parse_basic(header: str | None) -> tuple[str, str] | None:
    """(user, password) from ``Authorization: Basic ...``, else None."""
    if not header or header[:6].lower() != "basic ":
        return None
    try:
        user, sep, password = base64.b64decode(header[6:].strip()).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return (user, password) if sep else None


def parse_bearer(header: str | None) -> str | None:
    if header and header[:7].lower() == "bearer ":
        return header[7:].strip()
    return None


class Htpasswd:
    """A bcrypt htpasswd file, read once."""

    def __init__(self, path: Path, *, cache_seconds: float = 300.0) -> None:
        self.users: dict[str, bytes] = {}
        for line in Path(path).read_text().splitlines():
            user, sep, hashed = line.strip().partition(":")
            if sep and user and not user.startswith("#"):
                # Apache writes $2y$, the same algorithm the bcrypt package calls $2b$
                self.users[user] = hashed.replace("$2y$", "$2b$", 1).encode()
        self._cache: dict[tuple[str, bytes], float] = {}
        self._cache_seconds = cache_seconds

    def cached(self, user: str, password: str) -> bool:
        key = (user, hashlib.sha256(password.encode()).digest())
        return self._cache.get(key, 0.0) > time.monotonic()

    def check(self, user: str, password: str) -> bool:
        """Blocking (bcrypt): run it in a thread unless ``cached`` said yes."""
        import bcrypt

        if self.cached(user, password):
            return True
        hashed = self.users.get(user)
        if hashed is None or not hashed.startswith(b"$2"):
            return False
        try:
            ok = bcrypt.checkpw(password.encode(), hashed)
        except ValueError:
            return False
        if ok:
            key = (user, hashlib.sha256(password.encode()).digest())
            self._cache[key] = time.monotonic() + self._cache_seconds
        return ok


class TokenIssuer:
    """Issues and verifies our HS256 bearer tokens."""

    def __init__(self, service: str, *, secret: bytes | None = None, ttl: int = 300) -> None:
        self.service = service
        self.ttl = ttl
        self._secret = secret or secrets.token_bytes(32)

    def issue(self, subject: str, access: list[Scope]) -> dict[str, Any]:
        now = int(time.time())
        header = {"alg": "HS256", "typ": "JWT"}
        claims = {
            "iss": "dockyard-registry",
            "sub": subject,
            "aud": self.service,
            "iat": now,
            "nbf": now - 5,
            "exp": now + self.ttl,
            "jti": secrets.token_hex(8),
            "access": [
                {"type": s.type, "name": s.name, "actions": list(s.actions)} for s in access
            ],
        }
        signing = _b64(json.dumps(header).encode()) + "." + _b64(json.dumps(claims).encode())
        token = signing + "." + _b64(self._sign(signing))
        issued = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))
        return {"token": token, "access_token": token, "expires_in": self.ttl, "issued_at": issued}

    def _sign(self, signing: str) -> bytes:
        return hmac.new(self._secret, signing.encode(), hashlib.sha256).digest()

    def verify(self, token: str) -> dict[str, Any] | None:
        """The token's claims if it is ours, unexpired and for our service."""
        head, sep, signature = token.rpartition(".")
        if not sep:
            return None
        try:
            if not hmac.compare_digest(_unb64(signature), self._sign(head)):
                return None
            claims = json.loads(_unb64(head.split(".", 1)[1]))
        except (ValueError, IndexError, binascii.Error):
            return None
        if not isinstance(claims, dict) or claims.get("aud") != self.service:
            return None
        if not isinstance(claims.get("exp"), int) or claims["exp"] < time.time():
            return None
        return claims


def allows(claims: dict[str, Any], need: Scope) -> bool:
    """Whether a token's ``access`` grants every action of ``need``."""
    for entry in claims.get("access") or ():
        if not isinstance(entry, dict):
            continue
        if entry.get("type") == need.type and entry.get("name") == need.name:
            granted = entry.get("actions") or []
            if "*" in granted or all(a in granted for a in need.actions):
                return True
    return False


def grant(requested: list[Scope], *, authenticated: bool, anonymous_pull: bool) -> list[Scope]:
    """What the token endpoint grants: a user gets what they ask for; an
    anonymous caller gets pull, and only if anonymous pull is on."""
    out: list[Scope] = []
    for scope in requested:
        if authenticated:
            actions = scope.actions
        elif anonymous_pull and scope.type == "repository":
            actions = tuple(a for a in scope.actions if a == "pull")
        else:
            actions = ()
        out.append(Scope(scope.type, scope.name, actions))
    return out


def challenge(mode: Mode, *, realm: str, service: str, need: Scope | None,
              error: str | None = None) -> str:  # fmt: skip
    """The ``WWW-Authenticate`` value for a 401."""
    if mode == "htpasswd":
        return f'Basic realm="{realm}"'
    parts = [f'Bearer realm="{realm}"', f'service="{service}"']
    if need is not None:
        parts.append(f'scope="{need}"')
    if error:
        parts.append(f'error="{error}"')
    return ",".join(parts)
