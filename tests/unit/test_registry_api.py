"""The registry's HTTP API, end to end against an in-process server: the
distribution spec's endpoints, statuses, headers and JSON errors."""

from __future__ import annotations

import json
import os

import pytest
import requests

from dockyard.registry.server import Config
from tests.unit.registry_helpers import (
    digest_of,
    files_under,
    image_manifest,
    push_blob,
    push_image,
    serve,
)

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"


@pytest.fixture
def reg(tmp_path):
    with serve(Config(root=tmp_path / "root")) as (base, _registry):
        yield base


def error_code(r: requests.Response) -> str:
    return r.json()["errors"][0]["code"]


def test_base_endpoint(reg):
    r = requests.get(f"{reg}/v2/")
    assert r.status_code == 200
    assert r.headers["Docker-Distribution-API-Version"] == "registry/2.0"


def test_monolithic_post_then_get_head_and_range(reg):
    data = os.urandom(100_000)
    digest = push_blob(reg, "team/app", data)
    r = requests.get(f"{reg}/v2/team/app/blobs/{digest}")
    assert r.status_code == 200 and r.content == data
    assert r.headers["Docker-Content-Digest"] == digest
    h = requests.head(f"{reg}/v2/team/app/blobs/{digest}")
    assert h.status_code == 200 and h.headers["Content-Length"] == str(len(data))
    assert h.content == b""
    p = requests.get(f"{reg}/v2/team/app/blobs/{digest}", headers={"Range": "bytes=10-19"})
    assert p.status_code == 206 and p.content == data[10:20]
    # linked into team/app only
    other = requests.get(f"{reg}/v2/team/other/blobs/{digest}")
    assert other.status_code == 404 and error_code(other) == "BLOB_UNKNOWN"


def test_post_then_put_with_body(reg):
    r = requests.post(f"{reg}/v2/a/blobs/uploads/")
    assert r.status_code == 202
    loc = r.headers["Location"]
    assert loc == f"/v2/a/blobs/uploads/{r.headers['Docker-Upload-UUID']}"
    data = b"x" * 5000
    r = requests.put(f"{reg}{loc}?digest={digest_of(data)}", data=data)
    assert r.status_code == 201
    assert r.headers["Location"] == f"/v2/a/blobs/{digest_of(data)}"
    assert requests.get(f"{reg}/v2/a/blobs/{digest_of(data)}").content == data


def test_chunked_upload_status_and_out_of_order(reg, tmp_path):
    data = os.urandom(3 * 1024 * 1024 + 17)
    loc = requests.post(f"{reg}/v2/a/blobs/uploads/").headers["Location"]
    chunks = [data[: 2 * 1024 * 1024], data[2 * 1024 * 1024 :]]
    r = requests.patch(
        f"{reg}{loc}",
        data=chunks[0],
        headers={
            "Content-Range": f"0-{len(chunks[0]) - 1}",
            "Content-Type": "application/octet-stream",
        },
    )
    assert r.status_code == 202 and r.headers["Range"] == f"0-{len(chunks[0]) - 1}"
    loc = r.headers["Location"]
    # out of order: starts past the end
    bad = requests.patch(f"{reg}{loc}", data=b"zz", headers={"Content-Range": "99999999-100000000"})
    assert bad.status_code == 416 and error_code(bad) == "RANGE_INVALID"
    assert bad.headers["Range"] == f"0-{len(chunks[0]) - 1}"
    status = requests.get(f"{reg}{loc}")
    assert status.status_code == 204
    assert status.headers["Range"] == f"0-{len(chunks[0]) - 1}"
    assert status.headers["Docker-Upload-UUID"] in loc
    start = len(chunks[0])
    r = requests.patch(
        f"{reg}{loc}",
        data=chunks[1],
        headers={"Content-Range": f"{start}-{start + len(chunks[1]) - 1}"},
    )
    assert r.status_code == 202
    r = requests.put(f"{reg}{loc}?digest={digest_of(data)}")
    assert r.status_code == 201
    assert requests.get(f"{reg}/v2/a/blobs/{digest_of(data)}").content == data
    assert not list((tmp_path / "root" / "uploads").iterdir())


def test_streamed_patch_without_content_range(reg):
    data = os.urandom(2_500_000)
    loc = requests.post(f"{reg}/v2/a/blobs/uploads/").headers["Location"]

    def gen():
        for i in range(0, len(data), 300_000):
            yield data[i : i + 300_000]

    r = requests.patch(f"{reg}{loc}", data=gen())  # chunked transfer encoding
    assert r.status_code == 202 and r.headers["Range"] == f"0-{len(data) - 1}"
    r = requests.put(f"{reg}{r.headers['Location']}?digest={digest_of(data)}")
    assert r.status_code == 201


