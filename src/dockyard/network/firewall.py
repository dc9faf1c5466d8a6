"""The daemon's netfilter rules: masquerading, forwarding, isolation between
networks and DNAT for published ports, all in chains named after one prefix.

Chains (a suffix of at most 4 characters, so a prefix may have 24 of the
28 characters iptables allows):

* filter `P`     jumped from FORWARD (inserted first): `-j P-ISO`, then per
  network accept/drop and per published port an ACCEPT
* filter `P-ISO` per network `-i B ! -o B -j P-IS2`; `P-IS2` per network
  `-o B -j DROP` — a packet leaving one of our bridges for another is dropped
  (Docker's two-stage isolation, which needs no list of the other networks)
* nat `P-NAT`   jumped from PREROUTING and OUTPUT for local destinations:
  per network `-i B -j RETURN` (containers reach published ports through the
  userland proxy), per published port a DNAT
* nat `P-PST`   jumped from POSTROUTING: per network `-s S ! -o B -j MASQUERADE`

Every change is one `iptables-restore --noflush` transaction (~5 ms).
`teardown` finds what to remove in `iptables-save` output rather than in our
memory, so it also clears what an earlier, crashed run of the prefix left.
"""

from __future__ import annotations

import ipaddress
import shlex
import subprocess
import threading
from dataclasses import dataclass

from dockyard import errdefs

_MAX_CHAIN = 28
_TABLES = ("filter", "nat")


@dataclass(frozen=True)
class PortMapping:
    proto: str  # "tcp" | "udp"
    host_ip: str  # "" or "0.0.0.0" = all
    host_port: int
    container_ip: str
    container_port: int
    bridge: str


class Firewall:
    """One per daemon; methods are safe to call from several threads."""

    def __init__(self, prefix: str) -> None:
        if not prefix or len(prefix) + 4 > _MAX_CHAIN or any(c.isspace() for c in prefix):
            raise errdefs.InvalidArgument(f"invalid iptables chain prefix {prefix!r}")
        self.prefix = prefix
        self.forward = prefix
        self.isolation = f"{prefix}-ISO"
        self.isolation2 = f"{prefix}-IS2"
        self.dnat = f"{prefix}-NAT"
        self.masquerade = f"{prefix}-PST"
        self._chains = {
            "filter": (self.forward, self.isolation, self.isolation2),
            "nat": (self.dnat, self.masquerade),
        }
        self._lock = threading.Lock()

    def setup(self) -> None:
        """Create the chains and the jumps into them (after clearing any left
        from an earlier run), and enable IPv4 forwarding."""
        with self._lock:
            self._teardown()
            _restore(
                {
                    "filter": [
                        *(f":{c} - [0:0]" for c in self._chains["filter"]),
                        f"-I FORWARD 1 -j {self.forward}",
                        f"-A {self.forward} -j {self.isolation}",
                    ],
                    "nat": [
                        *(f":{c} - [0:0]" for c in self._chains["nat"]),
                        f"-A PREROUTING -m addrtype --dst-type LOCAL -j {self.dnat}",
                        f"-A OUTPUT ! -d 127.0.0.0/8 -m addrtype --dst-type LOCAL -j {self.dnat}",
                        f"-A POSTROUTING -j {self.masquerade}",
                    ],
                },
                what="set up firewall chains",
            )
        _enable_forwarding()

    def teardown(self) -> None:
        """Remove every rule and chain of this prefix, wherever it came from."""
        with self._lock:
            self._teardown()

    def add_network(
        self,
        *,
        bridge: str,
        subnet: ipaddress.IPv4Network,
        internal: bool,
        icc: bool = True,
    ) -> None:
        rules = self._network_rules(bridge=bridge, subnet=subnet, internal=internal, icc=icc)
        with self._lock:
            _restore(_prefixed("-A", rules), what=f"add firewall rules for {bridge}")

    def remove_network(self, *, bridge: str, subnet: ipaddress.IPv4Network, internal: bool) -> None:
        # icc only changes a verdict; delete both forms so either is gone.
        with self._lock:
            for icc in (True, False):
                rules = self._network_rules(
                    bridge=bridge, subnet=subnet, internal=internal, icc=icc
                )
                _delete(rules)

    def add_port(self, m: PortMapping) -> None:
        rules = self._port_rules(m)
        if rules:
            with self._lock:
                _restore(_prefixed("-A", rules), what=f"publish port {m.host_port}/{m.proto}")

    def remove_port(self, m: PortMapping) -> None:
        rules = self._port_rules(m)
        if rules:
            with self._lock:
                _delete(rules)

    def _network_rules(
        self, *, bridge: str, subnet: ipaddress.IPv4Network, internal: bool, icc: bool
    ) -> dict[str, list[str]]:
        b = bridge
        between = "ACCEPT" if icc else "DROP"
        filter_rules = [
            f"{self.isolation} -i {b} ! -o {b} -j {self.isolation2}",
            f"{self.isolation2} -o {b} -j DROP",
        ]
        if internal:
            filter_rules += [
                f"{self.forward} -i {b} ! -o {b} -j DROP",
                f"{self.forward} ! -i {b} -o {b} -j DROP",
                f"{self.forward} -i {b} -o {b} -j {between}",
            ]
            return {"filter": filter_rules, "nat": []}
        filter_rules += [
            f"{self.forward} -o {b} -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
            f"{self.forward} -i {b} ! -o {b} -j ACCEPT",
            f"{self.forward} -i {b} -o {b} -j {between}",
        ]
        nat_rules = [
            f"{self.dnat} -i {b} -j RETURN",
            f"{self.masquerade} -s {subnet} ! -o {b} -j MASQUERADE",
        ]
        return {"filter": filter_rules, "nat": nat_rules}

    def _port_rules(self, m: PortMapping) -> dict[str, list[str]]:
        if m.proto not in ("tcp", "udp"):
            raise errdefs.InvalidArgument(f"invalid proto '{m.proto}'")
        host_ip = m.host_ip or "0.0.0.0"
        if ipaddress.ip_address(host_ip).version != 4:
            return {}  # IPv6 publishing is the proxy's alone
        dest = "" if host_ip == "0.0.0.0" else f" -d {host_ip}/32"
        b = m.bridge
        return {
            "nat": [
                f"{self.dnat} -p {m.proto} -m {m.proto}{dest} --dport {m.host_port} ! -i {b}"
                f" -j DNAT --to-destination {m.container_ip}:{m.container_port}"
            ],
            "filter": [
                f"{self.forward} -d {m.container_ip}/32 ! -i {b} -o {b} -p {m.proto}"
                f" -m {m.proto} --dport {m.container_port} -j ACCEPT"
            ],
        }

    def _teardown(self) -> None:
        ops: dict[str, list[str]] = {}
        for table, text in _save().items():
            ours = self._chains.get(table)
            if not ours:
                continue
            existing: list[str] = []
            jumps: list[str] = []
            for line in text:
                if line.startswith(":"):
                    name = line[1:].split(" ", 1)[0]
                    if name in ours:
                        existing.append(name)
                elif line.startswith("-A "):
                    chain = line.split(" ", 2)[1]
                    if chain not in ours and _target(line) in ours:
                        jumps.append("-D " + line[3:])
            # Flush all before deleting any: our chains jump into each other.
            ops[table] = [*jumps, *(f"-F {c}" for c in existing), *(f"-X {c}" for c in existing)]
        if any(ops.values()):
            _restore(ops, what=f"remove firewall chains {self.prefix}")


