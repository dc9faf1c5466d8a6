"""Docker's human units: sizes ("4.26MB"), durations ("2 minutes") and the
container status text ("Up 3 seconds") that dockerd puts in ``/containers/json``.

Pure functions, ported from github.com/docker/go-units and moby's
``container/state.go`` so that the output matches Docker byte for byte.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Mapping
from typing import Any

from dockyard.errdefs import InvalidArgument

KB = 1000
MB = 1000 * KB
GB = 1000 * MB
TB = 1000 * GB
PB = 1000 * TB
KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB
TiB = 1024 * GiB
PiB = 1024 * TiB

_DECIMAL_ABBRS = ("B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB")
_BINARY_ABBRS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB", "ZiB", "YiB")
_DECIMAL_MAP = {"k": KB, "m": MB, "g": GB, "t": TB, "p": PB}
_BINARY_MAP = {"k": KiB, "m": MiB, "g": GiB, "t": TiB, "p": PiB}


def human_duration(seconds: float) -> str:
    """go-units ``HumanDuration``: "Less than a second" ... "3 years"."""
    secs = int(seconds)
    if secs < 1:
        return "Less than a second"
    if secs == 1:
        return "1 second"
    if secs < 60:
        return f"{secs} seconds"
    minutes = int(seconds / 60)
    if minutes == 1:
        return "About a minute"
    if minutes < 60:
        return f"{minutes} minutes"
    hours = int(seconds / 3600 + 0.5)
    if hours == 1:
        return "About an hour"
    if hours < 48:
        return f"{hours} hours"
    if hours < 24 * 7 * 2:
        return f"{hours // 24} days"
    if hours < 24 * 30 * 2:
        return f"{hours // 24 // 7} weeks"
    if hours < 24 * 365 * 2:
        return f"{hours // 24 // 30} months"
    return f"{int(seconds / 3600) // 24 // 365} years"


def _size_and_unit(size: float, base: float, abbrs: tuple[str, ...]) -> tuple[float, str]:
    i = 0
    while size >= base and i < len(abbrs) - 1:
        size /= base
        i += 1
    return size, abbrs[i]


def human_size_with_precision(size: float, precision: int) -> str:
    """go-units ``HumanSizeWithPrecision``: decimal units, ``%.*g``."""
    value, unit = _size_and_unit(float(size), 1000.0, _DECIMAL_ABBRS)
    return f"{value:.{precision}g}{unit}"


def human_size(size: float) -> str:
    """go-units ``HumanSize`` (4 significant digits). The docker CLI's tables
    use ``human_size_with_precision(size, 3)``."""
    return human_size_with_precision(size, 4)


def bytes_size(size: float) -> str:
    """go-units ``BytesSize``: binary units ("1.5KiB")."""
    value, unit = _size_and_unit(float(size), 1024.0, _BINARY_ABBRS)
    return f"{value:.4g}{unit}"


def _parse_size(text: str, units: Mapping[str, int]) -> int:
    # Same algorithm as go-units parseSize: number, optional space, suffix.
    sep = max(text.rfind(c) for c in "0123456789. ")
    if sep == -1:
        raise InvalidArgument(f"invalid size: '{text}'")
    if text[sep] == " ":
        num, sfx = text[:sep], text[sep + 1 :]
    else:
        num, sfx = text[: sep + 1], text[sep + 1 :]
    try:
        size = float(num)
    except ValueError:
        raise InvalidArgument(f'strconv.ParseFloat: parsing "{num}": invalid syntax')
    if size < 0 or size != size:
        raise InvalidArgument(f"invalid size: '{text}'")
    if not sfx:
        return int(size)
    low = sfx.lower()
    bad = InvalidArgument(f"invalid suffix: '{low if len(sfx) <= 3 else sfx}'")
    if len(low) > 3:
        raise bad
    if low[0] == "b":
        if len(low) > 1:
            raise bad
        return int(size)
    mul = units.get(low[0])
    if mul is None:
        raise bad
    if (len(low) == 2 and low[1] != "b") or (len(low) == 3 and low[1:] != "ib"):
        raise bad
    return int(size * mul)


def from_human_size(text: str) -> int:
    """go-units ``FromHumanSize``: "32kb" → 32000 (decimal)."""
    return _parse_size(text, _DECIMAL_MAP)


def ram_in_bytes(text: str) -> int:
    """go-units ``RAMInBytes``: "20m" → 20971520 (binary)."""
    return _parse_size(text, _BINARY_MAP)


# --- container status -------------------------------------------------------

_ZERO_PREFIX = "0001-01-01"


def parse_time(value: Any) -> _dt.datetime | None:
    """A time from the API (RFC 3339 with nanoseconds, epoch seconds, or a
    datetime); None for Go's zero time or an empty value."""
    if value is None or value == "" or value == 0:
        return None
    if isinstance(value, _dt.datetime):
        return value if value.tzinfo else value.replace(tzinfo=_dt.UTC)
    if isinstance(value, int | float):
        return _dt.datetime.fromtimestamp(value, _dt.UTC)
    text = str(value)
    if text.startswith(_ZERO_PREFIX):
        return None
    text = text.replace("Z", "+00:00")
    # Python parses at most microseconds: cut the nanoseconds.
    if "." in text:
        head, _, rest = text.partition(".")
        digits = "".join(c for c in rest if c.isdigit())
        tz = rest[len(digits) :]
        text = f"{head}.{digits[:6].ljust(6, '0')}{tz}"
    parsed = _dt.datetime.fromisoformat(text)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=_dt.UTC)


