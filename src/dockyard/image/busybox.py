"""A minimal busybox root filesystem as a layer tar, for tests and demos.

The tar holds ``/bin/busybox``, a hard link for every applet that
``busybox --list-full`` names, the usual top-level directories and the
``/etc/passwd`` and ``/etc/group`` of Docker's busybox image. Entries are
sorted, owned by root, and dated ``MTIME``, so the same busybox binary
always gives the same diff ID.

    python -m dockyard.image.busybox OUT.tar    # or - for stdout
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tarfile
from typing import BinaryIO

from dockyard import errdefs

MTIME = 946684800  # 2000-01-01T00:00:00Z

DIRS = {
    "bin": 0o755,
    "dev": 0o755,
    "etc": 0o755,
    "home": 0o755,
    "proc": 0o755,
    "root": 0o700,
    "sbin": 0o755,
    "sys": 0o755,
    "tmp": 0o1777,
    "usr": 0o755,
    "usr/bin": 0o755,
    "usr/sbin": 0o755,
    "var": 0o755,
    "var/spool": 0o755,
    "var/spool/mail": 0o755,
    "var/www": 0o755,
}

PASSWD = """\
root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/bin/false
bin:x:2:2:bin:/bin:/bin/false
sys:x:3:3:sys:/dev:/bin/false
sync:x:4:100:sync:/bin:/bin/sync
mail:x:8:8:mail:/var/spool/mail:/bin/false
www-data:x:33:33:www-data:/var/www:/bin/false
operator:x:37:37:Operator:/var:/bin/false
nobody:x:65534:65534:nobody:/home:/bin/false
"""

GROUP = """\
root:x:0:
daemon:x:1:
bin:x:2:
sys:x:3:
adm:x:4:
tty:x:5:
disk:x:6:
lp:x:7:
mail:x:8:
kmem:x:9:
wheel:x:10:root
cdrom:x:11:
dialout:x:18:
floppy:x:19:
video:x:28:
audio:x:29:
tape:x:32:
www-data:x:33:
operator:x:37:
utmp:x:43:
plugdev:x:46:
staff:x:50:
lock:x:54:
netdev:x:82:
users:x:100:
nogroup:x:65534:
"""

FILES = {
    "etc/passwd": PASSWD,
    "etc/group": GROUP,
    "etc/nsswitch.conf": "hosts: files dns\n",
}


def _info(name: str, **fields: object) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.mtime = MTIME
    info.uname = info.gname = "root"
    for key, value in fields.items():
        setattr(info, key, value)
    return info


def applets(busybox: str) -> list[str]:
    """The applet paths (``bin/sh``, ``usr/bin/awk``, ...) ``busybox`` provides."""
    if not os.access(busybox, os.X_OK):
        raise errdefs.NotFound(f"{busybox}: no busybox binary (install the busybox-static package)")
    result = subprocess.run([busybox, "--list-full"], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise errdefs.System(f"{busybox} --list-full failed: {result.stderr.strip()}")
    return sorted(
        {
            line.strip().lstrip("/")
            for line in result.stdout.splitlines()
            if "/" in line.strip() and line.strip().lstrip("/") != "bin/busybox"
        }
    )


def build_rootfs_tar(out: BinaryIO, *, busybox: str = "/bin/busybox") -> None:
    """Write the rootfs tar (uncompressed) to ``out``."""
    links = applets(busybox)
    dirs = dict(DIRS)
    for path in links:
        parent = os.path.dirname(path)
        while parent and parent not in dirs:
            dirs[parent] = 0o755
            parent = os.path.dirname(parent)
    with open(busybox, "rb") as f:
        binary = f.read()
    entries: dict[str, tuple[tarfile.TarInfo, bytes | None]] = {}
    for path, mode in dirs.items():
        entries[path] = (_info(path, type=tarfile.DIRTYPE, mode=mode), None)
    entries["bin/busybox"] = (_info("bin/busybox", mode=0o755, size=len(binary)), binary)
    for path, text in FILES.items():
        data = text.encode()
        entries[path] = (_info(path, mode=0o644, size=len(data)), data)
    for path in links:
        entries[path] = (
            _info(path, type=tarfile.LNKTYPE, linkname="bin/busybox", mode=0o755),
            None,
        )
    # the link target must precede its links: "bin/busybox" sorts before "bin/sh"
    # but not before "bin/[", so it goes first after the directories
    rest = sorted(p for p in entries if p not in dirs and p != "bin/busybox")
    order = [*sorted(dirs), "bin/busybox", *rest]
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.GNU_FORMAT) as tar:
        for path in order:
            info, data = entries[path]
            tar.addfile(info, io.BytesIO(data) if data is not None else None)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m dockyard.image.busybox OUT.tar|-", file=sys.stderr)
        return 2
    try:
        if args[0] == "-":
            build_rootfs_tar(sys.stdout.buffer)
            sys.stdout.buffer.flush()
        else:
            with open(args[0], "wb") as out:
                build_rootfs_tar(out)
    except errdefs.DockyardError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
