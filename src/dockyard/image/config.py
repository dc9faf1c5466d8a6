"""Image configs (Docker/OCI ``application/vnd.oci.image.config.v1+json``),
chain IDs, and Docker's ``--change`` instructions (``docker import``,
``docker commit``), without I/O.

A config is kept as the JSON dict Docker writes: ``architecture``, ``os``,
``created`` (RFC 3339, nanoseconds), ``config`` (``Cmd``, ``Entrypoint``,
``Env``, ``WorkingDir``, ``User``, ``ExposedPorts``, ``Labels``, ``Volumes``,
``StopSignal``, ``OnBuild``), ``rootfs`` (``type: layers``, ``diff_ids``) and
``history``. Its canonical bytes (``encode``) hash to the image ID.

Supported change instructions are the ones dockerd accepts for commit and
import: CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, ONBUILD, STOPSIGNAL, USER,
VOLUME, WORKDIR. Variable substitution (``$VAR``) is not performed.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
import time
from collections.abc import Iterable
from typing import Any

from dockyard import errdefs

VALID_CHANGE_COMMANDS = frozenset(
    {
        "cmd",
        "entrypoint",
        "env",
        "expose",
        "label",
        "onbuild",
        "stopsignal",
        "user",
        "volume",
        "workdir",
    }
)


def rfc3339_nano(timestamp: float | None = None) -> str:
    """``2024-05-01T12:00:00.123456789Z`` as Go's ``time.RFC3339Nano`` (trailing zeros cut)."""
    ns = time.time_ns() if timestamp is None else int(timestamp * 1_000_000_000)
    seconds, frac = divmod(ns, 1_000_000_000)
    base = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
    if frac:
        base += "." + f"{frac:09d}".rstrip("0")
    return base + "Z"


def chain_ids(diff_ids: Iterable[str]) -> list[str]:
    """OCI chain IDs: ``ChainID(L0) = DiffID(L0)``, then
    ``ChainID(Ln) = sha256(ChainID(Ln-1) + " " + DiffID(Ln))``."""
    out: list[str] = []
    for diff_id in diff_ids:
        if not out:
            out.append(diff_id)
        else:
            text = f"{out[-1]} {diff_id}".encode()
            out.append("sha256:" + hashlib.sha256(text).hexdigest())
    return out


def encode(config: dict[str, Any]) -> bytes:
    """Canonical JSON bytes; the image ID is their sha256."""
    return json.dumps(config, sort_keys=True, separators=(",", ":")).encode()


def image_id(config: dict[str, Any]) -> str:
    return "sha256:" + hashlib.sha256(encode(config)).hexdigest()


def new_image_config(
    *,
    diff_ids: list[str],
    container_config: dict[str, Any] | None = None,
    comment: str = "",
    created_by: str = "",
    author: str = "",
    created: str | None = None,
    architecture: str = "amd64",
    os_name: str = "linux",
) -> dict[str, Any]:
    """A single-step image config (as ``docker import`` writes)."""
    created = created or rfc3339_nano()
    history: dict[str, Any] = {"created": created}
    if created_by:
        history["created_by"] = created_by
    if comment:
        history["comment"] = comment
    out: dict[str, Any] = {
        "architecture": architecture,
        "os": os_name,
        "created": created,
        "config": container_config or {},
        "rootfs": {"type": "layers", "diff_ids": list(diff_ids)},
        "history": [history],
    }
    if comment:
        out["comment"] = comment
    if author:
        out["author"] = author
    return out


# -- Dockerfile-style words ---------------------------------------------------


def _split_words(text: str) -> list[str]:
    """Words as the Dockerfile parser splits ENV/LABEL: whitespace separates,
    quotes group (and are removed), backslash escapes."""
    words: list[str] = []
    word: list[str] = []
    quote: str | None = None
    in_word = False
    i = 0
    while i < len(text):
        ch = text[i]
        if quote is None and ch.isspace():
            if in_word:
                words.append("".join(word))
                word, in_word = [], False
        elif ch == "\\" and quote != "'" and i + 1 < len(text):
            i += 1
            word.append(text[i])
            in_word = True
        elif quote is None and ch in "\"'":
            quote, in_word = ch, True
        elif ch == quote:
            quote = None
        else:
            word.append(ch)
            in_word = True
        i += 1
    if quote is not None:
        raise errdefs.InvalidArgument(f"unterminated quote in: {text}")
    if in_word:
        words.append("".join(word))
    return words


