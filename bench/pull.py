"""Engine pull of a 200 MB single-layer image (random data) from a local
Debian ``docker-registry``: our daemon vs dockerd, in one run, through the
same docker CLI. Prints the median times and the ratio (target ≤ 1.0).

    .venv/bin/python bench/pull.py [--size-mb 200] [--runs 3]

Each run pulls into an empty engine (the image is removed, blobs included,
between runs).
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from run import measure_each
from tests.integration.registry_helpers import skopeo_push, write_oci_image


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_registry(base: Path) -> tuple[subprocess.Popen, str]:
    host = f"127.0.0.1:{_free_port()}"
    (base / "config.yml").write_text(
        "version: 0.1\nlog: {level: error}\n"
        f"storage: {{filesystem: {{rootdirectory: {base / 'data'}}}}}\n"
        f"http: {{addr: {host}}}\n"
    )
    proc = subprocess.Popen(
        ["docker-registry", "serve", str(base / "config.yml")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    port = int(host.rsplit(":", 1)[1])
    for _ in range(200):
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return proc, host
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("docker-registry did not start")


def seed(base: Path, ref: str, size_mb: int) -> None:
    """An OCI layout with one gzip layer of random data, copied by skopeo."""
    layout = base / "layout"
    blobs = layout / "blobs" / "sha256"
    blobs.mkdir(parents=True)
    plain, packed = base / "layer.tar", base / "layer.tar.gz"
    with tarfile.open(plain, "w") as tar:
        info = tarfile.TarInfo("random.bin")
        info.size = size_mb << 20
        tar.addfile(info, _Random(info.size))  # type: ignore[arg-type]
    diff_id = _sha(plain)
    with open(plain, "rb") as src, gzip.GzipFile(packed, "wb", 1, mtime=0) as dst:
        shutil.copyfileobj(src, dst, 1 << 20)
    plain.unlink()
    layer_digest = _sha(packed)
    layer_size = packed.stat().st_size
    packed.rename(blobs / layer_digest[7:])

    layer = {
        "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
        "digest": layer_digest,
        "size": layer_size,
    }
    write_oci_image(layout, layer, diff_id, tag="1")
    skopeo_push(layout, ref, tag="1")
    shutil.rmtree(layout)


class _Random:
    """``size`` bytes of random data, read in whatever pieces tarfile asks."""

    def __init__(self, size: int) -> None:
        self.left = size

    def read(self, size: int = -1) -> bytes:
        size = self.left if size < 0 else min(size, self.left)
        self.left -= size
        return os.urandom(size)


def _sha(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return "sha256:" + h.hexdigest()


def measure(engine, ref: str, runs: int) -> float:
    samples = []
    for _ in range(runs):
        t0 = time.perf_counter()
        engine.docker("pull", "-q", ref)
        samples.append(time.perf_counter() - t0)
        engine.docker("rmi", ref)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size-mb", type=int, default=200)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("bench/pull.py needs root")
    work = Path(tempfile.mkdtemp(prefix="bench-pull-", dir="/tmp"))
    registry, host = start_registry(work)
    results: dict[str, float] = {}
    try:
        ref = f"{host}/bench/big:1"
        t0 = time.perf_counter()
        seed(work, ref, args.size_mb)
        print(f"seeded {args.size_mb} MB in {time.perf_counter() - t0:.1f}s")
        results = measure_each(lambda engine: measure(engine, ref, args.runs), busybox=False)
    finally:
        registry.terminate()
        registry.wait(10)
        shutil.rmtree(work, ignore_errors=True)
    ours, theirs = results.get("dockyard"), results.get("dockerd")
    title = f"pull {args.size_mb} MB (s)"
    print(f"{title:24} {'dockyard':>10} {'dockerd':>10} {'ratio':>7}")
    ratio = f"{ours / theirs:7.2f}" if ours and theirs else ""
    print(f"{'median of ' + str(args.runs):24} {ours or 0:10.2f} {theirs or 0:10.2f} {ratio}")


if __name__ == "__main__":
    main()
