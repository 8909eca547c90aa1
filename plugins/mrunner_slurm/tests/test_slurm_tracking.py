"""Live MLflow tracking from the loopback Slurm cluster: its compute node runs on this machine and reaches the
MLflow server (tests/services/mlflow) on loopback, so each experiment logs to it itself: one run per experiment
(the retried one continued), named, tagged with the sweep, its parameters and its metrics at their steps, the
script's own `mlflow.start_run()` joining it; the token travels as a secret only (never in the batch script,
a command line, a log or a record). With `tracking: deferred` the cluster gets nothing of MLflow and this
machine uploads what the experiments reported, each point once.

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
    assert [run.info.status for run in tracked] == ["FINISHED"] * 2  # the retried one's failure, then its end
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


DEFERRED = """
import os, sys, mrunner
c = mrunner.get_configuration()
a = mrunner.attempt()
print("SEES", sorted(k for k in os.environ if "MLFLOW" in k), flush=True)
for step in range(3):
    mrunner.report({"loss": round(c.lr * (3 - step) + a, 6)}, step=step + 3 * a)
if c.lr == 0.2 and a == 0:
    sys.exit(3)
"""


def test_deferred_tracking_uploads_each_point_once_from_this_machine(
    slurm_service, mlflow_service, mrunner, mrunner_home, tmp_path
):
    """`tracking: deferred` on Slurm: the batch script, the experiments' environment and the cluster's files
    hold neither the server's address nor the token; `results` uploads the first attempts (the retried
    experiment held for its retry), `status --wait` only the retry's new steps, `pull` and a second `results`
    nothing, each into the run live tracking would use. What was sent is seen on the wire in front of the
    real server (which would drop a repeated point without telling)."""
    from mlflow.tracking import MlflowClient

    from mrunner import mlflow_run
    from mrunner.store import Store
    from mrunner.testing import wait_for
    from plugins.mrunner_slurm.tests.test_slurm_requeue import release
    from tests.mlflow_wire import MlflowWire

    cluster = Cluster(slurm_service, f"{slurm_service['storage_dir']}/test-{uuid.uuid4().hex[:10]}")
    (tmp_path / "train_deferred.py").write_text(DEFERRED)
    experiment = f"mrunner-slurm-deferred-{uuid.uuid4().hex[:8]}"
    token = fake_secret("mlflow")
    env = {"MLFLOW_TRACKING_TOKEN": token}
    with MlflowWire(mlflow_service["tracking_uri"]) as wire:
        keys = slurm_context(
            cluster.service,
            cluster.storage,
            mlflow=True,
            tracking="deferred",
            mlflow_tracking_uri=wire.uri,
            mlflow_experiment=experiment,
            retry_failed=1,
            grace_period=5,
        )
        write_context(mrunner_home, "test-slurm", keys)
        submitted = mrunner("+context=test-slurm", "train_deferred.py", "-m", "lr=0.1,0.2", "--detach", env=env)
        assert submitted.returncode == 0, submitted.stderr
        sweep = submitted.stdout.strip().splitlines()[-1]
        try:
            # lr=0.1 completed; lr=0.2 failed once and waits in Slurm's two-minute hold for its retry
            runs = wait_for(
                lambda: status(mrunner, sweep)["experiments"],
                lambda runs: (
                    runs[0]["state"] == "completed" and (runs[1]["state"], runs[1]["attempt"]) == ("pending", 1)
                ),
                timeout=300,
                every=1,
                what="the first attempts to end",
            )
            first = mrunner("results", sweep, env=env)
            assert first.returncode == 0, first.stderr
            assert "MLflow: uploaded the new metrics of 2 experiments" in first.stderr, first.stderr
            assert len(wire.points()) == 6
            shown = MlflowClient(mlflow_service["tracking_uri"])
            made = shown.search_runs([shown.get_experiment_by_name(experiment).experiment_id])
            # the completed one FINISHED; the failed one RUNNING, waiting for its retry
            assert {run.data.tags["mrunner.experiment"]: run.info.status for run in made} == {
                f"{sweep}/0": "FINISHED",
                f"{sweep}/1": "RUNNING",
            }

            release(cluster, runs[1]["backend_ref"])
            waited = mrunner("status", sweep, "--wait", env=env, timeout=600)
            assert waited.returncode == 0, waited.stderr
            assert "MLflow: uploaded the new metrics of 1 experiment " in waited.stderr, waited.stderr
            pulled = mrunner("pull", sweep, "--to", str(tmp_path / "out"), env=env)
            assert pulled.returncode == 0 and "uploaded" not in pulled.stderr, pulled.stderr
            again = mrunner("results", sweep, env=env)
            assert again.returncode == 0 and "uploaded" not in again.stderr, again.stderr
        finally:
            mrunner("cancel", sweep)

    runs = status(mrunner, sweep)["experiments"]
    assert [(r["state"], r["attempt"]) for r in runs] == [("completed", 0), ("completed", 1)]
    client = MlflowClient(mlflow_service["tracking_uri"])
    found = client.get_experiment_by_name(experiment)
    tracked = sorted(client.search_runs([found.experiment_id]), key=lambda run: run.data.params["lr"])
    assert [run.data.tags["mrunner.experiment"] for run in tracked] == [f"{sweep}/0", f"{sweep}/1"]
    assert [run.info.run_name for run in tracked] == ["train-deferred"] * 2
    assert [run.info.status for run in tracked] == ["FINISHED", "FINISHED"]  # set after the upload
    assert all(run.info.end_time >= run.info.start_time for run in tracked)
    sent = wire.points()  # each point once on the wire, the retry's three after the first attempts' six
    assert len(sent) == len({(run, key, step) for run, key, step, _, _ in sent}) == 9
    assert [(step, value) for run, _, step, value, _ in sent[6:]] == [(3, 1.6), (4, 1.4), (5, 1.2)]
    assert {run for run, *_ in sent[6:]} == {tracked[1].info.run_id}
    for run, lr, attempts in zip(tracked, (0.1, 0.2), (1, 2)):
        history = sorted((m.step, round(m.value, 6)) for m in client.get_metric_history(run.info.run_id, "loss"))
        assert history == [(s + 3 * a, round(lr * (3 - s) + a, 6)) for a in range(attempts) for s in range(3)]
    sweep_record = Store().sweep(sweep)
    for record, run in zip(Store().runs(sweep), tracked):  # the run live tracking would find (its search, by tag)
        key = mlflow_run.key_of(record.config_document(sweep_record))
        live = client.search_runs([found.experiment_id], filter_string=f"tags.`{mlflow_run.TAG}` = '{key}'")
        assert [one.info.run_id for one in live] == [run.info.run_id]
        assert not [name for name in record.env if "MLFLOW" in name], record.env

    for index in range(2):  # the experiment had nothing of MLflow
        assert "SEES []" in mrunner("logs", f"{sweep}/{index}").stdout
    address = wire.uri.removeprefix("http://")
    sweep_dir = f"{cluster.storage}/{status(mrunner, sweep)['sweep']['project']}/{sweep}"
    leaked = cluster.ssh(f"grep -r -l -F -e {address} -e {token} {sweep_dir} {cluster.storage}/.mrunner; true")
    assert leaked.strip() == "", f"the server's address or the token is in {leaked}"


WANDB_SCRIPT = """
import sys, time, mrunner
c = mrunner.get_configuration()
for step in range(3):
    mrunner.report({"loss": c.lr * (3 - step)}, step=step + 3 * mrunner.attempt())
