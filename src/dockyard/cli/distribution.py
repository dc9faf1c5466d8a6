"""Registry commands: pull, push, login, logout, and the docker CLI's
credential store (``config.json`` in ``$DOCKER_CONFIG`` or ``~/.docker``:
``auths`` entries, ``credsStore`` and ``credHelpers`` through
``docker-credential-<name> get|store|erase``).

Progress is shown as ``jsonmessage.DisplayJSONMessagesStream`` does: on a
terminal one line per layer, redrawn in place with cursor movements; else
only the lines without a progress bar.
"""

from __future__ import annotations

import base64
import json
import os
import sys

from dockyard.cli.common import parse_args
from dockyard.cli.flags import Flag
from dockyard.cli.main import Cli, ExitError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable
    from typing import Any

INDEX_SERVER = "https://index.docker.io/v1/"
_TOKEN_USER = "<token>"


# -- credentials ----------------------------------------------------------------
def config_path() -> str:
    base = os.environ.get("DOCKER_CONFIG") or os.path.join(os.path.expanduser("~"), ".docker")
    return os.path.join(base, "config.json")


def load_config() -> dict[str, Any]:
    try:
        with open(config_path()) as f:
            data = json.load(f)
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise ExitError(1, f"WARNING: Error loading config file: {config_path()}: {exc}")
    return data if isinstance(data, dict) else {}


def save_config(data: dict[str, Any]) -> None:
    path = config_path()
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(data, f, indent="\t")
    os.replace(tmp, path)


def hostname(server: str) -> str:
    """``credentials.ConvertToHostname``: strip the scheme and any path."""
    if "://" in server:
        server = server.split("://", 1)[1]
    return server.split("/", 1)[0]


def server_for(domain: str) -> str:
    """The config.json key for a registry domain."""
    return INDEX_SERVER if domain in ("docker.io", "index.docker.io") else domain


def _helper_for(config: dict[str, Any], server: str) -> str | None:
    helpers = config.get("credHelpers") or {}
    return helpers.get(hostname(server)) or helpers.get(server) or config.get("credsStore")


def _helper(name: str, action: str, payload: str) -> str:
    import subprocess

    try:
        done = subprocess.run([f"docker-credential-{name}", action], input=payload.encode(),
                              capture_output=True, timeout=60)  # fmt: skip
    except FileNotFoundError:
        raise ExitError(
            1, f'error getting credentials - err: exec: "docker-credential-{name}": '
            "executable file not found in $PATH, out: ``"
        )  # fmt: skip
    out = done.stdout.decode().strip()
    if done.returncode != 0:
        if "credentials not found" in out.lower():
            return ""
        raise ExitError(1, f"error {action} credentials - err: exit status "
                           f"{done.returncode}, out: `{out}`")  # fmt: skip
    return out


def get_credentials(server: str) -> dict[str, str]:
    """The AuthConfig JSON for ``server`` (empty when not logged in)."""
    config = load_config()
    helper = _helper_for(config, server)
    if helper:
        out = _helper(helper, "get", server)
        if not out:
            return {}
        data = json.loads(out)
        user, secret = data.get("Username", ""), data.get("Secret", "")
        if user == _TOKEN_USER:
            return {"identitytoken": secret, "serveraddress": server}
        return {"username": user, "password": secret, "serveraddress": server}
    auths = config.get("auths") or {}
    entry = auths.get(server)
    if entry is None:
        for key, value in auths.items():
            if hostname(key) == hostname(server):
                entry = value
                break
    if not entry:
        return {}
    out: dict[str, str] = {"serveraddress": server}
    if entry.get("auth"):
        user, _, password = base64.b64decode(entry["auth"]).decode().partition(":")
        out.update(username=user, password=password)
    if entry.get("identitytoken"):
        out["identitytoken"] = entry["identitytoken"]
    return out


