"""The network service's semantics against fakes of the data plane (the real
data plane is exercised by tests/integration/test_network_service_real.py):
create/list/inspect/remove/prune, sandboxes, ports, connect/disconnect, and
every bad input of the issue with dockerd's message and error kind."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path
from types import SimpleNamespace

import pytest

from dockyard import errdefs
from dockyard.network.service import NetworkService
from dockyard.store.metadata import Database


class FakeLink:
    def __init__(self) -> None:
        self.bridges: dict[str, str] = {}
        self.veths: dict[str, dict] = {}

    def ensure_bridge(self, name, gateway, *, mtu=1500):
        self.bridges[name] = str(gateway)

    def delete_bridge(self, name):
        self.bridges.pop(name, None)

    def host_ifname(self, cid, nid):
        return "veth" + hashlib.sha256((cid + nid).encode()).hexdigest()[:11]

    def attach(self, netns_path, *, bridge, host_ifname, container_ifname, address, gateway, mac,
               mtu=1500):  # fmt: skip
        assert bridge in self.bridges
        self.veths[host_ifname] = {
            "netns": netns_path, "bridge": bridge, "ifname": container_ifname,
            "address": str(address), "gateway": gateway and str(gateway), "mac": mac,
        }  # fmt: skip

    def detach(self, host_ifname):
        self.veths.pop(host_ifname, None)

    def generate_mac(self, ip):
        return "02:42:" + ":".join(f"{b:02x}" for b in ip.packed)


class FakeNetns:
    def __init__(self) -> None:
        self.pins: set[Path] = set()

    def create(self, path):
        if path in self.pins:
            raise errdefs.Conflict(f"network namespace {path} already exists")
        self.pins.add(path)

    def delete(self, path):
        self.pins.discard(path)

    def exists(self, path):
        return path in self.pins


class FakeFirewall:
    def __init__(self) -> None:
        self.networks: dict[str, tuple] = {}
        self.ports: set = set()
        self.is_setup = False

    def setup(self):
        self.is_setup = True
        self.networks.clear()
        self.ports.clear()

    def teardown(self):
        self.is_setup = False
        self.networks.clear()
        self.ports.clear()

    def add_network(self, *, bridge, subnet, internal, icc=True):
        self.networks[bridge] = (str(subnet), internal)

    def remove_network(self, *, bridge, subnet, internal):
        self.networks.pop(bridge, None)

    def add_port(self, m):
        self.ports.add(m)

    def remove_port(self, m):
        self.ports.discard(m)


class FakeProxyModule:
    """``Proxy`` and ``allocate_port``; bound ports live in ``bound``."""

    def __init__(self) -> None:
        self.bound: set[tuple[str, int]] = set()
        self.next_port = 32768
        module = self

        class Proxy:
            def __init__(self, mapping):
                self.mapping = mapping
                self.key = (mapping.proto, mapping.host_port)

            async def start(self):
                if self.key in module.bound:
                    ip = self.mapping.host_ip or "0.0.0.0"
                    raise errdefs.System(
                        f"Bind for {ip}:{self.mapping.host_port} failed: port is already allocated"
                    )
                module.bound.add(self.key)

            async def close(self):
                module.bound.discard(self.key)

        self.Proxy = Proxy

    def allocate_port(self, proto, host_ip):
        while (proto, self.next_port) in self.bound:
            self.next_port += 1
        return self.next_port


class FakeDns:
    def __init__(self) -> None:
        self.attached: dict[str, list[str]] = {}

    async def add(self, cid, netns_path, *, upstreams=None):
        self.attached[cid] = upstreams

    async def remove(self, cid):
        self.attached.pop(cid, None)


class C:
    """The part of container.model.Container the service reads."""

    def __init__(self, name, *, mode="default", ports=None, exposed=None, publish_all=False,
                 endpoints=None, mac="", dns=None, running=False, hostname=None):  # fmt: skip
        self.id = hashlib.sha256(name.encode()).hexdigest()
        self.name = "/" + name
        self.config = {"Hostname": hostname or self.id[:12], "ExposedPorts": exposed or {}}
        if mac:
            self.config["MacAddress"] = mac
        self.host_config = {
            "NetworkMode": mode, "PortBindings": ports or {}, "PublishAllPorts": publish_all,
            "Dns": dns or [],
        }  # fmt: skip
        self.networking_config = {"EndpointsConfig": endpoints or {}}
        self.state = SimpleNamespace(running=running)


@pytest.fixture
def env(tmp_path: Path):
    fakes = SimpleNamespace(
        link=FakeLink(), netns=FakeNetns(), firewall=FakeFirewall(), proxy=FakeProxyModule()
    )
    resolv = tmp_path / "resolv.conf"
    resolv.write_text("nameserver 127.0.0.53\nnameserver 192.0.2.53\nsearch example.com\n")
    db = Database(tmp_path / "metadata.db")

    def make(**kw):
        config = SimpleNamespace(
            exec_root=tmp_path / "run", bridge="dytest0", bip=kw.pop("bip", None)
        )
        return NetworkService(
            config, db, firewall=fakes.firewall, link=fakes.link, netns=fakes.netns,
            proxy=fakes.proxy, resolv_conf_path=resolv, routes=lambda: [], **kw,
        )  # fmt: skip

    fakes.make = make
    yield fakes
    db.close()


def run(coro):
    return asyncio.run(coro)


async def started(env, **kw) -> NetworkService:
    svc = env.make(**kw)
    await svc.start()
    return svc


# -- start ---------------------------------------------------------------------
def test_start_creates_predefined_networks(env) -> None:
    async def go():
        svc = await started(env)
        names = {n["Name"]: n for n in svc.list({})}
        assert set(names) == {"bridge", "host", "none"}
        bridge = names["bridge"]
        assert bridge["Driver"] == "bridge" and names["none"]["Driver"] == "null"
        assert bridge["IPAM"]["Config"] == [{"Subnet": "172.17.0.0/16", "Gateway": "172.17.0.1"}]
        assert bridge["Options"]["com.docker.network.bridge.name"] == "dytest0"
        assert env.link.bridges == {"dytest0": "172.17.0.1/16"}
        assert env.firewall.is_setup and "dytest0" in env.firewall.networks
        # A second start keeps the same IDs and subnet.
        again = await started(env)
        assert svc.get("bridge").id == again.get("bridge").id

    run(go())


def test_bip_sets_subnet_and_gateway(env) -> None:
    async def go():
        svc = await started(env, bip="10.77.0.1/24")
        n = svc.inspect("bridge")
        assert n["IPAM"]["Config"] == [{"Subnet": "10.77.0.0/24", "Gateway": "10.77.0.1"}]

    run(go())


# -- create / list / inspect / remove ----------------------------------------------
def test_create_inspect_remove(env) -> None:
    async def go():
        svc = await started(env)
        body = {
            "Name": "appnet", "Labels": {"a": "1"}, "Internal": True,
            "IPAM": {"Config": [{"Subnet": "10.89.0.0/24", "IPRange": "10.89.0.128/25"}]},
        }  # fmt: skip
        out = await svc.create(body)
        assert out["Warning"] == "" and len(out["Id"]) == 64
        n = svc.inspect("appnet")
        assert n["Id"] == out["Id"] and n["Scope"] == "local" and n["Internal"] is True
        assert n["IPAM"] == {
            "Driver": "default", "Options": {},
            "Config": [{"Subnet": "10.89.0.0/24", "Gateway": "10.89.0.1",
                        "IPRange": "10.89.0.128/25"}],
        }  # fmt: skip
        assert svc.inspect(out["Id"][:5])["Name"] == "appnet"
        bridge = f"dy-{out['Id'][:12]}"
        assert env.link.bridges[bridge] == "10.89.0.1/24"
        assert env.firewall.networks[bridge] == ("10.89.0.0/24", True)
        await svc.remove("appnet")
        assert bridge not in env.link.bridges and bridge not in env.firewall.networks
        with pytest.raises(errdefs.NotFound, match=r"^network appnet not found$"):
            svc.inspect("appnet")

    run(go())


def test_create_default_subnet_avoids_taken(env) -> None:
    async def go():
        svc = await started(env)
        await svc.create({"Name": "a"})
        await svc.create({"Name": "b", "Options": {"com.docker.network.bridge.name": "br-b"}})
        assert svc.inspect("a")["IPAM"]["Config"][0]["Subnet"] == "172.18.0.0/16"
        assert svc.inspect("b")["IPAM"]["Config"][0]["Subnet"] == "172.19.0.0/16"
        assert "br-b" in env.link.bridges

    run(go())


@pytest.mark.parametrize(
    ("body", "kind", "message"),
    [
        ({"Name": "bridge"}, errdefs.Conflict, "network with name bridge already exists"),
        ({"Name": "x", "Driver": "overlay2"}, errdefs.NotFound, 'plugin "overlay2" not found'),
        ({"Name": "x", "Driver": "host"}, errdefs.Forbidden, 'only one instance of "host"'),
        (
            {"Name": "x", "IPAM": {"Config": [{"Subnet": "10.0.0.0/33"}]}},
            errdefs.InvalidArgument,
            "invalid network config:\ninvalid subnet 10.0.0.0/33: invalid CIDR block notation",
        ),
        (
            {"Name": "x", "IPAM": {"Config": [{"Subnet": "abc"}]}},
            errdefs.InvalidArgument,
            "invalid subnet abc: invalid CIDR block notation",
        ),
        (
            {"Name": "x", "IPAM": {"Config": [{"Subnet": "10.0.0.0/24", "Gateway": "10.1.0.1"}]}},
            errdefs.InvalidArgument,
            "invalid gateway 10.1.0.1: parent subnet 10.0.0.0/24 doesn't contain this address",
        ),
        (
            {"Name": "x", "IPAM": {"Config": [{"Subnet": "172.17.5.0/24"}]}},
            errdefs.Forbidden,
            "invalid pool request: Pool overlaps with other one on this address space",
        ),
    ],
)
def test_create_bad_input_changes_nothing(env, body, kind, message) -> None:
    async def go():
        svc = await started(env)
        before = (svc.list({}), dict(env.link.bridges), dict(env.firewall.networks))
        with pytest.raises(kind) as info:
            await svc.create(body)
        assert message in info.value.message
        assert (svc.list({}), env.link.bridges, env.firewall.networks) == before

    run(go())


def test_duplicate_user_network_name(env) -> None:
    async def go():
        svc = await started(env)
        await svc.create({"Name": "dup"})
        with pytest.raises(errdefs.Conflict, match=r"^network with name dup already exists$"):
            await svc.create({"Name": "dup"})

    run(go())


def test_list_filters(env) -> None:
    async def go():
        svc = await started(env)
        await svc.create({"Name": "front", "Labels": {"tier": "web"}})
        await svc.create({"Name": "back"})

        def names(**f):
            return sorted(n["Name"] for n in svc.list({k: v for k, v in f.items()}))

        assert names(type=["custom"]) == ["back", "front"]
        assert names(type=["builtin"]) == ["bridge", "host", "none"]
        assert names(name=["ro"]) == ["front"]
        assert names(label=["tier=web"]) == ["front"] == names(label=["tier"])
        assert names(driver=["null"]) == ["none"]
        assert names(dangling=["true"]) == ["back", "front"]
        assert names(id=[svc.get("back").id[:6]]) == ["back"]
        with pytest.raises(errdefs.InvalidArgument, match="invalid filter 'bogus'"):
            svc.list({"bogus": ["1"]})

    run(go())


def test_remove_predefined_and_in_use(env) -> None:
    async def go():
        svc = await started(env)
        with pytest.raises(errdefs.Forbidden, match=r"^bridge is a pre-defined network and cannot"):
            await svc.remove("bridge")
        await svc.create({"Name": "busy", "IPAM": {"Config": [{"Subnet": "10.5.0.0/24"}]}})
        c = C("db", mode="busy")
        await svc.sandbox(c)
        nid = svc.get("busy").id
        with pytest.raises(errdefs.Forbidden) as info:
            await svc.remove("busy")
        assert info.value.message == (
            f"error while removing network: network busy id {nid} has active endpoints"
        )
        assert svc.inspect("busy")["Containers"][c.id]["Name"] == "db"
        await svc.release(c)
        await svc.remove("busy")

    run(go())


def test_prune(env) -> None:
    async def go():
        svc = await started(env)
        await svc.create({"Name": "p1", "Labels": {"keep": "yes"}})
        await svc.create({"Name": "p2"})
        await svc.create({"Name": "p3"})
        c = C("user", mode="p3")
        await svc.sandbox(c)
        assert await svc.prune({"label!": ["keep"]}) == {"NetworksDeleted": ["p2"]}
        assert await svc.prune({}) == {"NetworksDeleted": ["p1"]}
        assert sorted(n["Name"] for n in svc.list({})) == ["bridge", "host", "none", "p3"]
        await svc.release(c)

    run(go())


# -- sandboxes ---------------------------------------------------------------------
def test_default_bridge_sandbox(env, tmp_path) -> None:
    async def go():
        svc = await started(env)
        c = C("web", dns=None)
        sb = await svc.sandbox(c)
        assert sb.netns_path == str(tmp_path / "run" / "netns" / c.id)
        assert Path(sb.netns_path) in env.netns.pins
        ep = sb.endpoints[0]
        assert ep.ip == "172.17.0.2" and ep.mac == "02:42:ac:11:00:02"
        veth = env.link.veths[ep.host_ifname]
        assert veth == {
            "netns": Path(sb.netns_path), "bridge": "dytest0", "ifname": "eth0",
            "address": "172.17.0.2/16", "gateway": "172.17.0.1", "mac": "02:42:ac:11:00:02",
        }  # fmt: skip
        assert sb.hosts_entries == [("172.17.0.2", c.id[:12])]
        # Loopback resolvers are dropped, as dockerd does.
        assert sb.resolv_conf == "nameserver 192.0.2.53\nsearch example.com\n"
        s = svc.settings(c)
        assert (s["IPAddress"], s["Gateway"], s["IPPrefixLen"]) == ("172.17.0.2", "172.17.0.1", 16)
        assert s["MacAddress"] == "02:42:ac:11:00:02" and s["SandboxKey"] == sb.netns_path
        net = s["Networks"]["bridge"]
        assert net["NetworkID"] == svc.get("bridge").id and net["EndpointID"] == ep.endpoint_id
        assert net["DNSNames"] is None and net["IPAMConfig"] is None
        await svc.release(c)
        assert env.link.veths == {} and env.netns.pins == set()
        s = svc.settings(c)
        assert s["IPAddress"] == "" and s["Networks"]["bridge"]["IPAddress"] == ""

    run(go())


def test_settings_of_created_container(env) -> None:
    async def go():
        svc = await started(env)
        s = svc.settings(C("fresh"))
        assert list(s["Networks"]) == ["bridge"]
        assert s["Networks"]["bridge"]["NetworkID"] == svc.get("bridge").id
        assert s["Ports"] == {} and s["IPAddress"] == ""

    run(go())


def test_restart_gets_previous_ip_when_free(env) -> None:
    async def go():
        svc = await started(env)
        a, b = C("a"), C("b")
        ip_a = (await svc.sandbox(a)).endpoints[0].ip
        await svc.sandbox(b)
        await svc.release(a)
        assert (await svc.sandbox(a)).endpoints[0].ip == ip_a
        await svc.release(a)
        # Taken meanwhile (by a static address): a gets another one.
        await svc.create({"Name": "u", "IPAM": {"Config": [{"Subnet": "10.9.0.0/24"}]}})
        x = C("x", mode="u")
        first = (await svc.sandbox(x)).endpoints[0].ip
        await svc.release(x)
        y = C("y", mode="u", endpoints={"u": {"IPAMConfig": {"IPv4Address": first}}})
        assert (await svc.sandbox(y)).endpoints[0].ip == first
        assert (await svc.sandbox(x)).endpoints[0].ip != first

    run(go())


def test_static_ip_kept_across_restart_and_daemon_restart(env) -> None:
    async def go():
        svc = await started(env)
        await svc.create({"Name": "appnet", "IPAM": {"Config": [{"Subnet": "10.89.0.0/24"}]}})
        c = C(
            "fixed",
            mode="appnet",
            endpoints={"appnet": {"IPAMConfig": {"IPv4Address": "10.89.0.50"}}},
        )
        assert (await svc.sandbox(c)).endpoints[0].ip == "10.89.0.50"
        await svc.release(c)
        # Reserved while stopped: nobody else gets it.
        other = C("other", mode="appnet",
                  endpoints={"appnet": {"IPAMConfig": {"IPv4Address": "10.89.0.50"}}})  # fmt: skip
        with pytest.raises(errdefs.Conflict, match="Address already in use"):
            await svc.sandbox(other)
        assert env.netns.pins == set() and env.link.veths == {}
        svc2 = await started(env)  # a daemon restart
        assert (await svc2.sandbox(c)).endpoints[0].ip == "10.89.0.50"
        assert svc2.settings(c)["Networks"]["appnet"]["IPAMConfig"] == {"IPv4Address": "10.89.0.50"}

    run(go())


@pytest.mark.parametrize(
    ("network", "endpoint", "kind", "message"),
    [
        ("appnet", {"IPAMConfig": {"IPv4Address": "10.90.0.5"}}, errdefs.InvalidArgument,
         "no configured subnet or ip-range contain the IP address 10.90.0.5"),
        ("appnet", {"IPAMConfig": {"IPv4Address": "10.89.0.1"}}, errdefs.Conflict,
         "Address already in use"),
        ("bridge", {"IPAMConfig": {"IPv4Address": "172.17.0.9"}}, errdefs.InvalidArgument,
         "user specified IP address is supported only when connecting to networks with user"),
        ("bridge", {"Aliases": ["x"]}, errdefs.InvalidArgument,
         "network-scoped alias is supported only for containers in user defined networks"),
        ("nonet", {}, errdefs.NotFound, "network nonet not found"),
    ],
)  # fmt: skip
def test_bad_endpoint_leaves_nothing(env, network, endpoint, kind, message) -> None:
    async def go():
        svc = await started(env)
        await svc.create({"Name": "appnet", "IPAM": {"Config": [{"Subnet": "10.89.0.0/24"}]}})
        c = C("bad", mode=network, endpoints={network: endpoint})
        with pytest.raises(kind) as info:
            await svc.sandbox(c)
        assert message in info.value.message
        assert env.netns.pins == set() and env.link.veths == {} and env.proxy.bound == set()

    run(go())


def test_pool_exhaustion_message(env) -> None:
    async def go():
        svc = await started(env)
        await svc.create({"Name": "tiny", "IPAM": {"Config": [{"Subnet": "10.3.0.0/30"}]}})
        await svc.sandbox(C("one", mode="tiny"))
        with pytest.raises(errdefs.System) as info:
            await svc.sandbox(C("two", mode="tiny"))
        nid = svc.get("tiny").id
        assert info.value.message == (
            f"no available IPv4 addresses on this network's address pools: tiny ({nid})"
        )

    run(go())


def test_host_none_and_container_modes(env) -> None:
    async def go():
        svc = await started(env)
        host = await svc.sandbox(C("h", mode="host"))
        assert host.netns_path is None and host.endpoints == []
        # Host mode keeps the host's resolvers as they are.
        assert "nameserver 127.0.0.53" in host.resolv_conf
        h = C("h", mode="host")
        assert list(svc.settings(h)["Networks"]) == ["host"]
        none = C("n", mode="none")
        sb = await svc.sandbox(none)
        assert sb.netns_path and Path(sb.netns_path) in env.netns.pins and sb.endpoints == []
        assert env.link.veths == {}
        assert list(svc.settings(none)["Networks"]) == ["none"]
        web = C("web", running=True)
        web_sb = await svc.sandbox(web)
        svc.resolve_container = {"web": web, web.id: web}.__getitem__
        joined = await svc.sandbox(C("side", mode="container:web"))
        assert joined.netns_path == web_sb.netns_path
        assert joined.hosts_entries == web_sb.hosts_entries
        web.state.running = False
        with pytest.raises(errdefs.Conflict, match="cannot join network of a non running"):
            await svc.sandbox(C("side2", mode="container:web"))
        await svc.release(none)
        assert Path(sb.netns_path) not in env.netns.pins

    run(go())


def test_dns_options_on_default_bridge(env) -> None:
    async def go():
        svc = await started(env)
        c = C("d", dns=["9.9.9.9"])
        c.host_config["DnsSearch"] = ["corp"]
        c.host_config["DnsOptions"] = ["ndots:2"]
        sb = await svc.sandbox(c)
        assert sb.resolv_conf == "nameserver 9.9.9.9\nsearch corp\noptions ndots:2\n"

    run(go())


def test_user_network_with_dns_hook(env) -> None:
    async def go():
        dns = FakeDns()
        svc = await started(env, dns=dns)
        await svc.create({"Name": "appnet", "IPAM": {"Config": [{"Subnet": "10.89.0.0/24"}]}})
        db = C("db", mode="appnet", endpoints={"appnet": {"Aliases": ["database"]}})
        sb = await svc.sandbox(db)
        assert sb.resolv_conf == "nameserver 127.0.0.11\nsearch example.com\noptions ndots:0\n"
        assert dns.attached[db.id] is None  # the server's upstreams
        assert svc.host_upstreams() == ["127.0.0.53", "192.0.2.53"]
        cl = C("client", mode="appnet")
        await svc.sandbox(cl)
        ip = sb.endpoints[0].ip
        assert svc.resolve(cl.id, "db") == [ip] == svc.resolve(cl.id, "database.")
        assert svc.resolve(cl.id, db.id[:12]) == [ip]
        assert svc.resolve(cl.id, "nothing") == []
        # Not on the default bridge: no name resolution there.
        other = C("other")
        await svc.sandbox(other)
        assert svc.resolve(other.id, "db") == []
        assert svc.settings(db)["Networks"]["appnet"]["DNSNames"] == ["db", "database", db.id[:12]]
        await svc.release(db)
        assert db.id not in dns.attached
        assert svc.resolve(cl.id, "db") == []

    run(go())


# -- ports -----------------------------------------------------------------------
def test_port_publishing(env) -> None:
    async def go():
        svc = await started(env)
        c = C(
            "pub",
            ports={"80/tcp": [{"HostIp": "", "HostPort": "8080"}], "53/udp": [{"HostPort": ""}]},
            exposed={"80/tcp": {}, "9000/tcp": {}, "53/udp": {}},
        )
        sb = await svc.sandbox(c)
        ip = sb.endpoints[0].ip
        assert env.proxy.bound == {("tcp", 8080), ("udp", 32768)}
        installed = {(m.proto, m.host_port, m.container_ip, m.container_port)
                     for m in env.firewall.ports}  # fmt: skip
        assert installed == {("tcp", 8080, ip, 80), ("udp", 32768, ip, 53)}
        ports = svc.settings(c)["Ports"]
        assert ports == {
            "80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "8080"}],
            "53/udp": [{"HostIp": "0.0.0.0", "HostPort": "32768"}],
            "9000/tcp": None,
        }
        await svc.release(c)
        assert env.proxy.bound == set() and env.firewall.ports == set()
        assert svc.settings(c)["Ports"] == {}

    run(go())


def test_publish_all_and_ranges(env) -> None:
    async def go():
        svc = await started(env)
        env.proxy.bound.add(("tcp", 8000))
        c = C("all", exposed={"80/tcp": {}, "443/tcp": {}}, publish_all=True,
              ports={"80/tcp": [{"HostPort": "8000-8002"}]})  # fmt: skip
        await svc.sandbox(c)
        ports = svc.settings(c)["Ports"]
        assert ports["80/tcp"] == [{"HostIp": "0.0.0.0", "HostPort": "8001"}]
        assert ports["443/tcp"][0]["HostPort"] == "32768"

    run(go())


def test_port_in_use_fails_and_leaves_nothing(env) -> None:
    async def go():
        svc = await started(env)
        env.proxy.bound.add(("tcp", 8080))
        c = C("pub", ports={"81/tcp": [{"HostPort": "8081"}], "80/tcp": [{"HostPort": "8080"}]})
        with pytest.raises(errdefs.System) as info:
            await svc.sandbox(c)
        assert info.value.message.startswith(
            "driver failed programming external connectivity on endpoint pub ("
        )
        assert info.value.message.endswith(
            "Bind for 0.0.0.0:8080 failed: port is already allocated"
        )
        assert env.proxy.bound == {("tcp", 8080)}
        assert env.firewall.ports == set() and env.link.veths == {} and env.netns.pins == set()
        # The address went back to the pool.
        assert (await svc.sandbox(C("next"))).endpoints[0].ip == "172.17.0.3"

    run(go())


@pytest.mark.parametrize(
    ("ports", "message"),
    [
        ({"80/tcp": [{"HostPort": "99999"}]}, "invalid hostPort: 99999"),
        ({"80/tcp": [{"HostPort": "abc"}]}, "invalid hostPort: abc"),
        ({"abc/tcp": [{"HostPort": "80"}]}, "invalid containerPort: abc"),
        ({"80/sctpx": [{}]}, "invalid proto 'sctpx'"),
    ],
)
def test_bad_port_specs(env, ports, message) -> None:
    async def go():
        svc = await started(env)
        with pytest.raises(errdefs.InvalidArgument, match=message):
            await svc.sandbox(C("p", ports=ports))
        assert env.netns.pins == set() and env.link.veths == {}

    run(go())


def test_live_restore_reinstalls_ports(env) -> None:
    async def go():
        svc = await started(env)
        c = C("pub", ports={"80/tcp": [{"HostPort": "8080"}]})
        await svc.sandbox(c)
        await svc.close()  # the daemon stops; the container keeps running
        assert env.proxy.bound == set()
        gone = C("gone")
        await svc.sandbox(gone)
        env.netns.pins.discard(svc.netns_path(gone.id))  # died while the daemon was down
        svc2 = await started(env)
        assert env.proxy.bound == {("tcp", 8080)} and len(env.firewall.ports) == 1
        assert svc2.settings(c)["IPAddress"] == "172.17.0.2"
        assert svc2.settings(gone)["IPAddress"] == ""
        # The live container's address is not handed out again.
        assert (await svc2.sandbox(C("new"))).endpoints[0].ip not in ("172.17.0.2",)

    run(go())


# -- connect / disconnect -----------------------------------------------------
def test_connect_disconnect_running(env) -> None:
    async def go():
        svc = await started(env)
        await svc.create({"Name": "appnet", "IPAM": {"Config": [{"Subnet": "10.89.0.0/24"}]}})
        c = C("web", running=True)
        await svc.sandbox(c)
        await svc.connect(
            "appnet", c, {"IPAMConfig": {"IPv4Address": "10.89.0.7"}, "Aliases": ["w"]}
        )
        veths = {v["ifname"]: v for v in env.link.veths.values()}
        assert veths["eth1"]["address"] == "10.89.0.7/24" and veths["eth1"]["gateway"] is None
        net = svc.settings(c)["Networks"]["appnet"]
        assert (net["IPAddress"], net["Aliases"]) == ("10.89.0.7", ["w"])
        assert svc.inspect("appnet")["Containers"][c.id]["IPv4Address"] == "10.89.0.7/24"
        with pytest.raises(errdefs.Forbidden, match="endpoint with name web already exists"):
            await svc.connect("appnet", c, {})
        await svc.disconnect("appnet", c)
        assert "appnet" not in svc.settings(c)["Networks"]
        assert [v["ifname"] for v in env.link.veths.values()] == ["eth0"]
        with pytest.raises(errdefs.System, match="is not connected to network appnet"):
            await svc.disconnect("appnet", c)
        # The static address is free again.
        d = C(
            "d", mode="appnet", endpoints={"appnet": {"IPAMConfig": {"IPv4Address": "10.89.0.7"}}}
        )
        await svc.sandbox(d)

    run(go())


def test_connect_stopped_then_start(env) -> None:
    async def go():
        svc = await started(env)
        await svc.create({"Name": "appnet", "IPAM": {"Config": [{"Subnet": "10.89.0.0/24"}]}})
        c = C("later")
        await svc.connect("appnet", c, {"Aliases": ["l"]})
        assert env.link.veths == {}
        sb = await svc.sandbox(c)
        assert [svc._networks[ep.network_id].name for ep in sb.endpoints] == ["bridge", "appnet"]
        await svc.release(c)
        await svc.forget(c.id)
        assert svc.endpoints_of(c.id) == []

    run(go())


def test_connect_refusals(env) -> None:
    async def go():
        svc = await started(env)
        await svc.create({"Name": "appnet"})
        with pytest.raises(errdefs.Forbidden, match="cannot join any other network"):
            await svc.connect("appnet", C("n", mode="none", running=True), {})
        with pytest.raises(errdefs.Forbidden, match="connected to host network"):
            await svc.connect("host", C("b", running=True), {})
        with pytest.raises(errdefs.NotFound, match="network nope not found"):
            await svc.connect("nope", C("b", running=True), {})

    run(go())


def test_concurrent_sandboxes_get_distinct_addresses(env) -> None:
    async def go():
        svc = await started(env)
        await svc.create({"Name": "many", "IPAM": {"Config": [{"Subnet": "10.50.0.0/24"}]}})
        boxes = await asyncio.gather(*(svc.sandbox(C(f"c{i}", mode="many")) for i in range(50)))
        ips = [b.endpoints[0].ip for b in boxes]
        assert len(set(ips)) == 50
        assert len(svc.inspect("many")["Containers"]) == 50

    run(go())


def test_teardown_removes_everything(env) -> None:
    async def go():
        svc = await started(env)
        await svc.create({"Name": "appnet"})
        await svc.sandbox(C("a", ports={"80/tcp": [{"HostPort": "8080"}]}))
        await svc.teardown()
        assert env.link.bridges == {} and env.link.veths == {} and env.netns.pins == set()
        assert env.proxy.bound == set() and not env.firewall.is_setup

    run(go())