def _name_values(command: str, rest: str) -> list[tuple[str, str]]:
    """``k=v k2="v 2"`` or the legacy ``k some value`` form."""
    words = _split_words(rest)
    if not words:
        raise errdefs.InvalidArgument(f"{command} requires at least one argument")
    if "=" not in words[0]:
        key, _, value = rest.strip().partition(" ")
        value = value.strip()
        if not value and command == "ENV":
            raise errdefs.InvalidArgument(f"{command} must have two arguments")
        return [(key, " ".join(_split_words(value)) if value else "")]
    pairs = []
    for word in words:
        key, sep, value = word.partition("=")
        if not sep or not key:
            raise errdefs.InvalidArgument(
                f"{command} names can not be blank"
                if not key
                else f"Syntax error - can't find = in {word!r}. Must be of the form: name=value"
            )
        pairs.append((key, value))
    return pairs


def _json_or_shell(rest: str) -> tuple[list[str], bool]:
    """(argv, was_json): the exec form if ``rest`` is a JSON string array."""
    stripped = rest.strip()
    if stripped.startswith("["):
        try:
            value = json.loads(stripped)
        except ValueError:
            value = None
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return value, True
    return ["/bin/sh", "-c", stripped], False


def _expand_ports(spec: str) -> list[str]:
    port, _, proto = spec.partition("/")
    proto = (proto or "tcp").lower()
    if proto not in ("tcp", "udp", "sctp"):
        raise errdefs.InvalidArgument(f"invalid proto: {proto}")
    low, _, high = port.partition("-")
    try:
        start, end = int(low), int(high or low)
    except ValueError:
        raise errdefs.InvalidArgument(f"invalid containerPort: {port}")
    if not (0 < start <= end <= 65535):
        raise errdefs.InvalidArgument(f"invalid port range: {port}")
    return [f"{p}/{proto}" for p in range(start, end + 1)]


def _set_env(config: dict[str, Any], key: str, value: str) -> None:
    env = [e for e in config.get("Env") or [] if e.partition("=")[0] != key]
    # keep the variable's original position when it is overwritten
    old = config.get("Env") or []
    for index, entry in enumerate(old):
        if entry.partition("=")[0] == key:
            env.insert(index, f"{key}={value}")
            break
    else:
        env.append(f"{key}={value}")
    config["Env"] = env


def apply_change(config: dict[str, Any], line: str) -> None:
    """Apply one instruction line to ``config`` (a container config dict, in place)."""
    command, _, rest = line.strip().partition(" ")
    if not command:
        return
    lower = command.lower()
    if lower not in VALID_CHANGE_COMMANDS:
        raise errdefs.InvalidArgument(f"{lower} is not a valid change command")
    upper = command.upper()
    rest = rest.strip()
    if lower in ("cmd", "entrypoint"):
        argv, _ = _json_or_shell(rest)
        config["Cmd" if lower == "cmd" else "Entrypoint"] = argv
        if lower == "entrypoint":
            # as the builder: a new ENTRYPOINT resets a CMD set before it
            config.pop("Cmd", None)
    elif lower == "env":
        for key, value in _name_values(upper, rest):
            _set_env(config, key, value)
    elif lower == "label":
        labels = dict(config.get("Labels") or {})
        for key, value in _name_values(upper, rest):
            labels[key] = value
        config["Labels"] = labels
    elif lower == "expose":
        ports = dict(config.get("ExposedPorts") or {})
        for spec in rest.split():
            for port in _expand_ports(spec):
                ports[port] = {}
        if not ports:
            raise errdefs.InvalidArgument("EXPOSE requires at least one argument")
        config["ExposedPorts"] = ports
    elif lower == "volume":
        argv, was_json = _json_or_shell(rest)
        paths = argv if was_json else rest.split()
        if not paths or any(not p for p in paths):
            raise errdefs.InvalidArgument("VOLUME specified can not be an empty string")
        volumes = dict(config.get("Volumes") or {})
        for path in paths:
            volumes[path] = {}
        config["Volumes"] = volumes
    elif lower == "workdir":
        if not rest:
            raise errdefs.InvalidArgument("WORKDIR requires exactly one argument")
        config["WorkingDir"] = posixpath.join(config.get("WorkingDir") or "/", rest)
    elif lower == "user":
        if not rest:
            raise errdefs.InvalidArgument("USER requires exactly one argument")
        config["User"] = rest
    elif lower == "stopsignal":
        if not rest:
            raise errdefs.InvalidArgument("STOPSIGNAL requires exactly one argument")
        config["StopSignal"] = rest
    elif lower == "onbuild":
        if not rest:
            raise errdefs.InvalidArgument("ONBUILD requires at least one argument")
        config["OnBuild"] = [*(config.get("OnBuild") or []), rest]


def apply_changes(config: dict[str, Any], changes: Iterable[str]) -> dict[str, Any]:
    """A copy of ``config`` with every change applied; a change may hold
    several lines (dockerd joins them into one Dockerfile)."""
    out = json.loads(json.dumps(config))
    text = "\n".join(changes).replace("\\\n", "")
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            apply_change(out, line)
    return out
