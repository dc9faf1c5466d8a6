"""Docker seccomp profiles → the OCI ``linux.seccomp`` object, as moby's profiles/seccomp.

A Docker profile (``seccomp_default.json`` is Docker's default, or the JSON
the CLI sends for ``--security-opt seccomp=<file>``) has rules that apply only
on some architectures (``includes.arches``/``excludes.arches``, Go's native
names: "amd64", "x86", "arm64", ...), only when the container's *bounding* set
holds (``includes.caps``) or lacks (``excludes.caps``) capabilities, or only
on kernels at least ``minKernel``. ``linux_seccomp`` resolves all of that for
one container and this host, and expands ``archMap`` into the native
architecture plus its sub-architectures (on x86_64: x86 and x32).

Pure functions of their inputs; only ``default_profile`` reads a file and
``host_machine``/``host_kernel`` look at the running kernel.
"""

from __future__ import annotations

import functools
import json
import os
import re
from collections.abc import Sequence
from pathlib import Path

from dockyard import errdefs

DEFAULT = "default"
UNCONFINED = "unconfined"
_DEFAULT_FILE = Path(__file__).with_name("seccomp_default.json")

# uname machine → (Go's native name used in includes/excludes.arches, OCI architecture)
_MACHINES = {
    "x86_64": ("amd64", "SCMP_ARCH_X86_64"),
    "i386": ("x86", "SCMP_ARCH_X86"),
    "i686": ("x86", "SCMP_ARCH_X86"),
    "aarch64": ("arm64", "SCMP_ARCH_AARCH64"),
    "armv7l": ("arm", "SCMP_ARCH_ARM"),
    "armv6l": ("arm", "SCMP_ARCH_ARM"),
    "ppc64le": ("ppc64le", "SCMP_ARCH_PPC64LE"),
    "ppc64": ("ppc64", "SCMP_ARCH_PPC64"),
    "s390x": ("s390x", "SCMP_ARCH_S390X"),
    "s390": ("s390", "SCMP_ARCH_S390"),
    "mips64": ("mips64", "SCMP_ARCH_MIPS64"),
    "riscv64": ("riscv64", "SCMP_ARCH_RISCV64"),
    "loongarch64": ("loong64", "SCMP_ARCH_LOONGARCH64"),
}


@functools.cache
def _default_text() -> str:
    return _DEFAULT_FILE.read_text()


def default_profile() -> dict:
    """Docker's default profile (a fresh copy: callers may change it)."""
    return json.loads(_default_text())


def host_machine() -> str:
    return os.uname().machine


def host_kernel() -> str:
    return os.uname().release


def for_container(
    profile: str | None, *, capabilities: Sequence[str], privileged: bool = False
) -> dict | None:
    """``linux.seccomp`` for a container, or None when it runs unconfined.

    ``profile`` is "default" (Docker's), "unconfined" or None (no filter), or a
    profile's JSON text. Privileged containers are unconfined, as in Docker.
    """
    if privileged or profile is None or profile == UNCONFINED:
        return None
    if profile == DEFAULT:
        source = default_profile()
    else:
        try:
            source = json.loads(profile)
        except json.JSONDecodeError as exc:
            raise errdefs.InvalidArgument(f"decoding seccomp profile failed: {exc}")
        if not isinstance(source, dict):
            raise errdefs.InvalidArgument("decoding seccomp profile failed: not an object")
    return linux_seccomp(source, capabilities=capabilities)


def linux_seccomp(
    profile: dict,
    *,
    capabilities: Sequence[str],
    machine: str | None = None,
    kernel: str | None = None,
) -> dict | None:
    """The OCI ``linux.seccomp`` object for ``profile`` (moby's setupSeccomp).

    ``capabilities`` is the container's bounding set; ``machine`` and ``kernel``
    default to this host's. None when the profile has neither a default action
    nor rules (moby treats that as seccomp disabled).
    """
    if not profile.get("defaultAction") and not profile.get("syscalls"):
        return None
    if profile.get("architectures") and profile.get("archMap"):
        raise errdefs.InvalidArgument(
            "'architectures' and 'archMap' were specified in the seccomp profile, "
            "use either 'architectures' or 'archMap'"
        )
    native, oci_arch = _MACHINES.get(machine or host_machine(), ("", ""))
    current = _version(kernel or host_kernel())
    out: dict = {"defaultAction": profile.get("defaultAction") or "SCMP_ACT_ALLOW"}
    if profile.get("defaultErrnoRet") is not None:
        out["defaultErrnoRet"] = profile["defaultErrnoRet"]
    out["architectures"] = list(profile.get("architectures") or _arch_map(profile, oci_arch))
    if profile.get("flags"):
        out["flags"] = list(profile["flags"])
    caps = set(capabilities)
    out["syscalls"] = [
        _syscall(rule)
        for rule in profile.get("syscalls") or []
        if _applies(rule, native=native, caps=caps, kernel=current)
    ]
    return out


def _arch_map(profile: dict, oci_arch: str) -> list[str]:
    for entry in profile.get("archMap") or []:
        if entry.get("architecture") == oci_arch:
            return [oci_arch, *(entry.get("subArchitectures") or [])]
    return []


def _applies(rule: dict, *, native: str, caps: set[str], kernel: tuple[int, ...]) -> bool:
    excludes = rule.get("excludes") or {}
    includes = rule.get("includes") or {}
    if native in (excludes.get("arches") or []):
        return False
    if any(c in caps for c in excludes.get("caps") or []):
        return False
    if excludes.get("minKernel") and kernel >= _version(excludes["minKernel"]):
        return False
    if includes.get("arches") and native not in includes["arches"]:
        return False
    if not all(c in caps for c in includes.get("caps") or []):
        return False
    return not (includes.get("minKernel") and kernel < _version(includes["minKernel"]))


def _syscall(rule: dict) -> dict:
    if rule.get("name") and rule.get("names"):
        raise errdefs.InvalidArgument(
            "'name' and 'names' were specified in the seccomp profile, use either 'name' or 'names'"
        )
    names = [rule["name"]] if rule.get("name") else list(rule.get("names") or [])
    out: dict = {"names": names, "action": rule.get("action") or ""}
    if rule.get("errnoRet") is not None:
        out["errnoRet"] = rule["errnoRet"]
    args = [_arg(a) for a in rule.get("args") or []]
    if args:
        out["args"] = args
    return out


def _arg(arg: dict) -> dict:
    out = {"index": arg.get("index", 0), "value": arg.get("value", 0), "op": arg.get("op", "")}
    if arg.get("valueTwo"):
        out["valueTwo"] = arg["valueTwo"]
    return out


def _version(release: str) -> tuple[int, ...]:
    """(major, minor, patch) of a kernel release such as "6.1.0-18-amd64" or "4.8"."""
    match = re.match(r"(\d+)\.(\d+)(?:\.(\d+))?", release)
    if match is None:
        raise errdefs.InvalidArgument(f"invalid kernel version {release!r}")
    return tuple(int(part or 0) for part in match.groups())
