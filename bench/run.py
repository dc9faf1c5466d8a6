"""Side-by-side benchmarks: our daemon and, when it is installed, dockerd, in
one run, through the same docker CLI. Prints a table with the ratios.

    .venv/bin/python bench/run.py [--runs N] [--only NAME]

Measured: `docker run --rm busybox true` latency, `docker ps -a` with 100
containers, `dockyard version` and `dockyard ps -a` wall time, daemon idle
RSS, and RSS added per idle running container.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

VENV_BIN = Path(sys.executable).parent
ENGINES = ("dockyard", "dockerd")  # the order every benchmark measures them in
T = TypeVar("T")


@dataclass
class Engine:
    name: str
    base: Path
    host: str
    proc: subprocess.Popen
    pids: callable  # returns the pids whose RSS counts as "the daemon"

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "DOCKER_HOST": self.host, "DOCKER_CONFIG": str(self.base / "cfg")}

    def docker(self, *args: str, check: bool = True, input: bytes | None = None):
        return subprocess.run(
            ["docker", *args], env=self.env, capture_output=True, check=check, input=input
        )


def _wait_ready(engine: Engine, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if engine.docker("version", check=False).returncode == 0:
            return
        time.sleep(0.1)
    raise RuntimeError(f"{engine.name} did not start")


def start_dockyard(base: Path) -> Engine:
    sock = base / "run" / "d.sock"
    args = [
        str(VENV_BIN / "dockyardd"),
        "-H",
        f"unix://{sock}",
        "--data-root",
        str(base / "data"),
        "--exec-root",
        str(base / "run"),
        "--cgroup-parent",
        f"dockyard-bench-{os.getpid()}",
        "--config-file",
        str(base / "none.json"),
        "--bridge",
        "dybench0",
        "--bip",
        "10.250.77.1/24",
    ]
    (base / "cleanup-args").write_text("\n".join([*args, "--cleanup"]))
    proc = subprocess.Popen(
        args,
        stdout=open(base / "daemon.log", "wb"),  # noqa: SIM115 - the daemon owns it
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )

    def pids() -> list[int]:
        # the daemon and its shim launcher
        children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
        return [proc.pid, *map(int, children)]

    engine = Engine("dockyard", base, f"unix://{sock}", proc, pids)
    _wait_ready(engine)
    return engine


DOCKERD_NETWORK = ("--bridge=none", "--iptables=false")


def start_dockerd(base: Path, network_flags: tuple[str, ...] = DOCKERD_NETWORK) -> Engine | None:
    if shutil.which("dockerd") is None:
        return None
    sock = base / "docker.sock"
    proc = subprocess.Popen(
        [
            "dockerd",
            "-H",
            f"unix://{sock}",
            "--data-root",
            str(base / "data"),
            "--exec-root",
            str(base / "exec"),
            "--pidfile",
            str(base / "docker.pid"),
            *network_flags,
            "--ip6tables=false",
            "--containerd-namespace",
            f"bench{os.getpid()}",
            "--config-file",
            str(base / "none.json"),
        ],
        stdout=open(base / "daemon.log", "wb"),  # noqa: SIM115 - the daemon owns it
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )

    def pids() -> list[int]:
        out = subprocess.run(["pgrep", "-f", str(base)], capture_output=True, text=True).stdout
        return [int(p) for p in out.split()]

    engine = Engine("dockerd", base, f"unix://{sock}", proc, pids)
    _wait_ready(engine)
    return engine


def stop(engine: Engine) -> None:
    ids = engine.docker("ps", "-aq", check=False).stdout.split()
    if ids:
        engine.docker("rm", "-f", *[i.decode() for i in ids], check=False)
    engine.proc.send_signal(signal.SIGTERM)
    try:
        engine.proc.wait(30)
        cleanup = engine.base / "cleanup-args"
        if cleanup.exists():  # our daemon: remove its bridge and firewall rules
            subprocess.run(cleanup.read_text().split("\n"), capture_output=True, check=False)
    except subprocess.TimeoutExpired:
        engine.proc.kill()
    # leftovers (shims, containerd, proxies) carry the engine's base in their
    # command line; by pid, so that nothing else that mentions it is hit
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            with contextlib.suppress(OSError):
                if str(engine.base).encode() in (entry / "cmdline").read_bytes():
                    os.kill(int(entry.name), signal.SIGKILL)
    time.sleep(0.3)
    for line in reversed(Path("/proc/self/mountinfo").read_text().splitlines()):
        mountpoint = line.split()[4]
        if mountpoint.startswith(str(engine.base)):
            subprocess.run(["umount", "-l", mountpoint], check=False)
    shutil.rmtree(engine.base, ignore_errors=True)
    for parent in Path("/sys/fs/cgroup").glob(f"*/dockyard-bench-{os.getpid()}"):
        with contextlib.suppress(OSError):
            parent.rmdir()


def start_engine(
    name: str, prefix: str = "bench", dockerd_network: tuple[str, ...] = DOCKERD_NETWORK
) -> Engine | None:
    """``name`` ("dockyard" or "dockerd") started on a fresh directory under
    /tmp (``stop`` removes it), or None when it is not installed."""
    base = Path(tempfile.mkdtemp(prefix=f"{prefix}-{name[:4]}-", dir="/tmp"))
    (base / "none.json").write_text("{}")
    if name == "dockyard":
        engine: Engine | None = start_dockyard(base)
    else:
        engine = start_dockerd(base, dockerd_network)
    if engine is None:
        shutil.rmtree(base, ignore_errors=True)
    return engine


def measure_each(measure: Callable[[Engine], T], *, busybox: bool = True) -> dict[str, T]:
    """``measure`` on each installed engine in turn, each started fresh (with
    busybox imported unless told otherwise) and stopped after; by engine name."""
    results: dict[str, T] = {}
    for name in ENGINES:
        engine = start_engine(name)
        if engine is None:
            print(f"({name} is not installed: measuring dockyard alone)")
            continue
        try:
            if busybox:
                import_busybox(engine)
            results[name] = measure(engine)
        finally:
            stop(engine)
    return results


def import_busybox(engine: Engine) -> None:
    tar = subprocess.run(
        [sys.executable, "-m", "dockyard.image.busybox", "-"], capture_output=True, check=True
    ).stdout
    engine.docker("import", "-c", 'CMD ["sh"]', "-", "busybox:latest", input=tar)


def timed(fn, runs: int) -> float:
    samples = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
    return statistics.median(samples)


def rss_mb(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total / 1024


def bench_engine(engine: Engine, runs: int) -> dict[str, float]:
    results: dict[str, float] = {}
    engine.docker("run", "--rm", "busybox", "true")  # warm up
    results["run --rm true (s)"] = timed(
        lambda: engine.docker("run", "--rm", "busybox", "true"), runs
    )
    time.sleep(1)
    results["idle RSS (MB)"] = rss_mb(engine.pids())

    before = _engine_rss(engine)
    ids = [
        engine.docker("run", "-d", "busybox", "sleep", "1000").stdout.decode().strip()
        for _ in range(10)
    ]
    time.sleep(1)
    after = _engine_rss(engine)
    results["RSS per running container (MB)"] = (after - before) / len(ids)
    engine.docker("rm", "-f", *ids)

    for _ in range(100):
        engine.docker("create", "busybox", "true")
    results["docker ps -a, 100 containers (s)"] = timed(lambda: engine.docker("ps", "-a"), runs)
    if engine.name == "dockyard":
        dockyard = str(VENV_BIN / "dockyard")
        results["dockyard version (s)"] = timed(
            lambda: subprocess.run(
                [dockyard, "version"], env=engine.env, capture_output=True, check=True
            ),
            runs,
        )
        results["dockyard ps -a, 100 containers (s)"] = timed(
            lambda: subprocess.run(
                [dockyard, "ps", "-a"], env=engine.env, capture_output=True, check=True
            ),
            runs,
        )
    ids = engine.docker("ps", "-aq").stdout.decode().split()
    engine.docker("rm", *ids, check=False)
    return results


def _engine_rss(engine: Engine) -> float:
    """RSS of every process on the machine but the containers' own payload
    (``sleep``): shims are detached from their daemons, so only a machine-wide
    sum counts them for both engines alike."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                comm = (entry / "comm").read_text().strip()
            except OSError:
                continue
            if comm != "sleep":
                pids.append(int(entry.name))
    return rss_mb(pids)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("bench/run.py needs root")
    rows = measure_each(lambda engine: bench_engine(engine, args.runs))
    print_table(rows, decimals=3)


def print_table(rows: dict[str, dict[str, float]], *, decimals: int) -> None:
    """Our figures, dockerd's (when measured) and the ratio, one metric a line."""
    print(f"{'metric':40} {'dockyard':>12} {'dockerd':>12} {'ratio':>8}")
    for metric in rows["dockyard"]:
        ours = rows["dockyard"][metric]
        theirs = rows.get("dockerd", {}).get(metric)
        ratio = f"{ours / theirs:8.2f}" if theirs else f"{'':8}"
        shown = f"{theirs:12.{decimals}f}" if theirs is not None else f"{'-':>12}"
        print(f"{metric:40} {ours:12.{decimals}f} {shown} {ratio}")


if __name__ == "__main__":
    main()
