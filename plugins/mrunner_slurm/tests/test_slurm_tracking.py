"""Live MLflow tracking from the loopback Slurm cluster: its compute node runs on this machine and reaches the
MLflow server (tests/services/mlflow) on loopback, so each experiment logs to it itself: one run per experiment
(the retried one continued), named, tagged with the sweep, its parameters and its metrics at their steps, the
script's own `mlflow.start_run()` joining it; the token travels as a secret only (never in the batch script,
a command line, a log or a record).

The mlflow client comes to the cluster the way a user's would: a `requirements_file`, built into a virtualenv
there once. Its storage folder is the same for every run of this test, so that virtualenv is reused."""

from __future__ import annotations

import hashlib
import uuid
from pathlib import Path

import pytest

from mrunner.testing import write_context
from plugins.mrunner_slurm.tests.test_slurm_cluster import Cluster, slurm_context, status
from tests.leaks import CmdlineWatch, fake_secret

SCRIPT = """
import hashlib, os, sys, time, mlflow, mrunner
c = mrunner.get_configuration()
with mlflow.start_run() as own:  # the script's own run: mrunner's, continued
    mlflow.log_param("own_param", "yes")
    for step in range(3):
        mrunner.report({"loss": c.lr * (3 - step) + mrunner.attempt()}, step=step + 3 * mrunner.attempt())
token = os.environ.get("MLFLOW_TRACKING_TOKEN")
print("TOKEN", hashlib.sha256(token.encode()).hexdigest() if token else None, "RUN", own.info.run_id, flush=True)
time.sleep(1)  # long enough for the command-line watch to see this process
if c.lr == 0.2 and mrunner.attempt() == 0:
    sys.exit(3)
"""


@pytest.fixture
def cluster(slurm_service: dict, mlflow_service: dict, tmp_path: Path, mrunner_home: Path) -> Cluster:
    from mlflow import __version__

    (tmp_path / "train_tracked.py").write_text(SCRIPT)
    (tmp_path / "requirements.txt").write_text(f"mlflow-skinny=={__version__}\n")
    storage = f"{slurm_service['storage_dir']}/mlflow-tracking"
    return Cluster(slurm_service, storage)


def test_live_tracking_from_the_compute_node(cluster, mrunner, mrunner_home, mlflow_service, tmp_path):
    from mlflow.tracking import MlflowClient

    uri = mlflow_service["tracking_uri"]
    experiment = f"mrunner-slurm-{uuid.uuid4().hex[:8]}"
    keys = slurm_context(
        cluster.service,
        cluster.storage,
        requirements_file="requirements.txt",
        mlflow=True,
        mlflow_tracking_uri=uri,
        mlflow_experiment=experiment,
        retry_failed=1,
        grace_period=5,
    )
    write_context(mrunner_home, "test-slurm", keys)
    token = fake_secret("mlflow")
    with CmdlineWatch(token, witness="train_tracked.py") as arguments:
        done = mrunner(
            "+context=test-slurm",
            "train_tracked.py",
            "-m",
            "lr=0.1,0.2",
            "--wait",
            env={"MLFLOW_TRACKING_TOKEN": token},
            timeout=900,
        )
    assert done.returncode == 0, done.stderr
    sweep = done.stdout.strip().splitlines()[-1]
    runs = status(mrunner, sweep)["experiments"]
    assert [(r["state"], r["attempt"]) for r in runs] == [("completed", 0), ("completed", 1)]

    client = MlflowClient(uri)
    found = client.get_experiment_by_name(experiment)
    tracked = sorted(client.search_runs([found.experiment_id]), key=lambda run: run.data.params["lr"])
    assert len(tracked) == 2  # the retried experiment continued its run
    assert [run.info.run_name for run in tracked] == ["train-tracked"] * 2
    assert [run.data.tags["mrunner.experiment"] for run in tracked] == [f"{sweep}/0", f"{sweep}/1"]
    assert all(run.data.tags["mrunner.sweep"] == sweep for run in tracked)
    assert [run.data.params["lr"] for run in tracked] == ["0.1", "0.2"]
    assert all(run.data.params["own_param"] == "yes" for run in tracked)
    history = sorted((m.step, round(m.value, 6)) for m in client.get_metric_history(tracked[1].info.run_id, "loss"))
    assert history == [(0, 0.6), (1, 0.4), (2, 0.2), (3, 1.6), (4, 1.4), (5, 1.2)]

    digest = hashlib.sha256(token.encode()).hexdigest()
    for index in range(2):  # the experiment had the token, and its run was mrunner's
        log = mrunner("logs", f"{sweep}/{index}").stdout
        assert f"TOKEN {digest} RUN {tracked[index].info.run_id}" in log, log
    assert arguments.witnessed and arguments.hits == [], arguments.hits
    sweep_dir = f"{cluster.storage}/{status(mrunner, sweep)['sweep']['project']}/{sweep}"
    leaked = cluster.ssh(
        f"grep -r -l -F --exclude=.secrets.env -- {token} {sweep_dir} {cluster.storage}/.mrunner; true"
    )
    assert leaked.strip() == "", f"the token leaked into {leaked}"
    assert token not in done.stdout + done.stderr
    for path in mrunner_home.rglob("*"):
        if path.is_file() and not path.is_symlink():
            assert token.encode() not in path.read_bytes(), f"the token was written into {path}"
