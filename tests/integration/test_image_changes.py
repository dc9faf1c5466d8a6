"""changes / write_layer_tar / mounted against real snapshotters: the changes are
made through a real (overlay) mount, the tar is read back by tarfile and
re-applied with apply_layer, and the result must equal the changed tree."""

from __future__ import annotations

import io
import os
import stat
import tarfile
import time
from pathlib import Path

import pytest

from dockyard.image.changes import ChangeKind, changes, mounted, write_layer_tar
from dockyard.image.layer import apply_layer
from dockyard.store.snapshots import (
    OverlaySnapshotter,
    Snapshotter,
    mount_all,
    unmount,
)

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (mounts, chown)")


@pytest.fixture
def mnt(tmp_path: Path):
    path = tmp_path / "mnt"
    path.mkdir()
    yield path
    unmount(path)


def _base(sn: Snapshotter) -> str:
    """Two committed layers: a small filesystem with dirs, links and a deletion."""
    sn.prepare("x1", None)
    up = sn.upper_dir("x1")
    for d in ("etc", "tmp", "usr/bin", "var/lib/old", "keep", "gone", "dir-a"):
        (up / d).mkdir(parents=True)
    (up / "etc/passwd").write_text("root:x:0:0\n")
    (up / "etc/group").write_text("root:x:0:\n")
    (up / "usr/bin/tool").write_text("#!/bin/sh\n")
    (up / "var/lib/old/a").write_text("a")
    (up / "var/lib/old/b").write_text("b")
    (up / "gone/file").write_text("x")
    (up / "dir-a/x").write_text("x")
    os.symlink("/etc/passwd", up / "etc/link")
    for p in up.rglob("*"):
        os.utime(p, (1_000_000, 1_000_000), follow_symlinks=False)
    os.utime(up, (1_000_000, 1_000_000))
    sn.commit("l1", "x1")
    sn.prepare("x2", "l1")
    up2 = sn.upper_dir("x2")
    if sn.whiteout_mode == "overlay":
        (up2 / "usr").mkdir()
        (up2 / "usr/local").mkdir()
        (up2 / "usr/local/f").write_text("l2")
    else:
        (up2 / "usr/local").mkdir()
        (up2 / "usr/local/f").write_text("l2")
    sn.commit("l2", "x2")
    return "l2"


def _mutate(root: Path) -> None:
    (root / "tmp/f").write_text("hello")  # A in an existing dir
    (root / "etc/passwd").write_text("root:x:0:0\nme:x:1000:1000\n")  # C
    os.unlink(root / "etc/group")  # D
    import shutil

    shutil.rmtree(root / "gone")  # D of a whole dir
    shutil.rmtree(root / "var/lib/old")
    (root / "var/lib/old").mkdir()  # opaque on overlay
    (root / "var/lib/old/new").write_text("n")
    (root / "newdir/sub").mkdir(parents=True)  # A tree
    (root / "newdir/sub/file").write_text("deep")
    os.link(root / "newdir/sub/file", root / "newdir/hard")
    os.symlink("../../etc/passwd", root / "newdir/rel")
    os.chown(root / "newdir/sub/file", 1000, 1001)
    os.chmod(root / "usr/bin/tool", 0o4755)
    os.setxattr(root / "tmp/f", "user.note", b"v1")
    (root / "dir-a-b").write_text("sorting")  # bytewise order: "dir-a" < "dir-a-b" < "dir-a/x"


def _container(sn: Snapshotter, mnt: Path) -> str:
    top = _base(sn)
    mount_all(sn.prepare("ctr", top), mnt)
    try:
        _mutate(mnt)
    finally:
        unmount(mnt)
    return "ctr"


def _letters(sn: Snapshotter, key: str) -> list[str]:
    return [f"{c.kind.letter} {c.path}" for c in changes(sn, key)]


def test_changes_are_dockers_list_in_walk_order(sn: Snapshotter, mnt: Path) -> None:
    key = _container(sn, mnt)
    got = _letters(sn, key)
    for expected in (
        "A /tmp/f",
        "C /tmp",
        "C /etc/passwd",
        "D /etc/group",
        "C /etc",
        "D /gone",
        "A /newdir",
        "A /newdir/sub",
        "A /newdir/sub/file",
        "A /newdir/hard",
        "A /newdir/rel",
        "C /usr/bin/tool",
        "A /var/lib/old/new",
        "D /var/lib/old/a",
        "D /var/lib/old/b",
        "A /dir-a-b",
    ):
        assert expected in got, (expected, got)
    assert not any(line.endswith("/gone/file") for line in got)  # the dir's D covers it
    assert not any("/usr/local" in line for line in got)  # the parent layer's, not ours
    # depth first with sorted names, as filepath.Walk
    paths = [line[2:] for line in got]
    assert paths.index("/dir-a-b") < paths.index("/etc") < paths.index("/etc/group")
    assert paths.index("/etc/group") < paths.index("/etc/passwd") < paths.index("/gone")
    assert paths.index("/newdir") < paths.index("/newdir/hard") < paths.index("/newdir/sub")
    assert paths.index("/var/lib/old/a") < paths.index("/var/lib/old/new")


