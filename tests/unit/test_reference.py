"""Image references: Docker's normalization table, round trips, fuzzing."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dockyard import errdefs
from dockyard.image import reference

DIGEST = "sha256:" + "a" * 64


@pytest.mark.parametrize(
    ("text", "full", "familiar"),
    [
        ("busybox", "docker.io/library/busybox:latest", "busybox:latest"),
        ("busybox:1.36", "docker.io/library/busybox:1.36", "busybox:1.36"),
        ("library/busybox", "docker.io/library/busybox:latest", "busybox:latest"),
        ("docker.io/busybox", "docker.io/library/busybox:latest", "busybox:latest"),
        ("index.docker.io/library/busybox", "docker.io/library/busybox:latest", "busybox:latest"),
        ("user/app:v1", "docker.io/user/app:v1", "user/app:v1"),
        ("library/a/b", "docker.io/library/a/b:latest", "library/a/b:latest"),
        ("localhost/app", "localhost/app:latest", "localhost/app:latest"),
        ("localhost:5000/a/b:t", "localhost:5000/a/b:t", "localhost:5000/a/b:t"),
        ("quay.io/x/y", "quay.io/x/y:latest", "quay.io/x/y:latest"),
        ("Foo/bar", "Foo/bar:latest", "Foo/bar:latest"),
        ("[::1]:5000/x", "[::1]:5000/x:latest", "[::1]:5000/x:latest"),
        ("a__b-c/e", "docker.io/a__b-c/e:latest", "a__b-c/e:latest"),
        (f"busybox@{DIGEST}", f"docker.io/library/busybox@{DIGEST}", f"busybox@{DIGEST}"),
        (f"busybox:1@{DIGEST}", f"docker.io/library/busybox:1@{DIGEST}", f"busybox:1@{DIGEST}"),
    ],
)
def test_normalization(text: str, full: str, familiar: str) -> None:
    ref = reference.parse(text)
    assert ref.string() == full
    assert ref.familiar() == familiar
    assert reference.parse(full) == ref
    assert reference.parse(familiar) == ref


def test_parts() -> None:
    ref = reference.parse("localhost:5000/a/b:t")
    assert (ref.domain, ref.path, ref.tag, ref.digest) == ("localhost:5000", "a/b", "t", None)
    assert ref.name() == "localhost:5000/a/b"
    assert reference.parse_named("busybox").tag is None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "Busybox",
            "invalid reference format: repository name (library/Busybox) must be lowercase",
        ),
        ("user/App", "invalid reference format: repository name (user/App) must be lowercase"),
        ("", "invalid reference format"),
        ("busybox:", "invalid reference format"),
        ("-busybox", "invalid reference format"),
        ("busy box", "invalid reference format"),
        ("a//b", "invalid reference format"),
        ("busybox:" + "t" * 129, "invalid reference format"),
        ("busybox@sha256:abc", "invalid reference format"),
        (
            "a" * 64,
            "invalid repository name ("
            + "a" * 64
            + "), cannot specify 64-byte hexadecimal strings",
        ),
        (
            "x/" + "a" * 260,
            "invalid reference format: repository name must not be more than 255 characters",
        ),
    ],
)
def test_invalid(text: str, message: str) -> None:
    with pytest.raises(errdefs.InvalidArgument) as exc:
        reference.parse(text)
    assert exc.value.message == message


def test_repo_tag() -> None:
    assert reference.parse_repo_tag("x", "1").familiar() == "x:1"
    assert reference.parse_repo_tag("x:2", "1").familiar() == "x:1"
    assert reference.parse_repo_tag("x:2", None).familiar() == "x:2"
    assert reference.parse_repo_tag("x", None).familiar() == "x:latest"
    with pytest.raises(errdefs.InvalidArgument):
        reference.parse_repo_tag(f"x@{DIGEST}", None)
    with pytest.raises(errdefs.InvalidArgument):
        reference.parse_repo_tag("x", "bad tag")


def test_ids() -> None:
    assert reference.is_id("a" * 64) and not reference.is_id("a" * 63)
    assert reference.is_short_id("abc123") and not reference.is_short_id("xyz")


_component = st.from_regex(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*", fullmatch=True)
_domain = st.sampled_from(["", "localhost/", "localhost:5000/", "quay.io/", "my.reg:443/"])
_tag = st.from_regex(r"[\w][\w.-]{0,20}", fullmatch=True).filter(str.isascii)


@given(_domain, st.lists(_component, min_size=1, max_size=3), st.one_of(st.none(), _tag))
def test_round_trip(domain: str, path: list[str], tag: str | None) -> None:
    text = domain + "/".join(path) + (f":{tag}" if tag else "")
    if len(text) > 200 or reference.is_id(text):
        return
    ref = reference.parse(text)
    assert reference.parse(ref.string()) == ref
    assert reference.parse(ref.familiar()) == ref
    assert ref.tag == (tag or "latest")


@given(st.text(max_size=80))
def test_fuzz_only_invalid_argument(text: str) -> None:
    try:
        ref = reference.parse(text)
    except errdefs.InvalidArgument:
        return
    assert reference.parse(ref.string()) == ref
