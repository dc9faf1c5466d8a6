"""The container service: create, start, stop, kill, wait, remove, rename,
list, inspect and prune containers, and keep their records in step with
their shims.

All state changes go through ``state.transition`` and are saved in one
transaction each. A monitor task per running container awaits its shim's
exit status; after a daemon restart ``restore`` reconnects to the shims that
are still running (live restore) and settles the ones that exited meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import secrets
import shutil
import signal as signals
import sqlite3
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

from dockyard import errdefs
from dockyard.container import files, names
from dockyard.container.model import Container, State, now_rfc3339, parse_rfc3339
from dockyard.container.state import Event, Status, transition
from dockyard.daemon.config import DaemonConfig
from dockyard.runtime.shim_client import ExitStatus, Launcher, Shim, ShimConfig
from dockyard.store.metadata import Database

log = logging.getLogger(__name__)

DEFAULT_STOP_TIMEOUT = 10


def parse_signal(value: str | int | None, default: int = signals.SIGKILL) -> int:
    """A signal given as a number, "KILL" or "SIGKILL"; Docker's error otherwise."""
    if value in (None, ""):
        return default
    text = str(value).strip()
    if text.isdigit():
        number = int(text)
        if 0 < number < 65:
            return number
    else:
        name = text.upper()
        name = name if name.startswith("SIG") else "SIG" + name
        if name in signals.Signals.__members__:
            return int(signals.Signals[name])
    raise errdefs.InvalidArgument(f"Invalid signal: {value}")


@dataclass
class _Runtime:
    """What the service holds for a container while it has a shim."""

    shim: Shim
    monitor: asyncio.Task | None = None
    stopping: bool = False


@dataclass
class _Waiters:
    exit: list[asyncio.Future] = field(default_factory=list)
    removed: list[asyncio.Future] = field(default_factory=list)
    attach: list[tuple[dict, asyncio.Future]] = field(default_factory=list)


def _new_id() -> str:
    while True:
        cid = secrets.token_hex(32)
        # Docker avoids all-digit short IDs: they read as numbers in scripts.
        if not cid[:12].isdigit():
            return cid


def _merge_env(image_env: list[str], env: list[str]) -> list[str]:
    merged: dict[str, str] = {}
    for entry in [*image_env, *env]:
        key = entry.split("=", 1)[0]
        merged[key] = entry
    return list(merged.values())


