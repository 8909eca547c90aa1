"""Shared by the Kubernetes benchmarks: an isolated mrunner home, a context pointing at the loopback
cluster (tests/services/k8s), a project folder, and a counter of Kubernetes API requests."""

from __future__ import annotations

import json
import os
import tempfile
import uuid
from pathlib import Path

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
        "backend": "kubernetes", "kubeconfig": k8s["kubeconfig"], "kube_context": k8s["kube_context"],
        "docker_host": k8s["docker_host"], "registry_url": f"{k8s['registry']}/mrunner-bench",
        "base_image": k8s["base_image"], "storage": "/storage", "storage_class": k8s["storage_class"],
        "default_pvc_size": "100Mi", "host_network": True, "namespace": namespace, **keys,
    }  # fmt: skip
    folder = Path(os.environ["XDG_CONFIG_HOME"]) / "mrunner" / "context"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "bench-k8s.yaml").write_text(json.dumps(context))


def project(home: Path, code_kib: int = 64) -> Path:
    """A project of a script plus ``code_kib`` KiB of other source, unique so its first image is new."""
    folder = home / "project"
    (folder / "lib").mkdir(parents=True)
    (folder / "exp.py").write_text("from mrunner import get_configuration\nprint(get_configuration())\n")
    (folder / "lib" / "module.py").write_text("# " + "x" * 100 + "\n" * (code_kib * 10))
    (folder / "unique.txt").write_text(uuid.uuid4().hex)
    return folder


class ApiCounter:
    """Counts the HTTP requests the kubernetes client sends (every API call is one)."""

    def __init__(self) -> None:
        from kubernetes.client import rest

        self.calls: list[str] = []
        original = rest.RESTClientObject.request

        def counting(client, method, url, *args, **kwargs):
            self.calls.append(f"{method} {url.split('?')[0].split('/api', 1)[-1]}")
            return original(client, method, url, *args, **kwargs)

        rest.RESTClientObject.request = counting

    def take(self) -> list[str]:
        calls, self.calls = self.calls, []
        return calls


def delete_namespace(k8s: dict, name: str) -> None:
    from kubernetes import client, config

    api = config.new_client_from_config(config_file=k8s["kubeconfig"], context=k8s["kube_context"])
    client.CoreV1Api(api).delete_namespace(name, propagation_policy="Background")
