"""A container's cgroup: create, join, limit, list, remove; v1 and v2.

The version is read from /proc/self/mountinfo: a ``cgroup2`` mount at
/sys/fs/cgroup means the unified hierarchy only; otherwise every ``cgroup``
(v1) hierarchy is used, plus a hybrid ``cgroup2`` mount if there is one (as
runc does). An absolute cgroupsPath is relative to each hierarchy's root, a
relative one to the caller's own cgroup there.

Kernel facts relied on: rmdir fails with EBUSY while tasks remain (they
leave as they exit, zombies included); a v1 cpuset cgroup accepts no tasks
until cpuset.cpus and cpuset.mems are set, so they are copied from the
parent; writing a pid to cgroup.procs moves the whole thread group.
"""

from __future__ import annotations

import errno
import os
import time
from collections import namedtuple

from dockyard import errdefs

CGROUP_ROOT = "/sys/fs/cgroup"

# Devices runc always allows on top of the spec's rules (libcontainer/specconv).
_RUNTIME_ALLOWED_DEVICES = (
    "c *:* m",
    "b *:* m",
    "c 1:3 rwm",
    "c 1:8 rwm",
    "c 1:7 rwm",
    "c 5:0 rwm",
    "c 1:5 rwm",
    "c 1:9 rwm",
    "c 136:* rwm",
    "c 5:2 rwm",
    "c 10:200 rwm",
)


# A record as a namedtuple, not a dataclass: every shim imports this module,
# and dataclasses (with inspect) would add over a megabyte to each one's RSS.
# version is 1 or 2; controllers holds the v1 super options such as ("cpu",)
# or ("name=systemd",); root is the mount's root inside the hierarchy.
Hierarchy = namedtuple("Hierarchy", "mountpoint version controllers root")


def hierarchies() -> list[Hierarchy]:
    """The cgroup hierarchies to use, parsed from /proc/self/mountinfo."""
    found: list[Hierarchy] = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            fields, extra = left.split(), right.split()
            if len(extra) < 3 or extra[0] not in ("cgroup", "cgroup2"):
                continue
            if extra[0] == "cgroup2":
                if fields[4] == CGROUP_ROOT:
                    return [Hierarchy(CGROUP_ROOT, 2, (), fields[3])]
                found.append(Hierarchy(fields[4], 2, (), fields[3]))
                continue
            opts = tuple(o for o in extra[2].split(",") if _is_controller(o))
            found.append(Hierarchy(fields[4], 1, opts, fields[3]))
    return [h for h in found if h.mountpoint.startswith(CGROUP_ROOT + "/")]


_NOT_CONTROLLERS = ("rw", "ro", "noprefix", "clone_children", "xattr", "cpuset_v2_mode")


def _is_controller(option: str) -> bool:
    return option not in _NOT_CONTROLLERS and not option.startswith("release_agent=")


def version() -> int:
    hs = hierarchies()
    return 2 if len(hs) == 1 and hs[0].version == 2 else 1


