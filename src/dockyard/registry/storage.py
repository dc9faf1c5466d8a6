"""Registry storage: the ``Storage`` interface and its filesystem driver.

Layout under the root (every name in a path passed ``names``' checks first)::

    blobs/<alg>/<hex[:2]>/<hex>              blob and manifest bytes, shared by all repos
    uploads/<uuid>  uploads/<uuid>.repo      upload sessions: bytes so far, owning repo
    repos/<name>/_layers/<alg>/<hex>         blobs linked into the repo (empty files)
    repos/<name>/_manifests/<alg>/<hex>      manifests linked into the repo (empty files)
    repos/<name>/_tags/<tag>                 tag -> digest
    repos/<name>/_referrers/<alg>/<subject hex>/<alg>-<hex>   referrer descriptors (JSON)
    tmp/                                     temp files, renamed into place

Blobs are committed as containerd does: bytes hashed while written, digest
verified, file fsynced, renamed into place, directory fsynced; a blob file
therefore always holds exactly the bytes its name says.

Every operation that makes a blob referenced (an upload's commit, a mount, a
HEAD that tells a client it may skip an upload, a manifest put) calls
``LiveSet.touch`` under ``LiveSet.lock``; ``gc`` uses both to collect online.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import threading
import uuid as uuidlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from dockyard.registry.errors import RegistryError
from dockyard.registry.names import check_digest, check_name, check_tag
from dockyard.store.content import fsync_dir

_FLUSH = 1 << 20  # upload bytes are hashed and written in 1 MiB pieces


class LiveSet:
    """What GC must not collect: digests touched since the current mark began.

    ``lock`` serialises "check that blobs exist, then reference them" against
    GC's "check that a blob is unreferenced, then delete it"."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.marking: set[str] | None = None  # set while a GC runs

    def touch(self, digest: str) -> None:
        """Record a reference; the caller holds ``lock``."""
        if self.marking is not None:
            self.marking.add(digest)


@dataclass(frozen=True)
class BlobInfo:
    digest: str
    size: int
    path: Path


class Upload(Protocol):
    uuid: str
    offset: int

    def write(self, data: bytes) -> None: ...
    def close(self) -> None: ...


class Storage(Protocol):
    """What the server needs from storage; an object store can implement it."""

    live: LiveSet

    def blob(self, repo: str, digest: str, *, touch: bool = False) -> BlobInfo: ...
    def unlink_blob(self, repo: str, digest: str) -> None: ...
    def mount_blob(self, repo: str, digest: str, source: str | None) -> bool: ...
    def start_upload(self, repo: str) -> str: ...
    def upload_offset(self, repo: str, uuid: str) -> int: ...
    def open_upload(self, repo: str, uuid: str) -> Upload: ...
    def finish_upload(self, repo: str, uuid: str, digest: str) -> BlobInfo: ...
    def cancel_upload(self, repo: str, uuid: str) -> None: ...
    def put_manifest(
        self, repo: str, body: bytes, refs: list[str], children: list[str],
        tags: list[str], referrer: tuple[str, dict[str, Any]] | None,
    ) -> str: ...  # fmt: skip
    def get_manifest(self, repo: str, reference: str) -> tuple[str, bytes]: ...
    def delete_manifest(self, repo: str, digest: str, subject: str | None) -> None: ...
    def delete_tag(self, repo: str, tag: str) -> None: ...
    def tags(self, repo: str) -> list[str]: ...
    def repositories(self) -> list[str]: ...
    def referrers(self, repo: str, digest: str) -> list[dict[str, Any]]: ...


def _split(digest: str) -> tuple[str, str]:
    alg, _, hexpart = check_digest(digest).partition(":")
    return alg, hexpart


