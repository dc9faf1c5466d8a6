"""``create``, ``run`` and ``start``: create (pulling a missing image),
attach through a hijacked connection, wait, start, stream, exit with the
container's status — in the docker CLI's order."""

from __future__ import annotations

import os
import socket
import sys
import threading
from typing import Any

from dockyard.cli.common import parse_args
from dockyard.cli.flags import Flag, Parsed
from dockyard.cli.main import PROG, Cli, ExitError
from dockyard.cli.opts import CREATE_FLAGS, RUN_FLAGS, build_create_body
from dockyard.errdefs import DockyardError, NotFound


def _run_error(cli: Cli, message: str, code: int = 125) -> ExitError:
    return ExitError(
        code,
        f"{PROG}: {message}\n\nRun '{PROG} {cli.command} --help' for more information",
    )


def start_error_code(message: str) -> int:
    """runStartContainerErr: 127 not found, 126 cannot execute, else 125."""
    if any(
        s in message
        for s in ("executable file not found", "no such file or directory",
                  "system cannot find the file specified")
    ):  # fmt: skip
        return 127
    if "permission denied" in message or "is a directory" in message:
        return 126
    return 125


def _familiar_tagged(image: str) -> str:
    if "@" in image:
        return image
    last = image.rsplit("/", 1)[-1]
    return image if ":" in last else image + ":latest"


def _pull(cli: Cli, image: str, platform: str | None) -> None:
    from dockyard.cli.image import split_reference

    repo, tag = split_reference(image)
    params = {"fromImage": repo, "tag": tag or "latest", "platform": platform}
    for msg in cli.client.stream_json("POST", "/images/create", params):
        if msg.get("error"):
            raise DockyardError(msg["error"])
        status = msg.get("status")
        if status:
            line = f"{msg['id']}: {status}" if msg.get("id") else status
            cli.err.write(line + "\n")


def create_container(cli: Cli, opts: Parsed, *, detach: bool) -> tuple[str, dict[str, Any]]:
    image, command = opts.args[0], opts.args[1:]
    body = build_create_body(opts, image, command, detach=detach)
    params = {"name": opts.name, "platform": opts.platform}
    if opts.pull == "always":
        _pull(cli, image, opts.platform)
    try:
        created = cli.client.post("/containers/create", params, body=body)
    except NotFound as exc:
        if "image" not in exc.message.lower() or opts.pull == "never":
            raise
        cli.err.write(f"Unable to find image '{_familiar_tagged(image)}' locally\n")
        _pull(cli, image, opts.platform)
        created = cli.client.post("/containers/create", params, body=body)
    for warning in created.get("Warnings") or []:
        cli.err.write(f"WARNING: {warning}\n")
    return created["Id"], body


def cmd_create(cli: Cli, argv: list[str]) -> int:
    opts = parse_args(
        cli, argv, CREATE_FLAGS, "create [OPTIONS] IMAGE [COMMAND] [ARG...]",
        min_args=1, interspersed=False,
    )  # fmt: skip
    cid, _ = create_container(cli, opts, detach=True)
    cli.out.write(cid + "\n")
    return 0


class _Waiter(threading.Thread):
    """POST /containers/{id}/wait in the background (it blocks until exit)."""

    def __init__(self, cli: Cli, cid: str, condition: str) -> None:
        super().__init__(daemon=True)
        self.cli, self.cid, self.condition = cli, cid, condition
        self.status = 125
        self.error: str | None = None
        self.ready = threading.Event()

    def run(self) -> None:
        try:
            resp = self.cli.client.raw(
                "POST", f"/containers/{self.cid}/wait", {"condition": self.condition}
            )
            self.ready.set()
            import json

            result = json.loads(resp.read() or b"{}")
            self.status = int(result.get("StatusCode", 0))
            if (result.get("Error") or {}).get("Message"):
                self.error = result["Error"]["Message"]
        except DockyardError as exc:
            self.error = exc.message
        finally:
            self.ready.set()


class _Attachment:
    """A hijacked attach stream: output pumped to our stdout/stderr, our
    stdin pumped in (when asked)."""

    def __init__(self, cli: Cli, cid: str, *, stdin: bool, stdout: bool, stderr: bool,
                 tty: bool) -> None:  # fmt: skip
        params = {"stream": True, "stdin": stdin, "stdout": stdout, "stderr": stderr}
        self.resp = cli.client.hijack(f"/containers/{cid}/attach", params)
        self.cli = cli
        self.tty = tty
        self.stdin = stdin
        self.output = threading.Thread(target=self._pump_out, daemon=True)

    def start(self) -> None:
        self.output.start()
        if self.stdin:
            threading.Thread(target=self._pump_in, daemon=True).start()

    def _chunks(self) -> Any:
        first = self.resp.take_buffered()
        if first:
            yield first
        while True:
            try:
                data = self.resp.sock.recv(65536)
            except OSError:
                return
            if not data:
                return
            yield data

    def _pump_out(self) -> None:
        from dockyard.cli.container import copy_stream

        try:
            copy_stream(self.cli, self._chunks(), tty=self.tty)
        except (OSError, ValueError):
            pass

    def _pump_in(self) -> None:
        sock = self.resp.sock
        fd = sys.stdin.fileno()
        try:
            while True:
                data = os.read(fd, 65536)
                if not data:
                    break
                sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def wait(self) -> None:
        self.output.join()
        self.resp.close()


