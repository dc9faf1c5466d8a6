"""The json-file log writer (runtime/jsonlog.py) and reader (container/logs.py)."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from pathlib import Path

import pytest

from dockyard import errdefs
from dockyard.container.logs import LogEntry, log_files, parse_log_time, parse_time, read_logs
from dockyard.runtime.jsonlog import PARTIAL_SIZE, JsonLogWriter, encode_entry, format_time

T0 = 1_700_000_000_000_000_000  # ns


def _read(path: Path, **options: object) -> list[LogEntry]:
    async def collect() -> list[LogEntry]:
        return [entry async for entry in read_logs(path, **options)]  # type: ignore[arg-type]

    return asyncio.run(collect())


def _write_lines(path: Path, count: int, **options: int) -> None:
    writer = JsonLogWriter(path, **options)
    for n in range(count):
        stream = "stderr" if n % 3 == 0 else "stdout"
        writer.write(stream, f"line {n}\n".encode(), now_ns=T0 + n * 1_000_000_000)
    writer.close()


def test_format_time_trims_zeros_like_go() -> None:
    assert format_time(T0) == "2023-11-14T22:13:20Z"
    assert format_time(T0 + 123_450_000) == "2023-11-14T22:13:20.12345Z"
    assert format_time(T0 + 1) == "2023-11-14T22:13:20.000000001Z"
    assert parse_log_time(format_time(T0 + 500_000_000)) == 1_700_000_000.5


def test_entry_encoding_matches_docker() -> None:
    line = encode_entry(b'a<b>&"\xff\n', "stdout", "2023-11-14T22:13:20Z")
    assert line == (
        b'{"log":"a\\u003cb\\u003e\\u0026\\"\xef\xbf\xbd\\n",'
        b'"stream":"stdout","time":"2023-11-14T22:13:20Z"}\n'
    )


def test_writer_splits_lines_and_keeps_partials(tmp_path: Path) -> None:
    path = tmp_path / "c-json.log"
    writer = JsonLogWriter(path)
    writer.write("stdout", b"one\ntw", now_ns=T0)
    writer.write("stderr", b"err\n", now_ns=T0)
    writer.write("stdout", b"o\nthr", now_ns=T0)
    writer.write("stdout", b"x" * (PARTIAL_SIZE + 10), now_ns=T0)
    writer.close()  # end of stream: the rest becomes an entry of its own
    entries = [json.loads(line) for line in path.read_text().splitlines()]
    logs = [(e["stream"], e["log"]) for e in entries]
    assert logs == [
        ("stdout", "one\n"),
        ("stderr", "err\n"),
        ("stdout", "two\n"),
        ("stdout", "thr" + "x" * (PARTIAL_SIZE - 3)),
        ("stdout", "x" * 13),
    ]


def test_rotation_keeps_max_file(tmp_path: Path) -> None:
    path = tmp_path / "c-json.log"
    _write_lines(path, 100, max_size=1000, max_file=3)
    assert log_files(path) == [Path(f"{path}.2"), Path(f"{path}.1"), path]
    assert not Path(f"{path}.3").exists()
    for name in log_files(path)[:-1]:
        assert 1000 <= name.stat().st_size < 1100
    numbers = [int(e.data.split()[1]) for e in _read(path)]
    assert numbers[-1] == 99
    assert numbers == list(range(numbers[0], 100))


def test_max_file_one_truncates(tmp_path: Path) -> None:
    path = tmp_path / "c-json.log"
    _write_lines(path, 100, max_size=1000, max_file=1)
    assert log_files(path) == [path]
    assert path.stat().st_size < 1100
    assert _read(path)[-1].data == b"line 99\n"


def test_streams_and_entries(tmp_path: Path) -> None:
    path = tmp_path / "c-json.log"
    _write_lines(path, 6)
    entries = _read(path)
    assert entries[0] == LogEntry(2, b"line 0\n", "2023-11-14T22:13:20Z")
    assert [e.stream for e in entries] == [2, 1, 1, 2, 1, 1]
    assert [e.data for e in _read(path, stdout=False)] == [b"line 0\n", b"line 3\n"]
    assert len(_read(path, stderr=False)) == 4


@pytest.mark.parametrize("tail", [0, 1, 5, 37, 99, 100, 1000])
def test_tail_across_rotated_files(tmp_path: Path, tail: int) -> None:
    path = tmp_path / "c-json.log"
    _write_lines(path, 100, max_size=1000, max_file=10)
    assert len(log_files(path)) > 3
    entries = _read(path, tail=tail)
    expected = [f"line {n}\n".encode() for n in range(100)][-tail:] if tail else []
    assert [e.data for e in entries] == expected


def test_tail_reads_big_file_from_the_end(tmp_path: Path) -> None:
    path = tmp_path / "c-json.log"
    _write_lines(path, 20000)
    assert [e.data for e in _read(path, tail=2)] == [b"line 19998\n", b"line 19999\n"]


def test_since_until(tmp_path: Path) -> None:
    path = tmp_path / "c-json.log"
    _write_lines(path, 10, max_size=300, max_file=5)
    start = T0 / 1e9
    entries = _read(path, since=start + 3, until=start + 5.5)
    assert [e.data for e in entries] == [b"line 3\n", b"line 4\n", b"line 5\n"]
    assert _read(path, since=start + 100) == []


def test_follow_sees_new_data_and_rotation(tmp_path: Path) -> None:
    path = tmp_path / "c-json.log"
    writer = JsonLogWriter(path, max_size=300, max_file=20)
    writer.write("stdout", b"first\n")
    done = threading.Event()

    def produce() -> None:
        for n in range(40):
            writer.write("stdout", f"more {n}\n".encode())
            time.sleep(0.005)
        writer.write("stdout", b"half")  # a partial line ends up at close
        writer.close()
        done.set()

    async def follow() -> list[bytes]:
        thread = threading.Thread(target=produce)
        thread.start()
        try:
            return [e.data async for e in read_logs(path, follow=True, stopped=done.is_set)]
        finally:
            thread.join()

    data = asyncio.run(follow())
    assert data == [b"first\n", *(f"more {n}\n".encode() for n in range(40)), b"half"]


def test_follow_waits_for_the_file(tmp_path: Path) -> None:
    path = tmp_path / "c-json.log"

    async def follow() -> list[bytes]:
        stop = False

        async def later() -> None:
            nonlocal stop
            await asyncio.sleep(0.15)
            _write_lines(path, 2)
            stop = True

        async with asyncio.TaskGroup() as group:
            group.create_task(later())
            out = [e.data async for e in read_logs(path, follow=True, stopped=lambda: stop)]
        return out

    assert asyncio.run(follow()) == [b"line 0\n", b"line 1\n"]


def test_missing_log_is_empty(tmp_path: Path) -> None:
    assert _read(tmp_path / "nothing.log") == []


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("", 0.0),
        ("1700000000", 1_700_000_000.0),
        ("1700000000.25", 1_700_000_000.25),
        ("10m", 1_700_000_000.0 - 600),
        ("1h30m", 1_700_000_000.0 - 5400),
        ("1.5s", 1_700_000_000.0 - 1.5),
        ("2023-11-14T22:13:20Z", 1_700_000_000.0),
        ("2023-11-14T22:13:20.5Z", 1_700_000_000.5),
        ("2023-11-14T23:13:20+01:00", 1_700_000_000.0),
    ],
)
def test_parse_time(value: str, expected: float) -> None:
    assert parse_time(value, 1_700_000_000.0) == pytest.approx(expected)


def test_parse_time_local_date() -> None:
    assert parse_time("2023-11-14", 0) == time.mktime((2023, 11, 14, 0, 0, 0, 0, 0, -1))


def test_parse_time_rejects_garbage() -> None:
    with pytest.raises(errdefs.InvalidArgument):
        parse_time("yesterday", 0)
