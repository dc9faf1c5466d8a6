"""ImageService end to end on a temporary root: import, resolve, inspect,
list, history, tag, rmi, layer sharing, and failed imports."""

from __future__ import annotations

import gzip
import io
import os
import shutil
from pathlib import Path

import pytest

from dockyard import errdefs
from dockyard.image.service import ImageService
from dockyard.store.content import ContentStore
from dockyard.store.metadata import Database
from dockyard.store.snapshots import CopySnapshotter, OverlaySnapshotter
from tests.unit.test_image_archive import layer_tar

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
    pytest.mark.skipif(not shutil.which("busybox"), reason="needs busybox-static"),
]


@pytest.fixture(params=[OverlaySnapshotter, CopySnapshotter], ids=["overlay", "copy"])
def svc(request, tmp_path: Path):
    db = Database(tmp_path / "metadata.db")
    service = ImageService(
        db=db,
        content=ContentStore(tmp_path / "content"),
        snapshotter=request.param(tmp_path / "snapshots"),
    )
    yield service
    db.close()


def _none(_: str) -> list[tuple[str, bool]]:
    return []


def test_import_inspect_list_tag_rmi(svc: ImageService, busybox_tar: bytes) -> None:
    image_id = svc.import_image(
        io.BytesIO(busybox_tar), reference="busybox", changes=['CMD ["sh"]'], message="m"
    )
    assert image_id.startswith("sha256:")
    for name in (
        "busybox",
        "busybox:latest",
        "docker.io/library/busybox:latest",
        image_id,
        image_id[7:],
        image_id[7:19],
    ):
        assert svc.resolve(name) == image_id
    info = svc.inspect("busybox")
    assert info["RepoTags"] == ["busybox:latest"]
    assert info["Config"]["Cmd"] == ["sh"]
    assert info["Comment"] == "m"
    assert info["Size"] > 1_000_000
    assert info["RootFS"]["Type"] == "layers" and len(info["RootFS"]["Layers"]) == 1
    chain = svc.chain_id(image_id)
    assert chain == info["RootFS"]["Layers"][0]
    assert (svc.snapshotter.upper_dir(chain) / "bin" / "sh").exists()

    svc.tag("busybox", "mine", "2")
    [summary] = svc.list()
    assert sorted(summary["RepoTags"]) == ["busybox:latest", "mine:2"]
    assert summary["Containers"] == -1 and summary["SharedSize"] == -1
    assert [s["Id"] for s in svc.list(filters={"reference": ["mi*"]})] == [image_id]
    assert svc.list(filters={"reference": ["mi*"]})[0]["RepoTags"] == ["mine:2"]
    assert svc.list(filters={"dangling": ["true"]}) == []
    [hist] = svc.history("mine:2")
    assert hist["Id"] == image_id and hist["Comment"] == "m"

    with pytest.raises(errdefs.Conflict, match="referenced in multiple repositories"):
        svc.remove(image_id[7:19], force=False, prune=True, containers_using=_none)
    assert svc.remove("mine:2", force=False, prune=True, containers_using=_none) == [
        {"Untagged": "mine:2"}
    ]
    records = svc.remove("busybox", force=False, prune=True, containers_using=_none)
    assert records == [
        {"Untagged": "busybox:latest"},
        {"Deleted": image_id},
        {"Deleted": chain},
    ]
    assert svc.list() == []
    assert not svc.snapshotter.exists(chain)
    assert not svc.content.has(image_id)
    with pytest.raises(errdefs.NotFound, match="No such image: busybox:latest"):
        svc.resolve("busybox")


def test_layers_are_shared(svc: ImageService, busybox_tar: bytes) -> None:
    a = svc.import_image(io.BytesIO(busybox_tar), reference="a", changes=["ENV A=1"])
    b = svc.import_image(io.BytesIO(gzip.compress(busybox_tar)), reference="b", changes=["ENV B=1"])
    assert a != b and svc.chain_id(a) == svc.chain_id(b)
    assert svc.snapshotter.keys() == [svc.chain_id(a)]
    svc.remove("a", force=False, prune=True, containers_using=_none)
    assert svc.snapshotter.exists(svc.chain_id(b))
    assert svc.config(b)["config"]["Env"] == ["B=1"]


def test_containers_block_removal(svc: ImageService, busybox_tar: bytes) -> None:
    image_id = svc.import_image(io.BytesIO(busybox_tar), reference="busybox", changes=[])
    sid = image_id[7:19]
    stopped = lambda _: [("c" * 64, False)]  # noqa: E731
    running = lambda _: [("d" * 64, True)]  # noqa: E731
    with pytest.raises(errdefs.Conflict) as exc:
        svc.remove("busybox", force=False, prune=True, containers_using=stopped)
    assert exc.value.message == (
        'conflict: unable to remove repository reference "busybox" (must force) - '
        f"container {'c' * 12} is using its referenced image {sid}"
    )
    with pytest.raises(errdefs.Conflict) as exc:
        svc.remove(sid, force=True, prune=True, containers_using=running)
    assert exc.value.message == (
        f"conflict: unable to delete {sid} (cannot be forced) - "
        f"image is being used by running container {'d' * 12}"
    )
    # a container's snapshot is a child of the layer: the layer stays
    svc.snapshotter.prepare("ctr", svc.chain_id(image_id))
    records = svc.remove("busybox", force=True, prune=True, containers_using=stopped)
    assert records == [{"Untagged": "busybox:latest"}, {"Deleted": image_id}]
    assert svc.snapshotter.exists(image_id_chain := svc.snapshotter.parent("ctr") or "")
    assert image_id_chain


