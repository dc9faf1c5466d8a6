"""Networking benchmarks: our daemon and, when it is installed, dockerd (with
a private bridge and its own iptables rules), in one run, through the same
docker CLI. Prints a table with the ratios.

    .venv/bin/python bench/net.py [--runs N] [--reps N] [--mb MB]

Measured: the median of `docker run --rm busybox true` on the default bridge
and with `--network none` (their difference is the network set-up cost),
TCP throughput between two containers on one bridge (busybox wget from
busybox httpd), and from the host to a published port (an HTTP GET of the
same file) through 127.0.0.1 (userland
proxy) and through the bridge gateway's address (DNAT). Both engines run at
once and the transfers alternate between them, so that what else the
machine does weighs on both alike; each figure is a median.

dockerd brings up docker0 and its DOCKER* chains; both are removed after the
run (only if they were not there before).
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import os
import re
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import run
from bench.run import ENGINES, Engine, import_busybox, start_engine

DOCKERD_BIP = "10.251.0.1/24"
CHUNK = 1 << 20


DOCKERD_NETWORK = ("--bip", DOCKERD_BIP, "--iptables=true")  # its bridge and iptables on


# -- dockerd's host state ----------------------------------------------------


def _iptables_save(table: str) -> list[str]:
    out = subprocess.run(["iptables-save", "-t", table], capture_output=True, text=True)
    return out.stdout.splitlines()


def _forward_policy() -> str:
    for line in _iptables_save("filter"):
        if line.startswith(":FORWARD "):
            return line.split()[1]
    return "ACCEPT"


def remove_dockerd_state(chains_before: set[tuple[str, str]], had_docker0: bool) -> None:
    """Undo what dockerd left: the rules it put in the built-in chains, its
    DOCKER* chains, and docker0 (each only when it was not there before)."""
    subnet = str(ipaddress.IPv4Interface(DOCKERD_BIP).network)
    for table in ("filter", "nat", "raw", "mangle"):
        lines = _iptables_save(table)
        ours = {
            line[1:].split()[0]
            for line in lines
            if line.startswith(":DOCKER") and (table, line[1:].split()[0]) not in chains_before
        }
        for line in lines:
            if not line.startswith("-A "):
                continue
            chain = line.split()[1]
            if chain in ours:
                continue
            words = line.split()
            jumps = {words[i + 1] for i, w in enumerate(words[:-1]) if w in ("-j", "-g")}
            if jumps & ours or (not had_docker0 and "docker0" in words) or subnet in line:
                subprocess.run(
                    ["iptables", "-t", table, "-D", *words[1:]], capture_output=True, check=False
                )
        for chain in ours:
            subprocess.run(["iptables", "-t", table, "-F", chain], capture_output=True)
        for chain in ours:
            subprocess.run(["iptables", "-t", table, "-X", chain], capture_output=True)
    if not had_docker0:
        subprocess.run(["ip", "link", "del", "docker0"], capture_output=True, check=False)


def _docker_chains() -> set[tuple[str, str]]:
    found = set()
    for table in ("filter", "nat", "raw", "mangle"):
        for line in _iptables_save(table):
            if line.startswith(":DOCKER"):
                found.add((table, line[1:].split()[0]))
    return found


# -- measurements ------------------------------------------------------------


def setup_cost(engine: Engine, runs: int) -> dict[str, float]:
    for mode in ("bridge", "none"):  # warm up
        engine.docker("run", "--rm", "--network", mode, "busybox", "true")
    samples: dict[str, list[float]] = {"bridge": [], "none": []}
    for _ in range(runs):  # interleaved, so drift hits both alike
        for mode in samples:
            t0 = time.perf_counter()
            engine.docker("run", "--rm", "--network", mode, "busybox", "true")
            samples[mode].append(time.perf_counter() - t0)
    bridge = statistics.median(samples["bridge"])
    none = statistics.median(samples["none"])
    return {
        "run --rm true, bridge (ms)": bridge * 1000,
        "run --rm true, --network none (ms)": none * 1000,
        "network set-up cost (ms)": (bridge - none) * 1000,
    }


def _server(engine: Engine, mb: int, *publish: str) -> tuple[str, str]:
    """busybox httpd serving a sparse file of ``mb`` MB (zeros, no disk I/O).
    busybox nc loses data when its stdin is a pipe, so HTTP carries the bytes."""
    script = (
        f"mkdir /w; dd if=/dev/zero of=/w/big bs=1M seek={mb} count=0 2>/dev/null;"
        " exec httpd -f -p 5001 -h /w"
    )
    cid = engine.docker("run", "-d", *publish, "busybox", "sh", "-c", script)
    cid = cid.stdout.decode().strip()
    ip = engine.docker("inspect", "-f", "{{.NetworkSettings.IPAddress}}", cid).stdout.decode()
    _wait_listening(engine, cid)
    return cid, ip.strip()


def _wait_listening(engine: Engine, cid: str) -> None:
    pid = engine.docker("inspect", "-f", "{{.State.Pid}}", cid).stdout.decode().strip()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):  # nc listens on :: when the netns has IPv6
            tables = [Path(f"/proc/{pid}/net/{f}").read_text() for f in ("tcp", "tcp6")]
            if any(re.search(r":1389 0+:0000 0A", t) for t in tables):  # 5001, LISTEN
                return
        time.sleep(0.02)
    raise RuntimeError("nc did not listen")


def _client_rate(engine: Engine, ip: str, mb: int) -> float:
    """One transfer container → container, timed inside the client container
    (its own start-up is not counted)."""
    script = (
        "read a b < /proc/uptime; wget -qO /dev/null http://"
        + ip
        + ":5001/big; read c d < /proc/uptime; echo $a $c"
    )
    result = engine.docker("run", "--rm", "busybox", "sh", "-c", script)
    start, end = map(float, result.stdout.split())
    return mb / max(end - start, 0.01)


def _fetch(host: str, port: int, mb: int) -> float:
    request = f"GET /big HTTP/1.0\r\nHost: {host}\r\n\r\n".encode()
    with socket.create_connection((host, port), timeout=30) as conn:
        t0 = time.perf_counter()
        conn.sendall(request)
        got = 0
        while chunk := conn.recv(CHUNK):
            got += len(chunk)
        elapsed = time.perf_counter() - t0
    if got < mb << 20:
        raise RuntimeError(f"short read from {host}:{port}: {got} bytes")
    return mb / elapsed


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("0.0.0.0", 0))
        return s.getsockname()[1]


def _gateway(engine: Engine, cid: str) -> str:
    out = engine.docker("inspect", "-f", "{{.NetworkSettings.Gateway}}", cid)
    return out.stdout.decode().strip()


def throughput(engines: list[Engine], mb: int, reps: int) -> dict[str, dict[str, float]]:
    """Every path, each engine's servers up at once, transfers interleaved
    (the order alternates per repetition) so that the machine's drift hits
    both engines alike; medians of ``reps`` transfers."""
    servers = {}
    for engine in engines:
        port = _free_port()
        cid, ip = _server(engine, mb, "-p", f"{port}:5001")
        servers[engine.name] = (cid, ip, port, _gateway(engine, cid))
    paths = {
        "TCP container->container (MB/s)": lambda e, ip, port, gw: _client_rate(e, ip, mb),
        "TCP host->127.0.0.1:published (MB/s)": lambda e, ip, port, gw: _fetch(
            "127.0.0.1", port, mb
        ),
        "TCP host->gateway:published (MB/s)": lambda e, ip, port, gw: _fetch(gw, port, mb),
    }
    rates: dict[str, dict[str, list[float]]] = {e.name: {k: [] for k in paths} for e in engines}
    try:
        for engine in engines:  # warm-up: the first transfer of each path is slow
            _, ip, port, gw = servers[engine.name]
            for measure in paths.values():
                measure(engine, ip, port, gw)
        for rep in range(reps):
            for label, measure in paths.items():
                order = engines if rep % 2 == 0 else list(reversed(engines))
                for engine in order:
                    _, ip, port, gw = servers[engine.name]
                    rates[engine.name][label].append(measure(engine, ip, port, gw))
    finally:
        for engine in engines:
            engine.docker("rm", "-f", servers[engine.name][0], check=False)
    for name, by_path in rates.items():
        for label, values in by_path.items():
            print(f"{name:9} {label:40} " + " ".join(f"{v:5.0f}" for v in values))
    return {
        name: {label: statistics.median(values) for label, values in by_path.items()}
        for name, by_path in rates.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--reps", type=int, default=9, help="transfers per path and engine")
    parser.add_argument("--mb", type=int, default=2000)
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("bench/net.py needs root")
    rows: dict[str, dict[str, float]] = {}
    engines: list[Engine] = []
    had_docker0 = Path("/sys/class/net/docker0").exists()
    chains_before = _docker_chains()
    policy = _forward_policy()
    try:
        for name in ENGINES:
            engine = start_engine(name, dockerd_network=DOCKERD_NETWORK)
            if engine is None:
                print(f"({name} is not installed: measuring dockyard alone)")
                continue
            engines.append(engine)
            import_busybox(engine)
        for engine in engines:
            rows[engine.name] = setup_cost(engine, args.runs)
        for name, values in throughput(engines, args.mb, args.reps).items():
            rows[name].update(values)
    finally:
        for engine in engines:
            run.stop(engine)
        if any(e.name == "dockerd" for e in engines):
            remove_dockerd_state(chains_before, had_docker0)
            with contextlib.suppress(OSError):
                subprocess.run(["iptables", "-P", "FORWARD", policy], check=False)
    run.print_table(rows, decimals=1)


if __name__ == "__main__":
    main()
