"""The build context: the tar stream a client sends to ``POST /build``,
unpacked into a private directory, and safe path lookups inside it.

The archive is hostile. It is unpacked with the layer applier
(``image.layer``: names climbing out with ``..`` or absolute names are
refused or made relative, parents are walked without following symlinks,
hard links must stay inside), streamed (no member is held in memory), and
every source path a COPY names is resolved with ``secure_join`` so a symlink
in the context pointing outward resolves inside the context directory.

Accepted bodies: a tar, plain or compressed with gzip, bzip2, xz or zstd;
or, as dockerd does, a bare Dockerfile (any body that is not an archive).
The directory lives under ``<data-root>/builder/<id>`` and ``close`` removes
it whatever happened.
"""

from __future__ import annotations

import bz2
import lzma
import os
import posixpath
import secrets
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from dockyard import errdefs
from dockyard.image.layer import decompressed, peek, unpack
from dockyard.image.tarstream import HeaderError, parse_header
from dockyard.sys.securejoin import secure_join

_BZIP2 = b"BZh"
_XZ = b"\xfd7zXZ\x00"


@dataclass(frozen=True)
class BuildContext:
    """An unpacked context; ``root`` is the directory that stands for ``.``."""

    root: Path
    #: host path of each regular file unpacked → (inode, sha256 hex): COPY's
    #: checksum need not read the file again
    digests: dict[str, tuple[int, str]] = field(default_factory=dict)

    def file_digest(self, path: str, st: os.stat_result) -> str | None:
        """The sha256 of a context file recorded while unpacking, if ``path``
        (lstat ``st``) is still that file."""
        known = self.digests.get(path)
        if known is not None and known[0] == st.st_ino:
            return known[1]
        return None

    def close(self) -> None:
        shutil.rmtree(self.root.parent, ignore_errors=True)

    def __enter__(self) -> BuildContext:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def resolve(self, path: str) -> str:
        """A host path for ``path`` (relative to the context) inside ``root``;
        symlinks are followed as if ``root`` were ``/``."""
        return secure_join(str(self.root), path)

    def read_dockerfile(self, name: str) -> str:
        """The Dockerfile's text; Docker's error when it is missing."""
        clean = relative_path(name or "Dockerfile")
        if clean is None:
            raise errdefs.InvalidArgument(f"Cannot locate specified Dockerfile: {name}")
        path = self.resolve(clean)
        if not os.path.isfile(path) and not name:
            # dockerd falls back to the lower-case name
            path = self.resolve("dockerfile")
        try:
            with open(path, "rb") as f:
                data = f.read()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise errdefs.InvalidArgument(
                f"Cannot locate specified Dockerfile: {name or 'Dockerfile'}"
            )
        return data.decode("utf-8", "replace")


def relative_path(path: str) -> str | None:
    """``path`` cleaned relative to the context root, or None when it climbs out."""
    norm = posixpath.normpath("/" + path.lstrip("/")) if path.startswith("/") else None
    if norm is not None:
        return norm.lstrip("/")
    norm = posixpath.normpath(path or ".")
    if norm == ".." or norm.startswith("../"):
        return None
    return "" if norm == "." else norm


def is_tar_header(block: bytes) -> bool:
    try:
        return parse_header(block[:512]) is not None
    except HeaderError:
        return False


def _extract(stream: BinaryIO, context: BuildContext) -> None:
    """Unpack a tar stream with the layer's rules, recording each file's
    sha256 (COPY's checksum) instead of the stream's."""
    unpack(
        stream,
        context.root,
        whiteout="delete",
        hash_stream=False,
        file_digests=context.digests,
        what="build context",
    )


def uncompressed(stream: BinaryIO) -> tuple[bytes, BinaryIO]:
    head, stream = peek(stream, 6)
    if head.startswith(_BZIP2):
        stream = bz2.BZ2File(stream)  # type: ignore[assignment]
    elif head.startswith(_XZ):
        stream = lzma.LZMAFile(stream)  # type: ignore[assignment]  # noqa: SIM115
    else:
        stream = decompressed(stream)  # gzip, zstd or plain
    return peek(stream, 512)


def receive(stream: BinaryIO, base: Path, *, dockerfile: str = "Dockerfile") -> BuildContext:
    """Unpack ``stream`` into a new directory under ``base``. A body that is
    not an archive is taken as the Dockerfile itself (saved as ``dockerfile``)."""
    workdir = Path(base) / secrets.token_hex(16)
    root = workdir / "context"
    root.mkdir(parents=True, mode=0o700)
    context = BuildContext(root)
    try:
        try:
            head, plain = uncompressed(stream)
        except (OSError, EOFError, lzma.LZMAError) as exc:
            raise errdefs.InvalidArgument(f"failed to read the build context: {exc}")
        if not head:
            return context  # an empty body: an empty context
        if is_tar_header(head) or head == b"\0" * 512:
            _extract(plain, context)
        else:
            name = relative_path(dockerfile or "Dockerfile") or "Dockerfile"
            target = Path(context.resolve(name))
            target.parent.mkdir(parents=True, exist_ok=True)
            with open(target, "wb") as out:
                shutil.copyfileobj(plain, out, 1 << 20)  # type: ignore[misc]
        os.chmod(root, 0o755)
    except BaseException:
        context.close()
        raise
    return context
