"""``dockyardd``: parse dockerd's flags, wire the services, serve the API.

On SIGTERM or SIGINT the daemon stops serving and exits; containers keep
running under their shims and are picked up again at the next start (live
restore).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
import uuid
from pathlib import Path

from dockyard.daemon.config import DaemonConfig, socket_path

log = logging.getLogger("dockyardd")


def parse_args(argv: list[str] | None) -> DaemonConfig:
    parser = argparse.ArgumentParser(prog="dockyardd", description="The Dockyard engine daemon")
    parser.add_argument("-H", "--host", action="append", dest="hosts")
    parser.add_argument("--data-root")
    parser.add_argument("--exec-root")
    parser.add_argument("-p", "--pidfile")
    parser.add_argument("--config-file", default="/etc/dockyard/daemon.json")
    parser.add_argument("-l", "--log-level", choices=["debug", "info", "warn", "error", "fatal"])
    parser.add_argument("-D", "--debug", action="store_true", default=None)
    parser.add_argument("--cgroup-parent")
    parser.add_argument("--default-runtime")
    parser.add_argument("--add-runtime", action="append", default=[], metavar="NAME=PATH")
    parser.add_argument("--log-driver")
    parser.add_argument("--log-opt", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("-b", "--bridge")
    parser.add_argument("--bip")
    parser.add_argument("--registry-mirror", action="append", dest="registry_mirrors")
    parser.add_argument("--insecure-registry", action="append", dest="insecure_registries")
    parser.add_argument("--tlsverify", action="store_true", default=None)
    parser.add_argument("--tlscacert")
    parser.add_argument("--tlscert")
    parser.add_argument("--tlskey")
    parser.add_argument(
        "--cleanup",
        action="store_true",
        help="remove this daemon's bridges, veths, netns pins and firewall rules, then exit",
    )
    args = parser.parse_args(argv)

    config = DaemonConfig()
    config.apply_file(Path(args.config_file))
    config.certs_dir = Path(args.config_file).absolute().parent / "certs.d"
    simple = {
        "hosts": "hosts",
        "log_level": "log_level",
        "debug": "debug",
        "cgroup_parent": "cgroup_parent",
        "default_runtime": "default_runtime",
        "log_driver": "log_driver",
        "bridge": "bridge",
        "bip": "bip",
        "registry_mirrors": "registry_mirrors",
        "insecure_registries": "insecure_registries",
        "tlsverify": "tls_verify",
        "tlscacert": "tls_cacert",
        "tlscert": "tls_cert",
        "tlskey": "tls_key",
    }
    for arg, attr in simple.items():
        value = getattr(args, arg)
        if value is not None:
            setattr(config, attr, value)
    for arg in ("data_root", "exec_root", "pidfile"):
        value = getattr(args, arg)
        if value:
            setattr(config, arg, Path(value).absolute())
    for item in args.add_runtime:
        name, _, path = item.partition("=")
        config.runtimes[name] = path
    for item in args.log_opt:
        key, _, value = item.partition("=")
        config.log_opts[key] = value
    config.cleanup = args.cleanup
    if config.pidfile is None:
        config.pidfile = config.exec_root / "dockyardd.pid"
    if config.hosts == ["unix:///run/dockyard/dockyard.sock"] and args.exec_root:
        config.hosts = [f"unix://{config.exec_root / 'dockyard.sock'}"]
    return config


class Daemon:
    """Owns the services and the listening sockets of one daemon."""

    def __init__(self, config: DaemonConfig) -> None:
        self.config = config
        self.runner = None
        self.containers = None
        self.launcher = None
        self.networks = None

    async def start(self) -> None:
        from aiohttp import web

        from dockyard.api import build as build_api
        from dockyard.api import container_archive as container_archive_api
        from dockyard.api import containers as containers_api
        from dockyard.api import distribution as distribution_api
        from dockyard.api import image_archive as image_archive_api
        from dockyard.api import images as images_api
        from dockyard.api import networks as networks_api
        from dockyard.api import system as system_api
        from dockyard.api.app import make_app
        from dockyard.container.service import ContainerService
        from dockyard.image.service import ImageService
        from dockyard.network.dns import DnsServer
        from dockyard.network.service import NetworkService
        from dockyard.runtime.shim_client import Launcher
        from dockyard.store.content import ContentStore
        from dockyard.store.metadata import Database
        from dockyard.store.snapshots import choose_snapshotter

        config = self.config
        for path in (config.data_root, config.exec_root):
            path.mkdir(parents=True, exist_ok=True, mode=0o711)
        db = Database(config.db_path)
        content = ContentStore(config.content_root)
        snapshotter = choose_snapshotter(config.snapshots_root)
        images = ImageService(db=db, content=content, snapshotter=snapshotter)
        self.networks = NetworkService(config, db)
        self.networks.dns = DnsServer(self.networks, upstreams=self.networks.host_upstreams())
        self.launcher = Launcher()
        await self.launcher.start()
        self.containers = ContainerService(
            config=config,
            db=db,
            images=images,
            snapshotter=snapshotter,
            launcher=self.launcher,
            networks=self.networks,
        )
        self.networks.resolve_container = self.containers.get
        await self.networks.start()
        await self.containers.restore()

        app = make_app(
            {
                "config": config,
                "db": db,
                "images": images,
                "containers": self.containers,
                "containers_using_image": self.containers.using_image,
                "networks": self.networks,
                "daemon_id": _daemon_id(config),
            },
            [
                system_api.routes,
                containers_api.routes,
                image_archive_api.routes,
                images_api.routes,
                networks_api.routes,
                distribution_api.routes,
                build_api.routes,
                container_archive_api.routes,
            ],
        )
        self.runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self.runner.setup()
        for host in config.hosts:
            await self._listen(web, host)
        if config.pidfile:
            config.pidfile.parent.mkdir(parents=True, exist_ok=True)
            config.pidfile.write_text(f"{os.getpid()}\n")
        log.info("API listen on %s", ", ".join(config.hosts))

    async def _listen(self, web, host: str) -> None:
        path = socket_path(host)
        if path is not None:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
            site = web.UnixSite(self.runner, path)
            await site.start()
            os.chmod(path, 0o660)
            return
        if host.startswith("tcp://"):
            address = host[len("tcp://") :]
            hostname, _, port = address.rpartition(":")
            site = web.TCPSite(
                self.runner,
                hostname or "0.0.0.0",
                int(port or (2376 if self.config.tls_cert else 2375)),
                ssl_context=self._tls_context(),
            )
            await site.start()
            return
        raise SystemExit(f"dockyardd: unsupported host {host!r}")

    def _tls_context(self):
        """TLS for tcp:// hosts as dockerd: server cert and key; with
        --tlsverify, clients must present a certificate signed by --tlscacert."""
        config = self.config
        if not (config.tls_cert and config.tls_key):
            if config.tls_verify:
                raise SystemExit("dockyardd: --tlsverify needs --tlscert and --tlskey")
            return None
        import ssl

        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(config.tls_cert, config.tls_key)
        if config.tls_verify:
            if not config.tls_cacert:
                raise SystemExit("dockyardd: --tlsverify needs --tlscacert")
            context.load_verify_locations(config.tls_cacert)
            context.verify_mode = ssl.CERT_REQUIRED
        return context

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
        if self.containers is not None:
            await self.containers.close()
        if self.launcher is not None:
            await self.launcher.close()
        if self.networks is not None:
            await self.networks.close()
            if self.networks.dns is not None:
                await self.networks.dns.close()
        for host in self.config.hosts:
            path = socket_path(host)
            if path:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)
        if self.config.pidfile:
            with contextlib.suppress(FileNotFoundError):
                self.config.pidfile.unlink()


def _daemon_id(config: DaemonConfig) -> str:
    path = config.data_root / "engine-id"
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        value = str(uuid.uuid4())
        path.write_text(value + "\n")
        return value


async def _cleanup(config: DaemonConfig) -> None:
    """Tear down the networking state a daemon with this config left."""
    from dockyard.network.service import NetworkService
    from dockyard.store.metadata import Database

    networks = NetworkService(config, Database(config.db_path))
    await networks.start()
    await networks.teardown()


async def _serve(config: DaemonConfig) -> None:
    daemon = Daemon(config)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await daemon.start()
    try:
        await stop.wait()
    finally:
        await daemon.stop()


def main(argv: list[str] | None = None) -> None:
    config = parse_args(argv)
    level = "DEBUG" if config.debug else config.log_level.upper().replace("FATAL", "CRITICAL")
    level = "WARNING" if level == "WARN" else level
    logging.basicConfig(
        level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    if os.geteuid() != 0:
        raise SystemExit("dockyardd needs to be started with root privileges")
    asyncio.run(_cleanup(config) if config.cleanup else _serve(config))


if __name__ == "__main__":
    main()
