"""The embedded DNS server: 127.0.0.11:53 inside each container on a user network.

Owns the per-container UDP and TCP sockets and what is answered on them: A
queries for names the Resolver knows (containers, aliases, short ids on the
container's networks; TTL 600 as Docker), an empty NOERROR for AAAA of those
names (containers have no IPv6 address), and everything else forwarded to the
upstream resolvers (UDP for UDP queries, TCP for TCP ones, 2 s each, in order)
with SERVFAIL when none answers. No packet, however malformed, stops a server.

Kernel facts this relies on: setns(CLONE_NEWNET) changes the namespace of the
calling thread only, and a socket stays in the namespace it was created in.
So the sockets are created by a short-lived thread that joins the container's
namespace and goes back before it ends; the daemon's loop then serves them.
Forwarding sockets are created by the loop's thread, in the daemon's namespace,
as Docker does: upstreams are reachable even from --internal networks.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
import random
import socket
import threading
from dataclasses import dataclass, field
from typing import Protocol

from dockyard import errdefs
from dockyard.network import dnsmsg
from dockyard.sys import namespaces

log = logging.getLogger(__name__)

ADDRESS = "127.0.0.11"
PORT = 53
TTL = 600  # Docker's respTTL for container names
FORWARD_TIMEOUT = 2.0  # seconds per upstream, as Docker's extIOTimeout
MAX_FORWARDS = 100  # in flight at once, all containers; Docker's maxConcurrent
TCP_IDLE = 10.0  # seconds a client TCP connection may sit between queries
IP_FREEBIND = 15  # linux/in.h: bind even if lo is not up yet


class Resolver(Protocol):
    def lookup(self, container_id: str, name: str) -> list[str]:
        """IPv4 addresses `name` means for this container; [] if unknown."""
        ...


@dataclass
class _Endpoint:
    """One container's sockets and the work in flight on them."""

    upstreams: list[tuple[str, int]]
    udp: asyncio.DatagramTransport | None = None
    udp_closed: asyncio.Future[None] | None = None
    tcp: asyncio.AbstractServer | None = None
    tasks: set[asyncio.Task[None]] = field(default_factory=set)
    writers: set[asyncio.StreamWriter] = field(default_factory=set)


