"""``version`` and ``info``."""

from __future__ import annotations

import os
import sys

from dockyard.cli.common import FORMAT, parse_args, render
from dockyard.cli.flags import Flag
from dockyard.cli.main import Cli

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

CLIENT_VERSION = "28.2.2"


def _client_info(cli: Cli, api: str) -> dict[str, Any]:
    from dockyard import __version__

    return {
        "Platform": {"Name": ""},
        "Version": CLIENT_VERSION,
        "ApiVersion": api,
        "DefaultAPIVersion": "1.50",
        "GitCommit": f"dockyard-{__version__}",
        "GoVersion": f"python{sys.version_info.major}.{sys.version_info.minor}",
        "Os": "linux",
        "Arch": {"x86_64": "amd64", "aarch64": "arm64"}.get(os.uname().machine, os.uname().machine),
        "BuildTime": "",
        "Context": "default",
    }


def cmd_version(cli: Cli, argv: list[str]) -> int:
    opts = parse_args(cli, argv, [Flag("format", "f", "str")], "version [OPTIONS]", max_args=0)
    from dockyard.errdefs import DockyardError

    server: dict[str, Any] | None = None
    error: DockyardError | None = None
    try:
        server = cli.client.get("/version")
        api = cli.client.version
    except DockyardError as exc:
        error, api = exc, "1.50"
    client = _client_info(cli, api)
    if opts.format:
        render(cli, opts.format, [{"Client": client, "Server": server}], {})
    else:
        _print_version(cli, client, server)
    if error is not None:
        from dockyard.cli.main import ExitError

        raise ExitError(1, str(error.message) if "Cannot connect" in error.message
                        else f"Error response from daemon: {error.message}")  # fmt: skip
    return 0


def _print_version(cli: Cli, client: dict[str, Any], server: dict[str, Any] | None) -> None:
    api = client["ApiVersion"]
    if api != client["DefaultAPIVersion"]:
        api = f"{api} (downgraded from {client['DefaultAPIVersion']})"
    w = cli.out.write
    w("Client:\n")
    w(f" Version:           {client['Version']}\n")
    w(f" API version:       {api}\n")
    w(f" Go version:        {client['GoVersion']}\n")
    w(f" Git commit:        {client['GitCommit']}\n")
    w(f" Built:             {client['BuildTime']}\n")
    w(f" OS/Arch:           {client['Os']}/{client['Arch']}\n")
    w(f" Context:           {client['Context']}\n")
    if server is None:
        return
    w("\nServer:\n")
    w(" Engine:\n")
    w(f"  Version:          {server.get('Version', '')}\n")
    w(f"  API version:      {server.get('ApiVersion', '')} (minimum version "
      f"{server.get('MinAPIVersion', '')})\n")  # fmt: skip
    w(f"  Go version:       {server.get('GoVersion', '')}\n")
    w(f"  Git commit:       {server.get('GitCommit', '')}\n")
    w(f"  Built:            {_ansic(server.get('BuildTime', ''))}\n")
    w(f"  OS/Arch:          {server.get('Os', '')}/{server.get('Arch', '')}\n")
    w(f"  Experimental:     {str(bool(server.get('Experimental'))).lower()}\n")
    for comp in server.get("Components") or []:
        if comp.get("Name") == "Engine":
            continue
        w(f" {comp.get('Name')}:\n")
        w(f"  Version:          {comp.get('Version', '')}\n")
        details = comp.get("Details") or {}
        if "GitCommit" in details:
            w(f"  GitCommit:        {details['GitCommit']}\n")


def _ansic(text: str) -> str:
    """Go's time.ANSIC layout ("Thu May  7 21:09:36 2026"), as docker prints Built."""
    from dockyard.units import parse_time

    try:
        moment = parse_time(text)
    except ValueError:
        return text
    if moment is None:
        return text
    return moment.strftime("%a %b ") + f"{moment.day:2d}" + moment.strftime(" %H:%M:%S %Y")


def _bytes_size(size: float) -> str:
    from dockyard.units import bytes_size

    return bytes_size(size)


