"""Pure parts of the networking data plane: names, MACs, rule text, ports."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from dockyard import errdefs
from dockyard.network import link
from dockyard.network.firewall import Firewall, PortMapping
from dockyard.network.proxy import allocate_port


def test_host_ifname_is_short_stable_and_distinct() -> None:
    a = link.host_ifname("c" * 64, "n" * 64)
    assert a == link.host_ifname("c" * 64, "n" * 64)
    assert a.startswith("veth") and len(a) == 15
    assert a != link.host_ifname("c" * 64, "m" * 64)
    assert a != link.host_ifname("d" * 64, "n" * 64)


def test_generate_mac_is_dockers() -> None:
    assert link.generate_mac(ipaddress.IPv4Address("172.17.0.2")) == "02:42:ac:11:00:02"
    assert link.generate_mac(ipaddress.IPv4Address("10.0.255.1")) == "02:42:0a:00:ff:01"


@pytest.mark.parametrize("prefix", ["", "A" * 25, "HAS SPACE"])
def test_firewall_rejects_bad_prefix(prefix: str) -> None:
    with pytest.raises(errdefs.InvalidArgument):
        Firewall(prefix)


def test_firewall_chain_names_fit_iptables() -> None:
    fw = Firewall("D" * 24)
    for name in (fw.forward, fw.isolation, fw.isolation2, fw.dnat, fw.masquerade):
        assert len(name) <= 28


def test_port_rules_text() -> None:
    fw = Firewall("DY")
    m = PortMapping("tcp", "", 8080, "172.17.0.2", 80, "dockyard0")
    rules = fw._port_rules(m)
    assert rules["nat"] == [
        "DY-NAT -p tcp -m tcp --dport 8080 ! -i dockyard0 -j DNAT --to-destination 172.17.0.2:80"
    ]
    assert "-d 172.17.0.2/32" in rules["filter"][0]
    bound = fw._port_rules(PortMapping("udp", "10.0.0.1", 53, "172.17.0.2", 53, "b"))
    assert " -d 10.0.0.1/32 " in bound["nat"][0] and "-p udp" in bound["nat"][0]
    assert fw._port_rules(PortMapping("tcp", "::", 80, "172.17.0.2", 80, "b")) == {}
    with pytest.raises(errdefs.InvalidArgument):
        fw._port_rules(PortMapping("sctp", "", 80, "172.17.0.2", 80, "b"))


def test_internal_network_has_no_masquerade() -> None:
    fw = Firewall("DY")
    net = ipaddress.IPv4Network("10.1.0.0/24")
    assert fw._network_rules(bridge="b", subnet=net, internal=True, icc=True)["nat"] == []
    outbound = fw._network_rules(bridge="b", subnet=net, internal=False, icc=True)
    assert "DY-PST -s 10.1.0.0/24 ! -o b -j MASQUERADE" in outbound["nat"]


def test_allocate_port_is_in_the_ephemeral_range() -> None:
    text = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text()
    low, high = (int(x) for x in text.split())
    for proto in ("tcp", "udp"):
        assert low <= allocate_port(proto, "127.0.0.1") <= high
