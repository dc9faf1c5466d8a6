"""The shared handle on libc and the errno check every wrapper uses."""

from __future__ import annotations

import ctypes
import os

# By soname: ctypes.util.find_library costs ~10 ms and a megabyte per process.
libc = ctypes.CDLL("libc.so.6", use_errno=True)


def check(result: int, what: str) -> int:
    """Raise OSError with errno when a libc call returned -1."""
    if result == -1:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")
    return result
