"""The registry client's pure parts: progress lines, auth headers and
challenges, manifests and platform selection, endpoint choice."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dockyard import errdefs
from dockyard.distribution import manifests, progress
from dockyard.distribution.auth import (
    AuthConfig,
    decode_registry_auth,
    encode_registry_auth,
    parse_challenges,
)
from dockyard.distribution.client import Options, endpoints, is_insecure, registry_error
from dockyard.distribution.login import registry_host


# -- progress ------------------------------------------------------------------
def test_progress_bar_matches_docker():
    assert progress.progress_bar(0, 0) == ""
    assert progress.progress_bar(1_200_000, 3_400_000) == (
        "[=================>" + " " * 33 + "]    1.2MB/3.4MB"
    )
    full = progress.progress_bar(3_400_000, 3_400_000)
    assert full.startswith("[" + "=" * 50 + ">] ")
    assert progress.progress_bar(5, 0) == "      5B"


def test_update_and_message_shapes():
    assert progress.message("Pulling from library/busybox", "latest") == {
        "status": "Pulling from library/busybox",
        "id": "latest",
    }
    assert progress.update("Pull complete", "abc") == {
        "status": "Pull complete",
        "progressDetail": {},
        "id": "abc",
    }
    line = progress.encode(progress.update("Downloading", "abc", 10, 100))
    assert line.endswith(b"\r\n")
    assert b"\\u003e" in line and b">" not in line  # Go escapes <, > and &
    decoded = json.loads(line)
    assert decoded["progressDetail"] == {"current": 10, "total": 100}
    assert progress.error("boom") == {"errorDetail": {"message": "boom"}, "error": "boom"}


# -- auth --------------------------------------------------------------------
def test_registry_auth_round_trip_and_forms():
    auth = AuthConfig(username="u", password="p&?/+", serveraddress="127.0.0.1:5000")
    assert decode_registry_auth(encode_registry_auth(auth)) == auth
    # unpadded, std base64, and the "auth" field form all decode
    raw = json.dumps({"Username": "u", "Password": "p"}).encode()
    assert decode_registry_auth(base64.urlsafe_b64encode(raw).decode().rstrip("=")).username == "u"
    packed = {"auth": base64.b64encode(b"me:secret").decode()}
    got = decode_registry_auth(base64.b64encode(json.dumps(packed).encode()).decode())
    assert (got.username, got.password) == ("me", "secret")
    assert decode_registry_auth("").empty()
    assert decode_registry_auth(base64.b64encode(b"{}").decode()).empty()
    with pytest.raises(errdefs.InvalidArgument):
        decode_registry_auth("!!!not-base64")


def test_parse_challenges():
    header = (
        'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",'
        'scope="repository:library/busybox:pull"'
    )
    (bearer,) = parse_challenges(header)
    assert bearer.scheme == "bearer"
    assert bearer.params == {
        "realm": "https://auth.docker.io/token",
        "service": "registry.docker.io",
        "scope": "repository:library/busybox:pull",
    }
    basic, bearer2 = parse_challenges('Basic realm="a \\"q\\"", Bearer realm=tok')
    assert basic.params["realm"] == 'a "q"'
    assert bearer2.params == {"realm": "tok"}
    assert parse_challenges("") == []


@given(st.text(max_size=200))
def test_parse_challenges_never_crashes(text):
    for challenge in parse_challenges(text):
        assert challenge.scheme == challenge.scheme.lower()


# -- manifests -----------------------------------------------------------------
def _desc(digest_char: str, arch: str, variant: str = "") -> dict:
    plat = {"os": "linux", "architecture": arch}
    if variant:
        plat["variant"] = variant
    return {
        "mediaType": manifests.DOCKER_MANIFEST,
        "digest": "sha256:" + digest_char * 64,
        "size": 10,
        "platform": plat,
    }


INDEX = json.dumps(
    {
        "schemaVersion": 2,
        "mediaType": manifests.DOCKER_LIST,
        "manifests": [
            _desc("a", "amd64"),
            _desc("b", "arm", "v6"),
            _desc("c", "arm", "v7"),
            _desc("d", "arm64", "v8"),
            {**_desc("e", "amd64"), "platform": {"os": "windows", "architecture": "amd64"}},
        ],
    }
).encode()


def test_platform_selection():
    index = manifests.parse(INDEX)
    assert isinstance(index, manifests.Index)
    pick = lambda p: manifests.select(index, manifests.parse_platform(p)).digest[7]  # noqa: E731
    assert pick("linux/amd64") == "a"
    assert pick("linux/arm64") == "d"  # no variant means v8
    assert pick("linux/arm/v7") == "c"
    assert pick("linux/arm") == "c"  # arm defaults to v7
    assert pick("linux/arm/v6") == "b"
    with pytest.raises(errdefs.NotFound, match="no matching manifest for linux/s390x"):
        pick("linux/s390x")
    with pytest.raises(errdefs.InvalidArgument):
        manifests.parse_platform("linux//")


def test_parse_manifest_and_schema2():
    config = manifests.Descriptor(manifests.DOCKER_CONFIG, "sha256:" + "1" * 64, 5)
    layer = manifests.Descriptor(
        "application/vnd.docker.image.rootfs.diff.tar.gzip", "sha256:" + "2" * 64, 7
    )
    body = manifests.schema2(config, [layer])
    parsed = manifests.parse(body, "")
    assert isinstance(parsed, manifests.Manifest)
    assert parsed.config.digest == config.digest and parsed.layers[0].size == 7
    for bad in (b"nope", b"[]", b'{"schemaVersion":1}', b'{"mediaType":"x/y"}'):
        with pytest.raises(errdefs.InvalidArgument):
            manifests.parse(bad)
    with pytest.raises(errdefs.InvalidArgument):
        manifests.parse(
            json.dumps(
                {"mediaType": manifests.OCI_MANIFEST, "config": {"digest": "md5:x"}}
            ).encode()
        )


# -- endpoints and errors -------------------------------------------------------
def test_insecure_and_endpoints():
    assert is_insecure("127.0.0.1:5000", ())
    assert is_insecure("localhost:5000", ())
    assert is_insecure("[::1]:5000", ())
    assert not is_insecure("10.1.2.3:5000", ())
    assert is_insecure("10.1.2.3:5000", ("10.0.0.0/8",))
    assert is_insecure("reg.example:5000", ("reg.example:5000",))
    assert not is_insecure("reg.example", ())
    options = Options(mirrors=("http://127.0.0.1:9/",), certs_dir=Path("/nonexistent"))
    hub = endpoints("docker.io", options)
    assert [e.url for e in hub] == ["http://127.0.0.1:9", "https://registry-1.docker.io"]
    assert hub[0].mirror and not hub[1].mirror
    assert [e.url for e in endpoints("docker.io", options, push=True)] == [
        "https://registry-1.docker.io"
    ]
    (local,) = endpoints("127.0.0.1:5000", options)
    assert local.url == "https://127.0.0.1:5000" and not local.verify
    assert local.fallback[0].url == "http://127.0.0.1:5000"
    (remote,) = endpoints("quay.io", options)
    assert remote.url == "https://quay.io" and remote.verify and not remote.fallback


def test_registry_error_text():
    body = json.dumps(
        {"errors": [{"code": "MANIFEST_UNKNOWN", "message": "manifest unknown", "detail": {}}]}
    ).encode()
    err = registry_error(404, body)
    assert isinstance(err, errdefs.NotFound)
    assert err.message == "manifest unknown: manifest unknown"
    assert isinstance(registry_error(401, b""), errdefs.Unauthorized)


def test_registry_host():
    assert registry_host("https://index.docker.io/v1/") == "docker.io"
    assert registry_host("http://127.0.0.1:5000") == "127.0.0.1:5000"
    assert registry_host("127.0.0.1:5000/") == "127.0.0.1:5000"
