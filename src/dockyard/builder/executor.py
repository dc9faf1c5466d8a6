"""The build executor: Docker's classic builder (``DOCKER_BUILDKIT=0``) over a
parsed Dockerfile and an unpacked context.

Every instruction commits an image whose parent is the previous step's, as
the classic builder does; that parent chain plus the step's key is the
cache (``builder.cache``). Metadata-only steps make config-only images with
an ``empty_layer`` history entry; RUN runs in a real container of the
container service (the step's Cmd/Env/WorkingDir/User, the build's network
mode) whose snapshot becomes the layer; COPY, ADD and WORKDIR write into a
fresh snapshot of the parent directly. History ``created_by`` strings,
output lines and messages are Docker's, word for word (``Step 2/9 : ...``,
`` ---> Using cache``, ``/bin/sh -c #(nop)  CMD ["sh"]``).

Only the stages the target needs are built (FROM and COPY --from
dependencies), as the issue asks (the classic builder builds every stage
up to the target).

Cancellation (the client went away): the task running ``build`` is
cancelled. A RUN step's container is killed and removed at once; work in a
worker thread (a copy, a layer being stored) cannot be interrupted, so the
step waits for it to end and then undoes it, and a container being created
is removed once it exists: a cancelled build leaves no container, mount or
snapshot of its own behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import posixpath
import secrets
import shutil
import stat
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from dockyard import errdefs
from dockyard.builder import copying
from dockyard.builder import instructions as ins
from dockyard.builder.cache import BuildCache
from dockyard.builder.context import BuildContext, relative_path
from dockyard.builder.parser import chomp_heredoc, parse_heredoc
from dockyard.builder.shell_lex import ShellLex, is_builtin_arg, normalize_platform, platform_args
from dockyard.gofmt import go_duration, go_list_q, go_list_v, go_quote, go_rune_q
from dockyard.image import config as imgconfig
from dockyard.image import reference

DEFAULT_SHELL = ("/bin/sh", "-c")
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
#: what this daemon builds for ($BUILDPLATFORM; FROM --platform must name it)
DAEMON_PLATFORM = "linux/amd64"
_OSES = frozenset({"linux", "windows", "darwin", "freebsd", "netbsd", "openbsd", "solaris"})
_CHUNK = 1 << 20

T = TypeVar("T")
Emit = Callable[[dict[str, Any]], Awaitable[None]]
#: pulls an image by name, writing its progress messages to the emitter
Pull = Callable[[str, Emit], Awaitable[None]]


@dataclass(frozen=True)
class BuildOptions:
    """The query parameters of ``POST /build`` that the executor uses."""

    dockerfile: str = "Dockerfile"
    tags: tuple[str, ...] = ()
    build_args: Mapping[str, str | None] = field(default_factory=dict)
    no_cache: bool = False
    pull: bool = False
    remove: bool = True
    force_remove: bool = False
    target: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)
    quiet: bool = False
    network_mode: str = ""
    platform: str = ""
    extra_hosts: tuple[str, ...] = ()
    shm_size: int = 0
    memory: int = 0
    cpuset_cpus: str = ""


class StepFailed(errdefs.InvalidArgument):
    """A RUN step exited non-zero; ``code`` is its exit status."""

    def __init__(self, message: str, *, code: int) -> None:
        super().__init__(message)
        self.code = code


def _healthcheck_comment(hc: dict[str, Any]) -> str:
    durations = " ".join(
        go_quote(go_duration(int(hc.get(k) or 0)))
        for k in ("Interval", "Timeout", "StartPeriod", "StartInterval")
    )
    retries = go_rune_q(hc.get("Retries") or 0)
    return f"HEALTHCHECK &{{{go_list_q(hc.get('Test'))} {durations} {retries}}}"


# -- the state of one stage ---------------------------------------------------


def _base_config(config: dict[str, Any] | None) -> dict[str, Any]:
    """A container config in the full shape the classic builder commits."""
    cfg: dict[str, Any] = {
        "Hostname": "",
        "Domainname": "",
        "User": "",
        "AttachStdin": False,
        "AttachStdout": False,
        "AttachStderr": False,
        "Tty": False,
        "OpenStdin": False,
        "StdinOnce": False,
        "Env": None,
        "Cmd": None,
        "Image": "",
        "Volumes": None,
        "WorkingDir": "",
        "Entrypoint": None,
        "OnBuild": None,
        "Labels": None,
    }
    cfg.update(json.loads(json.dumps(config or {})))
    cfg["OpenStdin"] = False
    cfg["StdinOnce"] = False
    return cfg


def _env_map(env: list[str] | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for entry in env or []:
        key, _, value = entry.partition("=")
        out[key] = value
    return out


def _set_env(cfg: dict[str, Any], key: str, value: str) -> None:
    env = list(cfg.get("Env") or [])
    for index, entry in enumerate(env):
        if entry.partition("=")[0] == key:
            env[index] = f"{key}={value}"
            break
    else:
        env.append(f"{key}={value}")
    cfg["Env"] = env


@dataclass
class _BuildArgs:
    """Docker's ``BuildArgs`` for one stage."""

    options: Mapping[str, str | None]
    meta: dict[str, str | None]
    allowed: dict[str, str | None] = field(default_factory=dict)
    referenced: set[str] = field(default_factory=set)

    def get(self, key: str, mapping: Mapping[str, str | None]) -> tuple[str, bool]:
        default_exists = key in mapping
        default = mapping.get(key)
        value = self.options.get(key)
        if key in self.options and value is not None:
            return value, True
        if default is None:
            meta = self.meta.get(key)
            if meta is not None:
                return meta, True
            return "", False
        return default, default_exists

    def all_allowed(self) -> dict[str, str]:
        out: dict[str, str] = {}
        keys = list(self.allowed) + [k for k in self.options if is_builtin_arg(k)]
        for key in keys:
            value, ok = self.get(key, self.allowed)
            if ok:
                out[key] = value
        return out

    def filter_allowed(self, env: list[str] | None) -> list[str]:
        present = _env_map(env)
        return [f"{k}={v}" for k, v in self.all_allowed().items() if k not in present]

    def referenced_or_not_builtin(self, key: str) -> bool:
        return key in self.referenced or not is_builtin_arg(key)


