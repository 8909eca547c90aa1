"""An MLflow run's status follows its experiment, against the real `mlflow server` (tests/services/mlflow):
FINISHED when it completed, FAILED when it failed, KILLED when cancelled, RUNNING again when a resume continues
it, with an end time; for live tracking and for `tracking: deferred` (set after the upload)."""

from __future__ import annotations

import os
import uuid

import pytest

from mrunner.testing import states, wait_for, write_context

SCRIPT = """
import os, signal, sys, mrunner
c = mrunner.get_configuration()
mrunner.report({"loss": 1.0}, step=mrunner.attempt())
if c.outcome == "fail" and mrunner.attempt() == 0:
    sys.exit(3)
if c.outcome == "fail":  # the resumed attempt: until the test opens the gate
    with open(os.environ["GATE"]) as gate:
        gate.read()
if c.outcome == "hold" and mrunner.attempt() == 0:
    signal.pause()  # until cancelled
"""


def mlflow_runs(uri: str, experiment: str) -> dict[int, object]:
    """The experiment's MLflow runs by the index of the mrunner experiment each stands for."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    found = client.get_experiment_by_name(experiment)
    runs = client.search_runs([found.experiment_id]) if found else []
    return {int(run.data.tags["mrunner.experiment"].split("/")[1]): run for run in runs}


def statuses(uri: str, experiment: str) -> dict[int, str]:
    return {index: run.info.status for index, run in mlflow_runs(uri, experiment).items()}


@pytest.fixture
def context(mlflow_service, mrunner_home, tmp_path, request) -> tuple[str, str]:
    experiment = f"mrunner-status-{uuid.uuid4().hex[:8]}"
    keys = {
        "backend": "local",
        "mlflow": True,
        "mlflow_tracking_uri": mlflow_service["tracking_uri"],
        "mlflow_experiment": experiment,
        "tracking": request.param,
        "env": {"GATE": str(tmp_path / "gate")},
    }
    (tmp_path / "train.py").write_text(SCRIPT)
    os.mkfifo(tmp_path / "gate")
    return write_context(mrunner_home, f"status-{request.param}", keys), experiment


@pytest.mark.parametrize("context", ["live"], indirect=True)
def test_completed_failed_cancelled_then_resumed_live(context, mlflow_service, mrunner, mrunner_home, tmp_path):
    name, experiment = context
    uri = mlflow_service["tracking_uri"]
    submitted = mrunner(f"+context={name}", "train.py", "-m", "outcome=ok,fail,hold", "--detach")
    assert submitted.returncode == 0, submitted.stderr
    sweep = submitted.stdout.strip().splitlines()[-1]
    # each look is a `status`, which tells MLflow of the ends it has not been told of (the third still runs)
    wait_for(
        lambda: (states(mrunner, sweep), statuses(uri, experiment)),
        lambda seen: seen == ({0: "completed", 1: "failed", 2: "running"}, {0: "FINISHED", 1: "FAILED", 2: "RUNNING"}),
        what="the first two to end, told to MLflow, and the third to make its run",
    )
    cancelled = mrunner("cancel", f"{sweep}/2")
    assert cancelled.returncode == 0, cancelled.stderr
    runs = mlflow_runs(uri, experiment)
    assert {index: run.info.status for index, run in runs.items()} == {0: "FINISHED", 1: "FAILED", 2: "KILLED"}
    assert all(run.info.end_time and run.info.end_time >= run.info.start_time for run in runs.values())

    resumed = mrunner("resume", sweep, "--detach")  # the failed one (held at its gate) and the cancelled one
    assert resumed.returncode == 0, resumed.stderr
    wait_for(lambda: statuses(uri, experiment)[1], lambda s: s == "RUNNING", what="the resumed run to run again")
    with open(tmp_path / "gate", "w") as gate:
        gate.write("go")
    ended = mrunner("status", sweep, "--wait")
    assert ended.returncode == 0, ended.stderr
    runs = mlflow_runs(uri, experiment)
    assert len(runs) == 3  # the same runs, continued
    assert {index: run.info.status for index, run in runs.items()} == {0: "FINISHED", 1: "FINISHED", 2: "FINISHED"}
    from mlflow.tracking import MlflowClient

    history = MlflowClient(uri).get_metric_history(runs[1].info.run_id, "loss")
    assert sorted(point.step for point in history) == [0, 1]  # both attempts in the one run
    told = mrunner_home / "data" / "mrunner" / "uploads" / f"{sweep}.ends.json"
    assert told.exists()
    forgotten = mrunner("forget", "--retired", sweep)
    assert forgotten.returncode == 0, forgotten.stderr
    assert not told.exists()  # what was told of a forgotten sweep goes with it


@pytest.mark.parametrize("context", ["deferred"], indirect=True)
def test_deferred_runs_end_finished_or_failed_after_the_upload(context, mlflow_service, mrunner, tmp_path):
    name, experiment = context
    uri = mlflow_service["tracking_uri"]
    done = mrunner(f"+context={name}", "train.py", "-m", "outcome=ok,fail", "--wait")
    assert done.returncode == 1, done.stderr  # one failed
    sweep = done.stdout.strip().splitlines()[-1]
    runs = mlflow_runs(uri, experiment)
    assert {index: run.info.status for index, run in runs.items()} == {0: "FINISHED", 1: "FAILED"}
    assert all(run.info.end_time and run.info.end_time >= run.info.start_time for run in runs.values())

    resumed = mrunner("resume", sweep, "--detach")  # the failed one, held at its gate: RUNNING, told by status
    assert resumed.returncode == 0, resumed.stderr
    wait_for(lambda: states(mrunner, sweep)[1], lambda s: s == "running", what="the resumed experiment to run")
    assert statuses(uri, experiment) == {0: "FINISHED", 1: "RUNNING"}
    with open(tmp_path / "gate", "w") as gate:
        gate.write("go")
    ended = mrunner("status", sweep, "--wait")
    assert ended.returncode == 0, ended.stderr
    runs = mlflow_runs(uri, experiment)
    assert {index: run.info.status for index, run in runs.items()} == {0: "FINISHED", 1: "FINISHED"}
    from mlflow.tracking import MlflowClient

    history = MlflowClient(uri).get_metric_history(runs[1].info.run_id, "loss")
    assert sorted(point.step for point in history) == [0, 1]  # the resumed attempt's point, uploaded


def test_an_end_learnt_while_the_server_is_down_is_told_by_a_later_status_and_once(
    mlflow_service, mrunner_home, mrunner, tmp_path
):
    """The server down when `status` learns an end: one warning, the run left RUNNING; back, the next `status`
    sets FINISHED; after that, `status` asks no server (down again, it says nothing)."""
    from tests.test_tracking_mlflow import relayed_context

    relay, experiment = relayed_context(mlflow_service, mrunner_home, "relayed")
    uri = mlflow_service["tracking_uri"]
    try:
        gated = (
            "import os, mrunner\nmrunner.get_configuration()\nwith open(os.environ['GATE']) as gate:\n    gate.read()\n"
        )
        (tmp_path / "train.py").write_text(gated)
        os.mkfifo(tmp_path / "gate")
        submitted = mrunner(
            "+context=relayed", f"+context.env.GATE={tmp_path / 'gate'}", "train.py", "lr=1", "--detach"
        )
        assert submitted.returncode == 0, submitted.stderr
        sweep = submitted.stdout.strip().splitlines()[-1]
        wait_for(lambda: statuses(uri, experiment), lambda s: s == {0: "RUNNING"}, what="the run to be made")
        relay.stop()
        with open(tmp_path / "gate", "w") as gate:
            gate.write("go")
        wait_for(lambda: states(mrunner, sweep), lambda s: s == {0: "completed"}, what="the experiment to end")
        shown = mrunner("status", sweep)
        assert shown.returncode == 0, shown.stderr
        (line,) = shown.stderr.strip().splitlines()
        assert f"was not told how 1 experiment of sweep {sweep} ended" in line, line
        assert f"a later `mrunner status {sweep}` tells it" in line
        assert statuses(uri, experiment) == {0: "RUNNING"}
        relay.start()
        told = mrunner("status", sweep)
        assert told.returncode == 0 and told.stderr == "", told.stderr
        assert statuses(uri, experiment) == {0: "FINISHED"}
        relay.stop()
        again = mrunner("status", sweep)  # nothing newly ended: no server asked, so no warning
        assert again.returncode == 0 and again.stderr == "", again.stderr
    finally:
        relay.stop()


def test_each_end_is_told_once_and_a_start_again_after_a_told_end():
    from mrunner.mlflow_ends import STATUSES, _new
    from mrunner.records import RUNNING, STATES, TERMINAL, Run

    assert set(STATUSES) == TERMINAL  # every end has its status
    assert {STATUSES[state] for state in STATES if state in TERMINAL} == {"FINISHED", "FAILED", "KILLED"}
    run = Run("s", 0, "id", "n", {}, [], state="failed", attempt=0)
    assert _new(run, None) and not _new(run, [0, "FAILED", "r"])
    assert _new(Run("s", 0, "id", "n", {}, [], state="completed", attempt=1), [0, "FAILED", "r"])  # the next end
    assert not _new(Run("s", 0, "id", "n", {}, [], state=RUNNING, attempt=1), None)  # running, never told ended
    assert _new(Run("s", 0, "id", "n", {}, [], state=RUNNING, attempt=1), [0, "FAILED", "r"])  # running again
    assert not _new(Run("s", 0, "id", "n", {}, [], state=RUNNING, attempt=1), [1, "RUNNING", "r"])


INLINE = """
import os, sys, time, mrunner
c = mrunner.get_configuration()
mrunner.report({"loss": c.lr}, step=mrunner.attempt())
gate = os.environ.get("GATE")
if gate:  # the test stops the server meanwhile
    open(gate + ".started", "w").close()
    while not os.path.exists(gate):
        time.sleep(0.05)
