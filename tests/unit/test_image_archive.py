"""The archive format without a store: member-name rules, the tar writer,
and ``ArchiveLoad.plan`` refusing hostile archives before anything is stored."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dockyard import errdefs
from dockyard.image import archive
from dockyard.image.archive import ArchiveLoad, member_name


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def layer_tar(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def config_for(*layers: bytes) -> bytes:
    return json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "config": {},
            "rootfs": {"type": "layers", "diff_ids": [sha(layer) for layer in layers]},
        }
    ).encode()


def make_archive(members: list[tuple[str, object]]) -> bytes:
    """members: (name, bytes) for files, (name, ("sym", target)) or
    (name, ("hard", target)) for links."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, content in members:
            info = tarfile.TarInfo(name)
            if isinstance(content, tuple):
                kind, target = content
                info.type = tarfile.SYMTYPE if kind == "sym" else tarfile.LNKTYPE
                info.linkname = target
                tar.addfile(info)
            else:
                assert isinstance(content, bytes)
                info.size = len(content)
                tar.addfile(info, io.BytesIO(content))
    return buf.getvalue()


def new_format(layer: bytes, *, tags=("app:1",), config: bytes | None = None) -> bytes:
    config = config if config is not None else config_for(layer)
    manifest = [
        {
            "Config": "blobs/sha256/" + sha(config)[7:],
            "RepoTags": list(tags),
            "Layers": ["blobs/sha256/" + sha(layer)[7:]],
        }
    ]
    return make_archive(
        [
            ("blobs/sha256/" + sha(layer)[7:], layer),
            ("blobs/sha256/" + sha(config)[7:], config),
            ("manifest.json", json.dumps(manifest).encode()),
        ]
    )


def plan(data: bytes, tmp_path: Path):
    with ArchiveLoad(tmp_path / "spool") as load:
        load.spool(io.BytesIO(data))
        return load.plan()


LAYER = layer_tar({"hello": b"world"})


# -- names ----------------------------------------------------------------


@pytest.mark.parametrize(
    "name, expected",
    [("a/b", "a/b"), ("./manifest.json", "manifest.json"), ("a//b/", "a/b"), ("./", "")],
)
def test_member_names_are_canonical(name: str, expected: str) -> None:
    assert member_name(name) == expected


@pytest.mark.parametrize("name", ["../x", "a/../../x", "/etc/passwd", "a/../b", "x\x00y"])
def test_member_names_that_climb_or_are_absolute_are_refused(name: str) -> None:
    with pytest.raises(errdefs.InvalidArgument):
        member_name(name)


@given(st.lists(st.sampled_from(["a", "b", "..", ".", "", "c.json"]), min_size=1, max_size=6))
def test_member_name_never_escapes(parts: list[str]) -> None:
    name = "/".join(parts)
    try:
        clean = member_name(name)
    except errdefs.InvalidArgument:
        return
    assert not clean.startswith("/")
    assert ".." not in clean.split("/")


# -- tar writer ---------------------------------------------------------------


def test_tar_writer_output_reads_back_with_tarfile() -> None:
    out = io.BytesIO()
    writer = archive._TarWriter(out)
    writer.directory("blobs")
    writer.file("a.json", b"{}", mtime=5)
    writer.stream("big", io.BytesIO(b"x" * 1000), 1000)
    writer.file("d/" + "n" * 200, b"long name")  # needs a PAX header
    writer.close()
    assert len(out.getvalue()) % 512 == 0
    with tarfile.open(fileobj=io.BytesIO(out.getvalue())) as tar:
        names = tar.getnames()
        assert names == ["blobs", "a.json", "big", "d/" + "n" * 200]
        assert tar.extractfile("big").read() == b"x" * 1000  # type: ignore[union-attr]
        assert tar.getmember("a.json").mtime == 5


def test_tar_writer_refuses_a_short_source() -> None:
    writer = archive._TarWriter(io.BytesIO())
    with pytest.raises(errdefs.System):
        writer.stream("short", io.BytesIO(b"abc"), 10)


