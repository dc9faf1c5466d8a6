"""Registry auth: htpasswd basic auth and the bearer token flow, against an
in-process server; token signing and scope checks on their own."""

from __future__ import annotations

import base64
import re

import bcrypt
import pytest
import requests

from dockyard.registry import auth
from dockyard.registry.server import Config
from tests.unit.registry_helpers import digest_of, push_blob, serve

USER, PASSWORD = "alice", "s3cret"


@pytest.fixture
def htpasswd(tmp_path):
    path = tmp_path / "htpasswd"
    # Apache's $2y$ spelling, as `htpasswd -B` writes it; cost 4 keeps the test fast
    hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(4)).decode().replace("$2b$", "$2y$")
    path.write_text(f"{USER}:{hashed}\nbob:{bcrypt.hashpw(b'pw', bcrypt.gensalt(4)).decode()}\n")
    return path


def test_htpasswd_basic(tmp_path, htpasswd):
    config = Config(root=tmp_path / "root", auth="htpasswd", htpasswd=htpasswd)
    with serve(config) as (base, _):
        r = requests.get(f"{base}/v2/")
        assert r.status_code == 401
        assert r.headers["WWW-Authenticate"].startswith("Basic realm=")
        assert r.json()["errors"][0]["code"] == "UNAUTHORIZED"
        assert requests.get(f"{base}/v2/", auth=(USER, "wrong")).status_code == 401
        assert requests.get(f"{base}/v2/", auth=("mallory", PASSWORD)).status_code == 401
        assert requests.get(f"{base}/v2/", auth=(USER, PASSWORD)).status_code == 200
        s = requests.Session()
        s.auth = (USER, PASSWORD)
        digest = push_blob(base, "team/app", b"data", s)
        # unauthorized push and pull
        r = requests.post(f"{base}/v2/team/app/blobs/uploads/?digest={digest_of(b'x')}", data=b"x")
        assert r.status_code == 401
        assert requests.get(f"{base}/v2/team/app/blobs/{digest}").status_code == 401


def test_htpasswd_anonymous_pull(tmp_path, htpasswd):
    config = Config(root=tmp_path / "root", auth="htpasswd", htpasswd=htpasswd, anonymous_pull=True)
    with serve(config) as (base, _):
        s = requests.Session()
        s.auth = (USER, PASSWORD)
        digest = push_blob(base, "pub", b"public", s)
        assert requests.get(f"{base}/v2/pub/blobs/{digest}").content == b"public"
        assert requests.post(f"{base}/v2/pub/blobs/uploads/").status_code == 401


def _bearer_challenge(header: str) -> dict[str, str]:
    assert header.startswith("Bearer ")
    return dict(re.findall(r'(\w+)="([^"]*)"', header))


def test_token_flow(tmp_path, htpasswd):
    config = Config(root=tmp_path / "root", auth="token", htpasswd=htpasswd, service="test-reg")
    with serve(config) as (base, _):
        r = requests.post(f"{base}/v2/team/app/blobs/uploads/")
        assert r.status_code == 401
        ch = _bearer_challenge(r.headers["WWW-Authenticate"])
        assert ch == {
            "realm": f"{base}/token",
            "service": "test-reg",
            "scope": "repository:team/app:pull,push",
        }
        # anonymous: no push rights in the token
        anon = requests.get(ch["realm"], params={"service": ch["service"], "scope": ch["scope"]})
        assert anon.status_code == 200
        token = anon.json()["token"]
        r = requests.post(
            f"{base}/v2/team/app/blobs/uploads/", headers={"Authorization": f"Bearer {token}"}
        )
        assert r.status_code == 401
        assert 'error="insufficient_scope"' in r.headers["WWW-Authenticate"]
        # wrong password: refused by the token endpoint
        r = requests.get(ch["realm"], params={"scope": ch["scope"]}, auth=(USER, "nope"))
        assert r.status_code == 401
        # the user's token works, for that repository only
        token = requests.get(
            ch["realm"],
            params={"service": ch["service"], "scope": ch["scope"]},
            auth=(USER, PASSWORD),
        ).json()["token"]
        s = requests.Session()
        s.headers["Authorization"] = f"Bearer {token}"
        digest = push_blob(base, "team/app", b"tok", s)
        assert s.get(f"{base}/v2/team/app/blobs/{digest}").content == b"tok"
        assert s.get(f"{base}/v2/").status_code == 200
        assert s.get(f"{base}/v2/team/other/blobs/{digest}").status_code == 401
        # docker's OAuth2 password grant
        r = requests.post(
            ch["realm"],
            data={"grant_type": "password", "username": USER, "password": PASSWORD,
                  "scope": "repository:x:pull", "service": "test-reg", "client_id": "docker"},
        )  # fmt: skip
        assert r.status_code == 200 and r.json()["access_token"]
        # a forged token
        head, claims, _sig = token.split(".")
        forged = f"{head}.{claims}.{base64.urlsafe_b64encode(b'x' * 32).decode().rstrip('=')}"
        r = requests.get(f"{base}/v2/", headers={"Authorization": f"Bearer {forged}"})
        assert r.status_code == 401


def test_token_issuer_unit():
    issuer = auth.TokenIssuer("svc", secret=b"k" * 32, ttl=60)
    need = auth.Scope.parse("repository:a/b:pull,push")
    token = issuer.issue("alice", [need])["token"]
    claims = issuer.verify(token)
    assert claims is not None and claims["sub"] == "alice"
    assert auth.allows(claims, need)
    assert not auth.allows(claims, auth.Scope("repository", "a/c", ("pull",)))
    assert auth.TokenIssuer("other", secret=b"k" * 32).verify(token) is None
    assert auth.TokenIssuer("svc", secret=b"j" * 32).verify(token) is None
    assert issuer.verify("garbage") is None
    assert str(need) == "repository:a/b:pull,push"
    granted = auth.grant([need], authenticated=False, anonymous_pull=True)
    assert granted[0].actions == ("pull",)
    assert auth.grant([need], authenticated=False, anonymous_pull=False)[0].actions == ()


def test_parse_basic():
    header = "Basic " + base64.b64encode(b"u:p:q").decode()
    assert auth.parse_basic(header) == ("u", "p:q")
    assert auth.parse_basic("Basic !!!") is None
    assert auth.parse_basic("Bearer x") is None
