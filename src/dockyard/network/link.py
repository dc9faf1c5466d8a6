"""Bridges and veth pairs, driven through iproute2 in batch mode.

One `ip -batch -` per network namespace touched: attaching a container is two
process spawns (host side, then `nsenter --net=PIN ip -batch -` inside), a
few milliseconds in all. The peer end is created directly inside the
container's namespace (`peer name eth0 netns PIN`; iproute2 takes a path
when the name contains '/'), so its final name never clashes with a host
interface. Addresses and routes are added only after the move because moving
a link between namespaces drops them.
"""

from __future__ import annotations

import hashlib
import ipaddress
import os
import subprocess
from pathlib import Path

from dockyard import errdefs

_SYS_NET = "/sys/class/net"


def ensure_bridge(name: str, gateway: ipaddress.IPv4Interface, *, mtu: int = 1500) -> None:
    """Create the bridge if missing; give it the gateway address, the MTU, and bring it up."""
    commands = [] if _link_exists(name) else [f"link add {name} type bridge"]
    commands += [
        f"link set {name} mtu {mtu}",
        f"addr replace {gateway.with_prefixlen} dev {name}",
        f"link set {name} up",
    ]
    _ip_batch(commands, what=f"bridge {name}")


def delete_bridge(name: str) -> None:
    """Delete the bridge; nothing to do when it is absent."""
    _delete_link(name)


def host_ifname(container_id: str, network_id: str) -> str:
    """The host end's name: stable per (container, network), 15 characters (IFNAMSIZ - 1)."""
    return "veth" + hashlib.sha256((container_id + network_id).encode()).hexdigest()[:11]


def attach(
    netns_path: Path,
    *,
    bridge: str,
    host_ifname: str,
    container_ifname: str,
    address: ipaddress.IPv4Interface,
    gateway: ipaddress.IPv4Address | None,
    mac: str,
    mtu: int = 1500,
) -> None:
    """Plug the namespace at ``netns_path`` into ``bridge`` through a new veth pair."""
    if _link_exists(host_ifname):
        # Left behind by a crash between attach and detach; the name is ours.
        _delete_link(host_ifname)
    _ip_batch(
        [
            f"link add {host_ifname} mtu {mtu} master {bridge} up type veth"
            f" peer name {container_ifname} address {mac} mtu {mtu} netns {netns_path}"
        ],
        what=f"veth {host_ifname} on {bridge}",
    )
    inside = [
        f"addr add {address.with_prefixlen} dev {container_ifname}",
        f"link set {container_ifname} up",
    ]
    if gateway is not None:
        inside.append(f"route add default via {gateway} dev {container_ifname}")
    try:
        _ip_batch(inside, what=f"address {address} on {container_ifname}", netns=netns_path)
    except errdefs.DockyardError:
        _delete_link(host_ifname)
        raise


def detach(host_ifname: str) -> None:
    """Delete the veth pair by its host end; the peer goes with it. No error if absent."""
    _delete_link(host_ifname)


def generate_mac(ip: ipaddress.IPv4Address) -> str:
    """Docker's MAC for an address: locally administered 02:42 then the four address bytes."""
    return "02:42:" + ":".join(f"{b:02x}" for b in ip.packed)


def _link_exists(name: str) -> bool:
    # sysfs shows the daemon's own namespace: a stat instead of a process.
    return os.path.exists(f"{_SYS_NET}/{name}")


def _delete_link(name: str) -> None:
    if not _link_exists(name):
        return
    proc = _run(["ip", "link", "del", "dev", name], "")
    if proc.returncode != 0 and _link_exists(name):
        raise errdefs.System(f"delete link {name}: {proc.stderr.strip()}")


def _ip_batch(commands: list[str], *, what: str, netns: Path | None = None) -> None:
    argv = ["ip", "-batch", "-"]
    if netns is not None:
        argv = ["nsenter", f"--net={netns}", *argv]
    proc = _run(argv, "\n".join(commands) + "\n")
    if proc.returncode != 0:
        raise errdefs.System(f"{what}: {proc.stderr.strip()}")


def _run(argv: list[str], stdin: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, input=stdin, capture_output=True, text=True, check=False)
