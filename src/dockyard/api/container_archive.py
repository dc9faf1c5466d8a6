"""Image tools of the Engine API: a container's changes, export, the archive
endpoints ``docker cp`` uses, ``POST /commit`` and ``POST /images/prune``.

A running container's root is its mounted rootfs
(``<exec-root>/containers/<id>/bundle/rootfs``); a stopped one's snapshot is
mounted on a private temporary directory for the request and unmounted after
(``image.changes.mounted``).

Locking: writing into a stopped container's snapshot (``PUT`` archive),
exporting a stopped container and commit hold the container's lock
(``ContainerService.hold``) for the whole request, so no start, stop or
removal runs meanwhile; a running container's ``PUT`` holds it too (as
dockerd does) so that a stop cannot unmount the rootfs under the extraction.
Reads of a running container (stat, ``GET``) take no lock: they read the
mounted rootfs, or a read-only stack of the snapshot's layers.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from aiohttp import web

from dockyard import __version__, errdefs
from dockyard.api.app import json_response, query_bool, query_filters, read_json
from dockyard.api.body import BodyReader, with_body
from dockyard.image import config as imgconfig
from dockyard.image import reference

# container.archive and image.changes are imported by the handlers that use
# them: together they are about 1 MB of every idle daemon's RSS.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from dockyard.container.archive import PathStat

routes = web.RouteTableDef()

_STAT_HEADER = "X-Docker-Container-Path-Stat"
_CHUNK = 1 << 20


def _containers(request: web.Request):
    return request.app["containers"]


def _container(request: web.Request):
    return _containers(request).get(request.match_info["name"])


@contextlib.contextmanager
def _root(request: web.Request, c, *, writable: bool = False) -> Iterator[Path]:
    """The container's filesystem on the host for the duration of the ``with``."""
    from dockyard.image import changes as imgchanges

    svc = _containers(request)
    if c.state.running:
        rootfs = request.app["config"].container_run_dir(c.id) / "bundle" / "rootfs"
        if os.path.ismount(rootfs):
            yield rootfs
            return
    with imgchanges.mounted(svc.snapshotter, c.id, readonly=not writable) as path:
        yield path


def _query_path(request: web.Request) -> str:
    path = request.query.get("path", "")
    if not path:
        raise errdefs.InvalidArgument("no path specified")
    return path


# -- changes, export -------------------------------------------------------------


@routes.get("/containers/{name}/changes")
async def container_changes(request: web.Request) -> web.Response:
    from dockyard.image import changes as imgchanges

    c = _container(request)
    found = await asyncio.to_thread(imgchanges.changes, _containers(request).snapshotter, c.id)
    return json_response([ch.to_json() for ch in found] or None)


async def _stream_from_thread(request: web.Request, response: web.StreamResponse, work) -> None:
    """Run ``work(fileobj)`` in a thread, piping what it writes to ``response``."""
    read_fd, write_fd = os.pipe()
    loop = asyncio.get_running_loop()

    def produce() -> None:
        with os.fdopen(write_fd, "wb", buffering=_CHUNK) as out:
            work(out)

    task = asyncio.ensure_future(asyncio.to_thread(produce))
    reader = os.fdopen(read_fd, "rb", buffering=0)
    try:
        while True:
            chunk = await loop.run_in_executor(None, reader.read, _CHUNK)
            if not chunk:
                break
            await response.write(chunk)
    finally:
        reader.close()  # a client gone: the writer sees EPIPE and stops
        with contextlib.suppress(BrokenPipeError, OSError):
            await task


@routes.get("/containers/{name}/export")
async def export(request: web.Request) -> web.StreamResponse:
    from dockyard.container import archive
    from dockyard.image import changes as imgchanges

    c = _container(request)
    svc = _containers(request)
    response = web.StreamResponse(headers={"Content-Type": "application/x-tar"})

    def work(out) -> None:
        with imgchanges.mounted(svc.snapshotter, c.id) as root:
            archive.export_rootfs(root, out)

    async with contextlib.AsyncExitStack() as stack:
        if not c.state.running:  # a stopped one's snapshot must not start changing meanwhile
            c = await stack.enter_async_context(svc.hold(c.id))
        await response.prepare(request)
        await _stream_from_thread(request, response, work)
    await response.write_eof()
    return response


# -- archive (docker cp) ------------------------------------------------------------


# The files the daemon bind-mounts over a container's root: `docker cp`
# shows the container's view of them, not the empty mount points.
_MOUNTED_FILES = {
    "/etc/hostname": "hostname_path",
    "/etc/hosts": "hosts_path",
    "/etc/resolv.conf": "resolv_conf_path",
}


@contextlib.contextmanager
def _source(request: web.Request, c, path: str) -> Iterator[tuple[Path, str]]:
    """Where a read of ``path`` is served from: (a root, the path in it) —
    the daemon's own file for a bind-mounted one, else the container's root."""
    attr = _MOUNTED_FILES.get(path)
    host = getattr(c, attr, "") if attr else ""
    if host and os.path.isfile(host):
        yield Path(host).parent, "/" + Path(host).name
        return
    with _root(request, c) as root:
        yield root, path


