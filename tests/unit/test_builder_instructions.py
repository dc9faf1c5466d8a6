"""Typed instructions and stages: every instruction, Docker's messages,
target resolution, expansion per instruction, and fuzzing."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dockyard.builder import instructions as ins
from dockyard.builder.instructions import DockerfileParseError, parse_dockerfile
from dockyard.builder.shell_lex import ExpansionError


def one(line: str) -> ins.Instruction:
    (stage,) = parse_dockerfile("FROM scratch\n" + line).stages
    (inst,) = stage.instructions
    return inst


def error(text: str) -> str:
    with pytest.raises(DockerfileParseError) as info:
        parse_dockerfile(text)
    return info.value.message


def test_stages_and_meta_args() -> None:
    df = parse_dockerfile(
        "ARG A=1 B\nARG C\nFROM --platform=$P busybox:1 AS Build\nRUN x\nfrom build\nCMD y\n"
    )
    assert [[(a.key, a.value) for a in arg.args] for arg in df.meta_args] == [
        [("A", "1"), ("B", None)],
        [("C", None)],
    ]
    s0, s1 = df.stages
    assert (s0.index, s0.name, s0.base, s0.platform, s0.line) == (0, "build", "busybox:1", "$P", 3)
    assert s0.code == "FROM --platform=$P busybox:1 AS Build"
    assert [type(i) for i in s0.instructions] == [ins.Run]
    assert (s1.name, s1.base, s1.line) == ("", "build", 5)


def test_from_errors() -> None:
    assert error("FROM a AS 1x") == (
        'dockerfile parse error on line 1: invalid name for build stage: "1x", '
        "name can't start with a number or contain symbols"
    )
    assert error("FROM a b") == (
        "dockerfile parse error on line 1: FROM requires either one or three arguments"
    )
    assert error("RUN x") == "no build stage in current context"


def test_unknown_instruction_message() -> None:
    assert error("FROM a\n\nFORM b") == (
        "dockerfile parse error on line 3: unknown instruction: FORM (did you mean FROM?)"
    )
    assert error("FROM a\nxyzzy") == "dockerfile parse error on line 2: unknown instruction: xyzzy"
    assert error("FROM a\nrum x") == (
        "dockerfile parse error on line 2: unknown instruction: rum (did you mean run?)"
    )


def test_run_forms_and_flags() -> None:
    run = one("RUN --mount=type=cache,target=/c --network=none echo $HOME")
    assert isinstance(run, ins.Run)
    assert run.cmd == ("echo $HOME",) and run.prepend_shell
    assert run.mounts == ("type=cache,target=/c",)
    assert run.network == "none" and run.security == "sandbox"
    assert run.flags_used == ("mount", "network")
    run = one('RUN ["a", "b"]')
    assert isinstance(run, ins.Run) and run.cmd == ("a", "b") and not run.prepend_shell
    run = one("RUN <<EOF\necho hi\nEOF")
    assert isinstance(run, ins.Run) and run.files[0].content == "echo hi\n"
    assert "invalid network mode" in error("FROM a\nRUN --network=bridge x")
    assert error("FROM a\nRUN --security=x y").endswith('security "x" is not valid')
    assert error("FROM a\nRUN --foo x").endswith("unknown flag: --foo")


def test_cmd_entrypoint_shell() -> None:
    cmd = one("CMD echo hi")
    assert isinstance(cmd, ins.Cmd) and cmd.cmd == ("echo hi",) and cmd.prepend_shell
    ep = one('ENTRYPOINT ["sh", "-c"]')
    assert isinstance(ep, ins.Entrypoint) and ep.cmd == ("sh", "-c")
    sh = one('SHELL ["bash", "-ec"]')
    assert isinstance(sh, ins.Shell) and sh.shell == ("bash", "-ec")
    assert error("FROM a\nSHELL bash").endswith("SHELL requires the arguments to be in JSON form")
    assert error("FROM a\nSHELL []").endswith("SHELL requires at least one argument")


def test_env_and_label() -> None:
    env = one('ENV A=1 B="two words" C=a\\ b')
    assert isinstance(env, ins.Env)
    assert [(p.key, p.value, p.no_delim) for p in env.pairs] == [
        ("A", "1", False),
        ("B", '"two words"', False),
        ("C", "a\\ b", False),
    ]
    legacy = one("ENV PATH /a:$PATH  x")
    assert isinstance(legacy, ins.Env)
    assert legacy.pairs == (ins.KeyValue("PATH", "/a:$PATH  x", True),)
    label = one('LABEL "com.x"="y z" a=b')
    assert isinstance(label, ins.Label)
    assert [(p.key, p.value) for p in label.pairs] == [('"com.x"', '"y z"'), ("a", "b")]
    assert error("FROM a\nENV =x").endswith("ENV names can not be blank")
    assert error("FROM a\nLABEL").endswith("LABEL requires at least one argument")


def test_copy_and_add() -> None:
    c = one(
        "COPY --from=0 --chown=1:2 --chmod=644 --link --parents --exclude=*.md --exclude=x a b /d/"
    )
    assert isinstance(c, ins.Copy)
    assert (c.from_, c.chown, c.chmod, c.link, c.parents) == ("0", "1:2", "644", True, True)
    assert c.excludes == ("*.md", "x") and c.sources == ("a", "b") and c.dest == "/d/"
    a = one("ADD --checksum=sha256:abc --keep-git-dir=false https://x/y.tgz /z")
    assert isinstance(a, ins.Add)
    assert (a.checksum, a.keep_git_dir, a.unpack) == ("sha256:abc", False, None)
    j = one('COPY ["a b", "/c d/"]')
    assert isinstance(j, ins.Copy) and j.sources == ("a b",) and j.dest == "/c d/" and j.json
    h = one("COPY <<A <<-'B' /dest/\nx $v\nA\n\ty\n\tB")
    assert isinstance(h, ins.Copy) and h.sources == ()
    assert h.contents == (
        ins.SourceContent("A", "x $v\n", True),
        ins.SourceContent("B", "y\n", False),
    )
    assert error("FROM a\nCOPY x") == (
        "dockerfile parse error on line 2: COPY requires at least two arguments, but only one "
        "was provided. Destination could not be determined"
    )
    assert error("FROM a\nCOPY a <<EOF\nx\nEOF").endswith(
        "COPY cannot accept a heredoc as a destination"
    )
    assert error("FROM a\nCOPY --from a b").endswith("missing a value on flag: --from")
    assert error("FROM a\nCOPY --link=maybe a b").endswith(
        "expecting boolean value for flag --link, not: maybe"
    )
    assert error("FROM a\nCOPY --from=a --from=b a b").endswith("duplicate flag specified: --from")
    assert error("FROM a\nADD --from=x a b").endswith("unknown flag: --from")


def test_simple_instructions() -> None:
    assert one("WORKDIR /a b") == ins.Workdir(code="WORKDIR /a b", line=2, end_line=2, path="/a b")
    assert one("USER 1000:1000") == ins.User(
        code="USER 1000:1000", line=2, end_line=2, user="1000:1000"
    )
    v = one("VOLUME /a /b")
    assert isinstance(v, ins.Volume) and v.volumes == ("/a", "/b")
    e = one("EXPOSE 8080 80/udp 443")
    assert isinstance(e, ins.Expose) and e.ports == ("443", "80/udp", "8080")
    s = one("STOPSIGNAL SIGKILL")
    assert isinstance(s, ins.StopSignal) and s.signal == "SIGKILL"
    m = one("MAINTAINER Jane <j@x>")
    assert isinstance(m, ins.Maintainer) and m.maintainer == "Jane <j@x>"
    assert error("FROM a\nWORKDIR").endswith("WORKDIR requires exactly one argument")
    assert error('FROM a\nVOLUME [""]').endswith("VOLUME specified can not be an empty string")


def test_healthcheck() -> None:
    h = one(
        "HEALTHCHECK --interval=1m30s --timeout=1.5s --start-period=0 "
        "--start-interval=500ms --retries=3 CMD curl -f x || exit 1"
    )
    assert isinstance(h, ins.Healthcheck)
    assert h.test == ("CMD-SHELL", "curl -f x || exit 1")
    assert (h.interval, h.timeout, h.start_period, h.start_interval, h.retries) == (
        90_000_000_000,
        1_500_000_000,
        0,
        500_000_000,
        3,
    )
    h = one('HEALTHCHECK CMD ["true"]')
    assert isinstance(h, ins.Healthcheck) and h.test == ("CMD", "true")
    h = one("healthcheck none")
    assert isinstance(h, ins.Healthcheck) and h.test == ("NONE",)
    assert error("FROM a\nHEALTHCHECK NONE x").endswith("HEALTHCHECK NONE takes no arguments")
    assert error("FROM a\nHEALTHCHECK FOO x").endswith(
        'Unknown type "FOO" in HEALTHCHECK (try CMD)'
    )
    assert error("FROM a\nHEALTHCHECK CMD").endswith("Missing command after HEALTHCHECK CMD")
    assert error("FROM a\nHEALTHCHECK --interval=5 CMD x").endswith(
        'time: missing unit in duration "5"'
    )
    assert error("FROM a\nHEALTHCHECK --retries=-1 CMD x").endswith(
        "--retries cannot be negative (-1)"
    )


@pytest.mark.parametrize(
    ("text", "ns"),
    [
        ("0", 0),
        ("1h", 3_600_000_000_000),
        ("1.5s", 1_500_000_000),
        ("-2ms", -2_000_000),
        ("1h2m3s4ms5us6ns", 3_723_004_005_006),
        (".5m", 30_000_000_000),
        ("3µs", 3000),
    ],
)
def test_go_durations(text: str, ns: int) -> None:
    assert ins.parse_go_duration(text) == ns


@pytest.mark.parametrize("text", ["", "s", "1", "1x", ".s", "1.2.3s", "9999999999999h"])
def test_bad_go_durations(text: str) -> None:
    with pytest.raises(ValueError, match=r"^time: "):
        ins.parse_go_duration(text)


def test_onbuild() -> None:
    o = one("ONBUILD  COPY . /app")
    assert isinstance(o, ins.Onbuild)
    assert (o.expression, o.trigger) == ("COPY . /app", "COPY")
    o = one("ONBUILD RUN <<EOF\nhi\nEOF")
    assert isinstance(o, ins.Onbuild) and o.expression == "RUN <<EOF\nhi\nEOF"
    assert error("FROM a\nONBUILD ONBUILD RUN x").endswith(
        "Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed"
    )
    assert error("FROM a\nONBUILD maintainer x").endswith(
        "MAINTAINER isn't allowed as an ONBUILD trigger"
    )
    trigger = ins.parse_trigger("RUN echo hi")
    assert isinstance(trigger, ins.Run) and trigger.cmd == ("echo hi",)


def test_targets_and_dependencies() -> None:
    df = parse_dockerfile(
        "ARG BASE=base\n"
        "FROM busybox AS base\n"
        "FROM busybox AS tools\n"
        "FROM ${BASE} AS build\n"
        "COPY --from=tools /a /a\n"
        "FROM busybox AS unrelated\n"
        "FROM busybox\n"
        "COPY --from=build /a /a\n"
        "COPY --from=0 /b /b\n"
        "COPY --from=alpine /c /c\n"
    )
    assert df.stages_needed(meta_env={"BASE": "base"}) == [0, 1, 2, 4]
    assert df.stages_needed("BUILD", meta_env={"BASE": "base"}) == [0, 1, 2]
    assert df.stages_needed("build", meta_env={"BASE": "alpine"}) == [1, 2]
    assert df.stages_needed("unrelated") == [3]
    assert df.target_index(None) == 4
    with pytest.raises(DockerfileParseError) as info:
        df.target_index("nope")
    assert info.value.message == "failed to reach build target nope in Dockerfile"
    assert df.find_stage("1") == 1 and df.find_stage("9") is None
    assert df.find_stage("build", before=2) is None


def test_expand_per_instruction() -> None:
    env = {"A": "x", "P": "80 443", "U": "nobody"}
    df = parse_dockerfile(
        "FROM a\nENV K_$A=\"$A y\" L='$A'\nLABEL $A=${A}1\nCOPY --chown=$U --from=$A $A/* /d/$A\n"
        "WORKDIR /w/$A\nUSER $U\nVOLUME /v/$A\nSTOPSIGNAL SIG$A\nEXPOSE $P\nARG N=$A\n"
        "RUN echo $A\nCMD $A\n"
    )
    got = [ins.expand(i, env) for i in df.stages[0].instructions]
    e, lab, c, w, u, v, s, x, a, r, cmd = got
    assert isinstance(e, ins.Env) and [(p.key, p.value) for p in e.pairs] == [
        ("K_x", "x y"),
        ("L", "$A"),
    ]
    assert isinstance(lab, ins.Label) and lab.pairs[0] == ins.KeyValue("x", "x1")
    assert isinstance(c, ins.Copy) and (c.chown, c.from_, c.sources, c.dest) == (
        "nobody",
        "x",
        ("x/*",),
        "/d/x",
    )
    assert isinstance(w, ins.Workdir) and w.path == "/w/x"
    assert isinstance(u, ins.User) and u.user == "nobody"
    assert isinstance(v, ins.Volume) and v.volumes == ("/v/x",)
    assert isinstance(s, ins.StopSignal) and s.signal == "SIGx"
    assert isinstance(x, ins.Expose) and x.ports == ("80", "443")
    assert isinstance(a, ins.Arg) and a.args == (ins.ArgSpec("N", "x"),)
    assert r == df.stages[0].instructions[9] and cmd == df.stages[0].instructions[10]
    bad = parse_dockerfile("FROM a\nUSER ${x").stages[0].instructions[0]
    with pytest.raises(ExpansionError):
        ins.expand(bad, {})


def test_expand_from_and_heredoc() -> None:
    df = parse_dockerfile("ARG V=1\nFROM --platform=$P img:$V")
    assert ins.expand_from(df.stages[0], {"V": "2", "P": "linux/arm64"}) == (
        "img:2",
        "linux/arm64",
    )
    content = ins.SourceContent("f", 'a "$X" \\$Y\n', True)
    assert ins.expand_heredoc(content, {"X": "1", "Y": "2"}) == 'a "1" $Y\n'
    assert ins.expand_heredoc(ins.SourceContent("f", "$X", False), {"X": "1"}) == "$X"


def test_empty_dockerfile() -> None:
    assert error("") == "the Dockerfile (Dockerfile) cannot be empty"
    df = parse_dockerfile("ARG A")
    with pytest.raises(DockerfileParseError, match="Is your Dockerfile empty"):
        df.target_index(None)


_LINES = st.sampled_from(
    [
        "FROM a AS b",
        "FROM $X",
        "ARG A=1",
        "RUN --mount=type=bind x",
        "RUN --network=bad x",
        "COPY --from=b a /c",
        "COPY <<EOF /x",
        "EOF",
        "HEALTHCHECK --interval=1x CMD y",
        "HEALTHCHECK NONE",
        "ONBUILD ONBUILD x",
        "ONBUILD RUN y",
        "EXPOSE 80",
        "ENV a b",
        "LABEL a",
        "SHELL x",
        "CMD []",
        "FORM",
        "VOLUME",
        "\\",
    ]
)


@settings(max_examples=300, deadline=None)
@given(st.lists(_LINES, max_size=10))
def test_fuzz_only_parse_errors(lines: list[str]) -> None:
    try:
        df = parse_dockerfile("\n".join(lines))
    except DockerfileParseError:
        return
    for stage in df.stages:
        try:
            df.stages_needed(stage.name or None)
        except DockerfileParseError:
            pass
        for inst in stage.instructions:
            try:
                ins.expand(inst, {"X": "1"})
            except ExpansionError:
                pass


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=120))
def test_fuzz_arbitrary(text: str) -> None:
    try:
        parse_dockerfile(text)
    except DockerfileParseError:
        pass