@dataclass
class _Stage:
    index: int
    name: str
    image_id: str
    config: dict[str, Any]
    layers: list  # image.service.Layer, bottom first
    history: list[dict[str, Any]]
    architecture: str
    os: str
    args: _BuildArgs
    cmd_set: bool = False
    maintainer: str = ""

    @property
    def chain_id(self) -> str | None:
        return self.layers[-1].chain_id if self.layers else None

    @property
    def shell(self) -> list[str]:
        return list(self.config.get("Shell") or DEFAULT_SHELL)

    def env(self) -> dict[str, str]:
        """The environment words expand in: ENV, then the allowed ARGs."""
        env = list(self.config.get("Env") or [])
        return _env_map(env + self.args.filter_allowed(env))


# -- the executor -------------------------------------------------------------


class Builder:
    """Runs one build. ``images``, ``containers``: the daemon's services."""

    def __init__(
        self,
        *,
        images,
        containers,
        cache: BuildCache,
        context: BuildContext,
        options: BuildOptions,
        emit: Emit,
        pull: Pull | None = None,
    ) -> None:
        self.images = images
        self.pull = pull
        self.containers = containers
        self.snapshotter = images.snapshotter
        self.cache = cache
        self.context = context
        self.options = options
        self._emit = emit
        self.work = context.root.parent
        self.stage_images: dict[int, str] = {}
        self.step = 0
        self.total = 0
        self.escape = "\\"
        self.meta: dict[str, str | None] = {}
        self._stage_names: dict[int, str] = {}

    # -- output ---------------------------------------------------------------

    async def out(self, text: str) -> None:
        if not self.options.quiet:
            await self._emit({"stream": text})

    async def _step(self, code: str) -> None:
        self.step += 1
        await self.out(f"Step {self.step}/{self.total} : {code}\n")

    # -- the build --------------------------------------------------------------

    def parse(self) -> tuple[ins.Dockerfile, list[int], list[str]]:
        """Parse the Dockerfile and check the tags and target: everything that
        fails before any output (dockerd answers those with an HTTP error)."""
        tags = [_parse_tag(t) for t in self.options.tags]
        text = self.context.read_dockerfile(self.options.dockerfile)
        self._drop_ignored()
        dockerfile = ins.parse_dockerfile(text)
        self.escape = dockerfile.escape
        if not dockerfile.stages:
            raise errdefs.InvalidArgument("No image was generated. Is your Dockerfile empty?")
        if self.options.target and not any(
            s.name == self.options.target.lower() for s in dockerfile.stages
        ):
            raise errdefs.InvalidArgument(
                f'target stage "{self.options.target}" could not be found'
            )
        self.meta = self._meta_values(dockerfile)
        needed = dockerfile.stages_needed(self.options.target or None, meta_env=self._meta_env())
        return dockerfile, needed, tags

    def _drop_ignored(self) -> None:
        from dockyard.builder import dockerignore

        path = Path(self.context.resolve(".dockerignore"))
        if not path.is_file():
            return
        matcher = dockerignore.PatternMatcher(dockerignore.read_patterns(path.read_text()))
        for name in dockerignore.excluded_after_read(matcher, self.options.dockerfile):
            with contextlib.suppress(OSError):
                os.unlink(self.context.resolve(name))

    def _meta_values(self, dockerfile: ins.Dockerfile) -> dict[str, str | None]:
        meta: dict[str, str | None] = {}
        lex = ShellLex(dockerfile.escape)
        for arg in dockerfile.meta_args:
            for spec in arg.args:
                env = {k: v for k, v in self._meta_env(meta).items()}
                value = None if spec.value is None else lex.process_word(spec.value, env)
                meta[lex.process_word(spec.key, env)] = value
        return meta

    def _meta_env(self, meta: Mapping[str, str | None] | None = None) -> dict[str, str]:
        meta = self.meta if meta is None else meta
        env = platform_args(target=self.options.platform or DAEMON_PLATFORM, build=DAEMON_PLATFORM)
        for key, value in meta.items():
            override = self.options.build_args.get(key)
            if override is not None:
                env[key] = override
            elif value is not None:
                env[key] = value
        return env

    async def run(self, dockerfile: ins.Dockerfile, needed: list[int], tags: list) -> str:
        extra_label = self._label_instruction(dockerfile)
        self.total = len(dockerfile.meta_args) + sum(
            1 + len(dockerfile.stages[i].instructions) for i in needed
        )
        if extra_label is not None:
            self.total += 1
        for arg in dockerfile.meta_args:
            await self._step(arg.code)
        referenced: set[str] = set(self.meta)
        image_id = ""
        for index in needed:
            stage_def = dockerfile.stages[index]
            stage = await self._from(dockerfile, stage_def)
            steps = list(stage_def.instructions)
            if extra_label is not None and index == needed[-1]:
                steps.append(extra_label)
            for inst in steps:
                await self._step(inst.code)
                await self._dispatch(stage, inst, dockerfile)
                await self.out(f" ---> {_short(stage.image_id)}\n")
            referenced |= stage.args.referenced | set(stage.args.allowed)
            image_id = stage.image_id
            self.stage_images[index] = image_id
            if image_id:
                await self._emit({"aux": {"ID": image_id}})
        if not image_id:
            raise errdefs.InvalidArgument("No image was generated. Is your Dockerfile empty?")
        unused = sorted(
            k for k in self.options.build_args if k not in referenced and not is_builtin_arg(k)
        )
        if unused:
            await self.out(
                f"[Warning] One or more build-args {go_list_v(unused)} were not consumed\n"
            )
        await self.out(f"Successfully built {_short(image_id)}\n")
        for ref in tags:
            await _thread(self.images.set_reference, ref, image_id)
            await self.out(f"Successfully tagged {ref.familiar()}\n")
        return image_id

    def _label_instruction(self, dockerfile: ins.Dockerfile) -> ins.Label | None:
        if not self.options.labels:
            return None
        pairs = tuple(
            ins.KeyValue(go_quote(k), "'" + v + "'") for k, v in self.options.labels.items()
        )
        code = "LABEL " + " ".join(f"{p.key}={p.value}" for p in pairs)
        return ins.Label(pairs=pairs, code=code, line=0, end_line=0)

    # -- FROM -------------------------------------------------------------------

    async def _from(self, dockerfile: ins.Dockerfile, stage_def: ins.Stage) -> _Stage:
        await self._step(stage_def.code)
        base, platform = ins.expand_from(stage_def, self._meta_env(), escape=self.escape)
        if platform:
            _check_platform(platform)
        args = _BuildArgs(options=self.options.build_args, meta=dict(self.meta))
        if not base:
            raise errdefs.InvalidArgument("base name (" + stage_def.base + ") should not be blank")
        image_id = ""
        lowered = base.lower()
        for prior in dockerfile.stages[: stage_def.index]:
            if prior.name and prior.name == lowered and prior.index in self.stage_images:
                image_id = self.stage_images[prior.index]
                break
        else:
            if lowered != "scratch":
                image_id = await self._image(base)
        if image_id:
            full = await _thread(self.images.config, image_id)
            layers = await _thread(self.images.image_layers, image_id)
        else:
            full, layers = {}, []
        config = _base_config(full.get("config"))
        if "PATH" not in _env_map(config.get("Env")):
            config["Env"] = [*(config.get("Env") or []), f"PATH={DEFAULT_PATH}"]
        stage = _Stage(
            index=stage_def.index,
            name=stage_def.name,
            image_id=image_id,
            config=config,
            layers=list(layers),
            history=list(full.get("history") or []),
            architecture=full.get("architecture") or "amd64",
            os=full.get("os") or "linux",
            args=args,
        )
        triggers = list(config.get("OnBuild") or [])
        if triggers:
            word = "trigger" if len(triggers) == 1 else "triggers"
            await self.out(f"# Executing {len(triggers)} build {word}\n")
            stage.config["OnBuild"] = []
            for expression in triggers:
                await self._dispatch(stage, ins.parse_trigger(expression), dockerfile)
        await self.out(f" ---> {_short(stage.image_id)}\n")
        return stage

    # -- one instruction --------------------------------------------------------

    async def _dispatch(self, stage: _Stage, inst: ins.Instruction, df: ins.Dockerfile) -> None:
        inst = ins.expand(inst, stage.env(), escape=self.escape)
        handler = getattr(self, "_do_" + inst.keyword.lower())
        await handler(stage, inst)

    async def _commit_config(self, stage: _Stage, comment: str, key_extra: str = "") -> None:
        """A metadata-only step: a config-only image, through the cache."""
        created_by = " ".join([*stage.shell, "#(nop) ", comment])
        if await self._probe(stage, created_by, key_extra):
            return
        fake = secrets.token_hex(6)  # dockerd creates a container here; we need none
        await self.out(f" ---> Running in {fake}\n")
        await self._commit(stage, created_by, None, key_extra)
        await self.out(f" ---> Removed intermediate container {fake}\n")

    def _key(self, stage: _Stage, created_by: str, extra: str) -> str:
        config = json.dumps({**stage.config, "Image": stage.image_id}, sort_keys=True)
        digest = hashlib.sha256(config.encode()).hexdigest()
        return f"{created_by}\n{extra}\n{digest}"

    async def _probe(self, stage: _Stage, created_by: str, extra: str = "") -> bool:
        if self.options.no_cache:
            return False
        key = self._key(stage, created_by, extra)
        hit = await _thread(self.cache.lookup, stage.image_id, key)
        if hit is None:
            return False
        await self._adopt(stage, hit)
        await self.out(" ---> Using cache\n")
        return True

    async def _adopt(self, stage: _Stage, image_id: str) -> None:
        full = await _thread(self.images.config, image_id)
        stage.layers = await _thread(self.images.image_layers, image_id)
        stage.history = list(full.get("history") or [])
        stage.image_id = image_id

    async def _commit(self, stage: _Stage, created_by: str, layer, key_extra: str = "") -> None:
        key = self._key(stage, created_by, key_extra)
        parent = stage.image_id
        created = imgconfig.rfc3339_nano()
        entry: dict[str, Any] = {"created": created, "created_by": created_by}
        if stage.maintainer:
            entry["author"] = stage.maintainer
        if layer is None:
            entry["empty_layer"] = True
        layers = [*stage.layers, layer] if layer is not None else list(stage.layers)
        config = {**stage.config, "Image": parent}
        document: dict[str, Any] = {
            "architecture": stage.architecture,
            "config": config,
            "created": created,
            "history": [*stage.history, entry],
            "os": stage.os,
            "rootfs": {"type": "layers", "diff_ids": [lay.diff_id for lay in layers]},
        }
        if stage.maintainer:
            document["author"] = stage.maintainer

        def store() -> str:
            image_id = self.images.create_image(imgconfig.encode(document), layers, parent=parent)
            self.cache.store(parent, key, image_id)
            return image_id

        stage.image_id = await _thread(store)
        stage.layers = layers
        stage.history = document["history"]

    # metadata instructions

    async def _do_env(self, stage: _Stage, inst: ins.Env) -> None:
        words = []
        for kv in inst.pairs:
            _set_env(stage.config, kv.key, kv.value)
            words.append(f"{kv.key}={kv.value}")
        await self._commit_config(stage, "ENV " + " ".join(words))

    async def _do_label(self, stage: _Stage, inst: ins.Label) -> None:
        labels = dict(stage.config.get("Labels") or {})
        words = []
        for kv in inst.pairs:
            labels[kv.key] = kv.value
            words.append(f"{kv.key}={kv.value}")
        stage.config["Labels"] = labels
        await self._commit_config(stage, "LABEL " + " ".join(words))

    async def _do_maintainer(self, stage: _Stage, inst: ins.Maintainer) -> None:
        stage.maintainer = inst.maintainer
        await self._commit_config(stage, "MAINTAINER " + inst.maintainer)

    async def _do_expose(self, stage: _Stage, inst: ins.Expose) -> None:
        ports = dict(stage.config.get("ExposedPorts") or {})
        for spec in inst.ports:
            for port in imgconfig._expand_ports(spec):
                ports[port] = {}
        stage.config["ExposedPorts"] = ports
        await self._commit_config(stage, "EXPOSE " + " ".join(inst.ports))

    async def _do_user(self, stage: _Stage, inst: ins.User) -> None:
        stage.config["User"] = inst.user
        await self._commit_config(stage, "USER " + inst.user)

    async def _do_volume(self, stage: _Stage, inst: ins.Volume) -> None:
        volumes = dict(stage.config.get("Volumes") or {})
        for path in inst.volumes:
            if not path.strip():
                raise errdefs.InvalidArgument("VOLUME specified can not be an empty string")
            volumes[path] = {}
        stage.config["Volumes"] = volumes
        await self._commit_config(stage, f"VOLUME {go_list_v(inst.volumes)}")

    async def _do_stopsignal(self, stage: _Stage, inst: ins.StopSignal) -> None:
        from dockyard.container.service import parse_signal

        parse_signal(inst.signal)
        stage.config["StopSignal"] = inst.signal
        await self._commit_config(stage, "STOPSIGNAL " + inst.signal)

    async def _do_shell(self, stage: _Stage, inst: ins.Shell) -> None:
        stage.config["Shell"] = list(inst.shell)
        await self._commit_config(stage, f"SHELL {go_list_v(inst.shell)}")

    async def _do_arg(self, stage: _Stage, inst: ins.Arg) -> None:
        words = []
        for spec in inst.args:
            stage.args.allowed[spec.key] = spec.value
            stage.args.referenced.add(spec.key)
            words.append(spec.key if spec.value is None else f"{spec.key}={spec.value}")
        await self._commit_config(stage, "ARG " + " ".join(words))

    def _command(self, stage: _Stage, inst) -> list[str]:
        if not inst.prepend_shell:
            return list(inst.cmd)
        line = inst.cmd[0] if inst.cmd else ""
        files = getattr(inst, "files", ())
        if len(files) == 1:
            opener = parse_heredoc(line.strip())
            if opener is not None and opener.name == files[0].name:
                # ``RUN <<EOF``: the heredoc is the script (buildkit's rule)
                doc = files[0]
                return [*stage.shell, chomp_heredoc(doc.content) if doc.chomp else doc.content]
        for doc in files:
            # the shell reads the here-documents after the command line
            line += "\n" + doc.content + doc.name
        return [*stage.shell, line]

    async def _do_cmd(self, stage: _Stage, inst: ins.Cmd) -> None:
        stage.config["Cmd"] = self._command(stage, inst)
        stage.cmd_set = True
        await self._commit_config(stage, f"CMD {go_list_q(stage.config['Cmd'])}")

    async def _do_entrypoint(self, stage: _Stage, inst: ins.Entrypoint) -> None:
        stage.config["Entrypoint"] = self._command(stage, inst)
        if not stage.cmd_set:
            stage.config["Cmd"] = None
        await self._commit_config(stage, f"ENTRYPOINT {go_list_q(stage.config['Entrypoint'])}")

    async def _do_healthcheck(self, stage: _Stage, inst: ins.Healthcheck) -> None:
        hc: dict[str, Any] = {"Test": list(inst.test)}
        for key, value in (
            ("Interval", inst.interval),
            ("Timeout", inst.timeout),
            ("StartPeriod", inst.start_period),
            ("StartInterval", inst.start_interval),
            ("Retries", inst.retries),
        ):
            if value:
                hc[key] = value
        stage.config["Healthcheck"] = hc
        await self._commit_config(stage, _healthcheck_comment(hc))

    async def _do_onbuild(self, stage: _Stage, inst: ins.Onbuild) -> None:
        stage.config["OnBuild"] = [*(stage.config.get("OnBuild") or []), inst.expression]
        await self._commit_config(stage, "ONBUILD " + inst.expression)

    # WORKDIR: config, and the directory as a layer when it was missing

    async def _do_workdir(self, stage: _Stage, inst: ins.Workdir) -> None:
        current = stage.config.get("WorkingDir") or "/"
        path = posixpath.normpath(posixpath.join(current, inst.path))
        if path.startswith("//"):
            path = path[1:]
        stage.config["WorkingDir"] = path
        # one space: WORKDIR, like COPY, uses withCmdCommentString
        created_by = " ".join([*stage.shell, "#(nop) WORKDIR " + path])
        if await self._probe(stage, created_by):
            return
        fake = secrets.token_hex(6)
        await self.out(f" ---> Running in {fake}\n")

        def make(root: Path) -> None:
            copying.mkdir_all(str(root), path, 0, 0)

        layer = await _thread(self._in_snapshot, stage, make)
        await self._commit(stage, created_by, layer)
        await self.out(f" ---> Removed intermediate container {fake}\n")

    def _in_snapshot(self, stage: _Stage, action: Callable[[Path], None]):
        """Run ``action`` on a writable snapshot of the stage's image; its
        changes become a layer (None when there are none)."""
        from dockyard.builder.diff import store_snapshot
        from dockyard.image.changes import mounted

        key = f"build-{secrets.token_hex(16)}"
        self.snapshotter.prepare(key, stage.chain_id)
        try:
            with mounted(self.snapshotter, key, readonly=False) as root:
                action(root)
            return store_snapshot(self.images, self.snapshotter, key, parent_chain=stage.chain_id)
        finally:
            with contextlib.suppress(errdefs.NotFound):
                self.snapshotter.remove(key)

    # RUN: a real container

    async def _do_run(self, stage: _Stage, inst: ins.Run) -> None:
        if inst.flags_used:
            # as dockerd: RUN takes no flag, the first one used is named
            raise _requires_buildkit(inst.flags_used[0])
        argv = self._command(stage, inst)
        if not argv:
            raise errdefs.InvalidArgument("RUN requires at least one argument")
        env = list(stage.config.get("Env") or [])
        build_env = stage.args.filter_allowed(env)
        save = list(argv)
        if build_env:
            shown = sorted(
                e for e in build_env if stage.args.referenced_or_not_builtin(e.split("=", 1)[0])
            )
            save = [f"|{len(shown)}", *shown, *argv]
        created_by = " ".join(save)
        if await self._probe(stage, created_by):
            return
        if not stage.image_id:
            raise errdefs.InvalidArgument("Please provide a source image with `from` prior to run")
        options = self.options
        host_config: dict[str, Any] = {
            "NetworkMode": options.network_mode or "default",
            "LogConfig": {"Type": "none", "Config": {}},
            "ExtraHosts": list(options.extra_hosts) or None,
        }
        if options.shm_size:
            host_config["ShmSize"] = options.shm_size
        if options.memory:
            host_config["Memory"] = options.memory
        if options.cpuset_cpus:
            host_config["CpusetCpus"] = options.cpuset_cpus
        body = {
            "Image": stage.image_id,
            "Cmd": argv,
            "Entrypoint": [""],
            "Env": env + build_env,
            "WorkingDir": stage.config.get("WorkingDir") or "",
            "User": stage.config.get("User") or "",
            "AttachStdout": True,
            "AttachStderr": True,
            "HostConfig": host_config,
        }
        container = await _complete(
            self.containers.create(body, name=None), undo=self._remove_container
        )
        cid = container.id
        keep = not (self.options.remove or self.options.force_remove)
        succeeded = False
        try:
            await self.out(f" ---> Running in {cid[:12]}\n")
            code = await self._run_container(cid)
            if code != 0:
                raise StepFailed(
                    f"The command '{' '.join(argv)}' returned a non-zero code: {code}", code=code
                )
            layer = await _thread(self._store_container, cid, stage.chain_id)
            succeeded = True
        finally:
            # Docker keeps a failed step's container unless --force-rm; we
            # always remove it: a failed or cancelled build must leave
            # nothing behind. Removal kills it first if it still runs.
            if not (succeeded and keep):
                await _complete(self._remove_container(container))
        await self._commit(stage, created_by, layer)
        if not keep:
            await self.out(f" ---> Removed intermediate container {cid[:12]}\n")

    async def _remove_container(self, container) -> None:
        with contextlib.suppress(errdefs.DockyardError):
            await self.containers.remove(container.id, force=True)

    async def _run_container(self, cid: str) -> int:
        attach = self.containers.attach(cid, stdin=False, stdout=True, stderr=True)
        exited = self.containers.register_wait(cid, "next-exit")
        try:
            # a start cut short by a cancellation would leave a shim behind
            await _complete(self.containers.start(cid))
            attachment = await attach
            try:
                while True:
                    item = await attachment.read()
                    if item is None:
                        break
                    await self.out(item[1].decode("utf-8", "replace"))
            finally:
                with contextlib.suppress(Exception):
                    await attachment.close()
            return int(await exited)
        except BaseException:
            for future in (attach, exited):
                if future.done():
                    continue
                future.cancel()
                with contextlib.suppress(BaseException):
                    await future
            raise

    def _store_container(self, cid: str, parent_chain: str | None):
        from dockyard.builder.diff import store_snapshot

        return store_snapshot(self.images, self.snapshotter, cid, parent_chain=parent_chain)

    # COPY and ADD

    async def _do_copy(self, stage: _Stage, inst: ins.Copy) -> None:
        # --link is accepted and has nothing to do here: it changes how
        # BuildKit caches the layer, not what the layer holds (dockerd ignores it too)
        _refuse_buildkit_flags(("parents", inst.parents), ("exclude", inst.excludes))
        await self._transfer(stage, inst, "COPY", inst.from_)

    async def _do_add(self, stage: _Stage, inst: ins.Add) -> None:
        _refuse_buildkit_flags(
            ("exclude", inst.excludes),
            ("checksum", inst.checksum),
            ("keep-git-dir", inst.keep_git_dir),
        )
        await self._transfer(stage, inst, "ADD", "")

    async def _transfer(self, stage: _Stage, inst, cmd: str, from_: str) -> None:
        source_image = ""
        if from_:
            source_image = await self._source_image(from_)
        with contextlib.ExitStack() as stack:
            if from_:
                root = await _thread(self._mount_image, stack, source_image)
            else:
                root = str(self.context.root)
            sources, digest = await _thread(
                self._collect, root, inst, cmd, allow_urls=cmd == "ADD", env=stage.env()
            )
            dest = copying.normalize_dest(stage.config.get("WorkingDir") or "/", inst.dest)
            if len(sources) > 1 and not dest.endswith("/"):
                raise errdefs.InvalidArgument(
                    f"When using {cmd} with more than one source file, the destination must "
                    "be a directory and end with a /"
                )
            chown = f"--chown={inst.chown}" if inst.chown else ""
            created_by = " ".join([*stage.shell, f"#(nop) {cmd} {chown}{digest} in {inst.dest} "])
            extra = f"chmod={inst.chmod}"
            if await self._probe(stage, created_by, extra):
                return

            def perform(target: Path) -> None:
                uid, gid = copying.chown_ids(target, inst.chown)
                mode = copying.parse_chmod(inst.chmod)
                for source in sources:
                    copying.copy_source(
                        str(target),
                        source,
                        dest,
                        uid,
                        gid,
                        mode,
                        unpack=cmd == "ADD" and not source.download,
                    )

            layer = await _thread(self._in_snapshot, stage, perform)
        await self._commit(stage, created_by, layer, extra)

    async def _source_image(self, ref: str) -> str:
        lowered = ref.lower()
        for stage_index, image_id in self.stage_images.items():
            if self._stage_names.get(stage_index) == lowered or (
                ref.isdigit() and int(ref) == stage_index
            ):
                return image_id
        return await self._image(ref)

    async def _image(self, name: str) -> str:
        """A base or ``--from`` image: pulled when missing (or with --pull),
        its progress going into the build's output as dockerd's does."""
        if self.pull is not None and self.options.pull:
            await self.pull(name, self._pull_output)
        try:
            return await _thread(_resolve_image, self.images, name)
        except errdefs.NotFound:
            if self.pull is None or self.options.pull:
                raise
        await self.pull(name, self._pull_output)
        return await _thread(_resolve_image, self.images, name)

    async def _pull_output(self, message: dict[str, Any]) -> None:
        if not self.options.quiet:
            await self._emit(message)

    def _mount_image(self, stack: contextlib.ExitStack, image_id: str) -> str:
        from dockyard.image.changes import mounted

        chain = self.images.chain_id(image_id)
        if chain is None:
            empty = self.work / f"empty-{secrets.token_hex(4)}"
            empty.mkdir()
            return str(empty)
        return str(stack.enter_context(mounted(self.snapshotter, chain, readonly=True)))

    def _collect(
        self, root: str, inst, cmd: str, *, allow_urls: bool, env: Mapping[str, str]
    ) -> tuple[list, str]:
        """The sources an instruction names, resolved inside ``root``, and the
        checksum Docker puts in the history (``file:<sum>``, ``dir:<sum>``,
        ``multi:<sum>``)."""
        sources: list[copying.Source] = []
        hashes: list[str] = []
        for raw in inst.sources:
            if allow_urls and raw.startswith(("http://", "https://")):
                source = self._download(raw)
                sources.append(source)
                hashes.append("file:" + copying.hash_tree(source.path))
                continue
            rel = relative_path(raw)
            if rel is None:
                raise errdefs.InvalidArgument(
                    f"{cmd} failed: forbidden path outside the build context: {raw} ()"
                )
            if copying.has_wildcard((rel,)):
                matches = copying.glob(root, rel)
                if not matches:
                    raise errdefs.InvalidArgument(f"{cmd} failed: no source files were specified")
            else:
                matches = [rel]
            for match in matches:
                from dockyard.sys.securejoin import secure_join

                host = secure_join(root, match)
                try:
                    st = os.stat(host)
                except FileNotFoundError:
                    raise errdefs.InvalidArgument(
                        f"{cmd} failed: file not found in build context or excluded by "
                        f".dockerignore: stat {match or '.'}: file does not exist"
                    )
                is_dir = stat.S_ISDIR(st.st_mode)
                name = posixpath.basename(match) or "."
                sources.append(copying.Source(host, name, is_dir))
                known = self.context.file_digest if root == str(self.context.root) else None
                hashes.append(("dir:" if is_dir else "file:") + copying.hash_tree(host, known))
        for content in inst.contents:
            directory = self.work / f"heredoc-{secrets.token_hex(4)}"
            directory.mkdir()
            name = posixpath.basename(content.path) or "heredoc"
            path = directory / name
            path.write_text(ins.expand_heredoc(content, env))
            os.chmod(path, 0o644)
            sources.append(copying.Source(str(path), name, False, download=True))
            hashes.append("file:" + copying.hash_tree(str(path)))
        if len(hashes) == 1:
            return sources, hashes[0]
        joined = hashlib.sha256(",".join(hashes).encode()).hexdigest()
        return sources, "multi:" + joined

    def _download(self, url: str) -> copying.Source:
        import email.utils
        import urllib.parse
        import urllib.request

        name = posixpath.basename(urllib.parse.urlparse(url).path) or "__unnamed__"
        directory = self.work / f"download-{secrets.token_hex(4)}"
        directory.mkdir()
        path = directory / name
        try:
            with urllib.request.urlopen(url, timeout=60) as response, open(path, "wb") as out:
                shutil.copyfileobj(response, out, _CHUNK)
                modified = response.headers.get("Last-Modified")
        except OSError as exc:
            raise errdefs.InvalidArgument(f"failed to GET {url}: {exc}")
        os.chmod(path, 0o600)
        if modified:
            with contextlib.suppress(TypeError, ValueError):
                stamp = email.utils.parsedate_to_datetime(modified).timestamp()
                os.utime(path, (stamp, stamp))
        return copying.Source(str(path), name, False, download=True)


