"""The classic builder's cache: which image a step produced from a parent
image and an instruction key.

The key is what Docker compares: the step's command as recorded in the
image history (``/bin/sh -c #(nop)  WORKDIR /src``, ``|1 A=b /bin/sh -c make``,
``/bin/sh -c #(nop) COPY file:<sum> in /dest ``) plus anything else that
changes the result (the caller folds that in). Rows whose image is gone are
ignored at lookup and dropped by ``prune``.
"""

from __future__ import annotations

import time

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

    def entries(self) -> int:
        row = self.db.query_one(
            "SELECT COUNT(*) AS n FROM build_cache c JOIN images i ON i.id = c.image_id"
        )
        return int(row["n"]) if row else 0

    def prune(self, *, everything: bool = True) -> list[str]:
        """Forget cache rows (all of them, or only those whose image is gone);
        returns the IDs of the images the removed rows named."""
        with self.db.tx() as cur:
            if everything:
                rows = cur.execute("SELECT DISTINCT image_id FROM build_cache").fetchall()
                cur.execute("DELETE FROM build_cache")
            else:
                rows = cur.execute(
                    "SELECT DISTINCT image_id FROM build_cache"
                    " WHERE image_id NOT IN (SELECT id FROM images)"
                ).fetchall()
                cur.execute("DELETE FROM build_cache WHERE image_id NOT IN (SELECT id FROM images)")
        return [r["image_id"] for r in rows]
