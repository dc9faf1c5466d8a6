"""runtime/seccomp_profile.py (Docker profile → OCI) and sys/seccomp.py (libseccomp)."""

from __future__ import annotations

import errno
import json
import os
import time
from pathlib import Path

import pytest

from dockyard import errdefs
from dockyard.runtime import seccomp_profile, spec
from dockyard.runtime.seccomp_profile import default_profile, for_container, linux_seccomp
from dockyard.sys import prctl, seccomp

X86 = ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]
DEFAULT_CAPS = list(spec.DEFAULT_CAPABILITIES)


def convert(caps=DEFAULT_CAPS, machine="x86_64", kernel="6.1.0-18-amd64") -> dict:
    result = linux_seccomp(default_profile(), capabilities=caps, machine=machine, kernel=kernel)
    assert result is not None
    return result


def allowed(result: dict, name: str) -> list[dict]:
    """The rules that allow ``name`` (unconditionally or with args)."""
    return [r for r in result["syscalls"] if name in r["names"] and r["action"] == "SCMP_ACT_ALLOW"]


def test_default_profile_for_default_caps_on_x86_64() -> None:
    result = convert()
    assert result["defaultAction"] == "SCMP_ACT_ERRNO"
    assert result["defaultErrnoRet"] == 1
    assert result["architectures"] == X86
    for name in ("read", "execve", "arch_prctl", "chroot", "ptrace", "setuid"):
        assert allowed(result, name), name
    for name in ("mount", "unshare", "setns", "umount2", "reboot", "clock_settime", "bpf"):
        assert not allowed(result, name), name
    # The profile's structure is gone: no includes/excludes, no comments.
    assert all(set(r) <= {"names", "action", "errnoRet", "args"} for r in result["syscalls"])


