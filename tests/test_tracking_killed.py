"""An experiment process killed outright (SIGKILL: the OOM killer, a lost node, a scheduler's hard kill) while
tracking live never reaches mrunner's tracker exit, which would have noted the points its tracker did not take.
Its metrics file holds the opening its forwarding wrote and no closing: once the experiment has ended,
`mrunner results` (or `pull`, `status --wait`) replays its lines into the same tracker run, each point once.
Against the real MLflow server (tests/services/mlflow), the real ``wandb`` client with ``FakeWandbServer`` and the
real ``neptune`` client with ``FakeNeptuneServer``, the process killed at several moments: before its first
report, with reports queued behind a server that does not answer, right after a burst of reports, and after
everything had reached the tracker."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from mrunner.testing import ended, wait_for, write_context
from tests.fake_neptune import FakeNeptuneServer
from tests.fake_wandb import FakeWandbServer
from tests.test_tracking_mlflow import relayed_context

STEPS = 300

#: The experiment: ``moment`` says when it kills itself; the test's gate files say when the test is ready.
KILLED = f"""
import os, signal, time, mrunner
c = mrunner.get_configuration()
def wait(name):
    while not os.path.exists(name):
        time.sleep(0.05)
def kill():
    print("killed", flush=True)
    os.kill(os.getpid(), signal.SIGKILL)
if c.moment == "start":
    kill()  # forwarding started, nothing reported
for step in (0, 1):  # W&B sends a step's row once a later step comes: step 0 reaches the server
    mrunner.report({{"loss": 1.0 / (1 + step)}}, step=step)
if c.moment == "queued":
    wait(c.gate)  # the test stopped the server in front of the tracker
for step in range(2, {STEPS}):
    mrunner.report({{"loss": 1.0 / (1 + step)}}, step=step)
if c.moment == "sent":
    wait(c.gate)  # the test saw every point in the tracker
kill()
"""


def expected(moment: str) -> list[tuple[int, float]]:
    return [] if moment == "start" else [(s, pytest.approx(1.0 / (1 + s))) for s in range(STEPS)]


@pytest.mark.parametrize("moments", [["start", "burst", "sent"], ["queued"]])
def test_a_killed_experiment_is_caught_up_in_its_mlflow_run_each_point_once(
    moments, mlflow_service, mrunner, mrunner_home, tmp_path
):
    from mlflow.tracking import MlflowClient

    relay, experiment = relayed_context(mlflow_service, mrunner_home, "killed")
    gate = tmp_path / "gate"
    (tmp_path / "train.py").write_text(KILLED)
    submitted = mrunner("+context=killed", "train.py", "-m", f"moment={','.join(moments)}", f"gate={gate}", "--detach")
    assert submitted.returncode == 0, submitted.stderr
    sweep = submitted.stdout.strip().splitlines()[-1]
    client = MlflowClient(mlflow_service["tracking_uri"])

    def runs() -> dict[str, str]:
        """Each experiment's index -> its one live run (an experiment with two fails the test)."""
        found = client.get_experiment_by_name(experiment)
        made = client.search_runs([found.experiment_id]) if found else []
        keys = [run.data.tags["mrunner.experiment"].split("/")[1] for run in made]
        assert len(keys) == len(set(keys)), keys
        return {key: run.info.run_id for key, run in zip(keys, made)}

    def history(index: int) -> list[tuple[int, float]]:
        run = runs().get(str(index))
        return sorted((p.step, p.value) for p in client.get_metric_history(run, "loss")) if run else []

    if "queued" in moments:
        wait_for(lambda: history(0), lambda points: len(points) == 2, what="the live points of steps 0, 1", timeout=120)
        relay.stop()  # the reports after it queue in the sender, unsent
    if "sent" in moments:
        index = moments.index("sent")
        wait_for(lambda: len(history(index)), lambda n: n == STEPS, what="every point in MLflow", timeout=120)
    gate.write_text("")
    assert [run["state"] for run in ended(mrunner, sweep, timeout=120).values()] == ["failed"] * len(moments)
    log = mrunner("logs", f"{sweep}/0").stdout
    stops = [line for line in log.splitlines() if "stops sending it metrics" in line]
    # no exit: nothing noted (but a start the server answered too late for, which the catch-up serves too)
    assert "killed" in log and all("of the experiment's start" in line for line in stops), log
    if "queued" in moments:
        relay.start()  # the server is back

    shown = mrunner("results", sweep, "--json")
    assert shown.returncode == 0, shown.stderr
    for index, moment in enumerate(moments):
        assert history(index) == expected(moment), moment
    assert sorted(runs()) == [str(index) for index in range(len(moments))]
    again = mrunner("results", sweep)
    assert again.returncode == 0 and "uploaded" not in again.stderr, again.stderr
    for index, moment in enumerate(moments):
        assert history(index) == expected(moment), moment
    relay.stop()


