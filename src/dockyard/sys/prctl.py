"""prctl(2) for the options the runtime and the shim use.

EINVAL means the option or capability number is unknown to this kernel;
EPERM from PR_CAPBSET_DROP means CAP_SETPCAP is missing.
"""

from __future__ import annotations

import ctypes

from dockyard.sys.libc import check, libc

PR_SET_PDEATHSIG = 1
PR_SET_KEEPCAPS = 8
PR_CAPBSET_READ = 23
PR_CAPBSET_DROP = 24
PR_SET_CHILD_SUBREAPER = 36
PR_SET_NO_NEW_PRIVS = 38
PR_GET_NO_NEW_PRIVS = 39
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_RAISE = 2
PR_CAP_AMBIENT_CLEAR_ALL = 4

libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
libc.prctl.restype = ctypes.c_int


def prctl(option: int, arg2: int = 0, arg3: int = 0, arg4: int = 0, arg5: int = 0) -> int:
    return check(libc.prctl(option, arg2, arg3, arg4, arg5), f"prctl({option})")


def set_child_subreaper(on: bool = True) -> None:
    """Orphaned descendants are re-parented to us instead of to init."""
    prctl(PR_SET_CHILD_SUBREAPER, int(on))


def set_no_new_privs() -> None:
    prctl(PR_SET_NO_NEW_PRIVS, 1)


def set_keepcaps(on: bool) -> None:
    """Keep the permitted set across setuid away from root."""
    prctl(PR_SET_KEEPCAPS, int(on))


def set_pdeathsig(sig: int) -> None:
    prctl(PR_SET_PDEATHSIG, sig)
