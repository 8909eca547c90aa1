"""The MLflow tracker against a real `mlflow server` (tests/services/mlflow/start.sh): one run per experiment
across its attempts, parameters and reported metrics with their steps, the script's own `mlflow.start_run()`
joining it, credentials only as secrets, and a server that does not answer refused before anything is recorded."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import uuid

import pytest

from mrunner.testing import write_context

SCRIPT = """
import hashlib, os, sys, mlflow, mrunner
c = mrunner.get_configuration()
with mlflow.start_run() as own:  # the script's own run: mrunner's, continued
    mlflow.log_param("own_param", "yes")
    for step in range(3):
        mrunner.report({"loss": c.lr * (3 - step) + mrunner.attempt()}, step=step + 2 * mrunner.attempt())
token = os.environ.get("MLFLOW_TRACKING_TOKEN")
print("TOKEN", hashlib.sha256(token.encode()).hexdigest() if token else None, "RUN", own.info.run_id)
if c.lr == 0.2 and mrunner.attempt() == 0:
    sys.exit(3)
"""


@pytest.fixture
def tracked(mlflow_service, mrunner_home, tmp_path, mrunner) -> tuple[str, str]:
    """A local context tracking into a fresh MLflow experiment; returns (context, experiment name)."""
    experiment = f"mrunner-test-{uuid.uuid4().hex[:8]}"
    keys = {
        "backend": "local",
        "mlflow": True,
        "mlflow_tracking_uri": mlflow_service["tracking_uri"],
        "mlflow_experiment": experiment,
        "retry_failed": 1,
    }
    (tmp_path / "train.py").write_text(SCRIPT)
    return write_context(mrunner_home, "tracked", keys), experiment


def runs_of(uri: str, experiment: str) -> list:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    found = client.get_experiment_by_name(experiment)
    return client.search_runs([found.experiment_id]) if found else []


def test_one_run_per_experiment_across_attempts_with_params_and_steps(tracked, mlflow_service, mrunner, mrunner_home):
    context, experiment = tracked
    token = "tok-" + uuid.uuid4().hex
    done = mrunner(
        f"+context={context}", "train.py", "-m", "lr=0.1,0.2", "--wait", env={"MLFLOW_TRACKING_TOKEN": token}
    )
    assert done.returncode in (0, 1), done.stderr
    sweep = done.stdout.strip().splitlines()[-1]
    states = json.loads(mrunner("status", sweep, "--json").stdout)["experiments"]
    assert [(e["state"], e["attempt"]) for e in states] == [("completed", 0), ("completed", 1)]
    uri = mlflow_service["tracking_uri"]
    found = sorted(runs_of(uri, experiment), key=lambda run: run.data.params["lr"])
    assert len(found) == 2  # the retried experiment continued its run
    assert [run.info.run_name for run in found] == ["train", "train"]
    assert all(run.data.tags["mrunner.sweep"] == sweep for run in found)
    assert [run.data.tags["mrunner.experiment"] for run in found] == [f"{sweep}/0", f"{sweep}/1"]
    assert [run.data.params["lr"] for run in found] == ["0.1", "0.2"]
    assert all(run.data.params["own_param"] == "yes" for run in found)  # logged through the script's start_run
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    history = sorted((m.step, round(m.value, 6)) for m in client.get_metric_history(found[1].info.run_id, "loss"))
    assert history == [(0, 0.6), (1, 0.4), (2, 0.2), (2, 1.6), (3, 1.4), (4, 1.2)]  # both attempts, by step
    for index in range(2):
        log = mrunner("logs", f"{sweep}/{index}").stdout
        assert f"TOKEN {hashlib.sha256(token.encode()).hexdigest()} RUN {found[index].info.run_id}" in log
    shown = [done.stdout, done.stderr, mrunner("status", sweep, "--json").stdout]
    assert not any(token in text for text in shown)
    for path in (mrunner_home / "data").rglob("*"):
        if path.is_file() and not path.is_symlink():
            assert token.encode() not in path.read_bytes(), f"the token was written into {path}"


def test_a_server_that_does_not_answer_is_refused_before_anything_is_recorded(mrunner_home, mrunner, tmp_path):
    context = write_context(
        mrunner_home, "down", {"backend": "local", "mlflow": True, "mlflow_tracking_uri": "http://127.0.0.1:9"}
    )
    (tmp_path / "train.py").write_text("import mrunner\n")
    refused = mrunner(f"+context={context}", "train.py", "lr=1")
    assert refused.returncode != 0 and "Traceback" not in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1, refused.stderr
    assert "the MLflow server http://127.0.0.1:9 of context down does not answer" in refused.stderr
    assert json.loads(mrunner("status", "--json").stdout) == []
    unnamed = write_context(mrunner_home, "unnamed", {"backend": "local", "mlflow": True})
    missing = mrunner(f"+context={unnamed}", "train.py", "lr=1", env={"MLFLOW_TRACKING_URI": ""})
    assert missing.returncode != 0 and "names no server: set mlflow_tracking_uri" in missing.stderr


@pytest.mark.parametrize("tracking", ["live", "deferred"])
def test_a_tracking_uri_mlflow_cannot_use_is_refused_before_anything_is_recorded(
    mrunner_home, mrunner, tmp_path, tracking
):
    """A scheme MLflow does not know (a typo such as htp://) is refused at submission: the experiments would
    only warn on their first report, and a deferred upload fail later."""
    (tmp_path / "train.py").write_text("import mrunner\n")
    for uri, source in (("htp://127.0.0.1:5000", "context"), ("bogus://tracking", "environment")):
        keys = {"backend": "local", "mlflow": True, "tracking": tracking}
        if source == "context":
            keys["mlflow_tracking_uri"] = uri
        context = write_context(mrunner_home, "typo", keys)
        refused = mrunner(f"+context={context}", "train.py", "lr=1", env={"MLFLOW_TRACKING_URI": uri})
        assert refused.returncode == 2 and len(refused.stderr.strip().splitlines()) == 1, refused.stderr
        scheme = uri.split(":")[0]
        assert f"MLflow knows no tracking URI scheme '{scheme}' ({uri}): use http://HOST:PORT" in refused.stderr
        assert json.loads(mrunner("status", "--json").stdout) == []
    for uri in ("sqlite:///mlflow.db", str(tmp_path / "mlruns"), "postgresql+psycopg2://u@db/mlflow"):
        dry = mrunner("+context=typo", "train.py", "lr=1", "--dry-run", env={"MLFLOW_TRACKING_URI": uri})
        assert dry.returncode == 0, dry.stderr


def test_deferred_tracking_without_a_tracker_warns_that_nothing_is_uploaded(mrunner_home, mrunner, tmp_path):
    context = write_context(mrunner_home, "nowhere", {"backend": "local", "tracking": "deferred"})
    (tmp_path / "train.py").write_text("import mrunner\n")
    done = mrunner(f"+context={context}", "train.py", "lr=1", "--wait")
    assert done.returncode == 0, done.stderr
    assert (
        "mrunner: warning: context nowhere has tracking: deferred but enables no tracker to upload to "
        "(mlflow: true or wandb: true)" in done.stderr
    )


def test_the_token_under_env_is_refused(mrunner_home, mrunner, tmp_path):
    context = write_context(mrunner_home, "leaky", {"backend": "local", "env": {"MLFLOW_TRACKING_TOKEN": "x"}})
    (tmp_path / "train.py").write_text("import mrunner\n")
    refused = mrunner(f"+context={context}", "train.py", "lr=1")
    assert refused.returncode != 0 and "sets MLFLOW_TRACKING_TOKEN under `env`" in refused.stderr


def test_a_tracked_dry_run_does_not_import_mlflow(mrunner_home, tmp_path):
    write_context(
        mrunner_home, "dry", {"backend": "local", "mlflow": True, "mlflow_tracking_uri": "http://127.0.0.1:9"}
    )
    (tmp_path / "train.py").write_text("import mrunner\n")
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "mrunner", "+context=dry", "train.py", "-m", "lr=1,2", "--dry-run"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    imported = {line.rsplit("|", 1)[1].strip() for line in done.stderr.splitlines() if line.startswith("import time:")}
    assert "mrunner.trackers.mlflow" in imported
    assert not {name for name in imported if name.split(".")[0] == "mlflow"}


def test_batches_keep_within_mlflows_limits_and_bring_the_tags_with_the_last_parameters():
    from mrunner.mlflow_run import batches

    metrics, params, tags = [("m", n) for n in range(2500)], [("p", n) for n in range(250)], [("t", 0)]
    sent = list(batches(metrics, params, tags))
    for some_metrics, some_params, some_tags in sent:
        assert len(some_metrics) <= 1000 and len(some_params) <= 100 and len(some_tags) <= 100
        assert len(some_metrics) + len(some_params) + len(some_tags) <= 1000
    assert [m for batch in sent for m in batch[0]] == metrics
    assert [p for batch in sent for p in batch[1]] == params
    assert [bool(batch[2]) for batch in sent] == [False, False, True]  # with the parameters' last hundred
    assert len(sent) == 3  # 2,751 entities: no request more than the limit of a thousand needs
    assert list(batches([("m", 0)], [], tags)) == [([("m", 0)], [], tags)]
    assert list(batches([], [], [])) == []