def test_a_killed_experiment_whose_server_answered_after_the_start_window_is_caught_up_in_its_mlflow_run(
    mlflow_service, mrunner, mrunner_home, tmp_path
):
    """A server slower than the experiment's start window (``sender.START_SECONDS``: a busy laptop, a slow
    network, many experiments starting together): the sender's look for the run is answered too late, so the
    experiment goes on without its run, noting that it stopped forwarding, and is killed before it reports
    anything. The catch-up makes its run all the same, holding its parameters and its end (FAILED): the run is
    never lost to a slow server, whatever the process had sent."""
    from mlflow.tracking import MlflowClient

    relay, experiment = relayed_context(mlflow_service, mrunner_home, "slow")
    relay.hold_first(b"/runs/search")  # the sender's look for the experiment's run, answered after the window
    (tmp_path / "train.py").write_text(KILLED)
    submitted = mrunner("+context=slow", "train.py", "-m", "moment=start", f"gate={tmp_path / 'gate'}", "--detach")
    assert submitted.returncode == 0, submitted.stderr
    sweep = submitted.stdout.strip().splitlines()[-1]
    try:
        assert relay.holding.wait(120), "the sender never looked for the run"
        assert [run["state"] for run in ended(mrunner, sweep, timeout=120).values()] == ["failed"]
        log = mrunner("logs", f"{sweep}/0").stdout
        assert "killed" in log and "did not answer within" in log, log  # it went on without its run
    finally:
        relay.released.set()  # the held search is answered, to a process gone
    waited = mrunner("status", sweep, "--wait")  # the catch-up (`results` refuses a sweep without points)
    assert "killed by SIGKILL" in waited.stdout and "does not take" not in waited.stderr, waited
    client = MlflowClient(mlflow_service["tracking_uri"])
    found = client.get_experiment_by_name(experiment)
    (made,) = client.search_runs([found.experiment_id]) if found else []
    assert made.data.tags["mrunner.experiment"] == f"{sweep}/0", made.data.tags
    assert made.data.params.get("moment") == "start", made.data.params
    assert made.info.status == "FAILED" and made.info.start_time <= made.info.end_time, made.info
    assert client.get_metric_history(made.info.run_id, "loss") == []
    again = mrunner("status", sweep, "--wait")
    assert "killed by SIGKILL" in again.stdout and "uploaded" not in again.stderr, again
    assert [run.info.run_id for run in client.search_runs([found.experiment_id])] == [made.info.run_id]
    relay.stop()


@pytest.fixture
def fake_wandb() -> Iterator[FakeWandbServer]:
    pytest.importorskip("wandb")
    with FakeWandbServer() as server:
        yield server


