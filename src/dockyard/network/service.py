"""The network service: Docker's networks (``bridge``, ``host``, ``none`` and
user-defined bridge networks), their IPAM, and each container's sandbox.

Wiring (the daemon and the container service)::

    networks = NetworkService(config, db)   # data plane defaults: link, netns, firewall, proxy
    networks.resolve_container = containers.get   # for "container:<name|id>" and connect
    await networks.start()      # before containers.restore(): bridges, firewall, proxies
    ...
    sandbox = await networks.sandbox(container)   # at container start
    await networks.release(container)             # at container exit / failed start
    networks.settings(container)                  # NetworkSettings for inspect / ps
    await networks.forget(container.id)           # at container removal: drop endpoints
    await networks.close()                        # daemon stop: proxies closed, state kept
    await networks.teardown()                     # remove every bridge, veth, rule (tests)

``Sandbox``: ``netns_path`` (None = the host's namespace; for ``none`` a fresh
one with only lo; for ``container:<id>`` the other container's), the
``hosts_entries`` ((ip, names) lines for /etc/hosts), ``resolv_conf``,
``hostname`` and the endpoints attached.

Data plane (keyword arguments, real modules by default): ``link`` and
``netns`` modules, a ``firewall`` (``firewall.Firewall``; chain prefix
``DOCKYARD-<BRIDGE>``), and ``proxy`` (a module with ``Proxy`` and
``allocate_port``). All of it is synchronous and runs in threads.

DNS hook: ``dns`` (constructor argument or attribute, default None) is a
``network.dns.DnsServer``; wire it as
``networks.dns = DnsServer(networks, upstreams=networks.host_upstreams())``
(the service is its Resolver: ``lookup(container_id, name) -> list[str]``).
The service calls ``dns.add(cid, netns_path, upstreams=HostConfig.Dns or
None)`` for containers on user networks and ``dns.remove(cid)`` at release.
Without it, user networks get the host's resolvers in resolv.conf.

Addresses: the pool of each bridge network holds the addresses of attached
endpoints plus every static ``IPv4Address`` (kept while the container is
stopped). A restarted container asks for its ``last_ip`` first.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import secrets
import socket
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from ipaddress import IPv4Address, IPv4Interface
from pathlib import Path
from typing import Any

from dockyard import errdefs
from dockyard.network import ipam
from dockyard.network.model import Endpoint, Network, PortBinding

log = logging.getLogger(__name__)

DEFAULT_BRIDGE = "dockyard0"
BRIDGE_NAME_OPTION = "com.docker.network.bridge.name"
EMBEDDED_DNS = "127.0.0.11"
_LOOPBACK_PREFIXES = ("127.", "::1")
_FALLBACK_DNS = ("8.8.8.8", "8.8.4.4")


@dataclass(frozen=True)
class Sandbox:
    netns_path: str | None
    hosts_entries: list[tuple[str, str]] = field(default_factory=list)
    resolv_conf: str | None = None
    hostname: str | None = None
    endpoints: list[Endpoint] = field(default_factory=list)


def _now() -> str:
    ns = time.time_ns()
    seconds, frac = divmod(ns, 1_000_000_000)
    stamp = datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{stamp}.{frac:09d}Z"


def _new_id() -> str:
    return secrets.token_hex(32)


class NetworkService:
    def __init__(
        self,
        config: Any,
        db: Any,
        *,
        firewall: Any = None,
        link: Any = None,
        netns: Any = None,
        proxy: Any = None,
        dns: Any = None,
        resolv_conf_path: Path = Path("/etc/resolv.conf"),
        routes: Any = None,
    ) -> None:
        self.config = config
        self.db = db
        self.bridge_name = getattr(config, "bridge", None) or DEFAULT_BRIDGE
        if firewall is None:
            from dockyard.network.firewall import Firewall

            firewall = Firewall("DOCKYARD-" + self.bridge_name.upper())
        if link is None:
            from dockyard.network import link
        if netns is None:
            from dockyard.network import netns
        if proxy is None:
            from dockyard.network import proxy
        self.firewall, self.link, self.netns, self.proxy, self.dns = (
            firewall,
            link,
            netns,
            proxy,
            dns,
        )
        self._resolv_conf_path = resolv_conf_path
        self._routes = routes or ipam.host_routes
        self.resolve_container: Any = None  # ref -> Container, set by the daemon
        self._networks: dict[str, Network] = {}
        self._pools: dict[str, ipam.Pool] = {}
        self._endpoints: dict[tuple[str, str], Endpoint] = {}
        self._proxies: dict[str, list[Any]] = {}  # container id -> running proxies
        self._upstreams: dict[str, list[str]] = {}
        self._lock = asyncio.Lock()

    # -- paths and lookups -------------------------------------------------
    def netns_path(self, container_id: str) -> Path:
        return Path(self.config.exec_root) / "netns" / container_id

    def get(self, ref: str) -> Network:
        """A network by ID, name or unique ID prefix (NotFound otherwise)."""
        if ref in self._networks:
            return self._networks[ref]
        for n in self._networks.values():
            if n.name == ref:
                return n
        matches = [n for n in self._networks.values() if ref and n.id.startswith(ref)]
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            raise errdefs.InvalidArgument(
                f"network {ref} is ambiguous ({len(matches)} matches found based on ID prefix)"
            )
        raise errdefs.NotFound(f"network {ref} not found")

    def _by_name(self, name: str) -> Network | None:
        return next((n for n in self._networks.values() if n.name == name), None)

    def endpoints_of(self, container_id: str) -> list[Endpoint]:
        eps = [ep for (_, cid), ep in self._endpoints.items() if cid == container_id]
        return sorted(eps, key=lambda ep: ep.host_ifname or "~")

    def _attached(self, network_id: str) -> list[Endpoint]:
        return [ep for (nid, _), ep in self._endpoints.items() if nid == network_id and ep.active]

    # -- persistence -------------------------------------------------------
    def _load(self) -> None:
        for row in self.db.query("SELECT record FROM networks"):
            n = Network.from_json(row["record"])
            self._networks[n.id] = n
        for row in self.db.query("SELECT record FROM endpoints"):
            ep = Endpoint.from_json(row["record"])
            self._endpoints[(ep.network_id, ep.container_id)] = ep
        for n in self._networks.values():
            if n.driver == "bridge":
                self._pools[n.id] = self._make_pool(n)

    def _make_pool(self, n: Network) -> ipam.Pool:
        taken = set()
        for (nid, _), ep in self._endpoints.items():
            if nid != n.id:
                continue
            if ep.active and ep.ip:
                taken.add(IPv4Address(ep.ip))
            if ep.static_ip:
                taken.add(IPv4Address(ep.static_ip))
        return ipam.Pool(
            ipaddress.IPv4Network(n.subnet),
            gateway=IPv4Address(n.gateway),
            ip_range=ipaddress.IPv4Network(n.ip_range) if n.ip_range else None,
            allocated=taken,
        )

    def _save_network(self, n: Network) -> None:
        with self.db.tx() as cur:
            cur.execute(
                "INSERT OR REPLACE INTO networks (id, name, record) VALUES (?, ?, ?)",
                (n.id, n.name, n.to_json()),
            )
        self._networks[n.id] = n

    def _save_endpoint(self, ep: Endpoint) -> None:
        with self.db.tx() as cur:
            cur.execute(
                "INSERT OR REPLACE INTO endpoints (network_id, container_id, record)"
                " VALUES (?, ?, ?)",
                (ep.network_id, ep.container_id, ep.to_json()),
            )
        self._endpoints[(ep.network_id, ep.container_id)] = ep

    def _delete_endpoint(self, ep: Endpoint) -> None:
        with self.db.tx() as cur:
            cur.execute(
                "DELETE FROM endpoints WHERE network_id = ? AND container_id = ?",
                (ep.network_id, ep.container_id),
            )
        self._endpoints.pop((ep.network_id, ep.container_id), None)
        pool = self._pools.get(ep.network_id)
        if pool is not None:
            for addr in {ep.ip, ep.static_ip} - {""}:
                pool.release(IPv4Address(addr))

    # -- daemon lifecycle --------------------------------------------------
    async def start(self) -> None:
        """Ensure the pre-defined networks; set up bridges and netfilter;
        restore the ports of containers that kept running (live restore)."""
        await asyncio.to_thread(self._load)
        self._ensure_builtin()
        await asyncio.to_thread(self.firewall.setup)
        for n in list(self._networks.values()):
            if n.driver == "bridge":
                await asyncio.to_thread(self._bring_up, n)
        for cid in {cid for (_, cid), ep in self._endpoints.items() if ep.active}:
            if await asyncio.to_thread(self.netns.exists, self.netns_path(cid)):
                await self._restore_ports(cid)
                await self._restore_dns(cid)
            else:
                await self._release_id(cid)

    def _ensure_builtin(self) -> None:
        bridge = self._by_name("bridge")
        if self.config.bip:
            try:
                iface = IPv4Interface(self.config.bip)
            except ValueError:
                raise errdefs.InvalidArgument(f"invalid bip {self.config.bip!r}") from None
            subnet, gateway = iface.network, iface.ip
        elif bridge is not None and bridge.subnet:
            subnet = ipaddress.IPv4Network(bridge.subnet)
            gateway = IPv4Address(bridge.gateway)
        else:
            taken = [ipaddress.IPv4Network(n.subnet) for n in self._networks.values() if n.subnet]
            subnet = ipam.default_subnet(taken, self._routes())
            gateway = ipam.first_host(subnet)
        wanted = Network(
            id=bridge.id if bridge else _new_id(),
            name="bridge",
            driver="bridge",
            created=bridge.created if bridge else _now(),
            bridge=self.bridge_name,
            subnet=str(subnet),
            gateway=str(gateway),
            options={
                "com.docker.network.bridge.default_bridge": "true",
                "com.docker.network.bridge.enable_icc": "true",
                "com.docker.network.bridge.enable_ip_masquerade": "true",
                "com.docker.network.bridge.host_binding_ipv4": "0.0.0.0",
                BRIDGE_NAME_OPTION: self.bridge_name,
                "com.docker.network.driver.mtu": "1500",
            },
            ipam_config=[{"Subnet": str(subnet), "Gateway": str(gateway)}],
        )
        if wanted != bridge:
            self._save_network(wanted)
            self._pools[wanted.id] = self._make_pool(wanted)
        for name, driver in (("host", "host"), ("none", "null")):
            if self._by_name(name) is None:
                self._save_network(Network(id=_new_id(), name=name, driver=driver, created=_now()))

    def _bring_up(self, n: Network) -> None:
        gateway = IPv4Interface(f"{n.gateway}/{n.prefixlen}")
        self.link.ensure_bridge(n.bridge, gateway)
        self.firewall.add_network(
            bridge=n.bridge, subnet=ipaddress.IPv4Network(n.subnet), internal=n.internal
        )

    async def _restore_ports(self, cid: str) -> None:
        for ep in self.endpoints_of(cid):
            n = self._networks.get(ep.network_id)
            if not ep.active or n is None:
                continue
            for pb in ep.ports:
                m = self._mapping(pb, ep, n)
                await asyncio.to_thread(self.firewall.add_port, m)
                p = self.proxy.Proxy(m)
                try:
                    await p.start()
                except errdefs.DockyardError as exc:
                    log.warning("container %s: port %s not restored: %s", cid, pb, exc)
                    continue
                self._proxies.setdefault(cid, []).append(p)

    async def _restore_dns(self, cid: str) -> None:
        """The embedded DNS sockets died with the previous daemon: open them
        again for a running container on a user network."""
        if self.dns is None:
            return
        names = {self._networks[ep.network_id].name for ep in self.endpoints_of(cid)
                 if ep.active and ep.network_id in self._networks}  # fmt: skip
        if not names - {"bridge"}:
            return
        servers: list[str] = []
        if self.resolve_container is not None:
            with contextlib.suppress(errdefs.NotFound):
                c = self.resolve_container(cid)
                servers = list((c.host_config or {}).get("Dns") or [])
        self._upstreams[cid] = servers
        try:
            await self.dns.add(cid, str(self.netns_path(cid)), upstreams=servers or None)
        except errdefs.DockyardError as exc:
            log.warning("container %s: embedded DNS not restored: %s", cid, exc)

    async def close(self) -> None:
        """Stop the proxies; bridges, veths and rules stay for live restore."""
        for cid in list(self._proxies):
            for p in self._proxies.pop(cid):
                with contextlib.suppress(Exception):
                    await p.close()

    async def teardown(self) -> None:
        """Remove every bridge, veth, netns pin and rule this daemon made."""
        for cid in {cid for (_, cid) in self._endpoints}:
            await self._release_id(cid)
        await self.close()
        for n in self._networks.values():
            if n.driver == "bridge":
                await asyncio.to_thread(self.link.delete_bridge, n.bridge)
        await asyncio.to_thread(self.firewall.teardown)

    # -- networks ----------------------------------------------------------
    async def create(self, body: dict) -> dict:
        """POST /networks/create: {"Id", "Warning"}."""
        name = str(body.get("Name") or "")
        if not name:
            raise errdefs.InvalidArgument("network name must be specified")
        driver = body.get("Driver") or "bridge"
        if driver in ("host", "null"):
            raise errdefs.Forbidden(f'only one instance of "{driver}" network is allowed')
        if driver != "bridge":
            raise errdefs.NotFound(f'plugin "{driver}" not found')
        if body.get("EnableIPv6"):
            raise errdefs.NotImplemented("IPv6 networks are not supported by this engine")
        ipam_body = body.get("IPAM") or {}
        if (ipam_body.get("Driver") or "default") != "default":
            raise errdefs.NotFound(f'plugin "{ipam_body["Driver"]}" not found')
        async with self._lock:
            if self._by_name(name) is not None:
                raise errdefs.Conflict(f"network with name {name} already exists")
            n = self._new_network(name, body, ipam_body.get("Config") or [])
            try:
                await asyncio.to_thread(self._bring_up, n)
            except BaseException:
                await asyncio.to_thread(self._bring_down, n)
                raise
            self._save_network(n)
            self._pools[n.id] = self._make_pool(n)
        return {"Id": n.id, "Warning": ""}

    def _new_network(self, name: str, body: dict, configs: list) -> Network:
        v4 = [c for c in configs if ":" not in str(c.get("Subnet") or "")]
        if len(v4) > 1:
            raise errdefs.NotImplemented("only one IPv4 subnet per network is supported")
        taken = [ipaddress.IPv4Network(n.subnet) for n in self._networks.values() if n.subnet]
        shown: list[dict] = []
        if v4 and v4[0].get("Subnet"):
            c = v4[0]
            cfg = ipam.validate_config(
                str(c["Subnet"]), str(c.get("IPRange") or ""), str(c.get("Gateway") or "")
            )
            if any(cfg.subnet.overlaps(t) for t in taken):
                raise errdefs.Forbidden(
                    "invalid pool request: Pool overlaps with other one on this address space"
                )
            shown = [{"Subnet": str(cfg.subnet), "Gateway": str(cfg.gateway)}]
            if cfg.ip_range:
                shown[0]["IPRange"] = str(cfg.ip_range)
        elif v4 and (v4[0].get("Gateway") or v4[0].get("IPRange")):
            raise errdefs.InvalidArgument(
                "invalid network config:\nsubnet is required with gateway or ip-range"
            )
        else:
            subnet = ipam.default_subnet(taken, self._routes())
            cfg = ipam.IPAMConfig(subnet=subnet, gateway=ipam.first_host(subnet), ip_range=None)
            shown = [{"Subnet": str(subnet), "Gateway": str(cfg.gateway)}]
        nid = _new_id()
        options = {str(k): str(v) for k, v in (body.get("Options") or {}).items()}
        device = options.get(BRIDGE_NAME_OPTION) or f"dy-{nid[:12]}"
        if len(device) > 15 or not device.isprintable() or "/" in device or " " in device:
            raise errdefs.InvalidArgument(f"invalid bridge name {device!r}")
        if any(n.bridge == device for n in self._networks.values()):
            raise errdefs.Conflict(f"bridge name {device} is in use by another network")
        return Network(
            id=nid,
            name=name,
            driver="bridge",
            created=_now(),
            bridge=device,
            subnet=str(cfg.subnet),
            gateway=str(cfg.gateway),
            ip_range=str(cfg.ip_range) if cfg.ip_range else "",
            internal=bool(body.get("Internal")),
            attachable=bool(body.get("Attachable")),
            options=options,
            labels={str(k): str(v) for k, v in (body.get("Labels") or {}).items()},
            ipam_config=shown,
        )

    def _bring_down(self, n: Network) -> None:
        with contextlib.suppress(errdefs.DockyardError):
            self.firewall.remove_network(
                bridge=n.bridge, subnet=ipaddress.IPv4Network(n.subnet), internal=n.internal
            )
        self.link.delete_bridge(n.bridge)

    def inspect(self, ref: str, verbose: bool = False) -> dict:
        n = self.get(ref)
        containers = {ep.container_id: ep.resource(n) for ep in self._attached(n.id)}
        return n.to_api(containers)

    def list(self, filters: dict[str, list[str]] | None = None) -> list[dict]:
        filters = filters or {}
        allowed = {"name", "id", "driver", "label", "type", "dangling", "scope"}
        for key in filters:
            if key not in allowed:
                raise errdefs.InvalidArgument(f"invalid filter '{key}'")
        out = [
            n.to_api({})
            for n in sorted(self._networks.values(), key=lambda n: n.created)
            if self._matches(n, filters)
        ]
        return out

    def _matches(self, n: Network, filters: dict[str, list[str]]) -> bool:
        def any_of(key: str, test) -> bool:
            values = filters.get(key)
            return not values or any(test(v) for v in values)

        def label(spec: str) -> bool:
            key, eq, value = spec.partition("=")
            return key in n.labels and (not eq or n.labels[key] == value)

        def kind(value: str) -> bool:
            if value not in ("custom", "builtin"):
                raise errdefs.InvalidArgument(f"invalid filter: 'type'='{value}'")
            return (value == "builtin") == n.builtin

        def dangling(value: str) -> bool:
            if value.lower() not in ("true", "false", "1", "0"):
                raise errdefs.InvalidArgument(f"invalid filter 'dangling={value}'")
            # Pre-defined networks are never dangling, as in dockerd.
            unused = not n.builtin and not self._attached(n.id)
            return unused == (value.lower() in ("true", "1"))

        labels = filters.get("label") or []
        return (
            any_of("name", lambda v: v in n.name)
            and any_of("id", lambda v: v in n.id)
            and any_of("driver", lambda v: v == n.driver)
            and all(label(v) for v in labels)
            and any_of("type", kind)
            and any_of("dangling", dangling)
            and any_of("scope", lambda v: v == "local")
        )

    async def remove(self, ref: str) -> None:
        async with self._lock:
            n = self.get(ref)
            if n.builtin:
                raise errdefs.Forbidden(f"{n.name} is a pre-defined network and cannot be removed")
            if self._attached(n.id):
                raise errdefs.Forbidden(
                    f"error while removing network: network {n.name} id {n.id} has active endpoints"
                )
            await asyncio.to_thread(self._bring_down, n)
            with self.db.tx() as cur:
                cur.execute("DELETE FROM endpoints WHERE network_id = ?", (n.id,))
                cur.execute("DELETE FROM networks WHERE id = ?", (n.id,))
            for key in [k for k in self._endpoints if k[0] == n.id]:
                del self._endpoints[key]
            self._networks.pop(n.id, None)
            self._pools.pop(n.id, None)

    async def prune(self, filters: dict[str, list[str]] | None = None) -> dict:
        filters = filters or {}
        for key in filters:
            if key not in ("until", "label", "label!"):
                raise errdefs.InvalidArgument(f"invalid filter '{key}'")
        until = _until(filters.get("until") or [])
        deleted: list[str] = []
        for n in sorted(self._networks.values(), key=lambda n: n.created):
            if n.builtin or self._attached(n.id):
                continue
            if until is not None and _stamp(n.created) >= until:
                continue
            if not all(_label_match(n.labels, s) for s in filters.get("label") or []):
                continue
            if any(_label_match(n.labels, s) for s in filters.get("label!") or []):
                continue
            with contextlib.suppress(errdefs.Forbidden, errdefs.NotFound):
                await self.remove(n.id)
                deleted.append(n.name)
        return {"NetworksDeleted": deleted}

    # -- containers --------------------------------------------------------
    def _mode(self, container: Any) -> str:
        mode = (container.host_config or {}).get("NetworkMode") or "default"
        return "bridge" if mode == "default" else mode

    def _endpoint_configs(self, container: Any) -> dict:
        nc = getattr(container, "networking_config", None) or {}
        # The docker CLI keys the endpoint of `--network default` (or none
        # given) as "default": that is the bridge network.
        return {
            ("bridge" if key == "default" else key): cfg
            for key, cfg in (nc.get("EndpointsConfig") or {}).items()
        }

    def check_create(self, container: Any) -> None:
        """What dockerd refuses at create rather than at start: an unknown
        network, and a static address outside its network's subnet."""
        mode = self._mode(container)
        if mode in ("host", "none") or mode.startswith("container:"):
            return
        primary = self.get(mode)
        for key, cfg in self._endpoint_configs(container).items():
            n = primary if key in (mode, primary.name, primary.id) else self.get(key)
            static = str(((cfg or {}).get("IPAMConfig") or {}).get("IPv4Address") or "")
            if static and n.subnet and n.name != "bridge":
                addr = ipam.parse_address(static)
                if addr not in ipaddress.IPv4Network(n.subnet):
                    raise errdefs.InvalidArgument(
                        f"no configured subnet or ip-range contain the IP address {addr}"
                    )

    async def sandbox(self, container: Any) -> Sandbox:
        """Create the container's network namespace and endpoints."""
        mode = self._mode(container)
        hostname = _hostname(container)
        if mode == "host":
            n = self.get("host")
            await self._mark_attached(container, n)
            return Sandbox(
                netns_path=None,
                resolv_conf=self._host_resolv(container, filter_loopback=False),
                hostname=socket.gethostname(),
            )
        if mode.startswith("container:"):
            return await self._joined_sandbox(container, mode.split(":", 1)[1])
        path = self.netns_path(container.id)
        await asyncio.to_thread(self.netns.create, path)
        try:
            if mode == "none":
                await self._mark_attached(container, self.get("none"))
                return Sandbox(
                    netns_path=str(path),
                    resolv_conf=self._host_resolv(container),
                    hostname=hostname,
                )
            endpoints = await self._attach_all(container, mode, path)
        except BaseException:
            await self.release(container)
            raise
        primary = endpoints[0] if endpoints else None
        user = any(self._networks[ep.network_id].name != "bridge" for ep in endpoints)
        entries = [(primary.ip, hostname)] if primary is not None and primary.ip else []
        resolv = self._host_resolv(container)
        if user and await self._start_dns(container, path, write=False):
            resolv = self._embedded_resolv(container)
        return Sandbox(
            netns_path=str(path),
            hosts_entries=entries,
            resolv_conf=resolv,
            hostname=hostname,
            endpoints=endpoints,
        )

    async def _start_dns(self, container: Any, path: Path, *, write: bool = True) -> bool:
        """Serve the embedded DNS in the container's namespace (once). A
        running container that joins its first user network also gets its
        resolv.conf rewritten in place (the file is bind-mounted: same inode)."""
        if self.dns is None:
            return False
        if container.id in self._upstreams:
            return True
        dns_servers = list((container.host_config or {}).get("Dns") or [])
        self._upstreams[container.id] = dns_servers
        await self.dns.add(container.id, str(path), upstreams=dns_servers or None)
        if write and container.resolv_conf_path:
            text = self._embedded_resolv(container)
            await asyncio.to_thread(Path(container.resolv_conf_path).write_text, text)
        return True

    async def _joined_sandbox(self, container: Any, ref: str) -> Sandbox:
        if self.resolve_container is None:
            raise errdefs.NotImplemented("container network mode is not available")
        other = self.resolve_container(ref)
        path = self.netns_path(other.id)
        if not other.state.running or not await asyncio.to_thread(self.netns.exists, path):
            raise errdefs.Conflict(f"cannot join network of a non running container: {other.id}")
        eps = [ep for ep in self.endpoints_of(other.id) if ep.active and ep.ip]
        entries = [(eps[0].ip, _hostname(other))] if eps else []
        return Sandbox(
            netns_path=str(path),
            hosts_entries=entries,
            resolv_conf=self._host_resolv(other),
            hostname=_hostname(other),
        )

    async def _mark_attached(self, container: Any, n: Network) -> None:
        ep = self._endpoints.get((n.id, container.id)) or Endpoint(
            network_id=n.id, container_id=container.id, endpoint_id=_new_id()
        )
        self._save_endpoint(ep.with_(attached=True, container_name=container.name))

    async def _attach_all(self, container: Any, mode: str, path: Path) -> list[Endpoint]:
        primary = self.get(mode)
        if primary.driver != "bridge":
            raise errdefs.InvalidArgument(
                f"container cannot be connected to network {primary.name} in mode {mode}"
            )
        cfgs = self._endpoint_configs(container)
        plan: list[tuple[Network, dict]] = [(primary, _cfg_for(cfgs, primary))]
        for key, cfg in cfgs.items():
            n = self.get(key)
            if n.id != primary.id and all(n.id != p.id for p, _ in plan):
                plan.append((n, cfg or {}))
        for ep in self.endpoints_of(container.id):
            n = self._networks.get(ep.network_id)
            if n is not None and n.driver == "bridge" and all(n.id != p.id for p, _ in plan):
                plan.append((n, {}))
        mac = (container.config or {}).get("MacAddress") or ""
        attached: list[Endpoint] = []
        for index, (n, cfg) in enumerate(plan):
            ep = await self._attach(
                container, n, cfg, path, index=index, mac=mac if index == 0 else ""
            )
            attached.append(ep)
        ep = await self._publish(container, primary, attached[0])
        attached[0] = ep
        return attached

    def _allocate(self, container: Any, n: Network, cfg: dict) -> Endpoint:
        """Reserve the endpoint's address (no I/O, so no other task interleaves)."""
        old = self._endpoints.get((n.id, container.id))
        ipam_cfg = (cfg or {}).get("IPAMConfig") or {}
        static = str(ipam_cfg.get("IPv4Address") or "") or (old.static_ip if old else "")
        aliases = tuple((cfg or {}).get("Aliases") or ()) or (old.aliases if old else ())
        if n.name == "bridge":
            if static:
                raise errdefs.InvalidArgument(
                    "user specified IP address is supported only when connecting to networks"
                    " with user configured subnets"
                )
            if aliases:
                raise errdefs.InvalidArgument(
                    "network-scoped alias is supported only for containers in user defined networks"
                )
        pool = self._pools[n.id]
        if static:
            addr = ipam.parse_address(static)
            if not (old is not None and old.static_ip == static):
                pool.allocate(addr)
        else:
            addr = None
            if old is not None and old.last_ip:
                last = IPv4Address(old.last_ip)
                if pool.is_free(last):
                    addr = pool.allocate(last)
            if addr is None:
                try:
                    addr = pool.allocate()
                except errdefs.Unavailable:
                    raise errdefs.System(
                        "no available IPv4 addresses on this network's address pools:"
                        f" {n.name} ({n.id})"
                    ) from None
        ep = old or Endpoint(network_id=n.id, container_id=container.id, endpoint_id=_new_id())
        ep = ep.with_(
            container_name=container.name,
            ip=str(addr),
            last_ip=str(addr),
            static_ip=static,
            aliases=aliases,
            links=tuple((cfg or {}).get("Links") or ()) or ep.links,
            driver_opts=dict((cfg or {}).get("DriverOpts") or {}) or ep.driver_opts,
            requested_mac=str((cfg or {}).get("MacAddress") or "") or ep.requested_mac,
            host_ifname=self.link.host_ifname(container.id, n.id),
            attached=True,
        )
        self._endpoints[(n.id, container.id)] = ep
        return ep

    async def _attach(
        self, container: Any, n: Network, cfg: dict, path: Path, *, index: int, mac: str
    ) -> Endpoint:
        ep = self._allocate(container, n, cfg)
        addr = IPv4Address(ep.ip)
        mac = ep.requested_mac or mac or self.link.generate_mac(addr)
        ep = ep.with_(mac=mac)
        self._endpoints[(n.id, container.id)] = ep
        gateway = None if n.internal or index > 0 else IPv4Address(n.gateway)
        await asyncio.to_thread(
            self.link.attach,
            path,
            bridge=n.bridge,
            host_ifname=ep.host_ifname,
            container_ifname=f"eth{index}",
            address=IPv4Interface(f"{addr}/{n.prefixlen}"),
            gateway=gateway,
            mac=mac,
        )
        self._save_endpoint(ep)
        return ep

    # -- ports -------------------------------------------------------------
    async def _publish(self, container: Any, n: Network, ep: Endpoint) -> Endpoint:
        wanted = _port_requests(container)
        done: list[PortBinding] = []
        proxies = self._proxies.setdefault(container.id, [])
        try:
            for proto, cport, host_ip, spec in wanted:
                pb, p = await self._bind_one(proto, cport, host_ip, spec, ep, n)
                proxies.append(p)
                done.append(pb)
                ep = ep.with_(ports=tuple(done))
                self._endpoints[(n.id, container.id)] = ep
                await asyncio.to_thread(self.firewall.add_port, self._mapping(pb, ep, n))
        except errdefs.DockyardError as exc:
            raise type(exc)(
                f"driver failed programming external connectivity on endpoint"
                f" {container.name.lstrip('/')} ({ep.endpoint_id}): {exc.message}"
            ) from None
        self._save_endpoint(ep)
        return ep

    async def _bind_one(
        self, proto: str, cport: int, host_ip: str, spec: str, ep: Endpoint, n: Network
    ) -> tuple[PortBinding, Any]:
        low, high = _host_port_range(spec)
        candidates: list[int] = list(range(low, high + 1)) if low else []
        last: errdefs.DockyardError | None = None
        for attempt in range(len(candidates) or 5):
            port = candidates[attempt] if candidates else self.proxy.allocate_port(proto, host_ip)
            pb = PortBinding(proto=proto, container_port=cport, host_ip=host_ip, host_port=port)
            p = self.proxy.Proxy(self._mapping(pb, ep, n))
            try:
                await p.start()
            except errdefs.DockyardError as exc:
                last = exc
                continue
            return pb, p
        assert last is not None
        raise last

    def _mapping(self, pb: PortBinding, ep: Endpoint, n: Network) -> Any:
        from dockyard.network.firewall import PortMapping

        return PortMapping(
            proto=pb.proto,
            host_ip=pb.host_ip,
            host_port=pb.host_port,
            container_ip=ep.ip,
            container_port=pb.container_port,
            bridge=n.bridge,
        )

    # -- release -----------------------------------------------------------
    async def release(self, container: Any) -> None:
        """Undo ``sandbox``: proxies, rules, veths, addresses (static ones
        stay reserved), the netns pin. Safe to call more than once."""
        await self._release_id(container.id)

    async def _release_id(self, cid: str) -> None:
        for p in self._proxies.pop(cid, []):
            with contextlib.suppress(Exception):
                await p.close()
        if self.dns is not None and self._upstreams.pop(cid, None) is not None:
            with contextlib.suppress(Exception):
                await self.dns.remove(cid)
        for ep in self.endpoints_of(cid):
            await self._detach(ep)
        await asyncio.to_thread(self.netns.delete, self.netns_path(cid))

    async def _detach(self, ep: Endpoint) -> Endpoint:
        n = self._networks.get(ep.network_id)
        if n is not None:
            for pb in ep.ports:
                with contextlib.suppress(errdefs.DockyardError):
                    await asyncio.to_thread(self.firewall.remove_port, self._mapping(pb, ep, n))
        if ep.host_ifname:
            await asyncio.to_thread(self.link.detach, ep.host_ifname)
        pool = self._pools.get(ep.network_id)
        if pool is not None and ep.ip and ep.ip != ep.static_ip:
            pool.release(IPv4Address(ep.ip))
        ep = ep.with_(attached=False, ip="", ports=(), host_ifname="")
        if (ep.network_id, ep.container_id) in self._endpoints:
            self._save_endpoint(ep)
        return ep

    async def forget(self, container_id: str) -> None:
        """The container is removed: drop its endpoints and static addresses."""
        await self._release_id(container_id)
        for ep in self.endpoints_of(container_id):
            self._delete_endpoint(ep)

    # -- connect / disconnect ----------------------------------------------
    def _container(self, container: Any) -> Any:
        if isinstance(container, str):
            if self.resolve_container is None:
                raise errdefs.NotImplemented("container lookup is not wired")
            return self.resolve_container(container)
        return container

    async def connect(self, ref: str, container: Any, endpoint_config: dict | None) -> None:
        c = self._container(container)
        n = self.get(ref)
        mode = self._mode(c)
        if (
            mode == "host"
            or mode.startswith("container:")
            or mode == "none"
            or n.driver != "bridge"
        ):
            if n.driver == "host" or mode == "host":
                raise errdefs.Forbidden(
                    "container cannot be disconnected from host network or connected to host"
                    " network"
                )
            raise errdefs.Forbidden(
                "container sharing network namespace with another container or host cannot join"
                " any other network"
            )
        async with self._lock:
            old = self._endpoints.get((n.id, c.id))
            if old is not None and (old.active or not c.state.running):
                raise errdefs.Forbidden(
                    f"endpoint with name {c.name.lstrip('/')} already exists in network {n.name}"
                )
            path = self.netns_path(c.id)
            if c.state.running and await asyncio.to_thread(self.netns.exists, path):
                index = sum(1 for ep in self.endpoints_of(c.id) if ep.active and ep.ip)
                try:
                    await self._attach(c, n, endpoint_config or {}, path, index=index, mac="")
                except BaseException:
                    ep = self._endpoints.get((n.id, c.id))
                    if ep is not None:
                        await self._detach(ep)
                        self._delete_endpoint(ep)
                    raise
                if n.name != "bridge":
                    await self._start_dns(c, path)
                return
            # A stopped container: remember the request; it is honoured at start.
            ep = self._allocate(c, n, endpoint_config or {})
            pool = self._pools[n.id]
            if ep.ip != ep.static_ip:
                pool.release(IPv4Address(ep.ip))
            self._save_endpoint(ep.with_(ip="", last_ip="", attached=False, host_ifname=""))

    async def disconnect(self, ref: str, container: Any, force: bool = False) -> None:
        c = self._container(container)
        n = self.get(ref)
        if n.driver in ("host", "null") or self._mode(c) in ("host", "none"):
            raise errdefs.Forbidden(
                "container cannot be disconnected from host network or connected to host network"
            )
        async with self._lock:
            ep = self._endpoints.get((n.id, c.id))
            if ep is None:
                raise errdefs.System(f"container {c.id} is not connected to network {n.name}")
            if ep.ports:
                for p in self._proxies.pop(c.id, []):
                    with contextlib.suppress(Exception):
                        await p.close()
            await self._detach(ep)
            self._delete_endpoint(ep)

    # -- views ---------------------------------------------------------------
    def settings(self, container: Any) -> dict:
        """NetworkSettings for container inspect."""
        mode = self._mode(container)
        eps = {ep.network_id: ep for ep in self.endpoints_of(container.id)}
        networks: dict[str, dict] = {}
        if not mode.startswith("container:"):
            with contextlib.suppress(errdefs.NotFound):
                n = self.get(mode)
                if n.id not in eps:
                    cfg = _cfg_for(self._endpoint_configs(container), n)
                    eps[n.id] = Endpoint(
                        network_id=n.id,
                        container_id=container.id,
                        endpoint_id="",
                        static_ip=str((cfg.get("IPAMConfig") or {}).get("IPv4Address") or ""),
                        aliases=tuple(cfg.get("Aliases") or ()),
                    )
        for nid, ep in eps.items():
            n = self._networks.get(nid)
            if n is not None:
                networks[n.name] = ep.settings(n, dns_names=self._dns_names(container, ep, n))
        bridge = self._by_name("bridge")
        top = eps.get(bridge.id) if bridge else None
        top = top if top is not None and top.active else None
        running = any(ep.active for ep in eps.values())
        return {
            "Bridge": "",
            "SandboxID": container.id if running else "",
            "SandboxKey": str(self.netns_path(container.id)) if running and mode != "host" else "",
            "Ports": self._ports(container, eps.values()) if running else {},
            "HairpinMode": False,
            "LinkLocalIPv6Address": "",
            "LinkLocalIPv6PrefixLen": 0,
            "SecondaryIPAddresses": None,
            "SecondaryIPv6Addresses": None,
            "EndpointID": top.endpoint_id if top else "",
            "Gateway": bridge.gateway if top and bridge else "",
            "GlobalIPv6Address": "",
            "GlobalIPv6PrefixLen": 0,
            "IPAddress": top.ip if top else "",
            "IPPrefixLen": bridge.prefixlen if top and bridge else 0,
            "IPv6Gateway": "",
            "MacAddress": top.mac if top else "",
            "Networks": networks,
        }

    def _dns_names(self, container: Any, ep: Endpoint, n: Network) -> list[str] | None:
        if n.builtin:
            return None
        names = [container.name.lstrip("/"), *ep.aliases, container.id[:12]]
        return list(dict.fromkeys(names))

    def _ports(self, container: Any, eps: Any) -> dict:
        ports: dict[str, list[dict] | None] = {}
        for key in (container.config or {}).get("ExposedPorts") or {}:
            ports[_port_key(key)] = None
        for key in (container.host_config or {}).get("PortBindings") or {}:
            ports.setdefault(_port_key(key), None)
        for ep in eps:
            for pb in ep.ports:
                key = f"{pb.container_port}/{pb.proto}"
                binding = {"HostIp": pb.host_ip or "0.0.0.0", "HostPort": str(pb.host_port)}
                ports[key] = [*(ports.get(key) or []), binding]
        return ports

    def lookup(self, container_id: str, name: str) -> list[str]:
        """For the embedded DNS: the addresses ``name`` has on the user
        networks ``container_id`` is attached to (names, aliases, short IDs)."""
        name = name.rstrip(".").lower()
        mine = [ep.network_id for ep in self.endpoints_of(container_id) if ep.active]
        out: list[str] = []
        for nid in mine:
            n = self._networks.get(nid)
            if n is None or n.builtin:
                continue
            for ep in self._attached(nid):
                names = {ep.container_name.lstrip("/").lower(), ep.container_id[:12]}
                names |= {a.lower() for a in ep.aliases}
                if (name in names or (len(name) >= 12 and ep.container_id.startswith(name))) and (
                    ep.ip
                ):
                    out.append(ep.ip)
        return list(dict.fromkeys(out))

    resolve = lookup

    def host_upstreams(self) -> list[str]:
        """The host's resolvers, loopback ones included: the DNS server
        forwards from the daemon's namespace, where they answer."""
        return _nameservers(self._read_host_resolv(), filter_loopback=False) or list(_FALLBACK_DNS)

    # -- resolv.conf ---------------------------------------------------------
    def _read_host_resolv(self) -> str:
        try:
            return self._resolv_conf_path.read_text()
        except OSError:
            return ""

    def _host_resolv(self, container: Any, *, filter_loopback: bool = True) -> str:
        hc = container.host_config or {}
        text = self._read_host_resolv()
        servers = list(hc.get("Dns") or []) or _nameservers(text, filter_loopback=filter_loopback)
        if not servers:
            servers = list(_FALLBACK_DNS)
        return _resolv(
            servers,
            list(hc.get("DnsSearch") or []) or _directive(text, "search"),
            list(hc.get("DnsOptions") or []) or _directive(text, "options"),
        )

    def _embedded_resolv(self, container: Any) -> str:
        hc = container.host_config or {}
        text = self._read_host_resolv()
        search = list(hc.get("DnsSearch") or []) or _directive(text, "search")
        options = ["ndots:0", *(hc.get("DnsOptions") or [])]
        return _resolv([EMBEDDED_DNS], search, list(dict.fromkeys(options)))


