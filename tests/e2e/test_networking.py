"""Networking with the real docker CLI: addresses, reachability over real
veths, published ports, user networks with DNS, isolation, network modes,
bad input and cleanup. All traffic stays on the test daemon's own bridges."""

from __future__ import annotations

import contextlib
import ipaddress
import json
import random
import secrets
import shutil
import socket
import subprocess
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest

pytestmark = pytest.mark.skipif(shutil.which("docker") is None, reason="docker CLI missing")

HTTPD = "mkdir -p /w; echo hi > /w/index.html; exec httpd -f -p 80 -h /w"


def out(result) -> str:
    return result.stdout.decode().strip()


def err(result) -> str:
    return result.stderr.decode()


def uid() -> str:
    return secrets.token_hex(3)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("0.0.0.0", 0))
        return s.getsockname()[1]


def free_subnet() -> ipaddress.IPv4Network:
    """A random /24 that no route on the host covers (other daemons' bridges
    and networks run side by side with ours)."""
    routes = subprocess.run(["ip", "-4", "route"], capture_output=True, text=True).stdout
    routed = []
    for line in routes.splitlines():
        dest = line.split()[0]
        with contextlib.suppress(ValueError):
            if dest != "default":
                routed.append(ipaddress.IPv4Network(dest, strict=False))
    for _ in range(100):
        net = ipaddress.IPv4Network(f"10.{random.randint(252, 254)}.{random.randint(0, 255)}.0/24")
        if not any(net.overlaps(r) for r in routed):
            return net
    raise RuntimeError("no free subnet")


def veths(bridge: str) -> list[str]:
    lines = subprocess.run(
        ["ip", "-o", "link", "show", "master", bridge], capture_output=True, text=True
    ).stdout
    return [line for line in lines.splitlines() if line.strip()]


def http_get(url: str, timeout: float = 10) -> str:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                return resp.read().decode()
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def ip_of(daemon, name: str, network: str | None = None) -> str:
    if network is None:
        return out(daemon.docker("inspect", "-f", "{{.NetworkSettings.IPAddress}}", name))
    fmt = '{{(index .NetworkSettings.Networks "NET").IPAddress}}'.replace("NET", network)
    return out(daemon.docker("inspect", "-f", fmt, name))


def exists(daemon, name: str) -> bool:
    return daemon.docker("inspect", "--type", "container", name, check=False).returncode == 0


def inside(daemon, name: str, *cmd: str) -> str:
    """Run a command in a container's network namespace (the engine has no
    `docker exec` yet, and this works the same with it)."""
    result = daemon.docker("run", "--rm", "--network", f"container:{name}", "busybox", *cmd)
    return out(result)


def running(daemon, name: str) -> bool:
    result = daemon.docker("inspect", "-f", "{{.State.Running}}", name, check=False)
    return out(result) == "true"


@pytest.fixture
def names(daemon):
    """Container names for one test; every one is removed afterwards."""
    made: list[str] = []

    def new(prefix: str = "c") -> str:
        made.append(f"{prefix}-{uid()}")
        return made[-1]

    yield new
    if made:
        daemon.docker("rm", "-f", *made, check=False)


@pytest.fixture
def network(daemon):
    """Creates user networks on free subnets; removes them afterwards."""
    made: list[str] = []

    def new(*extra: str, subnet: ipaddress.IPv4Network | None = None):
        subnet = subnet or free_subnet()
        name = f"net-{uid()}"
        daemon.docker("network", "create", "--subnet", str(subnet), *extra, name)
        made.append(name)
        return name, subnet

    yield new
    for name in made:
        daemon.docker("network", "rm", name, check=False)


@pytest.fixture(scope="module")
def web(daemon):
    name = f"web-{uid()}"
    daemon.docker("run", "-d", "--name", name, "busybox", "sh", "-c", HTTPD)
    yield name
    daemon.docker("rm", "-f", name, check=False)


# -- the default bridge ------------------------------------------------------


