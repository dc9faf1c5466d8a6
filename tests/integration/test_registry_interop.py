"""Interop: skopeo (Debian's) copies images to and from our registry over
plain HTTP on loopback, with and without htpasswd auth, and the images
come back byte for byte."""

from __future__ import annotations

import json
import shutil
import subprocess

import bcrypt
import pytest

from tests.integration.registry_helpers import busybox_tar, registry_process, write_oci_layout

pytestmark = pytest.mark.skipif(shutil.which("skopeo") is None, reason="needs skopeo")


def skopeo(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["skopeo", "--insecure-policy", *args], capture_output=True, text=True, check=check,
        timeout=120,
    )  # fmt: skip


@pytest.fixture(scope="module")
def layout(tmp_path_factory):
    path = tmp_path_factory.mktemp("oci") / "busybox"
    digest = write_oci_layout(path, busybox_tar(), tag="1.0")
    return path, digest


def _layer_digests(layout_dir) -> list[str]:
    index = json.loads((layout_dir / "index.json").read_text())
    digest = index["manifests"][0]["digest"].split(":")[1]
    manifest = json.loads((layout_dir / "blobs" / "sha256" / digest).read_text())
    return [layer["digest"] for layer in manifest["layers"]]


def test_skopeo_roundtrip_oci_and_docker_archive(tmp_path, layout):
    src, digest = layout
    with registry_process(tmp_path / "root") as (addr, _):
        ref = f"docker://{addr}/team/busybox:1.0"
        skopeo("copy", "--dest-tls-verify=false", f"oci:{src}:1.0", ref)
        out = json.loads(skopeo("inspect", "--tls-verify=false", "--raw", ref).stdout)
        assert out["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
        info = json.loads(skopeo("inspect", "--tls-verify=false", ref).stdout)
        assert info["Digest"] == digest
        tags = json.loads(
            skopeo("list-tags", "--tls-verify=false", f"docker://{addr}/team/busybox").stdout
        )
        assert tags["Tags"] == ["1.0"]
        # back out, to an OCI layout and a docker-archive
        skopeo("copy", "--src-tls-verify=false", ref, f"oci:{tmp_path / 'back'}:1.0")
        assert _layer_digests(tmp_path / "back") == _layer_digests(src)
        archive = tmp_path / "bb.tar"
        skopeo("copy", "--src-tls-verify=false", ref, f"docker-archive:{archive}:team/busybox:1.0")
        assert archive.stat().st_size > 100_000
        # a docker-archive pushed as Docker schema2 (skopeo converts), then pulled again
        ref2 = f"docker://{addr}/other/bb:v2"
        skopeo(
            "copy", "--dest-tls-verify=false", "--format", "v2s2", f"docker-archive:{archive}", ref2
        )
        raw = json.loads(skopeo("inspect", "--tls-verify=false", "--raw", ref2).stdout)
        assert raw["mediaType"] == "application/vnd.docker.distribution.manifest.v2+json"
        skopeo("copy", "--src-tls-verify=false", ref2, f"oci:{tmp_path / 'back2'}:v2")
        # registry-to-registry copy (cross-repo blobs)
        skopeo("copy", "--src-tls-verify=false", "--dest-tls-verify=false", ref,
               f"docker://{addr}/team/copy:1.0")  # fmt: skip
        skopeo("delete", "--tls-verify=false", f"docker://{addr}/team/copy:1.0")
        gone = skopeo(
            "inspect", "--tls-verify=false", f"docker://{addr}/team/copy:1.0", check=False
        )
        assert gone.returncode != 0


def test_skopeo_with_htpasswd(tmp_path, layout):
    src, _ = layout
    htpasswd = tmp_path / "htpasswd"
    htpasswd.write_text(f"alice:{bcrypt.hashpw(b'pw', bcrypt.gensalt(5)).decode()}\n")
    with registry_process(tmp_path / "root", "--htpasswd", str(htpasswd)) as (addr, _):
        ref = f"docker://{addr}/private/bb:1"
        denied = skopeo("copy", "--dest-tls-verify=false", f"oci:{src}:1.0", ref, check=False)
        assert denied.returncode != 0 and "unauthorized" in denied.stderr.lower()
        wrong = skopeo("copy", "--dest-tls-verify=false", "--dest-creds", "alice:bad",
                       f"oci:{src}:1.0", ref, check=False)  # fmt: skip
        assert wrong.returncode != 0
        skopeo("copy", "--dest-tls-verify=false", "--dest-creds", "alice:pw", f"oci:{src}:1.0", ref)
        skopeo("copy", "--src-tls-verify=false", "--src-creds", "alice:pw", ref,
               f"oci:{tmp_path / 'back'}:1")  # fmt: skip
        assert _layer_digests(tmp_path / "back") == _layer_digests(src)


def test_skopeo_with_token_auth(tmp_path, layout):
    src, _ = layout
    htpasswd = tmp_path / "htpasswd"
    htpasswd.write_text(f"alice:{bcrypt.hashpw(b'pw', bcrypt.gensalt(5)).decode()}\n")
    args = ("--htpasswd", str(htpasswd), "--auth", "token", "--anonymous-pull")
    with registry_process(tmp_path / "root", *args) as (addr, _):
        ref = f"docker://{addr}/tok/bb:1"
        denied = skopeo("copy", "--dest-tls-verify=false", f"oci:{src}:1.0", ref, check=False)
        assert denied.returncode != 0
        skopeo("copy", "--dest-tls-verify=false", "--dest-creds", "alice:pw", f"oci:{src}:1.0", ref)
        # anonymous pull through an anonymous token
        skopeo("copy", "--src-tls-verify=false", ref, f"oci:{tmp_path / 'back'}:1")
        assert _layer_digests(tmp_path / "back") == _layer_digests(src)
