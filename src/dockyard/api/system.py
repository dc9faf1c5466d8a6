"""System endpoints: ``/_ping``, ``/version``, ``/info``, ``/system/df``, ``/events``."""

from __future__ import annotations

import asyncio
import os
import platform
import time

from aiohttp import web

from dockyard import __version__, errdefs
from dockyard.api.app import API_VERSION, MIN_API_VERSION, json_response

routes = web.RouteTableDef()

_PING_HEADERS = {
    "Api-Version": API_VERSION,
    "OSType": "linux",
    "Docker-Experimental": "false",
    "Builder-Version": "1",
    "Cache-Control": "no-cache, no-store, must-revalidate",
    "Pragma": "no-cache",
}


@routes.get("/_ping")
async def ping(request: web.Request) -> web.Response:
    return web.Response(text="OK", headers=_PING_HEADERS, content_type="text/plain")


def _version_body() -> dict:
    uname = platform.uname()
    details = {
        "ApiVersion": API_VERSION,
        "Arch": "amd64" if uname.machine == "x86_64" else uname.machine,
        "BuildTime": "",
        "Experimental": "false",
        "GitCommit": "",
        "GoVersion": f"python{platform.python_version()}",
        "KernelVersion": uname.release,
        "MinAPIVersion": MIN_API_VERSION,
        "Os": "linux",
    }
    return {
        "Platform": {"Name": "Dockyard Engine"},
        "Components": [{"Name": "Engine", "Version": __version__, "Details": details}],
        "Version": __version__,
        "ApiVersion": API_VERSION,
        "MinAPIVersion": MIN_API_VERSION,
        "GitCommit": "",
        "GoVersion": details["GoVersion"],
        "Os": "linux",
        "Arch": details["Arch"],
        "KernelVersion": uname.release,
        "BuildTime": "",
    }


@routes.get("/version")
async def version(request: web.Request) -> web.Response:
    return json_response(_version_body())


def _mem_total() -> int:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _cgroup_version() -> str:
    return "2" if os.path.exists("/sys/fs/cgroup/cgroup.controllers") else "1"


def _driver_status(driver: str, config) -> list[list[str]]:
    from dockyard.sys.mount import filesystem_name

    status = [["Backing Filesystem", filesystem_name(str(config.data_root))]]
    return [*status, ["Supports d_type", "true"]] if driver == "overlay2" else status


@routes.get("/info")
async def info(request: web.Request) -> web.Response:
    config = request.app["config"]
    containers = await asyncio.to_thread(request.app["containers"].all)
    images = request.app["db"].query_one("SELECT COUNT(*) AS n FROM images")["n"]
    running = sum(1 for c in containers if c.state.status.value == "running")
    paused = sum(1 for c in containers if c.state.status.value == "paused")
    uname = platform.uname()
    runtimes = {"dockyard": {"path": "dockyard-runtime"}, "runc": {"path": "runc"}}
    runtimes.update({name: {"path": path} for name, path in config.runtimes.items()})
    body = {
        "ID": request.app["daemon_id"],
        "Containers": len(containers),
        "ContainersRunning": running,
        "ContainersPaused": paused,
        "ContainersStopped": len(containers) - running - paused,
        "Images": images,
        "Driver": request.app["images"].snapshotter.driver_name,
        "DriverStatus": _driver_status(request.app["images"].snapshotter.driver_name, config),
        "Plugins": {
            "Volume": ["local"],
            "Network": ["bridge", "host", "null"],
            "Authorization": None,
            "Log": ["json-file", "none"],
        },
        "MemoryLimit": True,
        "SwapLimit": False,
        "CpuCfsPeriod": True,
        "CpuCfsQuota": True,
        "CPUShares": True,
        "CPUSet": True,
        "PidsLimit": True,
        "OomKillDisable": True,
        "IPv4Forwarding": True,
        "Debug": config.debug,
        "NFd": len(os.listdir("/proc/self/fd")),
        "NGoroutines": len(asyncio.all_tasks()),
        "SystemTime": time.strftime("%Y-%m-%dT%H:%M:%S.000000000Z", time.gmtime()),
        "LoggingDriver": config.log_driver,
        "CgroupDriver": "cgroupfs",
        "CgroupVersion": _cgroup_version(),
        "NEventsListener": 0,
        "KernelVersion": uname.release,
        "OperatingSystem": _os_name(),
        "OSVersion": "",
        "OSType": "linux",
        "Architecture": uname.machine,
        "IndexServerAddress": "https://index.docker.io/v1/",
        "RegistryConfig": {
            "IndexConfigs": {},
            "InsecureRegistryCIDRs": ["127.0.0.0/8"],
            "Mirrors": config.registry_mirrors,
        },
        "NCPU": os.cpu_count() or 1,
        "MemTotal": _mem_total(),
        "GenericResources": None,
        "DockerRootDir": str(config.data_root),
        "HttpProxy": "",
        "HttpsProxy": "",
        "NoProxy": "",
        "Name": uname.node,
        "Labels": [],
        "ExperimentalBuild": False,
        "ServerVersion": __version__,
        "Runtimes": runtimes,
        "DefaultRuntime": config.default_runtime,
        "Swarm": {
            "NodeID": "",
            "NodeAddr": "",
            "LocalNodeState": "inactive",
            "ControlAvailable": False,
            "Error": "",
            "RemoteManagers": None,
        },
        "LiveRestoreEnabled": True,
        "Isolation": "",
        "InitBinary": "docker-init",
        "ContainerdCommit": {"ID": ""},
        "RuncCommit": {"ID": ""},
        "InitCommit": {"ID": ""},
        "SecurityOptions": ["name=seccomp,profile=builtin", "name=cgroupns"],
        "Warnings": [],
    }
    return json_response(body)


def _os_name() -> str:
    try:
        with open("/etc/os-release") as f:
            for line in f:
                if line.startswith("PRETTY_NAME="):
                    return line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return "Linux"


_DF_TYPES = ("container", "image", "volume", "build-cache")


@routes.get("/system/df")
async def disk_usage(request: web.Request) -> web.Response:
    """Images (with shared sizes), containers (with sizes), volumes and the
    build cache; ``type`` (API 1.42+) limits the answer to some of them."""
    types = request.query.getall("type", []) or list(_DF_TYPES)
    for kind in types:
        if kind not in _DF_TYPES:
            raise errdefs.InvalidArgument(f"unknown object type: {kind}")
    body: dict = {}
    if "image" in types:
        layers_size, images = await asyncio.to_thread(
            request.app["images"].disk_usage, request.app["containers_using_image"]
        )
        body["LayersSize"] = layers_size
        body["Images"] = images
    if "container" in types:
        body["Containers"] = await asyncio.to_thread(
            request.app["containers"].list, all=True, limit=-1, size=True, filters={}
        )
    if "volume" in types:
        body["Volumes"] = []
    if "build-cache" in types:
        from dockyard.builder.cache import BuildCache

        body["BuildCache"] = await asyncio.to_thread(
            BuildCache(request.app["db"]).records, request.app["containers_using_image"]
        )
    return json_response(body)


@routes.get("/events")
async def events(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": "application/json"})
    await response.prepare(request)
    until = request.query.get("until")
    if until:
        return response
    while True:  # no events are published yet; hold the stream open like dockerd
        await asyncio.sleep(3600)