class DnsServer:
    def __init__(self, resolver: Resolver, *, upstreams: list[str]) -> None:
        self._resolver = resolver
        self._upstreams = [parse_upstream(u) for u in upstreams]
        # thread-self: the namespace of this thread, which the loop runs on.
        self._home = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        self._endpoints: dict[str, _Endpoint] = {}
        self._forwards = 0

    async def add(
        self, container_id: str, netns_path: str, *, upstreams: list[str] | None = None
    ) -> None:
        """Serve 127.0.0.11:53 in that namespace; `upstreams` overrides the
        server's for this container (its --dns). Adding again replaces."""
        await self.remove(container_id)
        ups = self._upstreams if upstreams is None else [parse_upstream(u) for u in upstreams]
        udp_sock, tcp_sock = await _open_in_thread(self._home, netns_path)
        ep = _Endpoint(ups)
        self._endpoints[container_id] = ep
        loop = asyncio.get_running_loop()
        ep.udp_closed = loop.create_future()
        try:
            ep.udp, _ = await loop.create_datagram_endpoint(
                lambda: _UdpProtocol(self, container_id, ep), sock=udp_sock
            )
        except BaseException:
            udp_sock.close()
            tcp_sock.close()
            self._endpoints.pop(container_id, None)
            raise
        try:
            ep.tcp = await asyncio.start_server(
                lambda r, w: self._serve_tcp(container_id, ep, r, w), sock=tcp_sock
            )
        except BaseException:
            tcp_sock.close()
            await self.remove(container_id)
            raise

    async def remove(self, container_id: str) -> None:
        """Close that container's sockets and drop its queries in flight."""
        ep = self._endpoints.pop(container_id, None)
        if ep is None:
            return
        if ep.tcp is not None:
            ep.tcp.close()
        for writer in list(ep.writers):
            writer.close()
        tasks = list(ep.tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        if ep.udp is not None and ep.udp_closed is not None:
            # The transport closes its socket a loop iteration later: wait, so
            # that the port is really closed when remove() returns.
            ep.udp.close()
            await ep.udp_closed
        if ep.tcp is not None:
            await ep.tcp.wait_closed()

    async def close(self) -> None:
        for container_id in list(self._endpoints):
            await self.remove(container_id)
        if self._home >= 0:
            os.close(self._home)
            self._home = -1

    # --- answering ---------------------------------------------------------

    def _local(
        self, container_id: str, data: bytes, *, tcp: bool
    ) -> tuple[bytes | None, dnsmsg.Message | None]:
        """(reply, None) when answered here (reply None: nothing to send), or
        (None, query) when the query must be forwarded."""
        try:
            q = dnsmsg.parse(data)
        except dnsmsg.DnsFormatError:
            return dnsmsg.formerr(data), None
        if q.qr:
            return None, None
        limit = dnsmsg.TCP_LIMIT if tcp else dnsmsg.udp_limit(q)
        if q.opcode != 0:
            return dnsmsg.encode(dnsmsg.reply(q, rcode=dnsmsg.NOTIMP), limit=limit), None
        if not q.questions:
            return dnsmsg.encode(dnsmsg.reply(q, rcode=dnsmsg.FORMERR), limit=limit), None
        question = q.questions[0]
        if question.qclass != dnsmsg.CLASS_IN or question.qtype not in (dnsmsg.A, dnsmsg.AAAA):
            return None, q
        addresses = self._lookup(container_id, question.name.lower())
        if not addresses:
            return None, q
        answers: tuple[dnsmsg.Record, ...] = ()
        if question.qtype == dnsmsg.A:
            # Shuffled, as Docker, so that an alias shared by several
            # containers spreads the load.
            random.shuffle(addresses)
            answers = tuple(dnsmsg.a_record(question.labels, a, TTL) for a in addresses)
        msg = dnsmsg.reply(q, answers=answers, authoritative=True)
        return dnsmsg.encode(msg, limit=limit), None

    def _lookup(self, container_id: str, name: str) -> list[str]:
        if not name:
            return []
        try:
            found = self._resolver.lookup(container_id, name)
        except Exception:
            log.exception("dns: lookup of %r for %s failed", name, container_id[:12])
            return []
        valid = []
        for address in found:
            try:
                valid.append(str(ipaddress.IPv4Address(address)))
            except ValueError:
                log.warning("dns: resolver gave %r for %r, not an IPv4 address", address, name)
        return valid

    async def _answer(
        self, container_id: str, ep: _Endpoint, data: bytes, *, tcp: bool
    ) -> bytes | None:
        reply, q = self._local(container_id, data, tcp=tcp)
        if q is None:
            return reply
        return await self._forward(ep.upstreams, q, data, tcp=tcp)

    async def _forward(
        self, upstreams: list[tuple[str, int]], q: dnsmsg.Message, data: bytes, *, tcp: bool
    ) -> bytes:
        limit = dnsmsg.TCP_LIMIT if tcp else dnsmsg.udp_limit(q)
        servfail = dnsmsg.encode(dnsmsg.reply(q, rcode=dnsmsg.SERVFAIL), limit=limit)
        if not upstreams or self._forwards >= MAX_FORWARDS:
            return servfail
        self._forwards += 1
        try:
            for host, port in upstreams:
                ask = _ask_tcp(host, port, data) if tcp else _ask_udp(host, port, data)
                try:
                    return await asyncio.wait_for(ask, FORWARD_TIMEOUT)
                except (OSError, TimeoutError, asyncio.IncompleteReadError) as err:
                    log.debug("dns: upstream %s:%d failed: %r", host, port, err)
            return servfail
        finally:
            self._forwards -= 1

    # --- transports --------------------------------------------------------

    def _udp_query(self, container_id: str, ep: _Endpoint, data: bytes, addr) -> None:
        reply, q = self._local(container_id, data, tcp=False)
        if q is None:
            if reply is not None and ep.udp is not None:
                ep.udp.sendto(reply, addr)
            return
        task = asyncio.get_running_loop().create_task(self._udp_forward(ep, q, data, addr))
        ep.tasks.add(task)
        task.add_done_callback(ep.tasks.discard)

    async def _udp_forward(self, ep: _Endpoint, q: dnsmsg.Message, data: bytes, addr) -> None:
        try:
            reply = await self._forward(ep.upstreams, q, data, tcp=False)
        except Exception:
            log.exception("dns: forwarding failed")
            return
        if ep.udp is not None and not ep.udp.is_closing():
            ep.udp.sendto(reply, addr)

    async def _serve_tcp(
        self,
        container_id: str,
        ep: _Endpoint,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        ep.writers.add(writer)
        try:
            while True:
                head = await asyncio.wait_for(reader.readexactly(2), TCP_IDLE)
                data = await asyncio.wait_for(
                    reader.readexactly(int.from_bytes(head, "big")), TCP_IDLE
                )
                reply = await self._answer(container_id, ep, data, tcp=True)
                if reply is not None:
                    writer.write(len(reply).to_bytes(2, "big") + reply)
                    await writer.drain()
        except (OSError, TimeoutError, asyncio.IncompleteReadError):
            pass
        except Exception:
            log.exception("dns: tcp client failed")
        finally:
            ep.writers.discard(writer)
            writer.close()


class _UdpProtocol(asyncio.DatagramProtocol):
    def __init__(self, server: DnsServer, container_id: str, ep: _Endpoint) -> None:
        self._server = server
        self._id = container_id
        self._ep = ep

    def datagram_received(self, data: bytes, addr) -> None:
        try:
            self._server._udp_query(self._id, self._ep, data, addr)
        except Exception:
            log.exception("dns: query from %s failed", addr)

    def error_received(self, exc: Exception) -> None:
        # ICMP errors from clients that went away: nothing to do.
        pass

    def connection_lost(self, exc: Exception | None) -> None:
        if self._ep.udp_closed is not None and not self._ep.udp_closed.done():
            self._ep.udp_closed.set_result(None)


# --- upstream queries --------------------------------------------------------


async def _ask_udp(host: str, port: int, data: bytes) -> bytes:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    loop = asyncio.get_running_loop()
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.setblocking(False)
        # Connected: the kernel drops datagrams from anyone else, and an ICMP
        # port unreachable fails the recv at once instead of after the timeout.
        sock.connect((host, port))
        await loop.sock_sendall(sock, data)
        while True:
            reply = await loop.sock_recv(sock, 65535)
            if _answers(reply, data):
                return reply


async def _ask_tcp(host: str, port: int, data: bytes) -> bytes:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(len(data).to_bytes(2, "big") + data)
        await writer.drain()
        while True:
            head = await reader.readexactly(2)
            reply = await reader.readexactly(int.from_bytes(head, "big"))
            if _answers(reply, data):
                return reply
    finally:
        writer.close()


def _answers(reply: bytes, data: bytes) -> bool:
    """Same id, and a response."""
    return len(reply) >= 12 and reply[:2] == data[:2] and bool(reply[2] & 0x80)


def parse_upstream(spec: str) -> tuple[str, int]:
    """ "1.1.1.1", "1.1.1.1:5353", "fd00::1" or "[fd00::1]:5353" as (host, port)."""
    host, port = spec, PORT
    if spec.startswith("["):
        host, sep, rest = spec[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise errdefs.InvalidArgument(f"invalid DNS server address: {spec}")
        if rest:
            port = _port(spec, rest[1:])
    elif spec.count(":") == 1:
        host, _, rest = spec.partition(":")
        port = _port(spec, rest)
    try:
        return str(ipaddress.ip_address(host)), port
    except ValueError:
        raise errdefs.InvalidArgument(f"invalid DNS server address: {spec}") from None


def _port(spec: str, text: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise errdefs.InvalidArgument(f"invalid DNS server address: {spec}")
    return int(text)


# --- sockets inside another namespace ----------------------------------------


def _open_sockets(home: int, netns_path: str) -> tuple[socket.socket, socket.socket]:
    """Runs on a thread of its own: join the namespace, bind, go back."""
    try:
        fd = os.open(netns_path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as err:
        raise errdefs.NotFound(f"network namespace {netns_path}: {err.strerror}") from None
    try:
        namespaces.setns(fd, namespaces.CLONE_NEWNET)
    except OSError as err:
        raise errdefs.System(f"joining network namespace {netns_path}: {err}") from None
    finally:
        os.close(fd)
    try:
        return _bind()
    finally:
        # If this fails the thread still ends, and its namespace with it.
        namespaces.setns(home, namespaces.CLONE_NEWNET)


def _bind() -> tuple[socket.socket, socket.socket]:
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        for sock in (udp, tcp):
            sock.setsockopt(socket.SOL_IP, IP_FREEBIND, 1)
            sock.setblocking(False)
        tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        udp.bind((ADDRESS, PORT))
        tcp.bind((ADDRESS, PORT))
        tcp.listen(128)
    except OSError as err:
        udp.close()
        tcp.close()
        raise errdefs.System(f"dns: bind {ADDRESS}:{PORT}: {err.strerror}") from None
    return udp, tcp


async def _open_in_thread(home: int, netns_path: str) -> tuple[socket.socket, socket.socket]:
    """_open_sockets on a new thread that ends afterwards: never a pool
    thread, whose namespace would outlive the call if going back failed."""
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[tuple[socket.socket, socket.socket]] = loop.create_future()

    def deliver(result: tuple[socket.socket, socket.socket] | None, err: BaseException | None):
        if fut.cancelled():
            for sock in result or ():
                sock.close()
        elif err is not None:
            fut.set_exception(err)
        else:
            fut.set_result(result)  # type: ignore[arg-type]

    def work() -> None:
        try:
            result = _open_sockets(home, netns_path)
        except BaseException as err:
            loop.call_soon_threadsafe(deliver, None, err)
        else:
            loop.call_soon_threadsafe(deliver, result, None)

    threading.Thread(target=work, name="dns-netns", daemon=True).start()
    return await fut