# -- helpers ----------------------------------------------------------------------


def _requires_buildkit(flag: str) -> errdefs.InvalidArgument:
    return errdefs.InvalidArgument(
        f"the --{flag} option requires BuildKit. Refer to "
        "https://docs.docker.com/go/buildkit/ to learn how to build images "
        "with BuildKit enabled"
    )


def _refuse_buildkit_flags(*flags: tuple[str, object]) -> None:
    """COPY/ADD flags only BuildKit implements fail the step, in dockerd's
    words for the flags it refuses: building without them would give another
    result than asked (files not excluded, a checksum not verified)."""
    for name, value in flags:
        if value:
            raise _requires_buildkit(name)


def _check_platform(text: str) -> None:
    """``FROM --platform``: only the daemon's own platform can be built; any
    other fails as a pull finding no image for it does."""
    try:
        parts = text.strip().split("/")
        if len(parts) == 1 and parts[0].lower() not in _OSES:
            text = "linux/" + text.strip()  # a bare architecture, as containerd reads it
        want = normalize_platform(text)
        if want[1:] == ("amd64", "v1"):
            want = (want[0], "amd64", "")  # containerd's Normalize
    except errdefs.InvalidArgument as exc:
        raise errdefs.InvalidArgument(f"failed to parse platform {text}: {exc.message}")
    if want[1] == "":
        want = (want[0], *normalize_platform(DAEMON_PLATFORM)[1:])
    if want != normalize_platform(DAEMON_PLATFORM):
        shown = "/".join(p for p in want if p)
        raise errdefs.NotFound(f"no matching manifest for {shown} in the manifest list entries")


