"""Snapshotters: layered filesystem trees, as containerd's ``Snapshotter``.

A snapshot is *active* (writable; made by ``prepare``), a *view*
(read-only; ``view``) or *committed* (immutable, a parent for others;
``commit`` turns an active snapshot into one). Each lives in
``<root>/snapshots/<n>/`` with ``fs/`` (its own files: a layer's content, or
a container's changes) and ``work/`` (overlayfs' work dir).

Bookkeeping is ``<root>/metadata.json`` (key → id, kind, parent), replaced
atomically (temp file, fsync, rename, fsync dir). Directories are created
before the record that names them and removed after the record is gone, so
a crash leaves at worst an orphan directory (``orphans()`` lists them).

``OverlaySnapshotter`` stacks parents as overlay lowerdirs;
``CopySnapshotter`` gives each active snapshot a full copy of its parent, for
filesystems where overlayfs cannot mount (overlay on overlay, some tmpfs).
The overlay mount data must fit in one page (4096 bytes): with the default
data root that is about 90 layers; deeper chains raise ``errdefs.System``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from dockyard import errdefs
from dockyard.sys import mount as sysmount

Kind = Literal["active", "view", "committed"]
_PAGE = 4096


@dataclass(frozen=True)
class Mount:
    """One mount(2) call: ``type`` is ``overlay`` or ``bind``."""

    type: str
    source: str
    options: tuple[str, ...]

    def mount(self, target: str | Path) -> None:
        target = str(target)
        readonly = "ro" in self.options
        if self.type == "bind":
            sysmount.mount(self.source, target, None, sysmount.MS_BIND | sysmount.MS_REC)
            if readonly:
                flags = sysmount.MS_BIND | sysmount.MS_REMOUNT | sysmount.MS_RDONLY
                sysmount.mount(None, target, None, flags)
            return
        data = ",".join(o for o in self.options if o not in ("ro", "rw"))
        if len(data) >= _PAGE:
            raise errdefs.System(
                f"overlay mount options are {len(data)} bytes (limit {_PAGE - 1}): too many layers"
            )
        flags = sysmount.MS_RDONLY if readonly else 0
        sysmount.mount(self.source, target, self.type, flags, data)


def mount_all(mounts: list[Mount], target: str | Path) -> None:
    for m in mounts:
        m.mount(target)


def unmount(target: str | Path) -> None:
    """Unmount everything stacked on ``target`` (a no-op when nothing is)."""
    while sysmount.umount_quiet(str(target), 0):
        pass


@dataclass(frozen=True)
class _Record:
    id: int
    kind: Kind
    parent: str | None
    created: float


class Snapshotter:
    """The interface and its bookkeeping; subclasses decide how trees stack."""

    #: how image layers must express deletions in ``upper_dir``
    whiteout_mode: Literal["overlay", "delete"] = "overlay"
    #: the GraphDriver name shown by image/container inspect
    driver_name = "overlay2"

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self._dirs = self.root / "snapshots"
        self._dirs.mkdir(parents=True, exist_ok=True)
        self._meta_path = self.root / "metadata.json"
        self._lock = threading.RLock()
        self._records: dict[str, _Record] = {}
        self._next_id = 1
        self._load()

    # -- bookkeeping -----------------------------------------------------

    def _load(self) -> None:
        try:
            data = json.loads(self._meta_path.read_text())
        except FileNotFoundError:
            return
        self._next_id = data["next_id"]
        self._records = {k: _Record(**v) for k, v in data["snapshots"].items()}

    def _save(self) -> None:
        data = {
            "driver": self.driver_name,
            "next_id": self._next_id,
            "snapshots": {k: r.__dict__ for k, r in self._records.items()},
        }
        tmp = self._meta_path.with_suffix(".tmp")
        with open(tmp, "w") as f:
            json.dump(data, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self._meta_path)
        fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def _get(self, key: str) -> _Record:
        record = self._records.get(key)
        if record is None:
            raise errdefs.NotFound(f"snapshot {key}: not found")
        return record

    def _dir(self, record: _Record) -> Path:
        return self._dirs / str(record.id)

    def _chain(self, key: str | None) -> list[_Record]:
        """``key``'s record and its ancestors', top first."""
        out = []
        while key is not None:
            record = self._get(key)
            out.append(record)
            key = record.parent
        return out

    def _create(self, key: str, parent: str | None, kind: Kind) -> _Record:
        with self._lock:
            if key in self._records:
                raise errdefs.Conflict(f"snapshot {key}: already exists")
            if parent is not None and self._get(parent).kind != "committed":
                raise errdefs.FailedPrecondition(f"snapshot {parent}: parent is not committed")
            record = _Record(self._next_id, kind, parent, time.time())
            path = self._dir(record)
            shutil.rmtree(path, ignore_errors=True)  # an orphan from a crash
            (path / "fs").mkdir(parents=True)
            (path / "work").mkdir()
            try:
                self._populate(path / "fs", parent, kind)
                self._next_id += 1
                self._records[key] = record
                self._save()
            except BaseException:
                self._records.pop(key, None)
                shutil.rmtree(path, ignore_errors=True)
                raise
            return record

    def _populate(self, fs: Path, parent: str | None, kind: Kind) -> None:
        """Fill a new snapshot's ``fs`` (the copy snapshotter copies its parent)."""

    # -- the interface -----------------------------------------------------

    def prepare(self, key: str, parent: str | None = None) -> list[Mount]:
        """A new active (writable) snapshot on top of committed ``parent``."""
        self._create(key, parent, "active")
        return self.mounts(key)

    def view(self, key: str, parent: str | None = None) -> list[Mount]:
        """A new read-only snapshot of committed ``parent``."""
        self._create(key, parent, "view")
        return self.mounts(key)

    def mounts(self, key: str) -> list[Mount]:
        with self._lock:
            return self._mounts(self._chain(key))

    def _mounts(self, chain: list[_Record]) -> list[Mount]:
        raise NotImplementedError

    def commit(self, name: str, key: str) -> None:
        """Turn active snapshot ``key`` into committed snapshot ``name``."""
        with self._lock:
            record = self._get(key)
            if record.kind != "active":
                raise errdefs.FailedPrecondition(f"snapshot {key}: is not active")
            if name in self._records:
                raise errdefs.Conflict(f"snapshot {name}: already exists")
            del self._records[key]
            self._records[name] = _Record(record.id, "committed", record.parent, time.time())
            self._save()
            shutil.rmtree(self._dir(record) / "work", ignore_errors=True)

    def remove(self, key: str) -> None:
        """Delete a snapshot that has no children."""
        with self._lock:
            record = self._get(key)
            children = [k for k, r in self._records.items() if r.parent == key]
            if children:
                raise errdefs.FailedPrecondition(
                    f"cannot remove snapshot {key}: it has {len(children)} children"
                )
            del self._records[key]
            self._save()
            path = self._dir(record)
            doomed = path.with_name(f"rm-{record.id}")
            os.rename(path, doomed)
        shutil.rmtree(doomed, ignore_errors=True)

    def exists(self, key: str) -> bool:
        with self._lock:
            return key in self._records

    def parent(self, key: str) -> str | None:
        with self._lock:
            return self._get(key).parent

    def kind(self, key: str) -> Kind:
        with self._lock:
            return self._get(key).kind

    def children(self, key: str) -> list[str]:
        with self._lock:
            return sorted(k for k, r in self._records.items() if r.parent == key)

    def keys(self) -> list[str]:
        with self._lock:
            return sorted(self._records)

    def upper_dir(self, key: str) -> Path:
        """Where this snapshot's own files are (a layer's, a container's changes)."""
        with self._lock:
            return self._dir(self._get(key)) / "fs"

    def usage(self, key: str) -> int:
        """Bytes in this snapshot's own directory (hard links counted once)."""
        return _disk_usage(self.upper_dir(key))

    def orphans(self) -> list[Path]:
        """Snapshot directories no record names (left by a crash)."""
        with self._lock:
            known = {str(r.id) for r in self._records.values()}
            return sorted(p for p in self._dirs.iterdir() if p.name not in known)


