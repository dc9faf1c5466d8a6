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
