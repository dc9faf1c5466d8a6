"""Daemon configuration: dockerd's flags and daemon.json keys, merged.

Every path the daemon touches is derived here from ``data_root`` and
``exec_root`` so that several daemons run side by side without sharing state.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from dockyard import errdefs

DEFAULT_SOCKET = "unix:///run/dockyard/dockyard.sock"


@dataclass
class DaemonConfig:
    hosts: list[str] = field(default_factory=lambda: [DEFAULT_SOCKET])
    data_root: Path = Path("/var/lib/dockyard")
    exec_root: Path = Path("/run/dockyard")
    pidfile: Path | None = None
    log_level: str = "info"
    cgroup_parent: str = "dockyard"
    default_runtime: str = "dockyard"
    # name -> path of a runc-compatible binary; "dockyard" is the builtin one.
    runtimes: dict[str, str] = field(default_factory=dict)
    log_driver: str = "json-file"
    log_opts: dict[str, str] = field(default_factory=lambda: {"max-size": "20m", "max-file": "5"})
    bridge: str | None = None
    bip: str | None = None
    registry_mirrors: list[str] = field(default_factory=list)
    insecure_registries: list[str] = field(default_factory=list)
    # Per-registry TLS (``<host[:port]>/*.crt``, ``client.cert``/``.key``); main.py
    # puts it next to the daemon.json in use, as dockerd's /etc/docker/certs.d.
    certs_dir: Path = Path("/etc/dockyard/certs.d")
    tls_verify: bool = False
    tls_cacert: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    debug: bool = False
    cleanup: bool = False  # --cleanup: tear networking down and exit

    # -- derived paths -----------------------------------------------------
    @property
    def db_path(self) -> Path:
        return self.data_root / "metadata.db"

    @property
    def content_root(self) -> Path:
        return self.data_root / "content"

    @property
    def snapshots_root(self) -> Path:
        return self.data_root / "snapshots"

    def container_dir(self, container_id: str) -> Path:
        """Persistent per-container files: logs, hostname, hosts, resolv.conf."""
        return self.data_root / "containers" / container_id

    def container_run_dir(self, container_id: str) -> Path:
        """Volatile per-container files: bundle, rootfs mount, shim socket."""
        return self.exec_root / "containers" / container_id

    @property
    def runtime_state_root(self) -> Path:
        return self.exec_root / "runtime"

    def apply_file(self, path: Path) -> None:
        """Apply daemon.json; flags given on the command line win (applied after)."""
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            return
        except (OSError, ValueError) as exc:
            raise errdefs.InvalidArgument(
                f"unable to configure the Docker daemon with file {path}: {exc}"
            )
        if not isinstance(data, dict):
            raise errdefs.InvalidArgument(f"invalid daemon configuration file {path}")
        simple = {
            "hosts": "hosts",
            "data-root": "data_root",
            "exec-root": "exec_root",
            "pidfile": "pidfile",
            "log-level": "log_level",
            "cgroup-parent": "cgroup_parent",
            "default-runtime": "default_runtime",
            "log-driver": "log_driver",
            "bridge": "bridge",
            "bip": "bip",
            "registry-mirrors": "registry_mirrors",
            "insecure-registries": "insecure_registries",
            "tlsverify": "tls_verify",
            "tlscacert": "tls_cacert",
            "tlscert": "tls_cert",
            "tlskey": "tls_key",
            "debug": "debug",
        }
        for key, attr in simple.items():
            if key in data:
                value = data[key]
                if attr in ("data_root", "exec_root", "pidfile"):
                    value = Path(value)
                setattr(self, attr, value)
        if "log-opts" in data:
            self.log_opts = {
                **self.log_opts,
                **{str(k): str(v) for k, v in data["log-opts"].items()},
            }
        for name, spec in (data.get("runtimes") or {}).items():
            self.runtimes[name] = spec.get("path", name) if isinstance(spec, dict) else str(spec)

    def runtime_path(self, name: str) -> str | None:
        """The binary for a runtime name, or None for the builtin runtime."""
        if name in ("dockyard", "builtin"):
            return None
        if name in self.runtimes:
            return self.runtimes[name]
        if name in ("runc", "crun"):
            return name
        raise errdefs.InvalidArgument(f"unknown or invalid runtime name: {name}")


def socket_path(host: str) -> str | None:
    """The filesystem path of a ``unix://`` host, else None."""
    if host.startswith("unix://"):
        return host[len("unix://") :]
    if host.startswith("/"):
        return host
    return None


def default_host() -> str:
    return os.environ.get("DOCKER_HOST", DEFAULT_SOCKET)
