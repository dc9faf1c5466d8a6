"""Variable substitution: buildkit's own tables (envVarTest, wordsTest from
moby/buildkit frontend/dockerfile/shell, Apache-2.0), modifiers, fuzzing."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dockyard import errdefs
from dockyard.builder import shell_lex
from dockyard.builder.shell_lex import ExpansionError, ShellLex

# platform|input|expected ("error" means an ExpansionError)
ENV_VAR_TABLE = r"""
A|hello                    |     hello
A|he'll'o                  |     hello
A|he'llo                   |     error
A|he\'llo                  |     he'llo
A|he\\'llo                 |     error
A|abc\tdef                 |     abctdef
A|"abc\tdef"               |     abc\tdef
A|"abc\\tdef"              |     abc\tdef
A|'abc\tdef'               |     abc\tdef
A|hello\                   |     hello
A|hello\\                  |     hello\
A|"hello                   |     error
A|"hello\"                 |     error
A|"hel'lo"                 |     hel'lo
A|'hello                   |     error
A|'hello\'                 |     hello\
A|'hello\there'            |     hello\there
A|'hello\\there'           |     hello\\there
A|"''"                     |     ''
A|$.                       |     $.
A|he$1x                    |     hex
A|he$.x                    |     he$.x
U|he$pwd.                  |     he.
A|he$PWD                   |     he/home
A|he\$PWD                  |     he$PWD
A|he\\$PWD                 |     he\/home
A|"he\$PWD"                |     he$PWD
A|"he\\$PWD"               |     he\/home
A|\${}                     |     ${}
A|\${}aaa                  |     ${}aaa
A|he\${}                   |     he${}
A|he\${}xx                 |     he${}xx
A|${}                      |     error
A|${}aaa                   |     error
A|he${}                    |     error
A|he${}xx                  |     error
A|he${hi}                  |     he
A|he${hi}xx                |     hexx
A|he${PWD}                 |     he/home
A|he${.}                   |     error
A|he${XXX:-000}xx          |     he000xx
A|he${PWD:-000}xx          |     he/homexx
A|he${XXX:-$PWD}xx         |     he/homexx
A|he${XXX:-${PWD:-yyy}}xx  |     he/homexx
A|he${XXX:-${YYY:-yyy}}xx  |     heyyyxx
A|he${XXX:YYY}             |     error
A|he${XXX?}                |     error
A|he${XXX:?}               |     error
A|he${PWD?}                |     he/home
A|he${PWD:?}               |     he/home
A|he${NULL?}               |     he
A|he${NULL:?}              |     error
A|he${XXX:+${PWD}}xx       |     hexx
A|he${PWD:+${XXX}}xx       |     hexx
A|he${PWD:+${SHELL}}xx     |     hebashxx
A|he${XXX:+000}xx          |     hexx
A|he${PWD:+000}xx          |     he000xx
A|'he${XX}'                |     he${XX}
A|"he${PWD}"               |     he/home
A|"he'$PWD'"               |     he'/home'
A|"$PWD"                   |     /home
A|'$PWD'                   |     $PWD
A|'\$PWD'                  |     \$PWD
A|'"hello"'                |     "hello"
A|he\$PWD                  |     he$PWD
A|"he\$PWD"                |     he$PWD
A|'he\$PWD'                |     he\$PWD
A|he${PWD                  |     error
A|he${PWD:=000}xx          |     error
A|he${PWD:+${PWD}:}xx      |     he/home:xx
A|he${XXX:-\$PWD:}xx       |     he$PWD:xx
A|he${XXX:-\${PWD}z}xx     |     he${PWDz}xx
A|안녕하세요                 |     안녕하세요
A|안'녕'하세요               |     안녕하세요
A|안'녕하세요                |     error
A|안녕\'하세요               |     안녕'하세요
A|안\\'녕하세요              |     error
A|안녕\t하세요               |     안녕t하세요
A|"안녕\t하세요"             |     안녕\t하세요
A|'안녕\t하세요              |     error
A|안녕하세요\                |     안녕하세요
A|안녕하세요\\               |     안녕하세요\
A|"안녕하세요                |     error
A|"안녕하세요\"              |     error
A|"안녕'하세요"              |     안녕'하세요
A|'안녕하세요                |     error
A|'안녕하세요\'              |     안녕하세요\
A|안녕$1x                    |     안녕x
A|안녕$.x                    |     안녕$.x
U|안녕$pwd.                  |     안녕.
A|안녕$PWD                   |     안녕/home
A|안녕\$PWD                  |     안녕$PWD
A|안녕\\$PWD                 |     안녕\/home
A|안녕\${}                   |     안녕${}
A|안녕\${}xx                 |     안녕${}xx
A|안녕${}                    |     error
A|안녕${}xx                  |     error
A|안녕${hi}                  |     안녕
A|안녕${hi}xx                |     안녕xx
A|안녕${PWD}                 |     안녕/home
A|안녕${.}                   |     error
A|안녕${XXX:-000}xx          |     안녕000xx
A|안녕${PWD:-000}xx          |     안녕/homexx
A|안녕${XXX:-$PWD}xx         |     안녕/homexx
A|안녕${XXX:-${PWD:-yyy}}xx  |     안녕/homexx
A|안녕${XXX:-${YYY:-yyy}}xx  |     안녕yyyxx
A|안녕${XXX:YYY}             |     error
A|안녕${XXX:+${PWD}}xx       |     안녕xx
A|안녕${PWD:+${XXX}}xx       |     안녕xx
A|안녕${PWD:+${SHELL}}xx     |     안녕bashxx
A|안녕${XXX:+000}xx          |     안녕xx
A|안녕${PWD:+000}xx          |     안녕000xx
A|'안녕${XX}'                |     안녕${XX}
A|"안녕${PWD}"               |     안녕/home
A|"안녕'$PWD'"               |     안녕'/home'
A|'"안녕"'                   |     "안녕"
A|안녕\$PWD                  |     안녕$PWD
A|"안녕\$PWD"                |     안녕$PWD
A|'안녕\$PWD'                |     안녕\$PWD
A|안녕${PWD                  |     error
A|안녕${PWD:=000}xx          |     error
A|안녕${PWD:+${PWD}:}xx      |     안녕/home:xx
A|안녕${XXX:-\$PWD:}xx       |     안녕$PWD:xx
A|안녕${XXX:-\${PWD}z}xx     |     안녕${PWDz}xx
A|$KOREAN                    |     한국어
A|안녕$KOREAN                |     안녕한국어
A|${{aaa}                   |     error
A|${aaa}}                   |     }
A|${aaa                     |     error
A|${{aaa:-bbb}              |     error
A|${aaa:-bbb}}              |     bbb}
A|${aaa:-bbb                |     error
A|${aaa:-bbb}               |     bbb
A|${aaa:-${bbb:-ccc}}       |     ccc
A|${aaa:-bbb ${foo}         |     error
A|${aaa:-bbb {foo}          |     bbb {foo
A|${:}                      |     error
A|${:-bbb}                  |     error
A|${:+bbb}                  |     error
A|$1                        |
A|${1}                      |
A|${1:+bbb}                 |
A|${1:-bbb}                 |     bbb
A|$2                        |
A|${2}                      |
A|${2:+bbb}                 |
A|${2:-bbb}                 |     bbb
A|$3                        |
A|${3}                      |
A|${3:+bbb}                 |
A|${3:-bbb}                 |     bbb
A|$4                        |
A|${4}                      |
A|${4:+bbb}                 |
A|${4:-bbb}                 |     bbb
A|$5                        |
A|${5}                      |
A|${5:+bbb}                 |
A|${5:-bbb}                 |     bbb
A|$6                        |
A|${6}                      |
A|${6:+bbb}                 |
A|${6:-bbb}                 |     bbb
A|$7                        |
A|${7}                      |
A|${7:+bbb}                 |
A|${7:-bbb}                 |     bbb
A|$8                        |
A|${8}                      |
A|${8:+bbb}                 |
A|${8:-bbb}                 |     bbb
A|$9                        |
A|${9}                      |
A|${9:+bbb}                 |
A|${9:-bbb}                 |     bbb
A|$999                      |
A|${999}                    |
A|${999:+bbb}               |
A|${999:-bbb}               |     bbb
A|$999aaa                   |     aaa
A|${999}aaa                 |     aaa
A|${999:+bbb}aaa            |     aaa
A|${999:-bbb}aaa            |     bbbaaa
A|$001                      |
A|${001}                    |
A|${001:+bbb}               |
A|${001:-bbb}               |     bbb
A|$001aaa                   |     aaa
A|${001}aaa                 |     aaa
A|${001:+bbb}aaa            |     aaa
A|${001:-bbb}aaa            |     bbbaaa
A|$@                        |
A|${@}                      |
A|${@:+bbb}                 |
A|${@:-bbb}                 |     bbb
A|$@@@                      |     @@
A|$@aaa                     |     aaa
A|${@}aaa                   |     aaa
A|${@:+bbb}aaa              |     aaa
A|${@:-bbb}aaa              |     bbbaaa
A|$*                        |
A|${*}                      |
A|${*:+bbb}                 |
A|${*:-bbb}                 |     bbb
A|$#                        |
A|${#}                      |
A|${#:+bbb}                 |
A|${#:-bbb}                 |     bbb
A|$?                        |
A|${?}                      |
A|${?:+bbb}                 |
A|${?:-bbb}                 |     bbb
A|$-                        |
A|${-}                      |
A|${-:+bbb}                 |
A|${-:-bbb}                 |     bbb
A|$$                        |
A|${$}                      |
A|${$:+bbb}                 |
A|${$:-bbb}                 |     bbb
A|$!                        |
A|${!}                      |
A|${!:+bbb}                 |
A|${!:-bbb}                 |     bbb
A|$0                        |
A|${0}                      |
A|${0:+bbb}                 |
A|${0:-bbb}                 |     bbb
"""

WORDS_TABLE = r"""
hello | hello
hello${hi}bye | hellobye
ENV hi=hi
hello${hi}bye | hellohibye
ENV space=abc  def
hello${space}bye | helloabc,defbye
hello"${space}"bye | helloabc  defbye
hello "${space}"bye | hello,abc  defbye
ENV leading=  ab c
hello${leading}def | hello,ab,cdef
hello"${leading}" def | hello  ab c,def
hello"${leading}" | hello  ab c
hello${leading} | hello,ab,c
# next line MUST have 3 trailing spaces, don't erase them!
ENV trailing=ab c<SP><SP><SP>
hello${trailing} | helloab,c
hello${trailing}d | helloab,c,d
hello"${trailing}"d | helloab c   d
# next line MUST have 3 trailing spaces, don't erase them!
hel"lo${trailing}" | helloab c<SP><SP><SP>
hello" there  " | hello there<SP><SP>
hello there     | hello,there
hello\ there | hello there
hello" there | error
hello\" there | hello",there
hello"\\there" | hello\there
hello"\there" | hello\there
hello'\\there' | hello\\there
hello'\there' | hello\there
hello'$there' | hello$there
"""


PWD_ENV = {"PWD": "/home", "SHELL": "bash", "KOREAN": "한국어", "NULL": ""}


def _env_rows() -> list[tuple[str, str]]:
    rows = []
    for line in ENV_VAR_TABLE.strip().splitlines():
        _, source, expected = (part.strip() for part in line.split("|"))
        rows.append((source, expected))
    return rows


@pytest.mark.parametrize(("source", "expected"), _env_rows())
def test_buildkit_env_var_table(source: str, expected: str) -> None:
    lex = ShellLex()
    if expected == "error":
        with pytest.raises(ExpansionError):
            lex.process_word(source, PWD_ENV)
    else:
        assert lex.process_word(source, PWD_ENV) == expected


def _words_cases() -> list[tuple[dict[str, str], str, list[str]]]:
    cases = []
    env: dict[str, str] = {}
    for line in WORDS_TABLE.strip("\n").splitlines():
        line = line.replace("<SP>", " ")
        if line.startswith("#"):
            continue
        if line.startswith("ENV "):
            key, _, value = line[3:].lstrip(" ").partition("=")
            env = {**env, key: value}
            continue
        test, expected = line.split("|")
        cases.append((env, test.strip(), expected.lstrip(" ").split(",")))
    return cases


@pytest.mark.parametrize(("env", "source", "expected"), _words_cases())
def test_buildkit_words_table(env: dict[str, str], source: str, expected: list[str]) -> None:
    try:
        result = ShellLex().process_words(source, env)
    except ExpansionError:
        result = ["error"]
    assert result == expected


@pytest.mark.parametrize(
    ("word", "env", "expected"),
    [
        ("${FOO-aaa} ${BAR-bbb} ${BAZ-ccc}", {"FOO": "xxx", "BAR": ""}, "xxx  ccc"),
        ("${FOO:-aaa} ${BAR:-bbb} ${BAZ:-ccc}", {"FOO": "xxx", "BAR": ""}, "xxx bbb ccc"),
        ("${FOO+aaa} ${BAR+bbb} ${BAZ+ccc}", {"FOO": "xxx", "BAR": ""}, "aaa bbb "),
        ("${FOO:+aaa} ${BAR:+bbb} ${BAZ:+ccc}", {"FOO": "xxx", "BAR": ""}, "aaa  "),
        ("${BAR?bbb}", {"BAR": ""}, ""),
        ("${FOO#()[]{\\}^$.\\*\\?|\\\\}", {"FOO": "()[]{}^$.*?|\\x"}, "x"),
        ("${FOO%%\\**}", {"FOO": "xx**"}, "xx"),
        ("${FOO#*x*y}", {"FOO": "xxyy"}, "y"),
        ("${FOO#*}", {"FOO": "xxyy"}, "xxyy"),
        ("${FOO#$BAR}", {"FOO": "xxyy", "BAR": "x"}, "xyy"),
        ("${FOO##*x}", {"FOO": "xxyy"}, "yy"),
        ("${FOO#?\\?}", {"FOO": "???y"}, "?y"),
        ("${ABC:-.}${FOO%x}${ABC:-.}", {"FOO": "xxyy"}, ".xxyy."),
        ("${FOO%%\\**\\*}", {"FOO": "a***yy*"}, "a"),
        ("${FOO%/*}", {"FOO": "/usr/local/bin"}, "/usr/local"),
        ("${FOO%%/*}", {"FOO": "usr/local/bin"}, "usr"),
        (
            "${FOO/$N/.} - ${FOO//$N/.}",
            {"FOO": "/foo*/*/*.txt", "N": "\\*/"},
            "/foo.*/*.txt - /foo..*.txt",
        ),
        (
            "${FOO/$N/} - ${FOO//$N/}",
            {"FOO": "/tmp/tmp/bar.txt", "N": "/tmp"},
            "/tmp/bar.txt - /bar.txt",
        ),
        ("${FOO//\\//\\/}", {"FOO": "/tmp/foo.txt"}, "\\/tmp\\/foo.txt"),
        ("${FOO///}", {"FOO": "xxyy"}, "xxyy"),
        ("${FOO/$BAR/ww}", {"FOO": "xxyy", "BAR": ""}, "wwxxyy"),
    ],
)
def test_modifiers(word: str, env: dict[str, str], expected: str) -> None:
    assert ShellLex().process_word(word, env) == expected


@pytest.mark.parametrize(
    "word",
    ["${BAZ?ccc}", "${BAR:?bbb}", "${FOO=aaa}", "${FOO:#}", "${FOO:%%}", "${FOO//ww}", "${x"],
)
def test_modifier_errors(word: str) -> None:
    with pytest.raises(ExpansionError):
        ShellLex().process_word(word, {"FOO": "xxx", "BAR": ""})


def test_error_message_is_dockers() -> None:
    with pytest.raises(ExpansionError) as info:
        ShellLex().process_word("${VAR:?message here$ARG}", {"ARG": "x"})
    assert info.value.message == 'failed to process "${VAR:?message here$ARG}": VAR: message herex'
    assert isinstance(info.value, errdefs.InvalidArgument)
    with pytest.raises(ExpansionError, match="missing '}'"):
        ShellLex().process_word("${aaa:-bbb", {})


def test_matches_and_unmatched() -> None:
    r = ShellLex().process_word_with_matches(
        "${FOO:-aaa} ${BAR:-bbb} ${BAZ:-ccc}", {"FOO": "x", "BAR": ""}
    )
    assert r.result == "x bbb ccc"
    assert r.matched == {"FOO", "BAR"}
    assert r.unmatched == {"BAZ"}


def test_backtick_escape() -> None:
    lex = ShellLex("`")
    assert lex.process_word("a`$b c\\d", {"b": "B"}) == "a$b c\\d"
    assert lex.process_word('"x`"y"', {}) == 'x"y'


def test_skip_unset_and_raw_modes() -> None:
    lex = ShellLex(skip_unset_env=True, raw_quotes=True)
    assert lex.process_word("'$a' \"$b\" ${c:-d} $e", {"e": "E"}) == "'$a' \"$b\" ${c:-d} E"


def test_words_keep_text_before_modifier() -> None:
    # buildkit >= 0.15 drops "hello" here (a shared-buffer bug); we do not.
    assert ShellLex().process_words("hello${x:-y} z", {}) == ["helloy", "z"]


def test_platform_args() -> None:
    args = shell_lex.platform_args(target="linux/arm/v6", build="linux/x86_64")
    assert args == {
        "TARGETPLATFORM": "linux/arm/v6",
        "TARGETOS": "linux",
        "TARGETARCH": "arm",
        "TARGETVARIANT": "v6",
        "BUILDPLATFORM": "linux/amd64",
        "BUILDOS": "linux",
        "BUILDARCH": "amd64",
        "BUILDVARIANT": "",
    }
    assert shell_lex.normalize_platform("linux/aarch64") == ("linux", "arm64", "")
    assert shell_lex.normalize_platform("linux/arm") == ("linux", "arm", "v7")
    with pytest.raises(errdefs.InvalidArgument):
        shell_lex.normalize_platform("linux//x")
    assert shell_lex.is_builtin_arg("HTTP_PROXY")
    assert not shell_lex.is_builtin_arg("TARGETARCH")


_ALPHABET = st.sampled_from(list("ab $\\{}:-+?#%/'\"`*<\t =_1@"))


@settings(max_examples=400, deadline=None)
@given(st.text(_ALPHABET, max_size=30), st.booleans(), st.booleans())
def test_lexer_never_crashes(word: str, raw: bool, skip: bool) -> None:
    for escape in ("\\", "`"):
        lex = ShellLex(escape, raw_quotes=raw, raw_escapes=raw, skip_unset_env=skip)
        try:
            lex.process_word(word, {"a": "A B", "b": ""})
            lex.process_words(word, {"a": "A B", "b": ""})
        except ExpansionError:
            pass


@given(st.text(st.characters(blacklist_characters="$\\'\"<"), max_size=40))
def test_plain_text_is_identity(word: str) -> None:
    assert ShellLex().process_word(word, {}) == word
