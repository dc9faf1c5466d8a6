"""Registry peers for the engine's e2e tests: Debian's ``docker-registry``
(the CNCF Distribution registry) with optional htpasswd, TLS, client-cert
checking or pull-through proxying; a throwaway CA with server and client
certificates made by the ``openssl`` CLI; ``dockyard registry serve`` with
TLS; and a fake ``docker-credential-<name>`` helper."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def wait_port(host: str, port: int, proc: subprocess.Popen, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=1):
                return
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError(f"registry exited with {proc.returncode}") from None
            time.sleep(0.03)
    raise RuntimeError(f"{host}:{port} did not come up")


def stop(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


# -- certificates -------------------------------------------------------------------------
@dataclass(frozen=True)
class Pki:
    ca: Path  # the CA certificate (what certs.d/<host>/ca.crt holds)
    cert: Path  # server certificate for `ip`
    key: Path
    client_cert: Path  # a client certificate signed by the same CA
    client_key: Path


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=30)


def make_pki(base: Path, ip: str) -> Pki:
    """A CA, a server certificate for ``ip`` and a client certificate (EC P-256: fast)."""
    base.mkdir(parents=True, exist_ok=True)
    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes")
    ca, ca_key = base / "ca.pem", base / "ca.key"
    _openssl("req", "-x509", *ec, "-keyout", str(ca_key), "-out", str(ca), "-days", "1",
             "-subj", "/CN=dockyard test CA")  # fmt: skip
    (base / "server.ext").write_text(
        f"subjectAltName=IP:{ip}\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n"
    )
    (base / "client.ext").write_text("extendedKeyUsage=clientAuth\nbasicConstraints=CA:FALSE\n")
    out = {}
    for name, subject in (("server", f"/CN={ip}"), ("client", "/CN=dockyard client")):
        key, csr, crt = base / f"{name}.key", base / f"{name}.csr", base / f"{name}.crt"
        _openssl("req", "-new", *ec, "-keyout", str(key), "-out", str(csr), "-subj", subject)
        _openssl("x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key),
                 "-CAcreateserial", "-out", str(crt), "-days", "1",
                 "-extfile", str(base / f"{name}.ext"))  # fmt: skip
        out[name] = (crt, key)
    return Pki(ca, *out["server"], *out["client"])


def non_loopback_ip() -> str:
    """An address of this host outside 127.0.0.0/8, so the engine verifies TLS
    (loopback registries are insecure by default, as in dockerd)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.254", 9))  # no packet is sent
            ip = s.getsockname()[0]
        except OSError:
            ip = ""
    if not ip or ip.startswith("127."):
        out = subprocess.run(["ip", "-4", "-o", "addr"], capture_output=True, text=True).stdout
        ips = [line.split()[3].split("/")[0] for line in out.splitlines()]
        ip = next((i for i in ips if not i.startswith("127.")), "")
    return ip


# -- docker-registry (CNCF Distribution) ------------------------------------------------------
class DistributionRegistry:
    """``docker-registry serve`` on ``ip:port`` with the given options."""

    def __init__(self, base: Path, *, ip: str = "127.0.0.1", htpasswd: Path | None = None,
                 pki: Pki | None = None, client_cas: bool = False,
                 proxy: str | None = None) -> None:  # fmt: skip
        base.mkdir(parents=True, exist_ok=True)
        self.port = free_port(ip)
        self.ip = ip
        self.host = f"{ip}:{self.port}"
        lines = [
            "version: 0.1",
            "log: {level: error, accesslog: {disabled: true}}",
            f"storage: {{filesystem: {{rootdirectory: {base / 'data'}}}, "
            "delete: {enabled: true}}",
        ]
        http = f"  addr: {self.host}\n"
        if pki is not None:
            http += f"  tls:\n    certificate: {pki.cert}\n    key: {pki.key}\n"
            if client_cas:
                http += f"    clientcas:\n      - {pki.ca}\n"
        lines.append("http:\n" + http.rstrip("\n"))
        if htpasswd is not None:
            lines.append(f"auth: {{htpasswd: {{realm: r, path: {htpasswd}}}}}")
        if proxy is not None:
            lines.append(f"proxy: {{remoteurl: {proxy}}}")
        (base / "config.yml").write_text("\n".join(lines) + "\n")
        with open(base / "registry.log", "wb") as log:
            self.proc = subprocess.Popen(
                ["docker-registry", "serve", str(base / "config.yml")],
                stdout=subprocess.DEVNULL,
                stderr=log,
            )
        wait_port(ip, self.port, self.proc)

    def stop(self) -> None:
        stop(self.proc)


def htpasswd_file(path: Path, user: str, password: str) -> Path:
    import bcrypt

    hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=4)).decode()
    path.write_text(f"{user}:{hashed}\n")
    return path


# -- our registry with TLS ------------------------------------------------------------------
def spawn_our_registry(
    root: Path, *extra: str, ip: str = "127.0.0.1"
) -> tuple[int, subprocess.Popen]:
    """Starts ``dockyard registry serve`` (any flags, TLS too) on a free port
    of ``ip``; returns the port and the process, not yet listening."""
    port = free_port(ip)
    proc = subprocess.Popen(
        [sys.executable, "-m", "dockyard.cli.registry", "serve",
         "--addr", f"{ip}:{port}", "--root", str(root), *extra],
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
    )  # fmt: skip
    return port, proc


@contextmanager
def our_registry(root: Path, *extra: str, ip: str = "127.0.0.1") -> Iterator[str]:
    """``dockyard registry serve`` (any flags, TLS too); yields ``ip:port``."""
    port, proc = spawn_our_registry(root, *extra, ip=ip)
    try:
        wait_port(ip, port, proc)
        yield f"{ip}:{port}"
    finally:
        stop(proc)


# -- a credential helper --------------------------------------------------------------------
def credential_helper(bin_dir: Path, name: str, store: Path) -> Path:
    """``docker-credential-<name>``: the helper protocol over a JSON file
    (``store``), logging each action to ``store.log``."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    script = bin_dir / f"docker-credential-{name}"
    script.write_text(
        f"#!{sys.executable}\n"
        + textwrap.dedent(
            f"""\
            import json, sys
            path = {str(store)!r}
            try:
                data = json.load(open(path))
            except FileNotFoundError:
                data = {{}}
            action = sys.argv[1]
            payload = sys.stdin.read().strip()
            open(path + ".log", "a").write(action + "\\n")
            if action == "store":
                entry = json.loads(payload)
                data[entry["ServerURL"]] = [entry["Username"], entry["Secret"]]
            elif action == "get":
                if payload not in data:
                    print("credentials not found in native keychain")
                    sys.exit(1)
                user, secret = data[payload]
                print(json.dumps({{"ServerURL": payload, "Username": user, "Secret": secret}}))
            elif action == "erase":
                if payload not in data:
                    print("credentials not found in native keychain")
                    sys.exit(1)
                del data[payload]
            elif action == "list":
                print(json.dumps({{k: v[0] for k, v in data.items()}}))
            json.dump(data, open(path, "w"))
            """
        )
    )
    script.chmod(0o755)
    return script
