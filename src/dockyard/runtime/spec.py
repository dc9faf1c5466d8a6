"""The OCI runtime ``config.json`` Docker would generate for a container.

Mirrors moby's ``oci/defaults.go`` and ``daemon/oci_linux.go``: namespaces,
the default capability set, default mounts, masked and read-only paths,
device cgroup rules, rlimits. ``resolve_user`` reads the image's
``/etc/passwd`` and ``/etc/group`` the way runc's ``GetExecUser`` does, without
ever leaving the (hostile) rootfs.
"""

from __future__ import annotations

import os
import resource
import stat
from dataclasses import dataclass, field
from pathlib import Path

from dockyard import errdefs
from dockyard.runtime import seccomp_profile
from dockyard.sys.capabilities import NAMES as ALL_CAPABILITIES
from dockyard.sys.securejoin import secure_join

OCI_VERSION = "1.2.0"
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

DEFAULT_CAPABILITIES = (
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
)

MASKED_PATHS = (
    "/proc/asound",
    "/proc/acpi",
    "/proc/interrupts",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
)

READONLY_PATHS = ("/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger")

# moby's default device cgroup rules (oci/defaults.go); runtimes add their own
# always-allowed devices (pts, ptmx, ...) on top, as runc does.
DEVICE_RULES = (
    {"allow": False, "access": "rwm"},
    {"allow": True, "type": "c", "major": 1, "minor": 5, "access": "rwm"},
    {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rwm"},
    {"allow": True, "type": "c", "major": 1, "minor": 9, "access": "rwm"},
    {"allow": True, "type": "c", "major": 1, "minor": 8, "access": "rwm"},
    {"allow": True, "type": "c", "major": 5, "minor": 0, "access": "rwm"},
    {"allow": True, "type": "c", "major": 5, "minor": 1, "access": "rwm"},
    {"allow": False, "type": "c", "major": 10, "minor": 229, "access": "rwm"},
)

NOFILE = 1048576
_MAX_DB_SIZE = 16 * 1024 * 1024


@dataclass(frozen=True)
class SpecOptions:
    rootfs: str
    args: list[str]
    env: list[str]
    cwd: str = "/"
    user: str = ""
    tty: bool = False
    hostname: str = ""
    domainname: str = ""
    cgroups_path: str = ""
    binds: tuple[tuple[str, str, bool], ...] = ()
    readonly_rootfs: bool = False
    privileged: bool = False
    cap_add: tuple[str, ...] = ()
    cap_drop: tuple[str, ...] = ()
    netns_path: str | None = None
    host_network: bool = False  # share the host's network namespace (--network host)
    shm_size: int = 64 * 1024 * 1024
    annotations: dict[str, str] = field(default_factory=dict)
    # "default" (Docker's profile), "unconfined" or None (no filter), or a
    # profile's JSON text; see runtime/seccomp_profile.py.
    seccomp_profile: str | None = seccomp_profile.DEFAULT


def generate(options: SpecOptions) -> dict:
    """The config.json content for ``options`` (the user is resolved here)."""
    uid, gid, additional = resolve_user(Path(options.rootfs), options.user)
    caps = capabilities(options.cap_add, options.cap_drop, privileged=options.privileged)
    nofile = nofile_limit()
    process: dict = {
        "terminal": options.tty,
        "user": {"uid": uid, "gid": gid, "additionalGids": additional},
        "args": list(options.args),
        "env": _env(options),
        "cwd": options.cwd or "/",
        "capabilities": {"bounding": caps, "effective": caps, "permitted": caps},
        "rlimits": [{"type": "RLIMIT_NOFILE", "hard": nofile, "soft": nofile}],
        "noNewPrivileges": not options.privileged,
    }
    if options.tty:
        process["consoleSize"] = {"height": 24, "width": 80}
    spec: dict = {
        "ociVersion": OCI_VERSION,
        "process": process,
        "root": {"path": options.rootfs, "readonly": options.readonly_rootfs},
        "hostname": options.hostname,
        "mounts": _mounts(options),
        "linux": _linux(options),
    }
    # -- seccomp (runtime/seccomp_profile.py): filtered by this container's bounding set
    seccomp = seccomp_profile.for_container(
        options.seccomp_profile, capabilities=caps, privileged=options.privileged
    )
    if seccomp is not None:
        spec["linux"]["seccomp"] = seccomp
    # -- end seccomp
    if options.domainname:
        spec["domainname"] = options.domainname
    if options.annotations:
        spec["annotations"] = dict(options.annotations)
    return spec


def nofile_limit() -> int:
    """containerd's RLIMIT_NOFILE (1048576), or this host's hard limit when we
    may not raise ours (no CAP_SYS_RESOURCE): the runtime could not set more."""
    if _has_cap(24):  # CAP_SYS_RESOURCE
        return NOFILE
    return min(NOFILE, resource.getrlimit(resource.RLIMIT_NOFILE)[1])


def _has_cap(number: int) -> bool:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("CapEff:"):
                    return bool(int(line.split()[1], 16) & (1 << number))
    except OSError:
        pass
    return False


def capabilities(
    add: tuple[str, ...] | list[str], drop: tuple[str, ...] | list[str], *, privileged: bool
) -> list[str]:
    """Docker's TweakCapabilities: defaults, minus drops, plus adds; "ALL" works both ways."""
    if privileged:
        return list(ALL_CAPABILITIES)
    adds = [_cap_name(c) for c in add]
    drops = [_cap_name(c) for c in drop]
    for name in (*adds, *drops):
        if name != "ALL" and name not in ALL_CAPABILITIES:
            raise errdefs.InvalidArgument(f"unknown capability: {name!r}")
    if "ALL" in adds:
        return [c for c in ALL_CAPABILITIES if c not in drops or c in adds]
    base = [] if "ALL" in drops else [c for c in DEFAULT_CAPABILITIES if c not in drops]
    return base + [c for c in adds if c not in base]


def _cap_name(name: str) -> str:
    upper = name.upper()
    if upper == "ALL" or upper.startswith("CAP_"):
        return upper
    return "CAP_" + upper


def _env(options: SpecOptions) -> list[str]:
    env = list(options.env)
    keys = {e.split("=", 1)[0] for e in env}
    if "PATH" not in keys:
        env.insert(0, "PATH=" + DEFAULT_PATH)
    if options.hostname and "HOSTNAME" not in keys:
        env.insert(1, "HOSTNAME=" + options.hostname)
    if options.tty and "TERM" not in keys:
        env.append("TERM=xterm")
    return env


def _mounts(options: SpecOptions) -> list[dict]:
    sys_opts = ["nosuid", "noexec", "nodev", "rw" if options.privileged else "ro"]
    cgroup_opts = ["ro", "nosuid", "noexec", "nodev"]
    if options.privileged:
        cgroup_opts[0] = "rw"
    mounts = [
        _mount("/proc", "proc", "proc", ["nosuid", "noexec", "nodev"]),
        _mount("/dev", "tmpfs", "tmpfs", ["nosuid", "strictatime", "mode=755", "size=65536k"]),
        _mount(
            "/dev/pts",
            "devpts",
            "devpts",
            ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"],
        ),
        _mount("/sys", "sysfs", "sysfs", sys_opts),
        _mount("/sys/fs/cgroup", "cgroup", "cgroup", cgroup_opts),
        _mount("/dev/mqueue", "mqueue", "mqueue", ["nosuid", "noexec", "nodev"]),
        _mount(
            "/dev/shm",
            "tmpfs",
            "shm",
            ["nosuid", "noexec", "nodev", "mode=1777", f"size={options.shm_size}"],
        ),
    ]
    for host, container, readonly in options.binds:
        opts = ["rbind", "rprivate", "ro" if readonly else "rw"]
        mounts.append(_mount(container, "bind", host, opts))
    return mounts


def _mount(destination: str, fstype: str, source: str, options: list[str]) -> dict:
    return {"destination": destination, "type": fstype, "source": source, "options": options}


def _linux(options: SpecOptions) -> dict:
    namespaces: list[dict] = [{"type": t} for t in ("mount", "network", "uts", "pid", "ipc")]
    if options.netns_path is not None:
        namespaces[1]["path"] = options.netns_path
    if options.host_network:
        del namespaces[1]
    namespaces.append({"type": "cgroup"})
    devices = [{"allow": True, "access": "rwm"}] if options.privileged else list(DEVICE_RULES)
    linux: dict = {
        "resources": {"devices": [dict(d) for d in devices]},
        "namespaces": namespaces,
        "devices": [],
    }
    if options.cgroups_path:
        linux["cgroupsPath"] = options.cgroups_path
    if not options.privileged:
        linux["maskedPaths"] = list(MASKED_PATHS)
        linux["readonlyPaths"] = list(READONLY_PATHS)
    return linux


def resolve_user(rootfs: Path, user: str) -> tuple[int, int, list[int]]:
    """(uid, gid, additional gids) for Docker's User field, as runc's GetExecUser.

    The additional gids start with the primary one, as moby's getUser does.
    """
    name, _, group = user.partition(":")
    uid, gid = 0, 0
    matched_name = ""
    passwd = _read_db(rootfs, "/etc/passwd")
    entry = _find(passwd, name, default_id=0)
    if entry is not None:
        matched_name = entry[0]
        uid, gid = _int(entry[2]), _int(entry[3])
    elif name == "" or name.isdigit():
        uid = int(name or 0)
    else:
        raise errdefs.InvalidArgument(
            f"unable to find user {name}: no matching entries in passwd file"
        )
    sgids: list[int] = []
    if group or matched_name:
        groups = _read_db(rootfs, "/etc/group")
        if group:
            found = _find(groups, group, default_id=None)
            if found is not None:
                gid = _int(found[2])
            elif group.isdigit():
                gid = int(group)
            else:
                raise errdefs.InvalidArgument(
                    f"unable to find group {group}: no matching entries in group file"
                )
        else:
            for entry_ in groups:
                members = entry_[3].split(",") if len(entry_) > 3 else []
                if matched_name in members:
                    sgids.append(_int(entry_[2]))
    return uid, gid, [gid, *sgids]


def _find(entries: list[list[str]], wanted: str, default_id: int | None) -> list[str] | None:
    """The first entry matching a name or numeric id ("" matches ``default_id``)."""
    for entry in entries:
        if len(entry) < 3:
            continue
        if wanted == "":
            if default_id is not None and entry[2] == str(default_id):
                return entry
        elif entry[0] == wanted or (wanted.isdigit() and entry[2] == wanted):
            return entry
    return None


def _int(value: str) -> int:
    try:
        return int(value)
    except ValueError:
        return 0


def _read_db(rootfs: Path, path: str) -> list[list[str]]:
    """Colon-separated entries of a file inside ``rootfs``; [] when absent.

    Symlinks are resolved inside the root, the final open refuses links, and
    only regular files are read (a device node in an image must not be).
    """
    real = secure_join(str(rootfs), path)
    try:
        fd = os.open(real, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError:
        return []
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return []
        text = os.read(fd, _MAX_DB_SIZE).decode(errors="replace")
    finally:
        os.close(fd)
    return [
        line.split(":")
        for line in text.splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