def test_delete_upload_and_unknown_upload(reg):
    loc = requests.post(f"{reg}/v2/a/blobs/uploads/").headers["Location"]
    assert requests.delete(f"{reg}{loc}").status_code == 204
    r = requests.get(f"{reg}{loc}")
    assert r.status_code == 404 and error_code(r) == "BLOB_UPLOAD_UNKNOWN"
    r = requests.patch(f"{reg}/v2/a/blobs/uploads/not-a-uuid", data=b"x")
    assert r.status_code == 404 and error_code(r) == "BLOB_UPLOAD_UNKNOWN"
    # another repo's session is not ours
    loc = requests.post(f"{reg}/v2/a/blobs/uploads/").headers["Location"]
    r = requests.get(f"{reg}{loc.replace('/v2/a/', '/v2/b/')}")
    assert r.status_code == 404


def test_digest_mismatch_keeps_nothing(reg, tmp_path):
    root = tmp_path / "root"
    wrong = digest_of(b"other")
    r = requests.post(f"{reg}/v2/a/blobs/uploads/?digest={wrong}", data=b"payload")
    assert r.status_code == 400 and error_code(r) == "DIGEST_INVALID"
    assert not [p for p in files_under(root) if "blobs" in p.parts or "uploads" in p.parts]
    r = requests.post(f"{reg}/v2/a/blobs/uploads/?digest=sha256:xyz", data=b"payload")
    assert r.status_code == 400 and error_code(r) == "DIGEST_INVALID"


def test_cross_repo_mount(reg):
    digest = push_blob(reg, "src/repo", b"shared layer")
    r = requests.post(f"{reg}/v2/dst/blobs/uploads/?mount={digest}&from=src/repo")
    assert r.status_code == 201
    assert r.headers["Location"] == f"/v2/dst/blobs/{digest}"
    assert requests.get(f"{reg}/v2/dst/blobs/{digest}").content == b"shared layer"
    # unknown blob: falls back to a new upload session
    r = requests.post(f"{reg}/v2/dst/blobs/uploads/?mount={digest_of(b'nope')}&from=src/repo")
    assert r.status_code == 202 and "/blobs/uploads/" in r.headers["Location"]
    # present elsewhere, but not in the named source
    r = requests.post(f"{reg}/v2/dst2/blobs/uploads/?mount={digest}&from=elsewhere")
    assert r.status_code == 202


def test_manifest_by_tag_and_digest(reg):
    config, layer = b'{"architecture":"amd64","os":"linux"}', b"layer bytes"
    digest = push_image(reg, "app", "v1", config, [layer])
    body = image_manifest(config, [layer])
    assert digest == digest_of(body)
    for ref in ("v1", digest):
        r = requests.get(f"{reg}/v2/app/manifests/{ref}", headers={"Accept": OCI_MANIFEST})
        assert r.status_code == 200 and r.content == body
        assert r.headers["Content-Type"] == OCI_MANIFEST
        assert r.headers["Docker-Content-Digest"] == digest
        h = requests.head(f"{reg}/v2/app/manifests/{ref}")
        assert h.status_code == 200 and h.headers["Content-Length"] == str(len(body))
        assert h.headers["Content-Type"] == OCI_MANIFEST
    # by digest: the response's Location names the digest
    r = requests.put(
        f"{reg}/v2/app/manifests/{digest}", data=body, headers={"Content-Type": OCI_MANIFEST}
    )
    assert r.status_code == 201 and r.headers["Location"] == f"/v2/app/manifests/{digest}"
    # Accept that excludes the stored type
    r = requests.get(f"{reg}/v2/app/manifests/v1", headers={"Accept": DOCKER_MANIFEST})
    assert r.status_code == 404 and error_code(r) == "MANIFEST_UNKNOWN"
    r = requests.get(f"{reg}/v2/app/manifests/v2")
    assert r.status_code == 404 and error_code(r) == "MANIFEST_UNKNOWN"
    r = requests.get(f"{reg}/v2/nothere/manifests/v1")
    assert r.status_code == 404 and error_code(r) == "NAME_UNKNOWN"


