"""Deferred MLflow and W&B tracking from the loopback Kubernetes cluster: its pods live in their own network
namespace and cannot reach this machine's loopback, where the MLflow server (tests/services/mlflow) and the
fake W&B server (tests/fake_wandb.py: no W&B server can run here) listen, so the experiments only write their
metrics files, and `mrunner ... --wait` and `mrunner results` upload them from this machine: one run per
experiment in each (the retried one continued), named, tagged or grouped with the sweep, its parameters, its
metrics at their steps, each once."""

from __future__ import annotations

import uuid

import pytest

from mrunner.testing import write_context
from plugins.mrunner_k8s.tests import test_k8s_cluster as base
from plugins.mrunner_k8s.tests.test_k8s_cluster import k8s_context

EXPERIMENT = """
import os, sys, urllib.request, mrunner
c = mrunner.get_configuration()
a = mrunner.attempt()
try:  # the pod's network: this machine's loopback is not there
    urllib.request.urlopen(c.server + "/health", timeout=3)
    print("REACHED", flush=True)
except OSError as error:
    print("UNREACHABLE", type(error).__name__, flush=True)
print("SEES", sorted(k for k in os.environ if "MLFLOW" in k or "WANDB" in k), flush=True)
for step in range(4):
    mrunner.report({"loss": round(c.lr * (4 - step) + a, 6)}, step=step + 4 * a)
if c.lr == 0.2 and a == 0:
    sys.exit(3)
"""

project = base.project


@pytest.fixture
def deferred(project, mrunner_home, k8s_service, namespace, own_images, mlflow_service) -> str:
    experiment = f"mrunner-k8s-{uuid.uuid4().hex[:8]}"
    (project / "exp.py").write_text(EXPERIMENT)
    keys = k8s_context(
        k8s_service,
        namespace,
        registry_url=own_images(namespace),
        mlflow=True,
        tracking="deferred",
        mlflow_tracking_uri=mlflow_service["tracking_uri"],
        mlflow_experiment=experiment,
        wandb=True,
        wandb_mode="online",
        wandb_project="p",
        retry_failed=1,
        grace_period=5,
    )
    write_context(mrunner_home, "test-k8s", keys)
    return experiment


def test_pods_without_a_route_to_the_server_are_uploaded_from_here(deferred, mrunner, mlflow_service):
    pytest.importorskip("wandb")
    from mlflow.tracking import MlflowClient

    from mrunner.wandb_run import run_id
    from tests.fake_wandb import FakeWandbServer

    uri = mlflow_service["tracking_uri"]
    wandb = FakeWandbServer().start()
    env = {"WANDB_BASE_URL": wandb.url, "WANDB_API_KEY": "k" * 40}  # this machine's: the pods get nothing of W&B
    done = mrunner("+context=test-k8s", "exp.py", "-m", "lr=0.1,0.2", f"server={uri}", "--wait", timeout=600, env=env)
    assert done.returncode == 0, done.stderr
    assert "MLflow: uploaded the new metrics of 2 experiments" in done.stderr, done.stderr
    assert "W&B: uploaded the new metrics of 2 experiments" in done.stderr, done.stderr
    sweep = done.stdout.strip().splitlines()[-1]
    for index in range(2):
        log = mrunner("logs", f"{sweep}/{index}").stdout
        assert "UNREACHABLE" in log and "SEES []" in log, log

    client = MlflowClient(uri)
    found = client.get_experiment_by_name(deferred)
    runs = sorted(client.search_runs([found.experiment_id]), key=lambda run: run.data.params["lr"])
    assert len(runs) == 2
    assert [run.info.run_name for run in runs] == ["exp", "exp"]
    assert [run.info.status for run in runs] == ["FINISHED", "FINISHED"]  # set from here, after the upload
    assert [run.data.tags["mrunner.experiment"] for run in runs] == [f"{sweep}/0", f"{sweep}/1"]
    assert all(run.data.tags["mrunner.sweep"] == sweep for run in runs)
    assert [run.data.params["lr"] for run in runs] == ["0.1", "0.2"]
    for run, lr, attempts in zip(runs, (0.1, 0.2), (1, 2)):
        history = sorted((m.step, round(m.value, 6)) for m in client.get_metric_history(run.info.run_id, "loss"))
        assert history == [(s + 4 * a, round(lr * (4 - s) + a, 6)) for a in range(attempts) for s in range(4)]

    assert sorted(wandb.runs) == sorted(run_id({"sweep": sweep, "index": index}) for index in (0, 1))
    for index, lr in ((0, 0.1), (1, 0.2)):
        run = wandb.runs[run_id({"sweep": sweep, "index": index})]
        assert (run.name, run.group, run.parameters()) == ("exp", sweep, {"lr": lr, "server": uri})
        expected = [(s + 4 * a, round(lr * (4 - s) + a, 6)) for a in range(index + 1) for s in range(4)]
        assert [(step, round(value, 6)) for step, value in run.points("loss")] == expected

    again = mrunner("results", sweep, env=env)
    assert again.returncode == 0 and "uploaded" not in again.stderr, again.stderr
    assert len(client.get_metric_history(runs[1].info.run_id, "loss")) == 8
    assert len(wandb.runs[run_id({"sweep": sweep, "index": 1})].history) == 8
    wandb.stop()
