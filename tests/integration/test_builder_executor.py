"""The executor on a real image service and snapshotter (no container
service: only steps that need no container), checking the images, layers
and history it commits and the cache."""

from __future__ import annotations

import asyncio
import io
import os
import shutil
import tarfile
from pathlib import Path

import pytest

from dockyard import errdefs
from dockyard.builder.context import receive
from dockyard.builder.executor import BuildOptions, build
from dockyard.image.service import ImageService
from dockyard.store.content import ContentStore
from dockyard.store.metadata import Database
from dockyard.store.snapshots import OverlaySnapshotter

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
    pytest.mark.skipif(not shutil.which("busybox"), reason="needs busybox-static"),
]


@pytest.fixture
def env(tmp_path: Path, busybox_tar: bytes):
    db = Database(tmp_path / "metadata.db")
    svc = ImageService(
        db=db,
        content=ContentStore(tmp_path / "content"),
        snapshotter=OverlaySnapshotter(tmp_path / "snapshots"),
    )
    svc.import_image(io.BytesIO(busybox_tar), reference="busybox", changes=['CMD ["sh"]'])
    yield svc, db, tmp_path
    db.close()


def _context(files: dict[str, bytes], links: dict[str, str] | None = None) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type = tarfile.SYMTYPE
            info.linkname = target
            tar.addfile(info)
    return buf.getvalue()


def _build(env, body: bytes, **options) -> tuple[str, list[dict]]:
    svc, db, tmp_path = env
    messages: list[dict] = []

    async def emit(message: dict) -> None:
        messages.append(message)

    async def run() -> str:
        with receive(io.BytesIO(body), tmp_path / "builder") as ctx:
            return await build(
                images=svc,
                containers=None,
                db=db,
                context=ctx,
                options=BuildOptions(**options),
                emit=emit,
            )

    return asyncio.run(run()), messages


def _stream(messages: list[dict]) -> str:
    return "".join(m.get("stream", "") for m in messages)


def test_layers_history_and_cache(env):
    svc = env[0]
    dockerfile = (
        b"FROM busybox\nWORKDIR /app\nWORKDIR /app\nCOPY --chown=1:2 --chmod=600 f.txt .\n"
        b"ENV A=1\nCOPY d /deep/\n"
    )
    body = _context({"Dockerfile": dockerfile, "f.txt": b"hello", "d/x/y.txt": b"y"})
    image_id, messages = _build(env, body, tags=("built:1",))
    assert svc.resolve("built:1") == image_id
    assert {"aux": {"ID": image_id}} in messages
    config = svc.config(image_id)
    entries = [(h.get("created_by"), h.get("empty_layer", False)) for h in config["history"][1:]]
    assert entries[0] == ("/bin/sh -c #(nop) WORKDIR /app", False)  # the dir was created
    assert entries[1] == ("/bin/sh -c #(nop) WORKDIR /app", True)  # it existed
    assert entries[2][0].startswith("/bin/sh -c #(nop) COPY --chown=1:2file:")
    assert entries[2][0].endswith(" in . ")
    assert entries[3] == ("/bin/sh -c #(nop)  ENV A=1", True)
    assert entries[4][0].startswith("/bin/sh -c #(nop) COPY dir:")
    assert config["config"]["WorkingDir"] == "/app"
    assert config["config"]["Env"] == [
        "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "A=1",
    ]
    layers = svc.image_layers(image_id)
    assert len(layers) == 4  # busybox, WORKDIR, COPY, COPY
    copied = svc.snapshotter.upper_dir(layers[2].chain_id) / "app" / "f.txt"
    st = copied.stat()
    assert (st.st_uid, st.st_gid, st.st_mode & 0o777) == (1, 2, 0o600)
    assert copied.read_bytes() == b"hello"
    deep = svc.snapshotter.upper_dir(layers[3].chain_id) / "deep" / "x" / "y.txt"
    assert deep.read_bytes() == b"y"
    # no snapshot is left behind but the layers'
    keys = svc.snapshotter.keys()
    assert all(not k.startswith("build-") for k in keys)

    again, messages = _build(env, body, tags=("built:1",))
    assert again == image_id
    assert _stream(messages).count(" ---> Using cache") == 5
    changed = _context({"Dockerfile": dockerfile, "f.txt": b"other", "d/x/y.txt": b"y"})
    third, messages = _build(env, changed)
    assert third != image_id
    assert _stream(messages).count(" ---> Using cache") == 2