def test_docker_schema2_and_manifest_list(reg):
    config, layer = b'{"os":"linux"}', b"docker layer"
    for blob in (config, layer):
        push_blob(reg, "d", blob)
    manifest = json.dumps({
        "schemaVersion": 2,
        "mediaType": DOCKER_MANIFEST,
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json",
                   "size": len(config), "digest": digest_of(config)},
        "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
                    "size": len(layer), "digest": digest_of(layer)}],
    }).encode()  # fmt: skip
    r = requests.put(
        f"{reg}/v2/d/manifests/amd64", data=manifest, headers={"Content-Type": DOCKER_MANIFEST}
    )
    assert r.status_code == 201
    child = r.headers["Docker-Content-Digest"]
    listing = json.dumps({
        "schemaVersion": 2,
        "mediaType": DOCKER_LIST,
        "manifests": [{"mediaType": DOCKER_MANIFEST, "size": len(manifest), "digest": child,
                       "platform": {"architecture": "amd64", "os": "linux"}}],
    }).encode()  # fmt: skip
    r = requests.put(
        f"{reg}/v2/d/manifests/latest", data=listing, headers={"Content-Type": DOCKER_LIST}
    )
    assert r.status_code == 201
    r = requests.get(
        f"{reg}/v2/d/manifests/latest", headers={"Accept": f"{DOCKER_LIST}, {DOCKER_MANIFEST}"}
    )
    assert r.headers["Content-Type"] == DOCKER_LIST and r.content == listing
    # an index whose child is not in the repository
    bad = listing.replace(child.encode(), digest_of(b"missing").encode())
    r = requests.put(f"{reg}/v2/d/manifests/bad", data=bad, headers={"Content-Type": DOCKER_LIST})
    assert r.status_code == 400 and error_code(r) == "MANIFEST_BLOB_UNKNOWN"


def test_manifest_errors(reg):
    config, layer = b"{}", b"l"
    push_blob(reg, "m", config)
    body = image_manifest(config, [layer])  # layer never pushed
    r = requests.put(f"{reg}/v2/m/manifests/t", data=body, headers={"Content-Type": OCI_MANIFEST})
    assert r.status_code == 400 and error_code(r) == "MANIFEST_BLOB_UNKNOWN"
    for junk in (b"not json", b"[]", b'{"schemaVersion": 2, "config": 5, "layers": []}',
                 b'{"schemaVersion": 1, "fsLayers": []}'):  # fmt: skip
        r = requests.put(
            f"{reg}/v2/m/manifests/t", data=junk, headers={"Content-Type": OCI_MANIFEST}
        )
        assert r.status_code == 400 and error_code(r) == "MANIFEST_INVALID", junk
    push_blob(reg, "m", layer)
    wrong = digest_of(b"something else")
    r = requests.put(
        f"{reg}/v2/m/manifests/{wrong}", data=body, headers={"Content-Type": OCI_MANIFEST}
    )
    assert r.status_code == 400 and error_code(r) == "DIGEST_INVALID"
    r = requests.put(
        f"{reg}/v2/m/manifests/bad!tag", data=body, headers={"Content-Type": OCI_MANIFEST}
    )
    assert r.status_code == 400


def test_tags_pagination_and_catalog(reg):
    config, layer = b"{}", b"x"
    for tag in ("c", "a", "b", "d"):
        push_image(reg, "pag", tag, config, [layer])
    push_image(reg, "zeta/y", "1", config, [layer])
    push_image(reg, "alpha", "1", config, [layer])
    assert requests.get(f"{reg}/v2/pag/tags/list").json() == {
        "name": "pag",
        "tags": ["a", "b", "c", "d"],
    }
    r = requests.get(f"{reg}/v2/pag/tags/list?n=2")
    assert r.json()["tags"] == ["a", "b"]
    assert r.headers["Link"] == '</v2/pag/tags/list?n=2&last=b>; rel="next"'
    r = requests.get(f"{reg}/v2/pag/tags/list?n=2&last=b")
    assert r.json()["tags"] == ["c", "d"] and "Link" not in r.headers
    assert requests.get(f"{reg}/v2/pag/tags/list?last=c").json()["tags"] == ["d"]
    assert requests.get(f"{reg}/v2/pag/tags/list?n=0").json()["tags"] == []
    r = requests.get(f"{reg}/v2/unknown/tags/list")
    assert r.status_code == 404 and error_code(r) == "NAME_UNKNOWN"
    assert requests.get(f"{reg}/v2/_catalog").json() == {"repositories": ["alpha", "pag", "zeta/y"]}
    r = requests.get(f"{reg}/v2/_catalog?n=1&last=alpha")
    assert r.json() == {"repositories": ["pag"]}
    assert r.headers["Link"] == '</v2/_catalog?n=1&last=pag>; rel="next"'