def test_clone_is_restricted_without_cap_sys_admin() -> None:
    result = convert()
    (clone,) = allowed(result, "clone")
    assert clone["args"] == [{"index": 0, "value": 2114060288, "op": "SCMP_CMP_MASKED_EQ"}]
    clone3 = [r for r in result["syscalls"] if r["names"] == ["clone3"]]
    assert clone3 == [{"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38}]


def test_cap_sys_admin_opens_mount_unshare_and_clone() -> None:
    result = convert([*DEFAULT_CAPS, "CAP_SYS_ADMIN"])
    for name in ("mount", "unshare", "setns", "umount2", "clone3"):
        assert allowed(result, name), name
    assert [r.get("args") for r in allowed(result, "clone")] == [None]
    assert not [r for r in result["syscalls"] if r["action"] == "SCMP_ACT_ERRNO"]


def test_capability_includes_each_open_their_syscalls() -> None:
    assert not allowed(convert(), "clock_settime")
    assert allowed(convert([*DEFAULT_CAPS, "CAP_SYS_TIME"]), "clock_settime")
    assert allowed(convert([*DEFAULT_CAPS, "CAP_SYS_BOOT"]), "reboot")
    assert not allowed(convert([c for c in DEFAULT_CAPS if c != "CAP_SYS_CHROOT"]), "chroot")


def test_min_kernel() -> None:
    assert allowed(convert(kernel="4.8.0"), "ptrace")
    assert not allowed(convert(kernel="4.4.0-210-generic"), "ptrace")


def test_architectures_follow_the_host() -> None:
    arm = convert(machine="aarch64")
    assert arm["architectures"] == ["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"]
    assert not allowed(arm, "arch_prctl")
    assert allowed(arm, "set_tls")
    assert not allowed(convert(), "set_tls")
    assert convert(machine="riscv64")["architectures"] == ["SCMP_ARCH_RISCV64"]
    assert convert(machine="vax")["architectures"] == []


def test_for_container_choices() -> None:
    assert for_container("unconfined", capabilities=DEFAULT_CAPS) is None
    assert for_container(None, capabilities=DEFAULT_CAPS) is None
    assert for_container("default", capabilities=DEFAULT_CAPS, privileged=True) is None
    default = for_container("default", capabilities=DEFAULT_CAPS)
    assert default is not None and default["defaultAction"] == "SCMP_ACT_ERRNO"
    custom = json.dumps(
        {
            "defaultAction": "SCMP_ACT_ALLOW",
            "architectures": ["SCMP_ARCH_X86_64"],
            "syscalls": [{"name": "mkdir", "action": "SCMP_ACT_ERRNO", "errnoRet": 13}],
        }
    )
    assert for_container(custom, capabilities=[]) == {
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64"],
        "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13}],
    }
    assert for_container("{}", capabilities=[]) is None


@pytest.mark.parametrize(
    "profile",
    [
        "{not json",
        "[]",
        '{"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["x"], "archMap": [{}]}',
        '{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"name": "a", "names": ["b"]}]}',
    ],
)
def test_invalid_profiles(profile: str) -> None:
    with pytest.raises(errdefs.InvalidArgument):
        for_container(profile, capabilities=[])


def test_spec_carries_the_filter(tmp_path: Path) -> None:
    def generate(**kw) -> dict:
        return spec.generate(spec.SpecOptions(rootfs=str(tmp_path), args=["sh"], env=[], **kw))

    linux = generate()["linux"]
    assert linux["seccomp"]["defaultAction"] == "SCMP_ACT_ERRNO"
    assert not allowed(linux["seccomp"], "mount")
    assert allowed(generate(cap_add=("SYS_ADMIN",))["linux"]["seccomp"], "mount")
    assert "seccomp" not in generate(seccomp_profile="unconfined")["linux"]
    assert "seccomp" not in generate(privileged=True)["linux"]


def test_default_file_is_dockers() -> None:
    shipped = Path(seccomp_profile.__file__).with_name("seccomp_default.json")
    assert json.loads(shipped.read_text())["defaultAction"] == "SCMP_ACT_ERRNO"


# -- sys/seccomp.py -------------------------------------------------------------


def test_actions_and_names() -> None:
    assert seccomp.action("SCMP_ACT_ERRNO", 38) == 0x00050000 | 38
    assert seccomp.action("SCMP_ACT_ERRNO") == 0x00050001
    assert seccomp.action("SCMP_ACT_ALLOW") == 0x7FFF0000
    assert seccomp.action("SCMP_ACT_KILL_PROCESS") == 0x80000000
    with pytest.raises(errdefs.InvalidArgument):
        seccomp.action("SCMP_ACT_MAYBE")
    assert seccomp.resolve_syscall("no_such_syscall") is None
    if os.uname().machine == "x86_64":
        assert seccomp.resolve_syscall("read") == 0
        assert seccomp.native_arch() == seccomp.arch_token("SCMP_ARCH_X86_64")
    with pytest.raises(errdefs.InvalidArgument):
        seccomp.arch_token("SCMP_ARCH_VAX")


def test_compiling_dockers_profile_is_fast() -> None:
    oci = convert(machine=os.uname().machine)
    seccomp.compile_filter(oci)  # warm up the library
    start = time.perf_counter()
    program = seccomp.compile_filter(oci)
    elapsed = time.perf_counter() - start
    assert len(program.bpf) % 8 == 0 and 0 < len(program.bpf) // 8 <= 4096
    assert program.flags == 0
    assert elapsed < 0.05, f"compiling took {elapsed * 1000:.1f} ms"


def test_bad_rules_are_refused() -> None:
    base = {"defaultAction": "SCMP_ACT_ALLOW"}
    bad_op = {"names": ["read"], "action": "SCMP_ACT_ERRNO", "args": [{"index": 0, "op": "X"}]}
    bad_index = {"names": ["read"], "action": "SCMP_ACT_ERRNO", "args": [{"index": 6, "op": "X"}]}
    for rule in (bad_op, bad_index):
        with pytest.raises(errdefs.InvalidArgument):
            seccomp.compile_filter({**base, "syscalls": [rule]})
    with pytest.raises(errdefs.InvalidArgument):
        seccomp.compile_filter({**base, "flags": ["SECCOMP_FILTER_FLAG_NOPE"]})


def _in_child(profile: dict, probe) -> int:
    """Install ``profile`` in a forked child (no_new_privs: no root needed), run
    ``probe`` there and return its exit code (the errno it saw, or 0)."""
    program = seccomp.compile_filter(profile)
    pid = os.fork()
    if pid == 0:
        code = 100
        try:
            prctl.set_no_new_privs()
            seccomp.install(program)
            probe()
            code = 0
        except OSError as exc:
            code = exc.errno or 101
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def test_installed_filter_returns_the_rule_errno(tmp_path: Path) -> None:
    profile = {
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [
            {"names": ["mkdir", "mkdirat", "no_such_syscall"], "action": "SCMP_ACT_ERRNO"},
            {
                "names": ["getpriority"],
                "action": "SCMP_ACT_ERRNO",
                "errnoRet": errno.ENOTSUP,
                # two conditions on one argument: one rule each (OR), as runc does
                "args": [
                    {"index": 0, "value": 0, "op": "SCMP_CMP_EQ"},
                    {"index": 0, "value": 2, "op": "SCMP_CMP_EQ"},
                ],
            },
        ],
    }
    target = tmp_path / "d"
    assert _in_child(profile, lambda: os.mkdir(target)) == errno.EPERM
    assert not target.exists()
    assert _in_child(profile, lambda: os.getpriority(os.PRIO_PROCESS, 0)) == errno.ENOTSUP
    assert _in_child(profile, lambda: os.getpriority(os.PRIO_USER, 0)) == errno.ENOTSUP
    assert _in_child(profile, lambda: os.getpriority(os.PRIO_PGRP, 0)) == 0
    assert _in_child(profile, lambda: os.rmdir(tmp_path / "missing")) == errno.ENOENT


def test_masked_eq_follows_oci_value_order() -> None:
    # OCI: value is the mask, valueTwo what the masked argument must equal.
    profile = {
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [
            {
                "names": ["getpriority"],
                "action": "SCMP_ACT_ERRNO",
                "errnoRet": errno.EDOM,
                "args": [{"index": 0, "value": 2, "valueTwo": 2, "op": "SCMP_CMP_MASKED_EQ"}],
            }
        ],
    }
    assert _in_child(profile, lambda: os.getpriority(os.PRIO_USER, 0)) == errno.EDOM  # 2
    assert _in_child(profile, lambda: os.getpriority(os.PRIO_PROCESS, 0)) == 0  # 0


def test_load_filter_via_libseccomp() -> None:
    profile = {
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["getcwd"], "action": "SCMP_ACT_ERRNO", "errnoRet": errno.EXDEV}],
    }
    pid = os.fork()
    if pid == 0:
        code = 100
        try:
            prctl.set_no_new_privs()
            seccomp.load_filter(profile)
            os.getcwd()
            code = 0
        except OSError as exc:
            code = exc.errno or 101
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == errno.EXDEV