def test_progress_message_matches_docker() -> None:
    msg = archive._progress("0123456789ab", 10240, 10240)
    assert msg["progress"] == "[" + "=" * 50 + ">]  10.24kB/10.24kB"
    assert archive._progress("x", 0, 10)["progress"].startswith("[>" + " " * 50 + "] ")


# -- plan: good archives --------------------------------------------------------


def test_plan_new_format(tmp_path: Path) -> None:
    images = plan(new_format(LAYER), tmp_path)
    assert len(images) == 1
    assert [t.familiar() for t in images[0].tags] == ["app:1"]
    assert images[0].layers[0].diff_id == sha(LAYER)
    assert not (tmp_path / "spool").exists() or not any((tmp_path / "spool").iterdir())


def test_plan_old_format_with_linked_layer(tmp_path: Path) -> None:
    """Docker 20.10's layout: a second image's shared layer.tar is a symlink
    to the first one's, and the config is ``<id>.json``."""
    config = config_for(LAYER)
    manifest = [
        {"Config": sha(config)[7:] + ".json", "RepoTags": ["a:1"], "Layers": ["l1/layer.tar"]},
        {"Config": sha(config)[7:] + ".json", "RepoTags": ["b:1"], "Layers": ["l2/layer.tar"]},
    ]
    data = make_archive(
        [
            ("l1/layer.tar", LAYER),
            ("l1/json", b"{}"),
            ("l2/layer.tar", ("sym", "../l1/layer.tar")),
            (sha(config)[7:] + ".json", config),
            ("manifest.json", json.dumps(manifest).encode()),
            ("repositories", b"{}"),
        ]
    )
    images = plan(data, tmp_path)
    assert [i.tags[0].familiar() for i in images] == ["a:1", "b:1"]
    assert images[0].layers[0].path == images[1].layers[0].path


def test_plan_gzip_layer_is_checked_uncompressed(tmp_path: Path) -> None:
    gz = gzip.compress(LAYER)
    config = config_for(LAYER)
    manifest = [{"Config": "c.json", "RepoTags": None, "Layers": ["layer.tar.gz"]}]
    data = make_archive(
        [("layer.tar.gz", gz), ("c.json", config), ("manifest.json", json.dumps(manifest).encode())]
    )
    (image,) = plan(data, tmp_path)
    assert image.tags == ()
    assert image.layers[0].blob == sha(gz)
    assert image.layers[0].diff_id == sha(LAYER)


def test_plan_oci_layout_only(tmp_path: Path) -> None:
    gz = gzip.compress(LAYER)
    config = config_for(LAYER)
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": archive.OCI_MANIFEST,
            "config": {"mediaType": archive.OCI_CONFIG, "digest": sha(config), "size": len(config)},
            "layers": [
                {"mediaType": archive.OCI_GZIP_MEDIA_TYPE, "digest": sha(gz), "size": len(gz)}
            ],
        }
    ).encode()
    index = {
        "schemaVersion": 2,
        "manifests": [
            {
                "mediaType": archive.OCI_MANIFEST,
                "digest": sha(manifest),
                "size": len(manifest),
                "annotations": {archive.ANNOTATION_IMAGE_NAME: "docker.io/library/oci:2"},
            }
        ],
    }
    data = make_archive(
        [
            ("oci-layout", archive.LAYOUT_CONTENT),
            ("index.json", json.dumps(index).encode()),
            ("blobs/sha256/" + sha(manifest)[7:], manifest),
            ("blobs/sha256/" + sha(config)[7:], config),
            ("blobs/sha256/" + sha(gz)[7:], gz),
        ]
    )
    (image,) = plan(data, tmp_path)
    assert image.tags[0].familiar() == "oci:2"
    assert image.layers[0].media_type == archive.OCI_GZIP_MEDIA_TYPE


