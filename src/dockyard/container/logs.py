"""Reading json-file logs for ``docker logs``, and Docker's ``--since``/``--until`` times.

The shim writes the files (``dockyard.runtime.jsonlog``); this module reads
them: the rotated files oldest first (``<path>.N`` … ``<path>.1``, ``<path>``),
``tail`` found by scanning backwards block by block, ``since``/``until``
filters, and ``follow`` that polls for new data and notices rotation (a new
inode at ``<path>``) and truncation (``max-file`` 1).
"""

from __future__ import annotations

import asyncio
import calendar
import json
import os
import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import BinaryIO

from dockyard import errdefs

BLOCK = 64 * 1024
POLL_INTERVAL = 0.1  # seconds between looks at a followed file
_STREAMS = {"stdout": 1, "stderr": 2}


@dataclass(frozen=True)
class LogEntry:
    stream: int  # 1 stdout, 2 stderr
    data: bytes
    time: str  # RFC3339Nano UTC, as written


def log_files(path: Path) -> list[Path]:
    """The existing files of one log, oldest first."""
    rotated = []
    for n in range(1, 10_000):
        candidate = Path(f"{path}.{n}")
        if not candidate.exists():
            break
        rotated.append(candidate)
    files = list(reversed(rotated))
    if path.exists():
        files.append(path)
    return files


def parse_log_time(stamp: str) -> float:
    """Unix time of an RFC3339 timestamp as the log writes it (``...T..:..:..[.fff]Z``)."""
    match = _RFC3339.match(stamp)
    if match is None:
        raise errdefs.InvalidArgument(f"invalid timestamp {stamp!r}")
    year, month, day, hour, minute, second, frac, zone = match.groups()
    seconds = calendar.timegm(
        (int(year), int(month), int(day), int(hour), int(minute), int(second), 0, 0, 0)
    )
    if zone not in ("Z", "z"):
        sign = 1 if zone[0] == "+" else -1
        seconds -= sign * (int(zone[1:3]) * 3600 + int(zone[4:6]) * 60)
    return seconds + (float("0." + frac) if frac else 0.0)


_RFC3339 = re.compile(
    r"^(\d{4})-(\d\d)-(\d\d)[Tt](\d\d):(\d\d):(\d\d)(?:\.(\d+))?(Z|z|[+-]\d\d:\d\d)$"
)
_UNIX = re.compile(r"^-?\d+(?:\.\d+)?$")
_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_time(value: str, now: float) -> float:
    """Docker's since/until: unix seconds[.fraction], RFC3339 (date or date-time,
    local time when no zone is given), or a Go duration ("10m", "1h30m") before ``now``."""
    value = value.strip()
    if not value:
        return 0.0
    if _UNIX.match(value):
        return float(value)
    if _DURATION_PART.fullmatch(value) or re.fullmatch(f"(?:{_DURATION_PART.pattern})+", value):
        total = sum(float(n) * _UNITS[unit] for n, unit in _DURATION_PART.findall(value))
        return now - total
    if _RFC3339.match(value):
        return parse_log_time(value)
    try:
        return datetime.fromisoformat(value).timestamp()
    except ValueError:
        raise errdefs.InvalidArgument(f"invalid time value {value!r}")


def _tail_start(files: list[Path], lines: int) -> tuple[int, int]:
    """(file index, offset) where the last ``lines`` complete lines begin."""
    if lines <= 0:
        return len(files) - 1, files[-1].stat().st_size
    remaining = lines
    for index in range(len(files) - 1, -1, -1):
        seen = 0
        with open(files[index], "rb") as f:
            pos = f.seek(0, os.SEEK_END)
            while pos > 0:
                size = min(BLOCK, pos)
                pos -= size
                f.seek(pos)
                block = f.read(size)
                end = len(block)
                while (end := block.rfind(b"\n", 0, end)) >= 0:
                    seen += 1
                    # the (n+1)-th newline from the end precedes the n-th last line
                    if seen == remaining + 1:
                        return index, pos + end + 1
        remaining -= seen
        if remaining <= 0:
            return index, 0
    return 0, 0


class _Filter:
    def __init__(self, stdout: bool, stderr: bool, since: float, until: float) -> None:
        self.streams = {s for s, on in ((1, stdout), (2, stderr)) if on}
        self.since = since
        self.until = until
        self.done = False  # an entry past ``until`` was seen

    def entry(self, line: bytes) -> LogEntry | None:
        try:
            record = json.loads(line)
            stream = _STREAMS[record["stream"]]
            stamp = str(record["time"])
            data = str(record["log"]).encode()
        except (ValueError, KeyError, TypeError):
            return None  # a torn or foreign line
        if self.since or self.until:
            when = parse_log_time(stamp)
            if self.until and when > self.until:
                self.done = True
                return None
            if when < self.since:
                return None
        if stream not in self.streams:
            return None
        return LogEntry(stream, data, stamp)


