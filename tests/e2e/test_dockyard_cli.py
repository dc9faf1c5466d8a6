"""Our `dockyard` CLI against the daemon prints what the real docker CLI
prints: same stdout, stderr and exit code for the same arguments."""

from __future__ import annotations

import json
import re
import shutil

import pytest

pytestmark = pytest.mark.skipif(shutil.which("docker") is None, reason="docker CLI missing")


def both(daemon, *args: str):
    """(docker result, dockyard result) for the same arguments."""
    return daemon.docker(*args, check=False), daemon.cli(*args, check=False)


def assert_same(daemon, *args: str) -> bytes:
    """Both CLIs print the same; tables show relative times ("2 seconds ago"),
    so a difference is retried in case the two calls straddled a boundary."""
    for _ in range(3):
        theirs, ours = both(daemon, *args)
        if (ours.returncode, ours.stdout, ours.stderr) == (
            theirs.returncode,
            theirs.stdout,
            theirs.stderr,
        ):
            return theirs.stdout
    assert (ours.returncode, ours.stdout, ours.stderr) == (
        theirs.returncode,
        theirs.stdout,
        theirs.stderr,
    )
    return theirs.stdout


@pytest.fixture(scope="module")
def stopped(daemon):
    """Two containers in different states, for ps and inspect."""
    daemon.docker(
        "run", "--name", "dycli-ran", "busybox", "sh", "-c", "echo a; echo b; exit 4", check=False
    )
    daemon.docker("create", "--name", "dycli-new", "busybox", "echo", "x y")
    yield
    daemon.docker("rm", "-f", "dycli-ran", "dycli-new", check=False)


def test_ps_no_trunc_format(daemon, stopped):
    printed = assert_same(
        daemon, "ps", "-a", "--no-trunc", "--format", "{{.ID}} {{.Names}} {{.Command}}"
    )
    lines = printed.decode().splitlines()
    assert any(line.endswith(' dycli-ran "sh -c echo a; echo b; exit 4"') for line in lines)
    assert all(len(line.split()[0]) == 64 for line in lines)


def test_ps_table_header(daemon, stopped):
    printed = assert_same(daemon, "ps", "-a")
    header = printed.decode().splitlines()[0]
    assert re.split(r"\s{2,}", header.strip()) == [
        "CONTAINER ID",
        "IMAGE",
        "COMMAND",
        "CREATED",
        "STATUS",
        "PORTS",
        "NAMES",
    ]


def test_images_table(daemon):
    printed = assert_same(daemon, "images", "busybox")
    lines = printed.decode().splitlines()
    assert lines[0].split() == ["REPOSITORY", "TAG", "IMAGE", "ID", "CREATED", "SIZE"]
    assert lines[1].split()[:2] == ["busybox", "latest"]
    assert lines[1].split()[-1].endswith("MB")


def test_inspect_format(daemon, stopped):
    printed = assert_same(
        daemon, "inspect", "-f", "{{.State.ExitCode}} {{.Config.Cmd}}", "dycli-ran", "dycli-new"
    )
    assert printed == b"4 [sh -c echo a; echo b; exit 4]\n0 [echo x y]\n"


def test_run_rm_echo(daemon):
    assert assert_same(daemon, "run", "--rm", "busybox", "echo", "hi") == b"hi\n"


@pytest.mark.parametrize(
    ("args", "code"),
    [
        (("run", "--rm", "busybox", "sh", "-c", "exit 3"), 3),
        (("run", "--rm", "--no-such-flag", "busybox", "true"), 125),
        (("run", "--rm", "--name", "bad/name", "busybox", "true"), 125),
        (("run", "--rm", "busybox", "no-such-command"), 127),
        (("run", "--rm", "busybox", "/etc/passwd"), 126),
    ],
)
def test_run_exit_codes(daemon, args, code):
    theirs, ours = both(daemon, *args)
    assert theirs.returncode == code
    assert ours.returncode == code
    assert ours.stderr == theirs.stderr
    assert ours.stdout == theirs.stdout


def test_logs_tail(daemon, stopped):
    assert assert_same(daemon, "logs", "--tail", "1", "dycli-ran") == b"b\n"


def test_rm_unknown(daemon):
    theirs, ours = both(daemon, "rm", "dycli-nosuch")
    assert theirs.returncode == ours.returncode == 1
    assert (
        ours.stderr
        == theirs.stderr
        == b"Error response from daemon: No such container: dycli-nosuch\n"
    )


def test_inspect_unknown(daemon):
    theirs, ours = both(daemon, "inspect", "dycli-nosuch")
    assert theirs.returncode == ours.returncode == 1
    assert ours.stdout == theirs.stdout
    assert ours.stderr == theirs.stderr


def test_version_format(daemon):
    assert assert_same(daemon, "version", "--format", "{{.Server.APIVersion}}") == b"1.50\n"


def test_system_df_summary_and_verbose(daemon, stopped):
    """The docker CLI computes its table from our /system/df; ours must agree,
    build cache records included."""
    dockerfile = b"FROM busybox\nRUN echo df > /df\nLABEL df=1\n"
    daemon.cli("build", "-q", "-", input=dockerfile)
    usage = json.loads(daemon.cli("system", "df", "--format", "{{json .}}").stdout.splitlines()[3])
    assert usage["Type"] == "Build Cache" and int(usage["TotalCount"]) >= 2
    printed = assert_same(daemon, "system", "df").decode()
    lines = printed.splitlines()
    assert lines[0].split() == ["TYPE", "TOTAL", "ACTIVE", "SIZE", "RECLAIMABLE"]
    images = lines[1].split()
    assert images[0] == "Images" and int(images[1]) >= 1
    assert lines[2].split()[:2] == ["Containers", lines[2].split()[1]]
    assert int(lines[2].split()[1]) >= 2  # the fixture's two containers
    assert_same(daemon, "system", "df", "--format", "{{.Type}}={{.TotalCount}}")
    # many rows of many ages: some relative time crosses a boundary between
    # the two calls, so times are masked (and with them the column widths)
    theirs, ours = both(daemon, "system", "df", "-v")
    assert (ours.returncode, ours.stderr) == (theirs.returncode, theirs.stderr)
    assert _masked(ours.stdout) == _masked(theirs.stdout)
    verbose = ours.stdout.decode()
    assert "Images space usage:" in verbose and "dycli-ran" in verbose


_AGO = re.compile(
    rb"(Less than a second|About a minute|About an hour|\d+ (second|minute|hour|day|week|month"
    rb"|year)s?)( ago)?"
)


def _masked(table: bytes) -> list[list[bytes]]:
    return [_AGO.sub(b"AGO", line).split() for line in table.splitlines()]
