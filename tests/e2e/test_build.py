"""``docker build`` (classic builder, DOCKER_BUILDKIT=0) and the SDK's
``images.build`` against our daemon: the issue's Dockerfile end to end, the
cache, multi-stage builds, every instruction, and bad input."""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(shutil.which("docker") is None, reason="docker CLI missing")

ISSUE_DOCKERFILE = """\
# syntax=docker/dockerfile:1
ARG BASE=busybox
FROM ${BASE} AS build
WORKDIR /src
COPY . .
RUN echo "built at $(date)" > /out.txt && ls -la /src > /listing.txt
FROM busybox
LABEL org.opencontainers.image.title=demo
ENV GREETING="hello" PATH=/app:$PATH
COPY --from=build /out.txt /listing.txt /app/
USER nobody
EXPOSE 8080
HEALTHCHECK CMD true
ENTRYPOINT ["sh", "-c"]
CMD ["cat /app/out.txt"]
"""


def build(daemon, ctx: Path, *args: str, check: bool = True):
    env_cli = ("build", *args, str(ctx))
    result = daemon.docker(*env_cli, check=False, timeout=120)
    if check and result.returncode != 0:
        raise AssertionError(result.stdout.decode() + result.stderr.decode())
    return result


@pytest.fixture(autouse=True)
def _classic(monkeypatch):
    monkeypatch.setenv("DOCKER_BUILDKIT", "0")