time.sleep(1)  # long enough for the command-line watch to see this process
if c.lr == 0.2 and mrunner.attempt() == 0:
    sys.exit(3)
"""


def test_live_w_and_b_online_from_the_compute_node(slurm_service, mrunner, mrunner_home, tmp_path):
    """W&B online from the loopback cluster's compute node (a process of this machine, so it reaches a server on
    loopback) into ``FakeWandbServer`` (no W&B server can run here: tests/fake_wandb.py), the real client
    installed there from a `requirements_file`: one run per experiment, the retried one continued, named, in
    its sweep's group, its parameters as config, each step once; the key reaches the experiments only as a
    secret (never in the batch script, a command line, a log or a record)."""
    pytest.importorskip("wandb")
    from wandb import __version__

    from mrunner.wandb_run import run_id
    from tests.fake_wandb import FakeWandbServer

    (tmp_path / "train_wandb.py").write_text(WANDB_SCRIPT)
    (tmp_path / "requirements.txt").write_text(f"wandb=={__version__}\n")
    cluster = Cluster(slurm_service, f"{slurm_service['storage_dir']}/wandb-tracking")  # its virtualenv reused
    key = fake_secret("wandb")[:40]
    with FakeWandbServer() as server:
        keys = slurm_context(
            cluster.service,
            cluster.storage,
            requirements_file="requirements.txt",
            wandb=True,
            wandb_mode="online",
            wandb_project="p",
            env={"WANDB_BASE_URL": server.url},
            retry_failed=1,
            grace_period=5,
        )
        write_context(mrunner_home, "test-slurm", keys)
        with CmdlineWatch(key, witness="train_wandb.py") as arguments:
            done = mrunner(
                "+context=test-slurm",
                "train_wandb.py",
                "-m",
                "lr=0.1,0.2",
                "--wait",
                env={"WANDB_API_KEY": key},
                timeout=900,
            )
        assert done.returncode == 0, done.stderr
        sweep = done.stdout.strip().splitlines()[-1]
        runs = status(mrunner, sweep)["experiments"]
        assert [(r["state"], r["attempt"]) for r in runs] == [("completed", 0), ("completed", 1)]
        assert sorted(server.runs) == sorted(run_id({"sweep": sweep, "index": index}) for index in (0, 1))
        for index, lr in ((0, 0.1), (1, 0.2)):
            run = server.runs[run_id({"sweep": sweep, "index": index})]
            assert (run.name, run.group, run.parameters()) == ("train-wandb", sweep, {"lr": lr})
            expected = [(s + 3 * a, pytest.approx(lr * (3 - s))) for a in range(index + 1) for s in range(3)]
            assert run.points("loss") == expected
        assert server.unknown == []

    assert arguments.witnessed and arguments.hits == [], arguments.hits
    sweep_dir = f"{cluster.storage}/{status(mrunner, sweep)['sweep']['project']}/{sweep}"
    leaked = cluster.ssh(f"grep -r -l -F --exclude=.secrets.env -- {key} {sweep_dir} {cluster.storage}/.mrunner; true")
    assert leaked.strip() == "", f"the key leaked into {leaked}"
    assert key not in done.stdout + done.stderr
    for path in mrunner_home.rglob("*"):
        if path.is_file() and not path.is_symlink():
            assert key.encode() not in path.read_bytes(), f"the key was written into {path}"


NEPTUNE_SCRIPT = """
import sys, time, mrunner
c = mrunner.get_configuration(with_neptune=True)
mrunner.neptune_run()["own/attempt"].append(mrunner.attempt())
for step in range(3):
    mrunner.report({"loss": c.lr * (3 - step)}, step=step + 3 * mrunner.attempt())
