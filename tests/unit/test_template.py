"""The Go text/template subset behind --format."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dockyard.cli.tabwriter import tabwrite
from dockyard.cli.template import TemplateError, parse
from dockyard.gofmt import go_float, sprintf

DATA = {
    "Names": ["/a", "/b"],
    "State": {"ExitCode": 0, "Running": True, "Status": "running"},
    "Config": {"Cmd": ["sh", "-c", "echo"], "Labels": {"b": "2", "a": "1"}, "Env": None},
    "Big": 1e6,
    "Half": 1.5,
    "Count": 3,
}


@pytest.mark.parametrize(
    ("tmpl", "out"),
    [
        ("{{.State.ExitCode}}", "0"),
        ("{{.Config.Cmd}}", "[sh -c echo]"),
        ("{{.Config.Labels}}", "map[a:1 b:2]"),
        ("{{.Config.Env}}", "<no value>"),
        ("{{.Missing}}", "<no value>"),
        ("{{.State.Running}}", "true"),
        ("{{.Big}} {{.Half}} {{.Count}}", "1e+06 1.5 3"),
        ("{{json .Config.Cmd}}", '["sh","-c","echo"]'),
        ('{{json "<&>"}}', '"<&>"'),
        ('{{join .Names ","}}', "/a,/b"),
        ('{{index .Config.Labels "a"}}', "1"),
        ("{{range .Names}}[{{.}}]{{end}}", "[/a][/b]"),
        ("{{range $i, $n := .Names}}{{$i}}{{$n}} {{end}}", "0/a 1/b "),
        ("{{range .Nope}}x{{else}}empty{{end}}", "empty"),
        ("{{if .State.Running}}up{{else}}down{{end}}", "up"),
        ("{{if eq .Count 1}}one{{else if eq .Count 3}}three{{else}}x{{end}}", "three"),
        ('{{printf "%s=%d" "n" .Count}}', "n=3"),
        ('{{printf "%5s|%-3d|%q" "ab" 7 "x"}}', '   ab|7  |"x"'),
        ('{{lower "AB"}}{{upper "cd"}}{{title "hello world"}}', "abCDHello World"),
        ('{{split "a,b" ","}}', "[a b]"),
        ('{{truncate "abcdef" 3}}|{{pad "x" 1 2}}|', "abc| x  |"),
        ("a  {{- .Count -}}  b", "a3b"),
        ("{{/* comment */}}ok", "ok"),
        ("{{with .State}}{{.Status}}{{end}}", "running"),
        ("{{.Names | len}}", "2"),
        ("{{$x := .Count}}{{$x}}", "3"),
        ("{{(index .Names 1)}}", "/b"),
        ("{{if and .State.Running (not .Config.Env)}}y{{end}}", "y"),
        ('{{range .Names}}{{if eq . "/b"}}{{break}}{{end}}{{.}}{{end}}', "/a"),
    ],
)
def test_execute(tmpl: str, out: str) -> None:
    assert parse(tmpl).execute(DATA) == out


@pytest.mark.parametrize(
    ("tmpl", "message"),
    [
        ("{{.Foo", "template: :1: unclosed action"),
        ("{{end}}", "template: :1: unexpected {{end}}"),
        ("{{if .X}}", "template: :1: unexpected EOF"),
        ("{{nope}}", 'template: :1: function "nope" not defined'),
    ],
)
def test_parse_errors(tmpl: str, message: str) -> None:
    with pytest.raises(TemplateError) as info:
        parse(tmpl)
    assert info.value.message == message


def test_exec_errors() -> None:
    with pytest.raises(TemplateError, match=r"at <.State.Nope.X>: nil pointer"):
        parse("{{.State.Nope.X}}").execute(DATA)
    with pytest.raises(TemplateError, match="index out of range: 5"):
        parse("{{index .Names 5}}").execute(DATA)


def test_methods_on_contexts() -> None:
    class Row:
        def ID(self) -> str:
            return "abc"

        def Label(self, key: str) -> str:
            return key.upper()

    assert parse('{{.ID}} {{.Label "k"}}').execute(Row()) == "abc K"
    with pytest.raises(TemplateError, match="can't evaluate field Nope"):
        parse("{{.Nope}}").execute(Row())


def test_go_float_and_sprintf() -> None:
    assert go_float(1e6) == "1e+06"
    assert go_float(123456.0) == "123456"
    assert go_float(0.0001) == "0.0001"
    assert go_float(0.00001) == "1e-05"
    assert sprintf("%d%%", 5) == "5%"
    assert sprintf("%s") == "%!s(MISSING)"
    assert sprintf("%d", "x") == "%!d(string=x)"


def test_tabwriter_matches_docker() -> None:
    text = "CONTAINER ID\tIMAGE\tNAMES\nabc\tbusybox:latest\tfoo\n"
    assert tabwrite(text) == (
        "CONTAINER ID   IMAGE            NAMES\nabc            busybox:latest   foo\n"
    )
    # minimum width 10, padding 3; the last cell is not padded
    assert tabwrite("A\tB\n") == "A         B\n"


_ALPHABET = st.sampled_from(
    ["{{", "}}", ".", "Names", "State", "ExitCode", " ", "-", "|", "(", ")", '"', "$",
     "x", ":=", "if", "end", "range", "else", "json", "index", "1", "`", "/*", "*/", "\n"]
)  # fmt: skip


@settings(max_examples=400, deadline=None)
@given(st.lists(_ALPHABET, max_size=20).map("".join))
def test_fuzz_only_template_errors(text: str) -> None:
    try:
        parse(text).execute(DATA)
    except TemplateError:
        pass


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=30))
def test_fuzz_random_text(text: str) -> None:
    try:
        parse(text).execute(DATA)
    except TemplateError:
        pass
