"""The container state table, names and config merging (no root needed)."""

from __future__ import annotations

import pytest

from dockyard import errdefs
from dockyard.container import names
from dockyard.container.model import Container, State
from dockyard.container.service import ContainerService, parse_signal
from dockyard.container.state import TRANSITIONS, Event, Status, transition


def test_lifecycle_path():
    s = Status.CREATED
    for event, expected in [
        (Event.START, Status.RUNNING),
        (Event.EXIT, Status.EXITED),
        (Event.START, Status.RUNNING),
        (Event.EXIT, Status.EXITED),
        (Event.REMOVE, Status.REMOVING),
    ]:
        s = transition(s, event)
        assert s == expected


@pytest.mark.parametrize("status", list(Status))
@pytest.mark.parametrize("event", list(Event))
def test_every_pair_is_either_in_the_table_or_a_conflict(status, event):
    if (status, event) in TRANSITIONS:
        assert transition(status, event) == TRANSITIONS[(status, event)]
    else:
        with pytest.raises(errdefs.Conflict):
            transition(status, event)


def test_names():
    assert names.validate("web") == "/web"
    assert names.validate("/web-1.a_b") == "/web-1.a_b"
    for bad in ("", "a", "-x", "a b", "x/y", "ü"):
        with pytest.raises(errdefs.InvalidArgument, match="Invalid container name"):
            names.validate(bad)
    generated = names.random_name()
    assert names.validate(generated) == "/" + generated


def test_signals():
    assert parse_signal("KILL") == 9
    assert parse_signal("SIGTERM") == 15
    assert parse_signal("2") == 2
    assert parse_signal(None) == 9
    for bad in ("NOPE", "0", "99", "-1"):
        with pytest.raises(errdefs.InvalidArgument):
            parse_signal(bad)


def test_record_round_trip_and_status_text():
    c = Container(
        id="a" * 64,
        name="/x",
        image_id="sha256:" + "b" * 64,
        created="2024-01-01T00:00:00Z",
        config={"Image": "busybox"},
        host_config={},
        path="sh",
        args=["-c", "true"],
    )
    c.state = State(
        status=Status.EXITED,
        exit_code=3,
        started_at="2024-01-01T00:00:01Z",
        finished_at="2024-01-01T00:00:02.5Z",
    )
    again = Container.from_json(c.to_json())
    assert again == c
    assert again.state.human().startswith("Exited (3) ")
    assert again.summary()["Command"] == "sh -c true"
    assert again.inspect()["State"]["Status"] == "exited"
    assert Container.from_json(c.to_json()).state.to_api()["Running"] is False


def test_config_merge_follows_docker():
    image = {"Cmd": ["sh"], "Entrypoint": None, "Env": ["PATH=/bin", "A=1"], "WorkingDir": "/w"}
    merged = ContainerService._merge_config({"Image": "bb", "Env": ["A=2"]}, image)
    assert merged["Cmd"] == ["sh"]
    assert merged["Env"] == ["PATH=/bin", "A=2"]
    assert merged["WorkingDir"] == "/w"
    merged = ContainerService._merge_config({"Image": "bb", "Entrypoint": ["echo"]}, image)
    assert merged["Entrypoint"] == ["echo"] and not merged["Cmd"]
    image2 = {"Entrypoint": ["/init"], "Cmd": ["run"]}
    merged = ContainerService._merge_config({"Image": "bb", "Cmd": ["x"]}, image2)
    assert merged["Entrypoint"] == ["/init"] and merged["Cmd"] == ["x"]
