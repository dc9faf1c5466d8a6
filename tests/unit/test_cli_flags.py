"""pflag-style parsing and the create body built from run flags."""

from __future__ import annotations

import pytest

from dockyard.cli.flags import Flag, FlagError, HelpRequested, parse
from dockyard.cli.opts import RUN_FLAGS, build_create_body, parse_ports, parse_restart
from dockyard.cli.run import start_error_code

FLAGS = [
    Flag("all", "a", "bool"),
    Flag("quiet", "q", "bool"),
    Flag("name", "", "str"),
    Flag("env", "e", "list"),
    Flag("time", "t", "int"),
]


def test_forms() -> None:
    p = parse(["-aq", "--name=x", "-e", "A=1", "-eB=2", "--time", "5", "pos"], FLAGS)
    assert p.all and p.quiet and p.name == "x" and p.env == ["A=1", "B=2"] and p.time == 5
    assert p.args == ["pos"]
    assert p.changed == {"all", "quiet", "name", "env", "time"}


def test_bool_value_and_double_dash() -> None:
    p = parse(["--all=false", "--", "-q"], FLAGS)
    assert p.all is False and p.args == ["-q"]


def test_not_interspersed_stops_at_first_positional() -> None:
    p = parse(["-a", "busybox", "ls", "-q"], FLAGS, interspersed=False)
    assert p.all and not p.quiet and p.args == ["busybox", "ls", "-q"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--foo"], "unknown flag: --foo"),
        (["-z"], "unknown shorthand flag: 'z' in -z"),
        (["--name"], "flag needs an argument: --name"),
        (["-t", "x"], 'invalid argument "x" for "-t, --time" flag: strconv.ParseInt: '
                      'parsing "x": invalid syntax'),
    ],
)  # fmt: skip
def test_errors(argv: list[str], message: str) -> None:
    with pytest.raises(FlagError) as info:
        parse(argv, FLAGS)
    assert info.value.message == message


def test_help() -> None:
    with pytest.raises(HelpRequested):
        parse(["--help"], FLAGS)


def test_run_body() -> None:
    p = parse(
        ["--rm", "-i", "-e", "A=1", "-l", "k=v", "-w", "/tmp", "-u", "1:2", "--init",
         "--restart", "on-failure:3", "--log-opt", "max-size=1m", "-p", "8080:80",
         "-m", "20m", "busybox", "sh", "-c", "x"],
        RUN_FLAGS, interspersed=False,
    )  # fmt: skip
    body = build_create_body(p, p.args[0], p.args[1:], detach=False)
    assert body["Image"] == "busybox" and body["Cmd"] == ["sh", "-c", "x"]
    assert body["AttachStdin"] and body["StdinOnce"] and body["OpenStdin"]
    assert body["Env"] == ["A=1"] and body["Labels"] == {"k": "v"}
    hc = body["HostConfig"]
    assert hc["AutoRemove"] and hc["Init"] and hc["Memory"] == 20 * 1024 * 1024
    assert hc["RestartPolicy"] == {"Name": "on-failure", "MaximumRetryCount": 3}
    assert hc["LogConfig"]["Config"] == {"max-size": "1m"}
    assert hc["PortBindings"] == {"80/tcp": [{"HostIp": "", "HostPort": "8080"}]}


def test_detached_body_attaches_nothing() -> None:
    p = parse(["-d", "busybox"], RUN_FLAGS, interspersed=False)
    body = build_create_body(p, "busybox", [], detach=True)
    assert not (body["AttachStdin"] or body["AttachStdout"] or body["AttachStderr"])
    assert body["Cmd"] is None


def test_ports_and_restart() -> None:
    exposed, bindings = parse_ports(["127.0.0.1:53:53/udp", "80"])
    assert set(exposed) == {"53/udp", "80/tcp"}
    assert bindings["53/udp"] == [{"HostIp": "127.0.0.1", "HostPort": "53"}]
    assert parse_restart("always") == {"Name": "always", "MaximumRetryCount": 0}


def test_start_error_codes() -> None:
    assert start_error_code('exec: "x": executable file not found in $PATH') == 127
    assert start_error_code("stat /x: no such file or directory") == 127
    assert start_error_code("exec /etc: permission denied") == 126
    assert start_error_code("something else") == 125