def _stat_or_raise(request: web.Request, c) -> PathStat:
    from dockyard.container import archive

    with _source(request, c, _query_path(request)) as (root, path):
        return archive.stat_path(root, path, container=request.match_info["name"])


@routes.head("/containers/{name}/archive")
async def archive_head(request: web.Request) -> web.Response:
    c = _container(request)
    st = await asyncio.to_thread(_stat_or_raise, request, c)
    return web.Response(status=200, headers={_STAT_HEADER: st.header()})


@routes.get("/containers/{name}/archive")
async def archive_get(request: web.Request) -> web.StreamResponse:
    from dockyard.container import archive

    c = _container(request)
    path = _query_path(request)
    name = request.match_info["name"]
    # stat first so that a missing path is a plain 404, not a broken stream
    st = await asyncio.to_thread(_stat_or_raise, request, c)
    response = web.StreamResponse(
        headers={"Content-Type": "application/x-tar", _STAT_HEADER: st.header()}
    )
    await response.prepare(request)

    def work(out) -> None:
        with _source(request, c, path) as (root, inner):
            archive.archive_path(root, inner, out, container=name)

    await _stream_from_thread(request, response, work)
    await response.write_eof()
    return response


@routes.put("/containers/{name}/archive")
async def archive_put(request: web.Request) -> web.Response:
    c = _container(request)
    path = _query_path(request)
    async with _containers(request).hold(c.id) as c:
        await _put(request, c, path)
    return web.Response(status=200)


async def _put(request: web.Request, c, path: str) -> None:
    from dockyard.container import archive

    if c.host_config.get("ReadonlyRootfs"):
        raise errdefs.FailedPrecondition("container rootfs is marked read-only")
    chown = None
    if query_bool(request, "copyUIDGID") and c.config.get("User"):
        chown = await asyncio.to_thread(_user_ids, request, c)
    options = archive.ExtractOptions(
        no_overwrite_dir_non_dir=query_bool(request, "noOverwriteDirNonDir"), chown=chown
    )

    def work(body: BodyReader) -> None:
        with _root(request, c, writable=True) as root:
            archive.extract(root, path, body, options=options, container=request.match_info["name"])

    await with_body(request, work)


def _user_ids(request: web.Request, c) -> tuple[int, int]:
    from dockyard.runtime.spec import resolve_user

    with _root(request, c) as root:
        uid, gid, _ = resolve_user(root, c.config["User"])
    return uid, gid


# -- commit --------------------------------------------------------------------------


def _merge(user: dict[str, Any], container: dict[str, Any]) -> dict[str, Any]:
    """Docker's ``merge(userConf, imageConf)`` for commit: what the request
    (after ``--change``) leaves unset comes from the container's config."""
    out = dict(user)
    if not out.get("User"):
        out["User"] = container.get("User", "")
    ports = dict(container.get("ExposedPorts") or {})
    ports.update(out.get("ExposedPorts") or {})
    if ports:
        out["ExposedPorts"] = ports
    env = list(out.get("Env") or [])
    keys = {e.partition("=")[0] for e in env}
    env = [e for e in container.get("Env") or [] if e.partition("=")[0] not in keys] + env
    out["Env"] = env or None
    labels = dict(container.get("Labels") or {})
    labels.update(out.get("Labels") or {})
    out["Labels"] = labels or None
    if not out.get("Entrypoint"):
        if not out.get("Cmd"):
            out["Cmd"] = container.get("Cmd")
        out["Entrypoint"] = container.get("Entrypoint")
    for key in ("WorkingDir", "StopSignal", "Healthcheck", "OnBuild", "Domainname", "Hostname"):
        if not out.get(key) and container.get(key):
            out[key] = container[key]
    volumes = dict(container.get("Volumes") or {})
    volumes.update(out.get("Volumes") or {})
    out["Volumes"] = volumes or None
    for key in ("Tty", "OpenStdin", "StdinOnce", "AttachStdin", "AttachStdout", "AttachStderr"):
        out.setdefault(key, bool(container.get(key)))
    out.setdefault("Image", container.get("Image", ""))
    return out


@contextlib.contextmanager
def _frozen(request: web.Request, c, pause: bool) -> Iterator[None]:
    """Freeze the container's cgroup (v1 freezer) while committing; a no-op
    when it is not running or the freezer is not there."""
    if not pause or not c.state.running or c.state.status.value == "paused":
        yield
        return
    parent = request.app["config"].cgroup_parent.strip("/")
    state = Path("/sys/fs/cgroup/freezer") / parent / c.id / "freezer.state"
    if not state.exists():
        yield
        return
    state.write_text("FROZEN")
    try:
        yield
    finally:
        state.write_text("THAWED")


