"""Save and load through real image services on temporary roots: the
archive's layout, round trips, shared layers, tags, and bad archives that
must leave nothing stored."""

from __future__ import annotations

import gzip
import io
import json
import os
import tarfile
from pathlib import Path

import pytest

from dockyard import errdefs
from dockyard.image import config as imgconfig
from dockyard.image import reference
from dockyard.image.archive import (
    ArchiveLoad,
    LoadProgress,
    check_saveable,
    load_archive,
    resolve_names,
    write_archive,
)
from dockyard.image.service import ImageService
from dockyard.store.content import ContentStore
from dockyard.store.metadata import Database
from dockyard.store.snapshots import CopySnapshotter
from tests.unit.test_image_archive import layer_tar, make_archive, sha

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (layer ownership)")

BASE = layer_tar({"etc/base": b"base"})
TOP = layer_tar({"app/run": b"top"})


def new_service(root: Path) -> ImageService:
    return ImageService(
        db=Database(root / "metadata.db"),
        content=ContentStore(root / "content"),
        snapshotter=CopySnapshotter(root / "snapshots"),
    )


@pytest.fixture
def source(tmp_path: Path) -> tuple[ImageService, str, str]:
    """Two images sharing a base layer stored gzip-compressed (as pulled)."""
    svc = new_service(tmp_path / "src")
    base = svc.add_layer(io.BytesIO(gzip.compress(BASE)), parent_chain=None)
    top = svc.add_layer(io.BytesIO(TOP), parent_chain=base.chain_id)
    one = imgconfig.new_image_config(diff_ids=[base.diff_id], container_config={}, comment="")
    two = imgconfig.new_image_config(
        diff_ids=[base.diff_id, top.diff_id], container_config={"Cmd": ["run"]}, comment=""
    )
    id1 = svc.create_image(imgconfig.encode(one), [base], reference=reference.parse("one:1"))
    id2 = svc.create_image(imgconfig.encode(two), [base, top], reference=reference.parse("two"))
    svc.tag(id2, "two", "extra")
    return svc, id1, id2


def save(svc: ImageService, names: list[str]) -> bytes:
    out = io.BytesIO()
    write_archive(svc, resolve_names(svc, names), out)
    return out.getvalue()


def load(svc: ImageService, data: bytes, spool: Path, quiet: bool = False) -> list[dict]:
    messages: list[dict] = []
    load_archive(svc, io.BytesIO(data), spool_root=spool, emit=messages.append, quiet=quiet)
    return messages


def streams(messages: list[dict]) -> str:
    return "".join(m.get("stream", "") for m in messages)


def test_save_layout(source) -> None:
    svc, id1, _ = source
    data = save(svc, ["one:1", "two"])
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        names = tar.getnames()
        manifest = json.loads(tar.extractfile("manifest.json").read())  # type: ignore[union-attr]
        index = json.loads(tar.extractfile("index.json").read())  # type: ignore[union-attr]
        repositories = json.loads(tar.extractfile("repositories").read())  # type: ignore[union-attr]
        layout = tar.extractfile("oci-layout").read()  # type: ignore[union-attr]
        # layers are plain tars named by their diff ID, the shared one once
        assert tar.extractfile("blobs/sha256/" + sha(BASE)[7:]).read() == BASE  # type: ignore[union-attr]
    assert names.count("blobs/sha256/" + sha(BASE)[7:]) == 1
    assert json.loads(layout) == {"imageLayoutVersion": "1.0.0"}
    assert manifest[0] == {
        "Config": "blobs/sha256/" + id1[7:],
        "RepoTags": ["one:1"],
        "Layers": ["blobs/sha256/" + sha(BASE)[7:]],
    }
    assert sorted(manifest[1]["RepoTags"]) == ["two:extra", "two:latest"]
    names_in_index = sorted(
        m["annotations"]["io.containerd.image.name"] for m in index["manifests"]
    )
    assert names_in_index == [
        "docker.io/library/one:1",
        "docker.io/library/two:extra",
        "docker.io/library/two:latest",
    ]
    assert {m["annotations"]["org.opencontainers.image.ref.name"] for m in index["manifests"]} == {
        "1",
        "extra",
        "latest",
    }
    assert repositories["two"]["latest"] == sha(TOP)[7:]


def test_save_by_id_has_no_tags(source) -> None:
    svc, _, id2 = source
    data = save(svc, [id2[7:19]])
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        manifest = json.loads(tar.extractfile("manifest.json").read())  # type: ignore[union-attr]
        index = json.loads(tar.extractfile("index.json").read())  # type: ignore[union-attr]
        assert "repositories" not in tar.getnames()
    assert manifest[0]["RepoTags"] is None
    assert "annotations" not in index["manifests"][0]