def test_layer_tar_reapplied_gives_the_same_tree(sn: Snapshotter, mnt: Path, tmp_path) -> None:
    key = _container(sn, mnt)
    buf = io.BytesIO()
    write_layer_tar(sn, key, buf)
    data = buf.getvalue()
    assert len(data) % 512 == 0 and data.endswith(bytes(1024))
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        members = {m.name: m for m in tar.getmembers()}
    names = list(members)
    assert "etc/.wh.group" in names and ".wh.gone" in names
    assert b"var/lib/old/\0" in data  # directories are named with a trailing slash
    if sn.whiteout_mode == "overlay":
        assert "var/lib/old" in names and "var/lib/old/.wh..wh..opq" in names
        assert "var/lib/old/.wh.a" not in names  # the opaque marker covers it
    else:  # compared trees: each deletion is spelled out
        assert {"var/lib/old/.wh.a", "var/lib/old/.wh.b", "var/lib/old/new"} <= set(names)
    assert names.index("newdir") < names.index("newdir/hard") < names.index("newdir/sub")
    assert members["newdir/rel"].issym() and members["newdir/rel"].linkname == "../../etc/passwd"
    sub, hard = members["newdir/sub/file"], members["newdir/hard"]
    assert {sub.type, hard.type} == {tarfile.REGTYPE, tarfile.LNKTYPE}
    owner = sub if sub.isreg() else hard
    assert (owner.uid, owner.gid) == (1000, 1001)
    assert members["usr/bin/tool"].mode == 0o4755
    assert members["tmp/f"].pax_headers.get("SCHILY.xattr.user.note") == "v1"
    assert not any("usr/local" in n for n in names)
    assert not any("trusted.overlay" in k for m in members.values() for k in m.pax_headers)

    # apply it on the parent and compare with the container's view
    sn.prepare("re", sn.parent(key))
    apply_layer(io.BytesIO(data), sn.upper_dir("re"), whiteout=sn.whiteout_mode)  # type: ignore[arg-type]
    sn.commit("re-c", "re")
    with mounted(sn, key) as a, mounted(sn, "re-c") as b:
        assert _tree(a) == _tree(b)
    # the same tree gives the same bytes
    again = io.BytesIO()
    write_layer_tar(sn, key, again)
    assert again.getvalue() == data


def _tree(root: Path) -> dict[str, tuple]:
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            rel = os.path.relpath(path, root)
            content = None
            if stat.S_ISREG(st.st_mode):
                content = Path(path).read_bytes()
            elif stat.S_ISLNK(st.st_mode):
                content = os.readlink(path)
            out[rel] = (st.st_mode, st.st_uid, st.st_gid, content)
    return out


def test_mount_points_made_by_the_runtime_are_not_changes(sn: Snapshotter, mnt: Path) -> None:
    top = _base(sn)
    mount_all(sn.prepare("ctr", top), mnt)
    try:
        for name in ("hostname", "hosts", "resolv.conf"):
            (mnt / "etc" / name).touch()
        (mnt / "proc").mkdir()
        (mnt / "tmp/f").write_text("x")
    finally:
        unmount(mnt)
    assert _letters(sn, "ctr") == ["C /tmp", "A /tmp/f"]
    buf = io.BytesIO()
    write_layer_tar(sn, "ctr", buf)
    with tarfile.open(fileobj=io.BytesIO(buf.getvalue())) as tar:
        assert [m.name for m in tar.getmembers()] == ["tmp", "tmp/f"]


def test_mounted_readonly_view_and_cleanup(sn: Snapshotter, mnt: Path) -> None:
    key = _container(sn, mnt)
    with mounted(sn, key) as view:
        assert (view / "tmp/f").read_text() == "hello"
        assert not (view / "etc/group").exists()
        assert (view / "usr/local/f").read_text() == "l2"
        with pytest.raises(OSError):
            (view / "tmp/g").write_text("no")
    assert not view.exists()
    with mounted(sn, key, readonly=False) as view:
        (view / "tmp/g").write_text("yes")
    assert "A /tmp/g" in _letters(sn, key)


