"""The classic builder's cache: which image a step produced from a parent
image and an instruction key.

The key is what Docker compares: the step's command as recorded in the
image history (``/bin/sh -c #(nop)  WORKDIR /src``, ``|1 A=b /bin/sh -c make``,
``/bin/sh -c #(nop) COPY file:<sum> in /dest ``) plus anything else that
changes the result (the caller folds that in). Rows whose image is gone are
ignored at lookup and dropped by ``prune``.
"""

from __future__ import annotations

import base64
import hashlib
import time
from collections.abc import Callable
from typing import Any

from dockyard.image.config import rfc3339_nano
from dockyard.store.metadata import Database


class BuildCache:
    def __init__(self, db: Database) -> None:
        self.db = db

    def lookup(self, parent: str, key: str) -> str | None:
        """The cached image for (parent, key) when it still exists."""
        row = self.db.query_one(
            "SELECT c.image_id FROM build_cache c JOIN images i ON i.id = c.image_id"
            " WHERE c.parent = ? AND c.key = ?",
            (parent, key),
        )
        return row["image_id"] if row else None

    def store(self, parent: str, key: str, image_id: str) -> None:
        with self.db.tx() as cur:
            cur.execute(
                "INSERT OR REPLACE INTO build_cache (parent, key, image_id, created)"
                " VALUES (?, ?, ?, ?)",
                (parent, key, image_id, time.time()),
            )

    def records(self, containers_using: Callable[[str], list]) -> list[dict[str, Any]]:
        """The cache as ``/system/df``'s ``BuildCache`` records: one per step,
        sized by the layer it added. A step whose image a tagged image or a
        container still needs is ``Shared``: forgetting it frees nothing."""
        rows = self.db.query(
            "SELECT c.parent, c.key, c.image_id, c.created, i.size, COALESCE(p.size, 0) AS psize"
            " FROM build_cache c JOIN images i ON i.id = c.image_id"
            " LEFT JOIN images p ON p.id = c.parent ORDER BY c.created"
        )
        needed = self._needed()
        ids = {r["image_id"]: _record_id(r["parent"], r["key"]) for r in rows}
        out = []
        for r in rows:
            created = rfc3339_nano(r["created"])
            out.append(
                {
                    "ID": ids[r["image_id"]],
                    "Parents": [ids[r["parent"]]] if r["parent"] in ids else None,
                    "Type": "regular",
                    "Description": r["key"],
                    "InUse": bool(containers_using(r["image_id"])),
                    "Shared": r["image_id"] in needed,
                    "Size": max(int(r["size"]) - int(r["psize"]), 0),
                    "CreatedAt": created,
                    "LastUsedAt": created,
                    "UsageCount": 1,
                }
            )
        return out

    def _needed(self) -> set[str]:
        """Images that tags keep alive: the tagged ones and their ancestors."""
        parents = {r["id"]: r["parent"] for r in self.db.query("SELECT id, parent FROM images")}
        needed: set[str] = set()
        for row in self.db.query("SELECT DISTINCT image_id FROM refs"):
            current = row["image_id"]
            while current and current not in needed:
                needed.add(current)
                current = parents.get(current, "")
        return needed

    def prune(self, *, everything: bool = True) -> list[str]:
        """Forget cache rows (all of them, or only those whose image is gone);
        returns the IDs of the records removed."""
        with self.db.tx() as cur:
            where = "" if everything else " WHERE image_id NOT IN (SELECT id FROM images)"
            rows = cur.execute("SELECT parent, key FROM build_cache" + where).fetchall()
            cur.execute("DELETE FROM build_cache" + where)
        return [_record_id(r["parent"], r["key"]) for r in rows]


def _record_id(parent: str, key: str) -> str:
    """A stable 25-character ID, shaped like BuildKit's record IDs."""
    digest = hashlib.sha256(f"{parent}\n{key}".encode()).digest()
    return base64.b32encode(digest).decode().lower()[:25]