def _read(f: BinaryIO) -> bytes:
    return f.read(BLOCK)


async def read_logs(
    path: Path,
    *,
    stdout: bool = True,
    stderr: bool = True,
    since: float = 0,
    until: float = 0,
    tail: int | None = None,
    follow: bool = False,
    stopped: Callable[[], bool] | None = None,
) -> AsyncIterator[LogEntry]:
    """The log's entries in order; with ``follow``, also new ones until ``stopped()``
    is true and everything written before that has been read."""
    keep = _Filter(stdout, stderr, since, until)
    files = log_files(path)
    if not files:
        if not follow:
            return
        files = [path]
        while not path.exists():
            if stopped is not None and stopped():
                return
            await asyncio.sleep(POLL_INTERVAL)
    index, offset = 0, 0
    if tail is not None:
        index, offset = await asyncio.to_thread(_tail_start, files, tail)
    for position in range(index, len(files)):
        live = follow and position == len(files) - 1
        try:
            f = open(files[position], "rb")  # noqa: SIM115 - closed below, possibly after rotation
        except FileNotFoundError:
            continue  # rotated away meanwhile
        try:
            f.seek(offset if position == index else 0)
            if not live:
                async for entry in _entries(f, keep):
                    yield entry
                if keep.done:
                    return
                continue
            async for entry in _follow(f, path, keep, stopped):
                yield entry
            return
        finally:
            f.close()


def _lines(pending: bytes, chunk: bytes) -> tuple[list[bytes], bytes]:
    """The complete lines of pending + chunk, and the partial rest."""
    *lines, rest = (pending + chunk).split(b"\n")
    return lines, rest


async def _entries(f: BinaryIO, keep: _Filter) -> AsyncIterator[LogEntry]:
    pending = b""
    while chunk := await asyncio.to_thread(_read, f):
        lines, pending = _lines(pending, chunk)
        for line in lines:
            entry = keep.entry(line)
            if keep.done:
                return
            if entry is not None:
                yield entry


async def _follow(
    f: BinaryIO, path: Path, keep: _Filter, stopped: Callable[[], bool] | None
) -> AsyncIterator[LogEntry]:
    pending = b""
    while True:
        # asked before reading, so all that was written before the stop is read
        stop = stopped is not None and stopped()
        chunk = await asyncio.to_thread(_read, f)
        if chunk:
            lines, pending = _lines(pending, chunk)
            for line in lines:
                entry = keep.entry(line)
                if keep.done:
                    return
                if entry is not None:
                    yield entry
            continue
        replaced = _replacement(f, path)
        if replaced == "truncated":
            f.seek(0)
            pending = b""
            continue
        if replaced == "rotated":
            following = _next_file(f, path)
            if following is None:  # renamed, but its successor is not there yet
                await asyncio.sleep(POLL_INTERVAL / 10)
                continue
            try:
                new = open(following, "rb")  # noqa: SIM115 - swapped in for f, closed by the caller
            except FileNotFoundError:
                continue  # rotated again meanwhile: look again
            os.dup2(new.fileno(), f.fileno())  # the caller's handle now reads the next file
            new.close()
            f.seek(0)
            pending = b""
            continue
        if stop:
            return
        await asyncio.sleep(POLL_INTERVAL)


def _next_file(f: BinaryIO, path: Path) -> Path | None:
    """The file written after ours: ours may have been rotated more than once."""
    mine = os.fstat(f.fileno())
    files = log_files(path)
    for index, candidate in enumerate(files):
        try:
            st = os.stat(candidate)
        except FileNotFoundError:
            continue
        if (st.st_ino, st.st_dev) == (mine.st_ino, mine.st_dev):
            return files[index + 1] if index + 1 < len(files) else None
    # ours is gone (beyond max-file): what was in between is lost, go on with the oldest
    return files[0] if files else None


def _replacement(f: BinaryIO, path: Path) -> str:
    """ "rotated" when ``path`` is now another file, "truncated" when ours shrank, else ""."""
    try:
        current = os.stat(path)
    except FileNotFoundError:
        return ""
    mine = os.fstat(f.fileno())
    if (current.st_ino, current.st_dev) != (mine.st_ino, mine.st_dev):
        return "rotated"
    if mine.st_size < f.tell():
        return "truncated"
    return ""