def test_big_file_goes_through_a_real_file(sn: Snapshotter, mnt: Path, tmp_path: Path) -> None:
    top = _base(sn)
    mount_all(sn.prepare("ctr", top), mnt)
    try:
        payload = os.urandom(300_001)
        (mnt / "big").write_bytes(payload)
        for i in range(2000):
            (mnt / "tmp" / f"f{i:04d}").write_text(str(i))
    finally:
        unmount(mnt)
    out = tmp_path / "layer.tar"
    start = time.monotonic()
    with open(out, "wb") as f:
        write_layer_tar(sn, "ctr", f)
    elapsed = time.monotonic() - start
    with tarfile.open(out) as tar:
        big = tar.extractfile("big")
        assert big is not None and big.read() == payload
        assert len(tar.getmembers()) == 2002  # big, tmp/ and its files
    assert elapsed < 0.5, elapsed  # ~0.1 s here: the builder's RUN steps depend on it


def test_opaque_dir_kind_on_overlay(tmp_path: Path, mnt: Path) -> None:
    sn = OverlaySnapshotter(tmp_path / "s")
    _base(sn)
    mount_all(sn.prepare("ctr", "l2"), mnt)
    try:
        import shutil

        shutil.rmtree(mnt / "keep")
        (mnt / "keep").mkdir()
    finally:
        unmount(mnt)
    assert os.getxattr(sn.upper_dir("ctr") / "keep", "trusted.overlay.opaque") == b"y"
    kinds = {c.path: c.kind for c in changes(sn, "ctr")}
    assert kinds["/keep"] in (ChangeKind.MODIFY, ChangeKind.ADD)


def test_same_size_and_mtime_other_content_is_a_change(sn: Snapshotter, mnt: Path) -> None:
    """What a COPY of a context file with the same size and mtime leaves: on the
    copying snapshotter too it is a change, and the commit's layer carries it."""
    top = _base(sn)
    mount_all(sn.prepare("ctr", top), mnt)
    try:
        before = os.lstat(mnt / "etc/passwd")
        (mnt / "etc/passwd").write_text("ROOT:x:0:0\n")  # same size
        os.utime(mnt / "etc/passwd", ns=(before.st_atime_ns, before.st_mtime_ns))
    finally:
        unmount(mnt)
    # the directory is listed on copy as Docker's vfs does (a parent of changes)
    assert _letters(sn, "ctr")[-1:] == ["C /etc/passwd"]
    buf = io.BytesIO()
    write_layer_tar(sn, "ctr", buf)
    with tarfile.open(fileobj=io.BytesIO(buf.getvalue())) as tar:
        assert tar.getnames() in (["etc", "etc/passwd"], ["etc/passwd"])
        got = tar.extractfile("etc/passwd")
        assert got is not None and got.read() == b"ROOT:x:0:0\n"


def test_fd_based_add_matches_the_path_based_one(tmp_path: Path) -> None:
    """TarWriter.add_at / add_dir_fd (docker cp) write the same entries as
    add (layers) for every kind of file."""
    from dockyard.image.changes import TarWriter

    tree = tmp_path / "t"
    (tree / "d").mkdir(parents=True)
    (tree / "d/f").write_bytes(b"x" * 70_000)  # over the sendfile threshold
    os.link(tree / "d/f", tree / "d/hard")
    os.symlink("f", tree / "d/link")
    os.mkfifo(tree / "d/fifo")
    os.mknod(tree / "d/null", 0o600 | stat.S_IFCHR, os.makedev(1, 3))
    os.setxattr(tree / "d/f", "user.k", b"v")
    names = sorted(os.listdir(tree / "d"), key=os.fsencode)

    def by_path(out) -> None:
        w = TarWriter(out)
        w.add("d", str(tree / "d"), os.lstat(tree / "d"))
        for n in names:
            w.add(f"d/{n}", str(tree / "d" / n), os.lstat(tree / "d" / n))
        w.close()

    def by_fd(out) -> None:
        w = TarWriter(out)
        fd = os.open(tree / "d", os.O_RDONLY | os.O_DIRECTORY)
        try:
            w.add_dir_fd("d", fd)
            for n in names:
                w.add_at(f"d/{n}", fd, n, os.stat(n, dir_fd=fd, follow_symlinks=False))
        finally:
            os.close(fd)
        w.close()

    outputs = []
    for work in (by_path, by_fd):
        with open(tmp_path / f"{work.__name__}.tar", "w+b") as out:
            work(out)
            out.seek(0)
            outputs.append(out.read())
    assert outputs[0] == outputs[1]
    with tarfile.open(fileobj=io.BytesIO(outputs[1])) as tar:
        kinds = {m.name: m.type for m in tar.getmembers()}
        assert tar.getmember("d/f").pax_headers.get("SCHILY.xattr.user.k") == "v"
    assert kinds == {
        "d": tarfile.DIRTYPE,
        "d/f": tarfile.REGTYPE,
        "d/fifo": tarfile.FIFOTYPE,
        "d/hard": tarfile.LNKTYPE,
        "d/link": tarfile.SYMTYPE,
        "d/null": tarfile.CHRTYPE,
    }