# -- helpers -----------------------------------------------------------------
def _hostname(container: Any) -> str:
    cfg = container.config or {}
    name = cfg.get("Hostname") or container.id[:12]
    domain = cfg.get("Domainname") or ""
    return f"{name}.{domain} {name}" if domain else name


def _cfg_for(cfgs: dict, n: Network) -> dict:
    for key, cfg in cfgs.items():
        if key in (n.name, n.id) or (len(key) >= 3 and n.id.startswith(key)):
            return cfg or {}
    return {}


def _nameservers(text: str, *, filter_loopback: bool = True) -> list[str]:
    out = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) >= 2 and fields[0] == "nameserver":
            if filter_loopback and fields[1].startswith(_LOOPBACK_PREFIXES):
                continue
            out.append(fields[1])
    return out


def _directive(text: str, name: str) -> list[str]:
    out: list[str] = []
    for line in text.splitlines():
        fields = line.split()
        if fields and fields[0] == name:
            out = fields[1:] if name == "search" else [*out, *fields[1:]]
    return out


def _resolv(servers: list[str], search: list[str], options: list[str]) -> str:
    lines = [f"nameserver {s}" for s in servers]
    if search:
        lines.append("search " + " ".join(search))
    if options:
        lines.append("options " + " ".join(options))
    return "\n".join(lines) + "\n"


