"""Network commands: network create/ls/inspect/rm/prune/connect/disconnect,
and ``port``."""

from __future__ import annotations

from dockyard.cli.common import (
    PRUNE_FLAGS,
    confirm,
    dump_objects,
    filters_param,
    parse_args,
    parse_filters,
    render,
)
from dockyard.cli.flags import Flag
from dockyard.cli.formatter import Context, truncate_id
from dockyard.cli.main import Cli, ExitError
from dockyard.errdefs import DockyardError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any

DEFAULT_FORMAT = "table {{.ID}}\t{{.Name}}\t{{.Driver}}\t{{.Scope}}"


class NetworkContext(Context):
    GO_TYPE = "*formatter.networkContext"
    HEADERS = {
        "ID": "NETWORK ID",
        "Name": "NAME",
        "Driver": "DRIVER",
        "Scope": "SCOPE",
        "IPv4": "IPV4",
        "IPv6": "IPV6",
        "Internal": "INTERNAL",
        "Labels": "LABELS",
        "CreatedAt": "CREATED AT",
    }
    JSON_FIELDS = (
        "CreatedAt", "Driver", "ID", "IPv4", "IPv6", "Internal", "Labels", "Name", "Scope",
    )  # fmt: skip

    def __init__(self, n: Mapping[str, Any], *, trunc: bool = True) -> None:
        self.n = n
        self.trunc = trunc

    def ID(self) -> str:
        ident = self.n.get("Id", "")
        return truncate_id(ident) if self.trunc else ident

    def Name(self) -> str:
        return self.n.get("Name", "")

    def Driver(self) -> str:
        return self.n.get("Driver", "")

    def Scope(self) -> str:
        return self.n.get("Scope", "")

    def IPv4(self) -> str:
        return "true" if self.n.get("EnableIPv4", True) else "false"

    def IPv6(self) -> str:
        return "true" if self.n.get("EnableIPv6") else "false"

    def Internal(self) -> str:
        return "true" if self.n.get("Internal") else "false"

    def Labels(self) -> str:
        return ",".join(f"{k}={v}" for k, v in sorted((self.n.get("Labels") or {}).items()))

    def Label(self, name: str) -> str:
        return (self.n.get("Labels") or {}).get(name, "")

    def CreatedAt(self) -> str:
        return self.n.get("Created", "")


def _list_format(fmt: str | None, quiet: bool) -> str:
    if quiet:
        return "{{.ID}}"
    if not fmt or fmt == "table":
        return DEFAULT_FORMAT
    return fmt


def cmd_create(cli: Cli, argv: list[str]) -> int:
    flags = [
        Flag("attachable", "", "bool", help="Enable manual container attachment"),
        Flag("aux-address", "", "list", help="Auxiliary IPv4 or IPv6 addresses used by Network"),
        Flag("driver", "d", "str", "bridge", help="Driver to manage the Network"),
        Flag("gateway", "", "list", help="IPv4 or IPv6 Gateway for the master subnet"),
        Flag("internal", "", "bool", help="Restrict external access to the network"),
        Flag("ip-range", "", "list", help="Allocate container ip from a sub-range"),
        Flag("ipam-driver", "", "str", "default", help="IP Address Management Driver"),
        Flag("ipam-opt", "", "list", help="Set IPAM driver specific options"),
        Flag("ipv4", "", "bool", True, help="Enable or disable IPv4 address assignment"),
        Flag("ipv6", "", "bool", help="Enable or disable IPv6 address assignment"),
        Flag("label", "", "list", help="Set metadata on a network"),
        Flag("opt", "o", "list", help="Set driver specific options"),
        Flag("scope", "", "str", help="Control the network's scope"),
        Flag("subnet", "", "list", help="Subnet in CIDR format that represents a network segment"),
    ]
    opts = parse_args(cli, argv, flags, "network create [OPTIONS] NETWORK", min_args=1, max_args=1)
    if len(opts.gateway) > len(opts.subnet) or len(opts.ip_range) > len(opts.subnet):
        which = "gateway" if len(opts.gateway) > len(opts.subnet) else "ip-range"
        raise ExitError(1, f"every {which} must have a corresponding subnet")
    configs = []
    for i, subnet in enumerate(opts.subnet):
        cfg = {"Subnet": subnet}
        if i < len(opts.ip_range):
            cfg["IPRange"] = opts.ip_range[i]
        if i < len(opts.gateway):
            cfg["Gateway"] = opts.gateway[i]
        configs.append(cfg)
    body: dict[str, Any] = {
        "Name": opts.args[0],
        "Driver": opts.driver,
        "Scope": opts.scope or "",
        "EnableIPv4": opts.ipv4,
        "IPAM": {"Driver": opts.ipam_driver, "Config": configs, "Options": _kv(opts.ipam_opt)},
        "Internal": opts.internal,
        "Attachable": opts.attachable,
        "Options": _kv(opts.opt),
        "Labels": _kv(opts.label),
    }
    if "ipv6" in opts.changed:
        body["EnableIPv6"] = opts.ipv6
    result = cli.client.post("/networks/create", body=body)
    cli.out.write(f"{result['Id']}\n")
    return 0