# -- plan: hostile archives -------------------------------------------------------


def bad(data: bytes, tmp_path: Path, match: str) -> None:
    with pytest.raises(errdefs.InvalidArgument, match=match):
        plan(data, tmp_path)
    spool = tmp_path / "spool"
    assert not spool.exists() or not any(spool.iterdir()), "the spool dir must go"


def test_member_outside_the_archive(tmp_path: Path) -> None:
    bad(make_archive([("../x", b"pwn")]), tmp_path, "outside of the archive")


def test_absolute_member(tmp_path: Path) -> None:
    bad(make_archive([("/etc/x", b"pwn")]), tmp_path, "not a relative path")


def test_symlink_escaping(tmp_path: Path) -> None:
    bad(make_archive([("l", ("sym", "../../etc/passwd"))]), tmp_path, "outside of the archive")
    bad(make_archive([("l", ("sym", "/etc/passwd"))]), tmp_path, "outside of the archive")


def test_hardlink_to_missing_member(tmp_path: Path) -> None:
    bad(make_archive([("l", ("hard", "nothing"))]), tmp_path, "missing member")


def test_manifest_naming_a_missing_member(tmp_path: Path) -> None:
    manifest = [{"Config": "c.json", "RepoTags": [], "Layers": []}]
    data = make_archive([("manifest.json", json.dumps(manifest).encode())])
    bad(data, tmp_path, "open c.json: no such file or directory")


def test_manifest_path_climbing(tmp_path: Path) -> None:
    manifest = [{"Config": "../c.json", "RepoTags": [], "Layers": []}]
    bad(make_archive([("manifest.json", json.dumps(manifest).encode())]), tmp_path, "outside")


def test_config_not_matching_its_digest(tmp_path: Path) -> None:
    config = config_for(LAYER)
    wrong = config.replace(b'"amd64"', b'"arm64"')
    manifest = [
        {
            "Config": "blobs/sha256/" + sha(config)[7:],
            "RepoTags": ["a:1"],
            "Layers": ["blobs/sha256/" + sha(LAYER)[7:]],
        }
    ]
    data = make_archive(
        [
            ("blobs/sha256/" + sha(LAYER)[7:], LAYER),
            ("blobs/sha256/" + sha(config)[7:], wrong),
            ("manifest.json", json.dumps(manifest).encode()),
        ]
    )
    bad(data, tmp_path, "does not match its digest")


def test_layer_not_matching_the_config(tmp_path: Path) -> None:
    other = layer_tar({"evil": b"x"})
    config = config_for(LAYER)
    manifest = [{"Config": "c.json", "RepoTags": ["a:1"], "Layers": ["l/layer.tar"]}]
    data = make_archive(
        [
            ("l/layer.tar", other),
            ("c.json", config),
            ("manifest.json", json.dumps(manifest).encode()),
        ]
    )
    bad(data, tmp_path, "invalid diffID for layer 0")


def test_layer_count_mismatch(tmp_path: Path) -> None:
    config = config_for(LAYER)
    manifest = [{"Config": "c.json", "RepoTags": [], "Layers": []}]
    data = make_archive([("c.json", config), ("manifest.json", json.dumps(manifest).encode())])
    bad(data, tmp_path, "layers length mismatch")


def test_null_manifest_and_bad_tags(tmp_path: Path) -> None:
    bad(make_archive([("manifest.json", b"null")]), tmp_path, "cannot be null")
    bad(new_format(LAYER, tags=("app",)), tmp_path, 'invalid tag "app"')


def test_json_member_size_limit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(archive, "MAX_JSON_SIZE", 100)
    bad(make_archive([("manifest.json", b"[" + b" " * 200 + b"]")]), tmp_path, "too large")


def test_not_an_archive(tmp_path: Path) -> None:
    bad(b"this is not a tar" * 100, tmp_path, "invalid archive")
    bad(make_archive([("x", b"y")]), tmp_path, "manifest.json: no such file")
