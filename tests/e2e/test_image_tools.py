"""The real docker CLI against our daemon: diff, commit, cp, export, image prune."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import tarfile

import pytest

pytestmark = pytest.mark.skipif(shutil.which("docker") is None, reason="docker CLI missing")


def out(result) -> str:
    return result.stdout.decode().strip()


@pytest.fixture
def c1(daemon):
    name = f"tools-{os.getpid()}-{os.urandom(3).hex()}"
    daemon.docker("run", "--name", name, "busybox", "sh", "-c", "echo x > /tmp/f; rm /etc/group")
    yield name
    daemon.docker("rm", "-f", name, check=False)


def test_diff_lists_dockers_changes(daemon, c1):
    lines = out(daemon.docker("diff", c1)).splitlines()
    assert lines == ["C /etc", "D /etc/group", "C /tmp", "A /tmp/f"]


def test_commit_with_change_then_run(daemon, c1):
    tag = f"demo-{c1}:2"
    result = daemon.docker(
        "commit", "-c", 'CMD ["cat","/tmp/f"]', "-m", "msg", "-a", "me", c1, tag, check=False
    )
    assert result.returncode == 0, result.stderr
    image_id = out(result)
    assert image_id.startswith("sha256:")
    try:
        assert out(daemon.docker("run", "--rm", tag)) == "x"
        fmt = "{{.Author}}|{{.Comment}}|{{json .Config.Cmd}}|{{len .RootFS.Layers}}"
        assert out(daemon.docker("image", "inspect", "-f", fmt, tag)) == 'me|msg|["cat","/tmp/f"]|2'
        history = out(daemon.docker("history", "--no-trunc", "--format", "{{.Comment}}", tag))
        assert history.splitlines()[0] == "msg"
        # the group file stays deleted in the new image
        result = daemon.docker("run", "--rm", tag, "ls", "/etc/group", check=False)
        assert result.returncode != 0
    finally:
        daemon.docker("rmi", tag, check=False)


def test_cp_both_ways(daemon, c1, tmp_path):
    daemon.docker("cp", f"{c1}:/tmp/f", str(tmp_path / "f"))
    assert (tmp_path / "f").read_text() == "x\n"
    (tmp_path / "g").write_text("to the container\n")
    daemon.docker("cp", str(tmp_path / "g"), f"{c1}:/tmp/g")
    daemon.docker("cp", f"{c1}:/tmp/g", str(tmp_path / "g2"))
    assert (tmp_path / "g2").read_text() == "to the container\n"
    # a directory, its contents with "/.", and a tar on stdout
    (tmp_path / "d/sub").mkdir(parents=True)
    (tmp_path / "d/sub/h").write_text("h")
    daemon.docker("cp", str(tmp_path / "d"), f"{c1}:/srv")
    daemon.docker("cp", f"{c1}:/srv/.", str(tmp_path / "back"))
    assert (tmp_path / "back/sub/h").read_text() == "h"
    raw = daemon.docker("cp", f"{c1}:/tmp/f", "-").stdout
    with tarfile.open(fileobj=io.BytesIO(raw)) as tar:
        assert tar.getnames() == ["f"]
    missing = daemon.docker("cp", f"{c1}:/nope", str(tmp_path), check=False)
    assert missing.returncode != 0 and b"Could not find the file /nope" in missing.stderr
    # the docker CLI hangs up once it has the tar's end: that is not a daemon error
    assert "Traceback" not in daemon.log.read_text(errors="replace")


def test_cp_into_a_symlink_pointing_outside_stays_inside(daemon, tmp_path):
    outside = tmp_path / "host-dir"
    outside.mkdir()
    name = f"cpesc-{os.getpid()}"
    daemon.docker(
        "run",
        "--name",
        name,
        "busybox",
        "sh",
        "-c",
        f"mkdir -p /x {outside} && ln -s {outside} /x/esc && ln -s ../../.. /x/up",
    )
    try:
        (tmp_path / "payload").write_text("pwned")
        daemon.docker("cp", str(tmp_path / "payload"), f"{name}:/x/esc/payload")
        daemon.docker("cp", str(tmp_path / "payload"), f"{name}:/x/esc/")
        daemon.docker("cp", str(tmp_path / "payload"), f"{name}:/x/up/up-payload")
        assert list(outside.iterdir()) == []
        assert not (tmp_path.parent.parent / "up-payload").exists()
        got = daemon.docker("cp", f"{name}:/up-payload", "-")  # ".." stopped at the root
        assert got.returncode == 0
        # it went to the same path inside the container's root instead
        got = daemon.docker("cp", f"{name}:{outside}/payload", "-", check=False)
        assert got.returncode == 0
    finally:
        daemon.docker("rm", "-f", name, check=False)


def test_cp_follow_link(daemon, tmp_path):
    name = f"cpL-{os.getpid()}"
    daemon.docker("run", "--name", name, "busybox", "sh", "-c", "echo t > /t; ln -s /t /l")
    try:
        daemon.docker("cp", f"{name}:/l", str(tmp_path / "nolink"))
        assert (tmp_path / "nolink").is_symlink()
        daemon.docker("cp", "-L", f"{name}:/l", str(tmp_path / "link"))
        assert (tmp_path / "link").read_text() == "t\n"
    finally:
        daemon.docker("rm", "-f", name, check=False)


def test_export_is_the_whole_tree(daemon, c1):
    export = subprocess.run(
        ["docker", "export", c1],
        env={**daemon.env, "DOCKER_CONFIG": str(daemon.base / "dcfg")},
        capture_output=True,
        check=True,
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(export)) as tar:
        names = tar.getnames()
    assert "bin/busybox" in names and "tmp/f" in names and "etc/passwd" in names
    assert "etc/group" not in names


def test_image_prune_removes_dangling(daemon, c1):
    first = out(daemon.docker("commit", c1, f"prune-{c1}:1"))
    daemon.docker("commit", c1, f"prune-{c1}:1")  # the first loses its tag: dangling
    result = out(daemon.docker("image", "prune", "-f"))
    assert f"deleted: {first}" in result
    assert "Total reclaimed space:" in result
    daemon.docker("rmi", f"prune-{c1}:1")


# -- our own CLI: the same commands, the same output ------------------------------------


def test_dockyard_cli_diff_commit_export_cp_prune(daemon, c1, tmp_path):
    assert daemon.cli("diff", c1).stdout == daemon.docker("diff", c1).stdout
    tag = f"dy-{c1}:1"
    image_id = out(daemon.cli("commit", "-c", 'CMD ["cat","/tmp/f"]', "-m", "m", c1, tag))
    assert image_id.startswith("sha256:")
    assert out(daemon.docker("run", "--rm", tag)) == "x"
    exported = tmp_path / "c1.tar"
    daemon.cli("export", "-o", str(exported), c1)
    with tarfile.open(exported) as tar:
        assert "tmp/f" in tar.getnames()
    # cp out: a file, a directory's contents, a tar on stdout; cp in: a file, a dir
    daemon.cli("cp", f"{c1}:/tmp/f", str(tmp_path / "f"))
    assert (tmp_path / "f").read_text() == "x\n"
    (tmp_path / "d/sub").mkdir(parents=True)
    (tmp_path / "d/sub/h").write_text("h")
    daemon.cli("cp", str(tmp_path / "d"), f"{c1}:/srv")
    daemon.cli("cp", f"{c1}:/srv/.", str(tmp_path / "back"))
    assert (tmp_path / "back/sub/h").read_text() == "h"
    daemon.cli("cp", str(tmp_path / "f"), f"{c1}:/srv/")
    assert out(daemon.docker("cp", f"{c1}:/srv/f", "-")).startswith("f")
    raw = daemon.cli("cp", f"{c1}:/tmp/f", "-").stdout
    with tarfile.open(fileobj=io.BytesIO(raw)) as tar:
        assert tar.getnames() == ["f"]
    missing = daemon.cli("cp", f"{c1}:/nope", str(tmp_path), check=False)
    assert missing.returncode == 1
    assert b"Could not find the file /nope in container" in missing.stderr
    # prune: retag so the first image is dangling
    daemon.cli("commit", c1, tag)
    pruned = out(daemon.cli("image", "prune", "-f"))
    assert f"deleted: {image_id}" in pruned and "Total reclaimed space:" in pruned
    daemon.docker("rmi", tag)


def test_commit_and_cp_a_running_container(daemon):
    name = f"running-{os.getpid()}"
    daemon.docker("run", "-d", "--name", name, "busybox", "sh", "-c", "echo r > /r; sleep 60")
    try:
        for _ in range(50):
            if daemon.docker("cp", f"{name}:/r", "-", check=False).returncode == 0:
                break
        tag = f"run-{name}:1"
        result = daemon.docker("commit", name, tag, check=False)  # paused (freezer) meanwhile
        assert result.returncode == 0, result.stderr
        state = out(daemon.docker("inspect", "-f", "{{.State.Status}}", name))
        assert state == "running"
        assert out(daemon.docker("run", "--rm", tag, "cat", "/r")) == "r"
        daemon.docker("rmi", tag)
    finally:
        daemon.docker("rm", "-f", name, check=False)


def test_cp_into_a_stopped_container_holds_off_its_start(daemon):
    """A PUT into a stopped container's snapshot holds the container's lock:
    a `docker start` issued meanwhile waits until the extraction is done."""
    import socket
    import time

    name = f"cplock-{os.getpid()}"
    daemon.docker("create", "--name", name, "busybox", "sleep", "30")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        data = b"slow\n" * 1000
        info = tarfile.TarInfo("slow")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    payload = buf.getvalue()
    sock = socket.socket(socket.AF_UNIX)
    start = None
    try:
        sock.connect(str(daemon.socket))
        sock.sendall(
            f"PUT /containers/{name}/archive?path=/tmp HTTP/1.1\r\nHost: d\r\n"
            "Content-Type: application/x-tar\r\nTransfer-Encoding: chunked\r\n\r\n".encode()
        )
        half = payload[:2048]
        sock.sendall(b"%x\r\n%s\r\n" % (len(half), half))
        time.sleep(0.2)  # the daemon is now extracting, waiting for more body
        start = subprocess.Popen(
            ["docker", "start", name],
            env={**daemon.env, "DOCKER_CONFIG": str(daemon.base / "dcfg")},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        time.sleep(0.7)
        assert start.poll() is None  # blocked on the container's lock
        rest = payload[2048:]
        sock.sendall(b"%x\r\n%s\r\n0\r\n\r\n" % (len(rest), rest))
        assert sock.recv(4096).startswith(b"HTTP/1.1 200")
        assert start.wait(timeout=30) == 0, start.stderr.read() if start.stderr else ""
        raw = daemon.docker("cp", f"{name}:/tmp/slow", "-").stdout
        with tarfile.open(fileobj=io.BytesIO(raw)) as tar:
            got = tar.extractfile("slow")
            assert got is not None and got.read() == data
    finally:
        sock.close()
        if start is not None and start.poll() is None:
            start.kill()
            start.wait()
        daemon.docker("rm", "-f", name, check=False)


# -- the copying snapshotter (where overlay does not mount) -------------------------------


@pytest.fixture(scope="module")
def copy_daemon():
    """A second daemon whose snapshot root says "vfs": it keeps the copying
    snapshotter, as one on a filesystem without overlay support does."""
    import tempfile
    from pathlib import Path

    from tests.conftest import DaemonHandle

    if os.geteuid() != 0:
        pytest.skip("needs root")
    base = Path(tempfile.mkdtemp(prefix="dy-copy-", dir="/tmp"))
    handle = DaemonHandle(base, f"cp{os.getpid()}")
    snapshots = handle.data_root / "snapshots"
    snapshots.mkdir(parents=True)
    (snapshots / "metadata.json").write_text(
        json.dumps({"driver": "vfs", "next_id": 1, "snapshots": {}})
    )
    try:
        handle.start()
        handle.import_busybox()
        yield handle
    finally:
        left = handle.teardown()
    assert not left, f"the daemon left things behind: {left}"


def test_build_run_step_on_the_copy_snapshotter(copy_daemon, tmp_path, monkeypatch):
    """A RUN that adds, changes and deletes files becomes a layer with
    whiteouts on the copying snapshotter too; a later stage sees exactly it."""
    monkeypatch.setenv("DOCKER_BUILDKIT", "0")
    driver = out(copy_daemon.docker("image", "inspect", "-f", "{{.GraphDriver.Name}}", "busybox"))
    assert driver == "vfs"
    (tmp_path / "Dockerfile").write_text(
        "FROM busybox\n"
        "RUN mkdir -p /data/sub && echo one > /data/keep && echo two > /data/sub/gone"
        " && echo old > /data/change\n"
        "RUN echo added > /data/new && echo new > /data/change && rm /data/sub/gone"
        " && rm /etc/group && rm -r /data/sub\n"
        'CMD ["sh", "-c", "ls /data; cat /data/change; ls /etc/group 2>&1 || true"]\n'
    )
    tag = f"copy-build-{os.getpid()}:1"
    result = copy_daemon.docker("build", "-t", tag, str(tmp_path), check=False, timeout=120)
    assert result.returncode == 0, result.stdout.decode() + result.stderr.decode()
    try:
        assert out(copy_daemon.docker("run", "--rm", tag)).splitlines() == [
            "change",
            "keep",
            "new",
            "new",
            "ls: /etc/group: No such file or directory",
        ]
        layers = json.loads(
            out(copy_daemon.docker("image", "inspect", "-f", "{{json .RootFS.Layers}}", tag))
        )
        assert len(layers) == 3
        # the last layer is exactly the RUN's changes, deletions as whiteouts
        saved = copy_daemon.docker("save", tag).stdout
        names = _layer_names(saved, layers[-1])
        assert sorted(names) == sorted(
            ["data", "data/.wh.sub", "data/change", "data/new", "etc", "etc/.wh.group"]
        )
    finally:
        copy_daemon.docker("rmi", tag, check=False)


def _layer_names(saved: bytes, diff_id: str) -> list[str]:
    """The entry names of the layer ``diff_id`` in a ``docker save`` tar."""
    import hashlib

    with tarfile.open(fileobj=io.BytesIO(saved)) as outer:
        for member in outer.getmembers():
            if not member.isfile():
                continue
            data = outer.extractfile(member).read()  # type: ignore[union-attr]
            if "sha256:" + hashlib.sha256(data).hexdigest() == diff_id:
                with tarfile.open(fileobj=io.BytesIO(data)) as layer:
                    return layer.getnames()
    raise AssertionError(f"layer {diff_id} not in the saved image")


def test_commit_and_cp_on_the_copy_snapshotter(copy_daemon, tmp_path):
    name = f"copy-commit-{os.getpid()}"
    copy_daemon.docker(
        "run", "--name", name, "busybox", "sh", "-c", "echo x > /tmp/f; rm /etc/group"
    )
    tag = f"copy-commit-{os.getpid()}:1"
    try:
        assert out(copy_daemon.docker("diff", name)).splitlines() == [
            "C /etc",
            "D /etc/group",
            "C /tmp",
            "A /tmp/f",
        ]
        result = copy_daemon.docker("commit", "-c", 'CMD ["cat","/tmp/f"]', name, tag, check=False)
        assert result.returncode == 0, result.stderr
        assert out(copy_daemon.docker("run", "--rm", tag)) == "x"
        gone = copy_daemon.docker("run", "--rm", tag, "ls", "/etc/group", check=False)
        assert gone.returncode != 0
        # cp both ways into the stopped container's (copied) snapshot, and export
        (tmp_path / "g").write_text("in\n")
        copy_daemon.docker("cp", str(tmp_path / "g"), f"{name}:/tmp/g")
        raw = copy_daemon.docker("cp", f"{name}:/tmp/.", "-").stdout
        with tarfile.open(fileobj=io.BytesIO(raw)) as tar:
            assert sorted(tar.getnames()) == [".", "./f", "./g"]
        exported = copy_daemon.docker("export", name).stdout
        with tarfile.open(fileobj=io.BytesIO(exported)) as tar:
            names = tar.getnames()
        assert "tmp/g" in names and "bin/busybox" in names and "etc/group" not in names
    finally:
        copy_daemon.docker("rm", "-f", name, check=False)
        copy_daemon.docker("rmi", tag, check=False)


def test_cp_shows_the_containers_hostname_hosts_and_resolv_conf(daemon, tmp_path):
    """They are bind-mounted over the root: docker cp gives what the
    container sees, not the empty mount points under them."""
    name = "cp-etc-" + os.urandom(3).hex()
    daemon.docker("run", "-d", "--name", name, "--hostname", "cpbox", "busybox", "sleep", "60")
    try:
        for path, expected in (
            ("/etc/hostname", "cpbox\n"),
            ("/etc/hosts", "cpbox"),
            ("/etc/resolv.conf", "nameserver"),
        ):
            daemon.docker("cp", f"{name}:{path}", str(tmp_path / "out"))
            assert expected in (tmp_path / "out").read_text(), path
            (tmp_path / "out").unlink()
        daemon.docker("stop", "-t", "0", name)
        daemon.docker("cp", f"{name}:/etc/hostname", str(tmp_path / "out"))
        assert (tmp_path / "out").read_text() == "cpbox\n"
    finally:
        daemon.docker("rm", "-f", name, check=False)
