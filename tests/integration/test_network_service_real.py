"""The network service over the real data plane (root): a daemon-like service
with its own bridge name, subnet and chain prefix; containers are pinned
network namespaces with a Python server inside. Proves addresses, reachability
from the host, a published port through the proxy, isolation between networks,
a failed publish leaving nothing behind, and a complete teardown."""

from __future__ import annotations

import asyncio
import ipaddress
import os
import secrets
import socket
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from dockyard import errdefs
from dockyard.network.service import NetworkService
from dockyard.store.metadata import Database
from tests.unit.test_network_service import C

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")


def _free_subnet() -> ipaddress.IPv4Network:
    out = subprocess.run(["ip", "-4", "route"], capture_output=True, text=True).stdout
    taken = []
    for line in out.split("\n"):
        word = line.split(" ")[0]
        with_prefix = word if "/" in word else f"{word}/32"
        try:
            taken.append(ipaddress.IPv4Network(with_prefix, strict=False))
        except ValueError:
            continue
    while True:
        subnet = ipaddress.IPv4Network(
            f"10.{secrets.randbelow(50) + 200}.{secrets.randbelow(256)}.0/24"
        )
        if not any(subnet.overlaps(t) for t in taken if t.prefixlen):
            return subnet


def _ping(target: str, ns: str | None = None) -> bool:
    argv = ["busybox", "ping", "-c1", "-W1", target]
    if ns:
        argv = ["nsenter", f"--net={ns}", *argv]
    return subprocess.run(argv, capture_output=True, timeout=10).returncode == 0


def _echo_server(ns: str, port: int) -> subprocess.Popen[str]:
    script = f"""
import socket
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", {port}))
s.listen()
print("ready", flush=True)
while True:
    c, _ = s.accept()
    c.sendall(c.recv(100).upper())
    c.close()
"""
    proc = subprocess.Popen(
        ["nsenter", f"--net={ns}", sys.executable, "-c", script], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    return proc


def _roundtrip(addr: str, port: int) -> bytes:
    with socket.create_connection((addr, port), timeout=5) as c:
        c.sendall(b"hello")
        return c.recv(100)


def test_service_end_to_end(tmp_path: Path) -> None:
    bridge = f"dyi{secrets.token_hex(3)}"
    bip = _free_subnet()
    config = SimpleNamespace(exec_root=tmp_path / "run", bridge=bridge, bip=f"{bip[1]}/24")
    db = Database(tmp_path / "metadata.db")
    servers: list[subprocess.Popen[str]] = []
    made: list[str] = [bridge]

    async def scenario() -> None:
        svc = NetworkService(config, db)
        await svc.start()
        try:
            user_subnet = _free_subnet()
            await svc.create({"Name": "appnet", "IPAM": {"Config": [{"Subnet": str(user_subnet)}]}})
            made.append(svc.get("appnet").bridge)
            a = C("a", ports={"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": ""}]})
            sa = await svc.sandbox(a)
            ip_a = sa.endpoints[0].ip
            assert ipaddress.IPv4Address(ip_a) in bip
            assert await asyncio.to_thread(_ping, ip_a)
            servers.append(_echo_server(sa.netns_path, 80))
            assert await asyncio.to_thread(_roundtrip, ip_a, 80) == b"HELLO"
            host_port = int(svc.settings(a)["Ports"]["80/tcp"][0]["HostPort"])
            assert await asyncio.to_thread(_roundtrip, "127.0.0.1", host_port) == b"HELLO"

            # A second container on a user network: reachable from the host,
            # not from the default bridge.
            b = C("b", mode="appnet")
            sb = await svc.sandbox(b)
            ip_b = sb.endpoints[0].ip
            assert await asyncio.to_thread(_ping, ip_b)
            assert not await asyncio.to_thread(_ping, ip_b, sa.netns_path)

            # The same host port again: Docker's error, nothing left behind.
            c = C("c", ports={"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": str(host_port)}]})
            with pytest.raises(errdefs.DockyardError, match="port is already allocated"):
                await svc.sandbox(c)
            assert not svc.netns_path(c.id).exists()
            veth = svc.link.host_ifname(c.id, svc.get("bridge").id)
            assert not Path(f"/sys/class/net/{veth}").exists()

            await svc.release(a)
            assert not svc.netns_path(a.id).exists()
            with pytest.raises(OSError):
                await asyncio.to_thread(_roundtrip, "127.0.0.1", host_port)
        finally:
            await svc.teardown()
            await svc.close()

    try:
        asyncio.run(scenario())
    finally:
        for proc in servers:
            proc.kill()
            proc.wait()
        db.close()
    assert len(made) == 2
    assert not any(Path(f"/sys/class/net/{name}").exists() for name in made)
    assert not list((tmp_path / "run" / "netns").glob("*"))
    prefix = f"DOCKYARD-{bridge.upper()}"
    for table in ("filter", "nat"):
        rules = subprocess.run(
            ["iptables", "-w", "-t", table, "-S"], capture_output=True, text=True
        )
        assert prefix not in rules.stdout