def write(ctx: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = ctx / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return ctx


def history(daemon, image: str) -> list[str]:
    out = daemon.docker("history", "--no-trunc", "--format", "{{.CreatedBy}}", image)
    return out.stdout.decode().splitlines()


def containers(daemon) -> list[str]:
    return daemon.docker("ps", "-aq").stdout.decode().split()


def build_mounts(daemon) -> list[str]:
    text = Path("/proc/self/mountinfo").read_text()
    return [line for line in text.splitlines() if str(daemon.base) in line]


def test_issue_dockerfile_end_to_end(daemon, tmp_path):
    ctx = write(tmp_path, {"Dockerfile": ISSUE_DOCKERFILE, "app.txt": "payload\n"})
    result = build(daemon, ctx, "-t", "demo:1")
    out = result.stdout.decode()
    assert "Step 1/14 : ARG BASE=busybox\n" in out
    assert "Step 2/14 : FROM ${BASE} AS build\n" in out
    assert "Successfully tagged demo:1\n" in out
    assert " ---> Running in " in out and " ---> Removed intermediate container " in out

    run = daemon.docker("run", "--rm", "demo:1")
    assert run.stdout.decode().startswith("built at ")

    config = json.loads(daemon.docker("inspect", "demo:1").stdout)[0]["Config"]
    assert config["User"] == "nobody"
    assert config["ExposedPorts"] == {"8080/tcp": {}}
    assert config["Entrypoint"] == ["sh", "-c"]
    assert config["Cmd"] == ["cat /app/out.txt"]
    assert config["Labels"] == {"org.opencontainers.image.title": "demo"}
    assert config["Healthcheck"] == {"Test": ["CMD-SHELL", "true"]}
    assert (
        config["Env"][0] == "PATH=/app:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    )
    assert "GREETING=hello" in config["Env"]

    created_by = history(daemon, "demo:1")
    assert created_by[0] == '/bin/sh -c #(nop)  CMD ["cat /app/out.txt"]'
    assert created_by[1] == '/bin/sh -c #(nop)  ENTRYPOINT ["sh" "-c"]'
    assert created_by[2] == (
        '/bin/sh -c #(nop)  HEALTHCHECK &{["CMD-SHELL" "true"] "0s" "0s" "0s" "0s" \'\\x00\'}'
    )
    assert created_by[3] == "/bin/sh -c #(nop)  EXPOSE 8080"
    assert created_by[4] == "/bin/sh -c #(nop)  USER nobody"
    assert created_by[5].startswith("/bin/sh -c #(nop) COPY multi:")
    assert created_by[5].endswith(" in /app/ ")

    listing = daemon.docker("run", "--rm", "--entrypoint", "cat", "demo:1", "/app/listing.txt")
    assert b"app.txt" in listing.stdout

    # the second build: every step from the cache, well under a second
    start = time.monotonic()
    again = build(daemon, ctx, "-t", "demo:1").stdout.decode()
    elapsed = time.monotonic() - start
    assert again.count(" ---> Using cache\n") == 11
    assert " ---> Running in " not in again
    assert elapsed < 1.0, elapsed

    # --target builds only what the target needs
    target = build(daemon, ctx, "--target", "build", "-t", "demo:build").stdout.decode()
    assert "Step 5/5 :" in target and "FROM busybox\n" not in target
    assert daemon.docker("run", "--rm", "demo:build", "cat", "/src/app.txt").stdout == b"payload\n"


def test_changed_file_invalidates_from_its_copy(daemon, tmp_path):
    ctx = write(
        tmp_path,
        {
            "Dockerfile": "FROM busybox\nRUN echo one > /one\nCOPY a.txt /a.txt\n"
            'RUN cat /a.txt > /b.txt\nCMD ["cat", "/b.txt"]\n',
            "a.txt": "first\n",
        },
    )
    build(daemon, ctx, "-t", "inval:1")
    assert daemon.docker("run", "--rm", "inval:1").stdout == b"first\n"
    (ctx / "a.txt").write_text("second\n")
    out = build(daemon, ctx, "-t", "inval:1").stdout.decode()
    steps = out.split("Step ")[1:]
    assert " ---> Using cache" in steps[1]  # the RUN before the COPY
    assert all(" ---> Using cache" not in s for s in steps[2:])
    assert daemon.docker("run", "--rm", "inval:1").stdout == b"second\n"
    # touching the file without changing it keeps the cache
    os.utime(ctx / "a.txt", (1, 1))
    out = build(daemon, ctx, "-t", "inval:1").stdout.decode()
    assert out.count(" ---> Using cache") == 4
    # --no-cache rebuilds everything
    out = build(daemon, ctx, "--no-cache", "-t", "inval:1").stdout.decode()
    assert " ---> Using cache" not in out


def test_failing_run_leaves_nothing_behind(daemon, tmp_path):
    before = containers(daemon)
    mounts_before = build_mounts(daemon)
    ctx = write(tmp_path, {"Dockerfile": "FROM busybox\nRUN echo partial && false\n"})
    result = build(daemon, ctx, check=False)
    assert result.returncode == 1
    assert b"partial\n" in result.stdout
    assert b"The command '/bin/sh -c echo partial && false' returned a non-zero code: 1" in (
        result.stderr
    )
    assert containers(daemon) == before
    assert build_mounts(daemon) == mounts_before
    assert not any((daemon.data_root / "builder").iterdir())


@pytest.mark.parametrize(
    "dockerfile, message",
    [
        (
            "FROM busybox\nRUN true\nFORM x\n",
            "dockerfile parse error on line 3: unknown instruction: FORM",
        ),
        ("FROM busybox\nCOPY nothere.txt /\n", "file not found in build context"),
        ("FROM busybox\nCOPY ../etc/passwd /\n", "forbidden path outside the build context"),
        # not a stage: an image to pull (the test machine has no registry access)
        ("FROM busybox\nCOPY --from=nostage /x /\n", "registry-1.docker.io"),
        ("FROM busybox\nCOPY *.none /\n", "no source files were specified"),
    ],
)
def test_bad_dockerfiles_fail_cleanly(daemon, tmp_path, dockerfile, message):
    before = containers(daemon)
    ctx = write(tmp_path, {"Dockerfile": dockerfile})
    result = build(daemon, ctx, check=False)
    assert result.returncode != 0
    assert message in result.stderr.decode()
    assert containers(daemon) == before


def test_unknown_target(daemon, tmp_path):
    ctx = write(tmp_path, {"Dockerfile": "FROM busybox AS a\n"})
    result = build(daemon, ctx, "--target", "nope", check=False)
    assert result.returncode != 0
    assert 'target stage "nope" could not be found' in result.stderr.decode()


def _raw_build(daemon, body: bytes, query: str = "") -> list[dict]:
    """POST /build over the daemon's socket; the JSON messages (or the HTTP error)."""
    path = str(daemon.socket)
    sock = socket.socket(socket.AF_UNIX)
    sock.connect(path)
    head = (
        f"POST /v1.50/build?{query} HTTP/1.1\r\nHost: d\r\nContent-Type: application/x-tar\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode()
    sock.sendall(head + body)
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    sock.close()
    header, _, payload = data.partition(b"\r\n\r\n")
    if b"chunked" in header.lower():
        out, rest = b"", payload
        while rest:
            size_text, _, rest = rest.partition(b"\r\n")
            size = int(size_text, 16)
            if size == 0:
                break
            out += rest[:size]
            rest = rest[size + 2 :]
        payload = out
    status = int(header.split()[1])
    if status != 200:
        return [{"status": status, **json.loads(payload)}]
    return [json.loads(line) for line in payload.splitlines() if line.strip()]


def _tar(entries: list[tuple[tarfile.TarInfo, bytes | None]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for info, data in entries:
            if data is not None:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            else:
                tar.addfile(info)
    return buf.getvalue()


def _file(name: str, data: bytes) -> tuple[tarfile.TarInfo, bytes]:
    return tarfile.TarInfo(name), data


def test_hostile_context_tars(daemon, tmp_path):
    dockerfile = b"FROM busybox\nCOPY . /ctx/\n"
    # a member climbing out of the context
    body = _tar([_file("Dockerfile", dockerfile), _file("../escape.txt", b"x")])
    messages = _raw_build(daemon, body)
    assert messages[0].get("status") == 400 or "error" in messages[-1]
    assert not (daemon.data_root / "escape.txt").exists()
    # a symlink pointing outward, then COPY through it: stays inside the context
    link = tarfile.TarInfo("passwd")
    link.type = tarfile.SYMTYPE
    link.linkname = "/etc/passwd"
    body = _tar(
        [
            _file("Dockerfile", b"FROM busybox\nCOPY passwd /leak\nRUN cat /leak || true\n"),
            (link, None),
        ]
    )
    messages = _raw_build(daemon, body)
    text = json.dumps(messages)
    assert "root:x:0:0" not in text
    assert "file not found in build context" in text
    assert not any((daemon.data_root / "builder").iterdir())


def test_bare_dockerfile_body_and_gzip(daemon):
    messages = _raw_build(daemon, b"FROM busybox\nLABEL bare=yes\n", "t=bare:1")
    assert any("Successfully tagged bare:1" in m.get("stream", "") for m in messages)
    import gzip

    body = gzip.compress(_tar([_file("Dockerfile", b"FROM busybox\nLABEL gz=yes\n")]))
    messages = _raw_build(daemon, body, "t=gz:1")
    assert any(m.get("aux", {}).get("ID", "").startswith("sha256:") for m in messages)
    labels = json.loads(daemon.docker("inspect", "gz:1").stdout)[0]["Config"]["Labels"]
    assert labels == {"gz": "yes"}


def test_args_env_and_metadata_instructions(daemon, tmp_path):
    dockerfile = """\
ARG BASE=busybox
FROM $BASE
ARG WHO=world
ARG UNUSED
ENV GREETING=hi
RUN echo "$GREETING $WHO" > /greet
SHELL ["/bin/sh", "-ec"]
VOLUME /data
STOPSIGNAL SIGINT
ONBUILD RUN echo triggered > /onbuild
MAINTAINER someone
WORKDIR rel
WORKDIR sub
"""
    ctx = write(tmp_path, {"Dockerfile": dockerfile})
    result = build(daemon, ctx, "--build-arg", "WHO=you", "--label", "x=y", "-t", "meta:1")
    out = result.stdout.decode()
    assert "Step 14/14 : LABEL \"x\"='y'" in out
    assert daemon.docker("run", "--rm", "meta:1", "cat", "/greet").stdout == b"hi you\n"
    created_by = history(daemon, "meta:1")
    assert '|1 WHO=you /bin/sh -c echo "$GREETING $WHO" > /greet' in created_by
    assert "/bin/sh -ec #(nop)  VOLUME [/data]" in created_by
    assert "/bin/sh -ec #(nop)  SHELL [/bin/sh -ec]" in created_by
    assert "/bin/sh -ec #(nop) WORKDIR /rel/sub" in created_by
    inspect = json.loads(daemon.docker("inspect", "meta:1").stdout)[0]
    config = inspect["Config"]
    assert config["WorkingDir"] == "/rel/sub"
    assert config["Volumes"] == {"/data": {}}
    assert config["StopSignal"] == "SIGINT"
    assert config["OnBuild"] == ["RUN echo triggered > /onbuild"]
    assert config["Shell"] == ["/bin/sh", "-ec"]
    assert config["Labels"] == {"x": "y"}
    assert inspect["Author"] == "someone"

    # ONBUILD fires in a child build
    child = tmp_path / "child"
    write(child, {"Dockerfile": "FROM meta:1\nRUN cat /onbuild\n"})
    out = build(daemon, child, "-t", "meta:child").stdout.decode()
    assert "# Executing 1 build trigger\n" in out
    assert daemon.docker("run", "--rm", "meta:child", "cat", "/onbuild").stdout == b"triggered\n"
    child_config = json.loads(daemon.docker("inspect", "meta:child").stdout)[0]["Config"]
    assert not child_config["OnBuild"]

    # a build arg nobody declared is reported
    result = build(daemon, child, "--build-arg", "NOPE=1")
    assert "[Warning] One or more build-args [NOPE] were not consumed" in result.stdout.decode()


def test_copy_rules_chown_chmod_and_add(daemon, tmp_path):
    inner = io.BytesIO()
    with tarfile.open(fileobj=inner, mode="w:gz") as tar:
        info = tarfile.TarInfo("unpacked/hello.txt")
        data = b"from tar\n"
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    (tmp_path / "archive.tar.gz").write_bytes(inner.getvalue())

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            body = b"downloaded\n"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}/remote.txt"
    try:
        dockerfile = f"""\
FROM busybox
COPY dir /copied/
COPY dir/a.txt /single
COPY *.md /docs/
COPY --chown=nobody --chmod=640 dir/a.txt /owned
ADD archive.tar.gz /extracted/
ADD {url} /remote/
"""
        write(
            tmp_path,
            {
                "Dockerfile": dockerfile,
                "dir/a.txt": "A\n",
                "dir/nested/b.txt": "B\n",
                "one.md": "1\n",
                "two.md": "2\n",
            },
        )
        build(daemon, tmp_path, "-t", "copies:1")
    finally:
        server.shutdown()
    script = (
        "cat /copied/a.txt /copied/nested/b.txt /single /docs/one.md /docs/two.md "
        "/extracted/unpacked/hello.txt /remote/remote.txt; echo; stat -c '%u:%g %a' /owned"
    )
    out = daemon.docker("run", "--rm", "copies:1", "sh", "-c", script).stdout.decode()
    assert out.splitlines() == [
        "A",
        "B",
        "A",
        "1",
        "2",
        "from tar",
        "downloaded",
        "",
        "65534:65534 640",
    ]


def test_sdk_images_build(daemon, tmp_path):
    import docker

    write(tmp_path, {"Dockerfile": 'FROM busybox\nRUN echo sdk > /sdk\nCMD ["cat", "/sdk"]\n'})
    client = docker.DockerClient(base_url=daemon.host, version="auto")
    try:
        image, logs = client.images.build(path=str(tmp_path), tag="sdk:1", rm=True)
        lines = [entry.get("stream", "") for entry in logs]
        assert any(line.startswith("Successfully built") for line in lines)
        assert "sdk:1" in image.tags
        assert client.containers.run("sdk:1", remove=True) == b"sdk\n"
        with pytest.raises(docker.errors.BuildError) as info:
            client.images.build(fileobj=io.BytesIO(b"FROM busybox\nRUN exit 3\n"), rm=True)
        assert "returned a non-zero code: 3" in str(info.value)
    finally:
        client.close()


def test_build_prune(daemon):
    import docker

    client = docker.DockerClient(base_url=daemon.host, version="auto")
    try:
        result = client.api.prune_builds()
        assert "SpaceReclaimed" in result
    finally:
        client.close()


def test_run_deletions_become_whiteouts(daemon, tmp_path):
    dockerfile = "FROM busybox\nRUN mkdir -p /d/sub && touch /d/sub/x\nRUN rm -rf /d/sub /bin/ls\n"
    write(tmp_path, {"Dockerfile": dockerfile})
    build(daemon, tmp_path, "-t", "wh:1")
    script = "test ! -e /bin/ls && test -d /d && test ! -e /d/sub && echo ok"
    assert daemon.docker("run", "--rm", "wh:1", "sh", "-c", script).stdout == b"ok\n"


def test_dockyard_build_cli(daemon, tmp_path):
    write(
        tmp_path,
        {
            "Dockerfile": "FROM busybox AS base\nARG V=1\nCOPY . /ctx/\nRUN echo $V > /v\n"
            "FROM base AS final\nLABEL stage=final\n",
            "other.Dockerfile": "FROM busybox\nCOPY keep.txt /\n",
            ".dockerignore": "secret*\n!secret-ok\n",
            "keep.txt": "k",
            "secret.txt": "s",
            "secret-ok": "ok",
        },
    )
    result = daemon.cli(
        "build", "-t", "cli:1", "--build-arg", "V=2", "--target", "base",
        "--label", "l=1", "--iidfile", str(tmp_path / "iid"), str(tmp_path),
    )  # fmt: skip
    out = result.stdout.decode()
    assert out.startswith("Sending build context to Docker daemon")
    assert "Successfully tagged cli:1" in out and "LABEL stage=final" not in out
    image_id = (tmp_path / "iid").read_text()
    assert image_id.startswith("sha256:")
    listing = daemon.docker("run", "--rm", "cli:1", "sh", "-c", "ls -a /ctx; cat /v")
    names = listing.stdout.decode().split()
    assert "keep.txt" in names and "secret-ok" in names and "secret.txt" not in names
    assert names[-1] == "2"
    labels = json.loads(daemon.docker("inspect", "cli:1").stdout)[0]["Config"]["Labels"]
    assert labels == {"l": "1"}

    quiet = daemon.cli("build", "-q", "-f", str(tmp_path / "other.Dockerfile"), str(tmp_path))
    assert quiet.stdout.decode().strip().startswith("sha256:")

    # a tarball, and stdin
    tarball = tmp_path / "ctx.tar"
    with tarfile.open(tarball, "w") as tar:
        tar.add(tmp_path / "other.Dockerfile", "Dockerfile")
        tar.add(tmp_path / "keep.txt", "keep.txt")
    assert daemon.cli("build", "-q", str(tarball)).stdout.startswith(b"sha256:")
    failed = daemon.cli("build", "-", input=b"FROM busybox\nRUN exit 4\n", check=False)
    assert failed.returncode == 1
    assert b"returned a non-zero code: 4" in failed.stderr
    missing = daemon.cli("build", str(tmp_path / "nowhere"), check=False)
    assert missing.returncode == 1


def test_large_context_keeps_daemon_rss_flat(daemon):
    """A 500 MB context streams through the daemon: its RSS grows < 100 MB."""
    size = 500 * 1024 * 1024
    dockerfile = b"FROM busybox\nCOPY big.bin /\nRUN test $(stat -c %s /big.bin) = 524288000\n"
    entry = tarfile.TarInfo("Dockerfile")
    entry.size = len(dockerfile)
    head = entry.tobuf(tarfile.USTAR_FORMAT) + dockerfile + b"\0" * (-len(dockerfile) % 512)
    info = tarfile.TarInfo("big.bin")
    info.size = size
    pid = daemon.proc.pid

    def rss_kib() -> int:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        return 0

    baseline = rss_kib()
    peak = [baseline]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], rss_kib())
            time.sleep(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    sock = socket.socket(socket.AF_UNIX)
    sock.connect(str(daemon.socket))
    total = len(head) + 512 + size + 1024
    sock.sendall(
        (
            "POST /v1.50/build?t=big:1 HTTP/1.1\r\nHost: d\r\nContent-Type: application/x-tar\r\n"
            f"Content-Length: {total}\r\nConnection: close\r\n\r\n"
        ).encode()
        + head
        + info.tobuf(tarfile.USTAR_FORMAT)
    )
    chunk = b"\xab" * (1 << 20)
    for _ in range(size // len(chunk)):
        sock.sendall(chunk)
    sock.sendall(b"\0" * 1024)
    data = b""
    while part := sock.recv(65536):
        data += part
    sock.close()
    done.set()
    sampler.join()
    assert b"Successfully tagged big:1" in data
    grown_mib = (peak[0] - baseline) / 1024
    assert grown_mib < 100, f"daemon RSS grew by {grown_mib:.0f} MiB"
    assert not any((daemon.data_root / "builder").iterdir())
    daemon.docker("rmi", "big:1")


@pytest.mark.skipif(shutil.which("docker-registry") is None, reason="docker-registry missing")
def test_from_pulls_a_missing_base(daemon, tmp_path):
    import subprocess

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = tmp_path / "registry.yml"
    config.write_text(
        f"version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {tmp_path / 'data'}\n"
        f"http:\n  addr: 127.0.0.1:{port}\n"
    )
    registry = subprocess.Popen(
        ["docker-registry", "serve", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        import urllib.request

        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/", timeout=1):
                    break
            except OSError:
                time.sleep(0.05)
        name = f"127.0.0.1:{port}/base:1"
        daemon.docker("tag", "busybox", name)
        pushed = daemon.docker("push", name, check=False)
        assert pushed.returncode == 0, pushed.stderr.decode()
        daemon.docker("rmi", name)
        ctx = write(tmp_path / "ctx", {"Dockerfile": f"FROM {name}\nRUN echo pulled\n"})
        out = build(daemon, ctx, "-t", "pulled:1").stdout.decode()
        assert f"Status: Downloaded newer image for {name}" in out
        assert "pulled\n" in out
    finally:
        registry.terminate()
        registry.wait(10)


def test_heredocs(daemon, tmp_path):
    dockerfile = (
        "FROM busybox\nARG WHO=you\n"
        "RUN <<EOF\necho script > /script\necho two >> /script\nEOF\n"
        "RUN cat <<-EOT > /chomped\n\tindented\n\tEOT\n"
        "COPY <<EOF /greeting\nhello $WHO\nEOF\n"
        "COPY <<'EOF' /raw\nhello $WHO\nEOF\n"
    )
    write(tmp_path, {"Dockerfile": dockerfile})
    build(daemon, tmp_path, "-t", "here:1")
    script = "cat /script /chomped /greeting /raw"
    out = daemon.docker("run", "--rm", "here:1", "sh", "-c", script).stdout.decode()
    assert out.splitlines() == ["script", "two", "indented", "hello you", "hello $WHO"]


def test_rm_false_keeps_the_step_container(daemon, tmp_path):
    before = set(containers(daemon))
    write(tmp_path, {"Dockerfile": "FROM busybox\nRUN echo kept\n"})
    out = build(daemon, tmp_path, "--rm=false", "--no-cache").stdout.decode()
    assert "Removed intermediate container" not in out
    kept = set(containers(daemon)) - before
    assert len(kept) == 1
    daemon.docker("rm", *kept)


def _leftovers(daemon, before: list[str], mounts_before: list[str]) -> list[str]:
    problems = []
    if containers(daemon) != before:
        problems.append(f"containers: {containers(daemon)}")
    if build_mounts(daemon) != mounts_before:
        problems.append(f"mounts: {set(build_mounts(daemon)) - set(mounts_before)}")
    left = list((daemon.data_root / "builder").iterdir())
    if left:
        problems.append(f"builder dirs: {left}")
    return problems


@pytest.mark.parametrize(
    "client, sig",
    [("docker", signal.SIGINT), ("docker", signal.SIGKILL), ("dockyard", signal.SIGINT)],
    ids=["docker-sigint", "docker-sigkill", "dockyard-sigint"],
)
def test_abandoned_build_stops_at_once(daemon, tmp_path, client, sig):
    """Ctrl-C on ``docker build`` during a long RUN: the step's container is
    killed and removed, and the mounts and the context go, within seconds."""
    before = containers(daemon)
    mounts_before = build_mounts(daemon)
    write(tmp_path, {"Dockerfile": "FROM busybox\nRUN echo started && sleep 30\n"})
    binary = "docker" if client == "docker" else str(Path(sys.executable).parent / "dockyard")
    log_start = daemon.log.stat().st_size if daemon.log.exists() else 0
    cli = subprocess.Popen(
        [binary, "build", "--no-cache", str(tmp_path)],
        env={**daemon.env, "DOCKER_CONFIG": str(daemon.base / "dcfg")},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        seen = b""
        deadline = time.monotonic() + 30
        while b"started\n" not in seen and time.monotonic() < deadline:
            line = cli.stdout.readline()
            if not line:
                break
            seen += line
        assert b" ---> Running in " in seen and b"started\n" in seen, seen
        assert len(containers(daemon)) == len(before) + 1
        cli.send_signal(sig)
        cli.wait(timeout=10)
    finally:
        if cli.poll() is None:
            cli.kill()
            cli.wait()
        cli.stdout.close()
    cancelled_at = time.monotonic()
    problems = _leftovers(daemon, before, mounts_before)
    while problems and time.monotonic() - cancelled_at < 5:
        time.sleep(0.1)
        problems = _leftovers(daemon, before, mounts_before)
    assert not problems, problems
    with open(daemon.log, "rb") as log:
        log.seek(log_start)
        logged = log.read().decode(errors="replace")
    assert "Traceback" not in logged, logged
    # no stray `sleep 30` from the step lives on
    assert not any(
        p.read_bytes().startswith(b"sleep\x0030")
        for p in Path("/proc").glob("[0-9]*/cmdline")
        if _readable(p)
    )


def _readable(path: Path) -> bool:
    try:
        path.read_bytes()
        return True
    except OSError:
        return False


def test_from_platform(daemon, tmp_path):
    ok = "FROM --platform=$BUILDPLATFORM busybox\nFROM --platform=linux/amd64 busybox\n"
    ok += "FROM --platform=${TARGETPLATFORM} busybox\nRUN true\n"
    build(daemon, write(tmp_path, {"Dockerfile": ok}), "--no-cache")
    bad = tmp_path / "bad"
    bad.mkdir()
    write(bad, {"Dockerfile": "FROM --platform=linux/arm64 busybox\nRUN true\n"})
    result = build(daemon, bad, check=False)
    assert result.returncode == 1
    assert (
        "no matching manifest for linux/arm64 in the manifest list entries"
        in result.stderr.decode()
    )


@pytest.mark.parametrize(
    "line, flag",
    [
        ("COPY --parents Dockerfile /x", "parents"),
        ("COPY --exclude=*.md . /x/", "exclude"),
        ("ADD --checksum=sha256:00 Dockerfile /x", "checksum"),
        ("ADD --keep-git-dir=true Dockerfile /x", "keep-git-dir"),
        ("RUN --network=none true", "network"),
        ("RUN --security=sandbox true", "security"),
        ("RUN --mount=type=tmpfs,target=/t true", "mount"),
    ],
)
def test_buildkit_only_flags(daemon, tmp_path, line, flag):
    before = containers(daemon)
    write(tmp_path, {"Dockerfile": f"FROM busybox\n{line}\n"})
    result = build(daemon, tmp_path, check=False)
    assert result.returncode == 1
    assert (
        f"the --{flag} option requires BuildKit. Refer to https://docs.docker.com/go/buildkit/"
        " to learn how to build images with BuildKit enabled\n"
    ) in result.stderr.decode()
    assert containers(daemon) == before
