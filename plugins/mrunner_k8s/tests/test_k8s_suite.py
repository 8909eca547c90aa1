"""The shared backend suite (mrunner.testing) against the real loopback Kubernetes cluster."""

from __future__ import annotations

import uuid

import pytest

from mrunner.testing import BackendTestSuite, write_context

pytestmark = pytest.mark.k8s


class TestKubernetesBackend(BackendTestSuite):
    timeout = 300.0

    @pytest.fixture
    def backend_context(self, k8s_service, mrunner_home, tmp_path_factory, own_images, monkeypatch):
        from kubernetes import client, config

        monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path_factory.mktemp("docker-config")))  # no stored credentials
        namespace = f"mrt-{uuid.uuid4().hex[:8]}"
        keys = {
            "backend": "kubernetes", "project": "mrt-suite", "kubeconfig": k8s_service["kubeconfig"],
            "kube_context": k8s_service["kube_context"], "docker_host": k8s_service["docker_host"],
            "base_image": k8s_service["base_image"], "registry_url": own_images(namespace),
            "storage": "/storage", "storage_class": k8s_service["storage_class"], "default_pvc_size": "100Mi",
            "namespace": namespace, "grace_period": 5,
        }  # fmt: skip
        yield write_context(mrunner_home, "suite-k8s", keys)
        api = config.new_client_from_config(config_file=k8s_service["kubeconfig"], context=k8s_service["kube_context"])
        try:  # the plugin never deletes a namespace, so the test does
            client.CoreV1Api(api).delete_namespace(namespace, propagation_policy="Background")
        except client.ApiException:
            pass
