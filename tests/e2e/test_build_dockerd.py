"""The same Dockerfile built by our daemon and by the reference dockerd's
classic builder: equivalent image configs and history. Skipped when
``dockerd`` is not installed."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest

pytestmark = [
    pytest.mark.skipif(shutil.which("dockerd") is None, reason="dockerd not installed"),
    pytest.mark.skipif(shutil.which("docker") is None, reason="docker CLI missing"),
]

DOCKERFILE = """\
ARG BASE=busybox
FROM ${BASE} AS build
ARG WHO=world
WORKDIR /src
COPY . .
RUN echo "hello $WHO" > /out.txt
FROM busybox
LABEL org.opencontainers.image.title=demo a=b
ENV GREETING="hello" PATH=/app:$PATH
COPY --from=build /out.txt /app/
USER nobody
EXPOSE 8080 9090/udp
VOLUME /data
STOPSIGNAL SIGINT
SHELL ["/bin/sh", "-ec"]
ONBUILD RUN echo child
WORKDIR app
ENTRYPOINT ["sh", "-c"]
CMD ["cat /app/out.txt"]
"""


def _normalize(created_by: str) -> str:
    text = re.sub(r"(file|dir|multi):[0-9a-f]{64}", r"\1:<sum>", created_by)
    # dockerd 20.10 predates HealthConfig.StartInterval
    return text


def _config(docker, image: str) -> dict:
    data = json.loads(docker("inspect", image).stdout)[0]
    config = dict(data["Config"])
    config.pop("Image", None)
    config.pop("Hostname", None)
    return config


def test_same_config_and_history_as_dockerd(daemon, dockerd, tmp_path, monkeypatch):
    monkeypatch.setenv("DOCKER_BUILDKIT", "0")
    (tmp_path / "Dockerfile").write_text(DOCKERFILE)
    (tmp_path / "f.txt").write_text("payload\n")
    args = ("build", "--build-arg", "WHO=you", "-t", "cmp:1", str(tmp_path))
    ours = daemon.docker(*args, timeout=120)
    theirs = dockerd.docker(*args)
    assert ours.returncode == theirs.returncode == 0

    def docker_ours(*a):
        return daemon.docker(*a)

    def docker_theirs(*a):
        return dockerd.docker(*a)

    mine, reference = _config(docker_ours, "cmp:1"), _config(docker_theirs, "cmp:1")
    # API 1.50 shows the ImageConfig subset; dockerd 20.10 the whole container config
    assert mine == {k: v for k, v in reference.items() if k in mine}
    assert {k for k, v in reference.items() if v not in (None, "", False, {}, [])} <= set(mine)

    def history(docker) -> list[str]:
        out = docker("history", "--no-trunc", "--format", "{{.CreatedBy}}", "cmp:1").stdout
        return [_normalize(line) for line in out.decode().splitlines() if line]

    assert history(docker_ours) == history(docker_theirs)

    def steps(result: subprocess.CompletedProcess) -> list[str]:
        return [
            line
            for line in result.stdout.decode().splitlines()
            if line.startswith("Step ") or line == " ---> Using cache"
        ]

    assert steps(ours) == steps(theirs)