if c.lr == 0.2:
    sys.exit(3)
"""


@pytest.mark.parametrize("tracking", ["live", "deferred"])
def test_an_inline_sweep_returns_with_its_runs_ended_and_uploaded(
    tracking, mlflow_service, mrunner_home, mrunner, tmp_path
):
    """A local sweep run inline (no --wait, no --detach) has ended when the command returns: MLflow reads each run
    FINISHED or FAILED and holds its metrics straight after, with no other mrunner command."""
    from mlflow.tracking import MlflowClient

    uri = mlflow_service["tracking_uri"]
    experiment = f"mrunner-inline-{uuid.uuid4().hex[:8]}"
    keys = {"backend": "local", "mlflow": True, "mlflow_tracking_uri": uri, "mlflow_experiment": experiment}
    name = write_context(mrunner_home, f"inline-{tracking}", {**keys, "tracking": tracking})
    (tmp_path / "train.py").write_text(INLINE)
    done = mrunner(f"+context={name}", "train.py", "-m", "lr=0.1,0.2,0.3")
    assert done.returncode == 1, done.stderr  # one failed
    runs = mlflow_runs(uri, experiment)
    assert {index: run.info.status for index, run in runs.items()} == {0: "FINISHED", 1: "FAILED", 2: "FINISHED"}
    assert {index: run.data.metrics for index, run in runs.items()} == {
        0: {"loss": 0.1},
        1: {"loss": 0.2},
        2: {"loss": 0.3},
    }
    assert all(run.info.end_time and run.info.end_time >= run.info.start_time for run in runs.values())
    client = MlflowClient(uri)
    assert all(len(client.get_metric_history(run.info.run_id, "loss")) == 1 for run in runs.values())
    sweep = done.stdout.strip().splitlines()[-1]
    resumed = mrunner("resume", sweep)  # the failed one, inline: it fails again, and MLflow reads so at once
    assert resumed.returncode == 1, resumed.stderr
    runs = mlflow_runs(uri, experiment)
    assert {index: run.info.status for index, run in runs.items()} == {0: "FINISHED", 1: "FAILED", 2: "FINISHED"}
    steps = sorted(point.step for point in client.get_metric_history(runs[1].info.run_id, "loss"))
    assert steps == [0, 1]  # the second attempt's point too
    again = mrunner("results", sweep)  # told once: nothing is sent again
    assert again.returncode == 0 and "uploaded" not in again.stderr, again.stderr
    assert {i: len(client.get_metric_history(run.info.run_id, "loss")) for i, run in runs.items()} == {0: 1, 1: 2, 2: 1}


def test_an_inline_sweep_whose_server_went_away_warns_once_and_keeps_its_exit_code(
    mlflow_service, mrunner_home, mrunner, tmp_path
):
    """The server answers at submission and is gone when the inline sweep ends: one warning line, the exit code
    the sweep's (1: one failed), the runs told nothing; a later `results` (the server back) uploads and ends them."""
    import threading

    from tests.test_tracking_mlflow import relayed_context

    relay, experiment = relayed_context(mlflow_service, mrunner_home, "relayed")
    uri = mlflow_service["tracking_uri"]
    gate = tmp_path / "gate"
    (tmp_path / "train.py").write_text(INLINE)
    try:
        finished: list = []
        command = threading.Thread(
            target=lambda: finished.append(
                mrunner(
                    "+context=relayed",
                    "+context.tracking=deferred",
                    f"+context.env.GATE={gate}",
                    "train.py",
                    "-m",
                    "lr=0.1,0.2,0.3",
                )
            )
        )
        command.start()
        wait_for(lambda: (tmp_path / "gate.started").exists(), bool, what="the first experiment to start", timeout=120)
        relay.stop()
        gate.write_text("")
        command.join(300)
        (done,) = finished
        assert done.returncode == 1, done.stderr
        sweep = done.stdout.strip().splitlines()[-1]
        warnings = [line for line in done.stderr.splitlines() if "warning" in line]
        assert len(warnings) == 1, done.stderr
        assert f"was not told how 3 experiments of sweep {sweep} ended" in warnings[0], warnings
        assert f"a later `mrunner results {sweep}` tells it and uploads what waits" in warnings[0]
        assert mlflow_runs(uri, experiment) == {}
        relay.start()
        shown = mrunner("results", sweep)
        assert shown.returncode == 0, shown.stderr
        assert statuses(uri, experiment) == {0: "FINISHED", 1: "FAILED", 2: "FINISHED"}
    finally:
        relay.stop()
