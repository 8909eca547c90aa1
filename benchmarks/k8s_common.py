"""Shared by the Kubernetes benchmarks: an isolated mrunner home, a context pointing at the loopback
cluster (tests/services/k8s), a project folder, and a counter of Kubernetes API requests."""

from __future__ import annotations

import json
import os
import tempfile
import uuid
from pathlib import Path
from urllib.parse import urlparse

SERVICES = Path(os.environ.get("MRUNNER_SERVICES_DIR", "/tmp/mrunner-services"))


def service() -> dict:
    path = SERVICES / "k8s.json"
    if not path.exists():
        raise SystemExit(f"{path} is missing: start the cluster with tests/services/k8s/start.sh")
    return json.loads(path.read_text())


def isolated_home() -> Path:
    """A fresh XDG config/data home (records, contexts) and an empty docker config (no stored logins)."""
    home = Path(tempfile.mkdtemp(prefix="mrunner-bench-"))
    os.environ["XDG_CONFIG_HOME"] = str(home / "config")
    os.environ["XDG_DATA_HOME"] = str(home / "data")
    os.environ["DOCKER_CONFIG"] = str(home / "docker")
    return home


def write_context(k8s: dict, namespace: str, **keys) -> None:
    context = {
        "backend": "kubernetes",
        "kubeconfig": k8s["kubeconfig"],
        "kube_context": k8s["kube_context"],
        "docker_host": k8s["docker_host"],
        "registry_url": f"{k8s['registry']}/mrunner-bench",
        "base_image": k8s["base_image"],
        "storage": "/storage",
        "storage_class": k8s["storage_class"],
        "default_pvc_size": "100Mi",
        "namespace": namespace,
        **keys,
    }
    folder = Path(os.environ["XDG_CONFIG_HOME"]) / "mrunner" / "context"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "bench-k8s.yaml").write_text(json.dumps(context))


def project(home: Path, code_kib: int = 64) -> Path:
    """A project of a script plus ``code_kib`` KiB of other source, unique so its first image is new."""
    folder = home / "project"
    (folder / "lib").mkdir(parents=True)
    (folder / "exp.py").write_text("from mrunner import get_configuration\nprint(get_configuration())\n")
    lines = (f"VALUE_{i} = '{os.urandom(24).hex()}'\n" for i in range(code_kib * 1024 // 64))
    (folder / "lib" / "module.py").write_text("".join(lines))  # about code_kib KiB of source text
    (folder / "unique.txt").write_text(uuid.uuid4().hex)
    return folder


class ApiCounter:
    """Counts the HTTP requests the kubernetes client sends (every API call is one)."""

    def __init__(self) -> None:
        from kubernetes.client import rest

        self.calls: list[str] = []
        original = rest.RESTClientObject.request

        def counting(client, method, url, *args, **kwargs):
            self.calls.append(f"{method} {urlparse(url).path}")
            return original(client, method, url, *args, **kwargs)

        rest.RESTClientObject.request = counting

    def take(self) -> list[str]:
        calls, self.calls = self.calls, []
        return calls


WHEEL_PATH = "/opt/wheels/bench_payload-1.0-py3-none-any.whl"


def wheel(megabytes: int) -> bytes:
    """A pure-Python wheel carrying ``megabytes`` MB of incompressible data (a stand-in for numpy, torch)."""
    import base64
    import hashlib
    import io
    import zipfile

    files = {
        "bench_payload/__init__.py": b"",
        **{f"bench_payload/blob{i}.bin": os.urandom(1_000_000) for i in range(megabytes)},
        "bench_payload-1.0.dist-info/METADATA": b"Metadata-Version: 2.1\nName: bench-payload\nVersion: 1.0\n",
        "bench_payload-1.0.dist-info/WHEEL": b"Wheel-Version: 1.0\nGenerator: mrunner-bench\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = (
        "".join(
            f"{name},sha256={base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b'=').decode()},{len(data)}\n"
            for name, data in files.items()
        )
        + "bench_payload-1.0.dist-info/RECORD,,\n"
    )
    files["bench_payload-1.0.dist-info/RECORD"] = record.encode()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def heavy_base(k8s: dict, megabytes: int) -> str:
    """A local base image: the service's python image plus a wheel of ``megabytes`` MB at WHEEL_PATH, which
    a requirements file can install offline. It is in no registry, so the first push of an image built on
    it uploads it, as a user's first push of a new base to their registry does."""
    import io
    import tarfile

    import docker

    tag = f"mrunner-bench/base:{uuid.uuid4().hex[:8]}"
    archive = io.BytesIO()
    dockerfile = f"FROM {k8s['base_image']}\nCOPY payload.whl {WHEEL_PATH}\n".encode()
    with tarfile.open(fileobj=archive, mode="w") as tar:
        for name, data in (("Dockerfile", dockerfile), ("payload.whl", wheel(megabytes))):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    archive.seek(0)
    client = docker.DockerClient(base_url=k8s["docker_host"])
    for event in client.api.build(fileobj=archive, custom_context=True, tag=tag, decode=True, network_mode="none"):
        if "error" in event:
            raise SystemExit(event["error"])
    return tag


def delete_namespace(k8s: dict, name: str) -> None:
    from kubernetes import client, config

    api = config.new_client_from_config(config_file=k8s["kubeconfig"], context=k8s["kube_context"])
    client.CoreV1Api(api).delete_namespace(name, propagation_policy="Background")


def remove_images(k8s: dict, references: list) -> None:
    """Remove the benchmark's images from the service's dockerd (the registry keeps its copies)."""
    import docker

    client = docker.DockerClient(base_url=k8s["docker_host"])
    for reference in filter(None, references):
        try:
            client.images.remove(reference, force=True)
        except docker.errors.ImageNotFound:
            pass
