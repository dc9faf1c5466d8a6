"""The executor's pure parts: Go-formatted history strings, build-arg
scoping, destination rules, wildcard matching, source checksums, and the
build cache table."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from dockyard import errdefs, gofmt
from dockyard.builder import copying
from dockyard.builder import executor as ex
from dockyard.builder.cache import BuildCache
from dockyard.store.metadata import Database


def test_go_formatting():
    assert gofmt.go_list_q(["sh", "-c"]) == '["sh" "-c"]'
    assert gofmt.go_list_q(['a "b"']) == '["a \\"b\\""]'
    assert gofmt.go_list_q(None) == "[]"
    assert gofmt.go_list_v(["/bin/sh", "-c"]) == "[/bin/sh -c]"
    assert gofmt.go_duration(0) == "0s"
    assert gofmt.go_duration(30 * 10**9) == "30s"
    assert gofmt.go_duration(90 * 10**9) == "1m30s"
    assert gofmt.go_duration(3600 * 10**9 + 1) == "1h0m0.000000001s"
    assert gofmt.go_duration(1_500_000) == "1.5ms"
    assert gofmt.go_rune_q(0) == "'\\x00'"
    assert gofmt.go_rune_q(3) == "'\\x03'"
    assert gofmt.go_rune_q(65) == "'A'"
    assert gofmt.go_rune_q(10) == "'\\n'"


def test_healthcheck_comment_matches_docker():
    hc = {"Test": ["CMD-SHELL", "true"]}
    assert ex._healthcheck_comment(hc) == (
        'HEALTHCHECK &{["CMD-SHELL" "true"] "0s" "0s" "0s" "0s" \'\\x00\'}'
    )
    hc = {"Test": ["CMD", "x"], "Interval": 30 * 10**9, "Retries": 3}
    assert ex._healthcheck_comment(hc) == (
        'HEALTHCHECK &{["CMD" "x"] "30s" "0s" "0s" "0s" \'\\x03\'}'
    )


def test_build_args_scoping():
    args = ex._BuildArgs(options={"A": "opt", "HTTP_PROXY": "p", "Z": None}, meta={"B": "meta"})
    assert args.all_allowed() == {"HTTP_PROXY": "p"}  # proxies need no ARG line
    args.allowed["A"] = "default"
    args.allowed["B"] = None  # inherits the meta value
    args.allowed["C"] = "c"
    args.allowed["Z"] = None  # null option, no meta: unset
    assert args.all_allowed() == {"A": "opt", "B": "meta", "C": "c", "HTTP_PROXY": "p"}
    # ENV wins over ARG
    assert "C=c" not in args.filter_allowed(["C=env"])
    assert args.referenced_or_not_builtin("A")
    assert not args.referenced_or_not_builtin("HTTP_PROXY")


def test_normalize_dest():
    assert copying.normalize_dest("/src", ".") == "/src"
    assert copying.normalize_dest("/src", "./") == "/src/"
    assert copying.normalize_dest("/", "app/") == "/app/"
    assert copying.normalize_dest("/w", "../x") == "/x"
    assert copying.normalize_dest("/w", "/abs") == "/abs"


def test_glob_and_hash(tmp_path: Path):
    (tmp_path / "a.md").write_text("a")
    (tmp_path / "b.md").write_text("b")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "c.md").write_text("c")
    assert copying.glob(str(tmp_path), "*.md") == ["a.md", "b.md"]
    assert copying.glob(str(tmp_path), "*/c.md") == ["sub/c.md"]
    assert copying.glob(str(tmp_path), "sub/*.md") == ["sub/c.md"]
    assert copying.glob(str(tmp_path), "*.txt") == []
    before = copying.hash_tree(str(tmp_path))
    os.utime(tmp_path / "a.md", (1, 1))
    assert copying.hash_tree(str(tmp_path)) == before  # mtimes do not count
    (tmp_path / "a.md").write_text("changed")
    assert copying.hash_tree(str(tmp_path)) != before
    os.chmod(tmp_path / "b.md", 0o600)
    assert copying.hash_tree(str(tmp_path / "b.md")) != copying.hash_tree(str(tmp_path / "a.md"))


def test_chmod_parsing():
    assert copying.parse_chmod("") is None
    assert copying.parse_chmod("640") == 0o640
    with pytest.raises(errdefs.InvalidArgument):
        copying.parse_chmod("9z")


def test_parse_tag():
    assert ex._parse_tag("demo").familiar() == "demo:latest"
    assert ex._parse_tag("demo:1").familiar() == "demo:1"
    with pytest.raises(errdefs.InvalidArgument):
        ex._parse_tag("Bad:Tag!")


def test_cache_lookup_ignores_removed_images(tmp_path: Path):
    db = Database(tmp_path / "m.db")
    cache = BuildCache(db)
    with db.tx() as cur:
        cur.execute("INSERT INTO images (id, created, size) VALUES ('sha256:p', 0, 10)")
        cur.execute(
            "INSERT INTO images (id, created, size, parent) VALUES ('sha256:x', 0, 25, 'sha256:p')"
        )
    cache.store("sha256:p", "key", "sha256:x")
    assert cache.lookup("sha256:p", "key") == "sha256:x"
    assert cache.lookup("sha256:p", "other") is None
    [record] = cache.records(lambda _: [])
    assert record["Description"] == "key" and record["Size"] == 15
    assert not record["Shared"] and not record["InUse"] and len(record["ID"]) == 25
    with db.tx() as cur:
        cur.execute("INSERT INTO refs (name, image_id) VALUES ('docker.io/t:1', 'sha256:x')")
    assert cache.records(lambda _: [])[0]["Shared"]  # a tag keeps it: pruning frees nothing
    with db.tx() as cur:
        cur.execute("DELETE FROM refs")
        cur.execute("DELETE FROM images WHERE id = 'sha256:x'")
    assert cache.lookup("sha256:p", "key") is None
    assert cache.records(lambda _: []) == []
    assert cache.prune(everything=False) == [record["ID"]]
    assert cache.prune(everything=True) == []
    db.close()