async def _complete(
    awaitable: Awaitable[T], undo: Callable[[T], Awaitable[None]] | None = None
) -> T:
    """Await ``awaitable`` to its end even when the caller is cancelled
    meanwhile: a half-done step could not be cleaned up. The cancellation is
    raised once it has ended, after ``undo`` of its result."""
    task = asyncio.ensure_future(awaitable)
    interrupted = False
    while not task.done():
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if not task.done() or (current is not None and current.cancelling()):
                interrupted = True
        except BaseException:
            break  # the task's own error: result() raises it
    if not interrupted:
        return task.result()
    if not task.cancelled() and task.exception() is None and undo is not None:
        with contextlib.suppress(Exception):
            await asyncio.shield(undo(task.result()))
    raise asyncio.CancelledError


async def _thread(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``asyncio.to_thread`` that a cancellation does not leave running."""
    return await _complete(asyncio.to_thread(fn, *args, **kwargs))


def _short(image_id: str) -> str:
    return image_id.partition(":")[2][:12] if ":" in image_id else image_id[:12]


def _parse_tag(text: str) -> reference.Reference:
    try:
        ref = reference.parse_named(text)
    except errdefs.InvalidArgument as exc:
        raise errdefs.InvalidArgument(f"invalid reference format: {exc.message}")
    if ref.digest is not None:
        raise errdefs.InvalidArgument("refusing to create a tag with a digest reference")
    if ref.tag is None:
        ref = ref.with_tag(reference.DEFAULT_TAG)
    return ref


def _resolve_image(images, name: str) -> str:
    try:
        return images.resolve(name)
    except errdefs.NotFound:
        ref = reference.parse_named(name)
        raise errdefs.NotFound(
            f"pull access denied for {ref.familiar_name()}, repository does not exist or may "
            "require 'docker login': denied: requested access to the resource is denied"
        )


# -- the entry point ----------------------------------------------------------------


async def build(
    *,
    images,
    containers,
    db,
    context: BuildContext,
    options: BuildOptions,
    emit: Emit,
    started: Callable[[], Awaitable[None]] | None = None,
    pull: Pull | None = None,
) -> str:
    """Run a build; returns the final image ID. ``started`` is awaited once
    the Dockerfile, tags and target are known good (the API starts its
    streamed answer there: earlier errors become an HTTP error)."""
    builder = Builder(
        images=images,
        containers=containers,
        cache=BuildCache(db),
        context=context,
        options=options,
        emit=emit,
        pull=pull,
    )
    dockerfile, needed, tags = await _thread(builder.parse)
    builder._stage_names = {s.index: s.name for s in dockerfile.stages}
    if started is not None:
        await started()
    image_id = await builder.run(dockerfile, needed, tags)
    if options.quiet:
        await emit({"stream": image_id + "\n"})
    return image_id


__all__ = ["BuildOptions", "Builder", "StepFailed", "build"]
