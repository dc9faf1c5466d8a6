"""Online garbage collection of registry blobs, safe under concurrent pushes.

A blob is live if some repository links a manifest that is, or references
(config, layer, index child), that blob. Everything else is garbage: blobs
of deleted manifests, layers pushed but never referenced.

The protocol (the storage's ``LiveSet`` holds ``lock`` and ``marking``):

1. **Begin** (under ``lock``): ``marking = set()``, remember ``start``. From
   now on every operation that makes a blob referenced — an upload's commit,
   a cross-repo mount, a blob HEAD (a client deciding to skip an upload), a
   manifest put (the manifest and every blob it references) — adds the digest
   to ``marking``, under ``lock``, in the same critical section in which it
   checks the blob exists and writes its link.
2. **Mark** (no lock): walk every repository's manifest links, read each
   manifest, and collect it and its references. A manifest put that finished
   before step 1 is seen here; one that runs after step 1 is in ``marking``.
3. **Sweep**: for each blob not marked, take ``lock`` and delete it only if
   it is not in ``marking`` and its mtime (set when it was written, touched by
   every commit, mount and HEAD) is older than ``start - grace``. Because the
   check and the delete are in one critical section with the pushers' "check
   exists, reference" sections, a push either sees the blob gone (and fails
   with MANIFEST_BLOB_UNKNOWN, never storing a manifest with a missing blob)
   or has put the digest in ``marking`` first (and the blob stays).
4. **End** (under ``lock``): ``marking = None``; prune repository links to
   blobs that are gone and upload sessions idle longer than ``upload_ttl``.

``grace`` covers the one gap step 1 cannot see: a client that uploaded (or
HEADed) a blob *before* the GC began and pushes the manifest after the sweep.
Its blob's mtime is recent, so it survives any GC within ``grace`` of that.
The CNCF registry can only collect with the registry stopped (read-only);
this collector runs in the serving process, in a thread, while it serves.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable
from dataclasses import dataclass

from dockyard.registry import manifests
from dockyard.registry.storage import FilesystemStorage


@dataclass(frozen=True)
class Report:
    marked: int
    deleted: tuple[str, ...]
    kept_recent: int  # unreferenced, but young or touched during the run
    freed_bytes: int
    seconds: float


def collect(
    storage: FilesystemStorage,
    *,
    grace: float = 3600.0,
    upload_ttl: float = 86400.0,
    after_mark: Callable[[], None] | None = None,
) -> Report:
    """One mark-and-sweep pass; blocking, run it in a thread.
    ``after_mark`` is a test hook between the mark and the sweep."""
    live = storage.live
    t0 = time.monotonic()
    with live.lock:
        if live.marking is not None:
            raise RuntimeError("a garbage collection is already running")
        live.marking = set()
        start = time.time()
    try:
        marked = _mark(storage)
        if after_mark is not None:
            after_mark()
        deleted, kept, freed = _sweep(storage, marked, start - grace)
    finally:
        with live.lock:
            live.marking = None
    _prune_links(storage)
    for path in storage.stale_uploads(time.time() - upload_ttl):
        storage._drop_upload(path)
    return Report(len(marked), tuple(deleted), kept, freed, time.monotonic() - t0)


def _mark(storage: FilesystemStorage) -> set[str]:
    marked: set[str] = set()
    for repo in storage.repositories():
        for digest in storage.manifest_digests(repo):
            marked.add(digest)
            try:
                body = storage.blob_path(digest).read_bytes()
            except FileNotFoundError:
                continue
            marked.update(manifests.references(body))
    return marked


def _sweep(
    storage: FilesystemStorage, marked: set[str], cutoff: float
) -> tuple[list[str], int, int]:
    deleted: list[str] = []
    kept = freed = 0
    live = storage.live
    for digest, path in list(storage.all_blobs()):
        if digest in marked:
            continue
        with live.lock:
            assert live.marking is not None
            try:
                st = path.stat()
            except FileNotFoundError:
                continue
            if digest in live.marking or st.st_mtime >= cutoff:
                kept += 1
                continue
            path.unlink()
        deleted.append(digest)
        freed += st.st_size
    return deleted, kept, freed


def _prune_links(storage: FilesystemStorage) -> None:
    for repo in storage.repositories():
        for digest in storage.layer_digests(repo):
            with storage.live.lock:
                if not storage.blob_path(digest).exists():
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(storage._link(repo, "_layers", digest))