def test_save_unknown_names(source) -> None:
    svc, _, _ = source
    with pytest.raises(errdefs.NotFound, match="reference does not exist"):
        resolve_names(svc, ["one:2"])
    with pytest.raises(errdefs.NotFound, match="No such image: nothing"):
        resolve_names(svc, ["nothing"])


def test_round_trip(source, tmp_path: Path) -> None:
    svc, id1, id2 = source
    data = save(svc, ["one:1", "two:latest"])
    dest = new_service(tmp_path / "dest")
    messages = load(dest, data, tmp_path / "spool")
    assert streams(messages) == "Loaded image: one:1\nLoaded image: two:latest\n"
    assert [m["id"] for m in messages if m.get("status") == "Loading layer"] == [
        sha(BASE)[7:19],
        sha(BASE)[7:19],
        sha(TOP)[7:19],
        sha(TOP)[7:19],
    ]
    assert dest.resolve("two") == id2 and dest.resolve("one:1") == id1
    assert [layer.diff_id for layer in dest.image_layers(id2)] == [sha(BASE), sha(TOP)]
    assert dest.config_bytes(id2) == svc.config_bytes(id2)
    assert not any((tmp_path / "spool").iterdir())
    # again: nothing to unpack, and the tags already point there
    messages = load(dest, data, tmp_path / "spool")
    assert not [m for m in messages if m.get("status")]
    assert streams(messages) == "Loaded image: one:1\nLoaded image: two:latest\n"


def test_load_renames_an_existing_tag(source, tmp_path: Path) -> None:
    svc, id1, id2 = source
    svc.tag(id1, "moved", "1")
    data = save(svc, ["moved:1"])
    svc.tag(id2, "moved", "1")
    messages = load(svc, data, tmp_path / "spool", quiet=True)
    assert streams(messages) == (
        f"The image moved:1 already exists, renaming the old one with ID {id2} to empty string\n"
        "Loaded image: moved:1\n"
    )
    assert svc.resolve("moved:1") == id1


def test_load_untagged_prints_ids(source, tmp_path: Path) -> None:
    svc, _, id2 = source
    dest = new_service(tmp_path / "dest")
    messages = load(dest, save(svc, [id2]), tmp_path / "spool", quiet=True)
    assert streams(messages) == f"Loaded image ID: {id2}\n"


def test_layer_without_blob_cannot_be_saved(source) -> None:
    svc, id1, _ = source
    with svc.db.tx() as cur:
        cur.execute("UPDATE layers SET blob=NULL WHERE diff_id=?", (sha(BASE),))
    with pytest.raises(errdefs.NotImplemented):
        check_saveable(svc, resolve_names(svc, [id1]))
    with pytest.raises(errdefs.NotImplemented):
        save(svc, [id1])


def _stored(svc: ImageService, root: Path) -> tuple[list, list, list]:
    snapshots = sorted(p.name for p in (root / "snapshots").rglob("*") if p.is_dir())
    return svc.list(all=True), list(svc.content.walk()), snapshots


def test_bad_layer_content_stores_nothing(tmp_path: Path) -> None:
    """A second layer that does not match the config: the first, good one
    must not be stored either."""
    dest = new_service(tmp_path / "dest")
    before = _stored(dest, tmp_path / "dest")
    config = json.dumps(
        {"os": "linux", "rootfs": {"type": "layers", "diff_ids": [sha(BASE), sha(TOP)]}}
    ).encode()
    manifest = [{"Config": "c.json", "RepoTags": ["x:1"], "Layers": ["a.tar", "b.tar"]}]
    data = make_archive(
        [
            ("a.tar", BASE),
            ("b.tar", layer_tar({"evil": b"!"})),
            ("c.json", config),
            ("manifest.json", json.dumps(manifest).encode()),
        ]
    )
    with pytest.raises(errdefs.InvalidArgument, match="invalid diffID for layer 1"):
        load(dest, data, tmp_path / "spool")
    assert _stored(dest, tmp_path / "dest") == before
    assert not any((tmp_path / "spool").iterdir())


def test_hostile_layer_tar_is_refused_by_the_applier(tmp_path: Path) -> None:
    evil = layer_tar({"../../escape": b"x"})
    config = json.dumps({"os": "linux", "rootfs": {"type": "layers", "diff_ids": [sha(evil)]}})
    manifest = [{"Config": "c.json", "RepoTags": ["x:1"], "Layers": ["a.tar"]}]
    data = make_archive(
        [
            ("a.tar", evil),
            ("c.json", config.encode()),
            ("manifest.json", json.dumps(manifest).encode()),
        ]
    )
    dest = new_service(tmp_path / "dest")
    with ArchiveLoad(tmp_path / "spool") as job:
        job.spool(io.BytesIO(data))
        images = job.plan()
        with pytest.raises(errdefs.InvalidArgument):
            job.commit(dest, images, LoadProgress(lambda m: None))
    assert dest.list(all=True) == []
    assert not (tmp_path / "escape").exists()
