"""mount(2), umount2(2), and statfs(2)'s file system type.

Flags are the kernel's MS_* values. Errno meanings that callers rely on:
EINVAL from umount2 means "not a mount point"; EBUSY means still in use
(retry with MNT_DETACH); ENODEV from mount means the filesystem type is not
supported here (the overlay snapshotter falls back to copying).
"""

from __future__ import annotations

import ctypes
import errno

from dockyard.sys.libc import check, libc

MS_RDONLY = 0x1
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8
MS_REMOUNT = 0x20
MS_NOATIME = 0x400
MS_BIND = 0x1000
MS_MOVE = 0x2000
MS_REC = 0x4000
MS_SILENT = 0x8000
MS_PRIVATE = 1 << 18
MS_SLAVE = 1 << 19
MS_SHARED = 1 << 20
MS_RELATIME = 1 << 21
MS_STRICTATIME = 1 << 24

MNT_FORCE = 1
MNT_DETACH = 2

libc.mount.argtypes = [
    ctypes.c_char_p,
    ctypes.c_char_p,
    ctypes.c_char_p,
    ctypes.c_ulong,
    ctypes.c_char_p,
]
libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]


def _b(value: str | bytes | None) -> bytes | None:
    if value is None or isinstance(value, bytes):
        return value
    return value.encode()


def mount(
    source: str | None,
    target: str,
    fstype: str | None = None,
    flags: int = 0,
    data: str | None = None,
) -> None:
    check(libc.mount(_b(source), _b(target), _b(fstype), flags, _b(data)), f"mount {target}")


def umount(target: str, flags: int = 0) -> None:
    check(libc.umount2(_b(target), flags), f"umount {target}")


def umount_quiet(target: str, flags: int = MNT_DETACH) -> bool:
    """Unmount if mounted; True when something was unmounted."""
    try:
        umount(target, flags)
    except OSError as exc:
        if exc.errno in (errno.EINVAL, errno.ENOENT):
            return False
        raise
    return True


libc.syscall.restype = ctypes.c_long
_SYS_PIVOT_ROOT = 155  # x86_64


def pivot_root(new_root: str, put_old: str) -> None:
    """pivot_root(2); with new_root == put_old == "." the old root ends up on
    top of the new one and is then detached with umount2(".", MNT_DETACH)."""
    result = libc.syscall(
        ctypes.c_long(_SYS_PIVOT_ROOT), ctypes.c_char_p(_b(new_root)), ctypes.c_char_p(_b(put_old))
    )
    check(int(result), "pivot_root")


_FLAG_OPTIONS: dict[str, tuple[bool, int]] = {
    "ro": (False, MS_RDONLY),
    "rw": (True, MS_RDONLY),
    "nosuid": (False, MS_NOSUID),
    "suid": (True, MS_NOSUID),
    "nodev": (False, MS_NODEV),
    "dev": (True, MS_NODEV),
    "noexec": (False, MS_NOEXEC),
    "exec": (True, MS_NOEXEC),
    "remount": (False, MS_REMOUNT),
    "bind": (False, MS_BIND),
    "rbind": (False, MS_BIND | MS_REC),
    "noatime": (False, MS_NOATIME),
    "atime": (True, MS_NOATIME),
    "relatime": (False, MS_RELATIME),
    "norelatime": (True, MS_RELATIME),
    "strictatime": (False, MS_STRICTATIME),
    "nostrictatime": (True, MS_STRICTATIME),
    "sync": (False, 0x10),
    "async": (True, 0x10),
    "dirsync": (False, 0x80),
    "nodiratime": (False, 0x800),
    "diratime": (True, 0x800),
    "mand": (False, 0x40),
    "nomand": (True, 0x40),
    "defaults": (False, 0),
}

MS_UNBINDABLE = 1 << 17

PROPAGATION: dict[str, int] = {
    "private": MS_PRIVATE,
    "rprivate": MS_PRIVATE | MS_REC,
    "shared": MS_SHARED,
    "rshared": MS_SHARED | MS_REC,
    "slave": MS_SLAVE,
    "rslave": MS_SLAVE | MS_REC,
    "unbindable": MS_UNBINDABLE,
    "runbindable": MS_UNBINDABLE | MS_REC,
}


def parse_options(options: list[str]) -> tuple[int, list[int], str]:
    """OCI/fstab mount options -> (MS_* flags, propagation flags, data string)."""
    flags = 0
    propagation: list[int] = []
    data: list[str] = []
    for option in options:
        if option in _FLAG_OPTIONS:
            clear, bit = _FLAG_OPTIONS[option]
            flags = flags & ~bit if clear else flags | bit
        elif option in PROPAGATION:
            propagation.append(PROPAGATION[option])
        else:
            data.append(option)
    return flags, propagation, ",".join(data)


# statfs(2) f_type values, named as dockerd's "Backing Filesystem"
FS_NAMES = {0xEF53: "extfs", 0x58465342: "xfs", 0x9123683E: "btrfs", 0x01021994: "tmpfs"}


class _StatFs(ctypes.Structure):
    _fields_ = [("f_type", ctypes.c_long), ("_rest", ctypes.c_byte * 112)]


def filesystem_name(path: str) -> str:
    """The type of the file system holding ``path`` ("extfs", "xfs", ...)."""
    buf = _StatFs()
    if libc.statfs(str(path).encode(), ctypes.byref(buf)) != 0:
        return "<unknown>"
    return FS_NAMES.get(buf.f_type & 0xFFFFFFFF, "<unknown>")
