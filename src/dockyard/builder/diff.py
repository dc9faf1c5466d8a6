"""A build step's snapshot stored as a layer: its changes (``image.changes``)
streamed as a tar through a pipe into ``ImageService.add_layer``, so the
tar is never held whole. A step that changed nothing gives no layer
(Docker's ``empty_layer`` history entry)."""

from __future__ import annotations

import os
import threading

from dockyard import errdefs
from dockyard.image import changes

_CHUNK = 1 << 20


class _PipeReader:
    """The read end of a pipe as a blocking binary stream."""

    def __init__(self, fd: int) -> None:
        self._file = os.fdopen(fd, "rb", buffering=_CHUNK)

    def read(self, size: int = -1) -> bytes:
        return self._file.read(size)

    def close(self) -> None:
        self._file.close()


def store_snapshot(images, snapshotter, key: str, *, parent_chain: str | None):
    """The ``Layer`` holding snapshot ``key``'s changes on top of
    ``parent_chain``, or None when there are none."""
    if not changes.changes(snapshotter, key):
        return None
    read_fd, write_fd = os.pipe()
    errors: list[BaseException] = []

    def produce() -> None:
        try:
            with os.fdopen(write_fd, "wb", buffering=_CHUNK) as out:
                changes.write_layer_tar(snapshotter, key, out)
        except BaseException as exc:  # reported to the caller below
            errors.append(exc)

    writer = threading.Thread(target=produce, name="layer-tar", daemon=True)
    writer.start()
    reader = _PipeReader(read_fd)
    try:
        layer = images.add_layer(reader, parent_chain=parent_chain)
    finally:
        reader.close()  # a writer still blocked on a full pipe gets EPIPE
        writer.join()
    if errors and not isinstance(errors[0], BrokenPipeError):
        exc = errors[0]
        if isinstance(exc, errdefs.DockyardError):
            raise exc
        raise errdefs.System(f"failed to export layer: {exc}")
    return layer