def test_copy_through_outward_symlink_stays_in_context(env):
    body = _context({"Dockerfile": b"FROM busybox\nCOPY link/passwd /x\n"}, {"link": "/etc"})
    with pytest.raises(errdefs.InvalidArgument, match="file not found in build context"):
        _build(env, body)


def test_add_of_malicious_tar_writes_nothing_outside(env):
    svc, _, tmp_path = env
    evil = io.BytesIO()
    with tarfile.open(fileobj=evil, mode="w") as tar:
        link = tarfile.TarInfo("esc")
        link.type = tarfile.SYMTYPE
        link.linkname = str(tmp_path)
        tar.addfile(link)
        info = tarfile.TarInfo("esc/pwned")
        info.size = 1
        tar.addfile(info, io.BytesIO(b"x"))
    body = _context(
        {"Dockerfile": b"FROM busybox\nADD evil.tar /dst/\n", "evil.tar": evil.getvalue()}
    )
    image_id, _ = _build(env, body)
    assert not (tmp_path / "pwned").exists()
    top = svc.image_layers(image_id)[-1]
    assert (svc.snapshotter.upper_dir(top.chain_id) / "dst" / "esc").is_symlink()


def test_parse_errors_come_before_output(env):
    body = _context({"Dockerfile": b"FROM busybox\nFORM x\n"})
    with pytest.raises(errdefs.InvalidArgument, match="line 2: unknown instruction: FORM"):
        _build(env, body)
    body = _context({"Dockerfile": b"FROM busybox\n"})
    with pytest.raises(errdefs.InvalidArgument, match='target stage "x" could not be found'):
        _build(env, body, target="x")


# -- cancellation, FROM --platform, BuildKit-only flags ------------------------


def test_complete_waits_for_the_thread_then_undoes_and_cancels():
    from dockyard.builder.executor import _complete, _thread

    events: list[str] = []

    def slow() -> str:
        import time

        time.sleep(0.2)
        events.append("thread done")
        return "made"

    async def undo(result: str) -> None:
        events.append(f"undo {result}")

    async def main() -> None:
        task = asyncio.ensure_future(_complete(asyncio.to_thread(slow), undo=undo))
        await asyncio.sleep(0.05)
        task.cancel()
        await asyncio.sleep(0)
        task.cancel()  # a second cancellation does not cut the wait short either
        with pytest.raises(asyncio.CancelledError):
            await task
        events.append("cancelled")
        assert await _thread(lambda: 7) == 7

    asyncio.run(main())
    assert events == ["thread done", "undo made", "cancelled"]


def test_cancelled_copy_leaves_no_snapshot_or_mount(env, tmp_path):
    """A build cancelled at any point of a COPY (the client went away)
    raises CancelledError and leaves no build snapshot, mount or context."""
    import contextlib

    svc, db, _ = env
    big = os.urandom(1 << 20) * 64
    body = _context(
        {
            "Dockerfile": b"FROM busybox AS a\nCOPY big /big\nFROM busybox\nCOPY --from=a big /b\n",
            "big": big,
        }
    )
    for delay in (0.0, 0.02, 0.1, 0.3):

        async def run(delay: float) -> None:
            started = asyncio.Event()

            async def emit(message: dict) -> None:
                if "COPY big" in message.get("stream", ""):
                    started.set()

            with receive(io.BytesIO(body), tmp_path / "builder") as ctx:
                task = asyncio.ensure_future(
                    build(
                        images=svc,
                        containers=None,
                        db=db,
                        context=ctx,
                        options=BuildOptions(no_cache=True),
                        emit=emit,
                    )
                )
                await started.wait()
                await asyncio.sleep(delay)
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
                assert task.cancelled() or task.done()

        asyncio.run(run(delay))
        keys = svc.snapshotter.keys()
        assert not [k for k in keys if k.startswith("build-")]
        assert str(tmp_path) not in Path("/proc/self/mountinfo").read_text()
        assert not list((tmp_path / "builder").iterdir())


@pytest.mark.parametrize(
    "platform", ["linux/amd64", "linux/x86_64", "amd64", "linux", "LINUX/AMD64", "linux/amd64/v1"]
)
def test_from_platform_of_the_daemon_is_accepted(platform):
    from dockyard.builder.executor import _check_platform

    _check_platform(platform)