def test_default_bridge_address_gateway_mac_and_reachability(daemon, web):
    info = json.loads(out(daemon.docker("inspect", web)))[0]["NetworkSettings"]
    bip = ipaddress.IPv4Interface(daemon.bip)
    ip = info["IPAddress"]
    assert ipaddress.IPv4Address(ip) in bip.network
    assert ipaddress.IPv4Address(ip) != bip.ip
    assert info["Gateway"] == str(bip.ip)
    assert info["IPPrefixLen"] == bip.network.prefixlen
    assert info["MacAddress"].startswith("02:42:")
    assert info["Networks"]["bridge"]["IPAddress"] == ip
    assert http_get(f"http://{ip}/") == "hi\n"
    result = daemon.docker("run", "--rm", "busybox", "wget", "-qO-", f"http://{ip}/")
    assert out(result) == "hi"


def test_container_files_written_like_docker(daemon, names):
    name = names()
    script = "cat /etc/hostname; cat /etc/hosts; ip -o -4 route"
    result = out(daemon.docker("run", "--name", name, "busybox", "sh", "-c", script))
    lines = result.splitlines()
    cid = out(daemon.docker("inspect", "-f", "{{.Id}}", name))
    assert lines[0] == cid[:12]
    assert any(line.startswith("127.0.0.1") and "localhost" in line for line in lines)
    assert any(cid[:12] in line and not line.startswith("127.") for line in lines[1:])
    gateway = str(ipaddress.IPv4Interface(daemon.bip).ip)
    assert any(line.startswith(f"default via {gateway}") for line in lines)


# -- published ports ---------------------------------------------------------


def test_publish_on_loopback_and_on_all_addresses(daemon, names):
    a, b = names("pub"), names("pub")
    pa, pb = free_port(), free_port()
    daemon.docker(
        "run", "-d", "--name", a, "-p", f"127.0.0.1:{pa}:80", "busybox", "sh", "-c", HTTPD
    )
    daemon.docker("run", "-d", "--name", b, "-p", f"{pb}:80", "busybox", "sh", "-c", HTTPD)
    assert http_get(f"http://127.0.0.1:{pa}/") == "hi\n"
    assert http_get(f"http://127.0.0.1:{pb}/") == "hi\n"
    # through the host's address on the bridge: DNAT, not just the proxy
    gateway = str(ipaddress.IPv4Interface(daemon.bip).ip)
    assert http_get(f"http://{gateway}:{pb}/") == "hi\n"
    assert out(daemon.docker("port", a)) == f"80/tcp -> 127.0.0.1:{pa}"
    assert f"80/tcp -> 0.0.0.0:{pb}" in out(daemon.docker("port", b)).splitlines()


def test_publish_all_gets_a_random_host_port(daemon, names):
    name = names("pall")
    daemon.docker("run", "-d", "--name", name, "-P", "--expose", "80", "busybox", "sh", "-c", HTTPD)
    lines = out(daemon.docker("port", name)).splitlines()
    assert lines and all(line.startswith("80/tcp -> ") for line in lines)
    port = int(lines[0].rsplit(":", 1)[1])
    assert port >= 1024
    assert out(daemon.docker("port", name, "80")).splitlines()[0].endswith(f":{port}")
    assert out(daemon.docker("port", name, "80/tcp")).splitlines()[0].endswith(f":{port}")
    assert http_get(f"http://127.0.0.1:{port}/") == "hi\n"
    ports = json.loads(out(daemon.docker("inspect", "-f", "{{json .NetworkSettings.Ports}}", name)))
    assert ports["80/tcp"][0]["HostPort"] == str(port)


def test_port_is_released_when_the_container_stops(daemon, names):
    name = names("rel")
    port = free_port()
    daemon.docker("run", "-d", "--name", name, "-p", f"{port}:80", "busybox", "sh", "-c", HTTPD)
    assert http_get(f"http://127.0.0.1:{port}/") == "hi\n"
    daemon.docker("stop", "-t", "1", name)
    listeners = subprocess.run(["ss", "-Htln", f"sport = :{port}"], capture_output=True, text=True)
    assert listeners.stdout.strip() == ""
    # SO_REUSEADDR as any server sets it: the proxied request may leave TIME_WAIT behind
    for host in ("0.0.0.0", "127.0.0.1"):
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((host, port))
            s.listen()


