"""Image configs, chain IDs and ``--change`` instructions."""

from __future__ import annotations

import hashlib

import pytest

from dockyard import errdefs
from dockyard.image import config as imgconfig


def test_exec_and_shell_forms() -> None:
    out = imgconfig.apply_changes({}, ['CMD ["sh", "-c", "x"]', "ENTRYPOINT /bin/run me"])
    assert out == {"Entrypoint": ["/bin/sh", "-c", "/bin/run me"]}  # ENTRYPOINT resets CMD
    out = imgconfig.apply_changes({}, ['ENTRYPOINT ["a"]', "CMD echo hi"])
    assert out == {"Entrypoint": ["a"], "Cmd": ["/bin/sh", "-c", "echo hi"]}
    assert imgconfig.apply_changes({}, ["CMD [not json"])["Cmd"][-1] == "[not json"


def test_env_forms() -> None:
    out = imgconfig.apply_changes(
        {"Env": ["PATH=/bin", "A=0"]},
        ['ENV A=1 B="two words" C=x\\ y', "ENV D some value", "env PATH=/usr/bin"],
    )
    assert out["Env"] == ["PATH=/usr/bin", "A=1", "B=two words", "C=x y", "D=some value"]


def test_other_instructions() -> None:
    out = imgconfig.apply_changes(
        {},
        [
            "EXPOSE 80 53/udp 8000-8001",
            'LABEL a=b "c d"=e',
            "USER nobody",
            "WORKDIR /app",
            "WORKDIR sub",
            'VOLUME ["/data"]',
            "VOLUME /a /b",
            "STOPSIGNAL SIGINT",
            "ONBUILD RUN make",
        ],
    )
    assert out == {
        "ExposedPorts": {"80/tcp": {}, "53/udp": {}, "8000/tcp": {}, "8001/tcp": {}},
        "Labels": {"a": "b", "c d": "e"},
        "User": "nobody",
        "WorkingDir": "/app/sub",
        "Volumes": {"/data": {}, "/a": {}, "/b": {}},
        "StopSignal": "SIGINT",
        "OnBuild": ["RUN make"],
    }


def test_multi_line_change_and_comments() -> None:
    out = imgconfig.apply_changes({}, ["# note\nENV A=1\nUSER x"])
    assert out == {"Env": ["A=1"], "User": "x"}


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("RUN true", "run is not a valid change command"),
        ("FROM x", "from is not a valid change command"),
        ("EXPOSE 80/xyz", "invalid proto: xyz"),
        ("ENV", "ENV requires at least one argument"),
        ("ENV A", "ENV must have two arguments"),
        ('LABEL a="x', 'unterminated quote in: a="x'),
    ],
)
def test_invalid_changes(line: str, message: str) -> None:
    with pytest.raises(errdefs.InvalidArgument) as exc:
        imgconfig.apply_changes({}, [line])
    assert exc.value.message == message


def test_chain_ids() -> None:
    a, b, c = ("sha256:" + x * 64 for x in "abc")
    ab = "sha256:" + hashlib.sha256(f"{a} {b}".encode()).hexdigest()
    abc = "sha256:" + hashlib.sha256(f"{ab} {c}".encode()).hexdigest()
    assert imgconfig.chain_ids([a, b, c]) == [a, ab, abc]
    assert imgconfig.chain_ids([]) == []


def test_new_image_config_and_id() -> None:
    cfg = imgconfig.new_image_config(
        diff_ids=["sha256:" + "a" * 64],
        container_config={"Cmd": ["sh"]},
        comment="Imported from -",
        created="2024-01-02T03:04:05.5Z",
    )
    assert cfg["architecture"] == "amd64" and cfg["os"] == "linux"
    assert cfg["rootfs"] == {"type": "layers", "diff_ids": ["sha256:" + "a" * 64]}
    assert cfg["history"] == [{"created": "2024-01-02T03:04:05.5Z", "comment": "Imported from -"}]
    assert imgconfig.image_id(cfg) == "sha256:" + hashlib.sha256(imgconfig.encode(cfg)).hexdigest()


def test_rfc3339_nano() -> None:
    assert imgconfig.rfc3339_nano(0) == "1970-01-01T00:00:00Z"
    assert imgconfig.rfc3339_nano(1.5) == "1970-01-01T00:00:01.5Z"