def _since(then: _dt.datetime | None, now: _dt.datetime) -> str:
    if then is None:
        return human_duration(0)
    return human_duration((now - then).total_seconds())


def _health_text(health: Any) -> str | None:
    if not health:
        return None
    status = health.get("Status") if isinstance(health, Mapping) else str(health)
    if not status or status == "none":
        return None
    return "health: starting" if status == "starting" else str(status)


def container_status(state: Mapping[str, Any], now: Any = None) -> str:
    """moby ``State.String()`` from an inspect-style ``State`` mapping
    (Running, Paused, Restarting, Dead, ExitCode, StartedAt, FinishedAt,
    Health, and Status == "removing" or RemovalInProgress)."""
    current = parse_time(now) if now is not None else _dt.datetime.now(_dt.UTC)
    current = current or _dt.datetime.now(_dt.UTC)
    started = parse_time(state.get("StartedAt"))
    finished = parse_time(state.get("FinishedAt"))
    code = int(state.get("ExitCode") or 0)
    if state.get("Running"):
        if state.get("Paused"):
            return f"Up {_since(started, current)} (Paused)"
        if state.get("Restarting"):
            return f"Restarting ({code}) {_since(finished, current)} ago"
        health = _health_text(state.get("Health"))
        if health:
            return f"Up {_since(started, current)} ({health})"
        return f"Up {_since(started, current)}"
    if state.get("RemovalInProgress") or state.get("Status") == "removing":
        return "Removal In Progress"
    if state.get("Dead"):
        return "Dead"
    if started is None:
        return "Created"
    if finished is None:
        return ""
    return f"Exited ({code}) {_since(finished, current)} ago"


def container_state_name(state: Mapping[str, Any]) -> str:
    """moby ``State.StateString()``: created, running, paused, restarting,
    removing, exited, dead."""
    if state.get("Running"):
        if state.get("Paused"):
            return "paused"
        if state.get("Restarting"):
            return "restarting"
        return "running"
    if state.get("RemovalInProgress") or state.get("Status") == "removing":
        return "removing"
    if state.get("Dead"):
        return "dead"
    if parse_time(state.get("StartedAt")) is None:
        return "created"
    return "exited"