def store_credentials(server: str, username: str, password: str, token: str) -> bool:
    """Keep a login; True when it went into config.json in plain text."""
    config = load_config()
    helper = _helper_for(config, server)
    if helper:
        secret = {"ServerURL": server, "Username": username, "Secret": password}
        if token:
            secret.update(Username=_TOKEN_USER, Secret=token)
        _helper(helper, "store", json.dumps(secret))
        config.setdefault("auths", {})[server] = {}
        save_config(config)
        return False
    entry: dict[str, str] = {"auth": base64.b64encode(f"{username}:{password}".encode()).decode()}
    if token:
        entry = {"auth": base64.b64encode(f"{username}:".encode()).decode(),
                 "identitytoken": token}  # fmt: skip
    config.setdefault("auths", {})[server] = entry
    save_config(config)
    return True


def erase_credentials(server: str) -> bool:
    """Forget a login; False when there was none."""
    config = load_config()
    auths = config.get("auths") or {}
    keys = [k for k in auths if k == server or hostname(k) == hostname(server)]
    helper = _helper_for(config, server)
    if not keys and not helper:
        return False
    if helper:
        try:
            _helper(helper, "erase", server)
        except ExitError:
            if not keys:
                return False
    for key in keys:
        del auths[key]
    save_config(config)
    return True


def registry_auth_header(domain: str) -> dict[str, str]:
    creds = get_credentials(server_for(domain))
    raw = json.dumps(creds).encode() if creds else b"{}"
    return {"X-Registry-Auth": base64.urlsafe_b64encode(raw).decode()}


# -- progress display ------------------------------------------------------------
def display(cli: Cli, messages: Iterable[dict[str, Any]]) -> None:
    """``DisplayJSONMessagesStream``; an error message exits 1 with its text."""
    from dockyard.distribution.progress import progress_bar

    out = cli.out
    tty = hasattr(out, "isatty") and out.isatty()
    ids: dict[str, int] = {}
    for msg in messages:
        if msg.get("error") or msg.get("errorDetail"):
            out.flush()
            raise ExitError(1, msg.get("error") or msg["errorDetail"].get("message", ""))
        if "aux" in msg:
            continue
        detail = msg.get("progressDetail")
        has_progress = detail is not None
        bar = progress_bar(int(detail.get("current") or 0), int(detail.get("total") or 0)) \
            if detail else ""  # fmt: skip
        ident = msg.get("id") or ""
        diff = 0
        if ident and has_progress:
            if ident not in ids:
                ids[ident] = len(ids)
                if tty:
                    out.write("\n")
            diff = len(ids) - ids[ident]
            if tty:
                out.write(f"\x1b[{diff}A")
        else:
            ids = {}
        status = msg.get("status", "")
        prefix = f"{ident}: " if ident else ""
        if tty and has_progress:
            out.write(f"\x1b[2K\r{prefix}{status} {bar}\r")
        elif has_progress and bar:
            pass  # no progress bars off a terminal
        elif "stream" in msg:
            out.write(msg["stream"])
        else:
            out.write(f"{prefix}{status}\n")
        if ident and tty and diff:
            out.write(f"\x1b[{diff}B")
        out.flush()


# -- commands ------------------------------------------------------------------
def _parse_ref(text: str) -> Any:
    from dockyard.errdefs import DockyardError
    from dockyard.image import reference

    try:
        return reference.parse_named(text)
    except DockyardError as exc:
        raise ExitError(1, exc.message)


def cmd_pull(cli: Cli, argv: list[str]) -> int:
    flags = [
        Flag("all-tags", "a", "bool", help="Download all tagged images in the repository"),
        Flag("disable-content-trust", "", "bool", True, help="Skip image verification"),
        Flag("platform", "", "str", help="Set platform if server is multi-platform capable"),
        Flag("quiet", "q", "bool", help="Suppress verbose output"),
    ]
    usage = "pull [OPTIONS] NAME[:TAG|@DIGEST]"
    short = "Download an image from a registry"
    opts = parse_args(cli, argv, flags, usage, short=short, min_args=1, max_args=1)
    ref = _parse_ref(opts.args[0])
    if opts.all_tags and (ref.tag or ref.digest):
        raise ExitError(1, "tag can't be used with --all-tags/-a")
    params: dict[str, Any] = {"fromImage": ref.name()}
    if not opts.all_tags:
        if ref.tag is None and ref.digest is None:
            ref = ref.with_tag("latest")
            if not opts.quiet:
                cli.out.write("Using default tag: latest\n")
        params["tag"] = ref.digest or ref.tag
    if opts.platform:
        params["platform"] = opts.platform
    headers = registry_auth_header(ref.domain)
    stream = cli.client.stream_json("POST", "/images/create", params, headers=headers)
    if opts.quiet:
        for msg in stream:
            if msg.get("error"):
                raise ExitError(1, msg["error"])
    else:
        display(cli, stream)
    cli.out.write((ref.string() if not opts.all_tags else ref.name()) + "\n")
    return 0


