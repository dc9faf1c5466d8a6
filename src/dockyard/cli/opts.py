"""``create``/``run`` flags and their translation into the create request
body (Config + HostConfig), as docker/cli's ``container/opts.go`` does."""

from __future__ import annotations

import os
from typing import Any

from dockyard.cli.flags import Flag, Parsed
from dockyard.cli.main import ExitError

CREATE_FLAGS = [
    Flag("add-host", "", "list", help="Add a custom host-to-IP mapping (host:ip)"),
    Flag("attach", "a", "list", help="Attach to STDIN, STDOUT or STDERR"),
    Flag("cap-add", "", "list", help="Add Linux capabilities"),
    Flag("cap-drop", "", "list", help="Drop Linux capabilities"),
    Flag("cpus", "", "float", help="Number of CPUs"),
    Flag("dns", "", "list", help="Set custom DNS servers"),
    Flag("entrypoint", "", "str", help="Overwrite the default ENTRYPOINT of the image"),
    Flag("env", "e", "list", help="Set environment variables"),
    Flag("env-file", "", "list", help="Read in a file of environment variables"),
    Flag("expose", "", "list", help="Expose a port or a range of ports"),
    Flag("hostname", "h", "str", help="Container host name"),
    Flag("init", "", "bool", help="Run an init inside the container"),
    Flag("interactive", "i", "bool", help="Keep STDIN open even if not attached"),
    Flag("label", "l", "list", help="Set meta data on a container"),
    Flag("log-driver", "", "str", help="Logging driver for the container"),
    Flag("log-opt", "", "list", help="Log driver options"),
    Flag("memory", "m", "str", help="Memory limit"),
    Flag("name", "", "str", help="Assign a name to the container"),
    Flag("network", "", "str", help="Connect a container to a network"),
    Flag("net", "", "str", hidden=True),
    Flag("network-alias", "", "list", help="Add network-scoped alias for the container"),
    Flag("net-alias", "", "list", hidden=True),
    Flag("ip", "", "str", help="IPv4 address (e.g., 172.30.100.104)"),
    Flag("mac-address", "", "str", help="Container MAC address (e.g., 92:d0:c6:0a:29:33)"),
    Flag("dns-search", "", "list", help="Set custom DNS search domains"),
    Flag("dns-option", "", "list", help="Set DNS options"),
    Flag("publish-all", "P", "bool", help="Publish all exposed ports to random ports"),
    Flag("platform", "", "str", help="Set platform if server is multi-platform capable"),
    Flag("privileged", "", "bool", help="Give extended privileges to this container"),
    Flag("publish", "p", "list", help="Publish a container's port(s) to the host"),
    Flag(
        "pull",
        "",
        "str",
        "missing",
        help='Pull image before running ("always", "missing", "never")',
    ),
    Flag("read-only", "", "bool", help="Mount the container's root filesystem as read only"),
    Flag("restart", "", "str", "no", help="Restart policy to apply when a container exits"),
    Flag("rm", "", "bool", help="Automatically remove the container when it exits"),
    Flag("runtime", "", "str", help="Runtime to use for this container"),
    Flag("stop-signal", "", "str", help="Signal to stop the container"),
    Flag("stop-timeout", "", "int", help="Timeout (in seconds) to stop a container"),
    Flag("tmpfs", "", "list", help="Mount a tmpfs directory"),
    Flag("tty", "t", "bool", help="Allocate a pseudo-TTY"),
    Flag("user", "u", "str", help="Username or UID (format: <name|uid>[:<group|gid>])"),
    Flag("volume", "v", "list", help="Bind mount a volume"),
    Flag("workdir", "w", "str", help="Working directory inside the container"),
]

RUN_FLAGS = [
    *CREATE_FLAGS,
    Flag("detach", "d", "bool", help="Run container in background and print container ID"),
    Flag("sig-proxy", "", "bool", True, help="Proxy received signals to the process"),
    Flag("detach-keys", "", "str", help="Override the key sequence for detaching a container"),
]


def _env_value(item: str) -> str:
    if "=" in item:
        return item
    value = os.environ.get(item)
    return f"{item}={value}" if value is not None else item


def read_env_file(path: str) -> list[str]:
    """opts.ParseEnvFile: KEY=VALUE lines, comments and blanks skipped."""
    try:
        with open(path, encoding="utf-8") as fh:
            lines = fh.read().splitlines()
    except OSError as exc:
        raise ExitError(125, f"open {path}: {(exc.strerror or str(exc)).lower()}")
    out = []
    for line in lines:
        text = line.lstrip()
        if not text or text.startswith("#"):
            continue
        key = text.split("=", 1)[0]
        if not key or " " in key.strip():
            raise ExitError(125, f"variable '{key}' contains whitespaces")
        out.append(_env_value(text))
    return out


def parse_restart(text: str) -> dict[str, Any]:
    name, _, count = text.partition(":")
    if name not in ("", "no", "always", "unless-stopped", "on-failure"):
        raise ExitError(125, f"invalid restart policy format: unknown policy '{name}'")
    if count and name != "on-failure":
        raise ExitError(
            125,
            "invalid restart policy format: maximum retry count can only be used with 'on-failure'",
        )
    try:
        retries = int(count) if count else 0
    except ValueError:
        raise ExitError(
            125, f"invalid restart policy format: maximum retry count must be an integer: {count}"
        )
    return {"Name": name or "no", "MaximumRetryCount": retries}