time.sleep(1)  # long enough for the command-line watch to see this process
if c.lr == 0.2 and mrunner.attempt() == 0:
    sys.exit(3)
"""


def test_live_neptune_from_the_compute_node(slurm_service, mrunner, mrunner_home, tmp_path):
    """Neptune live (async) from the loopback cluster's compute node into ``FakeNeptuneServer`` (Neptune's
    hosted service has shut down, and no self-hosted server can run here: tests/fake_neptune.py), the real
    client from the virtualenv the offline Neptune test builds there: one run per experiment, the retried one
    continued, named, tagged with the sweep, its parameters and each reported point once; the API token
    reaches the experiments only as a secret (never in the batch script, a command line, a log or a record)."""
    pytest.importorskip("neptune")
    from mrunner.tracking import _custom_run_id
    from tests.fake_neptune import FakeNeptuneServer

    (tmp_path / "train_neptune.py").write_text(NEPTUNE_SCRIPT)
    (tmp_path / "requirements.txt").write_text("neptune==1.14.0.post2\n")  # as test_neptune_offline_runs_on_the_cluster
    cluster = Cluster(slurm_service, f"{slurm_service['storage_dir']}/neptune-tests")  # its virtualenv reused
    with FakeNeptuneServer() as server:
        token = server.token(fake_secret("neptune"))
        keys = slurm_context(
            cluster.service,
            cluster.storage,
            requirements_file="requirements.txt",
            neptune=True,
            neptune_mode="async",
            neptune_project="fake/proj",
            env={"OAUTHLIB_INSECURE_TRANSPORT": "1"},  # the fake is plain http (tests/fake_neptune.py)
            retry_failed=1,
            grace_period=5,
        )
        write_context(mrunner_home, "test-slurm", keys)
        with CmdlineWatch(token, witness="train_neptune.py") as arguments:
            done = mrunner(
                "+context=test-slurm",
                "train_neptune.py",
                "-m",
                "lr=0.1,0.2",
                "--wait",
                env={"NEPTUNE_API_TOKEN": token, "OAUTHLIB_INSECURE_TRANSPORT": "1"},
                timeout=900,
            )
        assert done.returncode == 0, done.stderr
        sweep = done.stdout.strip().splitlines()[-1]
        runs = status(mrunner, sweep)["experiments"]
        assert [(r["state"], r["attempt"]) for r in runs] == [("completed", 0), ("completed", 1)]
        assert len(server.runs) == 2
        for index, lr in ((0, 0.1), (1, 0.2)):
            run = server.by_custom_id(_custom_run_id({"sweep": sweep, "index": index}))
            assert (run.name, run.parameters()) == ("train-neptune", {"lr": lr}) and sweep in run.tags
            assert run.fields["mrunner/scheduler"] == "slurm"
            expected = [(s + 3 * a, pytest.approx(lr * (3 - s))) for a in range(index + 1) for s in range(3)]
            assert run.points("metrics/loss") == expected and run.refused == {}
            assert [value for _, value in run.points("own/attempt")] == list(range(index + 1))
        assert server.unknown == [] and server.tokens == {token}

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
