"""unshare(2) and setns(2), and the CLONE_NEW* flags of each namespace kind.

Errno meanings callers rely on: EPERM means the caller lacks CAP_SYS_ADMIN;
EINVAL from setns means the fd is not a namespace of the requested kind.
A new pid namespace only applies to children forked afterwards.
"""

from __future__ import annotations

import ctypes

from dockyard.sys.libc import check, libc

CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
CLONE_NEWTIME = 0x00000080

# OCI runtime spec namespace type -> clone flag.
BY_OCI_TYPE: dict[str, int] = {
    "mount": CLONE_NEWNS,
    "cgroup": CLONE_NEWCGROUP,
    "uts": CLONE_NEWUTS,
    "ipc": CLONE_NEWIPC,
    "user": CLONE_NEWUSER,
    "pid": CLONE_NEWPID,
    "network": CLONE_NEWNET,
    "time": CLONE_NEWTIME,
}

libc.unshare.argtypes = [ctypes.c_int]
libc.setns.argtypes = [ctypes.c_int, ctypes.c_int]


def unshare(flags: int) -> None:
    check(libc.unshare(flags), "unshare")


def setns(fd: int, nstype: int = 0) -> None:
    """Join the namespace open at ``fd``; nstype 0 accepts any kind."""
    check(libc.setns(fd, nstype), "setns")