def _kv(items: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items:
        key, _, value = item.partition("=")
        out[key] = value
    return out


def cmd_ls(cli: Cli, argv: list[str]) -> int:
    flags = [
        Flag("filter", "f", "list", help='Provide filter values (e.g. "driver=bridge")'),
        Flag("format", "", "str", help="Format output using a custom template"),
        Flag("no-trunc", "", "bool", help="Do not truncate the output"),
        Flag("quiet", "q", "bool", help="Only display network IDs"),
    ]
    opts = parse_args(cli, argv, flags, "network ls [OPTIONS]", max_args=0)
    params = {"filters": filters_param(parse_filters(opts.filter))}
    networks = cli.client.get("/networks", params) or []
    networks.sort(key=lambda n: n.get("Name", ""))
    rows = [NetworkContext(n, trunc=not opts.no_trunc) for n in networks]
    render(cli, _list_format(opts.format, opts.quiet), rows, NetworkContext.HEADERS)
    return 0


def cmd_inspect(cli: Cli, argv: list[str]) -> int:
    flags = [
        Flag("format", "f", "str", help="Format output using a custom template"),
        Flag("verbose", "v", "bool", help="Verbose output for diagnostics"),
    ]
    opts = parse_args(
        cli, argv, flags, "network inspect [OPTIONS] NETWORK [NETWORK...]", min_args=1
    )
    found: list[Any] = []
    errors: list[str] = []
    for name in opts.args:
        try:
            found.append(
                cli.client.get(f"/networks/{name}", {"verbose": True if opts.verbose else None})
            )
        except DockyardError as exc:
            errors.append(f"Error response from daemon: {exc.message}")
    if found or not opts.format:
        dump_objects(cli, found, opts.format)
    if errors:
        raise ExitError(1, "\n".join(errors))
    return 0


def cmd_rm(cli: Cli, argv: list[str]) -> int:
    flags = [Flag("force", "f", "bool", help="Do not error if the network does not exist")]
    opts = parse_args(cli, argv, flags, "network rm NETWORK [NETWORK...]", min_args=1)
    failed: list[str] = []
    for name in opts.args:
        try:
            cli.client.delete(f"/networks/{name}")
        except DockyardError as exc:
            if opts.force and getattr(exc, "status", 0) == 404:
                continue
            cli.err.write(f"Error response from daemon: {exc.message}\n")
            failed.append(name)
            continue
        cli.out.write(f"{name}\n")
    return 1 if failed else 0


def cmd_prune(cli: Cli, argv: list[str]) -> int:
    opts = parse_args(cli, argv, PRUNE_FLAGS, "network prune [OPTIONS]", max_args=0)
    warning = "This will remove all custom networks not used by at least one container."
    if not opts.force and not confirm(cli, warning):
        return 0
    params = {"filters": filters_param(parse_filters(opts.filter))}
    report = cli.client.post("/networks/prune", params) or {}
    deleted = report.get("NetworksDeleted") or []
    if deleted:
        cli.out.write("Deleted Networks:\n" + "".join(f"{n}\n" for n in deleted) + "\n")
    return 0


def cmd_connect(cli: Cli, argv: list[str]) -> int:
    flags = [
        Flag("alias", "", "list", help="Add network-scoped alias for the container"),
        Flag("driver-opt", "", "list", help="driver options for the network"),
        Flag("gw-priority", "", "int", 0, help="Highest gw-priority provides the default gateway"),
        Flag("ip", "", "str", help="IPv4 address (e.g., 172.30.100.104)"),
        Flag("ip6", "", "str", help="IPv6 address (e.g., 2001:db8::33)"),
        Flag("link", "", "list", help="Add link to another container"),
        Flag("link-local-ip", "", "list", help="Add a link-local address for the container"),
    ]
    opts = parse_args(
        cli, argv, flags, "network connect [OPTIONS] NETWORK CONTAINER", min_args=2, max_args=2
    )
    network, container = opts.args
    endpoint: dict[str, Any] = {
        "IPAMConfig": {"IPv4Address": opts.ip or "", "IPv6Address": opts.ip6 or ""},
        "Links": opts.link or None,
        "Aliases": opts.alias or None,
        "DriverOpts": _kv(opts.driver_opt) or None,
    }
    body = {"Container": container, "EndpointConfig": endpoint}
    cli.client.post(f"/networks/{network}/connect", body=body)
    return 0


def cmd_disconnect(cli: Cli, argv: list[str]) -> int:
    flags = [Flag("force", "f", "bool", help="Force the container to disconnect from a network")]
    opts = parse_args(
        cli, argv, flags, "network disconnect [OPTIONS] NETWORK CONTAINER", min_args=2, max_args=2
    )
    network, container = opts.args
    body = {"Container": container, "Force": opts.force}
    cli.client.post(f"/networks/{network}/disconnect", body=body)
    return 0


def cmd_port(cli: Cli, argv: list[str]) -> int:
    opts = parse_args(cli, argv, [], "port CONTAINER [PRIVATE_PORT[/PROTO]]", min_args=1,
                      max_args=2)  # fmt: skip
    name = opts.args[0]
    info = cli.client.get(f"/containers/{name}/json")
    ports = (info.get("NetworkSettings") or {}).get("Ports") or {}
    if len(opts.args) == 2:
        port, _, proto = opts.args[1].partition("/")
        key = f"{port}/{proto or 'tcp'}"
        bindings = ports.get(key)
        if not bindings:
            raise ExitError(1, f"Error: No public port '{key}' published for {name}")
        for b in bindings:
            cli.out.write(f"{_host(b)}\n")
        return 0
    for key in sorted(ports, key=_port_order):
        for b in ports[key] or []:
            cli.out.write(f"{key} -> {_host(b)}\n")
    return 0


def _host(binding: Mapping[str, Any]) -> str:
    ip = binding.get("HostIp") or "0.0.0.0"
    return f"[{ip}]:{binding.get('HostPort', '')}" if ":" in ip else f"{ip}:{binding['HostPort']}"


def _port_order(key: str) -> tuple[int, str]:
    port, _, proto = key.partition("/")
    return (int(port) if port.isdigit() else 0, proto)
