"""go-units sizes and durations, and moby's container status text."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dockyard import units
from dockyard.errdefs import InvalidArgument


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "Less than a second"),
        (0.9, "Less than a second"),
        (1, "1 second"),
        (2, "2 seconds"),
        (59, "59 seconds"),
        (60, "About a minute"),
        (119, "About a minute"),
        (120, "2 minutes"),
        (3599, "59 minutes"),
        (3600, "About an hour"),
        (2 * 3600 - 1, "2 hours"),
        (47 * 3600, "47 hours"),
        (48 * 3600, "2 days"),
        (14 * 86400, "2 weeks"),
        (60 * 86400, "2 months"),
        (2 * 365 * 86400, "2 years"),
    ],
)
def test_human_duration(seconds: float, text: str) -> None:
    assert units.human_duration(seconds) == text


@pytest.mark.parametrize(
    ("size", "text"),
    [(0, "0B"), (999, "999B"), (1000, "1kB"), (4261550, "4.26MB"), (1982000, "1.98MB"),
     (1e12, "1TB"), (999.9, "1e+03B")],
)  # fmt: skip
def test_human_size_precision_3(size: float, text: str) -> None:
    assert units.human_size_with_precision(size, 3) == text


def test_human_and_bytes_size() -> None:
    assert units.human_size(1984000) == "1.984MB"
    assert units.bytes_size(1536) == "1.5KiB"
    assert units.bytes_size(1024 * 1024) == "1MiB"


@pytest.mark.parametrize(
    ("text", "value"),
    [("20m", 20 * 1024**2), ("1g", 1024**3), ("1GiB", 1024**3), ("512", 512), ("1.5k", 1536),
     ("10 MB", 10 * 1024**2), ("3b", 3)],
)  # fmt: skip
def test_ram_in_bytes(text: str, value: int) -> None:
    assert units.ram_in_bytes(text) == value


def test_from_human_size() -> None:
    assert units.from_human_size("32kb") == 32000
    assert units.from_human_size("1.5MB") == 1500000


@pytest.mark.parametrize("bad", ["", "abc", "-1", "1x", "1kbb", "1mib2"])
def test_bad_sizes(bad: str) -> None:
    with pytest.raises(InvalidArgument):
        units.ram_in_bytes(bad)


@given(st.integers(min_value=0, max_value=2**40))
def test_ram_round_trip(n: int) -> None:
    assert units.ram_in_bytes(str(n)) == n
    assert units.ram_in_bytes(f"{n}k") == n * 1024


@given(st.text(max_size=12))
def test_parse_never_crashes(text: str) -> None:
    try:
        units.from_human_size(text)
    except InvalidArgument:
        pass


NOW = dt.datetime(2024, 1, 1, 12, 0, 0, tzinfo=dt.UTC)


def ago(seconds: int) -> str:
    return (NOW - dt.timedelta(seconds=seconds)).isoformat().replace("+00:00", ".000000000Z")


ZERO = "0001-01-01T00:00:00Z"


@pytest.mark.parametrize(
    ("state", "text"),
    [
        ({"StartedAt": ZERO, "FinishedAt": ZERO}, "Created"),
        ({"Running": True, "StartedAt": ago(3)}, "Up 3 seconds"),
        ({"Running": True, "Paused": True, "StartedAt": ago(3)}, "Up 3 seconds (Paused)"),
        ({"Running": True, "Restarting": True, "ExitCode": 1, "FinishedAt": ago(2)},
         "Restarting (1) 2 seconds ago"),
        ({"ExitCode": 137, "StartedAt": ago(9), "FinishedAt": ago(2)},
         "Exited (137) 2 seconds ago"),
        ({"Status": "removing", "StartedAt": ago(9)}, "Removal In Progress"),
        ({"Dead": True, "StartedAt": ago(9)}, "Dead"),
        ({"Running": True, "StartedAt": ago(120), "Health": {"Status": "starting"}},
         "Up 2 minutes (health: starting)"),
        ({"Running": True, "StartedAt": ago(120), "Health": {"Status": "healthy"}},
         "Up 2 minutes (healthy)"),
    ],
)  # fmt: skip
def test_container_status(state: dict, text: str) -> None:
    assert units.container_status(state, NOW) == text


def test_state_name() -> None:
    assert units.container_state_name({"Running": True}) == "running"
    assert units.container_state_name({"StartedAt": ZERO}) == "created"
    assert units.container_state_name({"StartedAt": ago(1)}) == "exited"
