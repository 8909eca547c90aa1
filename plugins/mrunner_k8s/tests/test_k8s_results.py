"""`mrunner pull` and `mrunner gc` on the loopback Kubernetes cluster, beyond the shared suite's tests
(test_k8s_suite.py): the pull pod never outlives its pull, a pull that cannot happen says why in one line,
and gc removes exactly the ended sweeps' objects while a sweep runs (their logs stay readable)."""

from __future__ import annotations

import json
import uuid
from dataclasses import replace
from pathlib import Path

import pytest

from mrunner.testing import wait_for, write_context

EXPERIMENT = """\
import os, time
from mrunner import get_configuration

config = get_configuration()
with open(os.path.join(os.environ["MRUNNER_EXPERIMENT_DIR"], "out.txt"), "w") as stream:
    stream.write(str(config.i))
print("experiment", config.i, flush=True)
time.sleep(float(config.get("sleep", 0)))
"""
PULL_PODS = "app.kubernetes.io/managed-by=mrunner,mrunner/pull-of"


@pytest.fixture
def project(tmp_path, tmp_path_factory, k8s_service, namespace, own_images, monkeypatch, mrunner, mrunner_home):
    """exp.py in the test's folder and the context `results-k8s` (with a secret, so sweeps have a Secret)."""
    (tmp_path / "exp.py").write_text(EXPERIMENT)
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path_factory.mktemp("docker-config")))  # no stored credentials
    monkeypatch.setenv("MRT_RESULTS_TOKEN", uuid.uuid4().hex)
    context = {
        "backend": "kubernetes",
        "project": "mrt-results",
        "kubeconfig": k8s_service["kubeconfig"],
        "kube_context": k8s_service["kube_context"],
        "docker_host": k8s_service["docker_host"],
        "base_image": k8s_service["base_image"],
        "registry_url": own_images(namespace),
        "storage": "/storage",
        "storage_class": k8s_service["storage_class"],
        "default_pvc_size": "100Mi",
        "namespace": namespace,
        "secrets": ["MRT_RESULTS_TOKEN"],
        "grace_period": 5,
    }
    write_context(mrunner_home, "results-k8s", context)
    mrunner.cwd = tmp_path
    return tmp_path


def submit(mrunner, *args: str) -> str:
    result = mrunner("+context=results-k8s", "exp.py", *args)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().splitlines()[-1]


def states(mrunner, sweep: str) -> list[str]:
    result = mrunner("status", sweep, "--json")
    assert result.returncode == 0, result.stderr
    return [run["state"] for run in json.loads(result.stdout)["experiments"]]


def objects(cluster, namespace: str, sweep: str) -> dict[str, list[str]]:
    """The sweep's Jobs, Secrets and ConfigMaps in the namespace, by kind."""
    core, batch = cluster
    selector = f"mrunner/sweep={sweep}"
    found = {
        "Job": batch.list_namespaced_job(namespace, label_selector=selector).items,
        "Secret": core.list_namespaced_secret(namespace, label_selector=selector).items,
        "ConfigMap": core.list_namespaced_config_map(namespace, label_selector=selector).items,
    }
    return {kind: sorted(item.metadata.name for item in items) for kind, items in found.items()}


def test_a_pull_leaves_no_pod_and_status_says_where_the_folder_is(mrunner, project, cluster, namespace):
    sweep = submit(mrunner, "i=7", "--wait")
    wait_for(lambda: states(mrunner, sweep), lambda now: set(now) == {"completed"}, timeout=180, every=0.5)
    shown = mrunner("status", f"{sweep}/0")
    assert f"output folder: pvc/mrunner-storage:/storage/mrt-results/{sweep}/0-exp" in shown.stdout, shown.stdout
    pulled = mrunner("pull", sweep, "--to", str(project / "results"))
    assert pulled.returncode == 0 and "pulled 1 file " in pulled.stdout, pulled.stdout + pulled.stderr
    assert (project / "results" / "0-exp" / "out.txt").read_text() == "7"
    assert cluster[0].list_namespaced_pod(namespace, label_selector=PULL_PODS).items == []


def test_a_pull_that_cannot_happen_says_why_in_one_line(
    k8s_service, make_sweep, make_run, cluster, namespace, tmp_path
):
    """Through the hook, against the real API server: the claim is missing, the image cannot be pulled, the
    API server cannot be reached. No pull pod stays."""
    from kubernetes import client
    from mrunner_k8s.cluster import Cluster
    from mrunner_k8s.plugin import KubernetesBackend

    from mrunner.errors import BackendError
    from mrunner.reporter import Reporter

    core = cluster[0]
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=namespace)))
    sweep = make_sweep(
        kubeconfig=k8s_service["kubeconfig"],
        kube_context=k8s_service["kube_context"],
        namespace=namespace,
        storage_class=k8s_service["storage_class"],
        default_pvc_size="100Mi",
    )
    missing_image = f"{k8s_service['registry']}/mrunner-tests/{namespace}/none:missing"
    sweep = replace(sweep, package={**sweep.package, "image": missing_image})

    def pull(what) -> str:
        with pytest.raises(BackendError) as raised:
            KubernetesBackend().pull(what, [make_run(0)], tmp_path, [], Reporter(quiet=True))
        message = str(raised.value)
        assert "\n" not in message
        assert core.list_namespaced_pod(namespace, label_selector=PULL_PODS).items == []
        return message

    assert f"volume claim mrunner-storage is gone from namespace {namespace}" in pull(sweep)

    Cluster(sweep.context, namespace).ensure_claim(sweep.context, sweep.project)
    message = pull(sweep)
    assert "cannot start: ErrImagePull" in message or "cannot start: ImagePullBackOff" in message, message

    server = k8s_service["api_server"]
    kubeconfig = tmp_path / "down.kubeconfig"  # the same cluster on a port nothing listens on
    kubeconfig.write_text(Path(k8s_service["kubeconfig"]).read_text().replace(server, "https://127.0.0.1:9"))
    down = replace(sweep, context={**sweep.context, "kubeconfig": str(kubeconfig)})
    assert "cannot reach the Kubernetes API server at https://127.0.0.1:9 to read volume claim" in pull(down)