def test_port_in_use_fails_the_run_and_leaves_nothing(daemon, names):
    name = names("busy")
    before = veths(daemon.bridge)
    with socket.socket() as s:
        s.bind(("0.0.0.0", 0))
        s.listen()
        port = s.getsockname()[1]
        result = daemon.docker(
            "run", "-d", "--name", name, "-p", f"{port}:80", "busybox", "sleep", "60", check=False
        )
    assert result.returncode == 125, err(result)
    assert "port is already allocated" in err(result) or "address already in use" in err(result)
    assert not running(daemon, name)
    assert veths(daemon.bridge) == before


# -- user-defined networks ---------------------------------------------------


def test_user_network_resolves_names_and_aliases(daemon, names, network):
    net, subnet = network()
    db = names("db")
    daemon.docker("run", "-d", "--net", net, "--name", db, "--network-alias", "dbalias",
                  "busybox", "nc", "-ll", "-p", "5432", "-e", "cat")  # fmt: skip
    ip = ip_of(daemon, db, net)
    assert ipaddress.IPv4Address(ip) in subnet
    script = (
        f"nslookup {db}; nslookup dbalias; ping -c1 -W2 {db} && ping -c1 -W2 dbalias"
        f" && echo hello | nc -w1 {db} 5432"
    )
    result = daemon.docker("run", "--rm", "--net", net, "busybox", "sh", "-c", script)
    text = out(result)
    assert text.count(f"Address: {ip}") >= 2, text
    assert text.endswith("hello"), text
    resolv = out(daemon.docker("run", "--rm", "--net", net, "busybox", "cat", "/etc/resolv.conf"))
    assert "nameserver 127.0.0.11" in resolv


def test_networks_are_isolated(daemon, names, network):
    net, _ = network()
    target = names("iso")
    daemon.docker("run", "-d", "--net", net, "--name", target, "busybox", "sleep", "60")
    ip = ip_of(daemon, target, net)
    # reachable from its own network
    daemon.docker("run", "--rm", "--net", net, "busybox", "ping", "-c1", "-W2", ip)
    result = daemon.docker("run", "--rm", "busybox", "ping", "-c1", "-W1", ip, check=False)
    assert result.returncode != 0, out(result)
    # and by name neither: the default bridge has no embedded DNS
    result = daemon.docker("run", "--rm", "busybox", "ping", "-c1", "-W1", target, check=False)
    assert result.returncode != 0


def test_internal_network_has_no_outbound_route(daemon, network):
    net, subnet = network("--internal")
    gateway = str(ipaddress.IPv4Interface(daemon.bip).ip)
    script = f"ip -4 route; ping -c1 -W1 {gateway} && echo REACHED"
    text = out(
        daemon.docker("run", "--rm", "--net", net, "busybox", "sh", "-c", script, check=False)
    )
    assert "default" not in text
    assert "REACHED" not in text
    assert str(subnet) in text  # it still has its own link route
    internal = out(daemon.docker("network", "inspect", "-f", "{{.Internal}}", net))
    assert internal == "true"


def test_static_ip_is_kept_across_restart(daemon, names, network):
    net, subnet = network()
    name = names("fixed")
    fixed = str(subnet.network_address + 50)
    daemon.docker(
        "run", "-d", "--net", net, "--ip", fixed, "--name", name, "busybox", "sleep", "1d"
    )
    assert ip_of(daemon, name, net) == fixed
    daemon.docker("restart", "-t", "1", name)
    assert ip_of(daemon, name, net) == fixed
    assert f"inet {fixed}/24" in inside(daemon, name, "ip", "-o", "-4", "addr")
    ipam = out(daemon.docker("inspect", "-f", "{{json .NetworkSettings.Networks}}", name))
    assert json.loads(ipam)[net]["IPAMConfig"]["IPv4Address"] == fixed


