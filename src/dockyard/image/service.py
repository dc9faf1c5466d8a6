"""The image service: import, resolve, inspect, list, history, tag, remove.

Synchronous and thread-safe (the API calls it in threads). Storage:

* the image config is a blob in the content store; the image ID is its digest;
* each layer is unpacked once into a committed snapshot keyed by its chain
  ID, so images sharing a base share its snapshot;
* rows in ``images``, ``image_layers``, ``layers`` and ``refs`` say what
  exists; one transaction per change. Snapshots and blobs are created before
  the rows that name them and removed only after those rows are gone.

Every layer keeps its bytes as a blob (``layers.blob``): compressed as
pulled or uploaded, or the plain tar (``TAR_MEDIA_TYPE``, digest = diff ID)
from ``docker import``, a build step or a commit; push compresses those on
the way out. Rows from before that rule may have no blob.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import re
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, BinaryIO

from dockyard import errdefs
from dockyard.image import config as imgconfig
from dockyard.image import reference
from dockyard.image.layer import apply_layer, is_gzip, peek
from dockyard.store.content import ContentStore
from dockyard.store.metadata import Database
from dockyard.store.snapshots import Snapshotter

GZIP_MEDIA_TYPE = "application/vnd.docker.image.rootfs.diff.tar.gzip"
TAR_MEDIA_TYPE = "application/vnd.oci.image.layer.v1.tar"
ZERO_TIME = "0001-01-01T00:00:00Z"

ContainersUsing = Callable[[str], list[tuple[str, bool]]]


@dataclass(frozen=True)
class Layer:
    """One stored layer of an image, as ``add_layer`` leaves it."""

    diff_id: str  # sha256 of the uncompressed tar
    chain_id: str  # the snapshot key: this layer on top of its parents
    size: int  # unpacked size of its regular files
    blob: str  # digest of the stored bytes; "" for an old row without one
    media_type: str
    blob_size: int


def short_id(image_id: str) -> str:
    """``sha256:1a2b...`` → ``1a2b3c4d5e6f`` (Docker's ``stringid.TruncateID``)."""
    return image_id.partition(":")[2][:12] if ":" in image_id else image_id[:12]


def parse_time(text: str) -> float:
    """RFC 3339 (nanoseconds allowed) to unix time; 0 for an empty or bad value."""
    match = re.fullmatch(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)", text or "")
    if not match:
        return 0.0
    base, frac, zone = match.groups()
    zone = "+00:00" if zone == "Z" else zone
    stamp = datetime.datetime.fromisoformat(base + zone).timestamp()
    return stamp + (float(frac) if frac else 0.0)


def _path_match(pattern: str, name: str) -> bool:
    """Go's ``path.Match``: ``*`` and ``?`` do not cross ``/``."""
    out, i = [], 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "*":
            out.append("[^/]*")
        elif ch == "?":
            out.append("[^/]")
        elif ch == "[":
            end = pattern.find("]", i + 1)
            if end < 0:
                return False
            body = pattern[i + 1 : end]
            if body.startswith("^"):
                body = "!" + body[1:]
            body = "^" + re.escape(body[1:]) if body.startswith("!") else re.escape(body)
            out.append(f"[{body.replace(chr(92) + '-', '-')}]")
            i = end
        elif ch == "\\" and i + 1 < len(pattern):
            i += 1
            out.append(re.escape(pattern[i]))
        else:
            out.append(re.escape(ch))
        i += 1
    try:
        return re.fullmatch("".join(out), name) is not None
    except re.error:
        return False


def _familiar_match(pattern: str, ref: reference.Reference) -> bool:
    return _path_match(pattern, ref.familiar()) or _path_match(pattern, ref.familiar_name())


class ImageService:
    def __init__(self, *, db: Database, content: ContentStore, snapshotter: Snapshotter) -> None:
        self.db = db
        self.content = content
        self.snapshotter = snapshotter
        self._lock = threading.RLock()
        self._configs: dict[str, dict[str, Any]] = {}

    # -- import ------------------------------------------------------------

    def import_image(
        self,
        stream: BinaryIO,
        *,
        reference: str | None,
        changes: list[str] | None = None,
        message: str = "",
    ) -> str:
        """Import a rootfs tar (plain or gzip) as a one-layer image; returns its ID."""
        ref = _parse_ref(reference) if reference else None
        container_config = imgconfig.apply_changes({}, changes or [])
        layer = self.add_layer(stream, parent_chain=None)
        config = imgconfig.new_image_config(
            diff_ids=[layer.diff_id], container_config=container_config, comment=message
        )
        return self.create_image(imgconfig.encode(config), [layer], reference=ref)

    # -- layers and images from parts (pull, load, build, commit) -------------

    def add_layer(
        self,
        stream: BinaryIO,
        *,
        parent_chain: str | None,
        expected_blob: str | None = None,
        media_type: str | None = None,
    ) -> Layer:
        """Store a layer: its bytes as given (gzip, zstd or a plain tar) become a
        blob, verified against ``expected_blob`` when given, and are unpacked on
        top of the snapshot ``parent_chain`` into a snapshot keyed by the new
        chain ID (kept once: a chain that exists is reused). The layer row is
        written here; the image rows that use it come with ``create_image``."""
        head, stream = peek(stream, 4)
        if media_type is None:
            media_type = GZIP_MEDIA_TYPE if is_gzip(head) else TAR_MEDIA_TYPE
        if expected_blob is not None and self.content.has(expected_blob):
            writer: Any = _Verifier(expected_blob)  # stored already: check, don't rewrite
        else:
            writer = self.content.writer(expected_blob)
        source = _Tee(stream, writer)
        key = f"extract-{uuid.uuid4().hex}"
        self.snapshotter.prepare(key, parent_chain)
        try:
            diff_id, size = apply_layer(
                source,  # type: ignore[arg-type]
                self.snapshotter.upper_dir(key),
                whiteout=self.snapshotter.whiteout_mode,  # type: ignore[arg-type]
            )
            while source.read(1 << 20):
                pass
            blob = writer.commit()
        except BaseException:
            writer.abort()
            self.snapshotter.remove(key)
            raise
        chain_id = imgconfig.chain_ids([parent_chain, diff_id])[1] if parent_chain else diff_id
        with self._lock:
            if self.snapshotter.exists(chain_id):
                self.snapshotter.remove(key)  # shared: this chain is already unpacked
            else:
                self.snapshotter.commit(chain_id, key)
            with self.db.tx() as cur:
                cur.execute(
                    "INSERT OR IGNORE INTO layers (diff_id, blob, media_type, blob_size, size)"
                    " VALUES (?, ?, ?, ?, ?)",
                    (diff_id, blob, media_type, writer.size, size),
                )
                cur.execute(
                    "UPDATE layers SET blob=?, media_type=?, blob_size=? "
                    "WHERE diff_id=? AND blob IS NULL",
                    (blob, media_type, writer.size, diff_id),
                )
                row = cur.execute(
                    "SELECT blob, media_type, blob_size FROM layers WHERE diff_id=?", (diff_id,)
                ).fetchone()
            if row["blob"] != blob:
                # The diff was stored before from other bytes (another
                # compression): keep one blob per diff, drop the new one.
                self.content.delete(blob)
                blob, media_type = row["blob"], row["media_type"]
                return Layer(diff_id, chain_id, size, blob, media_type, row["blob_size"])
        return Layer(diff_id, chain_id, size, blob, media_type, writer.size)

    def layer_by_blob(self, blob: str, *, parent_chain: str | None) -> Layer | None:
        """The stored layer whose blob is ``blob``, when its chain on top of
        ``parent_chain`` is unpacked (a pull need not fetch it again)."""
        row = self.db.query_one("SELECT * FROM layers WHERE blob=?", (blob,))
        return self._stacked(row, parent_chain)

    def layer_by_diff_id(self, diff_id: str, *, parent_chain: str | None) -> Layer | None:
        """The stored layer ``diff_id`` when its chain on ``parent_chain`` is
        unpacked, whatever blob it came from (a load need not store it again)."""
        row = self.db.query_one("SELECT * FROM layers WHERE diff_id=?", (diff_id,))
        return self._stacked(row, parent_chain)

    def _stacked(self, row, parent_chain: str | None) -> Layer | None:
        if row is None:
            return None
        diff_id = row["diff_id"]
        chain_id = imgconfig.chain_ids([parent_chain, diff_id])[1] if parent_chain else diff_id
        if not self.snapshotter.exists(chain_id):
            return None
        return Layer(
            diff_id,
            chain_id,
            row["size"] or 0,
            row["blob"] or "",
            row["media_type"] or "",
            row["blob_size"] or 0,
        )

    def references(self, image_id: str) -> list[reference.Reference]:
        """An image's tags and digest references, sorted."""
        return self._refs(image_id)

    def has_layer_blob(self, digest: str) -> bool:
        """Whether a stored layer keeps its bytes in blob ``digest``."""
        return self.db.query_one("SELECT 1 FROM layers WHERE blob=?", (digest,)) is not None

    def references_by_name(self, ref: reference.Reference) -> list[tuple[reference.Reference, str]]:
        """Every reference (tags and digests) of repository ``ref``, sorted, with its image."""
        rows = self.db.query("SELECT name, image_id FROM refs ORDER BY name")
        out = []
        for row in rows:
            other = reference.parse_named(row["name"])
            if other.name() == ref.name():
                out.append((other, row["image_id"]))
        return out

    def create_image(
        self,
        config: bytes,
        layers: list[Layer],
        *,
        reference: reference.Reference | None = None,
        parent: str = "",
        digest_reference: reference.Reference | None = None,
    ) -> str:
        """Record an image from its config bytes (kept verbatim: the image ID is
        their digest) and its layers, bottom first, as ``add_layer`` returned
        them; tags ``reference`` and records ``digest_reference`` (name@digest
        of the manifest it was pulled by) when given."""
        try:
            parsed = json.loads(config)
            diff_ids = list(parsed["rootfs"]["diff_ids"])
        except (ValueError, KeyError, TypeError) as exc:
            raise errdefs.InvalidArgument(f"invalid image config: {exc}")
        if diff_ids != [layer.diff_id for layer in layers]:
            raise errdefs.InvalidArgument(
                "image config's rootfs.diff_ids do not match the layers' content"
            )
        expected = imgconfig.chain_ids(diff_ids)
        if [layer.chain_id for layer in layers] != expected:
            raise errdefs.InvalidArgument("layers are not stacked in the config's order")
        image_id = self.content.put(config)
        self._configs[image_id] = parsed
        size = sum(layer.size for layer in layers)
        with self._lock, self.db.tx() as cur:
            self._insert_image(cur, image_id, diff_ids, size, parent=parent)
            if reference is not None:
                self._set_ref(cur, reference, image_id)
            if digest_reference is not None:
                cur.execute(
                    "INSERT OR REPLACE INTO refs (name, image_id) VALUES (?, ?)",
                    (digest_reference.string(), image_id),
                )
        return image_id

    def image_layers(self, image_id: str) -> list[Layer]:
        """An image's layers, bottom first, with their blobs."""
        rows = self.db.query(
            "SELECT il.diff_id, il.chain_id, l.size, l.blob, l.media_type, l.blob_size"
            " FROM image_layers il LEFT JOIN layers l ON l.diff_id = il.diff_id"
            " WHERE il.image_id=? ORDER BY il.position",
            (image_id,),
        )
        return [
            Layer(
                r["diff_id"],
                r["chain_id"],
                r["size"] or 0,
                r["blob"] or "",
                r["media_type"] or "",
                r["blob_size"] or 0,
            )
            for r in rows
        ]

    def config_bytes(self, image_id: str) -> bytes:
        """The config exactly as stored (its sha256 is the image ID)."""
        return self.content.read(image_id)

    def set_reference(self, ref: reference.Reference, image_id: str) -> None:
        """Point a tag or a ``name@digest`` at an image."""
        with self._lock, self.db.tx() as cur:
            if ref.digest is not None and ref.tag is None:
                cur.execute(
                    "INSERT OR REPLACE INTO refs (name, image_id) VALUES (?, ?)",
                    (ref.string(), image_id),
                )
            else:
                self._set_ref(cur, ref, image_id)

    def _insert_image(
        self, cur, image_id: str, diff_ids: list[str], size: int, *, parent: str
    ) -> None:
        cur.execute(
            "INSERT OR IGNORE INTO images (id, created, size, parent) VALUES (?, ?, ?, ?)",
            (image_id, time.time(), size, parent),
        )
        for position, (diff_id, chain_id) in enumerate(
            zip(diff_ids, imgconfig.chain_ids(diff_ids), strict=True)
        ):
            cur.execute(
                "INSERT OR IGNORE INTO image_layers (image_id, position, diff_id, chain_id)"
                " VALUES (?, ?, ?, ?)",
                (image_id, position, diff_id, chain_id),
            )

    def _set_ref(self, cur, ref: reference.Reference, image_id: str) -> None:
        cur.execute(
            "INSERT OR REPLACE INTO refs (name, image_id) VALUES (?, ?)", (ref.string(), image_id)
        )
        cur.execute(
            "UPDATE images SET last_tag_time=? WHERE id=?", (imgconfig.rfc3339_nano(), image_id)
        )

    # -- lookups -----------------------------------------------------------

    def resolve(self, name_or_id: str) -> str:
        """The image ID for a reference, a full or short ID, or ``sha256:<id>``."""
        name = name_or_id
        if name.startswith("sha256:") and reference.is_id(name[7:]):
            return self._by_id(name, name)
        if reference.is_id(name):
            return self._by_id("sha256:" + name, "sha256:" + name)
        ref = reference.parse_named(name)
        if ref.tag is None and ref.digest is None:
            ref = reference.Reference(ref.domain, ref.path, reference.DEFAULT_TAG)
        row = self.db.query_one("SELECT image_id FROM refs WHERE name=?", (ref.string(),))
        if row is not None:
            return row["image_id"]
        prefix = name[7:] if name.startswith("sha256:") else name
        if reference.is_short_id(prefix):
            rows = self.db.query(
                "SELECT id FROM images WHERE substr(id, 8, ?) = ?", (len(prefix), prefix)
            )
            if len(rows) == 1:
                return rows[0]["id"]
        raise errdefs.NotFound(f"No such image: {ref.familiar()}")

    def _by_id(self, image_id: str, shown: str) -> str:
        if self.db.query_one("SELECT 1 FROM images WHERE id=?", (image_id,)) is None:
            raise errdefs.NotFound(f"No such image: {shown}")
        return image_id

    def config(self, image_id: str) -> dict[str, Any]:
        """The image config JSON (``config`` holds Cmd, Env, ...)."""
        cached = self._configs.get(image_id)
        if cached is None:
            cached = json.loads(self.content.read(image_id))
            self._configs[image_id] = cached
        return cached

    def chain_id(self, image_id: str) -> str | None:
        """The top layer's chain ID: the snapshot parent of the image's containers."""
        row = self.db.query_one(
            "SELECT chain_id FROM image_layers WHERE image_id=? ORDER BY position DESC LIMIT 1",
            (image_id,),
        )
        return row["chain_id"] if row else None

    def layer_size(self, diff_id: str) -> int:
        row = self.db.query_one("SELECT size FROM layers WHERE diff_id=?", (diff_id,))
        return int(row["size"]) if row else 0

    def image_size(self, image_id: str) -> int:
        row = self.db.query_one(
            "SELECT COALESCE(SUM(l.size), 0) AS s FROM image_layers il "
            "JOIN layers l ON l.diff_id = il.diff_id WHERE il.image_id=?",
            (image_id,),
        )
        return int(row["s"]) if row else 0

    def _refs(self, image_id: str) -> list[reference.Reference]:
        rows = self.db.query("SELECT name FROM refs WHERE image_id=? ORDER BY name", (image_id,))
        return [reference.parse_named(r["name"]) for r in rows]

    def _children(self, image_id: str) -> list[str]:
        return [r["id"] for r in self.db.query("SELECT id FROM images WHERE parent=?", (image_id,))]

    # -- inspect, list, history ------------------------------------------------

    def inspect(self, name: str) -> dict[str, Any]:
        image_id = self.resolve(name)
        config = self.config(image_id)
        row = self.db.query_one("SELECT parent, last_tag_time FROM images WHERE id=?", (image_id,))
        refs = self._refs(image_id)
        return {
            "Id": image_id,
            "RepoTags": [r.familiar() for r in refs if r.tag is not None and r.digest is None],
            "RepoDigests": [r.familiar() for r in refs if r.digest is not None],
            "Parent": row["parent"] if row else "",
            "Comment": config.get("comment", ""),
            "Created": config.get("created") or None,
            "DockerVersion": config.get("docker_version", ""),
            "Author": config.get("author", ""),
            "Config": _inspect_config(config.get("config") or {}),
            "Architecture": config.get("architecture", ""),
            "Os": config.get("os", ""),
            "Size": self.image_size(image_id),
            "GraphDriver": self._graph_driver(image_id),
            "RootFS": {"Type": "layers", "Layers": list(config["rootfs"]["diff_ids"])},
            "Metadata": {"LastTagTime": (row["last_tag_time"] if row else None) or ZERO_TIME},
        }

    def _graph_driver(self, image_id: str) -> dict[str, Any]:
        rows = self.db.query(
            "SELECT chain_id FROM image_layers WHERE image_id=? ORDER BY position DESC",
            (image_id,),
        )
        dirs = [
            self.snapshotter.upper_dir(r["chain_id"])
            for r in rows
            if self.snapshotter.exists(r["chain_id"])
        ]
        data: dict[str, str] = {}
        if dirs:
            top = dirs[0]
            if len(dirs) > 1:
                data["LowerDir"] = ":".join(str(d) for d in dirs[1:])
            data["MergedDir"] = str(top.parent / "merged")
            data["UpperDir"] = str(top)
            data["WorkDir"] = str(top.parent / "work")
        return {"Name": self.snapshotter.driver_name, "Data": data}

    def list(
        self, *, all: bool = False, filters: dict[str, list[str]] | None = None
    ) -> list[dict[str, Any]]:
        """ImageSummary records, newest first. Untagged images have empty
        ``RepoTags``/``RepoDigests`` (the API adds ``<none>`` for old versions)."""
        filters = filters or {}
        for key in filters:
            if key not in ("reference", "dangling", "label", "before", "since", "until"):
                raise errdefs.InvalidArgument(f"invalid filter '{key}'")
        dangling = _bool_filter(filters, "dangling")
        before = self._time_bound(filters.get("before"))
        since = self._time_bound(filters.get("since"))
        until = _until(filters.get("until"))
        out = []
        for row in self.db.query("SELECT id, parent FROM images"):
            image_id = row["id"]
            config = self.config(image_id)
            created = parse_time(config.get("created", ""))
            if (
                (before is not None and created >= before)
                or (since is not None and created <= since)
                or (until is not None and created > until)
            ):
                continue
            labels = (config.get("config") or {}).get("Labels") or {}
            if not _labels_match(labels, filters.get("label", [])):
                continue
            tags, digests = [], []
            for ref in self._refs(image_id):
                patterns = filters.get("reference")
                if patterns and not any(_familiar_match(p, ref) for p in patterns):
                    continue
                (digests if ref.digest else tags).append(ref.familiar())
            if not tags and not digests:
                if "reference" in filters or dangling is False:
                    continue
                if not all and self._children(image_id):
                    continue
            elif dangling:
                continue
            out.append(
                {
                    "Containers": -1,
                    "Created": int(created),
                    "Id": image_id,
                    "Labels": labels,
                    "ParentId": row["parent"] or "",
                    "RepoDigests": digests,
                    "RepoTags": tags,
                    "SharedSize": -1,
                    "Size": self.image_size(image_id),
                }
            )
        out.sort(key=lambda s: (s["Created"], s["Id"]), reverse=True)
        return out

    def disk_usage(self, containers_using: ContainersUsing) -> tuple[int, list[dict[str, Any]]]:
        """``/system/df``'s images part: the size of all layers once, and
        every image with ``SharedSize`` (its layers other images use too) and
        ``Containers`` (how many containers use it)."""
        rows = self.db.query(
            "SELECT il.image_id, il.chain_id, COALESCE(l.size, 0) AS size FROM image_layers il"
            " LEFT JOIN layers l ON l.diff_id = il.diff_id"
        )
        users: dict[str, int] = {}
        sizes: dict[str, int] = {}
        for r in rows:
            users[r["chain_id"]] = users.get(r["chain_id"], 0) + 1
            sizes[r["chain_id"]] = r["size"]
        shared: dict[str, int] = {}
        for r in rows:
            if users[r["chain_id"]] > 1:
                shared[r["image_id"]] = shared.get(r["image_id"], 0) + r["size"]
        images = self.list(all=True)
        for item in images:
            item["SharedSize"] = shared.get(item["Id"], 0)
            item["Containers"] = len(containers_using(item["Id"]))
        return sum(sizes.values()), images

    def _time_bound(self, values: list[str] | None) -> float | None:
        if not values:
            return None
        return parse_time(self.config(self.resolve(values[0])).get("created", ""))

    def history(self, name: str) -> list[dict[str, Any]]:
        image_id = self.resolve(name)
        config = self.config(image_id)
        diff_ids = list(config["rootfs"]["diff_ids"])
        items, layer = [], 0
        for entry in config.get("history") or []:
            size = 0
            if not entry.get("empty_layer") and layer < len(diff_ids):
                size = self.layer_size(diff_ids[layer])
                layer += 1
            items.append(
                {
                    "Id": "<missing>",
                    "Created": int(parse_time(entry.get("created", ""))),
                    "CreatedBy": entry.get("created_by", ""),
                    "Tags": None,
                    "Size": size,
                    "Comment": entry.get("comment", ""),
                }
            )
        items.reverse()
        current: str | None = image_id
        for item in items:
            if not current:
                break
            item["Id"] = current
            tags = [r.familiar() for r in self._refs(current) if r.tag and not r.digest]
            item["Tags"] = tags or None
            row = self.db.query_one("SELECT parent FROM images WHERE id=?", (current,))
            current = row["parent"] if row else None
        return items

    # -- tag and remove ------------------------------------------------------

    def tag(self, source: str, repo: str, tag: str | None = None) -> str:
        """Point ``repo[:tag]`` at ``source``'s image; returns the familiar new name."""
        image_id = self.resolve(source)
        ref = reference.parse_repo_tag(repo, tag)
        with self._lock, self.db.tx() as cur:
            self._set_ref(cur, ref, image_id)
        return ref.familiar()

    def remove(
        self, name: str, *, force: bool, prune: bool, containers_using: ContainersUsing
    ) -> list[dict[str, str]]:
        """``docker rmi``: Docker's ``ImageDelete`` rules and messages."""
        with self._lock:
            image_id = self.resolve(name)
            records: list[dict[str, str]] = []
            refs = self._refs(image_id)
            doomed_blobs: list[str] = []
            quiet = False
            if not _is_id_prefix(image_id, name):
                users = containers_using(image_id)
                if not force and _is_single_reference(refs) and users:
                    raise errdefs.Conflict(
                        f'conflict: unable to remove repository reference "{name}" (must force)'
                        f" - container {users[0][0][:12]} is using its referenced image"
                        f" {short_id(image_id)}"
                    )
                ref = reference.parse_named(name)
                if ref.tag is None and ref.digest is None:
                    ref = ref.with_tag(reference.DEFAULT_TAG)
                with self.db.tx() as cur:
                    cur.execute("DELETE FROM refs WHERE name=?", (ref.string(),))
                records.append({"Untagged": ref.familiar()})
                refs = self._refs(image_id)
                if ref.digest is None and not any(
                    r.name() == ref.name() and r.digest is None for r in refs
                ):
                    for other in [r for r in refs if r.digest and r.name() == ref.name()]:
                        with self.db.tx() as cur:
                            cur.execute("DELETE FROM refs WHERE name=?", (other.string(),))
                        records.append({"Untagged": other.familiar()})
                    refs = self._refs(image_id)
                if refs:
                    return records
                quiet = True
            elif _is_single_reference(refs):
                conflict = self._conflict(
                    image_id, containers_using, hard=True, soft=not force, references=False
                )
                if conflict is not None:
                    raise conflict
                with self.db.tx() as cur:
                    for ref in refs:
                        cur.execute("DELETE FROM refs WHERE name=?", (ref.string(),))
                        records.append({"Untagged": ref.familiar()})
            self._delete_helper(
                image_id,
                records,
                doomed_blobs,
                containers_using,
                force=force,
                prune=prune,
                quiet=quiet,
            )
        for digest in doomed_blobs:
            try:
                self.content.delete(digest)
            except errdefs.NotFound:
                pass
        return records

    def _conflict(
        self,
        image_id: str,
        containers_using: ContainersUsing,
        *,
        hard: bool,
        soft: bool,
        references: bool = True,
    ) -> _DeleteConflict | None:
        sid = short_id(image_id)
        users = containers_using(image_id) if hard or soft else []
        if hard and self._children(image_id):
            return _DeleteConflict(sid, "image has dependent child images", hard=True)
        if hard:
            running = [c for c, is_running in users if is_running]
            if running:
                return _DeleteConflict(
                    sid,
                    f"image is being used by running container {running[0][:12]}",
                    hard=True,
                    used=True,
                )
        if soft and references and self._refs(image_id):
            return _DeleteConflict(sid, "image is referenced in multiple repositories")
        if soft:
            stopped = [c for c, is_running in users if not is_running]
            if stopped:
                return _DeleteConflict(
                    sid, f"image is being used by stopped container {stopped[0][:12]}", used=True
                )
        return None

    def _delete_helper(
        self,
        image_id: str,
        records: list[dict[str, str]],
        doomed_blobs: list[str],
        containers_using: ContainersUsing,
        *,
        force: bool,
        prune: bool,
        quiet: bool,
    ) -> None:
        conflict = self._conflict(image_id, containers_using, hard=True, soft=not force)
        if conflict is not None:
            dangling = not self._refs(image_id)
            if quiet and (not dangling or conflict.used):
                return
            raise conflict
        row = self.db.query_one("SELECT parent FROM images WHERE id=?", (image_id,))
        parent = row["parent"] if row else ""
        chains = [
            (r["chain_id"], r["diff_id"])
            for r in self.db.query(
                "SELECT chain_id, diff_id FROM image_layers"
                " WHERE image_id=? ORDER BY position DESC",
                (image_id,),
            )
        ]
        with self.db.tx() as cur:
            for ref in self._refs(image_id):
                cur.execute("DELETE FROM refs WHERE name=?", (ref.string(),))
                records.append({"Untagged": ref.familiar()})
            cur.execute("DELETE FROM image_layers WHERE image_id=?", (image_id,))
            cur.execute("DELETE FROM images WHERE id=?", (image_id,))
            unused_diffs = []
            for _, diff_id in chains:
                used = cur.execute(
                    "SELECT 1 FROM image_layers WHERE diff_id=? LIMIT 1", (diff_id,)
                ).fetchone()
                if used is None:
                    blob = cur.execute(
                        "SELECT blob FROM layers WHERE diff_id=?", (diff_id,)
                    ).fetchone()
                    cur.execute("DELETE FROM layers WHERE diff_id=?", (diff_id,))
                    unused_diffs.append(diff_id)
                    if blob is not None and blob["blob"]:
                        doomed_blobs.append(blob["blob"])
        doomed_blobs.append(image_id)
        self._configs.pop(image_id, None)
        records.append({"Deleted": image_id})
        records.extend({"Deleted": chain} for chain in self._release_snapshots(chains))
        if prune and parent:
            self._delete_helper(
                parent, records, doomed_blobs, containers_using, force=False, prune=True, quiet=True
            )

    def _release_snapshots(self, chains: list[tuple[str, str]]) -> list[str]:
        """Remove the layer snapshots (top first) no image uses any more; a
        snapshot with children (a container, a layer above) stays."""
        removed = []
        for chain_id, _ in chains:
            if self.db.query_one("SELECT 1 FROM image_layers WHERE chain_id=?", (chain_id,)):
                break
            if not self.snapshotter.exists(chain_id):
                continue
            try:
                self.snapshotter.remove(chain_id)
            except errdefs.FailedPrecondition:
                break
            removed.append(chain_id)
        return removed


class _DeleteConflict(errdefs.Conflict):
    def __init__(self, sid: str, message: str, *, hard: bool = False, used: bool = False) -> None:
        force = "cannot be forced" if hard else "must be forced"
        super().__init__(f"conflict: unable to delete {sid} ({force}) - {message}")
        self.used = used


class _Verifier:
    """A content writer's interface that only checks the digest (for bytes
    the store already holds)."""

    def __init__(self, expected: str) -> None:
        self._expected = expected
        self._hash = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self._hash.update(data)
        self.size += len(data)
        return len(data)

    def commit(self) -> str:
        digest = "sha256:" + self._hash.hexdigest()
        if digest != self._expected:
            raise errdefs.InvalidArgument(
                f"unexpected commit digest {digest}, expected {self._expected}: failed precondition"
            )
        return digest

    def abort(self) -> None:
        pass


class _Tee:
    """Copies what is read from ``stream`` into a content writer."""

    def __init__(self, stream: BinaryIO, writer) -> None:
        self._stream = stream
        self._writer = writer

    def read(self, size: int = -1) -> bytes:
        data = self._stream.read(size)
        if data:
            self._writer.write(data)
        return data


def _parse_ref(text: str) -> reference.Reference:
    ref = reference.parse(text)
    if ref.digest is not None:
        raise errdefs.InvalidArgument("cannot import digest reference")
    return ref


def _is_id_prefix(image_id: str, candidate: str) -> bool:
    return image_id.startswith(candidate) or image_id.partition(":")[2].startswith(candidate)


def _is_single_reference(refs: list[reference.Reference]) -> bool:
    """Docker's ``isSingleReference``: one tag (plus digests of the same repository)."""
    if len(refs) <= 1:
        return len(refs) == 1
    single = None
    canonical = set()
    for ref in refs:
        if ref.digest is not None:
            canonical.add(ref.name())
        elif single is None:
            single = ref
        else:
            return False
    if single is None:
        single = refs[0]
    return len(canonical) == 1 and single.name() in canonical


def _bool_filter(filters: dict[str, list[str]], key: str) -> bool | None:
    values = filters.get(key)
    if not values:
        return None
    value = values[0].lower()
    if value in ("true", "1"):
        return True
    if value in ("false", "0"):
        return False
    raise errdefs.InvalidArgument(f"Invalid filter '{key}={values[0]}'")


def _labels_match(labels: dict[str, str], wanted: list[str]) -> bool:
    for item in wanted:
        key, sep, value = item.partition("=")
        if key not in labels or (sep and labels[key] != value):
            return False
    return True


def _until(values: list[str] | None) -> float | None:
    if not values:
        return None
    text = values[0]
    try:
        return float(text)
    except ValueError:
        stamp = parse_time(text)
        if not stamp:
            raise errdefs.InvalidArgument(f"invalid filter 'until={text}'")
        return stamp


def _inspect_config(config: dict[str, Any]) -> dict[str, Any]:
    """The ImageConfig shape of API v1.50 (absent lists/maps are null)."""
    out: dict[str, Any] = {
        "User": config.get("User", ""),
        "Env": config.get("Env"),
        "Cmd": config.get("Cmd"),
        "WorkingDir": config.get("WorkingDir", ""),
        "Entrypoint": config.get("Entrypoint"),
        "OnBuild": config.get("OnBuild"),
        "Labels": config.get("Labels"),
    }
    for key in ("ExposedPorts", "Volumes", "StopSignal", "Healthcheck", "Shell", "ArgsEscaped"):
        if config.get(key) is not None:
            out[key] = config[key]
    return out
