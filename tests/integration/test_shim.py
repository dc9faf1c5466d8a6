"""The shim and its client against real runtimes (runc, and the builtin one when it works)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from dockyard import errdefs
from dockyard.container.logs import read_logs
from dockyard.runtime.shim_client import Shim, ShimConfig

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")

APPLETS = ["sh", "echo", "cat", "sleep", "stty", "seq", "true", "yes", "head"]
LOG_LINE = re.compile(
    rb'^\{"log":".*","stream":"(stdout|stderr)","time":"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?Z"\}$'
)


def _builtin_works() -> bool:
    try:
        from dockyard.runtime.builtin import BuiltinRuntime  # noqa: F401
    except Exception:
        return False
    return True


RUNTIMES = [
    pytest.param("runc", id="runc"),
    pytest.param(
        None,
        id="builtin",
        marks=pytest.mark.skipif(not _builtin_works(), reason="builtin runtime missing"),
    ),
]


@pytest.fixture(scope="module")
def base_spec(tmp_path_factory: pytest.TempPathFactory) -> dict:
    where = tmp_path_factory.mktemp("spec")
    subprocess.run(["runc", "spec"], cwd=where, check=True)
    return json.loads((where / "config.json").read_text())


@pytest.fixture(scope="module")
def rootfs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("rootfs")
    (root / "bin").mkdir()
    for name in ("proc", "dev", "sys", "tmp", "etc"):
        (root / name).mkdir()
    shutil.copy("/bin/busybox", root / "bin" / "busybox")
    for applet in APPLETS:
        (root / "bin" / applet).symlink_to("busybox")
    return root


class Env:
    """One container's bundle, state dir and runtime root inside tmp_path."""

    def __init__(self, tmp_path: Path, base_spec: dict, rootfs: Path, runtime: str | None):
        self.tmp = tmp_path
        self.base_spec = base_spec
        self.rootfs = rootfs
        self.runtime = runtime
        self.ids: list[str] = []
        self.cgroups: list[str] = []

    def config(self, args: list[str], *, tty: bool = False, **options: object) -> ShimConfig:
        cid = uuid.uuid4().hex
        self.ids.append(cid)
        bundle = self.tmp / f"bundle-{cid[:8]}"
        bundle.mkdir()
        spec = json.loads(json.dumps(self.base_spec))
        spec["process"]["args"] = args
        spec["process"]["terminal"] = tty
        spec["process"]["capabilities"].pop("ambient", None)  # as Docker's specs
        spec["root"] = {"path": str(self.rootfs), "readonly": False}
        cgroup = f"/dockyard-shim-test-{cid[:12]}"
        self.cgroups.append(cgroup)
        spec["linux"]["cgroupsPath"] = cgroup
        (bundle / "config.json").write_text(json.dumps(spec))
        state = self.tmp / f"state-{cid[:8]}"
        config = ShimConfig(
            container_id=cid,
            bundle=str(bundle),
            state_dir=str(state),
            log_path=str(self.tmp / f"{cid[:8]}-json.log"),
            runtime=self.runtime,
            runtime_root=str(self.tmp / "rt"),
            tty=tty,
        )
        return replace(config, **options)  # type: ignore[arg-type]

    def cleanup(self) -> list[str]:
        """Kill what is left; return what was left (tests assert it is nothing)."""
        leftovers = []
        for cid in self.ids:
            state = self.tmp / f"state-{cid[:8]}"
            for name in ("shim.pid", "init.pid"):
                pid = _read_pid(state / name)
                if pid and _alive(pid) and not _wait_gone(pid, 3.0):
                    leftovers.append(f"{name} {pid}")
                    os.kill(pid, signal.SIGKILL)
            if self.runtime is not None:
                runc = ["runc", "--root", str(self.tmp / "rt")]
                if subprocess.run([*runc, "state", cid], capture_output=True).returncode == 0:
                    leftovers.append(f"runc container {cid}")
                    subprocess.run([*runc, "delete", "--force", cid], capture_output=True)
        for cgroup in self.cgroups:
            for controller in Path("/sys/fs/cgroup").iterdir():
                path = controller / cgroup.lstrip("/")
                if path.is_dir():
                    leftovers.append(str(path))
                    _rmdir_retry(path)
        return leftovers