class FileUpload:
    """An open upload session: bytes are hashed and appended in big pieces.

    The running sha256 survives between requests in the storage's table, so a
    chunked upload is hashed once; after a restart it is re-hashed from disk."""

    def __init__(self, storage: FilesystemStorage, uuid: str, path: Path) -> None:
        self.uuid = uuid
        self._storage = storage
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND)
        size = os.fstat(self._fd).st_size
        state = storage._hashers.get(uuid)
        if state is None or state[1] != size:
            state = (_hash_file(path, "sha256"), size)
        self._hash = state[0]
        self.offset = size
        self._buf = bytearray()

    def write(self, data: bytes) -> None:
        self._buf += data
        self.offset += len(data)
        if len(self._buf) >= _FLUSH:
            self._flush()

    def _flush(self) -> None:
        if self._buf:
            self._hash.update(self._buf)
            view = memoryview(self._buf)
            while view:
                view = view[os.write(self._fd, view) :]
            self._buf = bytearray()

    def close(self) -> None:
        if self._fd < 0:
            return
        try:
            self._flush()
            self._storage._hashers[self.uuid] = (self._hash, self.offset)
        finally:
            os.close(self._fd)
            self._fd = -1
            self._storage._open.discard(self.uuid)


def _hash_file(path: Path, alg: str) -> Any:
    h = hashlib.new(alg)
    with open(path, "rb") as f:
        while chunk := f.read(_FLUSH):
            h.update(chunk)
    return h


