"""An in-process registry on a free loopback port (its own event loop in a
thread) and a few client helpers, for the registry tests."""

from __future__ import annotations

import asyncio
import hashlib
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import requests
from aiohttp import web

from dockyard.registry.server import Config, Registry


@contextmanager
def serve(config: Config) -> Iterator[tuple[str, Registry]]:
    """Yields (base URL, registry); stops the server on exit."""
    registry = Registry(config)
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    state: dict = {}

    async def start() -> None:
        runner = web.AppRunner(registry.app(), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        state["runner"] = runner
        state["port"] = runner.addresses[0][1]

    def run() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(start())
        ready.set()
        loop.run_forever()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    ready.wait(10)
    try:
        yield f"http://127.0.0.1:{state['port']}", registry
    finally:
        asyncio.run_coroutine_threadsafe(state["runner"].cleanup(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def push_blob(base: str, repo: str, data: bytes, session: requests.Session | None = None) -> str:
    s = session or requests
    digest = digest_of(data)
    r = s.post(f"{base}/v2/{repo}/blobs/uploads/?digest={digest}", data=data)
    assert r.status_code == 201, r.text
    return digest


def image_manifest(config: bytes, layers: list[bytes], **extra: object) -> bytes:
    doc = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": digest_of(config),
            "size": len(config),
        },
        "layers": [
            {
                "mediaType": "application/vnd.oci.image.layer.v1.tar",
                "digest": digest_of(layer),
                "size": len(layer),
            }
            for layer in layers
        ],
        **extra,
    }
    return json.dumps(doc).encode()


def push_image(base: str, repo: str, tag: str, config: bytes, layers: list[bytes],
               session: requests.Session | None = None, **extra: object) -> str:  # fmt: skip
    s = session or requests
    for blob in (config, *layers):
        push_blob(base, repo, blob, s)
    body = image_manifest(config, layers, **extra)
    r = s.put(
        f"{base}/v2/{repo}/manifests/{tag}",
        data=body,
        headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"},
    )
    assert r.status_code == 201, r.text
    return r.headers["Docker-Content-Digest"]


def files_under(path: Path) -> set[Path]:
    return {p for p in path.rglob("*") if p.is_file()}
