"""Registry throughput and memory: our registry vs Debian's docker-registry
(the CNCF distribution registry), side by side in one run, same client.

    .venv/bin/python bench/registry.py [--size-mb 200] [--big-mb 1024] [--runs 3]

Measured: skopeo push and pull of a single-layer image whose layer is
``--size-mb`` of random (incompressible) data, from an OCI layout to each
registry and back (median of ``--runs``, a new layer each run); then our registry's peak RSS
(VmHWM) after uploading and serving a ``--big-mb`` blob, and 50 concurrent
blob GETs. The "dockerd" column of the table is docker-registry.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import run
from tests.e2e.registry_peers import free_port
from tests.integration.registry_helpers import (
    registry_process,
    wait_http,
    write_oci_layout,
)


def _random_tar(size: int) -> bytes:
    """A tar with one file of random bytes (incompressible, so gzip changes nothing)."""
    import io
    import tarfile

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo("data.bin")
        info.size = size
        tar.addfile(info, io.BytesIO(os.urandom(size)))
    return buf.getvalue()


def _skopeo(*args: str) -> float:
    t0 = time.perf_counter()
    subprocess.run(["skopeo", "--insecure-policy", *args], check=True, capture_output=True)
    return time.perf_counter() - t0


def _push_pull(addr: str, layouts: list[Path], work: Path) -> dict[str, float]:
    # a fresh layer per run: skopeo remembers where it saw a blob and would
    # mount it instead of uploading it again
    push, pull = [], []
    for i, layout in enumerate(layouts):
        ref = f"docker://{addr}/bench/img{i}:1"
        push.append(_skopeo("copy", "--dest-tls-verify=false", f"oci:{layout}:1", ref))
        dest = work / f"pull-{addr.replace(':', '_')}-{i}"
        pull.append(_skopeo("copy", "--src-tls-verify=false", ref, f"oci:{dest}:1"))
        shutil.rmtree(dest)
    return {"skopeo push (s)": statistics.median(push), "skopeo pull (s)": statistics.median(pull)}


def _start_docker_registry(base: Path) -> tuple[str, subprocess.Popen]:
    port = free_port()
    config = base / "config.yml"
    config.write_text(
        "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\n"
        f"storage:\n  filesystem:\n    rootdirectory: {base / 'data'}\n"
        f"http:\n  addr: 127.0.0.1:{port}\n"
    )
    proc = subprocess.Popen(
        ["docker-registry", "serve", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    wait_http(f"http://127.0.0.1:{port}/v2/")
    return f"127.0.0.1:{port}", proc


def _hwm_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _memory(addr: str, pid: int, big_mb: int) -> dict[str, float]:
    import requests

    base = f"http://{addr}"
    piece = os.urandom(4 << 20)
    count = big_mb // 4
    h = hashlib.sha256()
    for _ in range(count):
        h.update(piece)
    digest = "sha256:" + h.hexdigest()
    t0 = time.perf_counter()
    loc = requests.post(f"{base}/v2/mem/blobs/uploads/").headers["Location"]
    r = requests.patch(f"{base}{loc}", data=(piece for _ in range(count)))
    requests.put(f"{base}{r.headers['Location']}?digest={digest}").raise_for_status()
    upload = time.perf_counter() - t0
    t0 = time.perf_counter()
    with requests.get(f"{base}/v2/mem/blobs/{digest}", stream=True) as resp:
        for _ in resp.iter_content(1 << 20):
            pass
    download = time.perf_counter() - t0
    small = os.urandom(4 << 20)
    small_digest = "sha256:" + hashlib.sha256(small).hexdigest()
    requests.post(f"{base}/v2/mem/blobs/uploads/?digest={small_digest}", data=small)

    def fetch(_: int) -> bool:
        return requests.get(f"{base}/v2/mem/blobs/{small_digest}").content == small

    with ThreadPoolExecutor(50) as pool:
        ok = sum(pool.map(fetch, range(50)))
    return {
        f"{big_mb} MB blob upload (s)": upload,
        f"{big_mb} MB blob download (s)": download,
        "peak RSS after big blob (MB)": _hwm_mb(pid),
        "50 concurrent GETs succeeded": float(ok),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=200)
    parser.add_argument("--big-mb", type=int, default=1024)
    parser.add_argument("--runs", type=int, default=3)
    opts = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="dy-regbench-") as tmp:
        work = Path(tmp)
        layouts = [work / f"layout{i}" for i in range(opts.runs)]
        for layout in layouts:
            write_oci_layout(layout, _random_tar(opts.size_mb << 20), tag="1", compress=False)
        rows: dict[str, dict[str, float]] = {"dockyard": {}, "dockerd": {}}
        with registry_process(work / "ours") as (addr, proc):
            rows["dockyard"] = _push_pull(addr, layouts, work)
            memory = _memory(addr, proc.pid, opts.big_mb)
        if shutil.which("docker-registry"):
            (work / "theirs").mkdir()
            addr, theirs = _start_docker_registry(work / "theirs")
            try:
                rows["dockerd"] = _push_pull(addr, layouts, work)
            finally:
                theirs.send_signal(signal.SIGTERM)
                theirs.wait(10)
        print(f"single-layer image of {opts.size_mb} MB, skopeo, median of {opts.runs}")
        print("(column 'dockerd' = Debian's docker-registry)")
        run.print_table(rows, decimals=2)
        print()
        run.print_table({"dockyard": memory}, decimals=1)


if __name__ == "__main__":
    main()