@pytest.mark.parametrize(
    "platform, shown",
    [
        ("linux/arm64", "linux/arm64"),
        ("linux/arm/v7", "linux/arm/v7"),
        ("windows", "windows/amd64"),
    ],
)
def test_from_other_platform_fails_as_a_pull(platform, shown):
    from dockyard.builder.executor import _check_platform

    with pytest.raises(errdefs.NotFound) as info:
        _check_platform(platform)
    assert info.value.message == f"no matching manifest for {shown} in the manifest list entries"
    with pytest.raises(errdefs.InvalidArgument, match="failed to parse platform a/b/c/d"):
        _check_platform("a/b/c/d")


def test_from_platform_in_a_build(env):
    body = _context({"Dockerfile": b"ARG P=linux/amd64\nFROM --platform=$P busybox\nENV A=1\n"})
    _build(env, body)
    body = _context({"Dockerfile": b"FROM --platform=$BUILDPLATFORM busybox\nENV A=1\n"})
    _build(env, body)
    body = _context({"Dockerfile": b"FROM --platform=linux/arm64 busybox\nENV A=1\n"})
    with pytest.raises(errdefs.NotFound, match="no matching manifest for linux/arm64"):
        _build(env, body)


@pytest.mark.parametrize(
    "line, flag",
    [
        ("COPY --parents f /x", "parents"),
        ("COPY --exclude=*.md f /x", "exclude"),
        ("ADD --exclude=*.md f /x", "exclude"),
        ("ADD --checksum=sha256:00 f /x", "checksum"),
        ("ADD --keep-git-dir f /x", "keep-git-dir"),
        ("RUN --network=host true", "network"),
        ("RUN --security=insecure true", "security"),
    ],
)
def test_buildkit_only_flags_fail_in_dockerds_words(env, line, flag):
    body = _context({"Dockerfile": f"FROM busybox\n{line}\n".encode(), "f": b"f"})
    with pytest.raises(errdefs.InvalidArgument) as info:
        _build(env, body)
    assert info.value.message == (
        f"the --{flag} option requires BuildKit. Refer to https://docs.docker.com/go/buildkit/ "
        "to learn how to build images with BuildKit enabled"
    )


def test_buildkit_flags_set_false_are_accepted(env):
    body = _context({"Dockerfile": b"FROM busybox\nCOPY --parents=false f /x\n", "f": b"f"})
    _build(env, body)


def test_copy_link_is_accepted_and_copies(env):
    """--link changes only how BuildKit caches the layer; dockerd ignores it."""
    body = _context({"Dockerfile": b"FROM busybox\nCOPY --link f /x\n", "f": b"f"})
    _build(env, body)


# -- the copying snapshotter (where overlay does not mount) ---------------------


@pytest.fixture
def copy_env(tmp_path: Path, busybox_tar: bytes):
    from dockyard.store.snapshots import CopySnapshotter

    db = Database(tmp_path / "metadata.db")
    svc = ImageService(
        db=db,
        content=ContentStore(tmp_path / "content"),
        snapshotter=CopySnapshotter(tmp_path / "snapshots"),
    )
    svc.import_image(io.BytesIO(busybox_tar), reference="busybox", changes=['CMD ["sh"]'])
    yield svc, db, tmp_path
    db.close()


def test_layers_history_and_cache_on_copy_snapshotter(copy_env):
    test_layers_history_and_cache(copy_env)


def test_malicious_add_on_copy_snapshotter(copy_env):
    test_add_of_malicious_tar_writes_nothing_outside(copy_env)


def test_copy_layers_hold_only_the_steps_changes_on_copy_snapshotter(copy_env):
    """Each step's layer (a diff of two full copies) holds only what the step
    changed: an overwrite is a change, an unchanged file is not repeated."""
    svc = copy_env[0]
    dockerfile = b"FROM busybox\nCOPY a /d/a\nCOPY b /d/b\nCOPY a2 /d/a\n"
    body = _context({"Dockerfile": dockerfile, "a": b"1", "b": b"2", "a2": b"3"})
    image_id, _ = _build(copy_env, body)
    layers = svc.image_layers(image_id)
    assert len(layers) == 4
    names = []
    for layer in layers[1:]:
        with svc.content.open(layer.blob) as blob, tarfile.open(fileobj=blob, mode="r|*") as tar:
            names.append(sorted(m.name for m in tar))
    assert names == [["d", "d/a"], ["d", "d/b"], ["d", "d/a"]]
    top = svc.snapshotter.upper_dir(layers[-1].chain_id)
    assert (top / "d/a").read_bytes() == b"3" and (top / "d/b").read_bytes() == b"2"


def test_cancelled_copy_on_copy_snapshotter(copy_env, tmp_path):
    test_cancelled_copy_leaves_no_snapshot_or_mount(copy_env, tmp_path)
