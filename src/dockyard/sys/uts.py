"""sethostname(2) and setdomainname(2); both need CAP_SYS_ADMIN in the UTS namespace."""

from __future__ import annotations

import ctypes

from dockyard.sys.libc import check, libc

libc.sethostname.argtypes = [ctypes.c_char_p, ctypes.c_size_t]
libc.setdomainname.argtypes = [ctypes.c_char_p, ctypes.c_size_t]


def sethostname(name: str) -> None:
    raw = name.encode()
    check(libc.sethostname(raw, len(raw)), "sethostname")


def setdomainname(name: str) -> None:
    raw = name.encode()
    check(libc.setdomainname(raw, len(raw)), "setdomainname")
