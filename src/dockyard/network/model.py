"""The network records: what the engine keeps about a network and about one
container's endpoint on it (JSON in the ``networks`` and ``endpoints``
tables), and their wire shapes (``NetworkResource``, ``EndpointSettings``).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace

BUILTIN = ("bridge", "host", "none")


@dataclass(frozen=True)
class Network:
    id: str
    name: str
    driver: str  # "bridge" | "host" | "null"
    created: str
    bridge: str = ""  # Linux bridge device; "" for host/none
    subnet: str = ""  # "10.89.0.0/24"; "" for host/none
    gateway: str = ""
    ip_range: str = ""
    internal: bool = False
    attachable: bool = False
    options: dict = field(default_factory=dict)
    labels: dict = field(default_factory=dict)
    # IPAM.Config as the user gave it (Docker echoes only what was asked for).
    ipam_config: list = field(default_factory=list)

    @property
    def builtin(self) -> bool:
        return self.name in BUILTIN

    @property
    def prefixlen(self) -> int:
        return int(self.subnet.rsplit("/", 1)[1]) if self.subnet else 0

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> Network:
        return cls(**json.loads(text))

    def to_api(self, containers: dict | None = None) -> dict:
        """``NetworkResource``; ``containers`` is {cid: EndpointResource}."""
        return {
            "Name": self.name,
            "Id": self.id,
            "Created": self.created,
            "Scope": "local",
            "Driver": self.driver,
            "EnableIPv4": True,
            "EnableIPv6": False,
            "IPAM": {"Driver": "default", "Options": {}, "Config": self.ipam_config},
            "Internal": self.internal,
            "Attachable": self.attachable,
            "Ingress": False,
            "ConfigFrom": {"Network": ""},
            "ConfigOnly": False,
            "Containers": containers if containers is not None else {},
            "Options": self.options,
            "Labels": self.labels,
        }


@dataclass(frozen=True)
class PortBinding:
    """One published port as installed: host side and container side."""

    proto: str
    container_port: int
    host_ip: str
    host_port: int


@dataclass(frozen=True)
class Endpoint:
    """A container's membership of a network. ``attached`` while the
    container runs with it (``ip`` set on bridge networks); ``last_ip``
    remembers the address to ask for again at the next start."""

    network_id: str
    container_id: str
    endpoint_id: str
    container_name: str = ""
    ip: str = ""
    last_ip: str = ""
    static_ip: str = ""  # IPAMConfig.IPv4Address: reserved even while stopped
    mac: str = ""
    requested_mac: str = ""
    aliases: tuple[str, ...] = ()
    links: tuple[str, ...] = ()
    driver_opts: dict = field(default_factory=dict)
    host_ifname: str = ""
    ports: tuple[PortBinding, ...] = ()
    attached: bool = False

    @property
    def active(self) -> bool:
        return self.attached

    def with_(self, **changes) -> Endpoint:
        return replace(self, **changes)

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> Endpoint:
        data = json.loads(text)
        data["aliases"] = tuple(data.get("aliases") or ())
        data["links"] = tuple(data.get("links") or ())
        data["ports"] = tuple(PortBinding(**p) for p in data.get("ports") or ())
        return cls(**data)

    def resource(self, network: Network) -> dict:
        """The entry of ``NetworkResource.Containers``."""
        return {
            "Name": self.container_name.lstrip("/"),
            "EndpointID": self.endpoint_id,
            "MacAddress": self.mac,
            "IPv4Address": f"{self.ip}/{network.prefixlen}" if self.ip else "",
            "IPv6Address": "",
        }

    def settings(self, network: Network, *, dns_names: list[str] | None = None) -> dict:
        """``EndpointSettings`` as container inspect shows it."""
        active = self.active and network.driver == "bridge"
        return {
            "IPAMConfig": {"IPv4Address": self.static_ip} if self.static_ip else None,
            "Links": list(self.links) or None,
            "Aliases": list(self.aliases) or None,
            "MacAddress": self.mac if active else "",
            "DriverOpts": self.driver_opts or None,
            "GwPriority": 0,
            "NetworkID": network.id,
            "EndpointID": self.endpoint_id if self.active else "",
            "Gateway": network.gateway if active else "",
            "IPAddress": self.ip if active else "",
            "IPPrefixLen": network.prefixlen if active else 0,
            "IPv6Gateway": "",
            "GlobalIPv6Address": "",
            "GlobalIPv6PrefixLen": 0,
            "DNSNames": dns_names,
        }