def _port_key(key: str) -> str:
    port, _, proto = key.partition("/")
    return f"{port}/{proto or 'tcp'}"


def _parse_container_port(key: str) -> tuple[int, str]:
    port, _, proto = key.partition("/")
    proto = (proto or "tcp").lower()
    if proto not in ("tcp", "udp"):
        raise errdefs.InvalidArgument(f"invalid proto '{proto}'")
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise errdefs.InvalidArgument(f"invalid containerPort: {port}")
    return int(port), proto


def _host_port_range(spec: str) -> tuple[int, int]:
    """(low, high) of a HostPort ("", "8080", "8000-8010"); (0, 0) = any."""
    spec = spec.strip()
    if not spec:
        return 0, 0
    low, dash, high = spec.partition("-")
    if not low.isdigit() or (dash and not high.isdigit()):
        raise errdefs.InvalidArgument(f"invalid hostPort: {spec}")
    lo, hi = int(low), int(high) if dash else int(low)
    if not (0 <= lo <= hi < 65536):
        raise errdefs.InvalidArgument(f"invalid hostPort: {spec}")
    return (lo, hi) if lo else (0, 0)


def _port_requests(container: Any) -> list[tuple[str, int, str, str]]:
    """(proto, container port, host ip, host port spec) for every port to publish."""
    hc = container.host_config or {}
    bindings = hc.get("PortBindings") or {}
    out: list[tuple[str, int, str, str]] = []
    for key in sorted(bindings):
        cport, proto = _parse_container_port(key)
        for b in bindings[key] or [{}]:
            host_ip = str((b or {}).get("HostIp") or "")
            if host_ip:
                try:
                    ipaddress.ip_address(host_ip)
                except ValueError:
                    raise errdefs.InvalidArgument(f"invalid host IP: {host_ip}") from None
            out.append((proto, cport, host_ip, str((b or {}).get("HostPort") or "")))
    if hc.get("PublishAllPorts"):
        bound = {_port_key(k) for k in bindings}
        for key in sorted((container.config or {}).get("ExposedPorts") or {}):
            if _port_key(key) not in bound:
                cport, proto = _parse_container_port(key)
                out.append((proto, cport, "", ""))
    return out


def _label_match(labels: dict, spec: str) -> bool:
    key, eq, value = spec.partition("=")
    return key in labels and (not eq or labels[key] == value)


def _stamp(created: str) -> float:
    try:
        return datetime.strptime(created[:19], "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC).timestamp()
    except ValueError:
        return 0.0


def _until(values: list[str]) -> float | None:
    if not values:
        return None
    value = values[-1]
    try:
        return float(value)
    except ValueError:
        pass
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        pass
    units = {"s": 1, "m": 60, "h": 3600}
    if value[-1:] in units and value[:-1].isdigit():
        return time.time() - int(value[:-1]) * units[value[-1]]
    raise errdefs.InvalidArgument(f"invalid filter 'until={value}'")
