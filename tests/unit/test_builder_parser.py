"""Dockerfile parser: directives, comments, continuations, heredocs, JSON
vs shell form, line numbers, Docker's errors, and fuzzing."""

from __future__ import annotations

import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dockyard import errdefs
from dockyard.builder import parser
from dockyard.builder.parser import DockerfileParseError, Heredoc


def nodes(text: str) -> list[parser.Node]:
    return list(parser.parse(text).nodes)


def test_directives_only_at_top() -> None:
    r = parser.parse("# syntax=docker/dockerfile:1\n# ESCAPE = `\nFROM a\n# escape=\\\n")
    assert dict(r.directives) == {"syntax": "docker/dockerfile:1", "escape": "`"}
    assert r.escape == "`"
    # A comment first, or an empty line first, ends directive parsing.
    assert parser.parse("# hi\n# escape=`\nFROM a").escape == "\\"
    assert parser.parse("\n# escape=`\nFROM a").escape == "\\"
    # An unknown directive is a comment and ends them too.
    assert parser.parse("# foo=bar\n# escape=`\nFROM a").escape == "\\"


def test_directive_errors() -> None:
    with pytest.raises(DockerfileParseError, match="only one escape parser directive can be used"):
        parser.parse("# escape=`\n# escape=`\nFROM a")
    with pytest.raises(DockerfileParseError) as info:
        parser.parse("# escape=x\nFROM a")
    assert info.value.message == "invalid escape token 'x' does not match ` or \\"


def test_continuation_and_comments() -> None:
    (n,) = nodes("RUN echo a \\\n# comment\n    && echo b \\\n\n  c\n")
    assert n.args == ("echo a     && echo b   c",)
    assert (n.start_line, n.end_line) == (1, 5)
    r = parser.parse("RUN a \\\n\n b")
    assert r.warnings == ("Empty continuation line found in: RUN a  b",)


def test_backtick_continuation() -> None:
    (n,) = nodes("# escape=`\nRUN dir c:\\ `\n  x")[0:1]
    assert n.args == ("dir c:\\   x",)
    assert n.start_line == 2


def test_escaped_escape_does_not_continue_only_one_back() -> None:
    # An escaped escape char at the end does not continue the line.
    n = nodes("RUN a \\\\\nRUN b")
    assert [x.args for x in n] == [("a \\\\",), ("b",)]


def test_line_numbers_and_bom() -> None:
    n = nodes("\ufeff# c\n\nFROM a\n\nRUN x \\\n y\nCMD z\n")
    assert [(x.cmd, x.start_line, x.end_line) for x in n] == [
        ("FROM", 3, 3),
        ("RUN", 5, 6),
        ("CMD", 7, 7),
    ]


@pytest.mark.parametrize(
    ("line", "args", "is_json"),
    [
        ('CMD ["a", "b c"]', ("a", "b c"), True),
        ("CMD []", (), True),
        ('CMD ["a", 1x', ('["a", 1x',), False),
        ("CMD [NaN]", ("[NaN]",), False),
        ("CMD echo [x]", ("echo [x]",), False),
        ('RUN  [ "a" ]  ', ("a",), True),
        ('COPY ["a b", "/c"]', ("a b", "/c"), True),
        ("COPY a  b\tc", ("a", "b", "c"), False),
        ('VOLUME ["/a", "/b"]', ("/a", "/b"), True),
        ("VOLUME /a /b", ("/a", "/b"), False),
        ('SHELL ["sh", "-c"]', ("sh", "-c"), True),
        ('HEALTHCHECK CMD ["true"]', ("CMD", "true"), True),
        ("HEALTHCHECK  CMD curl x", ("CMD", "curl x"), False),
        ("HEALTHCHECK NONE", ("NONE",), False),
        ("USER  a b ", ("a b",), False),
        ("FROM a AS b", ("a", "AS", "b"), False),
        ("ARG a=1 b 'c d'=e", ("a=1", "b", "'c d'=e"), False),
        ('ENV a=1 b="x y"', ("a", "1", "=", "b", '"x y"', "="), False),
        ("ENV a  x y ", ("a", "x y", ""), False),
        ("LABEL a\\ b=c", ("a\\ b", "c", "="), False),
        ("BOGUS whatever", (), False),
    ],
)
def test_argument_forms(line: str, args: tuple[str, ...], is_json: bool) -> None:
    (n,) = nodes(line)
    assert n.args == args
    assert n.json is is_json


def test_json_of_non_strings_is_an_error() -> None:
    with pytest.raises(DockerfileParseError) as info:
        parser.parse('FROM a\nCMD ["a", 1]')
    assert info.value.message == (
        "when using JSON array syntax, arrays must be comprised of strings only"
    )
    assert info.value.line == 2


