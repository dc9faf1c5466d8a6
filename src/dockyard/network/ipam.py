"""IPv4 address management for bridge networks, without I/O (except
``host_routes``, which reads the kernel's routing table).

A ``Pool`` is one subnet with its gateway and an optional ``ip_range`` that
dynamic allocation draws from (as ``docker network create --ip-range``). The
network address, the broadcast address and the gateway are never handed
out. Dynamic allocation scans forward from the last address it gave
(Docker's bitmap allocator does the same), so an address released a moment
ago is not reused at once; a static (preferred) address may lie anywhere in
the subnet, as with Docker, not only inside ``ip_range``.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from ipaddress import IPv4Address, IPv4Network

from dockyard import errdefs

# Docker's default local address pools: 172.17-31.0.0/16, then 192.168.x.0/20.
DEFAULT_POOLS: tuple[IPv4Network, ...] = (
    *(IPv4Network(f"172.{n}.0.0/16") for n in range(17, 32)),
    *(IPv4Network(f"192.168.{n}.0/20") for n in range(0, 256, 16)),
)

ALREADY_IN_USE = "Address already in use"


class Pool:
    """The addresses of one subnet: which are taken, and the next free one."""

    def __init__(
        self,
        subnet: IPv4Network,
        *,
        gateway: IPv4Address | None = None,
        ip_range: IPv4Network | None = None,
        allocated: Iterable[IPv4Address] = (),
    ) -> None:
        if gateway is not None and gateway not in subnet:
            raise errdefs.InvalidArgument(
                f"invalid gateway {gateway}: parent subnet {subnet} doesn't contain this address"
            )
        if ip_range is not None and not ip_range.subnet_of(subnet):
            raise errdefs.InvalidArgument(
                f"invalid ip-range {ip_range}: parent subnet {subnet} doesn't contain ip-range"
            )
        self.subnet = subnet
        self.gateway = gateway
        self.ip_range = ip_range
        self.allocated: set[IPv4Address] = set(allocated)
        self._last = int((ip_range or subnet).network_address)

    @property
    def reserved(self) -> set[IPv4Address]:
        """Addresses never handed out: network, broadcast, gateway."""
        out = {self.subnet.network_address}
        if self.subnet.prefixlen < 31:
            out.add(self.subnet.broadcast_address)
        if self.gateway is not None:
            out.add(self.gateway)
        return out

    def is_free(self, addr: IPv4Address) -> bool:
        return addr in self.subnet and addr not in self.allocated and addr not in self.reserved

    def allocate(self, preferred: IPv4Address | None = None) -> IPv4Address:
        """A free address: ``preferred`` if given (InvalidArgument outside the
        subnet, Conflict when taken), else the next free one of the range."""
        if preferred is not None:
            if preferred not in self.subnet:
                raise errdefs.InvalidArgument(
                    f"no configured subnet or ip-range contain the IP address {preferred}"
                )
            if not self.is_free(preferred):
                raise errdefs.Conflict(ALREADY_IN_USE)
            self.allocated.add(preferred)
            return preferred
        space = self.ip_range or self.subnet
        first, size = int(space.network_address), space.num_addresses
        start = (self._last + 1 - first) % size
        reserved = self.reserved
        for step in range(size):
            addr = IPv4Address(first + (start + step) % size)
            if addr not in self.allocated and addr not in reserved:
                self.allocated.add(addr)
                self._last = int(addr)
                return addr
        raise errdefs.Unavailable("no available addresses on this pool")

    def release(self, addr: IPv4Address) -> None:
        self.allocated.discard(addr)


def validate_config(subnet: str, ip_range: str = "", gateway: str = "") -> IPAMConfig:
    """One IPAM config entry checked as dockerd does; every problem is named in
    one InvalidArgument "invalid network config:\n..." error."""
    errors: list[str] = []
    net = _parse_block(subnet, "subnet", errors)
    rng = _parse_block(ip_range, "ip-range", errors) if ip_range else None
    if net is not None and rng is not None and not rng.subnet_of(net):
        if rng.prefixlen < net.prefixlen:
            errors.append(
                f"invalid ip-range {ip_range}: CIDR block is bigger than its parent subnet {net}"
            )
        else:
            errors.append(
                f"invalid ip-range {ip_range}: parent subnet {net} doesn't contain ip-range"
            )
    gw = None
    if gateway:
        try:
            gw = IPv4Address(gateway.strip())
        except ValueError:
            errors.append(f"invalid gateway {gateway}: invalid address")
        else:
            if net is not None and gw not in net:
                errors.append(
                    f"invalid gateway {gateway}: parent subnet {net} doesn't contain this address"
                )
    if errors or net is None:
        raise errdefs.InvalidArgument("invalid network config:\n" + "\n".join(errors))
    return IPAMConfig(subnet=net, gateway=gw or first_host(net), ip_range=rng)


class IPAMConfig:
    """A validated IPAM config entry (gateway defaulted to the first host)."""

    __slots__ = ("gateway", "ip_range", "subnet")

    def __init__(
        self, *, subnet: IPv4Network, gateway: IPv4Address, ip_range: IPv4Network | None
    ) -> None:
        self.subnet, self.gateway, self.ip_range = subnet, gateway, ip_range


def _parse_block(text: str, what: str, errors: list[str]) -> IPv4Network | None:
    try:
        iface = ipaddress.IPv4Interface(text.strip())
    except ValueError:
        errors.append(f"invalid {what} {text}: invalid CIDR block notation")
        return None
    if "/" not in text:
        errors.append(f"invalid {what} {text}: invalid CIDR block notation")
        return None
    if iface.ip != iface.network.network_address:
        errors.append(f"invalid {what} {text}: it should be {iface.network}")
    return iface.network


def parse_address(text: str) -> IPv4Address:
    try:
        return IPv4Address(text.strip())
    except ValueError:
        raise errdefs.InvalidArgument(f"invalid IPv4 address: {text}") from None


def first_host(subnet: IPv4Network) -> IPv4Address:
    """The default gateway of a subnet: its first host address."""
    return IPv4Address(int(subnet.network_address) + 1)


def default_subnet(taken: list[IPv4Network], routes: list[IPv4Network]) -> IPv4Network:
    """The first of Docker's default pools that overlaps neither a network of
    ours nor a route of the host."""
    busy = [*taken, *routes]
    for pool in DEFAULT_POOLS:
        if not any(pool.overlaps(other) for other in busy):
            return pool
    raise errdefs.Unavailable("all predefined address pools have been fully subnetted")


def host_routes() -> list[IPv4Network]:
    """The destinations of the host's IPv4 routes, default route excluded."""
    try:
        with open("/proc/net/route") as f:
            lines = f.read().splitlines()[1:]
    except OSError:
        return []
    out: list[IPv4Network] = []
    for line in lines:
        fields = line.split()
        if len(fields) < 8:
            continue
        # /proc/net/route prints addresses as little-endian hex.
        dest = IPv4Address(int.from_bytes(bytes.fromhex(fields[1]), "little"))
        mask = IPv4Address(int.from_bytes(bytes.fromhex(fields[7]), "little"))
        if int(mask) == 0:
            continue
        out.append(IPv4Network(f"{dest}/{mask}", strict=False))
    return out
