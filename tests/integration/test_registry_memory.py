"""The registry streams: uploading and serving a large blob keeps its peak
RSS flat, and 50 concurrent blob GETs all succeed."""

from __future__ import annotations

import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

from tests.integration.registry_helpers import registry_process

SIZE = 256 * 1024 * 1024
CHUNK = 4 * 1024 * 1024


def _hwm_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM")


def test_large_blob_streams_and_concurrent_gets(tmp_path):
    piece = os.urandom(CHUNK)
    h = hashlib.sha256()
    for _ in range(SIZE // CHUNK):
        h.update(piece)
    digest = "sha256:" + h.hexdigest()
    with registry_process(tmp_path / "root") as (addr, proc):
        base = f"http://{addr}"
        loc = requests.post(f"{base}/v2/big/blobs/uploads/").headers["Location"]
        r = requests.patch(f"{base}{loc}", data=(piece for _ in range(SIZE // CHUNK)))
        assert r.status_code == 202
        r = requests.put(f"{base}{r.headers['Location']}?digest={digest}")
        assert r.status_code == 201, r.text
        got = hashlib.sha256()
        with requests.get(f"{base}/v2/big/blobs/{digest}", stream=True) as resp:
            for chunk in resp.iter_content(1 << 20):
                got.update(chunk)
        assert "sha256:" + got.hexdigest() == digest

        small = os.urandom(2 * 1024 * 1024)
        small_digest = "sha256:" + hashlib.sha256(small).hexdigest()
        requests.post(f"{base}/v2/big/blobs/uploads/?digest={small_digest}", data=small)

        def fetch(_: int) -> bool:
            resp = requests.get(f"{base}/v2/big/blobs/{small_digest}", timeout=60)
            return resp.status_code == 200 and resp.content == small

        with ThreadPoolExecutor(50) as pool:
            assert all(pool.map(fetch, range(50)))
        assert _hwm_kib(proc.pid) < 100 * 1024