class FilesystemStorage:
    """The filesystem driver of ``Storage``."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.live = LiveSet()
        self._hashers: dict[str, tuple[Any, int]] = {}
        self._open: set[str] = set()
        for sub in ("blobs", "uploads", "repos", "tmp"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)

    # paths -----------------------------------------------------------------
    def blob_path(self, digest: str) -> Path:
        alg, hexpart = _split(digest)
        return self.root / "blobs" / alg / hexpart[:2] / hexpart

    def _repo(self, repo: str) -> Path:
        return self.root / "repos" / check_name(repo)

    def _link(self, repo: str, kind: str, digest: str) -> Path:
        alg, hexpart = _split(digest)
        return self._repo(repo) / kind / alg / hexpart

    def _upload(self, repo: str, uuid: str) -> Path:
        check_name(repo)
        try:
            canonical = str(uuidlib.UUID(uuid))
        except ValueError:
            canonical = ""
        path = self.root / "uploads" / canonical
        if canonical != uuid or not path.is_file():
            raise RegistryError("BLOB_UPLOAD_UNKNOWN")
        try:
            owner = (self.root / "uploads" / f"{uuid}.repo").read_text()
        except FileNotFoundError:
            raise RegistryError("BLOB_UPLOAD_UNKNOWN")
        if owner != repo:
            raise RegistryError("BLOB_UPLOAD_UNKNOWN")
        return path

    def _write_atomic(self, path: Path, data: bytes) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.root / "tmp" / f"{uuidlib.uuid4()}"
        tmp.write_bytes(data)
        os.replace(tmp, path)

    @staticmethod
    def _touch_link(path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a"):
            pass

    def repo_exists(self, repo: str) -> bool:
        return self._repo(repo).is_dir()

    # blobs -----------------------------------------------------------------
    def blob(self, repo: str, digest: str, *, touch: bool = False) -> BlobInfo:
        """The blob if it is linked into ``repo``; BLOB_UNKNOWN otherwise.
        ``touch`` (a HEAD before a push) protects it from a running GC."""
        path = self.blob_path(digest)
        link = self._link(repo, "_layers", digest)
        with self.live.lock if touch else contextlib.nullcontext():
            try:
                if not link.exists():
                    # a manifest's bytes are blobs of its repo as well
                    link = self._link(repo, "_manifests", digest)
                    if not link.exists():
                        raise FileNotFoundError
                size = path.stat().st_size
            except FileNotFoundError:
                raise RegistryError("BLOB_UNKNOWN", detail={"digest": digest})
            if touch:
                self.live.touch(digest)
                with contextlib.suppress(OSError):
                    os.utime(path)
        return BlobInfo(digest, size, path)

    def unlink_blob(self, repo: str, digest: str) -> None:
        try:
            self._link(repo, "_layers", digest).unlink()
        except FileNotFoundError:
            raise RegistryError("BLOB_UNKNOWN", detail={"digest": digest})

    def mount_blob(self, repo: str, digest: str, source: str | None) -> bool:
        """Link a blob another repo has into ``repo``; False if it cannot."""
        check_name(repo)
        path = self.blob_path(digest)
        with self.live.lock:
            source_link = None if source is None else self._link(source, "_layers", digest)
            if source_link is not None and not source_link.exists():
                return False
            if not path.exists():
                return False
            self.live.touch(digest)
            os.utime(path)
            self._touch_link(self._link(repo, "_layers", digest))
        return True

    # uploads ---------------------------------------------------------------
    def start_upload(self, repo: str) -> str:
        check_name(repo)
        uuid = str(uuidlib.uuid4())
        (self.root / "uploads" / f"{uuid}.repo").write_text(repo)
        (self.root / "uploads" / uuid).touch()
        self._hashers[uuid] = (hashlib.sha256(), 0)
        return uuid

    def upload_offset(self, repo: str, uuid: str) -> int:
        return self._upload(repo, uuid).stat().st_size

    def open_upload(self, repo: str, uuid: str) -> FileUpload:
        path = self._upload(repo, uuid)
        if uuid in self._open:
            raise RegistryError("BLOB_UPLOAD_INVALID", "upload is busy with another request")
        self._open.add(uuid)
        try:
            return FileUpload(self, uuid, path)
        except BaseException:
            self._open.discard(uuid)
            raise

    def cancel_upload(self, repo: str, uuid: str) -> None:
        path = self._upload(repo, uuid)
        self._drop_upload(path)

    def _drop_upload(self, path: Path) -> None:
        self._hashers.pop(path.name, None)
        path.unlink(missing_ok=True)
        path.with_name(f"{path.name}.repo").unlink(missing_ok=True)

    def finish_upload(self, repo: str, uuid: str, digest: str) -> BlobInfo:
        """Verify and commit; DIGEST_INVALID (and the upload is gone) if the
        bytes do not match. Blocking (hashing, fsync): call it in a thread."""
        alg, _ = _split(digest)
        path = self._upload(repo, uuid)
        if uuid in self._open:
            raise RegistryError("BLOB_UPLOAD_INVALID", "upload is busy with another request")
        size = path.stat().st_size
        state = self._hashers.get(uuid)
        if alg == "sha256" and state is not None and state[1] == size:
            actual = "sha256:" + state[0].hexdigest()
        else:
            actual = f"{alg}:" + _hash_file(path, alg).hexdigest()
        if actual != digest:
            self._drop_upload(path)
            raise RegistryError("DIGEST_INVALID", detail={"digest": digest, "actual": actual})
        with open(path, "rb+") as f:
            os.fsync(f.fileno())
        target = self.blob_path(digest)
        target.parent.mkdir(parents=True, exist_ok=True)
        with self.live.lock:
            if target.exists():
                os.utime(target)  # same bytes already stored: keep those
            else:
                os.rename(path, target)
                fsync_dir(target.parent)
            self.live.touch(digest)
            self._touch_link(self._link(repo, "_layers", digest))
        self._drop_upload(path)
        return BlobInfo(digest, size, target)

    def stale_uploads(self, older_than: float) -> Iterator[Path]:
        for entry in os.scandir(self.root / "uploads"):
            if not entry.name.endswith(".repo") and entry.name not in self._open:
                with contextlib.suppress(FileNotFoundError):
                    if entry.stat().st_mtime < older_than:
                        yield Path(entry.path)

    # manifests -------------------------------------------------------------
    def put_manifest(
        self,
        repo: str,
        body: bytes,
        refs: list[str],
        children: list[str],
        tags: list[str],
        referrer: tuple[str, dict[str, Any]] | None,
    ) -> str:
        """Store a validated manifest; MANIFEST_BLOB_UNKNOWN if ``refs`` (blobs)
        or ``children`` (manifests) are not all in ``repo``."""
        check_name(repo)
        for tag in tags:
            check_tag(tag)
        digest = "sha256:" + hashlib.sha256(body).hexdigest()
        path = self.blob_path(digest)
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.root / "tmp" / f"{uuidlib.uuid4()}"
            with open(tmp, "wb") as f:
                f.write(body)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        with self.live.lock:
            for ref in refs:
                self._require(repo, "_layers", ref)
            for ref in children:
                self._require(repo, "_manifests", ref)
            if not path.exists():  # collected since we wrote it: write again
                path.write_bytes(body)
            for ref in (*refs, *children, digest):
                self.live.touch(ref)
            os.utime(path)
            self._touch_link(self._link(repo, "_manifests", digest))
        for tag in tags:
            self._write_atomic(self._repo(repo) / "_tags" / tag, digest.encode())
        if referrer is not None:
            subject, descriptor = referrer
            alg, hexpart = _split(subject)
            entry = self._repo(repo) / "_referrers" / alg / hexpart / digest.replace(":", "-")
            self._write_atomic(entry, json.dumps(descriptor).encode())
        return digest

    def _require(self, repo: str, kind: str, digest: str) -> None:
        if not (self._link(repo, kind, digest).exists() and self.blob_path(digest).exists()):
            raise RegistryError("MANIFEST_BLOB_UNKNOWN", detail={"digest": digest})

    def resolve(self, repo: str, reference: str) -> str:
        """The digest ``reference`` (tag or digest) names in ``repo``."""
        if ":" in reference:
            digest = check_digest(reference)
        else:
            try:
                digest = (self._repo(repo) / "_tags" / check_tag(reference)).read_text()
            except (FileNotFoundError, NotADirectoryError):
                digest = ""
            if not digest:
                raise self._unknown(repo, reference)
        if not self._link(repo, "_manifests", digest).exists():
            raise self._unknown(repo, reference)
        return digest

    def _unknown(self, repo: str, reference: str) -> RegistryError:
        if not self.repo_exists(repo):
            return RegistryError("NAME_UNKNOWN", detail={"name": repo})
        return RegistryError("MANIFEST_UNKNOWN", detail={"reference": reference})

    def get_manifest(self, repo: str, reference: str) -> tuple[str, bytes]:
        digest = self.resolve(repo, reference)
        try:
            return digest, self.blob_path(digest).read_bytes()
        except FileNotFoundError:
            raise self._unknown(repo, reference)

    def delete_manifest(self, repo: str, digest: str, subject: str | None) -> None:
        link = self._link(repo, "_manifests", digest)
        if not link.exists():
            raise self._unknown(repo, digest)
        link.unlink()
        tags = self._repo(repo) / "_tags"
        for tag in self.tags(repo):
            with contextlib.suppress(FileNotFoundError):
                if (tags / tag).read_text() == digest:
                    (tags / tag).unlink()
        if subject is not None:
            alg, hexpart = _split(subject)
            entry = self._repo(repo) / "_referrers" / alg / hexpart / digest.replace(":", "-")
            entry.unlink(missing_ok=True)

    def delete_tag(self, repo: str, tag: str) -> None:
        try:
            (self._repo(repo) / "_tags" / check_tag(tag)).unlink()
        except FileNotFoundError:
            raise self._unknown(repo, tag)

    def tags(self, repo: str) -> list[str]:
        if not self.repo_exists(repo):
            raise RegistryError("NAME_UNKNOWN", detail={"name": repo})
        try:
            return sorted(os.listdir(self._repo(repo) / "_tags"))
        except FileNotFoundError:
            return []

    def repositories(self) -> list[str]:
        base = self.root / "repos"
        found: list[str] = []
        for dirpath, dirnames, _ in os.walk(base):
            if "_layers" in dirnames or "_manifests" in dirnames:
                found.append(os.path.relpath(dirpath, base))
            dirnames[:] = [d for d in dirnames if not d.startswith("_")]
        return sorted(found)

    def manifest_digests(self, repo: str) -> list[str]:
        return self._links(repo, "_manifests")

    def layer_digests(self, repo: str) -> list[str]:
        return self._links(repo, "_layers")

    def _links(self, repo: str, kind: str) -> list[str]:
        out: list[str] = []
        base = self._repo(repo) / kind
        with contextlib.suppress(FileNotFoundError):
            for alg in os.listdir(base):
                out += [f"{alg}:{h}" for h in os.listdir(base / alg)]
        return out

    def all_blobs(self) -> Iterator[tuple[str, Path]]:
        base = self.root / "blobs"
        for alg in os.listdir(base):
            for prefix in os.listdir(base / alg):
                for hexpart in os.listdir(base / alg / prefix):
                    yield f"{alg}:{hexpart}", base / alg / prefix / hexpart

    def referrers(self, repo: str, digest: str) -> list[dict[str, Any]]:
        alg, hexpart = _split(digest)
        base = self._repo(repo) / "_referrers" / alg / hexpart
        out: list[dict[str, Any]] = []
        with contextlib.suppress(FileNotFoundError):
            for name in sorted(os.listdir(base)):
                if not self._link(repo, "_manifests", name.replace("-", ":", 1)).exists():
                    continue
                with contextlib.suppress(FileNotFoundError, ValueError):
                    out.append(json.loads((base / name).read_bytes()))
        return out