def _disk_usage(path: Path) -> int:
    total = 0
    seen: set[tuple[int, int]] = set()
    for dirpath, dirnames, filenames in os.walk(path):
        for name in filenames + dirnames:
            st = os.lstat(os.path.join(dirpath, name))
            if st.st_nlink > 1:
                if (st.st_dev, st.st_ino) in seen:
                    continue
                seen.add((st.st_dev, st.st_ino))
            total += st.st_size
    return total


class OverlaySnapshotter(Snapshotter):
    """Parents are overlay lowerdirs; an active snapshot's ``fs`` is the upperdir."""

    whiteout_mode = "overlay"
    driver_name = "overlay2"

    def _mounts(self, chain: list[_Record]) -> list[Mount]:
        top, parents = chain[0], chain[1:]
        top_dir = self._dir(top)
        if top.kind == "active":
            if not parents:
                return [Mount("bind", str(top_dir / "fs"), ("rbind", "rw"))]
            lower = ":".join(str(self._dir(r) / "fs") for r in parents)
            return [
                Mount(
                    "overlay",
                    "overlay",
                    (
                        f"lowerdir={lower}",
                        f"upperdir={top_dir / 'fs'}",
                        f"workdir={top_dir / 'work'}",
                        "index=off",
                    ),
                )
            ]
        layers = chain if top.kind == "committed" else parents
        if not layers:
            return [Mount("bind", str(top_dir / "fs"), ("rbind", "ro"))]
        if len(layers) == 1:
            return [Mount("bind", str(self._dir(layers[0]) / "fs"), ("rbind", "ro"))]
        lower = ":".join(str(self._dir(r) / "fs") for r in layers)
        return [Mount("overlay", "overlay", (f"lowerdir={lower}", "index=off", "ro"))]