def cmd_push(cli: Cli, argv: list[str]) -> int:
    flags = [
        Flag("all-tags", "a", "bool", help="Push all tags of an image to the repository"),
        Flag("disable-content-trust", "", "bool", True, help="Skip image signing"),
        Flag("platform", "", "str", help="Push a platform-specific manifest"),
        Flag("quiet", "q", "bool", help="Suppress verbose output"),
    ]
    opts = parse_args(cli, argv, flags, "push [OPTIONS] NAME[:TAG]",
                      short="Upload an image to a registry", min_args=1, max_args=1)  # fmt: skip
    ref = _parse_ref(opts.args[0])
    if opts.all_tags and ref.tag:
        raise ExitError(1, "tag can't be used with --all-tags/-a")
    if not opts.all_tags and ref.tag is None:
        ref = ref.with_tag("latest")
        if not opts.quiet:
            cli.out.write("Using default tag: latest\n")
    params = {"tag": ref.tag} if ref.tag else None
    headers = registry_auth_header(ref.domain)
    stream = cli.client.stream_json("POST", f"/images/{ref.name()}/push", params,
                                    headers=headers)  # fmt: skip
    if opts.quiet:
        for msg in stream:
            if msg.get("error"):
                raise ExitError(1, msg["error"])
        cli.out.write(ref.string() + "\n")
    else:
        display(cli, stream)
    return 0


def cmd_login(cli: Cli, argv: list[str]) -> int:
    flags = [
        Flag("password", "p", "str", help="Password or Personal Access Token (PAT)"),
        Flag("password-stdin", "", "bool", help="Take the Password or PAT from stdin"),
        Flag("username", "u", "str", help="Username"),
    ]
    opts = parse_args(cli, argv, flags, "login [OPTIONS] [SERVER]",
                      short="Authenticate to a registry", max_args=1)  # fmt: skip
    server = opts.args[0] if opts.args else INDEX_SERVER
    if server != INDEX_SERVER:
        server = hostname(server)
    password = opts.password or ""
    if opts.password:
        cli.err.write("WARNING! Using --password via the CLI is insecure. Use --password-stdin.\n")
    if opts.password_stdin:
        if opts.password:
            raise ExitError(1, "--password and --password-stdin are mutually exclusive")
        if not opts.username:
            raise ExitError(1, "Must provide --username with --password-stdin")
        password = sys.stdin.read().rstrip("\r\n")
    username = opts.username or ""
    if not username or not password:
        if not sys.stdin.isatty():
            raise ExitError(1, "Error: Cannot perform an interactive login from a non TTY device")
        if not username:
            cli.out.write("Username: ")
            cli.out.flush()
            username = sys.stdin.readline().strip()
        if not password:
            import getpass

            password = getpass.getpass("Password: ")
    body = {"username": username, "password": password, "serveraddress": server}
    answer = cli.client.post("/auth", body=body) or {}
    token = answer.get("IdentityToken") or ""
    if store_credentials(server, username, password, token):
        cli.err.write(
            f"WARNING! Your credentials are stored unencrypted in '{config_path()}'.\n"
            "Configure a credential helper to remove this warning. See\n"
            "https://docs.docker.com/go/credential-store/\n\n"
        )
    cli.out.write(f"{answer.get('Status') or 'Login Succeeded'}\n")
    return 0


def cmd_logout(cli: Cli, argv: list[str]) -> int:
    opts = parse_args(cli, argv, [], "logout [SERVER]",
                      short="Log out from a registry", max_args=1)  # fmt: skip
    server = opts.args[0] if opts.args else INDEX_SERVER
    if server != INDEX_SERVER:
        server = hostname(server)
    if not erase_credentials(server):
        cli.out.write(f"Not logged in to {server}\n")
        return 0
    cli.out.write(f"Removing login credentials for {server}\n")
    return 0