def test_connect_and_disconnect_with_ip_and_alias(daemon, names, network):
    net, subnet = network()
    box = names("box")
    daemon.docker("run", "-d", "--name", box, "busybox", "sleep", "60")
    wanted = str(subnet.network_address + 60)
    daemon.docker("network", "connect", "--ip", wanted, "--alias", "extra", net, box)
    nets = json.loads(
        out(daemon.docker("inspect", "-f", "{{json .NetworkSettings.Networks}}", box))
    )
    assert set(nets) == {"bridge", net}
    assert nets[net]["IPAddress"] == wanted
    assert "extra" in nets[net]["Aliases"]
    addrs = inside(daemon, box, "ip", "-o", "-4", "addr")
    assert f"inet {wanted}/24" in addrs
    text = out(daemon.docker("run", "--rm", "--net", net, "busybox", "sh", "-c",
                             f"nslookup extra; nslookup {box}; ping -c1 -W2 extra"))  # fmt: skip
    assert text.count(f"Address: {wanted}") >= 2, text
    members = json.loads(out(daemon.docker("network", "inspect", net)))[0]["Containers"]
    assert [m["IPv4Address"] for m in members.values()] == [f"{wanted}/24"]

    daemon.docker("network", "disconnect", net, box)
    assert wanted not in inside(daemon, box, "ip", "-o", "-4", "addr")
    nets = json.loads(
        out(daemon.docker("inspect", "-f", "{{json .NetworkSettings.Networks}}", box))
    )
    assert set(nets) == {"bridge"}
    result = daemon.docker("run", "--rm", "--net", net, "busybox", "nslookup", "extra", check=False)
    assert f"Address: {wanted}" not in out(result)
    assert json.loads(out(daemon.docker("network", "inspect", net)))[0]["Containers"] == {}


def test_connecting_a_running_container_starts_its_dns(daemon, names, network):
    """A container started on the default bridge and then connected to a
    user network resolves that network's names: the embedded DNS starts in
    its namespace and its resolv.conf now points there."""
    net, _ = network()
    db, box = names("db"), names("box")
    daemon.docker("run", "-d", "--net", net, "--name", db, "busybox", "sleep", "60")
    daemon.docker("run", "-d", "--name", box, "busybox", "sleep", "60")
    daemon.docker("network", "connect", net, box)
    path = out(daemon.docker("inspect", "-f", "{{.ResolvConfPath}}", box))
    with open(path) as f:
        assert "nameserver 127.0.0.11" in f.read()
    text = inside(daemon, box, "nslookup", db, "127.0.0.11")
    assert f"Address: {ip_of(daemon, db, net)}" in text, text


def test_network_inspect_ls_rm_and_prune(daemon, names, network):
    label = f"t{uid()}"
    net, subnet = network("--label", f"suite={label}")
    gateway = str(subnet.network_address + 1)
    info = json.loads(out(daemon.docker("network", "inspect", net)))[0]
    assert info["Name"] == net
    assert info["Driver"] == "bridge"
    assert info["Scope"] == "local"
    assert info["IPAM"]["Config"] == [{"Subnet": str(subnet), "Gateway": gateway}]
    assert info["Labels"] == {"suite": label}
    name = names("att")
    cid = out(daemon.docker("run", "-d", "--net", net, "--name", name, "busybox", "sleep", "60"))
    members = json.loads(out(daemon.docker("network", "inspect", net)))[0]["Containers"]
    assert list(members) == [cid]
    assert members[cid]["Name"] == name
    assert members[cid]["MacAddress"].startswith("02:42:")

    listed = out(daemon.docker("network", "ls", "--filter", f"label=suite={label}",
                               "--format", "{{.Name}} {{.Driver}}"))  # fmt: skip
    assert listed == f"{net} bridge"
    listed = out(daemon.docker("network", "ls", "--filter", f"name={net}", "-q"))
    assert listed == info["Id"][:12]
    builtin = out(
        daemon.docker("network", "ls", "--filter", "type=builtin", "--format", "{{.Name}}")
    )
    assert set(builtin.split()) == {"bridge", "host", "none"}

    result = daemon.docker("network", "rm", net, check=False)
    assert result.returncode == 1
    assert "has active endpoints" in err(result)
    assert exists(daemon, name) and running(daemon, name)

    unused, _ = network()
    daemon.docker("rm", "-f", name)
    pruned = out(daemon.docker("network", "prune", "-f"))
    assert net in pruned and unused in pruned
    remaining = out(daemon.docker("network", "ls", "--format", "{{.Name}}")).split()
    assert net not in remaining and unused not in remaining
    assert {"bridge", "host", "none"} <= set(remaining)