def cmd_info(cli: Cli, argv: list[str]) -> int:
    opts = parse_args(cli, argv, [Flag("format", "f", "str")], "info [OPTIONS]", max_args=0)
    info = cli.client.get("/info")
    if opts.format:
        render(cli, opts.format, [info], {})
        return 0
    w = cli.out.write
    w("Client:\n")
    w(f" Version:    {CLIENT_VERSION}\n")
    w(" Context:    default\n")
    w(" Debug Mode: false\n\n")
    w("Server:\n")
    w(f" Containers: {info.get('Containers', 0)}\n")
    w(f"  Running: {info.get('ContainersRunning', 0)}\n")
    w(f"  Paused: {info.get('ContainersPaused', 0)}\n")
    w(f"  Stopped: {info.get('ContainersStopped', 0)}\n")
    w(f" Images: {info.get('Images', 0)}\n")
    w(f" Server Version: {info.get('ServerVersion', '')}\n")
    w(f" Storage Driver: {info.get('Driver', '')}\n")
    for pair in info.get("DriverStatus") or []:
        w(f"  {pair[0]}: {pair[1]}\n")
    w(f" Logging Driver: {info.get('LoggingDriver', '')}\n")
    w(f" Cgroup Driver: {info.get('CgroupDriver', '')}\n")
    w(f" Cgroup Version: {info.get('CgroupVersion', '')}\n")
    plugins = info.get("Plugins") or {}
    w(" Plugins:\n")
    for kind in ("Volume", "Network", "Log"):
        if plugins.get(kind):
            w(f"  {kind}: {' '.join(plugins[kind])}\n")
    swarm = (info.get("Swarm") or {}).get("LocalNodeState") or "inactive"
    w(f" Swarm: {swarm}\n")
    runtimes = info.get("Runtimes") or {}
    if runtimes:
        w(f" Runtimes: {' '.join(sorted(runtimes))}\n")
    w(f" Default Runtime: {info.get('DefaultRuntime', '')}\n")
    w(f" Init Binary: {info.get('InitBinary', '')}\n")
    for label, key in (("containerd", "ContainerdCommit"), ("runc", "RuncCommit"),
                       ("init", "InitCommit")):  # fmt: skip
        if key in info:
            w(f" {label} version: {(info.get(key) or {}).get('ID', '')}\n")
    opts_list = info.get("SecurityOptions") or []
    if opts_list:
        w(" Security Options:\n")
        for item in opts_list:
            fields = dict(p.partition("=")[::2] for p in item.split(","))
            w(f"  {fields.get('name', item)}\n")
            for key, value in fields.items():
                if key != "name":
                    w(f"   {key.capitalize()}: {value}\n")
    w(f" Kernel Version: {info.get('KernelVersion', '')}\n")
    w(f" Operating System: {info.get('OperatingSystem', '')}\n")
    w(f" OSType: {info.get('OSType', '')}\n")
    w(f" Architecture: {info.get('Architecture', '')}\n")
    w(f" CPUs: {info.get('NCPU', 0)}\n")
    w(f" Total Memory: {_bytes_size(info.get('MemTotal', 0))}\n")
    w(f" Name: {info.get('Name', '')}\n")
    w(f" ID: {info.get('ID', '')}\n")
    w(f" Docker Root Dir: {info.get('DockerRootDir', '')}\n")
    w(f" Debug Mode: {str(bool(info.get('Debug'))).lower()}\n")
    w(f" Experimental: {str(bool(info.get('ExperimentalBuild'))).lower()}\n")
    registries = (info.get("RegistryConfig") or {}).get("InsecureRegistryCIDRs") or []
    if registries:
        w(" Insecure Registries:\n")
        for reg in registries:
            w(f"  {reg}\n")
    w(f" Live Restore Enabled: {str(bool(info.get('LiveRestoreEnabled'))).lower()}\n\n")
    return 0


_ = FORMAT


_DF_FORMAT = "table {{.Type}}\t{{.TotalCount}}\t{{.Active}}\t{{.Size}}\t{{.Reclaimable}}"
_DF_HEADERS = {
    "Type": "TYPE",
    "TotalCount": "TOTAL",
    "Active": "ACTIVE",
    "Size": "SIZE",
    "Reclaimable": "RECLAIMABLE",
}
_DF_IMAGES = (
    "table {{.Repository}}\t{{.Tag}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}"
    "\t{{.SharedSize}}\t{{.UniqueSize}}\t{{.Containers}}"
)
_DF_CONTAINERS = (
    "table {{.ID}}\t{{.Image}}\t{{.Command}}\t{{.LocalVolumes}}\t{{.Size}}"
    "\t{{.RunningFor}}\t{{.Status}}\t{{.Names}}"
)


def _share(part: int, total: int) -> str:
    from dockyard.units import human_size

    if total > 0:
        return f"{human_size(part)} ({part * 100 // total}%)"
    return human_size(part)


