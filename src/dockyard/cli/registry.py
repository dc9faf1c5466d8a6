"""``dockyard registry serve`` and ``dockyard registry gc``: run the OCI
distribution registry, or collect its garbage once from the command line.

Also runnable as ``python -m dockyard.cli.registry serve ...``."""

from __future__ import annotations

import argparse
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from dockyard.cli.main import Cli


def _serve_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="dockyard registry serve")
    p.add_argument("--addr", default="127.0.0.1:5000", help="HOST:PORT to listen on")
    p.add_argument("--root", required=True, help="storage root directory")
    p.add_argument("--tls-cert")
    p.add_argument("--tls-key")
    p.add_argument("--htpasswd", help="bcrypt htpasswd file")
    p.add_argument("--auth", choices=("none", "htpasswd", "token"), default=None)
    p.add_argument("--token-realm", help="token endpoint URL in challenges")
    p.add_argument("--service", default="dockyard-registry")
    p.add_argument("--anonymous-pull", action="store_true", help="allow pulls without auth")
    p.add_argument("--gc-interval", type=float, default=0.0, help="seconds; 0 = no online GC")
    p.add_argument("--gc-grace", type=float, default=3600.0)
    p.add_argument("--log-level", default="warning")
    return p


def cmd_serve(cli: Cli | None, args: list[str]) -> int:
    import logging
    import ssl
    from pathlib import Path

    from aiohttp import web

    from dockyard.registry.server import Config, Registry

    opts = _serve_parser().parse_args(args)
    logging.basicConfig(level=opts.log_level.upper())
    mode = opts.auth or ("htpasswd" if opts.htpasswd else "none")
    host, _, port = opts.addr.rpartition(":")
    context = None
    if opts.tls_cert or opts.tls_key:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(opts.tls_cert, opts.tls_key)
    config = Config(
        root=Path(opts.root),
        auth=mode,
        htpasswd=Path(opts.htpasswd) if opts.htpasswd else None,
        token_realm=opts.token_realm,
        service=opts.service,
        anonymous_pull=opts.anonymous_pull,
        gc_interval=opts.gc_interval,
        gc_grace=opts.gc_grace,
    )
    registry = Registry(config)
    web.run_app(
        registry.app(),
        host=host.strip("[]") or "0.0.0.0",
        port=int(port),
        ssl_context=context,
        print=None,
        access_log=None,
    )
    return 0


def cmd_gc(cli: Cli | None, args: list[str]) -> int:
    from pathlib import Path

    from dockyard.registry import gc
    from dockyard.registry.storage import FilesystemStorage

    p = argparse.ArgumentParser(prog="dockyard registry gc")
    p.add_argument("--root", required=True)
    p.add_argument("--grace", type=float, default=3600.0, help="keep blobs younger than this")
    opts = p.parse_args(args)
    report = gc.collect(FilesystemStorage(Path(opts.root)), grace=opts.grace)
    out = cli.out if cli is not None else sys.stdout
    out.write(
        f"marked {report.marked}, deleted {len(report.deleted)} blobs "
        f"({report.freed_bytes} bytes), kept {report.kept_recent} recent\n"
    )
    return 0


def main(argv: list[str]) -> int:
    commands = {"serve": cmd_serve, "gc": cmd_gc}
    if not argv or argv[0] not in commands:
        sys.stderr.write("usage: dockyard registry {serve,gc} ...\n")
        return 2
    return commands[argv[0]](None, argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