def test_deletes(reg):
    config, layer = b"{}", b"del"
    digest = push_image(reg, "del", "t1", config, [layer])
    r = requests.put(f"{reg}/v2/del/manifests/t2", data=image_manifest(config, [layer]),
                     headers={"Content-Type": OCI_MANIFEST})  # fmt: skip
    assert r.status_code == 201
    assert requests.delete(f"{reg}/v2/del/manifests/t1").status_code == 202
    assert requests.get(f"{reg}/v2/del/tags/list").json()["tags"] == ["t2"]
    assert requests.get(f"{reg}/v2/del/manifests/{digest}").status_code == 200
    assert requests.delete(f"{reg}/v2/del/manifests/{digest}").status_code == 202
    assert requests.get(f"{reg}/v2/del/tags/list").json()["tags"] == []
    r = requests.get(f"{reg}/v2/del/manifests/{digest}")
    assert r.status_code == 404 and error_code(r) == "MANIFEST_UNKNOWN"
    assert requests.delete(f"{reg}/v2/del/manifests/{digest}").status_code == 404
    assert requests.delete(f"{reg}/v2/del/blobs/{digest_of(layer)}").status_code == 202
    r = requests.get(f"{reg}/v2/del/blobs/{digest_of(layer)}")
    assert r.status_code == 404 and error_code(r) == "BLOB_UNKNOWN"


def test_referrers(reg):
    subject = push_image(reg, "ref", "v1", b"{}", [b"base"])
    subj_size = len(image_manifest(b"{}", [b"base"]))
    descriptor = {"mediaType": OCI_MANIFEST, "digest": subject, "size": subj_size}
    empty = b"{}"
    sigs = []
    for kind, note in (("application/vnd.example.sbom", "a"), ("application/vnd.example.sig", "b")):
        push_blob(reg, "ref", note.encode())
        body = image_manifest(empty, [note.encode()], subject=descriptor, artifactType=kind,
                              annotations={"note": note})  # fmt: skip
        r = requests.put(f"{reg}/v2/ref/manifests/{digest_of(body)}", data=body,
                         headers={"Content-Type": OCI_MANIFEST})  # fmt: skip
        assert r.status_code == 201 and r.headers["OCI-Subject"] == subject
        sigs.append(digest_of(body))
    r = requests.get(f"{reg}/v2/ref/referrers/{subject}")
    assert r.status_code == 200 and r.headers["Content-Type"] == OCI_INDEX
    index = r.json()
    assert index["mediaType"] == OCI_INDEX
    assert sorted(m["digest"] for m in index["manifests"]) == sorted(sigs)
    assert {m["artifactType"] for m in index["manifests"]} == {
        "application/vnd.example.sbom",
        "application/vnd.example.sig",
    }
    r = requests.get(f"{reg}/v2/ref/referrers/{subject}?artifactType=application/vnd.example.sig")
    assert r.headers["OCI-Filters-Applied"] == "artifactType"
    assert [m["annotations"] for m in r.json()["manifests"]] == [{"note": "b"}]
    assert requests.get(f"{reg}/v2/ref/referrers/{digest_of(b'none')}").json()["manifests"] == []
    assert requests.get(f"{reg}/v2/ref/referrers/sha256:bad").status_code == 400
    # deleting a referrer removes it from the list
    requests.delete(f"{reg}/v2/ref/manifests/{sigs[0]}")
    assert [
        m["digest"] for m in requests.get(f"{reg}/v2/ref/referrers/{subject}").json()["manifests"]
    ] == [sigs[1]]


@pytest.mark.parametrize(
    "path",
    [
        "/v2/../../etc/blobs/uploads/",
        "/v2/a/../../../tmp/blobs/uploads/",
        "/v2/UPPER/blobs/uploads/",
        "/v2/a//b/blobs/uploads/",
        "/v2/_layers/blobs/uploads/",
        "/v2/a/_manifests/blobs/uploads/",
        "/v2/.hidden/blobs/uploads/",
        "/v2/%2e%2e/x/blobs/uploads/",
        "/v2/a%2F..%2F..%2Fb/blobs/uploads/",
    ],
)
def test_name_invalid_touches_nothing(reg, tmp_path, path):
    before = files_under(tmp_path)
    r = requests.Session().send(requests.Request("POST", f"{reg}{path}").prepare())
    assert r.status_code in (400, 404)
    if r.status_code == 400:
        assert error_code(r) == "NAME_INVALID"
    assert files_under(tmp_path) == before


def test_large_manifest_and_limit(reg):
    push_blob(reg, "big", b"{}")
    push_blob(reg, "big", b"l")
    body = image_manifest(b"{}", [b"l"], annotations={"pad": "x" * 1_500_000})
    r = requests.put(f"{reg}/v2/big/manifests/t", data=body, headers={"Content-Type": OCI_MANIFEST})
    assert r.status_code == 201
    assert requests.get(f"{reg}/v2/big/manifests/t").content == body
    body = image_manifest(b"{}", [b"l"], annotations={"pad": "x" * 5_000_000})
    r = requests.put(f"{reg}/v2/big/manifests/t", data=body, headers={"Content-Type": OCI_MANIFEST})
    assert r.status_code == 413
