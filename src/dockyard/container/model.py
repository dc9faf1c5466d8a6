"""The container record: what the engine keeps about one container, how it
is stored (JSON in the ``containers`` table) and how it looks on the wire
(``ContainerInspectResponse`` and ``ContainerSummary``)."""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime

from dockyard import units
from dockyard.container.state import Status

ZERO_TIME = "0001-01-01T00:00:00Z"


def now_rfc3339() -> str:
    """RFC 3339 with nanoseconds, UTC, as Go prints time.Time."""
    ns = time.time_ns()
    seconds, frac = divmod(ns, 1_000_000_000)
    stamp = datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{stamp}.{frac:09d}Z"


def parse_rfc3339(text: str) -> float:
    """Seconds since the epoch of an RFC 3339 stamp (0 for Go's zero time)."""
    parsed = units.parse_time(text)
    return parsed.timestamp() if parsed else 0.0


@dataclass
class State:
    status: Status = Status.CREATED
    pid: int = 0
    exit_code: int = 0
    error: str = ""
    started_at: str = ZERO_TIME
    finished_at: str = ZERO_TIME
    oom_killed: bool = False

    @property
    def running(self) -> bool:
        return self.status in (Status.RUNNING, Status.PAUSED, Status.RESTARTING)

    def to_api(self) -> dict:
        return {
            "Status": self.status.value,
            "Running": self.status in (Status.RUNNING, Status.PAUSED, Status.RESTARTING),
            "Paused": self.status == Status.PAUSED,
            "Restarting": self.status == Status.RESTARTING,
            "OOMKilled": self.oom_killed,
            "Dead": self.status == Status.DEAD,
            "Pid": self.pid,
            "ExitCode": self.exit_code,
            "Error": self.error,
            "StartedAt": self.started_at,
            "FinishedAt": self.finished_at,
        }

    def human(self) -> str:
        """The ``Status`` column text: "Up 3 seconds", "Exited (0) 2 minutes ago"."""
        return units.container_status(self.to_api())


@dataclass
class Container:
    id: str
    name: str  # with the leading slash
    image_id: str
    created: str
    config: dict  # ContainerConfig, image defaults merged in
    host_config: dict
    path: str
    args: list[str]
    state: State = field(default_factory=State)
    restart_count: int = 0
    has_been_started: bool = False
    log_path: str = ""
    hostname_path: str = ""
    hosts_path: str = ""
    resolv_conf_path: str = ""
    driver: str = "overlay2"
    networking_config: dict = field(default_factory=dict)  # NetworkingConfig as posted

    @property
    def short_id(self) -> str:
        return self.id[:12]

    # -- persistence -------------------------------------------------------
    def to_json(self) -> str:
        data = asdict(self)
        data["state"]["status"] = self.state.status.value
        return json.dumps(data)

    @classmethod
    def from_json(cls, text: str) -> Container:
        data = json.loads(text)
        state = data.pop("state")
        state["status"] = Status(state["status"])
        return cls(state=State(**state), **data)

    # -- wire shapes -------------------------------------------------------
    def command(self) -> str:
        return " ".join([self.path, *self.args]).strip()

    def inspect(self, *, graph_data: dict | None = None, network: dict | None = None) -> dict:
        return {
            "Id": self.id,
            "Created": self.created,
            "Path": self.path,
            "Args": self.args,
            "State": self.state.to_api(),
            "Image": self.image_id,
            "ResolvConfPath": self.resolv_conf_path,
            "HostnamePath": self.hostname_path,
            "HostsPath": self.hosts_path,
            "LogPath": self.log_path,
            "Name": self.name,
            "RestartCount": self.restart_count,
            "Driver": self.driver,
            "Platform": "linux",
            "MountLabel": "",
            "ProcessLabel": "",
            "AppArmorProfile": "",
            "ExecIDs": None,
            "HostConfig": self.host_config,
            "GraphDriver": {"Name": self.driver, "Data": graph_data or {}},
            "Mounts": [],
            "Config": self.config,
            "NetworkSettings": network or {},
        }

    def summary(self, *, network: dict | None = None) -> dict:
        return {
            "Id": self.id,
            "Names": [self.name],
            "Image": self.config.get("Image", ""),
            "ImageID": self.image_id,
            "Command": self.command(),
            "Created": int(parse_rfc3339(self.created)),
            "Ports": _summary_ports((network or {}).get("Ports") or {}),
            "Labels": self.config.get("Labels") or {},
            "State": self.state.status.value,
            "Status": self.state.human(),
            "HostConfig": {"NetworkMode": self.host_config.get("NetworkMode", "default")},
            "NetworkSettings": {"Networks": (network or {}).get("Networks", {})},
            "Mounts": [],
        }


def _summary_ports(ports: dict) -> list[dict]:
    """NetworkSettings.Ports ({"80/tcp": [{"HostIp", "HostPort"}]}) as the
    list's Port objects."""
    out: list[dict] = []
    for key, bindings in sorted(ports.items()):
        number, _, proto = key.partition("/")
        if not bindings:
            out.append({"PrivatePort": int(number), "Type": proto or "tcp"})
            continue
        for binding in bindings:
            out.append({
                "IP": binding.get("HostIp") or "0.0.0.0",
                "PrivatePort": int(number),
                "PublicPort": int(binding.get("HostPort") or 0),
                "Type": proto or "tcp",
            })  # fmt: skip
    return out
