"""Docker's stdcopy framing, sans-IO: an 8-byte header (stream, 0, 0, 0,
big-endian uint32 length) before each chunk of a non-TTY attach/logs stream.
"""

from __future__ import annotations

STDIN, STDOUT, STDERR, SYSTEMERR = 0, 1, 2, 3
HEADER_LEN = 8


def frame(stream: int, payload: bytes) -> bytes:
    """One frame carrying ``payload`` on ``stream``."""
    return bytes((stream, 0, 0, 0)) + len(payload).to_bytes(4, "big") + payload


class Demuxer:
    """Feed bytes as they arrive; get (stream, payload) pairs back."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        self._buf += data
        out: list[tuple[int, bytes]] = []
        while len(self._buf) >= HEADER_LEN:
            size = int.from_bytes(self._buf[4:8], "big")
            if len(self._buf) < HEADER_LEN + size:
                break
            stream = self._buf[0]
            out.append((stream, bytes(self._buf[HEADER_LEN : HEADER_LEN + size])))
            del self._buf[: HEADER_LEN + size]
        return out

    @property
    def pending(self) -> int:
        """Bytes held back waiting for the rest of a frame."""
        return len(self._buf)
