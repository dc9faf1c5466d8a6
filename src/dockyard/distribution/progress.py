"""Docker's JSON progress messages (``jsonmessage.JSONMessage``) and its
progress bar string, as the daemon writes them on a pull or push stream.

Two shapes, as moby's ``streamformatter``: a *message* (``{"status", "id"}``)
for lines such as ``Pulling from library/busybox``, and an *update*
(``{"status", "progressDetail", "progress", "id"}``) for per-layer states;
an update without counts still carries ``"progressDetail": {}``.
"""

from __future__ import annotations

import json
from typing import Any

from dockyard.units import human_size

NL = b"\r\n"  # dockerd ends each JSON-stream line this way

# The daemon has no terminal: Go's JSONProgress then assumes 200 columns,
# which draws the bar (width > 110) and no time left (no start time is set).
_BAR_WIDTH = 50


def progress_bar(current: int, total: int) -> str:
    """``JSONProgress.String()``: ``[=====>     ]  1.2MB/3.4MB``."""
    if current <= 0 and total <= 0:
        return ""
    if total <= 0:
        return f"{human_size(current):>8}"
    percentage = min(int(current / total * 100) // 2, _BAR_WIDTH)
    bar = f"[{'=' * percentage}>{' ' * max(_BAR_WIDTH - percentage, 0)}] "
    if current > total:
        return bar + f"{human_size(current):>8}"
    return bar + f"{human_size(current):>8}/{human_size(total)}"


def message(status: str, id: str = "") -> dict[str, Any]:
    """A status line (``progress.Message``)."""
    out: dict[str, Any] = {"status": status}
    if id:
        out["id"] = id
    return out


def update(action: str, id: str, current: int = 0, total: int = 0) -> dict[str, Any]:
    """A per-item state or progress (``progress.Update`` / ``progress.Progress``)."""
    detail: dict[str, int] = {}
    if current:
        detail["current"] = current
    if total:
        detail["total"] = total
    out: dict[str, Any] = {"status": action, "progressDetail": detail}
    bar = progress_bar(current, total)
    if bar:
        out["progress"] = bar
    out["id"] = id
    return out


def aux(data: dict[str, Any]) -> dict[str, Any]:
    return {"progressDetail": {}, "aux": data}


def error(text: str) -> dict[str, Any]:
    return {"errorDetail": {"message": text}, "error": text}


def encode(msg: dict[str, Any]) -> bytes:
    """One stream line, escaped as Go's encoding/json does (``<>&``)."""
    text = json.dumps(msg, separators=(",", ":"))
    text = text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return text.encode() + NL
