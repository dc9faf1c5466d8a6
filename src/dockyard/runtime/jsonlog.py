"""Docker's json-file log format: the entry encoding, timestamps and the writer.

One entry per line: ``{"log":"hi\\n","stream":"stdout","time":"<RFC3339Nano>"}``.
Output is split on newlines; a line longer than 16 KiB is cut into partial
entries (no trailing newline), as is whatever is left at end of stream. The
writer rotates the file once it has reached ``max_size`` bytes, keeping
``max_file`` files: ``<path>``, ``<path>.1`` (newest rotated), ... Stdlib only:
the shim imports it.
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

PARTIAL_SIZE = 16 * 1024  # Docker's copier buffer: longer lines become partial entries
STREAMS = {1: "stdout", 2: "stderr"}

# Go's encoder escapes these for HTML safety; matching it keeps files byte-identical.
_GO_ESCAPES = str.maketrans(
    {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}
)


def format_time(ns: int) -> str:
    """RFC3339Nano in UTC as Go prints it: trailing zeros of the fraction dropped."""
    seconds, frac = divmod(ns, 1_000_000_000)
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
    if frac:
        stamp += "." + f"{frac:09d}".rstrip("0")
    return stamp + "Z"


def encode_entry(data: bytes, stream: str, stamp: str) -> bytes:
    text = json.dumps(data.decode("utf-8", "replace"), ensure_ascii=False)
    text = text.translate(_GO_ESCAPES)
    return f'{{"log":{text},"stream":"{stream}","time":"{stamp}"}}\n'.encode()


class JsonLogWriter:
    """Appends entries for several streams to one rotating file; thread-safe."""

    def __init__(self, path: Path, *, max_size: int = 0, max_file: int = 1) -> None:
        self._path = path
        self._max_size = max_size
        self._max_file = max(1, max_file)
        self._lock = threading.Lock()
        self._pending: dict[str, bytes] = {}
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
        self._size = os.fstat(self._fd).st_size

    def write(self, stream: str, data: bytes, *, now_ns: int | None = None) -> None:
        """Log ``data`` read from ``stream``; an incomplete last line waits for more."""
        stamp = format_time(now_ns if now_ns is not None else time.time_ns())
        with self._lock:
            buf = self._pending.get(stream, b"") + data
            start = 0
            while True:
                end = buf.find(b"\n", start)
                if end < 0:
                    break
                # a newline beyond the partial limit still cuts the line at 16 KiB
                while end + 1 - start > PARTIAL_SIZE:
                    self._emit(buf[start : start + PARTIAL_SIZE], stream, stamp)
                    start += PARTIAL_SIZE
                self._emit(buf[start : end + 1], stream, stamp)
                start = end + 1
            while len(buf) - start >= PARTIAL_SIZE:
                self._emit(buf[start : start + PARTIAL_SIZE], stream, stamp)
                start += PARTIAL_SIZE
            self._pending[stream] = buf[start:]

    def flush(self, stream: str) -> None:
        """End of ``stream``: its incomplete last line becomes an entry of its own."""
        with self._lock:
            rest = self._pending.pop(stream, b"")
            if rest:
                self._emit(rest, stream, format_time(time.time_ns()))

    def close(self) -> None:
        for stream in list(self._pending):
            self.flush(stream)
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1

    def _emit(self, data: bytes, stream: str, stamp: str) -> None:
        if self._max_size > 0 and self._size >= self._max_size:
            self._rotate()
        entry = encode_entry(data, stream, stamp)
        os.write(self._fd, entry)
        self._size += len(entry)

    def _rotate(self) -> None:
        os.close(self._fd)
        if self._max_file > 1:
            name = str(self._path)
            for n in range(self._max_file - 1, 1, -1):
                try:
                    os.replace(f"{name}.{n - 1}", f"{name}.{n}")
                except FileNotFoundError:
                    pass
            os.replace(name, f"{name}.1")
            flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC
        else:
            flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC
        self._fd = os.open(self._path, flags, 0o640)
        self._size = 0
