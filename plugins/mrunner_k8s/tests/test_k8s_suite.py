"""The shared backend suite (mrunner.testing) against the real loopback Kubernetes cluster."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from mrunner.testing import BackendTestSuite, write_context


class TestKubernetesBackend(BackendTestSuite):
    timeout = 300.0

    @pytest.fixture
    def backend_context(self, k8s_service, mrunner_home, tmp_path_factory, own_images, monkeypatch):
        from kubernetes import client, config

        monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path_factory.mktemp("docker-config")))  # no stored credentials
        namespace = f"mrt-{uuid.uuid4().hex[:8]}"
        keys = {
            "backend": "kubernetes",
            "project": "mrt-suite",
            "kubeconfig": k8s_service["kubeconfig"],
            "kube_context": k8s_service["kube_context"],
            "docker_host": k8s_service["docker_host"],
            "base_image": k8s_service["base_image"],
            "registry_url": own_images(namespace),
            "storage": "/storage",
            "storage_class": k8s_service["storage_class"],
            "default_pvc_size": "100Mi",
            "namespace": namespace,
            "grace_period": 5,
        }
        api = config.new_client_from_config(config_file=k8s_service["kubeconfig"], context=k8s_service["kube_context"])
        self.core, self.namespace = client.CoreV1Api(api), namespace
        yield write_context(mrunner_home, "suite-k8s", keys)
        try:  # the plugin never deletes a namespace, so the test does
            self.core.delete_namespace(namespace, propagation_policy="Background")
        except client.ApiException:
            pass

    def interrupt_a_pull(self, sweep: str, folder: Path, project: Path) -> None:
        """The suite's interrupted pull; its pod is deleted as the pull stops (Ctrl-C), not left to end by itself."""
        super().interrupt_a_pull(sweep, folder, project)
        pods = self.core.list_namespaced_pod(self.namespace, label_selector="mrunner/pull-of").items
        assert [pod.metadata.name for pod in pods] == []