def _raw_terminal(enabled: bool) -> Any:
    """Put our terminal in raw mode for -it; returns a restore function."""
    if not enabled or not sys.stdin.isatty():
        return lambda: None
    import termios
    import tty

    fd = sys.stdin.fileno()
    saved = termios.tcgetattr(fd)
    tty.setraw(fd)
    return lambda: termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def _resize(cli: Cli, cid: str) -> None:
    try:
        size = os.get_terminal_size(sys.stdout.fileno())
        cli.client.post(f"/containers/{cid}/resize", {"h": size.lines, "w": size.columns})
    except (OSError, DockyardError):
        pass


def cmd_run(cli: Cli, argv: list[str]) -> int:
    opts = parse_args(
        cli, argv, RUN_FLAGS, "run [OPTIONS] IMAGE [COMMAND] [ARG...]",
        min_args=1, interspersed=False,
    )  # fmt: skip
    detach = bool(opts.detach)
    try:
        cid, body = create_container(cli, opts, detach=detach)
    except DockyardError as exc:
        raise _run_error(cli, f"Error response from daemon: {exc.message}")
    attach_out = body["AttachStdout"] or body["AttachStderr"]
    if not attach_out:
        cli.out.write(cid + "\n")
        cli.out.flush()
    attachment = None
    if body["AttachStdin"] or attach_out:
        attachment = _Attachment(
            cli, cid, stdin=body["AttachStdin"], stdout=body["AttachStdout"],
            stderr=body["AttachStderr"], tty=body["Tty"],
        )  # fmt: skip
    waiter = None
    if not detach:
        waiter = _Waiter(cli, cid, "removed" if opts.rm else "next-exit")
        waiter.start()
        waiter.ready.wait()
    restore = _raw_terminal(bool(body["Tty"] and body["AttachStdin"]))
    try:
        try:
            cli.client.post(f"/containers/{cid}/start")
        except DockyardError as exc:
            if attachment is not None:
                attachment.resp.close()
            restore()
            message = f"Error response from daemon: {exc.message}"
            if opts.rm and waiter is not None:
                waiter.join(timeout=10)
            raise _run_error(cli, message, start_error_code(exc.message))
        if attachment is not None:
            attachment.start()
            if body["Tty"]:
                _resize(cli, cid)
            attachment.wait()
        if waiter is None:
            return 0
        waiter.join()
    finally:
        restore()
    if waiter.error and waiter.status == 125:
        raise ExitError(125, f"{PROG}: Error response from daemon: {waiter.error}")
    return waiter.status


def cmd_start(cli: Cli, argv: list[str]) -> int:
    flags = [
        Flag("attach", "a", "bool", help="Attach STDOUT/STDERR and forward signals"),
        Flag("detach-keys", "", "str", help="Override the key sequence for detaching a container"),
        Flag("interactive", "i", "bool", help="Attach container's STDIN"),
    ]
    opts = parse_args(cli, argv, flags, "start [OPTIONS] CONTAINER [CONTAINER...]", min_args=1)
    if opts.attach or opts.interactive:
        if len(opts.args) > 1:
            raise ExitError(1, "you cannot start and attach multiple containers at once")
        return _start_attached(cli, opts.args[0], stdin=bool(opts.interactive))
    failed: list[str] = []
    for name in opts.args:
        try:
            cli.client.post(f"/containers/{name}/start")
        except DockyardError as exc:
            cli.err.write(f"Error response from daemon: {exc.message}\n")
            failed.append(name)
            continue
        cli.out.write(name + "\n")
    if failed:
        raise ExitError(1, f"Error: failed to start containers: {', '.join(failed)}")
    return 0


def _start_attached(cli: Cli, name: str, *, stdin: bool) -> int:
    info = cli.client.get(f"/containers/{name}/json")
    config = info.get("Config") or {}
    cid = info["Id"]
    stdin = stdin and bool(config.get("OpenStdin"))
    tty = bool(config.get("Tty"))
    attachment = _Attachment(cli, cid, stdin=stdin, stdout=True, stderr=True, tty=tty)
    auto_remove = bool((info.get("HostConfig") or {}).get("AutoRemove"))
    waiter = _Waiter(cli, cid, "removed" if auto_remove else "next-exit")
    waiter.start()
    waiter.ready.wait()
    restore = _raw_terminal(tty and stdin)
    try:
        cli.client.post(f"/containers/{cid}/start")
        attachment.start()
        attachment.wait()
        waiter.join()
    except DockyardError as exc:
        attachment.resp.close()
        raise ExitError(1, f"Error response from daemon: {exc.message}")
    finally:
        restore()
    return waiter.status
