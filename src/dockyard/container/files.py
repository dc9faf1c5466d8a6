"""The files Docker writes for each container and bind-mounts into it:
``/etc/hostname``, ``/etc/hosts`` and ``/etc/resolv.conf``."""

from __future__ import annotations

import re
from pathlib import Path

_HOSTS_BASE = (
    "127.0.0.1\tlocalhost\n"
    "::1\tlocalhost ip6-localhost ip6-loopback\n"
    "fe00::0\tip6-localnet\n"
    "ff00::0\tip6-mcastprefix\n"
    "ff02::1\tip6-allnodes\n"
    "ff02::2\tip6-allrouters\n"
)

_LOOPBACK_NS = re.compile(r"^\s*nameserver\s+(127\.\S*|::1)\s*$")
DEFAULT_DNS = ("8.8.8.8", "8.8.4.4")


def hosts_content(*, ip: str = "", hostname: str = "", extra: list[str] | None = None) -> str:
    text = _HOSTS_BASE
    for entry in extra or ():
        host, _, address = entry.partition(":")
        text += f"{address}\t{host}\n"
    if ip and hostname:
        text += f"{ip}\t{hostname}\n"
    return text


def resolv_conf_content(host_text: str) -> str:
    """The host's resolv.conf without loopback resolvers (unreachable from a
    container's own network namespace); Google's when none remain, as Docker."""
    lines = [line for line in host_text.splitlines() if not _LOOPBACK_NS.match(line)]
    if not any(line.strip().startswith("nameserver") for line in lines):
        lines += [f"nameserver {ns}" for ns in DEFAULT_DNS]
    return "\n".join(lines).strip() + "\n"


def write_all(directory: Path, *, hostname: str, domainname: str = "") -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "hostname").write_text(hostname + "\n")
    (directory / "hosts").write_text(hosts_content())
    try:
        host_resolv = Path("/etc/resolv.conf").read_text()
    except OSError:
        host_resolv = ""
    (directory / "resolv.conf").write_text(resolv_conf_content(host_resolv))
