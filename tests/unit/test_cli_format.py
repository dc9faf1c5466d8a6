"""docker's table/json/template output for ps, images and history rows."""

from __future__ import annotations

import time

from dockyard.cli.container import DEFAULT_PS_FORMAT, ps_format
from dockyard.cli.formatter import (
    ContainerContext,
    HistoryContext,
    ImageContext,
    image_rows,
    render,
)
from dockyard.client.api import query
from dockyard.client.stdcopy import Demuxer, frame

NOW = time.time()
CONTAINER = {
    "Id": "a2d39b06588694c2c97457b2f6fb812f82a135d2a424d65dc30d7304658df81d",
    "Names": ["/t3"],
    "Image": "busybox",
    "ImageID": "sha256:78262f53e809cc882e3250010c419c44811e49f24b0ad69f6b64adc83b0a49fe",
    "Command": "sh -c 'exit 3; echo a long tail'",
    "Created": int(NOW) - 120,
    "Ports": [],
    "Labels": {"b": "2", "a": "1"},
    "State": "exited",
    "Status": "Exited (3) 2 minutes ago",
    "SizeRw": 0,
    "SizeRootFs": 1982000,
}


def test_ps_default_table() -> None:
    out = render(ps_format(None, quiet=False, size=False), [ContainerContext(CONTAINER, now=NOW)],
                 ContainerContext.HEADERS)  # fmt: skip
    assert out.splitlines() == [
        "CONTAINER ID   IMAGE     COMMAND                  CREATED         STATUS"
        "                     PORTS     NAMES",
        'a2d39b065886   busybox   "sh -c \'exit 3; echo…"   2 minutes ago   '
        "Exited (3) 2 minutes ago             t3",
    ]


def test_ps_quiet_size_and_json() -> None:
    assert ps_format(None, quiet=True, size=False) == "{{.ID}}"
    assert ps_format("table", quiet=False, size=True) == DEFAULT_PS_FORMAT + "\t{{.Size}}"
    row = ContainerContext(CONTAINER, now=NOW)
    assert row.Size() == "0B (virtual 1.98MB)"
    assert row.Labels() == "a=1,b=2"
    out = render("json", [row], ContainerContext.HEADERS)
    assert out.startswith('{"Command":"\\"sh -c \'exit 3; echo…\\"","CreatedAt":')
    assert '"Platform":null' in out


def test_no_trunc() -> None:
    row = ContainerContext(CONTAINER, trunc=False, now=NOW)
    assert row.ID() == CONTAINER["Id"]
    assert row.Command() == "\"sh -c 'exit 3; echo a long tail'\""


def test_image_rows_and_table() -> None:
    images = [
        {"Id": "sha256:" + "1" * 64, "RepoTags": ["busybox:latest", "busybox:1"],
         "RepoDigests": ["busybox@sha256:" + "d" * 64], "Created": int(NOW) - 3, "Size": 4261550,
         "Containers": -1},
        {"Id": "sha256:" + "2" * 64, "RepoTags": None, "RepoDigests": None,
         "Created": int(NOW) - 3, "Size": 10},
    ]  # fmt: skip
    rows = image_rows(images, digests=False, trunc=True, now=NOW)
    assert [(r.Repository(), r.Tag(), r.Digest()) for r in rows] == [
        ("busybox", "latest", "<none>"), ("busybox", "1", "<none>"), ("<none>", "<none>", "<none>"),
    ]  # fmt: skip
    fmt = "table {{.Repository}}\t{{.Tag}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}"
    out = render(fmt, rows, ImageContext.HEADERS).splitlines()
    assert out[0] == "REPOSITORY   TAG       IMAGE ID       CREATED         SIZE"
    assert out[1] == "busybox      latest    111111111111   3 seconds ago   4.26MB"
    with_digests = image_rows(images, digests=True, trunc=True, now=NOW)
    assert with_digests[0].Digest() == "sha256:" + "d" * 64


def test_history_row() -> None:
    item = {"Id": "<missing>", "Created": int(NOW) - 60, "CreatedBy": "a\tb", "Size": 1500}
    row = HistoryContext(item, trunc=True, human=True, now=NOW)
    assert (row.ID(), row.CreatedSince(), row.CreatedBy(), row.Size()) == (
        "<missing>", "About a minute ago", "a b", "1.5kB",
    )  # fmt: skip


def test_template_error_text() -> None:
    from dockyard.cli.formatter import FormatError

    try:
        render("{{.Nope}}", [ContainerContext(CONTAINER)], ContainerContext.HEADERS)
    except FormatError as exc:
        assert "can't evaluate field Nope in type *formatter.ContainerContext" in exc.message
    else:
        raise AssertionError("no error")


def test_query_and_stdcopy() -> None:
    assert query({"all": True, "limit": None, "filters": '{"a":{"b":true}}'}) == (
        "?all=1&filters=%7B%22a%22%3A%7B%22b%22%3Atrue%7D%7D"
    )
    demux = Demuxer()
    data = frame(1, b"out") + frame(2, b"err")
    assert demux.feed(data[:5]) == []
    assert demux.feed(data[5:]) == [(1, b"out"), (2, b"err")]
    assert demux.pending == 0
