"""The network commands and ``port`` end to end: the CLI and its client talk
to the real /networks API (api/networks.py) and network service, whose data
plane is faked (see test_network_service.py)."""

from __future__ import annotations

import asyncio
import io
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
from aiohttp import web

from dockyard import errdefs
from dockyard.api import networks as networks_api
from dockyard.api import system as system_api
from dockyard.api.app import json_response, make_app
from dockyard.cli.main import Cli, run
from dockyard.network.service import NetworkService
from dockyard.store.metadata import Database
from tests.unit.test_network_service import C, FakeFirewall, FakeLink, FakeNetns, FakeProxyModule

# make_app takes plain string keys, as the daemon does.
pytestmark = pytest.mark.filterwarnings("ignore::aiohttp.web_exceptions.NotAppKeyWarning")


class FakeContainers:
    def __init__(self) -> None:
        self.by_name: dict[str, C] = {}

    def get(self, ref: str) -> C:
        for c in self.by_name.values():
            if ref in (c.name.lstrip("/"), c.id) or c.id.startswith(ref):
                return c
        raise errdefs.NotFound(f"No such container: {ref}")


_extra = web.RouteTableDef()


@_extra.get("/containers/{id}/json")
async def _inspect(request: web.Request) -> web.Response:
    c = request.app["containers"].get(request.match_info["id"])
    return json_response({"Id": c.id, "NetworkSettings": request.app["networks"].settings(c)})


class Server:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._main, daemon=True)
        self.sock = tmp / "d.sock"

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_until_complete(self._start())
        finally:
            self.ready.set()
        self.loop.run_forever()

    async def _start(self) -> None:
        resolv = self.tmp / "resolv.conf"
        resolv.write_text("nameserver 192.0.2.53\n")
        self.db = Database(self.tmp / "metadata.db")
        config = SimpleNamespace(exec_root=self.tmp / "run", bridge="dytest0", bip=None)
        self.svc = NetworkService(
            config, self.db, firewall=FakeFirewall(), link=FakeLink(), netns=FakeNetns(),
            proxy=FakeProxyModule(), resolv_conf_path=resolv, routes=lambda: [],
        )  # fmt: skip
        await self.svc.start()
        self.containers = FakeContainers()
        app = make_app(
            {"networks": self.svc, "containers": self.containers},
            [system_api.routes, networks_api.routes, _extra],
        )
        self.runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self.runner.setup()
        await web.UnixSite(self.runner, str(self.sock)).start()

    def call(self, coro):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(10)

    def stop(self) -> None:
        self.call(self.runner.cleanup())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join()
        self.loop.close()
        self.db.close()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    s = Server(tmp_path)
    s.thread.start()
    s.ready.wait(10)
    yield s
    s.stop()


def docker(server: Server, *argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = run(["-H", f"unix://{server.sock}", *argv], Cli(out=out, err=err))
    return code, out.getvalue(), err.getvalue()


def test_create_ls_inspect_rm(server: Server) -> None:
    code, out, err = docker(
        server, "network", "create", "--subnet", "10.89.0.0/24", "--ip-range", "10.89.0.128/25",
        "--label", "tier=web", "-o", "com.docker.network.bridge.name=br-app", "appnet",
    )  # fmt: skip
    assert (code, err) == (0, "")
    nid = out.strip()
    assert len(nid) == 64
    code, out, _ = docker(server, "network", "ls")
    lines = out.splitlines()
    assert lines[0] == "NETWORK ID     NAME      DRIVER    SCOPE"
    assert [line.split()[1] for line in lines[1:]] == ["appnet", "bridge", "host", "none"]
    assert lines[1] == f"{nid[:12]}   appnet    bridge    local"
    code, out, _ = docker(server, "network", "ls", "-q", "--filter", "label=tier=web")
    assert out == nid[:12] + "\n"
    code, out, _ = docker(server, "network", "ls", "--format", "{{.Name}} {{.Internal}}",
                          "-f", "type=custom")  # fmt: skip
    assert out == "appnet false\n"
    code, out, _ = docker(server, "network", "inspect", "appnet")
    data = json.loads(out)
    assert data[0]["IPAM"]["Config"] == [
        {"Subnet": "10.89.0.0/24", "Gateway": "10.89.0.1", "IPRange": "10.89.0.128/25"}
    ]
    assert data[0]["Options"] == {"com.docker.network.bridge.name": "br-app"}
    code, out, _ = docker(server, "network", "inspect", "-f", "{{.Name}} {{.Driver}}", "appnet")
    assert out == "appnet bridge\n"
    code, out, err = docker(server, "network", "inspect", "nope")
    assert (code, err) == (1, "Error response from daemon: network nope not found\n")
    code, out, err = docker(server, "network", "rm", "appnet", "bridge")
    assert (code, out) == (1, "appnet\n")
    assert (
        err == "Error response from daemon: bridge is a pre-defined network and cannot be removed\n"
    )


def test_create_errors(server: Server) -> None:
    docker(server, "network", "create", "dup")
    code, _, err = docker(server, "network", "create", "dup")
    assert (code, err) == (1, "Error response from daemon: network with name dup already exists\n")
    code, _, err = docker(server, "network", "create", "--subnet", "10.0.0.0/24",
                          "--gateway", "10.1.0.1", "x")  # fmt: skip
    assert code == 1
    assert err == (
        "Error response from daemon: invalid network config:\n"
        "invalid gateway 10.1.0.1: parent subnet 10.0.0.0/24 doesn't contain this address\n"
    )
    code, _, err = docker(server, "network", "create", "--gateway", "10.1.0.1", "y")
    assert (code, err) == (1, "every gateway must have a corresponding subnet\n")
    code, _, err = docker(server, "network", "create")
    assert code == 1 and "requires 1 argument" in err


def test_connect_disconnect_port_prune(server: Server) -> None:
    docker(server, "network", "create", "--subnet", "10.89.0.0/24", "appnet")
    docker(server, "network", "create", "unused")
    web_c = C("web", running=True, ports={"80/tcp": [{"HostPort": "8080"}]},
              exposed={"80/tcp": {}, "443/tcp": {}})  # fmt: skip
    server.containers.by_name["web"] = web_c
    server.call(server.svc.sandbox(web_c))
    code, out, err = docker(server, "network", "connect", "--ip", "10.89.0.9", "--alias", "w",
                            "appnet", "web")  # fmt: skip
    assert (code, out, err) == (0, "", "")
    info = server.svc.inspect("appnet")["Containers"][web_c.id]
    assert info["IPv4Address"] == "10.89.0.9/24" and info["Name"] == "web"
    code, _, err = docker(server, "network", "rm", "appnet")
    assert "has active endpoints" in err and code == 1
    code, out, _ = docker(server, "port", "web")
    assert (code, out) == (0, "80/tcp -> 0.0.0.0:8080\n")
    code, out, _ = docker(server, "port", "web", "80")
    assert out == "0.0.0.0:8080\n"
    code, _, err = docker(server, "port", "web", "443/tcp")
    assert (code, err) == (1, "Error: No public port '443/tcp' published for web\n")
    code, out, err = docker(server, "network", "disconnect", "appnet", "web")
    assert (code, err) == (0, "")
    code, _, err = docker(server, "network", "connect", "appnet", "ghost")
    assert (code, err) == (1, "Error response from daemon: No such container: ghost\n")
    server.call(server.svc.release(web_c))
    code, out, _ = docker(server, "network", "prune", "-f")
    assert out == "Deleted Networks:\nappnet\nunused\n\n"
