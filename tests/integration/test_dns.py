"""The embedded DNS server against the real kernel (root): sockets bound to
127.0.0.11:53 inside a pinned test network namespace, queried from inside it
by busybox nslookup and a small Python client, forwarding to a fake upstream
this test runs on 127.0.0.1 in the host namespace. No packet leaves the host.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from dockyard.network import dnsmsg
from dockyard.network.dns import DnsServer

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")

CID = "c" * 64

# Runs inside the namespace: sends junk datagrams (hex args after the query),
# then the query, and prints the hex of the reply with the query's id.
CLIENT = r"""
import socket, sys
proto, q = sys.argv[1], bytes.fromhex(sys.argv[2])
if proto == "udp":
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(5)
    s.connect(("127.0.0.11", 53))
    for junk in sys.argv[3:]:
        s.send(bytes.fromhex(junk))
    s.send(q)
    while True:
        r = s.recv(65535)
        if r[:2] == q[:2] and r[2] & 0x80:
            break
else:
    s = socket.create_connection(("127.0.0.11", 53), timeout=5)
    def recvall(n):
        b = b""
        while len(b) < n:
            c = s.recv(n - len(b))
            if not c:
                raise SystemExit("eof")
            b += c
        return b
    for junk in sys.argv[3:]:
        j = bytes.fromhex(junk)
        s.sendall(len(j).to_bytes(2, "big") + j)
    s.sendall(len(q).to_bytes(2, "big") + q)
    while True:
        r = recvall(int.from_bytes(recvall(2), "big"))
        if r[:2] == q[:2]:
            break