def _commit(request: web.Request, c, body: dict | None, query) -> str:
    from dockyard.image import changes as imgchanges

    images = request.app["images"]
    svc = _containers(request)
    changes = query.getall("changes", [])
    # no config in the request: the container's own is the base (dockerd's rule)
    user_config = imgconfig.apply_changes(body or dict(c.config), changes)
    config = _merge(user_config, c.config)
    repo, tag = query.get("repo", ""), query.get("tag", "")
    ref = reference.parse_repo_tag(repo, tag or None) if repo else None
    author, comment = query.get("author", ""), query.get("comment", "")
    parent_id = c.image_id
    parent_layers = images.image_layers(parent_id)
    parent_config = images.config(parent_id)
    with tempfile.TemporaryFile(dir=svc.snapshotter.root) as tmp:
        with _frozen(request, c, query_bool(request, "pause", True)):
            imgchanges.write_layer_tar(svc.snapshotter, c.id, tmp)  # type: ignore[arg-type]
        empty = tmp.tell() == 1024
        tmp.seek(0)
        top = parent_layers[-1].chain_id if parent_layers else None
        layers = list(parent_layers)
        if not empty:
            layers.append(images.add_layer(tmp, parent_chain=top))
    created = imgconfig.rfc3339_nano()
    history = {"created": created}
    if author:
        history["author"] = author
    history["created_by"] = " ".join(c.config.get("Cmd") or [])
    if comment:
        history["comment"] = comment
    if empty:
        history["empty_layer"] = True
    new: dict[str, Any] = {
        "architecture": parent_config.get("architecture", "amd64"),
        "os": parent_config.get("os", "linux"),
        "created": created,
        "config": config,
        "container": c.id,
        "container_config": c.config,
        "docker_version": __version__,
        "rootfs": {"type": "layers", "diff_ids": [layer.diff_id for layer in layers]},
        "history": [*(parent_config.get("history") or []), history],
    }
    if parent_config.get("variant"):
        new["variant"] = parent_config["variant"]
    if author:
        new["author"] = author
    if comment:
        new["comment"] = comment
    return images.create_image(imgconfig.encode(new), layers, reference=ref, parent=parent_id)


@routes.post("/commit")
async def commit(request: web.Request) -> web.Response:
    name = request.query.get("container", "")
    c = _containers(request).get(name)
    body = await read_json(request, default={})
    if body is not None and not isinstance(body, dict):
        raise errdefs.InvalidArgument("invalid JSON: config must be an object")
    async with _containers(request).hold(c.id) as held:
        image_id = await asyncio.to_thread(_commit, request, held, body, request.query)
    return json_response({"Id": image_id}, status=201)


# -- image prune ------------------------------------------------------------------------


def _prune(request: web.Request, filters: dict[str, list[str]]) -> dict[str, Any]:
    images = request.app["images"]
    using = request.app["containers"].using_image
    for key in filters:
        if key not in ("dangling", "until", "label", "label!"):
            raise errdefs.InvalidArgument(f"invalid filter '{key}'")
    dangling = filters.get("dangling", ["true"])
    if any(v.lower() not in ("true", "false", "1", "0") for v in dangling):
        raise errdefs.InvalidArgument(f"invalid filter 'dangling={dangling[0]}'")
    dangling_only = dangling[-1].lower() in ("true", "1")
    list_filters = {k: v for k, v in filters.items() if k in ("until", "label")}
    if dangling_only:
        list_filters["dangling"] = ["true"]
    candidates = images.list(all=not dangling_only, filters=list_filters)
    unwanted = filters.get("label!", [])
    layer_sizes: dict[str, int] = {}
    deleted: list[dict[str, str]] = []
    for item in candidates:
        labels = item.get("Labels") or {}
        if any(_label_match(labels, spec) for spec in unwanted):
            continue
        if using(item["Id"]):
            continue
        for layer in images.image_layers(item["Id"]):
            layer_sizes[layer.diff_id] = layer.size
        names = item["RepoTags"] + item["RepoDigests"] if not dangling_only else []
        try:
            if names:
                for ref_name in names:
                    deleted += images.remove(
                        ref_name, force=False, prune=True, containers_using=using
                    )
            else:
                deleted += images.remove(
                    item["Id"], force=False, prune=True, containers_using=using
                )
        except (errdefs.Conflict, errdefs.NotFound):
            continue  # a parent of a kept image, or gone with a child
    remaining = set()
    for item in images.list(all=True):
        remaining.update(layer.diff_id for layer in images.image_layers(item["Id"]))
    reclaimed = sum(size for diff_id, size in layer_sizes.items() if diff_id not in remaining)
    return {"ImagesDeleted": deleted or None, "SpaceReclaimed": reclaimed}


def _label_match(labels: dict[str, str], spec: str) -> bool:
    key, eq, value = spec.partition("=")
    return key in labels and (not eq or labels[key] == value)


@routes.post("/images/prune")
async def images_prune(request: web.Request) -> web.Response:
    filters = query_filters(request)
    return json_response(await asyncio.to_thread(_prune, request, filters))