# -- network modes and container settings ------------------------------------


def test_network_none_has_only_loopback(daemon):
    text = out(daemon.docker("run", "--rm", "--network", "none", "busybox", "ip", "-o", "link"))
    assert len(text.splitlines()) == 1
    assert ": lo:" in text


def test_network_host_sees_the_hosts_interfaces(daemon):
    text = out(daemon.docker("run", "--rm", "--network", "host", "busybox", "ip", "-o", "link"))
    assert f": {daemon.bridge}:" in text


def test_network_container_shares_the_namespace(daemon, web):
    ip = ip_of(daemon, web)
    text = out(daemon.docker("run", "--rm", "--network", f"container:{web}", "busybox",
                             "sh", "-c", "ip -o -4 addr; wget -qO- http://127.0.0.1/"))  # fmt: skip
    assert f"inet {ip}/" in text
    assert text.endswith("hi")


def test_network_container_shares_resolv_conf_hosts_and_hostname(daemon, network, names):
    net, _ = network()
    owner = names("own")
    daemon.docker("run", "-d", "--net", net, "--name", owner, "--hostname", "ownerhost",
                  "busybox", "sleep", "60")  # fmt: skip
    text = inside(daemon, owner, "sh", "-c", "hostname; cat /etc/resolv.conf")
    assert text.splitlines()[0] == "ownerhost"
    assert "nameserver 127.0.0.11" in text


def test_hostname_add_host_dns_and_mac_address(daemon):
    script = (
        "hostname; cat /etc/hosts; echo ==; cat /etc/resolv.conf; cat /sys/class/net/eth0/address"
    )
    text = out(daemon.docker(
        "run", "--rm", "--hostname", "h1", "--add-host", "foo:1.2.3.4", "--dns", "9.9.9.9",
        "--dns-search", "example.test", "--dns-option", "ndots:2",
        "--mac-address", "02:42:ac:11:ff:01", "busybox", "sh", "-c", script,
    ))  # fmt: skip
    hosts, resolv = text.split("==")
    lines = hosts.split("\n")
    assert lines[0] == "h1"
    assert any(line.split() == ["1.2.3.4", "foo"] for line in lines)
    assert any(line.split()[1:2] == ["h1"] for line in lines[1:] if line.strip())
    assert "nameserver 9.9.9.9" in resolv
    assert "search example.test" in resolv
    assert "options ndots:2" in resolv
    assert resolv.strip().endswith("02:42:ac:11:ff:01")


# -- bad input ---------------------------------------------------------------


def _network_names(daemon) -> set[str]:
    return set(out(daemon.docker("network", "ls", "--format", "{{.Name}}")).split())


def test_overlapping_subnet_and_duplicate_name_are_refused(daemon, network):
    net, subnet = network()
    before = _network_names(daemon)
    other = f"net-{uid()}"
    result = daemon.docker("network", "create", "--subnet", str(subnet), other, check=False)
    assert result.returncode == 1
    assert "Pool overlaps with other one on this address space" in err(result)
    result = daemon.docker("network", "create", "--subnet", str(free_subnet()), net, check=False)
    assert result.returncode == 1
    assert f"network with name {net} already exists" in err(result)
    assert _network_names(daemon) == before


def test_gateway_outside_the_subnet_is_refused(daemon):
    before = _network_names(daemon)
    subnet = free_subnet()
    outside = str(subnet.network_address + 256 + 1)
    result = daemon.docker("network", "create", "--subnet", str(subnet), "--gateway", outside,
                           f"net-{uid()}", check=False)  # fmt: skip
    assert result.returncode == 1
    assert "invalid gateway" in err(result) or "no matching subnet" in err(result)
    assert _network_names(daemon) == before


def test_ip_outside_the_subnet_is_refused_at_create(daemon, names, network):
    net, subnet = network()
    name = names("bad")
    outside = str(subnet.network_address + 256 + 7)
    result = daemon.docker("run", "-d", "--net", net, "--ip", outside, "--name", name,
                           "busybox", "sleep", "60", check=False)  # fmt: skip
    assert result.returncode == 125
    assert f"no configured subnet or ip-range contain the IP address {outside}" in err(result)
    assert not exists(daemon, name)


