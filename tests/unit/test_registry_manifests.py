"""Sans-IO parts of the registry: names, digests, manifest parsing."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dockyard.registry import manifests, names
from dockyard.registry.errors import RegistryError

D1 = "sha256:" + "a" * 64
D2 = "sha256:" + "b" * 64


@pytest.mark.parametrize("name", ["a", "library/busybox", "a.b/c-d/e__f", "a--b", "x/y/z/w"])
def test_valid_names(name):
    assert names.check_name(name) == name


@pytest.mark.parametrize(
    "name", ["", "A", "a/", "/a", "a//b", "..", "a/../b", "_a", "a/_layers", "a.-b", "a b",
             "a%2e", "a/" + "b" * 300]
)  # fmt: skip
def test_invalid_names(name):
    with pytest.raises(RegistryError) as info:
        names.check_name(name)
    assert info.value.code == "NAME_INVALID"


@given(st.text(alphabet="abz09._-/%\\\x00 ", max_size=40))
def test_valid_names_never_escape(name):
    try:
        names.check_name(name)
    except RegistryError:
        return
    parts = name.split("/")
    assert all(p and p not in (".", "..") and not p.startswith(("_", ".", "-")) for p in parts)


def test_digests_and_tags():
    assert names.is_digest(D1)
    assert names.is_digest("sha512:" + "0" * 128)
    assert not names.is_digest("sha256:" + "A" * 64)
    assert not names.is_digest("md5:" + "a" * 32)
    assert names.check_reference("latest") == "latest"
    with pytest.raises(RegistryError):
        names.check_tag("-leading-dash")
    with pytest.raises(RegistryError):
        names.check_tag("a" * 129)


def _desc(digest: str, media: str = "application/vnd.oci.image.layer.v1.tar", **kw):
    return {"mediaType": media, "digest": digest, "size": 3, **kw}


def test_parse_oci_manifest_with_subject():
    doc = {
        "schemaVersion": 2,
        "config": _desc(D1, "application/vnd.example.config"),
        "layers": [_desc(D2), _desc(D2, urls=["https://example.com/x"])],
        "subject": _desc(D1, manifests.OCI_MANIFEST),
        "annotations": {"k": "v"},
    }
    m = manifests.parse(json.dumps(doc).encode(), None)
    assert m.media_type == manifests.OCI_MANIFEST  # inferred
    assert [d.digest for d in m.blobs] == [D1, D2, D2]
    assert m.blobs[2].has_urls
    assert m.subject is not None and m.subject.digest == D1
    assert m.artifact_type == "application/vnd.example.config"
    entry = manifests.referrer_descriptor(m, D2, 10)
    assert entry["artifactType"] == "application/vnd.example.config"
    assert entry["annotations"] == {"k": "v"}
    assert (entry["digest"], entry["size"]) == (D2, 10)


def test_parse_index():
    doc = {"schemaVersion": 2, "mediaType": manifests.DOCKER_LIST,
           "manifests": [_desc(D1, manifests.DOCKER_MANIFEST)]}  # fmt: skip
    m = manifests.parse(json.dumps(doc).encode(), manifests.DOCKER_LIST)
    assert m.media_type == manifests.DOCKER_LIST and m.manifests[0].digest == D1
    assert manifests.references(json.dumps(doc).encode()) == [D1]


def _m(**kw):
    return json.dumps({"schemaVersion": 2, "config": _desc(D1), "layers": [], **kw}).encode()


@pytest.mark.parametrize(
    "body,ctype",
    [
        (b"{", None),
        (b"null", None),
        (b'{"schemaVersion": 3, "config": {}, "layers": []}', None),
        (b'{"schemaVersion": 2, "layers": []}', manifests.OCI_MANIFEST),
        (_m(layers=[_desc("sha256:zz")]), None),
        (_m(layers=[{**_desc(D1), "size": -1}]), None),
        (_m(mediaType=manifests.OCI_MANIFEST), manifests.DOCKER_MANIFEST),
        (_m(mediaType="text/plain"), None),
        (_m(mediaType=manifests.DOCKER_MANIFEST), None),
        (_m(annotations={"a": 1}), None),
    ],
)
def test_parse_invalid(body, ctype):
    with pytest.raises(RegistryError) as info:
        manifests.parse(body, ctype)
    assert info.value.code == "MANIFEST_INVALID"


@given(st.binary(max_size=200))
def test_parse_never_crashes(body):
    try:
        manifests.parse(body, None)
    except RegistryError:
        pass