def _prefixed(op: str, rules: dict[str, list[str]]) -> dict[str, list[str]]:
    return {table: [f"{op} {r}" for r in lines] for table, lines in rules.items()}


def _delete(rules: dict[str, list[str]]) -> None:
    """Delete rules; those already gone are no error."""
    try:
        _restore(_prefixed("-D", rules), what="")
        return
    except errdefs.System:
        pass
    # The transaction is all-or-nothing: one missing rule fails it. Go one by one.
    for table, lines in rules.items():
        for r in lines:
            try:
                _restore({table: [f"-D {r}"]}, what="")
            except errdefs.System:
                pass


def _target(line: str) -> str | None:
    try:
        words = shlex.split(line)
    except ValueError:
        words = line.split()
    for i, word in enumerate(words[:-1]):
        if word in ("-j", "--jump", "-g", "--goto"):
            return words[i + 1]
    return None


def _save() -> dict[str, list[str]]:
    proc = subprocess.run(["iptables-save"], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise errdefs.System(f"iptables-save: {proc.stderr.strip()}")
    tables: dict[str, list[str]] = {}
    current: list[str] = []
    for line in proc.stdout.splitlines():
        if line.startswith("*"):
            current = tables.setdefault(line[1:].strip(), [])
        elif line and not line.startswith("#"):
            current.append(line)
    return tables


def _restore(ops: dict[str, list[str]], *, what: str) -> None:
    text = "".join(
        f"*{table}\n" + "".join(f"{line}\n" for line in lines) + "COMMIT\n"
        for table, lines in ops.items()
        if lines and table in _TABLES
    )
    if not text:
        return
    proc = subprocess.run(
        ["iptables-restore", "-w", "--noflush"],
        input=text,
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise errdefs.System(f"{what or 'iptables-restore'}: {proc.stderr.strip()}")


def _enable_forwarding() -> None:
    path = "/proc/sys/net/ipv4/ip_forward"
    try:
        with open(path) as f:
            if f.read().strip() == "1":
                return
        with open(path, "w") as f:
            f.write("1\n")
    except OSError as exc:
        raise errdefs.System(f"enable IPv4 forwarding: {exc}") from exc
