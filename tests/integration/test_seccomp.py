"""Seccomp in the builtin runtime: Docker's default profile on a real kernel (root)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

from dockyard import errdefs
from dockyard.runtime import cgroups, spec
from dockyard.runtime.builtin import BuiltinRuntime
from dockyard.sys import prctl

sys.path.insert(0, str(Path(__file__).parent))
from runtime_helpers import busybox_rootfs, run_to_exit

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")

EXTRA_APPLETS = ("unshare", "wget", "mkdir", "linux32")


@pytest.fixture(scope="module", autouse=True)
def subreaper():
    prctl.set_child_subreaper(True)
    yield
    prctl.set_child_subreaper(False)


@dataclass
class Env:
    tmp: Path
    rootfs: Path
    runtime: BuiltinRuntime
    parent: str

    def run(self, args: list[str], *, edit=None, **kw) -> tuple[int, str]:
        """Create, start and delete one container; its exit code and output."""
        cid = f"s{uuid.uuid4().hex[:8]}"
        options = spec.SpecOptions(
            rootfs=str(self.rootfs), args=args, env=[], cgroups_path=f"{self.parent}/{cid}", **kw
        )
        config = spec.generate(options)
        if edit is not None:
            edit(config)
        bundle = self.tmp / f"bundle-{cid}"
        bundle.mkdir()
        (bundle / "config.json").write_text(json.dumps(config))
        return run_to_exit(self.runtime, cid, bundle, self.tmp)


@pytest.fixture
def env(tmp_path: Path):
    rootfs = busybox_rootfs(tmp_path / "rootfs")
    for applet in EXTRA_APPLETS:
        os.symlink("busybox", rootfs / "bin" / applet)
    e = Env(
        tmp=tmp_path,
        rootfs=rootfs,
        runtime=BuiltinRuntime(tmp_path / "state"),
        parent=f"/dockyard-test-{uuid.uuid4().hex[:8]}",
    )
    yield e
    for state in e.runtime.list():
        e.runtime.delete(state["id"], force=True)
    for h in cgroups.hierarchies():
        path = os.path.join(h.mountpoint, e.parent.lstrip("/"))
        if os.path.isdir(path):
            os.rmdir(path)
    mounts = subprocess.run(["findmnt", "-rn", "-o", "TARGET"], capture_output=True, text=True)
    assert str(tmp_path) not in mounts.stdout


STATUS = "grep -E '^(Seccomp|Seccomp_filters|NoNewPrivs):' /proc/self/status"


def _status(out: str) -> dict[str, str]:
    return dict(line.split(":\t") for line in out.splitlines() if ":\t" in line)


def test_default_profile_is_installed(env: Env) -> None:
    code, out = env.run(["sh", "-c", STATUS])
    assert code == 0
    assert _status(out) == {"Seccomp": "2", "Seccomp_filters": "1", "NoNewPrivs": "1"}


def test_unconfined_has_no_filter(env: Env) -> None:
    code, out = env.run(["sh", "-c", STATUS], seccomp_profile="unconfined")
    assert code == 0
    assert _status(out)["Seccomp"] == "0"


def test_without_no_new_privs_the_filter_is_loaded_while_privileged(env: Env) -> None:
    # runc's other path: loading needs CAP_SYS_ADMIN then, so it precedes the cap drop.
    def no_nnp(config: dict) -> None:
        config["process"]["noNewPrivileges"] = False

    code, out = env.run(["sh", "-c", STATUS], edit=no_nnp)
    assert code == 0
    assert _status(out) == {"Seccomp": "2", "Seccomp_filters": "1", "NoNewPrivs": "0"}


def test_user_namespaces_are_blocked_by_the_filter_not_by_capabilities(env: Env) -> None:
    # unshare(CLONE_NEWUSER) needs no capability: only the profile forbids it,
    # and allows it again when CAP_SYS_ADMIN is in the bounding set.
    script = "unshare -U true && echo allowed"
    code, out = env.run(["sh", "-c", script])
    assert code != 0
    assert "Operation not permitted" in out
    assert env.run(["sh", "-c", script], seccomp_profile="unconfined") == (0, "allowed\n")
    assert env.run(["sh", "-c", script], cap_add=("CAP_SYS_ADMIN",)) == (0, "allowed\n")


def test_custom_profile_errno(env: Env) -> None:
    profile = {
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 18}],
    }
    code, out = env.run(["mkdir", "/tmp/x"], seccomp_profile=json.dumps(profile))
    assert code == 1
    assert "Invalid cross-device link" in out  # EXDEV: the filter's answer, nobody else's


def test_ordinary_commands_still_work(env: Env) -> None:
    script = (
        "echo hello; cat /etc/group | wc -l; id; ls / | grep -c etc; sleep 0.01;"
        "mkdir /tmp/d && touch /tmp/d/f && ls /tmp/d; ps >/dev/null && echo ps;"
        "linux32 true; (sleep 0 &) ; wait; wget --help 2>&1 | grep -c Usage; echo done"
    )
    code, out = env.run(["sh", "-c", script])
    assert code == 0
    assert out.splitlines() == [
        "hello",
        "3",
        "uid=0(root) gid=0(root) groups=0(root),10(wheel)",
        "1",
        "f",
        "ps",
        "1",
        "done",
    ]


def test_invalid_profile_fails_create_and_leaves_nothing(env: Env) -> None:
    def bad(config: dict) -> None:
        config["linux"]["seccomp"] = {"defaultAction": "SCMP_ACT_SOMETIMES"}

    with pytest.raises(errdefs.InvalidArgument, match="SCMP_ACT_SOMETIMES"):
        env.run(["true"], edit=bad)
    assert env.runtime.list() == []


def test_compiled_filter_is_cached_and_a_bad_cache_is_recompiled(env: Env) -> None:
    assert env.run(["sh", "-c", STATUS])[0] == 0
    (cached,) = (env.runtime.root / ".seccomp").iterdir()
    assert cached.suffix == ".bpf" and len(cached.read_bytes()) % 8 == 0
    cached.write_bytes(b"garbage")  # not a multiple of 8: recompiled, not loaded
    code, out = env.run(["sh", "-c", STATUS])
    assert (code, _status(out)["Seccomp"]) == (0, "2")
    assert len(cached.read_bytes()) % 8 == 0