def df_summary(usage: dict) -> list[dict[str, str]]:
    """The four rows of ``docker system df``, computed as the docker CLI does."""
    from dockyard.units import human_size

    images = usage.get("Images") or []
    layers = int(usage.get("LayersSize") or 0)
    used = sum(
        i["Size"] - i["SharedSize"]
        for i in images
        if i.get("Containers") and i.get("Size", -1) != -1 and i.get("SharedSize", -1) != -1
    )
    containers = usage.get("Containers") or []
    c_size = sum(c.get("SizeRw") or 0 for c in containers)
    c_idle = sum(c.get("SizeRw") or 0 for c in containers if c.get("State") != "running")
    volumes = usage.get("Volumes") or []
    v_size = sum(max((v.get("UsageData") or {}).get("Size", 0), 0) for v in volumes)
    v_idle = sum(
        max((v.get("UsageData") or {}).get("Size", 0), 0)
        for v in volumes
        if not (v.get("UsageData") or {}).get("RefCount")
    )
    cache = usage.get("BuildCache") or []
    b_size = sum(b.get("Size", 0) for b in cache if not b.get("Shared"))
    b_idle = sum(b.get("Size", 0) for b in cache if not b.get("InUse") and not b.get("Shared"))
    return [
        {
            "Type": "Images",
            "TotalCount": str(len(images)),
            "Active": str(sum(1 for i in images if i.get("Containers"))),
            "Size": human_size(layers),
            "Reclaimable": _share(layers - used, layers),
        },
        {
            "Type": "Containers",
            "TotalCount": str(len(containers)),
            "Active": str(sum(1 for c in containers if c.get("State") == "running")),
            "Size": human_size(c_size),
            "Reclaimable": _share(c_idle, c_size),
        },
        {
            "Type": "Local Volumes",
            "TotalCount": str(len(volumes)),
            "Active": str(sum(1 for v in volumes if (v.get("UsageData") or {}).get("RefCount"))),
            "Size": human_size(v_size),
            "Reclaimable": _share(v_idle, v_size),
        },
        {
            "Type": "Build Cache",
            "TotalCount": str(len(cache)),
            "Active": str(sum(1 for b in cache if b.get("InUse"))),
            "Size": human_size(b_size),
            "Reclaimable": human_size(b_idle),
        },
    ]


def cmd_df(cli: Cli, argv: list[str]) -> int:
    from dockyard.cli.formatter import ContainerContext, ImageContext
    from dockyard.units import human_size

    flags = [
        Flag("format", "", "str", help="Format output using a custom template"),
        Flag("verbose", "v", "bool", help="Show detailed information on space usage"),
    ]
    opts = parse_args(cli, argv, flags, "system df [OPTIONS]", max_args=0)
    usage = cli.client.get("/system/df")
    if not opts.verbose:
        render(cli, opts.format or _DF_FORMAT, df_summary(usage), _DF_HEADERS)
        return 0
    w = cli.out.write
    w("Images space usage:\n\n")
    images = [_df_image_row(i) for i in usage.get("Images") or []]
    render(cli, _DF_IMAGES, images, ImageContext.HEADERS)
    w("\nContainers space usage:\n\n")
    # as docker: the virtual size is not shown here
    containers = [ContainerContext({**c, "SizeRootFs": 0}) for c in usage.get("Containers") or []]
    render(cli, _DF_CONTAINERS, containers, ContainerContext.HEADERS)
    w("\nLocal Volumes space usage:\n\n")
    w("VOLUME NAME   LINKS     SIZE\n")
    cache = usage.get("BuildCache") or []
    unshared = sum(b.get("Size", 0) for b in cache if not b.get("Shared"))
    w(f"\nBuild cache usage: {human_size(unshared)}\n\n")
    render(cli, _DF_CACHE, [_cache_row(b) for b in cache], _DF_CACHE_HEADERS)
    return 0


_DF_CACHE = (
    "table {{.ID}}\t{{.CacheType}}\t{{.Size}}\t{{.CreatedSince}}\t{{.LastUsedSince}}"
    "\t{{.UsageCount}}\t{{.Shared}}"
)
_DF_CACHE_HEADERS = {
    "ID": "CACHE ID",
    "CacheType": "CACHE TYPE",
    "Size": "SIZE",
    "CreatedSince": "CREATED",
    "LastUsedSince": "LAST USED",
    "UsageCount": "USAGE",
    "Shared": "SHARED",
}


def _df_image_row(image: dict):
    """One row per image with its first tag only, as docker's df -v prints."""
    from dockyard.cli.formatter import ImageContext, familiar_name

    repo = tag = "<none>"
    tags = image.get("RepoTags") or []
    if tags and tags[0] != "<none>:<none>":
        name, _, last = tags[0].rpartition(":")
        if name and "/" not in last:
            repo, tag = familiar_name(name), last
    return ImageContext(image, repo, tag, "", trunc=True)


def _cache_row(record: dict) -> dict[str, str]:
    """A build cache record as the docker CLI's buildCacheContext shows it."""
    from dockyard.cli.formatter import since, truncate_id
    from dockyard.image.service import parse_time
    from dockyard.units import human_size_with_precision

    ident = truncate_id(record.get("ID", ""))
    last_used = record.get("LastUsedAt")
    return {
        "ID": ident + "*" if record.get("InUse") else ident,
        "CacheType": record.get("Type", ""),
        "Size": human_size_with_precision(record.get("Size", 0), 3),
        "CreatedSince": since(parse_time(record.get("CreatedAt", ""))),
        "LastUsedSince": since(parse_time(last_used)) if last_used else "",
        "UsageCount": str(record.get("UsageCount", 0)),
        "Shared": "true" if record.get("Shared") else "false",
    }
