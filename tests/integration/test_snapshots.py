"""Conformance suite run against every snapshotter (needs root to mount)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from dockyard import errdefs
from dockyard.store.snapshots import (
    OverlaySnapshotter,
    Snapshotter,
    choose_snapshotter,
    mount_all,
    unmount,
)

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")


@pytest.fixture
def target(tmp_path: Path):
    path = tmp_path / "mnt"
    path.mkdir()
    yield path
    unmount(path)


def _layer(sn: Snapshotter, name: str, parent: str | None, files: dict[str, str]) -> None:
    sn.prepare(f"extract-{name}", parent)
    upper = sn.upper_dir(f"extract-{name}")
    for rel, content in files.items():
        (upper / rel).parent.mkdir(parents=True, exist_ok=True)
        (upper / rel).write_text(content)
    sn.commit(name, f"extract-{name}")


def test_prepare_commit_mount_stack(sn: Snapshotter, target: Path) -> None:
    _layer(sn, "l1", None, {"a": "1", "b": "1"})
    _layer(sn, "l2", "l1", {"b": "2", "c/d": "2"})
    mounts = sn.prepare("ctr", "l2")
    mount_all(mounts, target)
    assert (target / "a").read_text() == "1"
    assert (target / "b").read_text() == "2"
    assert (target / "c" / "d").read_text() == "2"
    (target / "new").write_text("x")
    unmount(target)
    assert (sn.upper_dir("ctr") / "new").read_text() == "x"
    # the committed layers are untouched by the container
    assert not (sn.upper_dir("l2") / "new").exists()
    assert sn.parent("ctr") == "l2" and sn.parent("l2") == "l1" and sn.parent("l1") is None


def test_view_is_read_only(sn: Snapshotter, target: Path) -> None:
    _layer(sn, "l1", None, {"a": "1"})
    mount_all(sn.view("v", "l1"), target)
    assert (target / "a").read_text() == "1"
    with pytest.raises(OSError):
        (target / "b").write_text("no")


def test_single_layer_without_parent_is_writable(sn: Snapshotter, target: Path) -> None:
    mount_all(sn.prepare("scratch"), target)
    (target / "f").write_text("x")
    unmount(target)
    assert (sn.upper_dir("scratch") / "f").read_text() == "x"


def test_remove_refuses_with_children(sn: Snapshotter) -> None:
    _layer(sn, "l1", None, {"a": "1"})
    sn.prepare("ctr", "l1")
    with pytest.raises(errdefs.FailedPrecondition):
        sn.remove("l1")
    upper = sn.upper_dir("ctr")
    sn.remove("ctr")
    assert not upper.exists() and not sn.exists("ctr")
    sn.remove("l1")
    assert sn.keys() == []
    assert sn.orphans() == []


def test_errors(sn: Snapshotter) -> None:
    _layer(sn, "l1", None, {"a": "1"})
    with pytest.raises(errdefs.Conflict):
        sn.prepare("l1")
    with pytest.raises(errdefs.NotFound):
        sn.prepare("x", "missing")
    sn.prepare("active")
    with pytest.raises(errdefs.FailedPrecondition):
        sn.prepare("y", "active")
    with pytest.raises(errdefs.FailedPrecondition):
        sn.commit("z", "l1")
    with pytest.raises(errdefs.NotFound):
        sn.remove("missing")


def test_usage_and_reload(sn: Snapshotter, tmp_path: Path) -> None:
    _layer(sn, "l1", None, {"a": "12345"})
    assert sn.usage("l1") >= 5
    again = type(sn)(tmp_path / "snapshots")
    assert again.exists("l1") and again.kind("l1") == "committed"
    assert type(choose_snapshotter(tmp_path / "snapshots")) is type(sn)


def test_choose_snapshotter_picks_overlay_here(tmp_path: Path) -> None:
    assert isinstance(choose_snapshotter(tmp_path / "s"), OverlaySnapshotter)
    assert [p.name for p in (tmp_path / "s").iterdir()] == ["snapshots"]


def test_view_of_a_layer_stack(sn: Snapshotter, target: Path) -> None:
    _layer(sn, "l1", None, {"a": "1", "b": "1"})
    _layer(sn, "l2", "l1", {"b": "2"})
    mount_all(sn.view("v", "l2"), target)
    assert (target / "a").read_text() == "1"
    assert (target / "b").read_text() == "2"
    with pytest.raises(OSError):
        (target / "c").write_text("no")