def _read_pid(path: Path) -> int:
    try:
        return int(path.read_text())
    except (OSError, ValueError):
        return 0


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while _alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def _rmdir_retry(path: Path) -> None:
    for _ in range(50):
        try:
            path.rmdir()
            return
        except OSError:
            time.sleep(0.05)


@pytest.fixture(params=RUNTIMES)
def env(
    request: pytest.FixtureRequest, tmp_path: Path, base_spec: dict, rootfs: Path
) -> Iterator[Env]:
    e = Env(tmp_path, base_spec, rootfs, request.param)
    yield e
    assert e.cleanup() == []


async def _collect(attachment) -> dict[int, bytes]:  # type: ignore[no-untyped-def]
    out: dict[int, bytes] = {1: b"", 2: b""}
    while (chunk := await attachment.read()) is not None:
        out[chunk[0]] += chunk[1]
    await attachment.close()
    return out


async def _gone(pid: int, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _alive(pid):
            return True
        await asyncio.sleep(0.02)
    return False


def test_attach_start_output_exit_code_and_log(env: Env) -> None:
    config = env.config(["sh", "-c", "echo out; echo err >&2; printf partial; exit 3"])

    async def scenario() -> None:
        shim = await Shim.spawn(config)
        assert shim.pid > 0 and shim.shim_pid > 0
        attachment = await shim.attach(stdin=False, stdout=True, stderr=True)
        await shim.start()
        out = await _collect(attachment)
        assert out == {1: b"out\npartial", 2: b"err\n"}
        status = await shim.wait()
        assert status.exit_code == 3
        assert not status.oom_killed
        assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$", status.exited_at)
        assert await _gone(shim.shim_pid)

    asyncio.run(scenario())
    raw = Path(config.log_path).read_bytes().splitlines()
    assert all(LOG_LINE.match(line) for line in raw), raw
    entries = sorted((json.loads(line)["stream"], json.loads(line)["log"]) for line in raw)
    assert entries == [("stderr", "err\n"), ("stdout", "out\n"), ("stdout", "partial")]
    state = Path(config.state_dir)
    assert json.loads((state / "exit.json").read_text())["exit_code"] == 3
    assert not (state / "shim.sock").exists()


def test_stdin_once_closes_container_stdin(env: Env) -> None:
    config = env.config(["cat"], open_stdin=True, stdin_once=True)

    async def scenario() -> None:
        shim = await Shim.spawn(config)
        attachment = await shim.attach(stdin=True, stdout=True, stderr=True)
        await shim.start()
        await attachment.write(b"hello\n")
        await attachment.write(b"world\n")
        await attachment.close_stdin()
        out = await _collect(attachment)
        assert out[1] == b"hello\nworld\n"
        assert (await shim.wait()).exit_code == 0

    asyncio.run(scenario())


def test_kill_and_wait_after_shim_is_gone(env: Env) -> None:
    config = env.config(["sleep", "100"])

    async def scenario() -> None:
        shim = await Shim.spawn(config)
        await shim.start()
        assert (await shim.state())["status"] == "running"
        waiters = [asyncio.ensure_future(shim.wait()) for _ in range(3)]
        await shim.kill(signal.SIGKILL)
        statuses = await asyncio.gather(*waiters)
        assert {s.exit_code for s in statuses} == {137}
        assert await _gone(shim.shim_pid)
        again = await shim.wait()  # answered from exit.json
        assert again == statuses[0]
        assert Shim.read_exit(Path(config.state_dir)) == statuses[0]
        assert await Shim.connect(Path(config.state_dir)) is None
        with pytest.raises(errdefs.Conflict):
            await shim.kill(signal.SIGTERM)

    asyncio.run(scenario())


def test_connect_from_a_fresh_client(env: Env) -> None:
    config = env.config(["sh", "-c", "while true; do echo tick; sleep 0.05; done"])

    async def first() -> int:
        shim = await Shim.spawn(config)
        await shim.start()
        return shim.pid

    pid = asyncio.run(first())  # the "daemon" goes away; the shim stays

    async def second() -> None:
        shim = await Shim.connect(Path(config.state_dir))
        assert shim is not None and shim.pid == pid
        attachment = await shim.attach(stdin=False, stdout=True, stderr=False)
        chunk = await attachment.read()
        assert chunk is not None and chunk[0] == 1 and b"tick" in chunk[1]
        await shim.kill(signal.SIGKILL)
        await _collect(attachment)
        assert (await shim.wait()).exit_code == 137
        assert await _gone(shim.shim_pid)

    asyncio.run(second())


def test_command_not_found(env: Env) -> None:
    config = env.config(["/no/such/command"])

    async def scenario() -> None:
        with pytest.raises(errdefs.RuntimeFailure) as info:
            await Shim.spawn(config)
        assert info.value.exit_code == 127
        assert not (Path(config.state_dir) / "shim.sock").exists()
        assert await Shim.connect(Path(config.state_dir)) is None

    asyncio.run(scenario())
    assert not _processes_mentioning(config.state_dir)


def _processes_mentioning(text: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if text.encode() in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                pass
    return found


def test_log_rotation(env: Env) -> None:
    config = env.config(["seq", "1", "3000"], log_max_size=4096, log_max_file=3)

    async def scenario() -> list[str]:
        shim = await Shim.spawn(config)
        await shim.start()
        assert (await shim.wait()).exit_code == 0
        lines = []
        async for entry in read_logs(Path(config.log_path)):
            lines.append(entry.data.decode())
        return lines

    lines = asyncio.run(scenario())
    path = Path(config.log_path)
    assert path.exists() and Path(f"{path}.1").exists() and Path(f"{path}.2").exists()
    assert not Path(f"{path}.3").exists()
    for name in (path, Path(f"{path}.1")):
        assert name.stat().st_size < 4096 + 200
    numbers = [int(line) for line in lines]
    assert numbers[-1] == 3000
    assert numbers == list(range(numbers[0], 3001))


def test_tty_and_resize(env: Env) -> None:
    config = env.config(["sh", "-c", "stty size; echo done"], tty=True, open_stdin=True)

    async def scenario() -> None:
        shim = await Shim.spawn(config)
        attachment = await shim.attach(stdin=True, stdout=True, stderr=True)
        await shim.resize(30, 100)
        await shim.start()
        out = await _collect(attachment)
        assert out[1] == b"30 100\r\ndone\r\n"
        assert (await shim.wait()).exit_code == 0

    asyncio.run(scenario())
    entries = [json.loads(line) for line in Path(config.log_path).read_text().splitlines()]
    assert [e["log"] for e in entries] == ["30 100\r\n", "done\r\n"]
    assert {e["stream"] for e in entries} == {"stdout"}


def test_slow_attach_client_does_not_block_output(env: Env) -> None:
    config = env.config(
        ["sh", "-c", "yes 0123456789012345678901234567890123456789 | head -c 20000000"]
    )

    async def scenario() -> None:
        shim = await Shim.spawn(config)
        attachment = await shim.attach(stdin=False, stdout=True, stderr=True)  # never read
        await shim.start()
        status = await asyncio.wait_for(shim.wait(), 30)
        assert status.exit_code == 0
        await attachment.close()

    asyncio.run(scenario())
    size = Path(config.log_path).stat().st_size
    assert size > 20_000_000
