"""The userland proxy for published ports, as Docker's docker-proxy.

Netfilter DNAT cannot catch connections the host makes to 127.0.0.1 (they
never pass PREROUTING and `route_localnet` is off), nor those a container
makes to a published port of its own bridge's gateway. The proxy covers
them: it listens on host_ip:host_port, which also reserves the port (a bind
failure is the "port is already allocated" error), and relays to
container_ip:container_port. TCP keeps half-close in both directions; UDP
keeps one connected socket per client address, dropped after a quiet period.

TCP bytes never enter Python: each accepted connection gets two threads
that move data socket → pipe → socket with splice(2), as docker-proxy's Go
runtime does. An asyncio relay copying through the event loop reached half
of docker-proxy's throughput; spliced, the relay costs about what the
kernel path costs. Accepting stays on the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import os
import random
import socket
import threading
from collections.abc import Callable

from dockyard import errdefs
from dockyard.network.firewall import PortMapping

_UDP_IDLE = 90.0  # seconds; Docker's UDPConnTrackTimeout
_UDP_MAX = 65507
_CONNECT_TIMEOUT = 10.0
_PIPE_SIZE = 1 << 20
_F_SETPIPE_SZ = 1031
_SPLICE_F_MOVE = 1


class Proxy:
    """One published port. `start` binds (or raises), `close` releases everything."""

    def __init__(self, mapping: PortMapping) -> None:
        if mapping.proto not in ("tcp", "udp"):
            raise errdefs.InvalidArgument(f"invalid proto '{mapping.proto}'")
        self.mapping = mapping
        self.host_ip = mapping.host_ip or "0.0.0.0"
        self._udp: asyncio.DatagramTransport | None = None
        self._udp_front: _UdpFront | None = None
        self._accept: asyncio.Task[None] | None = None
        self._sock: socket.socket | None = None
        self._relays: set[_TcpRelay] = set()

    async def start(self) -> None:
        m = self.mapping
        sock = _bind(m.proto, self.host_ip, m.host_port)
        loop = asyncio.get_running_loop()
        if m.proto == "tcp":
            self._sock = sock
            self._accept = loop.create_task(self._accept_tcp(sock))
        else:
            front = _UdpFront(m.container_ip, m.container_port)
            transport, _ = await loop.create_datagram_endpoint(lambda: front, sock=sock)
            self._udp, self._udp_front = transport, front

    async def close(self) -> None:
        accept, self._accept = self._accept, None
        if accept is not None:
            accept.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await accept
        sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()
        for relay in list(self._relays):
            relay.abort()
        if self._udp is not None and self._udp_front is not None:
            # The transport closes its socket a loop iteration later; wait, so
            # that the port is free when close() returns.
            self._udp.close()
            await self._udp_front.closed
            self._udp = self._udp_front = None

    async def __aenter__(self) -> Proxy:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _accept_tcp(self, sock: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                client, _ = await loop.sock_accept(sock)
            except asyncio.CancelledError:
                raise
            except OSError:
                await asyncio.sleep(0.05)  # EMFILE and the like: back off, keep serving
                continue
            relay = _TcpRelay(client, (self.mapping.container_ip, self.mapping.container_port))
            self._relays.add(relay)
            relay.start(self._relays.discard)


class _TcpRelay:
    """One proxied TCP connection: two threads, one per direction, splicing."""

    def __init__(self, client: socket.socket, target: tuple[str, int]) -> None:
        self.client = client
        self.target = target
        self.backend: socket.socket | None = None
        self._lock = threading.Lock()
        self._open = 2

    def start(self, done: Callable[[_TcpRelay], None]) -> None:
        self._done = done
        threading.Thread(target=self._run, name="proxy-relay", daemon=True).start()

    def _run(self) -> None:
        self.client.setblocking(True)
        try:
            self.backend = socket.create_connection(self.target, timeout=_CONNECT_TIMEOUT)
            self.backend.settimeout(None)
        except OSError:
            self._open = 1  # as docker-proxy: the client sees the connection closed
            self._finish()
            return
        threading.Thread(
            target=self._pump, args=(self.backend, self.client), name="proxy-relay", daemon=True
        ).start()
        self._pump(self.client, self.backend)

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            _splice_all(src.fileno(), dst.fileno())
            dst.shutdown(socket.SHUT_WR)  # half-close: the other way stays open
        except OSError:
            self.abort()
        finally:
            self._finish()

    def _finish(self) -> None:
        with self._lock:
            self._open -= 1
            last = self._open == 0
        if last:
            self.client.close()
            if self.backend is not None:
                self.backend.close()
            self._done(self)

    def abort(self) -> None:
        """Wake both threads: their splice calls return and they end."""
        for sock in (self.client, self.backend):
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)


def _splice_all(src: int, dst: int) -> None:
    """Move everything from ``src`` to ``dst`` until EOF, through a pipe."""
    r, w = os.pipe2(os.O_CLOEXEC)
    try:
        with contextlib.suppress(OSError):
            fcntl.fcntl(w, _F_SETPIPE_SZ, _PIPE_SIZE)
        while n := os.splice(src, w, _PIPE_SIZE, flags=_SPLICE_F_MOVE):
            while n:
                n -= os.splice(r, dst, n, flags=_SPLICE_F_MOVE)
    finally:
        os.close(r)
        os.close(w)


class _UdpFront(asyncio.DatagramProtocol):
    """The listening socket: one connected backend socket per client address."""

    def __init__(self, container_ip: str, container_port: int) -> None:
        self.target = (container_ip, container_port)
        self.transport: asyncio.DatagramTransport | None = None
        self.backends: dict[tuple[str, int], _UdpBack] = {}
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        backend = self.backends.get(addr)
        if backend is None:
            try:
                backend = _UdpBack(self, addr)
            except OSError:
                return  # the container's address is unreachable: drop, as UDP would
            self.backends[addr] = backend
        backend.send(data)

    def connection_lost(self, exc: Exception | None) -> None:
        for backend in list(self.backends.values()):
            backend.close()
        if not self.closed.done():
            self.closed.set_result(None)


class _UdpBack:
    """A connected socket to the container for one client; replies go back
    through the listening socket. Read with add_reader: no task to track."""

    def __init__(self, front: _UdpFront, client: tuple[str, int]) -> None:
        self.front = front
        self.client = client
        self.loop = asyncio.get_running_loop()
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            self.sock.setblocking(False)
            self.sock.connect(front.target)
        except OSError:
            self.sock.close()
            raise
        self.loop.add_reader(self.sock.fileno(), self._readable)
        self.timer = self.loop.call_later(_UDP_IDLE, self.close)

    def send(self, data: bytes) -> None:
        try:
            self.sock.send(data)
        except OSError:
            pass  # ECONNREFUSED from an earlier datagram, a full buffer: UDP may drop
        self._touch()

    def _readable(self) -> None:
        while True:
            try:
                data = self.sock.recv(_UDP_MAX)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                continue  # a queued ICMP error (nobody listening yet): skip it
            front = self.front.transport
            if front is not None and not front.is_closing():
                front.sendto(data, self.client)
            self._touch()

    def close(self) -> None:
        self.timer.cancel()
        if self.front.backends.get(self.client) is self:
            del self.front.backends[self.client]
        if self.sock.fileno() >= 0:
            self.loop.remove_reader(self.sock.fileno())
            self.sock.close()

    def _touch(self) -> None:
        self.timer.cancel()
        self.timer = self.loop.call_later(_UDP_IDLE, self.close)


def _bind(proto: str, host_ip: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host_ip else socket.AF_INET
    kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
    sock = socket.socket(family, kind)
    try:
        if proto == "tcp":
            # TIME_WAIT from an earlier container must not block a restart.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind((host_ip, port))
        if proto == "tcp":
            sock.listen(socket.SOMAXCONN)
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        where = f"[{host_ip}]" if family == socket.AF_INET6 else host_ip
        if exc.errno == errno.EADDRINUSE:
            raise errdefs.System(
                f"Bind for {where}:{port} failed: port is already allocated"
            ) from None
        raise errdefs.System(
            f"Error starting userland proxy: listen {proto} {where}:{port}: {exc.strerror}"
        ) from None
    return sock


def allocate_port(proto: str, host_ip: str) -> int:
    """A port of the ephemeral range that is free on host_ip right now."""
    low, high = _ephemeral_range()
    host_ip = host_ip or "0.0.0.0"
    start = random.randint(low, high)
    for i in range(high - low + 1):
        port = low + (start - low + i) % (high - low + 1)
        try:
            _bind(proto, host_ip, port).close()
        except errdefs.System:
            continue
        return port
    raise errdefs.System(f"no free {proto} port in {low}-{high} on {host_ip}")


def _ephemeral_range() -> tuple[int, int]:
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            low, high = (int(x) for x in f.read().split())
    except (OSError, ValueError):
        low, high = 32768, 60999
    return low, high