def test_corrupt_import_leaves_nothing(svc: ImageService, busybox_tar: bytes) -> None:
    data = gzip.compress(busybox_tar)
    with pytest.raises(errdefs.InvalidArgument):
        svc.import_image(io.BytesIO(data[: len(data) // 2]), reference="bad", changes=[])
    assert svc.list(all=True) == []
    assert svc.snapshotter.keys() == []
    assert os.listdir(svc.snapshotter.root / "snapshots") == []
    assert list(svc.content.walk()) == []
    assert os.listdir(svc.content.ingest_dir) == []
    with pytest.raises(errdefs.InvalidArgument):
        svc.import_image(io.BytesIO(busybox_tar), reference="x", changes=["RUN true"])
    with pytest.raises(errdefs.InvalidArgument, match="must be lowercase"):
        svc.import_image(io.BytesIO(busybox_tar), reference="Bad", changes=[])
    assert svc.snapshotter.keys() == []


def test_retag_leaves_dangling(svc: ImageService, busybox_tar: bytes) -> None:
    first = svc.import_image(io.BytesIO(busybox_tar), reference="x", changes=["ENV A=1"])
    second = svc.import_image(io.BytesIO(busybox_tar), reference="x", changes=["ENV A=2"])
    dangling = svc.list(filters={"dangling": ["true"]})
    assert [d["Id"] for d in dangling] == [first]
    assert dangling[0]["RepoTags"] == []
    assert svc.resolve("x") == second
    records = svc.remove(first, force=False, prune=True, containers_using=_none)
    assert records == [{"Deleted": first}]


def test_multi_layer_image_from_parts(svc: ImageService, busybox_tar: bytes) -> None:
    """Pull/build path: layers stacked with add_layer, then create_image; a
    whiteout in the upper layer hides a lower file; blobs are kept and found
    again by digest; a config whose diff_ids lie is refused."""
    import json

    from dockyard.image import config as imgconfig
    from dockyard.image.reference import parse_named

    base = svc.add_layer(io.BytesIO(gzip.compress(busybox_tar)), parent_chain=None)
    assert base.media_type.endswith("tar.gzip") and svc.content.has(base.blob)
    top_tar = layer_tar({"etc/.wh.passwd": b"", "hello.txt": b"hi"})
    top = svc.add_layer(io.BytesIO(top_tar), parent_chain=base.chain_id)
    assert (
        top.blob == top.diff_id
        and top.chain_id == imgconfig.chain_ids([base.diff_id, top.diff_id])[1]
    )
    config = imgconfig.encode(imgconfig.new_image_config(diff_ids=[base.diff_id, top.diff_id]))
    with pytest.raises(errdefs.InvalidArgument):
        svc.create_image(config, [top, base])
    digest_ref = parse_named("example.com/a/b@sha256:" + "ab" * 32)
    image_id = svc.create_image(
        config, [base, top], reference=parse_named("example.com/a/b:1"), digest_reference=digest_ref
    )
    assert svc.config_bytes(image_id) == config
    assert [layer.diff_id for layer in svc.image_layers(image_id)] == [base.diff_id, top.diff_id]
    info = svc.inspect("example.com/a/b:1")
    assert info["RepoDigests"] == ["example.com/a/b@sha256:" + "ab" * 32]
    assert json.loads(svc.config_bytes(image_id))["rootfs"]["diff_ids"][1] == top.diff_id
    assert svc.layer_by_blob(top.blob, parent_chain=base.chain_id) == top
    assert svc.layer_by_blob(top.blob, parent_chain=None) is None
    # the merged view: passwd whited out, hello.txt added, busybox still there
    mounts = svc.snapshotter.view("check", top.chain_id)
    target = svc.snapshotter.root.parent / "mnt"
    target.mkdir()
    from dockyard.store.snapshots import mount_all, unmount

    mount_all(mounts, target)
    try:
        assert (target / "hello.txt").read_bytes() == b"hi"
        assert not (target / "etc/passwd").exists()
        assert (target / "bin/busybox").exists()
    finally:
        unmount(target)
        svc.snapshotter.remove("check")
    svc.remove(image_id, force=True, prune=True, containers_using=_none)
    assert not svc.content.has(top.blob) and not svc.snapshotter.exists(top.chain_id)
