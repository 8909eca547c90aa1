"""Deferred tracking (`tracking: deferred`) on the local backend against the real MLflow server
(tests/services/mlflow): the experiments get nothing of MLflow and only write their metrics files; `results`,
`status --wait` and `pull` upload what is new from this machine, each point once, into one run per experiment
that every attempt continues; a server down at submission or at upload is a warning, and a later call
catches up. (The Kubernetes pods, which cannot reach this machine's loopback at all, are the same test on that
backend: plugins/mrunner_k8s/tests/test_k8s_tracking.py.)"""

from __future__ import annotations

import hashlib
import json
import uuid

import pytest

from mrunner.store import Store
from mrunner.testing import wait_for, write_context

SCRIPT = """
import os, sys, time, mrunner
c = mrunner.get_configuration()
a = mrunner.attempt()
print("SEES", [k for k in os.environ if k == "MRUNNER_MLFLOW"], flush=True)  # a local child inherits the shell
for step in range(3):
    mrunner.report({"loss": round(c.lr * (10 - step) + a, 6)}, step=step + 5 * a)
while not os.path.exists(c.gate):
    time.sleep(0.05)
for step in range(3, 5):
    mrunner.report({"loss": round(c.lr * (10 - step) + a, 6)}, step=step + 5 * a)
mrunner.report({"acc": 0.5})
if c.lr == 0.2 and a == 0:
    sys.exit(3)
"""
DOWN = "http://127.0.0.1:9"


def runs_of(uri: str, experiment: str) -> list:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    found = client.get_experiment_by_name(experiment)
    return client.search_runs([found.experiment_id]) if found else []


def history(uri: str, run_id: str) -> list[tuple[str, int, float]]:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    return sorted(
        (name, m.step, round(m.value, 6)) for name in ("loss", "acc") for m in client.get_metric_history(run_id, name)
    )


def expected(lr: float, attempts: int) -> list[tuple[str, int, float]]:
    points = []
    for a in range(attempts):
        points += [("loss", step + 5 * a, round(lr * (10 - step) + a, 6)) for step in range(5)]
        points.append(("acc", 0, 0.5))
    return sorted(points)


@pytest.fixture
def deferred(mlflow_service, mrunner_home, tmp_path) -> tuple[str, str]:
    """A local context deferring MLflow tracking (its server: $MLFLOW_TRACKING_URI of each call)."""
    experiment = f"mrunner-deferred-{uuid.uuid4().hex[:8]}"
    keys = {
        "backend": "local",
        "mlflow": True,
        "mlflow_experiment": experiment,
        "tracking": "deferred",
        "retry_failed": 1,
    }
    (tmp_path / "train.py").write_text(SCRIPT)
    return write_context(mrunner_home, "deferred", keys), experiment