def ended_pull_pod(core, namespace: str, sweep: str, image: str) -> str:
    """A pull pod that has ended (as one whose mrunner was killed does, a minute after its transfer)."""
    from kubernetes import client

    name = f"{sweep}-pull-ended"
    labels = {"app.kubernetes.io/managed-by": "mrunner", "mrunner/pull-of": sweep}
    container = client.V1Container(name="pull", image=image, command=["python3", "-c", "pass"])
    spec = client.V1PodSpec(restart_policy="Never", containers=[container])
    core.create_namespaced_pod(
        namespace, client.V1Pod(metadata=client.V1ObjectMeta(name=name, labels=labels), spec=spec)
    )
    wait_for(
        lambda: core.read_namespaced_pod(name, namespace).status.phase == "Succeeded",
        timeout=120,
        every=0.5,
        what="the pull pod's end",
    )
    return name


def test_gc_removes_the_ended_sweeps_objects_and_keeps_the_running_ones(
    mrunner, project, cluster, namespace, k8s_service
):
    from kubernetes import client
    from mrunner_k8s.plugin import KubernetesBackend

    from mrunner.backend import Keep
    from mrunner.reporter import Reporter
    from mrunner.store import Store

    core = cluster[0]
    ended = submit(mrunner, "-m", "i=1,2", "--wait")
    wait_for(lambda: states(mrunner, ended), lambda now: set(now) == {"completed"}, timeout=180, every=0.5)
    running = submit(mrunner, "i=3", "sleep=300")
    wait_for(lambda: states(mrunner, running), lambda now: set(now) == {"running"}, timeout=180, every=0.5)
    before = {sweep: objects(cluster, namespace, sweep) for sweep in (ended, running)}
    assert all(
        len(names) == (2 if sweep == ended and kind == "Job" else 1)
        for sweep in before
        for kind, names in before[sweep].items()
    ), before
    # Another machine's sweep, just made: not in these records and too young to go.
    labels = {"app.kubernetes.io/managed-by": "mrunner", "mrunner/sweep": "elsewhere-sweep-0a1b2c"}
    other = client.V1ConfigMap(metadata=client.V1ObjectMeta(name="elsewhere-sweep-0a1b2c-config", labels=labels))
    core.create_namespaced_config_map(namespace, other)
    leftover = ended_pull_pod(core, namespace, ended, k8s_service["base_image"])

    dry = mrunner("gc", "--older-than", "0", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    listed = sorted(
        line.split(" (")[0]
        for line in dry.stdout.splitlines()
        if line.startswith("kubernetes: ") and " would free " not in line
    )
    expected = sorted(
        f"kubernetes: {kind} {namespace}/{name}" for kind, names in before[ended].items() for name in names
    ) + [f"kubernetes: pull pod {namespace}/{leftover}"]
    assert listed == expected, dry.stdout
    assert "kubernetes: would free 5 items" in dry.stdout, dry.stdout
    assert objects(cluster, namespace, ended) == before[ended]  # a dry run removes nothing

    collected = mrunner("gc", "--older-than", "0")
    assert collected.returncode == 0 and "kubernetes: freed 5 items" in collected.stdout, collected.stdout
    assert objects(cluster, namespace, ended) == {"Job": [], "Secret": [], "ConfigMap": []}
    assert objects(cluster, namespace, running) == before[running]
    assert core.read_namespaced_config_map("elsewhere-sweep-0a1b2c-config", namespace) is not None
    assert core.list_namespaced_pod(namespace, label_selector=PULL_PODS).items == []

    # Once the unrecorded sweep is old enough (here: no grace at all) it goes; a sweep whose Job is still
    # active stays although these records no longer keep it: the cluster's own state is asked too.
    removed = KubernetesBackend().gc(
        Store().sweeps(limit=100), Keep(sweeps=[], older_than=0, grace=0), False, Reporter(quiet=True)
    )
    assert [(a.kind, a.where) for a in removed] == [("ConfigMap", f"{namespace}/elsewhere-sweep-0a1b2c-config")]
    assert objects(cluster, namespace, running) == before[running]
    assert states(mrunner, running) == ["running"]
    pulled = mrunner("pull", ended, "--to", str(project / "after-gc"))  # the results stay on the claim
    assert pulled.returncode == 0, pulled.stderr
    assert sorted(p.read_text() for p in (project / "after-gc").glob("*/out.txt")) == ["1", "2"]
    for follow in ([], ["-f"]):  # the pod went with its Job: the log the start wrapper wrote on the claim
        logs = mrunner("logs", f"{ended}/1", *follow)
        assert logs.returncode == 0 and "experiment 2\n" in logs.stdout, logs.stdout + logs.stderr
    assert core.list_namespaced_pod(namespace, label_selector=PULL_PODS).items == []
