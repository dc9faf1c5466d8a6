"""Entry point of the ``dockyard`` command: global flags, dispatch to the
command modules (imported lazily, so ``dockyard version`` starts fast), and
the docker CLI's error reporting and exit codes."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from importlib import import_module

TYPE_CHECKING = False  # typing costs milliseconds at start-up; annotations are lazy
if TYPE_CHECKING:
    from typing import Any, TextIO

    from dockyard.client import Client

PROG = "docker"  # messages read exactly as the docker CLI's

# command path -> "module:function"; the module is imported on use.
COMMANDS: dict[str, str] = {
    "version": "system:cmd_version",
    "info": "system:cmd_info",
    "system info": "system:cmd_info",
    "system df": "system:cmd_df",
    "container create": "run:cmd_create",
    "container run": "run:cmd_run",
    "container start": "run:cmd_start",
    "container ls": "container:cmd_ps",
    "container stop": "container:cmd_stop",
    "container kill": "container:cmd_kill",
    "container restart": "container:cmd_restart",
    "container rm": "container:cmd_rm",
    "container logs": "container:cmd_logs",
    "container wait": "container:cmd_wait",
    "container rename": "container:cmd_rename",
    "container prune": "container:cmd_prune",
    "container inspect": "container:cmd_container_inspect",
    "image ls": "image:cmd_images",
    "image rm": "image:cmd_rmi",
    "image tag": "image:cmd_tag",
    "image import": "image:cmd_import",
    "image history": "image:cmd_history",
    "image inspect": "image:cmd_image_inspect",
    "inspect": "container:cmd_inspect",
}

ALIASES: dict[str, str] = {
    "create": "container create",
    "run": "container run",
    "start": "container start",
    "ps": "container ls",
    "container list": "container ls",
    "container ps": "container ls",
    "stop": "container stop",
    "kill": "container kill",
    "restart": "container restart",
    "rm": "container rm",
    "container remove": "container rm",
    "logs": "container logs",
    "wait": "container wait",
    "rename": "container rename",
    "images": "image ls",
    "image list": "image ls",
    "rmi": "image rm",
    "image remove": "image rm",
    "tag": "image tag",
    "import": "image import",
    "history": "image history",
}

GROUPS = ("container", "image", "system", "network", "registry")
# network commands (cli/network.py)
COMMANDS.update({f"network {c}": f"network:cmd_{c}" for c in (
    "create", "ls", "inspect", "rm", "prune", "connect", "disconnect")})  # fmt: skip
COMMANDS.update({"port": "network:cmd_port", "container port": "network:cmd_port"})
ALIASES.update({"network list": "network ls", "network remove": "network rm"})
# pull, push, login, logout (cli/distribution.py)
COMMANDS.update({"image pull": "distribution:cmd_pull", "image push": "distribution:cmd_push"})
COMMANDS.update({"login": "distribution:cmd_login", "logout": "distribution:cmd_logout"})
ALIASES.update({"pull": "image pull", "push": "image push"})
# the registry server (cli/registry.py)
COMMANDS.update({"registry serve": "registry:cmd_serve", "registry gc": "registry:cmd_gc"})
# save and load (cli/archive.py)
COMMANDS.update({"image save": "archive:cmd_save", "image load": "archive:cmd_load"})
ALIASES.update({"save": "image save", "load": "image load"})
# diff, commit, export, cp, image prune (cli/changes.py)
COMMANDS.update({f"container {c}": f"changes:cmd_{c}" for c in ("diff", "commit", "export", "cp")})
COMMANDS.update({"image prune": "changes:cmd_image_prune"})
ALIASES.update({c: f"container {c}" for c in ("diff", "commit", "export", "cp")})
# build and the build cache (cli/build.py)
COMMANDS.update({"image build": "build:cmd_build", "builder prune": "build:cmd_prune"})
ALIASES.update({"build": "image build", "builder build": "image build"})


class ExitError(Exception):
    """Leave with ``code``; ``message`` (if any) goes to stderr first."""

    def __init__(self, code: int, message: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class Cli:
    """What every command gets: the streams and a lazily made client.

    (A plain class: importing dataclasses costs ~9 ms of start-up.)"""

    def __init__(self, host: str | None = None, *, out: TextIO | None = None,
                 err: TextIO | None = None) -> None:  # fmt: skip
        self.host = host
        self.out: TextIO = out or sys.stdout
        self.err: TextIO = err or sys.stderr
        self.command = ""
        self._client: Client | None = None

    @property
    def client(self) -> Client:
        if self._client is None:
            from dockyard.client import Client

            self._client = Client(self.host)
        return self._client


def _global_flags(argv: list[str]) -> tuple[dict[str, Any], list[str]]:
    opts: dict[str, Any] = {"host": None}
    i = 0
    with_value = {"-H", "--host", "-l", "--log-level", "--config", "-c", "--context"}
    while i < len(argv):
        arg = argv[i]
        name, eq, value = arg.partition("=")
        if name in with_value:
            if not eq:
                i += 1
                if i >= len(argv):
                    raise ExitError(125, f"flag needs an argument: {name}")
                value = argv[i]
            if name in ("-H", "--host"):
                opts["host"] = value
        elif arg in ("-D", "--debug", "--tls", "--tlsverify"):
            pass
        elif arg in ("-v", "--version"):
            opts["version"] = True
        elif arg in ("-h", "--help"):
            opts["help"] = True
        elif arg.startswith("-") and arg != "-":
            raise ExitError(125, f"unknown flag: {name}\nSee '{PROG} --help'.")
        else:
            break
        i += 1
    return opts, argv[i:]


def resolve(argv: list[str]) -> tuple[str, str, list[str]] | None:
    """(command path, the words typed for it, its arguments), or None."""
    if not argv:
        return None
    if argv[0] in GROUPS and len(argv) > 1:
        typed = f"{argv[0]} {argv[1]}"
        path = ALIASES.get(typed, typed)
        if path in COMMANDS:
            return path, typed, argv[2:]
        return None
    path = ALIASES.get(argv[0], argv[0])
    if path in COMMANDS:
        return path, argv[0], argv[1:]
    return None


def _usage() -> str:
    names = sorted({*ALIASES, *(c for c in COMMANDS if " " not in c)})
    return f"\nUsage:  {PROG} [OPTIONS] COMMAND\n\nCommands:\n" + "".join(f"  {n}\n" for n in names)


def run(argv: list[str], cli: Cli | None = None) -> int:
    """Run one command line; returns the exit code."""
    from dockyard.errdefs import DockyardError

    cli = cli or Cli()
    try:
        opts, rest = _global_flags(argv)
        if opts.get("version"):
            from dockyard import __version__

            cli.out.write(f"Dockyard version {__version__}\n")
            return 0
        cli.host = opts["host"]
        if not rest or opts.get("help"):
            cli.out.write(_usage())
            return 0
        found = resolve(rest)
        if found is None:
            if rest[0] in GROUPS:
                cli.err.write(f"{PROG}: unknown command: {PROG} {' '.join(rest[:2])}\n")
            else:
                cli.err.write(
                    f"{PROG}: unknown command: {PROG} {rest[0]}\n\n"
                    f"Run '{PROG} --help' for more information\n"
                )
            return 1
        path, cli.command, args = found
        module, _, func = COMMANDS[path].partition(":")
        handler: Callable[[Cli, list[str]], int] = getattr(
            import_module(f"dockyard.cli.{module}"), func
        )
        return handler(cli, args) or 0
    except ExitError as exc:
        if exc.message:
            cli.err.write(exc.message.rstrip("\n") + "\n")
        return exc.code
    except DockyardError as exc:
        cli.err.write(_daemon_error(exc) + "\n")
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0


def _daemon_error(exc: Exception) -> str:
    message = getattr(exc, "message", str(exc))
    if message.startswith(("Cannot connect to the Docker daemon", "error during connect")):
        return message
    return f"Error response from daemon: {message}"


def main() -> None:
    code = run(sys.argv[1:])
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    sys.exit(code)


if __name__ == "__main__":
    main()
