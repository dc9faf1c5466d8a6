"""The networking data plane against the real kernel (root): pinned netns,
bridges and veths, netfilter rules, the userland proxy.

Everything lives in devices, namespaces and chains these tests create, with
random names; traffic only goes to addresses inside them or to loopback.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import secrets
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from dockyard import errdefs
from dockyard.network import link, netns
from dockyard.network.firewall import Firewall, PortMapping
from dockyard.network.proxy import Proxy, allocate_port

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")


@dataclass(frozen=True)
class Net:
    bridge: str
    subnet: ipaddress.IPv4Network
    gateway: ipaddress.IPv4Interface

    def host(self, n: int) -> ipaddress.IPv4Interface:
        return ipaddress.IPv4Interface(f"{self.subnet[n]}/{self.subnet.prefixlen}")


def _routed() -> list[ipaddress.IPv4Network]:
    out = subprocess.run(
        ["ip", "-4", "route", "show", "table", "all"], capture_output=True, text=True, check=True
    ).stdout
    nets = []
    for line in out.splitlines():
        word = line.split()[0] if line.split() else ""
        if word in ("local", "broadcast"):
            word = line.split()[1]
        try:
            nets.append(ipaddress.IPv4Network(word, strict=False))
        except ValueError:
            continue
    return nets


def _mounted(path: Path) -> bool:
    return any(line.split()[4] == str(path) for line in open("/proc/self/mountinfo"))


def _iptables(table: str) -> str:
    return subprocess.run(
        ["iptables", "-w", "-t", table, "-S"], capture_output=True, text=True, check=True
    ).stdout


def _in_ns(path: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["nsenter", f"--net={path}", *argv], capture_output=True, text=True, timeout=10, check=False
    )


def _ping(target: object, ns: Path | None = None) -> bool:
    argv = ["busybox", "ping", "-c1", "-W1", str(target)]
    if ns is not None:
        return _in_ns(ns, *argv).returncode == 0
    return subprocess.run(argv, capture_output=True, timeout=10, check=False).returncode == 0


@pytest.fixture
def net() -> Iterator[Net]:
    taken = _routed()
    for _ in range(100):
        subnet = ipaddress.IPv4Network(f"10.213.{secrets.randbelow(256)}.0/24")
        if not any(subnet.overlaps(t) for t in taken if t.prefixlen > 0):
            break
    bridge = f"dyt{secrets.token_hex(3)}"
    gateway = ipaddress.IPv4Interface(f"{subnet[1]}/{subnet.prefixlen}")
    link.ensure_bridge(bridge, gateway)
    try:
        yield Net(bridge, subnet, gateway)
    finally:
        link.delete_bridge(bridge)
    assert not Path(f"/sys/class/net/{bridge}").exists()


@pytest.fixture
def pins(tmp_path: Path) -> Iterator[list[Path]]:
    made: list[Path] = []
    yield made
    for p in made:
        netns.delete(p)
        assert not _mounted(p) and not p.exists()


@pytest.fixture
def firewall() -> Iterator[Firewall]:
    fw = Firewall(f"DYT{secrets.token_hex(3).upper()}")
    try:
        yield fw
    finally:
        fw.teardown()
        assert fw.prefix not in _iptables("filter") + _iptables("nat")


def _new_ns(tmp_path: Path, pins: list[Path], name: str) -> Path:
    path = tmp_path / "netns" / name
    netns.create(path)
    pins.append(path)
    return path


def _attach(net: Net, ns: Path, n: int) -> str:
    ifname = link.host_ifname(ns.name + secrets.token_hex(4), net.bridge)
    address = net.host(n)
    link.attach(
        ns,
        bridge=net.bridge,
        host_ifname=ifname,
        container_ifname="eth0",
        address=address,
        gateway=net.gateway.ip,
        mac=link.generate_mac(address.ip),
    )
    return ifname


def test_netns_create_exists_delete(tmp_path: Path) -> None:
    path = tmp_path / "netns" / "a"
    assert not netns.exists(path)
    t0 = time.perf_counter()
    netns.create(path)
    elapsed = time.perf_counter() - t0
    print(f"netns.create: {elapsed * 1000:.1f} ms")
    try:
        assert netns.exists(path) and _mounted(path)
        lo = _in_ns(path, "ip", "-o", "link", "show", "lo").stdout
        assert "UP" in lo.split("<", 1)[1].split(">", 1)[0].split(",")
        # A namespace of its own: no host interface is visible inside.
        assert _in_ns(path, "ip", "-o", "link").stdout.count("\n") == 1
        with pytest.raises(errdefs.Conflict):
            netns.create(path)
        assert netns.exists(path)
    finally:
        netns.delete(path)
    assert not netns.exists(path) and not path.exists() and not _mounted(path)
    netns.delete(path)  # absent: no error
    assert elapsed < 0.05


def test_bridge_is_idempotent(net: Net) -> None:
    link.ensure_bridge(net.bridge, net.gateway)
    out = subprocess.run(
        ["ip", "-o", "-4", "addr", "show", "dev", net.bridge],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert out.count(net.gateway.with_prefixlen) == 1
    assert (
        "UP"
        in subprocess.run(
            ["ip", "-o", "link", "show", net.bridge], capture_output=True, text=True, check=True
        ).stdout
    )


def test_attach_reachability_and_detach(net: Net, pins: list[Path], tmp_path: Path) -> None:
    a = _new_ns(tmp_path, pins, "a")
    b = _new_ns(tmp_path, pins, "b")
    t0 = time.perf_counter()
    veth_a = _attach(net, a, 2)
    elapsed = time.perf_counter() - t0
    print(f"link.attach: {elapsed * 1000:.1f} ms")
    veth_b = _attach(net, b, 3)
    try:
        assert Path(f"/sys/class/net/{veth_a}/master").resolve().name == net.bridge
        inside = _in_ns(a, "ip", "-o", "addr", "show", "dev", "eth0").stdout
        assert net.host(2).with_prefixlen in inside
        mac = _in_ns(a, "cat", "/sys/class/net/eth0/address").stdout.strip()
        # sysfs inside nsenter shows the host's view; ask ip for the namespace's MAC.
        mac = _in_ns(a, "ip", "-o", "link", "show", "dev", "eth0").stdout
        assert link.generate_mac(net.host(2).ip) in mac
        assert f"default via {net.gateway.ip}" in _in_ns(a, "ip", "route").stdout
        assert _ping(net.host(3).ip, a)
        assert _ping(net.host(2).ip, b)
        assert _ping(net.gateway.ip, a)
        assert _ping(net.host(2).ip) and _ping(net.host(3).ip)
    finally:
        link.detach(veth_a)
        link.detach(veth_b)
    assert not Path(f"/sys/class/net/{veth_a}").exists()
    assert "eth0" not in _in_ns(a, "ip", "-o", "link").stdout
    link.detach(veth_a)  # absent: no error
    assert elapsed < 0.02


def test_attach_replaces_a_stale_veth(net: Net, pins: list[Path], tmp_path: Path) -> None:
    a = _new_ns(tmp_path, pins, "a")
    ifname = link.host_ifname("stale", net.bridge)
    subprocess.run(
        ["ip", "link", "add", ifname, "type", "veth", "peer", "name", ifname[:-1] + "p"], check=True
    )
    try:
        link.attach(
            a,
            bridge=net.bridge,
            host_ifname=ifname,
            container_ifname="eth0",
            address=net.host(5),
            gateway=None,
            mac=link.generate_mac(net.host(5).ip),
        )
        assert _ping(net.host(5).ip)
    finally:
        link.detach(ifname)
    assert not Path(f"/sys/class/net/{ifname}").exists()


def test_attach_failure_leaves_no_veth(net: Net, pins: list[Path], tmp_path: Path) -> None:
    a = _new_ns(tmp_path, pins, "a")
    ifname = link.host_ifname("bad", net.bridge)
    with pytest.raises(errdefs.System):
        # A gateway outside the subnet cannot be routed.
        link.attach(
            a,
            bridge=net.bridge,
            host_ifname=ifname,
            container_ifname="eth0",
            address=net.host(6),
            gateway=ipaddress.IPv4Address("10.214.0.1"),
            mac=link.generate_mac(net.host(6).ip),
        )
    assert not Path(f"/sys/class/net/{ifname}").exists()


def test_firewall_rules_appear_and_go(net: Net, firewall: Firewall) -> None:
    firewall.setup()
    firewall.setup()  # again, as after a restart: no duplicate jumps
    assert Path("/proc/sys/net/ipv4/ip_forward").read_text().strip() == "1"
    firewall.add_network(bridge=net.bridge, subnet=net.subnet, internal=False)
    m = PortMapping("tcp", "", 18080, str(net.host(2).ip), 80, net.bridge)
    firewall.add_port(m)
    nat, filt = _iptables("nat"), _iptables("filter")
    assert nat.count(f"-j {firewall.dnat}\n") == 2
    assert (
        f"-A FORWARD -j {firewall.forward}" in filt and filt.count(f"-j {firewall.forward}\n") == 1
    )
    assert f"-A {firewall.masquerade} -s {net.subnet} ! -o {net.bridge} -j MASQUERADE" in nat
    assert f"--to-destination {m.container_ip}:80" in nat
    firewall.remove_port(m)
    firewall.remove_port(m)  # already gone: no error
    assert "--to-destination" not in _iptables("nat").split(firewall.dnat, 1)[1]
    firewall.remove_network(bridge=net.bridge, subnet=net.subnet, internal=False)
    assert net.bridge not in _iptables("nat") + _iptables("filter")
    firewall.add_network(bridge=net.bridge, subnet=net.subnet, internal=True)
    firewall.add_port(m)
    # A crashed daemon left rules; a new one of the same prefix clears them.
    Firewall(firewall.prefix).teardown()
    assert firewall.prefix not in _iptables("filter") + _iptables("nat")


def _server(ns: Path, proto: str, port: int) -> subprocess.Popen[str]:
    """An upper-casing echo server inside ns; TCP replies after the client's EOF."""
    script = f"""
import socket, sys
kind = socket.SOCK_STREAM if {proto!r} == "tcp" else socket.SOCK_DGRAM
s = socket.socket(socket.AF_INET, kind)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", {port}))
if kind == socket.SOCK_STREAM:
    s.listen()
print("ready", flush=True)
while True:
    if kind == socket.SOCK_DGRAM:
        data, addr = s.recvfrom(65536)
        s.sendto(data.upper(), addr)
        continue
    c, _ = s.accept()
    data = b""
    while chunk := c.recv(65536):
        data += chunk
    c.sendall(data.upper())
    c.close()
"""
    proc = subprocess.Popen(
        ["nsenter", f"--net={ns}", sys.executable, "-c", script], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    return proc


def _tcp_roundtrip(addr: str, port: int, payload: bytes) -> bytes:
    with socket.create_connection((addr, port), timeout=5) as c:
        c.sendall(payload)
        c.shutdown(socket.SHUT_WR)  # half-close; the reply still comes back
        data = b""
        while chunk := c.recv(65536):
            data += chunk
    return data


def test_dnat_to_a_container(
    net: Net, pins: list[Path], tmp_path: Path, firewall: Firewall
) -> None:
    a = _new_ns(tmp_path, pins, "a")
    veth = _attach(net, a, 2)
    server = _server(a, "tcp", 80)
    try:
        firewall.setup()
        firewall.add_network(bridge=net.bridge, subnet=net.subnet, internal=False)
        host_port = allocate_port("tcp", str(net.gateway.ip))
        m = PortMapping("tcp", str(net.gateway.ip), host_port, str(net.host(2).ip), 80, net.bridge)
        firewall.add_port(m)
        # Nothing on the host listens on host_port: only DNAT can answer.
        assert _tcp_roundtrip(str(net.gateway.ip), host_port, b"dnat") == b"DNAT"
        firewall.remove_port(m)
        with pytest.raises(OSError):
            _tcp_roundtrip(str(net.gateway.ip), host_port, b"x")
    finally:
        server.kill()
        server.wait()
        link.detach(veth)


def test_proxy_tcp_udp_and_busy_port(net: Net, pins: list[Path], tmp_path: Path) -> None:
    a = _new_ns(tmp_path, pins, "a")
    veth = _attach(net, a, 2)
    servers = [_server(a, "tcp", 80), _server(a, "udp", 53)]
    cip = str(net.host(2).ip)

    async def scenario() -> None:
        tcp_port = allocate_port("tcp", "127.0.0.1")
        udp_port = allocate_port("udp", "127.0.0.1")
        tcp = Proxy(PortMapping("tcp", "127.0.0.1", tcp_port, cip, 80, net.bridge))
        udp = Proxy(PortMapping("udp", "127.0.0.1", udp_port, cip, 53, net.bridge))
        async with tcp, udp:
            big = secrets.token_hex(200_000).encode()
            reply = await asyncio.to_thread(_tcp_roundtrip, "127.0.0.1", tcp_port, big)
            assert reply == big.upper()
            loop = asyncio.get_running_loop()
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as c:
                c.setblocking(False)
                await loop.sock_connect(c, ("127.0.0.1", udp_port))
                for word in (b"one", b"two"):
                    await loop.sock_sendall(c, word)
                    got = await asyncio.wait_for(loop.sock_recv(c, 100), 5)
                    assert got == word.upper()
            for proto, port in (("tcp", tcp_port), ("udp", udp_port)):
                busy = Proxy(PortMapping(proto, "127.0.0.1", port, cip, 80, net.bridge))
                with pytest.raises(errdefs.System, match="port is already allocated"):
                    await busy.start()
        # Closed: the ports are free again.
        for proto, port in (("tcp", tcp_port), ("udp", udp_port)):
            kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
            with socket.socket(socket.AF_INET, kind) as s:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                s.bind(("127.0.0.1", port))

    try:
        asyncio.run(scenario())
    finally:
        for s in servers:
            s.kill()
            s.wait()
        link.detach(veth)


def test_proxy_closes_client_when_backend_refuses(
    net: Net, pins: list[Path], tmp_path: Path
) -> None:
    a = _new_ns(tmp_path, pins, "a")
    veth = _attach(net, a, 2)

    async def scenario() -> None:
        port = allocate_port("tcp", "127.0.0.1")
        async with Proxy(
            PortMapping("tcp", "127.0.0.1", port, str(net.host(2).ip), 81, net.bridge)
        ):
            # Closed at once: the client sees EOF or a reset, never data.
            try:
                reply = await asyncio.to_thread(_tcp_roundtrip, "127.0.0.1", port, b"x")
            except OSError:
                reply = b""
            assert reply == b""

    try:
        asyncio.run(scenario())
    finally:
        link.detach(veth)


def test_proxy_close_cuts_live_connections(net: Net, pins: list[Path], tmp_path: Path) -> None:
    """A connection open through the proxy (its relay threads blocked in
    splice) ends when the port is unpublished, and no relay thread stays."""
    a = _new_ns(tmp_path, pins, "a")
    veth = _attach(net, a, 2)
    server = _server(a, "tcp", 80)

    async def scenario() -> None:
        port = allocate_port("tcp", "127.0.0.1")
        proxy = Proxy(PortMapping("tcp", "127.0.0.1", port, str(net.host(2).ip), 80, net.bridge))
        await proxy.start()
        client = await asyncio.to_thread(socket.create_connection, ("127.0.0.1", port), 5)
        with client:
            client.sendall(b"partial")  # no EOF: the server keeps waiting
            deadline = time.monotonic() + 5
            while not any(t.name == "proxy-relay" for t in threading.enumerate()):
                assert time.monotonic() < deadline
                await asyncio.sleep(0.01)
            await proxy.close()
            client.settimeout(5)
            try:
                assert await asyncio.to_thread(client.recv, 10) == b""
            except ConnectionResetError:
                pass
        deadline = time.monotonic() + 5
        while any(t.name == "proxy-relay" for t in threading.enumerate()):
            assert time.monotonic() < deadline, "relay threads left running"
            await asyncio.sleep(0.01)

    try:
        asyncio.run(scenario())
    finally:
        server.kill()
        server.wait()
        link.detach(veth)


def test_networks_are_isolated(pins: list[Path], tmp_path: Path, firewall: Firewall) -> None:
    nets = []
    third = secrets.randbelow(200)
    for i in range(2):
        subnet = ipaddress.IPv4Network(f"10.213.{third + i}.0/24")
        nets.append(
            Net(f"dyt{secrets.token_hex(3)}", subnet, ipaddress.IPv4Interface(f"{subnet[1]}/24"))
        )
    a, b = _new_ns(tmp_path, pins, "a"), _new_ns(tmp_path, pins, "b")
    veths: list[str] = []
    try:
        for n in nets:
            link.ensure_bridge(n.bridge, n.gateway)
        veths = [_attach(nets[0], a, 2), _attach(nets[1], b, 2)]
        firewall.setup()
        assert _ping(nets[1].host(2).ip, a)  # routed between bridges until isolated
        firewall.add_network(bridge=nets[0].bridge, subnet=nets[0].subnet, internal=False)
        firewall.add_network(bridge=nets[1].bridge, subnet=nets[1].subnet, internal=False)
        assert not _ping(nets[1].host(2).ip, a)
        assert not _ping(nets[0].host(2).ip, b)
        assert _ping(nets[0].gateway.ip, a)  # the host is still reachable
        firewall.remove_network(bridge=nets[0].bridge, subnet=nets[0].subnet, internal=False)
        firewall.add_network(bridge=nets[0].bridge, subnet=nets[0].subnet, internal=True)
        firewall.remove_network(bridge=nets[1].bridge, subnet=nets[1].subnet, internal=False)
        assert not _ping(nets[1].host(2).ip, a)  # internal: nothing leaves the bridge
        firewall.remove_network(bridge=nets[0].bridge, subnet=nets[0].subnet, internal=True)
        assert _ping(nets[1].host(2).ip, a)
    finally:
        for v in veths:
            link.detach(v)
        for n in nets:
            link.delete_bridge(n.bridge)
