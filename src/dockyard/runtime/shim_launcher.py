"""The shim launcher: a pre-loaded process that forks shims (a zygote).

Starting a Python interpreter and importing the shim and the builtin runtime
costs tens of milliseconds per container; forking a process that has done it
once costs about one. The daemon starts one launcher and sends it, over a
SOCK_SEQPACKET socket, one message per shim: the path of the shim's config
file, with two descriptors attached (SCM_RIGHTS): the pipe the shim reports
readiness on, and the shim's log file for stderr.

The launcher stays single-threaded so that forking it is safe. It ignores
SIGCHLD so the kernel reaps the shims it forked; each shim restores the
default at once because it waits for its container. A shim calls ``setsid``
and so outlives the launcher and the daemon. The launcher exits when the
daemon's end of the socket closes.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
from pathlib import Path
from types import SimpleNamespace

# Pre-load what every shim needs, so that forked shims find it imported.
from dockyard.runtime import builtin, shim  # noqa: F401

MAX_MESSAGE = 4096


def _serve_one(path: bytes, report_fd: int, log_fd: int) -> None:
    """In the forked child: become the shim described by the config at path."""
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    os.dup2(log_fd, 2)
    os.close(log_fd)
    code = 1
    try:
        config = SimpleNamespace(**json.loads(Path(os.fsdecode(path)).read_text()))
        code = shim._run_child(config, report_fd)  # type: ignore[arg-type]
    except BaseException:
        shim.log(shim._traceback())
    finally:
        sys.stderr.flush()
        os._exit(code)


def main(argv: list[str]) -> int:
    channel = socket.socket(fileno=int(argv[1]))
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)
    while True:
        try:
            message, fds, _, _ = socket.recv_fds(channel, MAX_MESSAGE, 2)
        except InterruptedError:
            continue
        if not message:
            return 0
        if len(fds) != 2:
            for fd in fds:
                os.close(fd)
            continue
        if os.fork() == 0:
            channel.close()
            _serve_one(message, fds[0], fds[1])
        for fd in fds:
            os.close(fd)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
