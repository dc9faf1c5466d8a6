"""``docker build`` (classic builder) side by side: our daemon and, when it is
installed, dockerd, in one run, through the same docker CLI.

    .venv/bin/python bench/build.py [--runs N]

Measured: a cold build (``--no-cache``) of a Dockerfile with a COPY of a
20 MB file and 5 RUN steps, and the warm rebuild (every step from the
cache). Targets from issue 5: cold ≤ 1.0× dockerd, warm ≤ 0.5× dockerd.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from run import measure_each

DOCKERFILE = """\
FROM busybox
COPY big.bin /data/big.bin
RUN echo one > /one
RUN echo two > /two
RUN echo three > /three
RUN echo four > /four
RUN echo five > /five
"""


def make_context(path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True)
    (path / "Dockerfile").write_text(DOCKERFILE)
    (path / "big.bin").write_bytes(os.urandom(20 * 1024 * 1024))


def measure(engine, ctx: Path, runs: int) -> dict[str, float]:
    env = {**engine.env, "DOCKER_BUILDKIT": "0"}

    def build(*extra: str) -> float:
        import subprocess

        t0 = time.perf_counter()
        subprocess.run(
            ["docker", "build", "-q", *extra, "-t", "bench:1", str(ctx)],
            env=env,
            capture_output=True,
            check=True,
        )
        return time.perf_counter() - t0

    build("--no-cache")  # warm up the page cache and the daemon's imports
    cold = statistics.median(build("--no-cache") for _ in range(runs))
    warm = statistics.median(build() for _ in range(runs))
    return {"cold build (s)": cold, "warm rebuild (s)": warm}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("bench/build.py needs root")
    work = Path(tempfile.mkdtemp(prefix="bench-build-", dir="/tmp"))
    rows: dict[str, dict[str, float]] = {}
    try:
        ctx = work / "ctx"
        make_context(ctx)
        rows = measure_each(lambda engine: measure(engine, ctx, args.runs))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    keys = list(next(iter(rows.values())))
    print(
        f"{'':24}" + "".join(f"{n:>12}" for n in rows) + ("       ratio" if len(rows) > 1 else "")
    )
    for key in keys:
        line = f"{key:24}" + "".join(f"{rows[n][key]:12.3f}" for n in rows)
        if "dockerd" in rows and "dockyard" in rows:
            line += f"{rows['dockyard'][key] / rows['dockerd'][key]:12.2f}"
        print(line)


if __name__ == "__main__":
    main()