def test_ip_already_taken_fails_the_start(daemon, names, network):
    net, subnet = network()
    first, second = names("ip1"), names("ip2")
    taken = str(subnet.network_address + 9)
    daemon.docker(
        "run", "-d", "--net", net, "--ip", taken, "--name", first, "busybox", "sleep", "60"
    )
    result = daemon.docker("run", "-d", "--net", net, "--ip", taken, "--name", second,
                           "busybox", "sleep", "60", check=False)  # fmt: skip
    assert result.returncode == 125
    assert "Address already in use" in err(result)
    assert not running(daemon, second)
    assert ip_of(daemon, first, net) == taken
    members = json.loads(out(daemon.docker("network", "inspect", net)))[0]["Containers"]
    assert len(members) == 1


@pytest.mark.parametrize(
    ("spec", "message"),
    [("99999:80", "invalid hostPort: 99999"), ("abc", "invalid containerPort: abc")],
)
def test_bad_port_spec_is_refused(daemon, names, spec, message):
    name = names("badp")
    result = daemon.docker("run", "-d", "--name", name, "-p", spec, "busybox", "true", check=False)
    assert result.returncode == 125
    assert message in err(result)
    assert not exists(daemon, name)


# -- cleanup and scale -------------------------------------------------------


def test_removing_containers_leaves_no_veth_or_netns(daemon, names, network):
    net, _ = network()
    before = veths(daemon.bridge)
    made = [names("cl") for _ in range(3)]
    ids = [
        out(daemon.docker("run", "-d", "--name", made[0], "busybox", "sleep", "60")),
        out(daemon.docker("run", "-d", "--name", made[1], "-p", "80", "busybox", "sleep", "60")),
        out(daemon.docker("run", "-d", "--net", net, "--name", made[2], "busybox", "sleep", "60")),
    ]
    pins = daemon.exec_root / "netns"
    assert len(veths(daemon.bridge)) == len(before) + 2
    assert all((pins / cid).exists() for cid in ids)
    daemon.docker("rm", "-f", *made)
    assert veths(daemon.bridge) == before
    assert not any((pins / cid).exists() for cid in ids)
    option = '{{index .Options "com.docker.network.bridge.name"}}'
    bridge_of_net = out(daemon.docker("network", "inspect", "-f", option, net))
    if bridge_of_net:
        assert veths(bridge_of_net) == []


def test_fifty_containers_started_concurrently(daemon, network):
    net, subnet = network()
    prefix = f"n{uid()}"
    made = [f"{prefix}-{i}" for i in range(50)]

    def start(name: str):
        return daemon.docker("run", "-d", "--net", net, "--name", name, "busybox",
                             "sleep", "60", check=False)  # fmt: skip

    try:
        t0 = time.monotonic()
        with ThreadPoolExecutor(16) as pool:
            results = list(pool.map(start, made))
        failed = [err(r) for r in results if r.returncode != 0]
        assert not failed, failed[:3]
        fmt = '{{.Name}} {{(index .NetworkSettings.Networks "NET").IPAddress}}'.replace("NET", net)
        lines = out(daemon.docker("inspect", "-f", fmt, *made)).splitlines()
        ips = {line.split()[0].lstrip("/"): line.split()[1] for line in lines}
        assert len(set(ips.values())) == 50
        assert all(ipaddress.IPv4Address(ip) in subnet for ip in ips.values())
        # the embedded DNS server of made[0]'s namespace, named explicitly (see the
        # xfail on container-mode resolv.conf below)
        script = "; ".join(f"echo =={n}; nslookup {n} 127.0.0.11" for n in made[1:]) + "; true"
        text = inside(daemon, made[0], "sh", "-c", script)
        for chunk in text.split("==")[1:]:
            who, _, answer = chunk.partition("\n")
            assert f"Address: {ips[who]}" in answer, chunk
        assert len(text.split("==")) == 50
        assert time.monotonic() - t0 < 60
    finally:
        daemon.docker("rm", "-f", *made, check=False)
