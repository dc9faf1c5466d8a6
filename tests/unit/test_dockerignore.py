""".dockerignore: reading, Docker's matching table (moby/patternmatcher's
TestMatches, Apache-2.0), exceptions, walking, and fuzzing."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dockyard import errdefs
from dockyard.builder.dockerignore import (
    PatternError,
    PatternMatcher,
    always_sent,
    clean,
    excluded_after_read,
    read_patterns,
)

MATCHES = [
    ("**", "file", True),
    ("**", "file/", True),
    ("**/", "file", True),
    ("**/", "file/", True),
    ("**", "/", True),
    ("**/", "/", True),
    ("**", "dir/file", True),
    ("**/", "dir/file", True),
    ("**", "dir/file/", True),
    ("**/", "dir/file/", True),
    ("**/**", "dir/file", True),
    ("**/**", "dir/file/", True),
    ("dir/**", "dir/file", True),
    ("dir/**", "dir/file/", True),
    ("dir/**", "dir/dir2/file", True),
    ("dir/**", "dir/dir2/file/", True),
    ("**/dir", "dir", True),
    ("**/dir", "dir/file", True),
    ("**/dir2/*", "dir/dir2/file", True),
    ("**/dir2/*", "dir/dir2/file/", True),
    ("**/dir2/**", "dir/dir2/dir3/file", True),
    ("**/dir2/**", "dir/dir2/dir3/file/", True),
    ("**file", "file", True),
    ("**file", "dir/file", True),
    ("**/file", "dir/file", True),
    ("**file", "dir/dir/file", True),
    ("**/file", "dir/dir/file", True),
    ("**/file*", "dir/dir/file", True),
    ("**/file*", "dir/dir/file.txt", True),
    ("**/file*txt", "dir/dir/file.txt", True),
    ("**/file*.txt", "dir/dir/file.txt", True),
    ("**/file*.txt*", "dir/dir/file.txt", True),
    ("**/**/*.txt", "dir/dir/file.txt", True),
    ("**/**/*.txt2", "dir/dir/file.txt", False),
    ("**/*.txt", "file.txt", True),
    ("**/**/*.txt", "file.txt", True),
    ("a**/*.txt", "a/file.txt", True),
    ("a**/*.txt", "a/dir/file.txt", True),
    ("a**/*.txt", "a/dir/dir/file.txt", True),
    ("a/*.txt", "a/dir/file.txt", False),
    ("a/*.txt", "a/file.txt", True),
    ("a/*.txt**", "a/file.txt", True),
    ("a[b-d]e", "ae", False),
    ("a[b-d]e", "ace", True),
    ("a[b-d]e", "aae", False),
    ("a[^b-d]e", "aze", True),
    (".*", ".foo", True),
    (".*", "foo", False),
    ("abc.def", "abcdef", False),
    ("abc.def", "abc.def", True),
    ("abc.def", "abcZdef", False),
    ("abc?def", "abcZdef", True),
    ("abc?def", "abcdef", False),
    ("a\\\\", "a\\", True),
    ("**/foo/bar", "foo/bar", True),
    ("**/foo/bar", "dir/foo/bar", True),
    ("**/foo/bar", "dir/dir2/foo/bar", True),
    ("abc/**", "abc", False),
    ("abc/**", "abc/def", True),
    ("abc/**", "abc/def/ghi", True),
    ("**/.foo", ".foo", True),
    ("**/.foo", "bar.foo", False),
    ("a(b)c/def", "a(b)c/def", True),
    ("a(b)c/def", "a(b)c/xyz", False),
    ("a.|)$(}+{bc", "a.|)$(}+{bc", True),
    (
        "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
        "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
        True,
    ),
    ("dist/*.whl", "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl", True),
    ("a\\*b", "a*b", True),
]


@pytest.mark.parametrize(("pattern", "path", "expected"), MATCHES)
def test_patternmatcher_table(pattern: str, path: str, expected: bool) -> None:
    assert PatternMatcher([pattern]).matches(path) is expected


@pytest.mark.parametrize(
    ("patterns", "path", "expected"),
    [
        (["**", "!util/docker/web"], "util/docker/web/foo", False),
        (["**", "!util/docker/web", "util/docker/web/foo"], "util/docker/web/foo", True),
        (["**", "!dist/*.whl"], "dist/proxy.py-2.4.0-py3-none-any.whl", False),
        (["*.md", "!README.md"], "README.md", False),
        (["*.md", "!README.md"], "CHANGES.md", True),
        (["*.md", "!README*.md", "README-secret.md"], "README-secret.md", True),
        (["docs"], "docs/a/b.txt", True),
        (["docs", "!docs/keep"], "docs/keep/x", False),
        (["*/temp*"], "somedir/temporary.txt", True),
        (["*/temp*"], "somedir/sub/temporary.txt", False),
        (["*/*/temp*"], "a/b/temp", True),
        (["temp?"], "tempa", True),
        (["temp?"], "temp", False),
        (["**/*.go"], "a/b/c.go", True),
        (["/abs/path"], "abs/path", True),
        (["a/../b"], "b", True),
        (["."], "anything", False),
    ],
)
def test_exceptions_last_match_wins(patterns: list[str], path: str, expected: bool) -> None:
    assert PatternMatcher(read_patterns("\n".join(patterns))).matches(path) is expected


def test_read_patterns() -> None:
    text = "\ufeff# comment\n  \n /a/b/ \n!  /c//d\n x/../y\n   # not a comment\n/\r\n"
    assert read_patterns(text) == ["a/b", "!c/d", "y", "# not a comment", "/"]


def test_clean_is_gos() -> None:
    cases = {
        "": ".",
        "a/b/": "a/b",
        "//a": "/a",
        "a/./b/../c": "a/c",
        "../a": "../a",
        "/../a": "/a",
        "a/..": ".",
    }
    for given_path, want in cases.items():
        assert clean(given_path) == want


@pytest.mark.parametrize("pattern", ["[", "a[", "[]", "[a-", "[-a]", "a\\", "[a\\"])
def test_bad_patterns(pattern: str) -> None:
    with pytest.raises(PatternError) as info:
        PatternMatcher([pattern])
    assert info.value.message == "syntax error in pattern"
    assert isinstance(info.value, errdefs.InvalidArgument)


def test_lone_exclamation() -> None:
    with pytest.raises(PatternError, match='illegal exclusion pattern: "!"'):
        PatternMatcher(["!"])


def test_walking_into_excluded_dirs() -> None:
    m = PatternMatcher(["docs", "!docs/keep.md", "build", "!*/keep"])
    assert m.matches("docs") and m.may_match_inside("docs")
    assert m.matches("build") and not m.may_match_inside("build")
    assert not PatternMatcher(["docs"]).may_match_inside("docs")


def test_dockerfile_and_dockerignore_always_sent() -> None:
    m = PatternMatcher(["*", "!src"])
    assert always_sent("sub//Dockerfile.dev") == (".dockerignore", "sub/Dockerfile.dev")
    assert excluded_after_read(m) == [".dockerignore", "Dockerfile"]
    assert excluded_after_read(PatternMatcher(["src"])) == []


_PATTERN_CHARS = st.sampled_from(list("ab/*?[]^-!\\. "))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.text(_PATTERN_CHARS, max_size=8), max_size=4), st.text("ab/.", max_size=8))
def test_fuzz_never_crashes(patterns: list[str], path: str) -> None:
    try:
        m = PatternMatcher(patterns)
    except PatternError:
        return
    m.matches(path)
    m.may_match_inside(path)


@given(
    st.text(
        st.characters(blacklist_characters="*?[]\\!/", blacklist_categories=("Cs",)),
        min_size=1,
        max_size=10,
    )
)
def test_literal_pattern_matches_itself_and_children(name: str) -> None:
    name = name.strip()
    if not name or name in (".", "..") or re.search(r"\s", name):
        return
    m = PatternMatcher([name])
    assert m.matches(name)
    assert m.matches(name + "/child")
    assert not m.matches(name + "x")
