"""Online garbage collection: referenced blobs always survive, unreferenced
ones go, and pushes running during a collection never lose a blob."""

from __future__ import annotations

import hashlib
import os
import threading
import time

import requests

from dockyard.registry import gc, manifests
from dockyard.registry.server import Config
from tests.unit.registry_helpers import digest_of, image_manifest, push_blob, push_image, serve

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
HOUR_AGO = time.time() - 3600


def _age(registry, digest: str) -> None:
    os.utime(registry.storage.blob_path(digest), (HOUR_AGO, HOUR_AGO))


def _reachable(storage) -> set[str]:
    out: set[str] = set()
    for repo in storage.repositories():
        for digest in storage.manifest_digests(repo):
            out.add(digest)
            out.update(manifests.references(storage.blob_path(digest).read_bytes()))
    return out


def _stored(storage) -> set[str]:
    return {digest for digest, _ in storage.all_blobs()}


def _check_intact(storage) -> None:
    """Every blob any manifest references is there, with the right bytes."""
    for digest in _reachable(storage):
        data = storage.blob_path(digest).read_bytes()
        assert "sha256:" + hashlib.sha256(data).hexdigest() == digest


def test_gc_deletes_garbage_and_spares_what_arrives_during_mark(tmp_path):
    with serve(Config(root=tmp_path / "root")) as (base, registry):
        kept = push_image(base, "app", "v1", b"{}", [b"layer-a"])
        orphan = push_blob(base, "app", b"never referenced")
        gone = push_image(base, "old", "v1", b"{}", [b"layer-b"])
        assert requests.delete(f"{base}/v2/old/manifests/{gone}").status_code == 202
        headed = push_blob(base, "app", b"uploaded long ago")
        for d in (orphan, gone, digest_of(b"layer-b"), headed, digest_of(b"layer-a"), kept):
            _age(registry, d)

        def during_mark() -> None:
            # a push racing the collector: a fresh blob, an old one the client
            # HEADs and skips, and the manifest referencing both
            fresh = push_blob(base, "app", b"pushed during gc")
            _age(registry, fresh)  # even an old mtime must not matter
            assert requests.head(f"{base}/v2/app/blobs/{headed}").status_code == 200
            _age(registry, headed)
            body = image_manifest(b"{}", [b"pushed during gc", b"uploaded long ago"])
            r = requests.put(
                f"{base}/v2/app/manifests/v2", data=body, headers={"Content-Type": OCI_MANIFEST}
            )
            assert r.status_code == 201
            _age(registry, digest_of(body))

        report = gc.collect(registry.storage, grace=0, after_mark=during_mark)
        stored = _stored(registry.storage)
        assert {orphan, gone, digest_of(b"layer-b")} == set(report.deleted)
        assert {kept, digest_of(b"layer-a"), digest_of(b"{}"), headed} <= stored
        assert digest_of(b"pushed during gc") in stored
        _check_intact(registry.storage)
        for ref in ("v1", "v2"):
            r = requests.get(f"{base}/v2/app/manifests/{ref}")
            assert r.status_code == 200
            for d in manifests.references(r.content):
                assert requests.get(f"{base}/v2/app/blobs/{d}").status_code == 200
        # the orphan's link went with it
        assert requests.head(f"{base}/v2/app/blobs/{orphan}").status_code == 404


def test_gc_concurrent_with_pushes(tmp_path):
    with serve(Config(root=tmp_path / "root")) as (base, registry):
        storage = registry.storage
        shared = push_blob(base, "base", b"shared base layer")  # unreferenced, old
        orphans = [push_blob(base, "junk", os.urandom(1000)) for _ in range(30)]
        for d in (shared, *orphans):
            _age(registry, d)
        stop = threading.Event()
        failures: list[str] = []
        pushed: list[tuple[str, str]] = []
        reports: list[gc.Report] = []

        def pusher(n: int) -> None:
            s = requests.Session()
            i = 0
            while not stop.is_set():
                repo, i = f"p{n}", i + 1
                try:
                    r = s.post(f"{base}/v2/{repo}/blobs/uploads/?mount={shared}&from=base")
                    if r.status_code != 201:  # collected already: upload it ourselves
                        push_blob(base, repo, b"shared base layer", s)
                    layers = [b"shared base layer", os.urandom(2000)]
                    digest = push_image(base, repo, f"t{i}", os.urandom(50), layers[1:], s)
                    body = image_manifest(b"{}", layers)
                    push_blob(base, repo, b"{}", s)
                    r = s.put(f"{base}/v2/{repo}/manifests/s{i}", data=body,
                              headers={"Content-Type": OCI_MANIFEST})  # fmt: skip
                    if r.status_code != 201:
                        failures.append(r.text)
                    pushed.append((repo, f"s{i}"))
                    if i % 3 == 0:  # make garbage while the collector runs
                        s.delete(f"{base}/v2/{repo}/manifests/{digest}")
                    else:
                        pushed.append((repo, f"t{i}"))
                except AssertionError as exc:
                    failures.append(str(exc))

        def collector() -> None:
            while not stop.is_set():
                reports.append(gc.collect(storage, grace=1.0))

        threads = [threading.Thread(target=pusher, args=(n,)) for n in range(4)]
        threads.append(threading.Thread(target=collector))
        for t in threads:
            t.start()
        time.sleep(4)
        stop.set()
        for t in threads:
            t.join(30)
        assert not failures, failures[:3]
        assert len(reports) >= 3 and len(pushed) > 20
        deleted = {d for r in reports for d in r.deleted}
        assert set(orphans) <= deleted  # garbage went while pushes ran
        _check_intact(storage)
        for repo, tag in pushed:
            r = requests.get(f"{base}/v2/{repo}/manifests/{tag}")
            assert r.status_code == 200, (repo, tag)
            for d in manifests.references(r.content):
                assert requests.head(f"{base}/v2/{repo}/blobs/{d}").status_code == 200
        # with the pushers gone, one more pass leaves exactly what is reachable
        for d in _stored(storage):
            _age(registry, d)
        gc.collect(storage, grace=0)
        assert _stored(storage) == _reachable(storage)