print(r.hex())
"""

# Runs inside the namespace: succeeds only if nothing holds 127.0.0.11:53.
CAN_BIND = r"""
import socket
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(("127.0.0.11", 53))
t = socket.socket(socket.AF_INET, socket.SOCK_STREAM); t.bind(("127.0.0.11", 53)); t.listen()
"""


class FakeResolver:
    def __init__(self, names: dict[str, list[str]]) -> None:
        self.names = names
        self.calls: list[tuple[str, str]] = []

    def lookup(self, container_id: str, name: str) -> list[str]:
        self.calls.append((container_id, name))
        return list(self.names.get(name, []))


class FakeUpstream(asyncio.DatagramProtocol):
    """A tiny DNS server on 127.0.0.1 (UDP and TCP, same port): every A
    question gets 192.0.2.1; it records what it was asked."""

    def __init__(self) -> None:
        self.asked: list[tuple[str, str]] = []
        self.transport: asyncio.DatagramTransport | None = None
        self.server: asyncio.AbstractServer | None = None
        self.port = 0

    async def start(self) -> FakeUpstream:
        loop = asyncio.get_running_loop()
        for _ in range(20):  # the TCP twin of a free UDP port may be taken
            self.transport, _ = await loop.create_datagram_endpoint(
                lambda: self, local_addr=("127.0.0.1", 0)
            )
            self.port = self.transport.get_extra_info("sockname")[1]
            try:
                self.server = await asyncio.start_server(self._tcp, "127.0.0.1", self.port)
            except OSError:
                self.transport.close()
                continue
            return self
        raise RuntimeError("no port free for both UDP and TCP")

    async def close(self) -> None:
        assert self.transport and self.server
        self.transport.close()
        self.server.close()
        await self.server.wait_closed()

    def _answer(self, data: bytes, proto: str) -> bytes:
        q = dnsmsg.parse(data)
        self.asked.append((proto, q.questions[0].name))
        answers = (dnsmsg.a_record(q.questions[0].labels, "192.0.2.1", 42),)
        return dnsmsg.encode(dnsmsg.reply(q, answers=answers))

    def datagram_received(self, data: bytes, addr) -> None:
        assert self.transport
        self.transport.sendto(self._answer(data, "udp"), addr)

    async def _tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            n = int.from_bytes(await reader.readexactly(2), "big")
            reply = self._answer(await reader.readexactly(n), "tcp")
            writer.write(len(reply).to_bytes(2, "big") + reply)
            await writer.drain()
        finally:
            writer.close()


def _mounted(path: Path) -> bool:
    return any(line.split()[4] == str(path) for line in open("/proc/self/mountinfo"))


@pytest.fixture
def ns(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "netns"
    path.touch()
    subprocess.run(["unshare", f"--net={path}", "true"], check=True)
    try:
        subprocess.run(["nsenter", f"--net={path}", "ip", "link", "set", "lo", "up"], check=True)
        yield path
    finally:
        subprocess.run(["umount", str(path)], check=True)
        path.unlink()
        assert not _mounted(path)


async def _in_ns(ns: Path, *args: str, timeout: float = 10) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        "nsenter",
        f"--net={ns}",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def _ask(
    ns: Path, name: str, qtype: int = dnsmsg.A, *, proto: str = "udp", junk=(), edns=None
) -> dnsmsg.Message:
    q = dnsmsg.query(name, qtype, ident=0x4242, edns=edns)
    rc, out, err = await _in_ns(
        ns, sys.executable, "-c", CLIENT, proto, q.hex(), *[j.hex() for j in junk]
    )
    assert rc == 0, err
    return dnsmsg.parse(bytes.fromhex(out.strip()))


def _addresses(msg: dnsmsg.Message) -> list[str]:
    return [socket.inet_ntoa(rr.rdata) for rr in msg.answers if rr.rtype == dnsmsg.A]


def _closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_known_names(ns: Path) -> None:
    resolver = FakeResolver({"db": ["10.0.0.5"]})

    async def scenario() -> None:
        home = os.readlink("/proc/thread-self/ns/net")
        server = DnsServer(resolver, upstreams=[])
        try:
            await server.add(CID, str(ns))
            assert os.readlink("/proc/thread-self/ns/net") == home

            rc, out, err = await _in_ns(ns, "busybox", "nslookup", "db", "127.0.0.11")
            assert rc == 0, out + err
            assert "10.0.0.5" in out

            for name in ("db", "DB.", "Db"):
                r = await _ask(ns, name)
                assert (r.id, r.rcode, r.qr, bool(r.flags & dnsmsg.AA)) == (0x4242, 0, True, True)
                assert _addresses(r) == ["10.0.0.5"]
                assert r.answers[0].ttl == 600
                assert r.questions[0].name == name.rstrip(".")
            assert (CID, "db") in resolver.calls

            r = await _ask(ns, "db", proto="tcp")
            assert _addresses(r) == ["10.0.0.5"]

            r = await _ask(ns, "db", dnsmsg.AAAA)
            assert (r.rcode, r.answers) == (dnsmsg.NOERROR, ())
        finally:
            await server.close()

    asyncio.run(scenario())


def test_truncation_over_udp(ns: Path) -> None:
    many = [f"10.0.{i // 250}.{i % 250 + 1}" for i in range(100)]
    resolver = FakeResolver({"many": many})

    async def scenario() -> None:
        server = DnsServer(resolver, upstreams=[])
        try:
            await server.add(CID, str(ns))
            r = await _ask(ns, "many")
            assert r.tc and 0 < len(r.answers) < 100
            r = await _ask(ns, "many", edns=4096)
            assert not r.tc and sorted(_addresses(r)) == sorted(many)
            r = await _ask(ns, "many", proto="tcp")
            assert not r.tc and sorted(_addresses(r)) == sorted(many)
        finally:
            await server.close()

    asyncio.run(scenario())


def test_forwarding(ns: Path) -> None:
    async def scenario() -> None:
        upstream = await FakeUpstream().start()
        down = f"127.0.0.1:{_closed_port()}"
        # The first upstream refuses: the server goes on to the next.
        server = DnsServer(FakeResolver({}), upstreams=[down, f"127.0.0.1:{upstream.port}"])
        try:
            await server.add(CID, str(ns))
            r = await _ask(ns, "example.test")
            assert (r.rcode, _addresses(r), r.answers[0].ttl) == (0, ["192.0.2.1"], 42)
            r = await _ask(ns, "other.test", proto="tcp")
            assert _addresses(r) == ["192.0.2.1"]
            rc, out, err = await _in_ns(ns, "busybox", "nslookup", "web.test", "127.0.0.11")
            assert rc == 0 and "192.0.2.1" in out, out + err
            assert ("udp", "example.test") in upstream.asked
            assert ("tcp", "other.test") in upstream.asked
        finally:
            await server.close()
            await upstream.close()

    asyncio.run(scenario())


def test_upstream_down_servfail(ns: Path) -> None:
    async def scenario() -> None:
        server = DnsServer(FakeResolver({}), upstreams=[f"127.0.0.1:{_closed_port()}"])
        try:
            await server.add(CID, str(ns))
            for proto in ("udp", "tcp"):
                start = time.monotonic()
                r = await _ask(ns, "nowhere.test", proto=proto)
                assert r.rcode == dnsmsg.SERVFAIL
                assert time.monotonic() - start < 1.5
        finally:
            await server.close()

    asyncio.run(scenario())


def test_bad_packets_do_not_stop_the_server(ns: Path) -> None:
    class Broken(FakeResolver):
        def lookup(self, container_id: str, name: str) -> list[str]:
            if name == "boom":
                raise RuntimeError("resolver bug")
            if name == "bad":
                return ["not-an-ip"]
            return super().lookup(container_id, name)

    junk = [
        b"",
        b"\x00",
        b"\x12\x34",
        os.urandom(40),
        b"\x00\x01\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\xc0\x0c\x00\x01\x00\x01",
        b"\x00\x02\x81\x80" + bytes(8),  # a response: dropped
    ]

    async def scenario() -> None:
        server = DnsServer(Broken({"db": ["10.0.0.5"]}), upstreams=[])
        try:
            await server.add(CID, str(ns))
            r = await _ask(ns, "db", junk=junk)
            assert _addresses(r) == ["10.0.0.5"]
            r = await _ask(ns, "db", proto="tcp", junk=junk[1:])
            assert _addresses(r) == ["10.0.0.5"]
            for name in ("boom", "bad"):
                r = await _ask(ns, name)  # not known, no upstreams
                assert r.rcode == dnsmsg.SERVFAIL
            assert _addresses(await _ask(ns, "db")) == ["10.0.0.5"]
        finally:
            await server.close()

    asyncio.run(scenario())


def test_remove_closes_sockets(ns: Path) -> None:
    async def scenario() -> None:
        server = DnsServer(FakeResolver({"db": ["10.0.0.5"]}), upstreams=[])
        try:
            await server.add(CID, str(ns))
            rc, _, _ = await _in_ns(ns, sys.executable, "-c", CAN_BIND)
            assert rc != 0
            await server.add(CID, str(ns))  # again: replaces
            assert _addresses(await _ask(ns, "db")) == ["10.0.0.5"]
            await server.remove(CID)
            rc, _, err = await _in_ns(ns, sys.executable, "-c", CAN_BIND)
            assert rc == 0, err
            await server.remove(CID)  # unknown: no error
            await server.add(CID, str(ns))
            assert _addresses(await _ask(ns, "db")) == ["10.0.0.5"]
        finally:
            await server.close()
        rc, _, err = await _in_ns(ns, sys.executable, "-c", CAN_BIND)
        assert rc == 0, err

    asyncio.run(scenario())


def test_missing_netns(tmp_path: Path) -> None:
    from dockyard import errdefs

    async def scenario() -> None:
        server = DnsServer(FakeResolver({}), upstreams=[])
        try:
            with pytest.raises(errdefs.NotFound):
                await server.add(CID, str(tmp_path / "absent"))
            with pytest.raises(errdefs.System):
                await server.add(CID, str(Path(__file__)))  # not a namespace
        finally:
            await server.close()

    asyncio.run(scenario())


def test_silent_upstream_times_out(ns: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from dockyard.network import dns

    monkeypatch.setattr(dns, "FORWARD_TIMEOUT", 0.3)

    async def scenario() -> None:
        upstream = await FakeUpstream().start()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
            silent.bind(("127.0.0.1", 0))  # receives, never answers
            quiet = f"127.0.0.1:{silent.getsockname()[1]}"
            server = DnsServer(FakeResolver({}), upstreams=[quiet, f"127.0.0.1:{upstream.port}"])
            try:
                await server.add(CID, str(ns))
                start = time.monotonic()
                r = await _ask(ns, "late.test")
                assert _addresses(r) == ["192.0.2.1"]
                assert 0.3 <= time.monotonic() - start < 2
                await server.add(CID, str(ns), upstreams=[quiet])  # the container's own --dns
                r = await _ask(ns, "late.test")
                assert r.rcode == dnsmsg.SERVFAIL
            finally:
                await server.close()
                await upstream.close()

    asyncio.run(scenario())
