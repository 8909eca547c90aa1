"""Builders shared by the Kubernetes plugin's tests: a sweep and its runs as the core records them."""

from __future__ import annotations

import uuid

import pytest

from mrunner.planning import validated_context
from mrunner.records import Run, Sweep


def _make_sweep(**context_values) -> Sweep:
    context = validated_context(
        "test-k8s", {"backend": "kubernetes", "registry_url": "127.0.0.1:5000", **context_values}
    )
    return Sweep(
        id="brave-turing-3f2a9c",
        name="train",
        created_at=0.0,
        context_name="test-k8s",
        backend="kubernetes",
        context=context,
        project="Demo_Project",
        snapshot_digest="d" * 64,
        project_dir="/nowhere",
        workdir="src",
        package={"image": "127.0.0.1:5000/demo:c-1", "entries": ["d outputs", "d src", "l src/train.py"]},
    )


def _make_run(index: int = 0, attempt: int = 0, **env) -> Run:
    return Run(
        sweep_id="brave-turing-3f2a9c",
        index=index,
        id=f"{index:016x}",
        name="Exp_0003.train",
        parameters={"lr": 0.1, "model": {"depth": 3}},
        command=["python3", "train.py", "lr=0.1"],
        env=dict(env),
        attempt=attempt,
    )


@pytest.fixture
def make_sweep():
    """``make_sweep(**context_keys)``: a recorded-looking sweep with a validated kubernetes context."""
    return _make_sweep


@pytest.fixture
def make_run():
    """``make_run(index, attempt, **env)``: one planned experiment of that sweep."""
    return _make_run


@pytest.fixture
def sweep() -> Sweep:
    return _make_sweep(cpu=2, mem="4Gi", gpu=1, storage="/storage", secrets=["MY_TOKEN"])


@pytest.fixture
def own_images(k8s_service):
    """``own_images(namespace, registry=None)``: a registry path for this test's images alone, whose images
    are removed from the service's dockerd when the test ends (the registries keep their copies). The dockerd
    and registries are shared by every test run on the machine, concurrent ones too: a test touches only its
    own images."""
    folders: list[str] = []

    def path(namespace: str, registry: str | None = None) -> str:
        folders.append(f"/mrunner-tests/{namespace}/")
        return f"{registry or k8s_service['registry']}/mrunner-tests/{namespace}"

    yield path
    import docker

    client = docker.DockerClient(base_url=k8s_service["docker_host"])
    # the list's own tags: ``images.list()`` inspects each image after listing, and one another test removed
    # meanwhile (the dockerd is shared) raised ImageNotFound at teardown
    listed = client.api.images()
    for tag in {tag for image in listed for tag in image.get("RepoTags") or [] if any(f in tag for f in folders)}:
        try:
            client.images.remove(tag, force=True)
        except docker.errors.ImageNotFound:
            pass


@pytest.fixture
def cluster(k8s_service):
    """The core and batch API clients of the test cluster."""
    from kubernetes import client, config

    api = config.new_client_from_config(config_file=k8s_service["kubeconfig"], context=k8s_service["kube_context"])
    return client.CoreV1Api(api), client.BatchV1Api(api)


@pytest.fixture
def namespace(cluster):
    """A namespace of this test alone; the plugin never deletes one, so the test does."""
    name = f"mrt-{uuid.uuid4().hex[:8]}"
    yield name
    try:
        cluster[0].delete_namespace(name, propagation_policy="Background")
    except Exception:  # the test failed before creating it
        pass