class Cgroup:
    """One cgroupsPath across every hierarchy."""

    def __init__(self, path: str, found: list[Hierarchy] | None = None) -> None:
        self.path = path
        self.hierarchies = found if found is not None else hierarchies()
        self.dirs = [self._dir(h) for h in self.hierarchies]

    def _dir(self, h: Hierarchy) -> str:
        if self.path.startswith("/"):
            return os.path.join(h.mountpoint, self.path.lstrip("/"))
        return os.path.join(h.mountpoint, _own_cgroup(h).lstrip("/"), self.path)

    @property
    def unified(self) -> bool:
        return len(self.hierarchies) == 1 and self.hierarchies[0].version == 2

    def create(self, resources: dict | None = None) -> None:
        """Make the directories and apply ``linux.resources``; undo on failure."""
        try:
            for h, d in zip(self.hierarchies, self.dirs, strict=True):
                os.makedirs(d, exist_ok=True)
                if h.version == 1 and "cpuset" in h.controllers:
                    _init_cpuset(d, h.mountpoint)
            self.apply(resources or {})
        except OSError as exc:
            self.remove(timeout=0)
            raise errdefs.System(f"cgroup {self.path}: {exc}") from exc

    def join(self, pid: int = 0) -> None:
        """Move ``pid`` (0: the caller) into the cgroup in every hierarchy."""
        for d in self.dirs:
            _write(d, "cgroup.procs", str(pid or os.getpid()))

    def apply(self, resources: dict) -> None:
        if self.unified:
            self._apply_v2(resources, self.dirs[0])
        else:
            self._apply_v1(resources)

    def _apply_v1(self, res: dict) -> None:
        for h, d in zip(self.hierarchies, self.dirs, strict=True):
            if h.version != 1:
                continue
            mem, cpu, pids = res.get("memory") or {}, res.get("cpu") or {}, res.get("pids") or {}
            if "memory" in h.controllers:
                if mem.get("limit"):
                    _write(d, "memory.limit_in_bytes", str(mem["limit"]))
                if mem.get("swap"):
                    _write(d, "memory.memsw.limit_in_bytes", str(mem["swap"]))
            if "cpu" in h.controllers:
                if cpu.get("shares"):
                    _write(d, "cpu.shares", str(cpu["shares"]))
                if cpu.get("period"):
                    _write(d, "cpu.cfs_period_us", str(cpu["period"]))
                if cpu.get("quota"):
                    _write(d, "cpu.cfs_quota_us", str(cpu["quota"]))
            if "pids" in h.controllers and pids.get("limit"):
                limit = pids["limit"]
                _write(d, "pids.max", "max" if limit < 0 else str(limit))
            if "devices" in h.controllers and res.get("devices"):
                _apply_devices_v1(d, res["devices"])

    def _apply_v2(self, res: dict, d: str) -> None:
        mem, cpu, pids = res.get("memory") or {}, res.get("cpu") or {}, res.get("pids") or {}
        if mem.get("limit"):
            _write(d, "memory.max", str(mem["limit"]))
        if cpu.get("shares"):
            weight = 1 + ((cpu["shares"] - 2) * 9999) // 262142
            _write(d, "cpu.weight", str(weight))
        if cpu.get("quota"):
            _write(d, "cpu.max", f"{cpu['quota']} {cpu.get('period') or 100000}")
        if pids.get("limit"):
            _write(d, "pids.max", "max" if pids["limit"] < 0 else str(pids["limit"]))
        # Device rules need an eBPF program on v2; not done here.

    def pids(self) -> list[int]:
        """Every process in the cgroup (from the first hierarchy that has the dir)."""
        for d in self.dirs:
            try:
                with open(os.path.join(d, "cgroup.procs")) as f:
                    return [int(x) for x in f.read().split()]
            except FileNotFoundError:
                continue
        return []

    def exists(self) -> bool:
        return any(os.path.isdir(d) for d in self.dirs)

    def remove(self, timeout: float = 5.0) -> None:
        """rmdir in every hierarchy, retrying while processes drain out."""
        deadline = time.monotonic() + timeout
        for d in self.dirs:
            while True:
                try:
                    os.rmdir(d)
                    break
                except FileNotFoundError:
                    break
                except OSError as exc:
                    if exc.errno != errno.EBUSY or time.monotonic() >= deadline:
                        raise errdefs.System(f"remove cgroup {d}: {exc}") from exc
                    time.sleep(0.01)


def _own_cgroup(h: Hierarchy) -> str:
    with open("/proc/self/cgroup") as f:
        for line in f:
            _, ctrls, path = line.rstrip("\n").split(":", 2)
            if (h.version == 2 and ctrls == "") or (
                h.version == 1 and ctrls and set(ctrls.split(",")) == set(h.controllers)
            ):
                return path
    return "/"


def _init_cpuset(d: str, top: str) -> None:
    """Copy cpuset.cpus/mems down from the nearest initialised ancestor."""
    for name in ("cpuset.cpus", "cpuset.mems"):
        chain = []
        cur = d
        while True:
            chain.append(cur)
            if os.path.normpath(cur) == os.path.normpath(top):
                break
            if _read(cur, name).strip():
                break
            cur = os.path.dirname(cur)
        value = _read(chain[-1], name)
        for path in reversed(chain[:-1]):
            if not _read(path, name).strip():
                _write(path, name, value)


def _apply_devices_v1(d: str, rules: list[dict]) -> None:
    for rule in rules:
        kind = rule.get("type", "a")
        major = "*" if rule.get("major") is None else str(rule["major"])
        minor = "*" if rule.get("minor") is None else str(rule["minor"])
        entry = "a" if kind == "a" else f"{kind} {major}:{minor} {rule.get('access', 'rwm')}"
        _write(d, "devices.allow" if rule.get("allow") else "devices.deny", entry)
    for entry in _RUNTIME_ALLOWED_DEVICES:
        _write(d, "devices.allow", entry)


def _read(d: str, name: str) -> str:
    with open(os.path.join(d, name)) as f:
        return f.read()


def _write(d: str, name: str, value: str) -> None:
    with open(os.path.join(d, name), "w") as f:
        f.write(value)
