"""Network interface flags through the SIOCGIFFLAGS/SIOCSIFFLAGS ioctls.

Only what a fresh network namespace needs: bringing ``lo`` up.
ENODEV means there is no interface of that name.
"""

from __future__ import annotations

import fcntl
import socket
import struct

SIOCGIFFLAGS = 0x8913
SIOCSIFFLAGS = 0x8914
IFF_UP = 0x1

_IFREQ = "16sH14x"


def set_up(name: str = "lo") -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        req = struct.pack(_IFREQ, name.encode(), 0)
        _, flags = struct.unpack(_IFREQ, fcntl.ioctl(sock.fileno(), SIOCGIFFLAGS, req))
        if not flags & IFF_UP:
            fcntl.ioctl(
                sock.fileno(), SIOCSIFFLAGS, struct.pack(_IFREQ, name.encode(), flags | IFF_UP)
            )
