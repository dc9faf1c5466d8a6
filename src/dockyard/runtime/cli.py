"""``dockyard-runtime``: the builtin runtime behind runc's command line.

``create`` returns once the container is created and blocked before exec;
the container keeps the CLI's stdio and outlives the CLI. Errors go to
stderr and, with ``--log``, to the log file (one JSON object per line with
``--log-format json``, as containerd expects from runc); the exit status is 1.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from pathlib import Path

from dockyard import errdefs

DEFAULT_ROOT = "/run/dockyard-runtime"


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if not getattr(args, "command", None):
        _parser().print_usage(sys.stderr)
        return 2
    from dockyard.runtime.builtin import BuiltinRuntime

    runtime = BuiltinRuntime(Path(args.root))
    try:
        return _run(runtime, args)
    except errdefs.DockyardError as exc:
        _log_error(args, exc.message)
        return 1


def _run(runtime, args: argparse.Namespace) -> int:
    if args.command == "create":
        runtime.create(
            args.id,
            Path(args.bundle),
            pid_file=Path(args.pid_file or Path(args.bundle) / "init.pid"),
            stdio=(0, 1, 2),
            console_socket=Path(args.console_socket) if args.console_socket else None,
        )
    elif args.command == "start":
        runtime.start(args.id)
    elif args.command == "state":
        print(json.dumps(runtime.state(args.id), indent=2))
    elif args.command == "kill":
        runtime.kill(args.id, parse_signal(args.signal), all=args.all)
    elif args.command == "delete":
        runtime.delete(args.id, force=args.force)
    elif args.command == "list":
        _list(runtime.list(), args.format)
    return 0


def parse_signal(value: str) -> int:
    """ "9", "KILL" or "SIGKILL" -> 9."""
    if value.isdigit():
        return int(value)
    name = value.upper()
    if not name.startswith("SIG"):
        name = "SIG" + name
    try:
        return int(signal.Signals[name])
    except KeyError:
        raise errdefs.InvalidArgument(f"unknown signal {value!r}")


def _list(states: list[dict], fmt: str) -> None:
    if fmt == "json":
        print(json.dumps(states))
        return
    print(f"{'ID':<20}{'PID':<10}{'STATUS':<10}{'BUNDLE':<40}CREATED")
    for s in states:
        print(f"{s['id']:<20}{s['pid']:<10}{s['status']:<10}{s['bundle']:<40}{s['created']}")


def _log_error(args: argparse.Namespace, message: str) -> None:
    print(f"dockyard-runtime: {message}", file=sys.stderr)
    if not args.log:
        return
    if args.log_format == "json":
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        line = json.dumps({"level": "error", "msg": message, "time": stamp})
    else:
        line = f"level=error msg={json.dumps(message)}"
    try:
        with open(args.log, "a") as f:
            f.write(line + "\n")
    except OSError:
        pass


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="dockyard-runtime")
    p.add_argument("--root", default=DEFAULT_ROOT)
    p.add_argument("--log", default="")
    p.add_argument("--log-format", default="text", choices=("text", "json"))
    # Accepted for runc compatibility; they change nothing here.
    p.add_argument("--debug", action="store_true")
    p.add_argument("--systemd-cgroup", action="store_true")
    p.add_argument("--criu", default="")
    p.add_argument("--rootless", default="")
    sub = p.add_subparsers(dest="command")
    create = sub.add_parser("create")
    create.add_argument("--bundle", "-b", default=".")
    create.add_argument("--pid-file", default="")
    create.add_argument("--console-socket", default="")
    create.add_argument("--no-pivot", action="store_true")
    create.add_argument("--no-new-keyring", action="store_true")
    create.add_argument("--preserve-fds", type=int, default=0)
    create.add_argument("id")
    for name in ("start", "state"):
        sub.add_parser(name).add_argument("id")
    kill = sub.add_parser("kill")
    kill.add_argument("--all", "-a", action="store_true")
    kill.add_argument("id")
    kill.add_argument("signal", nargs="?", default="SIGTERM")
    delete = sub.add_parser("delete")
    delete.add_argument("--force", "-f", action="store_true")
    delete.add_argument("id")
    listing = sub.add_parser("list")
    listing.add_argument("--format", "-f", default="table", choices=("table", "json"))
    listing.add_argument("--quiet", "-q", action="store_true")
    return p


if __name__ == "__main__":
    sys.exit(main())
