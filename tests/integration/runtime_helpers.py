"""Helpers for the runtime integration tests: a busybox rootfs and bundles."""

from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path

from dockyard.runtime import spec

BUSYBOX = "/bin/busybox"
APPLETS = (
    "sh",
    "echo",
    "cat",
    "id",
    "ls",
    "sleep",
    "hostname",
    "ps",
    "true",
    "false",
    "grep",
    "wc",
    "touch",
    "tty",
    "test",
    "mount",
)


def busybox_rootfs(path: Path) -> Path:
    """A minimal root filesystem: busybox, a few applets, passwd and group."""
    (path / "bin").mkdir(parents=True)
    shutil.copy2(BUSYBOX, path / "bin" / "busybox")
    for applet in APPLETS:
        os.symlink("busybox", path / "bin" / applet)
    for d in ("etc", "proc", "sys", "dev", "tmp", "root"):
        (path / d).mkdir(exist_ok=True)
    (path / "etc" / "passwd").write_text(
        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
    )
    (path / "etc" / "group").write_text("root:x:0:\nwheel:x:10:root\nnogroup:x:65534:\n")
    return path


def cgroups_path(container_id: str) -> str:
    return f"/dockyard-test-{uuid.uuid4().hex[:8]}/{container_id}"


def write_bundle(bundle: Path, options: spec.SpecOptions) -> dict:
    config = spec.generate(options)
    bundle.mkdir(parents=True, exist_ok=True)
    (bundle / "config.json").write_text(json.dumps(config))
    return config


def run_to_exit(runtime, container_id: str, bundle: Path, tmp: Path) -> tuple[int, str]:
    """Create, start, collect stdout+stderr and the exit status, delete."""
    r, w = os.pipe()
    try:
        pid = runtime.create(container_id, bundle, pid_file=tmp / "pid", stdio=(r, w, w))
    finally:
        os.close(w)
    try:
        runtime.start(container_id)
        out = b""
        while chunk := os.read(r, 65536):
            out += chunk
        _, status = os.waitpid(pid, 0)
    finally:
        os.close(r)
    runtime.delete(container_id)
    return os.waitstatus_to_exitcode(status), out.decode()