class ContainerService:
    def __init__(
        self,
        *,
        config: DaemonConfig,
        db: Database,
        images,
        snapshotter,
        launcher: Launcher | None = None,
        networks=None,
    ) -> None:
        self.config = config
        self.launcher = launcher
        self.networks = networks  # network.service.NetworkService, or None: loopback only
        self.db = db
        self.images = images
        self.snapshotter = snapshotter
        self._running: dict[str, _Runtime] = {}
        self._waiters: dict[str, _Waiters] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._tasks: set[asyncio.Task] = set()
        self._restarts: dict[str, asyncio.Task] = {}  # pending policy restarts
        self._stopped_by_user: set[str] = set()  # no policy restarts until started again

    def _cancel_restart(self, cid: str) -> bool:
        """Cancel a restart the policy scheduled; True when one was pending."""
        task = self._restarts.pop(cid, None)
        if task is None or task.done():
            return False
        task.cancel()
        return True

    # -- lookup --------------------------------------------------------------
    def _load(self, cid: str) -> Container | None:
        row = self.db.query_one("SELECT record FROM containers WHERE id = ?", (cid,))
        return Container.from_json(row["record"]) if row else None

    def get(self, ref: str) -> Container:
        """By full ID, name (with or without "/"), or unique ID prefix."""
        if not ref:
            raise errdefs.NotFound("No such container: ")
        row = self.db.query_one(
            "SELECT record FROM containers WHERE id = ? OR name = ?",
            (ref, ref if ref.startswith("/") else "/" + ref),
        )
        if row is None and re.fullmatch(r"[0-9a-f]{1,63}", ref):
            rows = self.db.query(
                "SELECT record FROM containers WHERE id LIKE ? LIMIT 2", (ref + "%",)
            )
            if len(rows) > 1:
                raise errdefs.InvalidArgument(f"Multiple IDs found with provided prefix: {ref}")
            row = rows[0] if rows else None
        if row is None:
            raise errdefs.NotFound(f"No such container: {ref}")
        return Container.from_json(row["record"])

    def all(self) -> list[Container]:
        rows = self.db.query("SELECT record FROM containers ORDER BY created DESC, rowid DESC")
        return [Container.from_json(r["record"]) for r in rows]

    def _save(self, c: Container) -> None:
        with self.db.tx() as cur:
            cur.execute(
                "UPDATE containers SET record = ?, name = ? WHERE id = ?",
                (c.to_json(), c.name, c.id),
            )

    def _lock(self, cid: str) -> asyncio.Lock:
        return self._locks.setdefault(cid, asyncio.Lock())

    @contextlib.asynccontextmanager
    async def hold(self, ref: str) -> AsyncIterator[Container]:
        """The container, with no start, stop or removal of it until the block
        ends (``docker cp`` into a stopped container's snapshot, commit)."""
        c = self.get(ref)
        async with self._lock(c.id):
            yield self.get(c.id)

    def _waiters_of(self, cid: str) -> _Waiters:
        return self._waiters.setdefault(cid, _Waiters())

    def using_image(self, image_id: str) -> list[tuple[str, bool]]:
        rows = self.db.query("SELECT record FROM containers WHERE image_id = ?", (image_id,))
        out = []
        for row in rows:
            c = Container.from_json(row["record"])
            out.append((c.id, c.state.running))
        return out

    # -- create --------------------------------------------------------------
    async def create(self, body: dict, *, name: str | None) -> Container:
        if not isinstance(body, dict):
            raise errdefs.InvalidArgument("invalid JSON: container config must be an object")
        image_ref = body.get("Image") or ""
        if not image_ref:
            raise errdefs.InvalidArgument("No command specified")
        image_id = await asyncio.to_thread(self.images.resolve, image_ref)
        image_config = (await asyncio.to_thread(self.images.config, image_id)).get("config") or {}
        chain_id = await asyncio.to_thread(self.images.chain_id, image_id)

        config = self._merge_config(body, image_config)
        entrypoint = config.get("Entrypoint") or []
        cmd = config.get("Cmd") or []
        argv = [*entrypoint, *cmd]
        if not argv:
            raise errdefs.InvalidArgument("no command specified")

        host_config = dict(body.get("HostConfig") or {})
        host_config.setdefault("NetworkMode", "default")
        host_config.setdefault("RestartPolicy", {"Name": "no", "MaximumRetryCount": 0})
        host_config.setdefault("LogConfig", {"Type": "json-file", "Config": {}})
        if not host_config["LogConfig"].get("Type"):
            host_config["LogConfig"]["Type"] = "json-file"
        host_config.setdefault("AutoRemove", False)
        host_config.setdefault("Privileged", False)
        host_config.setdefault("ReadonlyRootfs", False)
        host_config.setdefault("ShmSize", 64 * 1024 * 1024)
        host_config.setdefault("CapAdd", None)
        host_config.setdefault("CapDrop", None)
        runtime = host_config.get("Runtime") or self.config.default_runtime
        self.config.runtime_path(runtime)  # validates the name
        host_config["Runtime"] = runtime
        if host_config["LogConfig"]["Type"] not in ("json-file", "none"):
            raise errdefs.InvalidArgument(
                f"failed to create task for container: logger: no log driver named "
                f"'{host_config['LogConfig']['Type']}' is registered"
            )

        logs_to_file = host_config["LogConfig"]["Type"] == "json-file"
        mode = host_config.get("NetworkMode") or ""
        if mode.startswith("container:"):
            config["Hostname"] = self.get(mode.partition(":")[2]).config.get("Hostname", "")
        cid = _new_id()
        if not config.get("Hostname"):
            config["Hostname"] = cid[:12]
        stored_name = names.validate(name) if name else None

        cdir = self.config.container_dir(cid)
        container = Container(
            id=cid,
            name=stored_name or "/",
            image_id=image_id,
            created=now_rfc3339(),
            config=config,
            host_config=host_config,
            path=argv[0],
            args=argv[1:],
            log_path=str(cdir / f"{cid}-json.log") if logs_to_file else "",
            hostname_path=str(cdir / "hostname"),
            hosts_path=str(cdir / "hosts"),
            resolv_conf_path=str(cdir / "resolv.conf"),
            networking_config=dict(body.get("NetworkingConfig") or {}),
        )
        if self.networks is not None:
            self.networks.check_create(container)
        await asyncio.to_thread(self._create_files, container, chain_id)
        try:
            self._insert(container, explicit=stored_name is not None)
        except BaseException:
            await asyncio.to_thread(self._remove_files, cid)
            raise
        return container

    def _create_files(self, c: Container, chain_id: str | None) -> None:
        files.write_all(
            self.config.container_dir(c.id),
            hostname=c.config["Hostname"],
            domainname=c.config.get("Domainname", ""),
        )
        self.snapshotter.prepare(c.id, chain_id)

    def _insert(self, c: Container, *, explicit: bool) -> None:
        for attempt in range(10):
            if not explicit:
                c.name = "/" + names.random_name(attempt)
            try:
                with self.db.tx() as cur:
                    cur.execute(
                        "INSERT INTO containers (id, name, image_id, created, record)"
                        " VALUES (?, ?, ?, ?, ?)",
                        (c.id, c.name, c.image_id, time.time(), c.to_json()),
                    )
                return
            except sqlite3.IntegrityError:
                if explicit:
                    row = self.db.query_one("SELECT id FROM containers WHERE name = ?", (c.name,))
                    other = row["id"] if row else ""
                    raise errdefs.Conflict(
                        f'Conflict. The container name "{c.name}" is already in use by '
                        f'container "{other}". You have to remove (or rename) that container '
                        "to be able to reuse that name."
                    )
        raise errdefs.System("could not generate a unique container name")

    @staticmethod
    def _merge_config(body: dict, image: dict) -> dict:
        """Docker's rule: the image's config fills what the request leaves out;
        an Entrypoint given in the request drops the image's Cmd."""
        config = {
            "Hostname": body.get("Hostname") or "",
            "Domainname": body.get("Domainname") or "",
            "User": body.get("User") or image.get("User") or "",
            "AttachStdin": bool(body.get("AttachStdin")),
            "AttachStdout": bool(body.get("AttachStdout")),
            "AttachStderr": bool(body.get("AttachStderr")),
            "Tty": bool(body.get("Tty")),
            "OpenStdin": bool(body.get("OpenStdin")),
            "StdinOnce": bool(body.get("StdinOnce")),
            "Env": _merge_env(image.get("Env") or [], body.get("Env") or []),
            "Cmd": body.get("Cmd"),
            "Image": body.get("Image"),
            "Volumes": body.get("Volumes") or image.get("Volumes"),
            "WorkingDir": body.get("WorkingDir") or image.get("WorkingDir") or "",
            "Entrypoint": body.get("Entrypoint"),
            "OnBuild": image.get("OnBuild"),
            "Labels": {**(image.get("Labels") or {}), **(body.get("Labels") or {})},
        }
        if body.get("ExposedPorts") or image.get("ExposedPorts"):
            config["ExposedPorts"] = {
                **(image.get("ExposedPorts") or {}),
                **(body.get("ExposedPorts") or {}),
            }
        stop_signal = body.get("StopSignal") or image.get("StopSignal")
        if stop_signal:
            config["StopSignal"] = stop_signal
        if body.get("StopTimeout") is not None:
            config["StopTimeout"] = body["StopTimeout"]
        if isinstance(config["Entrypoint"], str):
            config["Entrypoint"] = ["/bin/sh", "-c", config["Entrypoint"]]
        if isinstance(config["Cmd"], str):
            config["Cmd"] = ["/bin/sh", "-c", config["Cmd"]]
        if config["Entrypoint"] is None:
            config["Entrypoint"] = image.get("Entrypoint")
            if not config["Cmd"]:
                config["Cmd"] = image.get("Cmd")
        elif config["Entrypoint"] == [""]:
            config["Entrypoint"] = None
            if not config["Cmd"]:
                config["Cmd"] = None
        return config

    # -- start ---------------------------------------------------------------
    async def start(self, ref: str) -> None:
        c = self.get(ref)
        async with self._lock(c.id):
            c = self.get(c.id)
            if c.state.running:
                raise errdefs.NotModified("container already started")
            if c.state.status in (Status.REMOVING, Status.DEAD):
                raise errdefs.Conflict(
                    f"cannot start a container that has been removed or is being removed: {c.id}"
                )
            transition(c.state.status, Event.START)
            self._stopped_by_user.discard(c.id)
            await self._start_locked(c)

    async def _start_locked(self, c: Container) -> None:
        run_dir = self.config.container_run_dir(c.id)
        bundle = run_dir / "bundle"
        rootfs = bundle / "rootfs"
        try:
            sandbox = await self._network_sandbox(c)
            await asyncio.to_thread(self._prepare_bundle, c, bundle, rootfs, sandbox)
            shim = await Shim.spawn(self._shim_config(c, run_dir, bundle), launcher=self.launcher)
        except BaseException as exc:
            await self._release_network(c)
            await asyncio.to_thread(self._cleanup_run_dir, c.id)
            self._record_start_failure(c, exc)
            if isinstance(exc, errdefs.DockyardError) or not isinstance(exc, Exception):
                raise
            raise errdefs.System(str(exc))
        runtime = _Runtime(shim=shim)
        self._running[c.id] = runtime
        waiters = self._waiters_of(c.id)
        pending, waiters.attach = waiters.attach, []
        for options, future in pending:
            if future.done():
                continue
            try:
                attachment = await shim.attach(**options)
            except Exception as exc:  # the attach request fails, the start goes on
                future.set_exception(exc)
            else:
                future.set_result(attachment)
        try:
            await shim.start()
        except BaseException as exc:
            # The process died between create and start: let the shim wind
            # down (it deletes the container from the runtime, cgroup
            # included), then undo the rest as for a failed create.
            self._running.pop(c.id, None)
            with contextlib.suppress(Exception):
                await shim.kill(signals.SIGKILL)
            try:
                await asyncio.wait_for(shim.wait(), 10)
            except Exception:
                # The shim did not wind down: end it and delete the container
                # from the runtime ourselves (that empties and removes its cgroup).
                with contextlib.suppress(ProcessLookupError):
                    os.kill(shim.shim_pid, signals.SIGKILL)
                await asyncio.to_thread(self._force_delete, c)
            await self._release_network(c)
            await asyncio.to_thread(self._cleanup_run_dir, c.id)
            self._record_start_failure(c, exc)
            raise
        c.state = State(status=Status.RUNNING, pid=shim.pid, started_at=now_rfc3339())
        c.has_been_started = True
        self._save(c)
        runtime.monitor = self._spawn(self._monitor(c.id, shim))

    async def _network_sandbox(self, c: Container):
        """Set up the container's networking; write /etc/hosts and
        /etc/resolv.conf from it. None when there is no network service."""
        if self.networks is None:
            return None
        sandbox = await self.networks.sandbox(c)
        await asyncio.to_thread(self._write_network_files, c, sandbox)
        return sandbox

    def _write_network_files(self, c: Container, sandbox) -> None:
        mode = c.host_config.get("NetworkMode") or ""
        if mode.startswith("container:"):
            # As Docker: a container joining another's network shares its
            # hosts, resolv.conf and hostname.
            other = self.get(mode.partition(":")[2])
            for mine, theirs in (
                (c.hosts_path, other.hosts_path),
                (c.resolv_conf_path, other.resolv_conf_path),
                (c.hostname_path, other.hostname_path),
            ):
                with contextlib.suppress(OSError):
                    Path(mine).write_bytes(Path(theirs).read_bytes())
            return
        extra = list(c.host_config.get("ExtraHosts") or [])
        text = files.hosts_content(extra=extra)
        for ip, names_ in sandbox.hosts_entries:
            text += f"{ip}\t{' '.join(names_) if isinstance(names_, list | tuple) else names_}\n"
        Path(c.hosts_path).write_text(text)
        if sandbox.resolv_conf is not None:
            Path(c.resolv_conf_path).write_text(sandbox.resolv_conf)
        hostname = getattr(sandbox, "hostname", None)
        if hostname:
            Path(c.hostname_path).write_text(hostname + "\n")

    async def _release_network(self, c: Container) -> None:
        if self.networks is None:
            return
        try:
            await self.networks.release(c)
        except Exception as exc:  # cleanup must go on; the error is worth a log line
            log.warning("container %s: releasing its network failed: %s", c.id, exc)

    def _force_delete(self, c: Container) -> None:
        name = c.host_config.get("Runtime") or self.config.default_runtime
        root = self.config.runtime_state_root / name
        binary = self.config.runtime_path(name)
        if binary is None:
            from dockyard.runtime.builtin import BuiltinRuntime

            runtime = BuiltinRuntime(root)
        else:
            from dockyard.runtime.external import ExternalRuntime

            runtime = ExternalRuntime(binary, root)
        try:
            runtime.delete(c.id, force=True)
        except Exception as exc:
            log.warning("container %s: runtime delete failed: %s", c.id, exc)

    def _record_start_failure(self, c: Container, exc: BaseException) -> None:
        c.state.error = getattr(exc, "message", str(exc))
        c.state.exit_code = getattr(exc, "exit_code", 128)
        self._save(c)
        waiters = self._waiters_of(c.id)
        pending, waiters.attach = waiters.attach, []
        for _, future in pending:
            if not future.done():
                future.set_exception(errdefs.Conflict(c.state.error))
        if c.host_config.get("AutoRemove"):
            # As dockerd: a container that could not start is removed at once
            # when it was to be removed on exit.
            self._spawn(self._remove_quietly(c.id))

    async def _remove_quietly(self, cid: str) -> None:
        with contextlib.suppress(errdefs.DockyardError):
            await self.remove(cid, force=True)

    def _prepare_bundle(self, c: Container, bundle: Path, rootfs: Path, sandbox=None) -> None:
        import json

        from dockyard.runtime import spec
        from dockyard.store.snapshots import unmount

        rootfs.mkdir(parents=True, exist_ok=True)
        mounts = self.snapshotter.mounts(c.id)
        for m in mounts:
            m.mount(str(rootfs))
        try:
            cfg, hc = c.config, c.host_config
            options = spec.SpecOptions(
                rootfs=str(rootfs),
                args=[c.path, *c.args],
                env=list(cfg.get("Env") or []),
                cwd=cfg.get("WorkingDir") or "/",
                user=cfg.get("User") or "",
                tty=bool(cfg.get("Tty")),
                hostname=cfg.get("Hostname") or "",
                domainname=cfg.get("Domainname") or "",
                cgroups_path=f"/{self.config.cgroup_parent}/{c.id}",
                binds=(
                    (c.hostname_path, "/etc/hostname", False),
                    (c.hosts_path, "/etc/hosts", False),
                    (c.resolv_conf_path, "/etc/resolv.conf", False),
                ),
                readonly_rootfs=bool(hc.get("ReadonlyRootfs")),
                privileged=bool(hc.get("Privileged")),
                cap_add=tuple(hc.get("CapAdd") or ()),
                cap_drop=tuple(hc.get("CapDrop") or ()),
                netns_path=getattr(sandbox, "netns_path", None),
                host_network=sandbox is not None and sandbox.netns_path is None,
                shm_size=int(hc.get("ShmSize") or 64 * 1024 * 1024),
            )
            document = spec.generate(options)
            (bundle / "config.json").write_text(json.dumps(document))
        except BaseException:
            unmount(str(rootfs))
            raise

    def _shim_config(self, c: Container, run_dir: Path, bundle: Path) -> ShimConfig:
        from dockyard import units

        log_config = c.host_config.get("LogConfig") or {}
        opts = {**self.config.log_opts, **(log_config.get("Config") or {})}
        logging_on = log_config.get("Type", "json-file") == "json-file"
        max_size = units.ram_in_bytes(opts["max-size"]) if opts.get("max-size") else 0
        runtime_name = c.host_config.get("Runtime") or self.config.default_runtime
        return ShimConfig(
            container_id=c.id,
            bundle=str(bundle),
            state_dir=str(run_dir),
            log_path=c.log_path if logging_on else "",
            log_max_size=max_size,
            log_max_file=int(opts.get("max-file") or 1),
            runtime=self.config.runtime_path(runtime_name),
            runtime_root=str(self.config.runtime_state_root / runtime_name),
            tty=bool(c.config.get("Tty")),
            open_stdin=bool(c.config.get("OpenStdin")),
            stdin_once=bool(c.config.get("StdinOnce")),
        )

    def _cleanup_run_dir(self, cid: str) -> None:
        from dockyard.store.snapshots import unmount

        run_dir = self.config.container_run_dir(cid)
        rootfs = run_dir / "bundle" / "rootfs"
        if rootfs.exists():
            unmount(str(rootfs))
        shutil.rmtree(run_dir, ignore_errors=True)

    # -- exit ----------------------------------------------------------------
    def _spawn(self, coro) -> asyncio.Task:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _monitor(self, cid: str, shim: Shim) -> None:
        try:
            status = await shim.wait()
        except Exception as exc:  # the shim vanished without an exit record
            log.warning("container %s: lost its shim: %s", cid, exc)
            status = ExitStatus(exit_code=255, exited_at=now_rfc3339())
        await self._on_exit(cid, status)

    async def _on_exit(self, cid: str, status: ExitStatus) -> None:
        runtime = self._running.pop(cid, None)
        c = self._load(cid)
        if c is None:
            return
        await self._release_network(c)
        await asyncio.to_thread(self._cleanup_run_dir, cid)
        await asyncio.to_thread(self._remove_cgroup, cid)
        if c.state.running:
            c.state.status = transition(c.state.status, Event.EXIT)
        c.state.pid = 0
        c.state.exit_code = status.exit_code
        c.state.finished_at = status.exited_at or now_rfc3339()
        c.state.oom_killed = status.oom_killed
        self._save(c)
        waiters = self._waiters_of(cid)
        exits, waiters.exit = waiters.exit, []
        for future in exits:
            if not future.done():
                future.set_result(status.exit_code)
        if c.host_config.get("AutoRemove"):
            try:
                await self.remove(cid, force=True)
            except errdefs.NotFound:
                pass
            return
        if self._should_restart(c, runtime):
            self._restarts[cid] = self._spawn(self._restart_later(cid))

    def _should_restart(self, c: Container, runtime: _Runtime | None) -> bool:
        if (runtime is not None and runtime.stopping) or c.id in self._stopped_by_user:
            return False
        policy = (c.host_config.get("RestartPolicy") or {}).get("Name") or "no"
        if policy in ("always", "unless-stopped"):
            return True
        if policy == "on-failure" and c.state.exit_code != 0:
            limit = (c.host_config.get("RestartPolicy") or {}).get("MaximumRetryCount") or 0
            return limit == 0 or c.restart_count < limit
        return False

    async def _restart_later(self, cid: str) -> None:
        c = self._load(cid)
        if c is None:
            return
        # Docker's back-off: 100 ms doubling, reset after 10 s of running.
        delay = min(0.1 * (2 ** min(c.restart_count, 10)), 60.0)
        await asyncio.sleep(delay)
        async with self._lock(cid):
            self._restarts.pop(cid, None)
            c = self._load(cid)
            if c is None or c.state.running or cid in self._stopped_by_user:
                return
            c.restart_count += 1
            self._save(c)
            with contextlib.suppress(errdefs.DockyardError):
                await self._start_locked(c)

    # -- signals -------------------------------------------------------------
    async def kill(self, ref: str, signal: str | int | None = None) -> None:
        c = self.get(ref)
        number = parse_signal(signal)
        runtime = self._running.get(c.id)
        if runtime is None or not c.state.running:
            raise errdefs.Conflict(f"Cannot kill container: {ref}: Container {c.id} is not running")
        if number in (signals.SIGKILL, signals.SIGTERM, signals.SIGINT):
            runtime.stopping = True
        await runtime.shim.kill(number)

    async def stop(
        self, ref: str, *, timeout: int | None = None, signal: str | None = None
    ) -> None:
        c = self.get(ref)
        self._stopped_by_user.add(c.id)
        async with self._lock(c.id):  # let a start in progress (a policy restart) finish
            c = self.get(c.id)
        runtime = self._running.get(c.id)
        if runtime is None or not c.state.running:
            if self._cancel_restart(c.id):  # stopping a restarting container
                return
            raise errdefs.NotModified("container already stopped")
        runtime.stopping = True
        stop_signal = parse_signal(signal or c.config.get("StopSignal"), signals.SIGTERM)
        if timeout is None:
            timeout = c.config.get("StopTimeout")
            timeout = DEFAULT_STOP_TIMEOUT if timeout is None else int(timeout)
        waiter = self.register_wait(c.id, "next-exit")
        with contextlib.suppress(Exception):
            await runtime.shim.kill(stop_signal)
        if timeout < 0:
            await waiter
            return
        try:
            await asyncio.wait_for(asyncio.shield(waiter), timeout)
        except TimeoutError:
            with contextlib.suppress(Exception):
                await runtime.shim.kill(signals.SIGKILL)
            await waiter

    async def restart(self, ref: str, *, timeout: int | None = None, signal: str | None = None):
        c = self.get(ref)
        with contextlib.suppress(errdefs.NotModified):
            await self.stop(c.id, timeout=timeout, signal=signal)
        await self.start(c.id)

    # -- wait ----------------------------------------------------------------
    def register_wait(self, ref: str, condition: str = "not-running") -> asyncio.Future:
        """A future for the exit code, registered now so that an exit between
        this call and the caller's await is not missed."""
        c = self.get(ref)
        loop = asyncio.get_running_loop()
        future: asyncio.Future = loop.create_future()
        condition = condition or "not-running"
        if condition not in ("not-running", "next-exit", "removed"):
            raise errdefs.InvalidArgument(f"invalid condition: {condition!r}")
        waiters = self._waiters_of(c.id)
        if condition == "removed":
            waiters.removed.append(future)
        elif condition == "not-running" and not c.state.running:
            future.set_result(c.state.exit_code)
        else:
            waiters.exit.append(future)
        return future

    # -- attach --------------------------------------------------------------
    def attach(self, ref: str, *, stdin: bool, stdout: bool, stderr: bool) -> asyncio.Future:
        """A future Attachment to the container's streams, registered now: a
        client attached before start misses none of the output."""
        c = self.get(ref)
        options = {"stdin": stdin, "stdout": stdout, "stderr": stderr}
        runtime = self._running.get(c.id)
        if runtime is not None:
            return asyncio.ensure_future(runtime.shim.attach(**options))
        future: asyncio.Future = asyncio.get_running_loop().create_future()
        self._waiters_of(c.id).attach.append((options, future))
        return future

    async def resize(self, ref: str, *, height: int, width: int) -> None:
        c = self.get(ref)
        runtime = self._running.get(c.id)
        if runtime is None:
            raise errdefs.Conflict(f"Container {c.id} is not running")
        await runtime.shim.resize(height, width)

    # -- remove --------------------------------------------------------------
    async def remove(self, ref: str, *, force: bool = False) -> None:
        c = self.get(ref)
        self._cancel_restart(c.id)
        if c.state.running:
            if not force:
                raise errdefs.Conflict(
                    f"You cannot remove a running container {c.id}. Stop the container "
                    "before attempting removal or force remove"
                )
            runtime = self._running.get(c.id)
            if runtime is not None:
                runtime.stopping = True
                waiter = self.register_wait(c.id, "next-exit")
                with contextlib.suppress(Exception):
                    await runtime.shim.kill(signals.SIGKILL)
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(waiter, 30)
        async with self._lock(c.id):
            c = self._load(c.id)
            if c is None:
                return
            if c.state.status == Status.REMOVING:
                raise errdefs.Conflict(f"removal of container {c.id} is already in progress")
            c.state.status = Status.REMOVING
            self._save(c)
            try:
                await asyncio.to_thread(self._remove_files, c.id)
            except Exception as exc:
                c.state.status = transition(Status.REMOVING, Event.FAIL)
                c.state.error = str(exc)
                self._save(c)
                raise errdefs.System(f"unable to remove filesystem for {c.id}: {exc}")
            await self._forget_network(c.id)
            with self.db.tx() as cur:
                cur.execute("DELETE FROM containers WHERE id = ?", (c.id,))
        self._locks.pop(c.id, None)
        self._stopped_by_user.discard(c.id)
        waiters = self._waiters.pop(c.id, _Waiters())
        for future in [*waiters.exit, *waiters.removed]:
            if not future.done():
                future.set_result(c.state.exit_code)
        for _, future in waiters.attach:
            if not future.done():
                future.set_exception(errdefs.NotFound(f"No such container: {c.id}"))

    async def _forget_network(self, cid: str) -> None:
        if self.networks is not None:
            try:
                await self.networks.forget(cid)
            except Exception as exc:
                log.warning("container %s: dropping its endpoints failed: %s", cid, exc)

    def _remove_cgroup(self, cid: str) -> None:
        """The runtime removes a container's cgroup when it deletes it; this
        catches the cases where no delete ran (a shim that died), so that the
        cgroup always goes with the container."""
        from dockyard.runtime.cgroups import Cgroup

        cgroup = Cgroup(f"/{self.config.cgroup_parent}/{cid}")
        if not cgroup.exists():
            return
        for pid in cgroup.pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signals.SIGKILL)
        try:
            cgroup.remove()
        except errdefs.DockyardError as exc:
            log.warning("container %s: %s", cid, exc.message)

    def _remove_files(self, cid: str) -> None:
        self._remove_cgroup(cid)
        self._cleanup_run_dir(cid)
        with contextlib.suppress(errdefs.NotFound):
            self.snapshotter.remove(cid)
        shutil.rmtree(self.config.container_dir(cid), ignore_errors=True)

    async def rename(self, ref: str, new_name: str) -> None:
        c = self.get(ref)
        stored = names.validate(new_name)
        if stored == c.name:
            raise errdefs.Conflict("Renaming a container with the same name as its current name")
        old = c.name
        c.name = stored
        try:
            self._save(c)
        except sqlite3.IntegrityError:
            row = self.db.query_one("SELECT id FROM containers WHERE name = ?", (stored,))
            raise errdefs.Conflict(
                f'Conflict. The container name "{stored}" is already in use by container '
                f'"{row["id"] if row else ""}". You have to remove (or rename) that container '
                "to be able to reuse that name."
            )
        log.info("renamed %s from %s to %s", c.id, old, stored)

    async def prune(self, filters: dict[str, list[str]]) -> dict:
        until = filters.get("until")
        deleted, reclaimed = [], 0
        for c in self.all():
            if c.state.running or c.state.status == Status.REMOVING:
                continue
            if not _match_labels(c, filters.get("label", []), filters.get("label!", [])):
                continue
            if until and parse_rfc3339(c.created) >= _parse_until(until[0]):
                continue
            reclaimed += await asyncio.to_thread(self._usage, c.id)
            with contextlib.suppress(errdefs.NotFound):
                await self.remove(c.id)
                deleted.append(c.id)
        return {"ContainersDeleted": deleted or None, "SpaceReclaimed": reclaimed}

    def _usage(self, cid: str) -> int:
        try:
            return int(self.snapshotter.usage(cid))
        except Exception:
            return 0

    # -- list and inspect ----------------------------------------------------
    def list(self, *, all: bool, limit: int, size: bool, filters: dict[str, list[str]]) -> list:
        containers = self.all()
        if limit > 0 or filters.get("before") or filters.get("since"):
            all = True
        if not all:
            containers = [c for c in containers if c.state.running]
        containers = [c for c in containers if self._matches(c, filters)]
        if filters.get("before"):
            pivot = self.get(filters["before"][0])
            containers = [c for c in containers if c.created < pivot.created]
        if filters.get("since"):
            pivot = self.get(filters["since"][0])
            containers = [c for c in containers if c.created > pivot.created]
        if limit > 0:
            containers = containers[:limit]
        out = []
        for c in containers:
            item = c.summary(network=self._settings(c))
            if size:
                item["SizeRw"] = self._usage(c.id)
                item["SizeRootFs"] = item["SizeRw"] + self._image_size(c.image_id)
            out.append(item)
        return out

    def _image_size(self, image_id: str) -> int:
        row = self.db.query_one("SELECT size FROM images WHERE id = ?", (image_id,))
        return int(row["size"]) if row else 0

    def _matches(self, c: Container, filters: dict[str, list[str]]) -> bool:
        known = {
            "status",
            "name",
            "id",
            "label",
            "label!",
            "ancestor",
            "exited",
            "before",
            "since",
            "health",
            "network",
            "volume",
            "publish",
            "expose",
            "isolation",
            "is-task",
        }
        for key in filters:
            if key not in known:
                raise errdefs.InvalidArgument(f"invalid filter '{key}'")
        if "status" in filters:
            valid = {s.value for s in Status}
            for value in filters["status"]:
                if value not in valid:
                    raise errdefs.InvalidArgument(f"invalid filter 'status={value}'")
            if c.state.status.value not in filters["status"]:
                return False
        if "name" in filters and not any(
            re.search(p, c.name) or re.search(p, c.name[1:]) for p in filters["name"]
        ):
            return False
        if "id" in filters and not any(c.id.startswith(p) for p in filters["id"]):
            return False
        if not _match_labels(c, filters.get("label", []), filters.get("label!", [])):
            return False
        if "exited" in filters:
            if c.state.status != Status.EXITED:
                return False
            codes = set()
            for value in filters["exited"]:
                if not value.lstrip("-").isdigit():
                    raise errdefs.InvalidArgument(f"invalid filter 'exited={value}'")
                codes.add(int(value))
            if c.state.exit_code not in codes:
                return False
        if "ancestor" in filters:
            matched = False
            for value in filters["ancestor"]:
                try:
                    ancestor = self.images.resolve(value)
                except errdefs.NotFound:
                    continue
                if ancestor == c.image_id:
                    matched = True
            if not matched:
                return False
        return True

    def inspect(self, ref: str, *, size: bool = False) -> dict:
        c = self.get(ref)
        graph: dict = {}
        with contextlib.suppress(Exception):
            upper = self.snapshotter.upper_dir(c.id)
            graph = {
                "UpperDir": str(upper),
                "MergedDir": str(self.config.container_run_dir(c.id) / "bundle" / "rootfs"),
                "WorkDir": str(Path(upper).parent / "work"),
            }
        data = c.inspect(graph_data=graph, network=self._settings(c))
        if size:
            data["SizeRw"] = self._usage(c.id)
            data["SizeRootFs"] = data["SizeRw"] + self._image_size(c.image_id)
        return data

    def _settings(self, c: Container) -> dict:
        if self.networks is None:
            return _network_settings(c)
        return self.networks.settings(c)

    async def restore(self) -> None:
        """Reconnect to the shims of containers that were running when the
        daemon stopped; settle those that exited meanwhile."""
        for c in self.all():
            if c.state.status == Status.REMOVING:
                with contextlib.suppress(Exception):
                    await self.remove(c.id, force=True)
                continue
            if not c.state.running:
                continue
            run_dir = self.config.container_run_dir(c.id)
            shim = await Shim.connect(run_dir)
            if shim is not None:
                runtime = _Runtime(shim=shim)
                self._running[c.id] = runtime
                runtime.monitor = self._spawn(self._monitor(c.id, shim))
                continue
            status = Shim.read_exit(run_dir) or ExitStatus(exit_code=255, exited_at=now_rfc3339())
            await self._on_exit(c.id, status)

    async def close(self) -> None:
        """Stop watching shims; the containers keep running (live restore)."""
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(BaseException):
                await task


def _match_labels(c: Container, wanted: list[str], unwanted: list[str]) -> bool:
    labels = c.config.get("Labels") or {}

    def has(spec: str) -> bool:
        key, sep, value = spec.partition("=")
        return key in labels and (not sep or labels[key] == value)

    return all(has(s) for s in wanted) and not any(has(s) for s in unwanted)


def _parse_until(value: str) -> float:
    from dockyard.container.logs import parse_time

    return parse_time(value, time.time())


def _network_settings(c: Container) -> dict:
    return {
        "Bridge": "",
        "SandboxID": "",
        "SandboxKey": "",
        "Ports": {},
        "HairpinMode": False,
        "LinkLocalIPv6Address": "",
        "LinkLocalIPv6PrefixLen": 0,
        "SecondaryIPAddresses": None,
        "SecondaryIPv6Addresses": None,
        "EndpointID": "",
        "Gateway": "",
        "GlobalIPv6Address": "",
        "GlobalIPv6PrefixLen": 0,
        "IPAddress": "",
        "IPPrefixLen": 0,
        "IPv6Gateway": "",
        "MacAddress": "",
        "Networks": {},
    }