def parse_ports(specs: list[str]) -> tuple[dict[str, Any], dict[str, list[dict[str, str]]]]:
    """``-p [ip:][hostPort:]containerPort[/proto]`` → ExposedPorts, PortBindings."""
    exposed: dict[str, Any] = {}
    bindings: dict[str, list[dict[str, str]]] = {}
    for spec in specs:
        body, _, proto = spec.partition("/")
        proto = proto or "tcp"
        if body.startswith("["):
            end = body.index("]")
            ip, rest = body[1:end], body[end + 2 :]
            parts = [ip, *rest.split(":")]
        else:
            parts = body.split(":")
        if len(parts) == 1:
            ip, host, port = "", "", parts[0]
        elif len(parts) == 2:
            ip, host, port = "", parts[0], parts[1]
        elif len(parts) == 3:
            ip, host, port = parts
        else:
            raise ExitError(
                125, f"invalid publish opts format (should be name=value but got '{spec}')"
            )
        if not port or not port.split("-")[0].isdigit():
            raise ExitError(125, f"invalid containerPort: {port}")
        key = f"{port}/{proto}"
        exposed[key] = {}
        bindings.setdefault(key, []).append({"HostIp": ip, "HostPort": host})
    return exposed, bindings


def _key_values(items: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items:
        key, _, value = item.partition("=")
        out[key] = value
    return out


def build_create_body(opts: Parsed, image: str, command: list[str], *,
                      detach: bool) -> dict[str, Any]:  # fmt: skip
    """The POST /containers/create body for these flags."""
    from dockyard.units import ram_in_bytes

    attach = [a.lower() for a in opts.attach]
    for a in attach:
        if a not in ("stdin", "stdout", "stderr"):
            raise ExitError(
                125,
                f'invalid argument "{a}" for "-a, --attach" flag: '
                "valid streams are STDIN, STDOUT and STDERR",
            )
    if detach and attach:
        raise ExitError(125, "conflicting options: cannot specify both --attach and --detach")
    stdin = opts.interactive and not detach and (not attach or "stdin" in attach)
    stdout = not detach and (not attach or "stdout" in attach)
    stderr = not detach and (not attach or "stderr" in attach)
    env: list[str] = []
    for path in opts.env_file:
        env += read_env_file(path)
    env += [_env_value(e) for e in opts.env]
    exposed, bindings = parse_ports(opts.publish)
    for port in opts.expose:
        exposed[port if "/" in port else f"{port}/tcp"] = {}
    binds: list[str] = []
    volumes: dict[str, Any] = {}
    for vol in opts.volume:
        if ":" in vol:
            binds.append(vol)
        else:
            volumes[vol] = {}
    network = opts.network or opts.net or "default"
    endpoint: dict[str, Any] = {}
    if opts.ip:
        endpoint["IPAMConfig"] = {"IPv4Address": opts.ip}
    aliases = [*opts.network_alias, *opts.net_alias]
    if aliases:
        endpoint["Aliases"] = aliases
    if opts.mac_address:
        endpoint["MacAddress"] = opts.mac_address
    entrypoint: Any = None
    if opts.entrypoint is not None:
        entrypoint = [opts.entrypoint] if opts.entrypoint else [""]
    host_config: dict[str, Any] = {
        "Binds": binds or None,
        "AutoRemove": bool(opts.rm),
        "RestartPolicy": parse_restart(opts.restart),
        "LogConfig": {"Type": opts.log_driver or "", "Config": _key_values(opts.log_opt)},
        "NetworkMode": network,
        "PublishAllPorts": bool(opts.publish_all),
        "DnsSearch": opts.dns_search,
        "DnsOptions": opts.dns_option,
        "PortBindings": bindings or {},
        "Privileged": bool(opts.privileged),
        "ReadonlyRootfs": bool(opts.read_only),
        "CapAdd": opts.cap_add or None,
        "CapDrop": opts.cap_drop or None,
        "Dns": opts.dns,
        "ExtraHosts": opts.add_host or None,
        "Tmpfs": {t.split(":", 1)[0]: t.partition(":")[2] for t in opts.tmpfs} or None,
    }
    if opts.init:
        host_config["Init"] = True
    if opts.runtime:
        host_config["Runtime"] = opts.runtime
    if opts.memory:
        try:
            host_config["Memory"] = ram_in_bytes(opts.memory)
        except Exception as exc:  # errdefs.InvalidArgument
            raise ExitError(125, f'invalid argument "{opts.memory}" for "-m, --memory" flag: {exc}')
    if opts.cpus:
        host_config["NanoCpus"] = int(opts.cpus * 1e9)
    body: dict[str, Any] = {
        "Hostname": opts.hostname or "",
        **({"MacAddress": opts.mac_address} if opts.mac_address else {}),
        "Domainname": "",
        "User": opts.user or "",
        "AttachStdin": stdin,
        "AttachStdout": stdout,
        "AttachStderr": stderr,
        "ExposedPorts": exposed or None,
        "Tty": bool(opts.tty),
        "OpenStdin": bool(opts.interactive),
        "StdinOnce": bool(stdin),
        "Env": env,
        "Cmd": command or None,
        "Image": image,
        "Volumes": volumes or None,
        "WorkingDir": opts.workdir or "",
        "Entrypoint": entrypoint,
        "Labels": _key_values(opts.label),
        "HostConfig": host_config,
        "NetworkingConfig": {"EndpointsConfig": {network: endpoint} if endpoint else {}},
    }
    if opts.stop_signal:
        body["StopSignal"] = opts.stop_signal
    if opts.stop_timeout is not None:
        body["StopTimeout"] = opts.stop_timeout
    return body