def test_results_and_status_wait_upload_each_point_once_into_one_run_per_experiment(
    deferred, mlflow_service, mrunner, mrunner_home, tmp_path
):
    context, experiment = deferred
    uri = mlflow_service["tracking_uri"]
    up, down = {"MLFLOW_TRACKING_URI": uri}, {"MLFLOW_TRACKING_URI": DOWN}
    gate = tmp_path / "gate"
    submitted = mrunner(
        f"+context={context}",
        "train.py",
        "-m",
        "lr=0.1,0.2",
        f"gate={gate}",
        "--detach",
        env={**down, "MLFLOW_TRACKING_TOKEN": "tok-" + uuid.uuid4().hex},
    )
    assert submitted.returncode == 0, submitted.stderr
    assert f"mrunner: warning: the MLflow server {DOWN} does not answer now" in submitted.stderr
    sweep = submitted.stdout.strip().splitlines()[-1]

    # the first reports are in while the experiments wait; the server is down: a warning, the table all the same
    def partial(result) -> bool:
        """Each experiment's third report (its loss at step 2) is in the table: a loss alone may be the first
        one's, and the upload below (which the test expects to send steps 0-2) could then meet fewer."""
        rows = json.loads(result.stdout) if result.returncode == 0 else []
        return len(rows) == 2 and all(row.get("loss") == round(row["lr"] * 8, 6) for row in rows)

    wait_for(
        lambda: mrunner("results", sweep, "--json", env=down), partial, timeout=120, every=0.5, what="the first reports"
    )
    waiting = mrunner("results", sweep, env=down)
    assert waiting.returncode == 0 and "lr" in waiting.stdout
    warnings = [line for line in waiting.stderr.splitlines() if "warning" in line]
    assert len(warnings) == 1 and f"MLflow at {DOWN} does not take sweep {sweep}'s metrics" in warnings[0]
    assert runs_of(uri, experiment) == []

    first = mrunner("results", sweep, env=up)  # catches up: steps 0-2 of both
    assert first.returncode == 0 and "MLflow: uploaded the new metrics of 2 experiments" in first.stderr, first.stderr
    runs = sorted(runs_of(uri, experiment), key=lambda run: run.data.params["lr"])
    assert len(runs) == 2
    for run, lr in zip(runs, (0.1, 0.2)):
        assert history(uri, run.info.run_id) == [("loss", s, round(lr * (10 - s), 6)) for s in range(3)]

    gate.write_text("")
    waited = mrunner("status", sweep, "--wait", env=up)  # the rest, and a second attempt of lr=0.2
    assert waited.returncode == 0, waited.stderr
    again = mrunner("results", sweep, env=up)
    assert again.returncode == 0 and "uploaded" not in again.stderr, again.stderr

    runs = sorted(runs_of(uri, experiment), key=lambda run: run.data.params["lr"])
    assert len(runs) == 2  # the retried experiment continued its run
    assert [run.info.run_name for run in runs] == ["train", "train"]
    assert [run.data.tags["mrunner.experiment"] for run in runs] == [f"{sweep}/0", f"{sweep}/1"]
    assert all(run.data.tags["mrunner.sweep"] == sweep for run in runs)
    assert [run.data.params["gate"] for run in runs] == [str(gate)] * 2
    assert history(uri, runs[0].info.run_id) == expected(0.1, 1)
    assert history(uri, runs[1].info.run_id) == expected(0.2, 2)

    for run in Store().runs(sweep):  # nothing of MLflow is recorded for the experiments, nor sent to them
        assert not [name for name in run.env if "MLFLOW" in name], run.env
        assert "SEES []" in mrunner("logs", f"{sweep}/{run.index}").stdout
    ledger = json.loads((mrunner_home / "data" / "mrunner" / "uploads" / f"{sweep}.json").read_text())
    assert set(ledger["mlflow"]) == {"0", "1"}
    assert ledger["mlflow"]["1"]["run"] == runs[1].info.run_id

    pulled = mrunner("pull", sweep, "--to", str(tmp_path / "out"), env=up)  # nothing new: nothing sent
    assert pulled.returncode == 0 and "uploaded" not in pulled.stderr, pulled.stderr
    assert history(uri, runs[1].info.run_id) == expected(0.2, 2)


def test_w_and_b_runs_are_replayed_from_here_each_step_once(mrunner_home, mrunner, tmp_path):
    """W&B offline, so that the runs this machine replays are files to read back: each experiment's run (its
    deterministic id, resumed by every upload) holds each reported step once, across three uploads."""
    pytest.importorskip("wandb")
    from tests.test_tracking_wandb import records

    keys = {
        "backend": "local",
        "wandb": True,
        "wandb_mode": "offline",
        "wandb_project": "p",
        "tracking": "deferred",
        "retry_failed": 1,
    }
    write_context(mrunner_home, "wb", keys)
    stepped = SCRIPT.replace("MRUNNER_MLFLOW", "MRUNNER_WANDB")  # W&B leaves out a step earlier than the run's last:
    (tmp_path / "train.py").write_text(stepped.replace('{"acc": 0.5})', '{"acc": 0.5}, step=4 + 5 * a)'))
    gate = tmp_path / "gate"
    submitted = mrunner("+context=wb", "train.py", "-m", "lr=0.1,0.2", f"gate={gate}", "--detach")
    assert submitted.returncode == 0, submitted.stderr
    sweep = submitted.stdout.strip().splitlines()[-1]
    ledger = mrunner_home / "data" / "mrunner" / "uploads" / f"{sweep}.json"

    def uploaded() -> dict:
        """What the uploads so far sent, after one more `results` (which uploads what is new)."""
        mrunner("results", sweep)
        return json.loads(ledger.read_text()).get("wandb", {}) if ledger.exists() else {}

    wait_for(
        uploaded,
        # a replay of each experiment before the gate, as the ledger records it (a `step` once points went).
        # Not the table's rows: `results` reads them after its upload, from the experiment's live file (the
        # local cache is a hard link), so a file the upload found empty (a first report between its open and
        # its line) can show a loss whose upload comes only after the gate: one replay of that experiment
        lambda sent: all("step" in sent.get(str(index), {}) for index in (0, 1)),
        timeout=120,
        every=0.5,
        what="an upload of the first reports of both experiments",
    )
    gate.write_text("")
    assert mrunner("status", sweep, "--wait").returncode == 0
    again = mrunner("results", sweep)
    assert again.returncode == 0 and "uploaded" not in again.stderr, again.stderr

    for run in Store().runs(sweep):
        assert not [name for name in run.env if "WANDB" in name], run.env  # the experiment got nothing of W&B
        assert "SEES []" in mrunner("logs", f"{sweep}/{run.index}").stdout
        identity = hashlib.sha256(f"{sweep}/{run.index}".encode()).hexdigest()[:32]
        (folder,) = (mrunner_home / "data" / "mrunner" / "metrics").glob(f"{sweep}/{run.index}-train")
        replays = sorted((folder / "wandb").glob(f"offline-run-*-{identity}"))
        assert len(replays) >= 2, replays  # the first upload's, and the one after the gate
        points = []
        for replay in replays:
            found = records(replay / f"run-{identity}.wandb")
            (started,) = [record.run for kind, record in found if kind == "run"]
            assert started.run_group == sweep and started.display_name == "train"
            config = {item.key: json.loads(item.value_json) for item in started.config.update}
            assert config["lr"] == run.parameters["lr"]
            for kind, record in found:
                if kind == "history":
                    items = {
                        item.key or "/".join(item.nested_key): json.loads(item.value_json)
                        for item in record.history.item
                    }
                    points += [
                        (name, items["_step"], round(items[name], 6)) for name in ("loss", "acc") if name in items
                    ]
        acc = [("acc", 4 + 5 * a, 0.5) for a in range(run.attempt + 1)]
        assert sorted(points) == sorted(
            [p for p in expected(run.parameters["lr"], run.attempt + 1) if p[0] != "acc"] + acc
        )