def test_flags() -> None:
    (n,) = nodes('COPY --from=x --chown="a b" --link -- --not-a-flag /d')
    assert n.flags == ("--from=x", "--chown=a b", "--link")
    assert n.args == ("--not-a-flag", "/d")


def test_env_errors() -> None:
    with pytest.raises(DockerfileParseError, match="ENV must have two arguments"):
        parser.parse("ENV a")
    with pytest.raises(DockerfileParseError) as info:
        parser.parse("ENV a=1 b")
    assert info.value.message == (
        'Syntax error - can\'t find = in "b". Must be of the form: name=value'
    )


def test_heredocs() -> None:
    text = "FROM a\nRUN <<EOF <<-'END' cat\necho $x\nEOF\n\tliteral $y\n\tEND\nRUN x\n"
    n = nodes(text)
    assert n[1].heredocs == (
        Heredoc("EOF", "echo $x\n", expand=True, chomp=False),
        Heredoc("END", "\tliteral $y\n", expand=False, chomp=True),
    )
    assert (n[1].start_line, n[1].end_line) == (2, 6)
    assert n[2].start_line == 7
    assert parser.chomp_heredoc("\t\ta\n\tb\n") == "a\nb\n"


def test_heredoc_variants() -> None:
    (n,) = nodes('COPY <<"EOF" 3<<X /dest\nhello\nEOF\nx\nX')
    assert [(h.name, h.expand, h.fd, h.content) for h in n.heredocs] == [
        ("EOF", False, 0, "hello\n"),
        ("X", True, 3, "x\n"),
    ]
    # JSON form and other instructions do not open heredocs.
    assert nodes('RUN ["cat", "<<EOF"]\nRUN x')[1].args == ("x",)
    assert len(nodes("ENV a=<<EOF\nRUN x")) == 2
    (o,) = nodes("ONBUILD RUN <<EOF\nhi\nEOF")
    assert o.heredocs[0].content == "hi\n"
    assert o.sub is not None and o.sub.cmd == "RUN"


def test_parse_heredoc_word() -> None:
    assert parser.parse_heredoc("<<EOF") == Heredoc("EOF")
    assert parser.parse_heredoc("<<-'E F'") == Heredoc("E F", expand=False, chomp=True)
    assert parser.parse_heredoc("<<E'O'F") == Heredoc("EOF", expand=False)
    assert parser.parse_heredoc("a<<EOF") is None
    assert parser.parse_heredoc("<<") is None


def test_unterminated_heredoc() -> None:
    with pytest.raises(DockerfileParseError) as info:
        parser.parse("FROM a\nRUN <<EOF\nx\n")
    assert (info.value.message, info.value.line) == ("unterminated heredoc", 2)


def test_empty_file() -> None:
    for text in ("", "\n\n", "# just a comment\n", "# syntax=x\n"):
        with pytest.raises(DockerfileParseError, match="file with no instructions"):
            parser.parse(text)


def test_error_kind_maps_to_400() -> None:
    assert issubclass(DockerfileParseError, errdefs.InvalidArgument)
    assert DockerfileParseError("x").status == 400


def test_long_line() -> None:
    with pytest.raises(DockerfileParseError, match="max allowed size of 65535"):
        parser.parse("RUN " + "x" * 70000)


def test_fast() -> None:
    text = "FROM busybox AS b\n" + "RUN echo hello \\\n  && ls -la /\nENV A=1 B=2\n" * 66
    start = time.perf_counter()
    for _ in range(10):
        parser.parse(text)
    assert (time.perf_counter() - start) / 10 < 0.02


_LINES = st.sampled_from(
    [
        "FROM a",
        "RUN x \\",
        "RUN <<EOF",
        "RUN <<-E x <<F",
        "EOF",
        "\tE",
        "F",
        "# escape=`",
        "# syntax=x",
        "",
        "   ",
        "# c",
        'COPY ["a", 1]',
        'CMD ["a"',
        "ENV a",
        "ENV a=b c",
        "ONBUILD ONBUILD RUN x",
        "HEALTHCHECK",
        "\\",
        "`",
        "LABEL 'a b'=c \\",
    ]
)


@settings(max_examples=300, deadline=None)
@given(st.lists(_LINES, max_size=12))
def test_fuzz_structured(lines: list[str]) -> None:
    try:
        parser.parse("\n".join(lines))
    except DockerfileParseError:
        pass


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_fuzz_arbitrary_text(text: str) -> None:
    try:
        r = parser.parse(text)
    except DockerfileParseError:
        return
    for n in r.nodes:
        assert 1 <= n.start_line <= n.end_line


@given(st.lists(st.text(st.characters(blacklist_categories=("Cs",)), max_size=10), max_size=5))
def test_json_round_trip(args: list[str]) -> None:
    import json

    (n,) = nodes("CMD " + json.dumps(args))
    assert n.json
    assert list(n.args) == args
