"""The content store: immutable blobs addressed by their sha256 digest.

Blobs live at ``<root>/blobs/sha256/<hex>``. A blob is written to a temporary
file under ``<root>/ingest/``, hashed while written, verified against the
expected size and digest, fsynced, renamed into place and its directory
fsynced (as containerd's ``content/local``): a crash leaves at worst a stray
temp file, never a blob whose content does not match its name.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from dockyard import errdefs

_DIGEST_RE = re.compile(r"^sha256:[0-9a-f]{64}$")


def check_digest(digest: str) -> str:
    """The hex part of a ``sha256:<hex>`` digest; anything else is invalid."""
    if not _DIGEST_RE.match(digest):
        raise errdefs.InvalidArgument(f"invalid digest: {digest!r}")
    return digest[7:]


def fsync_dir(path: Path) -> None:
    """Make a rename or unlink in ``path`` durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Writer:
    """An in-progress blob: ``write`` chunks, then ``commit`` once.

    Used as a context manager; leaving the block without a commit (or with an
    error) removes the temporary file.
    """

    def __init__(self, store: ContentStore, expected: str | None, size: int | None) -> None:
        if expected is not None:
            check_digest(expected)
        self._store = store
        self._expected = expected
        self._expected_size = size
        self._hash = hashlib.sha256()
        self.size = 0
        fd, name = tempfile.mkstemp(dir=store.ingest_dir, prefix="blob-")
        self._file = os.fdopen(fd, "wb")
        self._tmp = Path(name)
        self.digest: str | None = None

    def write(self, data: bytes) -> int:
        self._hash.update(data)
        self.size += len(data)
        self._file.write(data)
        return len(data)

    def commit(self) -> str:
        """Verify, fsync and rename into place; returns the digest."""
        digest = "sha256:" + self._hash.hexdigest()
        try:
            if self._expected is not None and digest != self._expected:
                raise errdefs.InvalidArgument(
                    f"unexpected commit digest {digest}, expected {self._expected}: "
                    "failed precondition"
                )
            if self._expected_size is not None and self.size != self._expected_size:
                raise errdefs.InvalidArgument(
                    f"unexpected commit size {self.size}, expected {self._expected_size}"
                )
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
            final = self._store.path(digest)
            final.parent.mkdir(parents=True, exist_ok=True)
            os.replace(self._tmp, final)
            fsync_dir(final.parent)
        except BaseException:
            self.abort()
            raise
        self.digest = digest
        return digest

    def abort(self) -> None:
        if not self._file.closed:
            self._file.close()
        self._tmp.unlink(missing_ok=True)

    def __enter__(self) -> Writer:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.digest is None:
            self.abort()


class ContentStore:
    """Blobs under ``root``; safe to share between threads."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.blobs_dir = self.root / "blobs" / "sha256"
        self.ingest_dir = self.root / "ingest"
        self.blobs_dir.mkdir(parents=True, exist_ok=True)
        self.ingest_dir.mkdir(parents=True, exist_ok=True)

    def path(self, digest: str) -> Path:
        return self.blobs_dir / check_digest(digest)

    def has(self, digest: str) -> bool:
        return self.path(digest).is_file()

    def open(self, digest: str) -> BinaryIO:
        try:
            return open(self.path(digest), "rb")
        except FileNotFoundError:
            raise errdefs.NotFound(f"content digest {digest}: not found")

    def read(self, digest: str) -> bytes:
        with self.open(digest) as f:
            return f.read()

    def writer(self, expected: str | None = None, *, size: int | None = None) -> Writer:
        return Writer(self, expected, size)

    def put(self, data: bytes, expected: str | None = None) -> str:
        with self.writer(expected, size=len(data)) as w:
            w.write(data)
            return w.commit()

    def delete(self, digest: str) -> None:
        try:
            self.path(digest).unlink()
        except FileNotFoundError:
            raise errdefs.NotFound(f"content digest {digest}: not found")

    def walk(self) -> Iterator[str]:
        """Every stored digest (temp files are not blobs and are skipped)."""
        for entry in sorted(os.listdir(self.blobs_dir)):
            if len(entry) == 64:
                yield "sha256:" + entry