STEADY = """
import mrunner
c = mrunner.get_configuration()
for step in range(40):
    mrunner.report({"loss": round(c.i + 1 / (1 + step), 6), "acc": step / 40}, step=step)
"""


def test_an_upload_killed_midway_leaves_each_point_once_after_the_next(mlflow_service, mrunner, mrunner_home, tmp_path):
    """Six experiments upload side by side through a wire in front of the real server that, after the first two
    batches, keeps back the server's answers (the server stored those points); mrunner is killed there
    (SIGKILL: nothing of it runs again). The ledger holds the two answered experiments only; the next
    `results` sends the other four again, not those two, and the server ends with one run per experiment
    and each point once."""
    from mlflow.tracking import MlflowClient

    from mrunner.testing import start_mrunner
    from tests.mlflow_wire import MlflowWire

    uri = mlflow_service["tracking_uri"]
    experiment = f"mrunner-cut-{uuid.uuid4().hex[:8]}"
    (tmp_path / "steady.py").write_text(STEADY)
    with MlflowWire(uri) as wire:
        keys = {
            "backend": "local",
            "mlflow": True,
            "mlflow_experiment": experiment,
            "mlflow_tracking_uri": wire.uri,
            "tracking": "deferred",
        }
        write_context(mrunner_home, "cut", keys)
        submitted = mrunner("+context=cut", "steady.py", "-m", "i=range(6)", "--detach")
        assert submitted.returncode == 0, submitted.stderr
        sweep = submitted.stdout.strip().splitlines()[-1]
        wait_for(
            lambda: json.loads(mrunner("status", sweep, "--json").stdout)["experiments"],
            lambda runs: all(run["state"] == "completed" for run in runs),
            timeout=120,
            every=0.5,
            what="the six experiments to complete",
        )

        wire.hold_after(2)
        ledger = mrunner_home / "data" / "mrunner" / "uploads" / f"{sweep}.json"
        process = start_mrunner(tmp_path, "results", sweep)

        def cut() -> tuple[int, int]:
            recorded = json.loads(ledger.read_text()).get("mlflow", {}) if ledger.exists() else {}
            return wire.held, len(recorded)

        try:
            wait_for(cut, lambda seen: seen == (4, 2), timeout=120, what="two answered uploads and four held")
        finally:
            process.kill()
            process.communicate()
        before = wire.points()
        assert len({point[0] for point in before}) == 6 and len(before) == 6 * 80  # the server has them all
        recorded = json.loads(ledger.read_text())["mlflow"]
        assert len(recorded) == 2
        wire.release()

        again = mrunner("results", sweep)
        assert again.returncode == 0, again.stderr
        assert "MLflow: uploaded the new metrics of 4 experiments" in again.stderr, again.stderr
        resent = wire.points()[len(before) :]
        assert {point[0] for point in resent}.isdisjoint(entry["run"] for entry in recorded.values())
        assert len(resent) == 4 * 80
        third = mrunner("results", sweep)
        assert third.returncode == 0 and "uploaded" not in third.stderr, third.stderr
        assert len(wire.points()) == len(before) + len(resent)

    client = MlflowClient(uri)
    runs = runs_of(uri, experiment)
    assert sorted(run.data.tags["mrunner.experiment"] for run in runs) == [f"{sweep}/{i}" for i in range(6)]
    for run in runs:
        i = int(run.data.params["i"])
        loss = sorted((m.step, m.value) for m in client.get_metric_history(run.info.run_id, "loss"))
        assert loss == [(step, round(i + 1 / (1 + step), 6)) for step in range(40)]
        assert len(client.get_metric_history(run.info.run_id, "acc")) == 40
