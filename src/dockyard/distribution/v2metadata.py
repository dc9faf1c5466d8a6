"""Which registry blobs hold which layers ("v2 metadata", as moby's
``distribution/metadata``): one row per (diff ID, blob digest, repository),
written by pulls (the blob a layer came as) and pushes (the blob it went up
as, including the gzip made at push time for a layer stored as a plain tar).

Push reads it to skip work that survives a daemon restart: a layer whose
compressed digest is known is ``HEAD``-checked instead of compressed again
(``Layer already exists``), and a blob known in another repository of the
same registry is mounted from there (``Mounted from team/other``).

The table (``layer_digests``) is created by a migration in
``store/metadata.py``; this module owns its rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Entry:
    diff_id: str
    digest: str  # the blob on the registry
    media_type: str
    size: int
    repo: str  # normalized repository name: 127.0.0.1:5000/team/busybox


class V2Metadata:
    """The ``layer_digests`` rows of one metadata database."""

    def __init__(self, db: Any) -> None:
        self.db = db

    def add(self, entries: list[Entry]) -> None:
        if not entries:
            return
        with self.db.tx() as cur:
            cur.executemany(
                "INSERT OR REPLACE INTO layer_digests"
                " (diff_id, digest, media_type, size, registry_repo) VALUES (?, ?, ?, ?, ?)",
                [(e.diff_id, e.digest, e.media_type, e.size, e.repo) for e in entries],
            )

    def for_diff_id(self, diff_id: str) -> list[Entry]:
        """Every known blob of a layer, the most recently recorded first."""
        rows = self.db.query(
            "SELECT diff_id, digest, media_type, size, registry_repo FROM layer_digests"
            " WHERE diff_id=? ORDER BY rowid DESC",
            (diff_id,),
        )
        return [Entry(r[0], r[1], r[2], r[3], r[4]) for r in rows]

    def forget(self, diff_id: str, digest: str, repo: str) -> None:
        """A repository turned out not to have the blob (a failed mount)."""
        with self.db.tx() as cur:
            cur.execute(
                "DELETE FROM layer_digests WHERE diff_id=? AND digest=? AND registry_repo=?",
                (diff_id, digest, repo),
            )