@pytest.mark.parametrize("moments", [["start", "burst", "sent"], ["queued"]])
def test_a_killed_experiment_is_caught_up_in_its_wandb_run_each_step_once(
    moments, fake_wandb, mrunner, mrunner_home, tmp_path
):
    from mrunner.wandb_run import run_id

    keys = {"backend": "local", "wandb": True, "wandb_mode": "online", "wandb_project": "p"}
    context = write_context(mrunner_home, "wb", {**keys, "env": {"WANDB_BASE_URL": fake_wandb.url}})
    gate = tmp_path / "gate"
    (tmp_path / "train.py").write_text(KILLED)
    env = {"WANDB_API_KEY": "k" * 40}
    submitted = mrunner(
        f"+context={context}", "train.py", "-m", f"moment={','.join(moments)}", f"gate={gate}", "--detach", env=env
    )
    assert submitted.returncode == 0, submitted.stderr
    sweep = submitted.stdout.strip().splitlines()[-1]
    identities = [run_id({"sweep": sweep, "index": index}) for index in range(len(moments))]

    def points(index: int) -> list[tuple[int, float]]:
        run = fake_wandb.runs.get(identities[index])
        return run.points("loss") if run else []

    if "queued" in moments:
        fake_wandb.wait(lambda: points(0), timeout=120, what="step 0")
        fake_wandb.stop()
    if "sent" in moments:
        index = moments.index("sent")
        # W&B sends a step's row once a later step comes: every step but the last reaches the server
        fake_wandb.wait(lambda: len(points(index)) >= STEPS - 1, timeout=120, what="the steps in W&B")
    gate.write_text("")
    assert [run["state"] for run in ended(mrunner, sweep, timeout=120).values()] == ["failed"] * len(moments)
    if "queued" in moments:
        fake_wandb.start()

    waited = mrunner("status", sweep, "--wait", env=env)  # the catch-up of `status --wait`
    assert "W&B: uploaded the new metrics of" in waited.stderr, waited.stderr
    for index, moment in enumerate(moments):
        assert points(index) == expected(moment), moment
    assert set(fake_wandb.runs) <= set(identities)
    again = mrunner("results", sweep, env=env)
    assert again.returncode == 0 and "uploaded" not in again.stderr, again.stderr
    for index, moment in enumerate(moments):
        assert points(index) == expected(moment), moment
    assert fake_wandb.unknown == []


@pytest.fixture
def fake_neptune() -> Iterator[FakeNeptuneServer]:
    pytest.importorskip("neptune")
    with FakeNeptuneServer() as server:
        yield server


@pytest.mark.parametrize("moments", [["start", "burst", "sent"], ["queued"]])
def test_a_killed_experiment_is_caught_up_in_its_neptune_run_each_step_once(
    moments, fake_neptune, mrunner, mrunner_home, tmp_path
):
    """Neptune's client (async mode) queues the points on disk and sends them from a thread: a process killed
    outright leaves the queued ones unsent, and its run lacks them until the catch-up replays the experiment's
    lines (Neptune refuses the steps the run holds: each step once)."""
    from tests.test_tracking_neptune_online import INSECURE, custom_id, live

    context = live(mrunner_home, "npk")
    gate = tmp_path / "gate"
    (tmp_path / "train.py").write_text(KILLED)
    env = {"NEPTUNE_API_TOKEN": fake_neptune.token(), **INSECURE}
    submitted = mrunner(
        f"+context={context}", "train.py", "-m", f"moment={','.join(moments)}", f"gate={gate}", "--detach", env=env
    )
    assert submitted.returncode == 0, submitted.stderr
    sweep = submitted.stdout.strip().splitlines()[-1]
    identities = [custom_id(sweep, index) for index in range(len(moments))]

    def points(index: int) -> list[tuple[float, float]]:
        found = [run for run in fake_neptune.runs.values() if run.custom_id == identities[index]]
        assert len(found) <= 1, found
        return found[0].points("metrics/loss") if found else []

    if "queued" in moments:
        fake_neptune.wait(lambda: len(points(0)) == 2, timeout=120, what="steps 0 and 1")
        fake_neptune.stop()
    if "sent" in moments:
        index = moments.index("sent")
        fake_neptune.wait(lambda: len(points(index)) == STEPS, timeout=120, what="every step in Neptune")
    gate.write_text("")
    assert [run["state"] for run in ended(mrunner, sweep, timeout=120).values()] == ["failed"] * len(moments)
    log = mrunner("logs", f"{sweep}/0").stdout
    assert "killed" in log and "Neptune did not" not in log, log  # no exit: nothing noted
    if "queued" in moments:
        fake_neptune.start()

    waited = mrunner("status", sweep, "--wait", env=env)  # the catch-up of `status --wait`
    assert "Neptune: uploaded the new metrics of" in waited.stderr, waited.stderr
    for index, moment in enumerate(moments):
        assert points(index) == expected(moment), moment
    assert {run.custom_id for run in fake_neptune.runs.values()} <= set(identities)
    requests = len(fake_neptune.requests)
    again = mrunner("results", sweep, env=env)
    assert again.returncode == 0 and "uploaded" not in again.stderr, again.stderr
    assert len(fake_neptune.requests) == requests  # nothing new: no request
    for index, moment in enumerate(moments):
        assert points(index) == expected(moment), moment
    assert fake_neptune.unknown == []
