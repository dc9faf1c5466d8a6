"""A ``dockyard registry serve`` subprocess on a free loopback port, an OCI
image layout built by hand (from the host's busybox, or any layer) and
skopeo pushing it, for interop tests and the benchmarks."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.e2e.registry_peers import spawn_our_registry, stop

ROOT = Path(__file__).resolve().parents[2]


def wait_http(url: str, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url, timeout=1).close()
            return
        except urllib.error.HTTPError:
            return  # 401 and friends: it is up
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{url} did not come up")


@contextmanager
def registry_process(root: Path, *extra: str) -> Iterator[tuple[str, subprocess.Popen]]:
    """Yields ("127.0.0.1:PORT", process); kills it on exit."""
    port, proc = spawn_our_registry(root, *extra)
    try:
        wait_http(f"http://127.0.0.1:{port}/v2/")
        yield f"127.0.0.1:{port}", proc
    finally:
        stop(proc)


def _blob(layout: Path, data: bytes) -> dict:
    digest = hashlib.sha256(data).hexdigest()
    (layout / "blobs" / "sha256" / digest).write_bytes(data)
    return {"digest": f"sha256:{digest}", "size": len(data)}


def write_oci_layout(layout: Path, layer_tar: bytes, *, tag: str = "latest",
                     compress: bool = True) -> str:  # fmt: skip
    """An OCI image layout with one single-layer image; returns the manifest digest."""
    (layout / "blobs" / "sha256").mkdir(parents=True)
    diff_id = "sha256:" + hashlib.sha256(layer_tar).hexdigest()
    blob = gzip.compress(layer_tar, compresslevel=1, mtime=0) if compress else layer_tar
    layer = {
        "mediaType": "application/vnd.oci.image.layer.v1.tar" + ("+gzip" if compress else ""),
        **_blob(layout, blob),
    }
    return write_oci_image(layout, layer, diff_id, tag=tag)


def write_oci_image(layout: Path, layer: dict, diff_id: str, *, tag: str) -> str:
    """Config, manifest and index of a single-layer image around a layer blob
    already in ``layout/blobs`` (``layer`` is its descriptor); returns the
    manifest digest."""
    (layout / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": {"Cmd": ["sh"]},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
    }
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            **_blob(layout, json.dumps(config).encode()),
        },
        "layers": [layer],
    }
    desc = _blob(layout, json.dumps(manifest).encode())
    index = {
        "schemaVersion": 2,
        "manifests": [
            {
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                **desc,
                "annotations": {"org.opencontainers.image.ref.name": tag},
            }
        ],
    }
    (layout / "index.json").write_text(json.dumps(index))
    return desc["digest"]


def skopeo_push(layout: Path, ref: str, *, tag: str = "latest") -> None:
    """Copies ``tag`` of an OCI layout to ``ref`` (a plain-HTTP registry) with skopeo."""
    subprocess.run(
        ["skopeo", "copy", "--dest-tls-verify=false", f"oci:{layout}:{tag}", f"docker://{ref}"],
        check=True,
        capture_output=True,
        timeout=600,  # the benchmark pushes hundreds of MB
    )


def busybox_tar() -> bytes:
    return subprocess.run(
        [sys.executable, "-m", "dockyard.image.busybox", "-"],
        check=True,
        capture_output=True,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
    ).stdout
