"""runtime/spec.py: the generated config.json and user resolution."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from dockyard import errdefs
from dockyard.runtime import spec
from dockyard.runtime.spec import SpecOptions, generate, resolve_user

DEFAULT_MASK = 0xA80425FB


@pytest.fixture
def rootfs(tmp_path: Path) -> Path:
    etc = tmp_path / "rootfs" / "etc"
    etc.mkdir(parents=True)
    (etc / "passwd").write_text(
        "root:x:0:0:root:/root:/bin/sh\n"
        "# a comment\n"
        "daemon:x:1:1::/:/bin/false\n"
        "app:x:1000:1000::/home/app:/bin/sh\n"
        "nobody:x:65534:65534::/:/bin/false\n"
    )
    (etc / "group").write_text(
        "root:x:0:\nwheel:x:10:root,app\napp:x:1000:\naudio:x:29:app\nnogroup:x:65534:\n"
    )
    return tmp_path / "rootfs"


def options(rootfs: Path, **kw) -> SpecOptions:
    return SpecOptions(rootfs=str(rootfs), args=["sh"], env=kw.pop("env", []), **kw)


def test_namespaces_and_netns_path(rootfs: Path) -> None:
    ns = generate(options(rootfs))["linux"]["namespaces"]
    assert {n["type"] for n in ns} == {"pid", "ipc", "uts", "mount", "network", "cgroup"}
    assert all("path" not in n for n in ns)
    ns = generate(options(rootfs, netns_path="/run/netns/x"))["linux"]["namespaces"]
    assert {"type": "network", "path": "/run/netns/x"} in ns


def test_default_capabilities(rootfs: Path) -> None:
    caps = generate(options(rootfs))["process"]["capabilities"]
    assert set(caps) == {"bounding", "effective", "permitted"}
    mask = sum(1 << spec.ALL_CAPABILITIES.index(c) for c in caps["bounding"])
    assert mask == DEFAULT_MASK
    assert caps["effective"] == caps["permitted"] == caps["bounding"]


def test_cap_add_drop_and_privileged(rootfs: Path) -> None:
    caps = generate(options(rootfs, cap_add=("NET_ADMIN",), cap_drop=("chown", "CAP_KILL")))
    bounding = caps["process"]["capabilities"]["bounding"]
    assert "CAP_NET_ADMIN" in bounding
    assert "CAP_CHOWN" not in bounding and "CAP_KILL" not in bounding
    assert spec.capabilities((), ("ALL",), privileged=False) == []
    assert spec.capabilities(("ALL",), (), privileged=False) == list(spec.ALL_CAPABILITIES)
    with pytest.raises(errdefs.InvalidArgument):
        spec.capabilities(("BOGUS",), (), privileged=False)
    priv = generate(options(rootfs, privileged=True))
    assert "maskedPaths" not in priv["linux"]
    assert len(priv["process"]["capabilities"]["bounding"]) == len(spec.ALL_CAPABILITIES)
    assert priv["linux"]["resources"]["devices"] == [{"allow": True, "access": "rwm"}]


def test_mounts(rootfs: Path) -> None:
    config = generate(options(rootfs, shm_size=1 << 20, binds=(("/h/hosts", "/etc/hosts", False),)))
    mounts = {m["destination"]: m for m in config["mounts"]}
    assert list(mounts)[:7] == [
        "/proc",
        "/dev",
        "/dev/pts",
        "/sys",
        "/sys/fs/cgroup",
        "/dev/mqueue",
        "/dev/shm",
    ]
    assert "size=65536k" in mounts["/dev"]["options"]
    assert "newinstance" in mounts["/dev/pts"]["options"]
    assert "ro" in mounts["/sys"]["options"]
    assert "size=1048576" in mounts["/dev/shm"]["options"]
    assert mounts["/etc/hosts"] == {
        "destination": "/etc/hosts",
        "type": "bind",
        "source": "/h/hosts",
        "options": ["rbind", "rprivate", "rw"],
    }


def test_paths_devices_and_process(rootfs: Path) -> None:
    config = generate(
        options(rootfs, hostname="box", tty=True, readonly_rootfs=True, cgroups_path="/d/x")
    )
    linux = config["linux"]
    assert "/proc/kcore" in linux["maskedPaths"]
    assert "/proc/sys" in linux["readonlyPaths"]
    assert linux["resources"]["devices"][0] == {"allow": False, "access": "rwm"}
    assert linux["cgroupsPath"] == "/d/x"
    assert config["root"] == {"path": str(rootfs), "readonly": True}
    assert config["hostname"] == "box"
    process = config["process"]
    assert process["env"] == ["PATH=" + spec.DEFAULT_PATH, "HOSTNAME=box", "TERM=xterm"]
    assert process["noNewPrivileges"] is True
    assert process["terminal"] is True
    assert process["rlimits"][0]["type"] == "RLIMIT_NOFILE"


def test_env_path_kept(rootfs: Path) -> None:
    env = generate(options(rootfs, env=["PATH=/x", "A=b"]))["process"]["env"]
    assert env == ["PATH=/x", "A=b"]


@pytest.mark.parametrize(
    ("user", "expected"),
    [
        ("", (0, 0, [0, 10])),
        ("root", (0, 0, [0, 10])),
        ("app", (1000, 1000, [1000, 10, 29])),
        ("1000", (1000, 1000, [1000, 10, 29])),
        ("4242", (4242, 0, [0])),
        ("app:audio", (1000, 29, [29])),
        ("app:77", (1000, 77, [77])),
        ("nobody", (65534, 65534, [65534])),
        ("0:0", (0, 0, [0])),
    ],
)
def test_resolve_user(rootfs: Path, user: str, expected: tuple) -> None:
    assert resolve_user(rootfs, user) == expected


def test_resolve_user_unknown(rootfs: Path) -> None:
    with pytest.raises(errdefs.InvalidArgument) as exc:
        resolve_user(rootfs, "ghost")
    assert exc.value.message == "unable to find user ghost: no matching entries in passwd file"
    with pytest.raises(errdefs.InvalidArgument, match="unable to find group nope"):
        resolve_user(rootfs, "app:nope")


def test_resolve_user_without_passwd(tmp_path: Path) -> None:
    assert resolve_user(tmp_path, "") == (0, 0, [0])
    assert resolve_user(tmp_path, "12:34") == (12, 34, [34])
    with pytest.raises(errdefs.InvalidArgument):
        resolve_user(tmp_path, "app")


@pytest.mark.parametrize("target", ["ABS", "../../../../../../ABS"])
def test_resolve_user_symlink_stays_inside_root(tmp_path: Path, target: str) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "passwd").write_text("evil:x:4444:4444::/:/bin/sh\n")
    root = tmp_path / "rootfs"
    (root / "etc").mkdir(parents=True)
    os.symlink(target.replace("ABS", str(outside / "passwd")), root / "etc" / "passwd")
    with pytest.raises(errdefs.InvalidArgument):
        resolve_user(root, "evil")
    # A link that resolves inside the root is followed there.
    (root / str(outside).lstrip("/")).mkdir(parents=True)
    (root / str(outside).lstrip("/") / "passwd").write_text("good:x:7:7::/:/bin/sh\n")
    assert resolve_user(root, "good") == (7, 7, [7])


def test_resolve_user_ignores_non_regular_files(tmp_path: Path) -> None:
    root = tmp_path / "rootfs"
    (root / "etc" / "passwd").mkdir(parents=True)
    assert resolve_user(root, "") == (0, 0, [0])