class CopySnapshotter(Snapshotter):
    """Every active snapshot starts as a full copy of its parent (``cp -a``)."""

    whiteout_mode = "delete"
    driver_name = "vfs"

    def _populate(self, fs: Path, parent: str | None, kind: Kind) -> None:
        if parent is None or kind == "view":
            return
        source = self._dir(self._get(parent)) / "fs"
        result = subprocess.run(
            ["cp", "-a", "--reflink=auto", f"{source}/.", str(fs)],
            capture_output=True,
            text=True,
        )
        if result.returncode != 0:
            raise errdefs.System(f"copying snapshot {parent}: {result.stderr.strip()}")

    def _mounts(self, chain: list[_Record]) -> list[Mount]:
        top = chain[0]
        if top.kind == "view" and len(chain) > 1:
            return [Mount("bind", str(self._dir(chain[1]) / "fs"), ("rbind", "ro"))]
        mode = "rw" if top.kind == "active" else "ro"
        return [Mount("bind", str(self._dir(top) / "fs"), ("rbind", mode))]


def overlay_supported(root: Path) -> bool:
    """Whether an overlay with its upper dir under ``root`` mounts here."""
    probe = Path(root) / f".probe-{os.getpid()}-{threading.get_ident()}"
    dirs = {name: probe / name for name in ("lower", "upper", "work", "merged")}
    try:
        for path in dirs.values():
            path.mkdir(parents=True)
        data = f"lowerdir={dirs['lower']},upperdir={dirs['upper']},workdir={dirs['work']}"
        try:
            sysmount.mount("overlay", str(dirs["merged"]), "overlay", 0, data)
        except OSError:
            return False
        sysmount.umount(str(dirs["merged"]), sysmount.MNT_DETACH)
        return True
    finally:
        shutil.rmtree(probe, ignore_errors=True)


def choose_snapshotter(root: Path) -> Snapshotter:
    """Overlay where it mounts, the copying snapshotter elsewhere; a root
    that already holds snapshots keeps the kind that made them."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    try:
        driver = json.loads((root / "metadata.json").read_text()).get("driver")
    except FileNotFoundError:
        driver = None
    if driver in (OverlaySnapshotter.driver_name, CopySnapshotter.driver_name):
        return OverlaySnapshotter(root) if driver == "overlay2" else CopySnapshotter(root)
    if overlay_supported(root):
        return OverlaySnapshotter(root)
    return CopySnapshotter(root)
