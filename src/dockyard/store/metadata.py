"""The metadata database: one SQLite file (WAL) holding references, images,
layers, snapshots and containers.

Every change is one transaction (``with db.tx() as cur:``). Files that a row
points to are written before the row is committed and deleted only after the
row's removal has committed, so a daemon killed at any instant restarts into
a consistent state (at worst an unreferenced file, which GC removes).

The schema grows by appending to ``MIGRATIONS``; ``user_version`` records how
many have run.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

MIGRATIONS: list[str] = [
    """
    CREATE TABLE images (
        id TEXT PRIMARY KEY,            -- sha256:<config digest>
        created REAL NOT NULL,          -- when this engine stored it (unix time)
        size INTEGER NOT NULL DEFAULT 0 -- unpacked size of all layers, bytes
    );
    CREATE TABLE refs (
        name TEXT PRIMARY KEY,          -- normalized: docker.io/library/busybox:latest
        image_id TEXT NOT NULL REFERENCES images(id)
    );
    CREATE INDEX refs_image ON refs(image_id);
    CREATE TABLE layers (
        diff_id TEXT PRIMARY KEY,       -- sha256 of the uncompressed tar
        chain_id TEXT NOT NULL UNIQUE,  -- snapshot key
        blob TEXT,                      -- digest of the stored (compressed) blob, if kept
        media_type TEXT,
        blob_size INTEGER,
        size INTEGER NOT NULL DEFAULT 0 -- unpacked size
    );
    CREATE TABLE containers (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,      -- with leading slash, as Docker
        image_id TEXT NOT NULL,
        created REAL NOT NULL,
        record TEXT NOT NULL            -- JSON of container.model.Container
    );
    CREATE INDEX containers_image ON containers(image_id);
    """,
    # image → layers (the chain IDs are the snapshot keys), parent images
    # (commit/build) and the time an image was last tagged
    """
    CREATE TABLE image_layers (
        image_id TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE,
        position INTEGER NOT NULL,      -- 0 is the base layer
        diff_id TEXT NOT NULL,
        chain_id TEXT NOT NULL,
        PRIMARY KEY (image_id, position)
    );
    CREATE INDEX image_layers_chain ON image_layers(chain_id);
    ALTER TABLE images ADD COLUMN parent TEXT NOT NULL DEFAULT '';
    ALTER TABLE images ADD COLUMN last_tag_time TEXT;
    """,
    # networks and the endpoints of containers on them (network.service)
    """
    CREATE TABLE networks (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        record TEXT NOT NULL            -- JSON of network.model.Network
    );
    CREATE TABLE endpoints (
        network_id TEXT NOT NULL REFERENCES networks(id) ON DELETE CASCADE,
        container_id TEXT NOT NULL,
        record TEXT NOT NULL,           -- JSON of network.model.Endpoint
        PRIMARY KEY (network_id, container_id)
    );
    CREATE INDEX endpoints_container ON endpoints(container_id);
    """,
    # layers are keyed by diff ID only: the same diff can sit on several
    # parents (its chain IDs live in image_layers); every layer keeps a blob,
    # found again by its digest when a pull meets it
    """
    CREATE TABLE layers_new (
        diff_id TEXT PRIMARY KEY,       -- sha256 of the uncompressed tar
        blob TEXT,                      -- digest of the stored bytes (compressed or not)
        media_type TEXT,
        blob_size INTEGER,
        size INTEGER NOT NULL DEFAULT 0 -- unpacked size
    );
    INSERT INTO layers_new SELECT diff_id, blob, media_type, blob_size, size FROM layers;
    DROP TABLE layers;
    ALTER TABLE layers_new RENAME TO layers;
    CREATE INDEX layers_blob ON layers(blob);
    """,
    # the classic builder's cache: the image a step made from its parent
    # image and its instruction key (builder.cache)
    """
    CREATE TABLE build_cache (
        parent TEXT NOT NULL,           -- the image the step ran on ("" for scratch)
        key TEXT NOT NULL,              -- the step's instruction, as recorded in history
        image_id TEXT NOT NULL,         -- the image the step produced
        created REAL NOT NULL,
        PRIMARY KEY (parent, key)
    );
    CREATE INDEX build_cache_image ON build_cache(image_id);
    """,
    # the registry blobs of layers, per repository ("v2 metadata": what a
    # layer was pulled or pushed as; distribution.v2metadata)
    """
    CREATE TABLE layer_digests (
        diff_id TEXT NOT NULL,
        digest TEXT NOT NULL,           -- the blob's digest on the registry
        media_type TEXT NOT NULL,
        size INTEGER NOT NULL,
        registry_repo TEXT NOT NULL,    -- normalized: docker.io/library/busybox
        PRIMARY KEY (diff_id, digest, registry_repo)
    );
    """,
]


class Database:
    """A thread-safe handle on the metadata database."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(
            path, isolation_level=None, check_same_thread=False, timeout=30
        )
        self._conn.row_factory = sqlite3.Row
        self._lock = threading.RLock()
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.execute("PRAGMA foreign_keys=ON")
        self._migrate()

    def _migrate(self) -> None:
        with self._lock:
            version = self._conn.execute("PRAGMA user_version").fetchone()[0]
            for index, script in enumerate(MIGRATIONS[version:], start=version + 1):
                self._conn.executescript(f"BEGIN; {script}; PRAGMA user_version={index}; COMMIT;")

    @contextmanager
    def tx(self) -> Iterator[sqlite3.Cursor]:
        """One write transaction; commits on success, rolls back on error."""
        with self._lock:
            cur = self._conn.cursor()
            cur.execute("BEGIN IMMEDIATE")
            try:
                yield cur
            except BaseException:
                cur.execute("ROLLBACK")
                raise
            else:
                cur.execute("COMMIT")

    def query(self, sql: str, params: tuple | dict = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self._conn.execute(sql, params).fetchall()

    def query_one(self, sql: str, params: tuple | dict = ()) -> sqlite3.Row | None:
        with self._lock:
            return self._conn.execute(sql, params).fetchone()

    def close(self) -> None:
        with self._lock:
            self._conn.close()
