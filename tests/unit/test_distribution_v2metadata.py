"""v2 metadata rows in a real metadata database."""

from __future__ import annotations

from dockyard.distribution.v2metadata import Entry, V2Metadata
from dockyard.store.metadata import Database

GZ = "application/vnd.docker.image.rootfs.diff.tar.gzip"


def test_add_list_forget_and_reopen(tmp_path):
    db = Database(tmp_path / "m.db")
    meta = V2Metadata(db)
    a = Entry("sha256:d1", "sha256:b1", GZ, 10, "127.0.0.1:5000/team/a")
    b = Entry("sha256:d1", "sha256:b1", GZ, 10, "127.0.0.1:5000/team/b")
    other = Entry("sha256:d2", "sha256:b2", GZ, 20, "docker.io/library/busybox")
    meta.add([a, other])
    meta.add([b])
    meta.add([a])  # recorded again: now the newest
    assert meta.for_diff_id("sha256:d1") == [a, b]
    meta.forget("sha256:d1", "sha256:b1", "127.0.0.1:5000/team/a")
    assert meta.for_diff_id("sha256:d1") == [b]
    db.close()
    reopened = V2Metadata(Database(tmp_path / "m.db"))
    assert reopened.for_diff_id("sha256:d2") == [other]
    assert reopened.for_diff_id("sha256:none") == []
