"""Pseudo-terminals opened from a given devpts, and controlling terminals.

Opening ``ptmx`` of the container's own devpts instance (not the host's) is
what makes the slave show up as /dev/pts/N inside the container. TIOCSCTTY
fails with EPERM unless the caller is a session leader without a terminal.
"""

from __future__ import annotations

import fcntl
import os
import struct
import termios

TIOCGPTN = 0x80045430
TIOCSPTLCK = 0x40045431


def open_pty(pts_dir: str = "/dev/pts") -> tuple[int, int, str]:
    """Open a new pty pair in ``pts_dir``; return (master, slave, slave path)."""
    master = os.open(os.path.join(pts_dir, "ptmx"), os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
    try:
        fcntl.ioctl(master, TIOCSPTLCK, struct.pack("i", 0))
        (index,) = struct.unpack("I", fcntl.ioctl(master, TIOCGPTN, struct.pack("I", 0)))
        path = os.path.join(pts_dir, str(index))
        slave = os.open(path, os.O_RDWR | os.O_NOCTTY)
    except BaseException:
        os.close(master)
        raise
    return master, slave, path


def set_controlling_terminal(fd: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSCTTY, 0)


def set_winsize(fd: int, rows: int, cols: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
