"""IPAM: the pool never hands out reserved or taken addresses, honours the
ip-range and preferred addresses, and validates configs with dockerd's words."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dockyard import errdefs
from dockyard.network import ipam


@st.composite
def pools(draw):
    prefix = draw(st.integers(min_value=22, max_value=30))
    base = draw(st.integers(min_value=0, max_value=2**32 - 1)) >> (32 - prefix) << (32 - prefix)
    subnet = IPv4Network((base, prefix))
    hosts = list(subnet.hosts())
    gateway = draw(st.sampled_from(hosts))
    ip_range = None
    if draw(st.booleans()):
        rprefix = draw(st.integers(min_value=prefix, max_value=30))
        subnets = list(subnet.subnets(new_prefix=rprefix))
        ip_range = draw(st.sampled_from(subnets[:64]))
    return ipam.Pool(subnet, gateway=gateway, ip_range=ip_range)


@settings(max_examples=200, deadline=None)
@given(pool=pools(), steps=st.lists(st.integers(min_value=0, max_value=3), max_size=80))
def test_allocation_never_reserved_nor_taken(pool: ipam.Pool, steps: list[int]) -> None:
    held: list[IPv4Address] = []
    space = pool.ip_range or pool.subnet
    for step in steps:
        if step == 0 and held:
            pool.release(held.pop(0))
            continue
        try:
            addr = pool.allocate()
        except errdefs.Unavailable:
            free = [a for a in space if a not in held and a not in pool.reserved]
            assert free == []
            continue
        assert addr in space
        assert addr not in held
        assert addr not in (pool.subnet.network_address, pool.subnet.broadcast_address)
        assert addr != pool.gateway
        held.append(addr)


@settings(max_examples=100, deadline=None)
@given(pool=pools(), data=st.data())
def test_preferred_address(pool: ipam.Pool, data: st.DataObject) -> None:
    offset = data.draw(st.integers(min_value=0, max_value=pool.subnet.num_addresses - 1))
    addr = pool.subnet.network_address + offset
    if addr in pool.reserved:
        with pytest.raises(errdefs.Conflict, match="Address already in use"):
            pool.allocate(addr)
        return
    # A static address may lie outside the ip-range, inside the subnet.
    assert pool.allocate(addr) == addr
    with pytest.raises(errdefs.Conflict, match=r"^Address already in use$"):
        pool.allocate(addr)
    pool.release(addr)
    assert pool.allocate(addr) == addr


def test_preferred_outside_subnet() -> None:
    pool = ipam.Pool(IPv4Network("10.89.0.0/24"), gateway=IPv4Address("10.89.0.1"))
    with pytest.raises(errdefs.InvalidArgument, match=r"contain the IP address 10.90.0.5"):
        pool.allocate(IPv4Address("10.90.0.5"))


def test_exhaustion_and_wraparound() -> None:
    pool = ipam.Pool(IPv4Network("10.0.0.0/29"), gateway=IPv4Address("10.0.0.1"))
    got = [pool.allocate() for _ in range(5)]
    assert [str(a) for a in got] == [f"10.0.0.{n}" for n in range(2, 7)]
    with pytest.raises(errdefs.Unavailable):
        pool.allocate()
    pool.release(IPv4Address("10.0.0.3"))
    assert pool.allocate() == IPv4Address("10.0.0.3")


def test_allocation_does_not_reuse_just_released() -> None:
    pool = ipam.Pool(IPv4Network("10.0.0.0/24"), gateway=IPv4Address("10.0.0.1"))
    a = pool.allocate()
    pool.release(a)
    assert pool.allocate() != a


def test_allocated_at_construction_is_respected() -> None:
    taken = [IPv4Address("10.0.0.2"), IPv4Address("10.0.0.3")]
    pool = ipam.Pool(IPv4Network("10.0.0.0/24"), gateway=IPv4Address("10.0.0.1"), allocated=taken)
    assert pool.allocate() == IPv4Address("10.0.0.4")


@pytest.mark.parametrize(
    ("subnet", "ip_range", "gateway", "message"),
    [
        ("foobar", "", "", "invalid subnet foobar: invalid CIDR block notation"),
        ("10.0.0.0/33", "", "", "invalid subnet 10.0.0.0/33: invalid CIDR block notation"),
        ("10.10.10.0/8", "", "", "invalid subnet 10.10.10.0/8: it should be 10.0.0.0/8"),
        (
            "10.0.0.0/24",
            "",
            "10.1.0.1",
            "invalid gateway 10.1.0.1: parent subnet 10.0.0.0/24 doesn't contain this address",
        ),
        ("10.0.0.0/24", "", "1001.1.1.1", "invalid gateway 1001.1.1.1: invalid address"),
        (
            "10.10.10.0/24",
            "10.0.0.0/8",
            "",
            "invalid ip-range 10.0.0.0/8: CIDR block is bigger than its parent subnet"
            " 10.10.10.0/24",
        ),
        (
            "10.0.0.0/8",
            "192.168.0.0/24",
            "",
            "invalid ip-range 192.168.0.0/24: parent subnet 10.0.0.0/8 doesn't contain ip-range",
        ),
    ],
)
def test_validate_config_errors(subnet: str, ip_range: str, gateway: str, message: str) -> None:
    with pytest.raises(errdefs.InvalidArgument) as info:
        ipam.validate_config(subnet, ip_range, gateway)
    assert info.value.message.startswith("invalid network config:\n")
    assert message in info.value.message


def test_validate_config_defaults_gateway() -> None:
    cfg = ipam.validate_config("10.89.0.0/24", "10.89.0.128/25")
    assert (str(cfg.gateway), str(cfg.ip_range)) == ("10.89.0.1", "10.89.0.128/25")


def test_default_subnet_skips_taken_and_routes() -> None:
    taken = [IPv4Network("172.17.0.0/16")]
    routes = [IPv4Network("172.18.5.0/24"), IPv4Network("10.0.0.0/8")]
    assert ipam.default_subnet(taken, routes) == IPv4Network("172.19.0.0/16")
    everything = [IPv4Network("172.16.0.0/12"), IPv4Network("192.168.0.0/17")]
    assert ipam.default_subnet(everything, []) == IPv4Network("192.168.128.0/20")


def test_host_routes_parses_proc() -> None:
    routes = ipam.host_routes()
    assert all(isinstance(r, IPv4Network) and r.prefixlen > 0 for r in routes)
