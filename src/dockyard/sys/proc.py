"""Facts about processes read from /proc: start time (to detect pid reuse) and state."""

from __future__ import annotations


def stat_fields(pid: int) -> list[str] | None:
    """Fields of /proc/<pid>/stat after the command name, or None if gone.

    The command name may contain spaces and parentheses, so split after the
    last ')'. Index 0 is the state letter, index 19 the start time.
    """
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read().decode(errors="replace")
    except (FileNotFoundError, ProcessLookupError):
        return None
    return raw[raw.rindex(")") + 2 :].split()


def start_time(pid: int) -> int | None:
    fields = stat_fields(pid)
    return int(fields[19]) if fields else None


def is_alive(pid: int, started: int | None) -> bool:
    """True if ``pid`` runs, is not a zombie, and (if given) started at ``started``."""
    fields = stat_fields(pid)
    if fields is None or fields[0] in ("Z", "X"):
        return False
    return started is None or int(fields[19]) == started
