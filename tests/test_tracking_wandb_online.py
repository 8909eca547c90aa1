"""Live W&B tracking online, the real ``wandb`` client against ``FakeWandbServer`` (no W&B server can run here:
see tests/fake_wandb.py): one run per experiment named after it, in its sweep's group, the parameters as its
config, the reported metrics at their steps, the retried experiment's second attempt continuing its run; the
key only as a secret. A server down during a run or at the experiment's start: the experiment goes on, and a
later `results`, `pull` or `status --wait` uploads what W&B missed into the same run, each step once. A server
down at submission: one line, nothing recorded."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from mrunner.testing import ended, experiments, wait_for, write_context
from tests.fake_wandb import FakeWandbServer
from tests.leaks import CmdlineWatch, assert_secret_only_in, fake_secret, outputs_of

SCRIPT = """
import sys, mrunner
c = mrunner.get_configuration()
for step in range(3):
    mrunner.report({"loss": c.lr * (3 - step)}, step=step + 3 * mrunner.attempt())
if c.lr == 0.2 and mrunner.attempt() == 0:
    sys.exit(3)
"""


@pytest.fixture
def fake_wandb() -> Iterator[FakeWandbServer]:
    pytest.importorskip("wandb")
    with FakeWandbServer() as server:
        yield server


def online(mrunner_home, server: FakeWandbServer, name: str, **keys: object) -> str:
    """A local context tracking live in W&B online, at ``server``."""
    context = {"backend": "local", "wandb": True, "wandb_mode": "online", "wandb_project": "p", **keys}
    return write_context(mrunner_home, name, {**context, "env": {"WANDB_BASE_URL": server.url}})


def run_id(sweep: str, index: int) -> str:
    from mrunner.wandb_run import run_id

    return run_id({"sweep": sweep, "index": index})


def test_one_run_per_experiment_across_attempts_the_key_only_a_secret(fake_wandb, mrunner, mrunner_home, tmp_path):
    from base64 import b64encode

    (tmp_path / "train.py").write_text(SCRIPT)
    context = online(mrunner_home, fake_wandb, "wb", retry_failed=1)
    key = fake_secret("wandb")[:40]
    with CmdlineWatch(key, witness="train.py") as arguments:
        done = mrunner(f"+context={context}", "train.py", "-m", "lr=0.1,0.2", "--wait", env={"WANDB_API_KEY": key})
    assert done.returncode == 0, done.stderr
    sweep = done.stdout.strip().splitlines()[-1]
    states = experiments(mrunner, sweep).values()
    assert [(e["state"], e["attempt"]) for e in states] == [("completed", 0), ("completed", 1)]

    assert sorted(fake_wandb.runs) == sorted(run_id(sweep, index) for index in (0, 1))  # no other run
    for index, lr in ((0, 0.1), (1, 0.2)):
        run = fake_wandb.runs[run_id(sweep, index)]
        assert (run.name, run.group, run.project, run.parameters()) == ("train", sweep, "p", {"lr": lr})
        expected = [(s, pytest.approx(lr * (3 - s))) for s in range(3)]
        if index == 1:  # the retry continued the run: its steps after the first attempt's, each once
            expected += [(3 + s, pytest.approx(lr * (3 - s))) for s in range(3)]
        assert run.points("loss") == expected
        assert run.completed
    assert fake_wandb.unknown == []
    assert fake_wandb.authorizations == {"Basic " + b64encode(f"api:{key}".encode()).decode()}  # it got there

    assert arguments.witnessed
    shown = {"submission": done.stdout + done.stderr}
    shown.update(outputs_of(mrunner, ["status", sweep], ["logs", f"{sweep}/1"], ["context", "show", context]))
    assert_secret_only_in(key, paths=[mrunner_home, tmp_path], outputs=shown, cmdlines=arguments)


LOSING = """
import os, time, mrunner
mrunner.get_configuration()
for step in (0, 1):  # W&B sends a step's row once a later step comes: step 0 reaches the server
    mrunner.report({"loss": 1.0 / (1 + step)}, step=step)
while not os.path.exists("gate"):
    time.sleep(0.05)
for step in (2, 3):
    mrunner.report({"loss": 1.0 / (1 + step)}, step=step)
print("went on", flush=True)
"""


@pytest.mark.slow  # waits out W&B's bounded exit (FINISH_SECONDS, 10 s) on purpose: that bound is what it tests
def test_a_server_down_during_a_run_the_experiment_ends_and_results_uploads_the_rest_once(
    fake_wandb, mrunner, mrunner_home, tmp_path
):
    """The server goes away after the run's first row arrived: the experiment's exit waits ``FINISH_SECONDS``
    for W&B (its default would wait for as long as the server is gone), warns once and notes it in the
    metrics file; the next `results` (the server back) sends the steps the run lacks into it, each once, and
    a second `results` sends nothing."""
    import time

    from mrunner.wandb_run import FINISH_SECONDS

    context = online(mrunner_home, fake_wandb, "cut")
    (tmp_path / "rank.py").write_text(LOSING.replace('"gate"', repr(str(tmp_path / "gate"))))
    (tmp_path / "train.py").write_text(  # the process of interest is a child, so its exit is timed from outside
        "import subprocess, sys, time\n"
        "rank = subprocess.Popen([sys.executable, 'rank.py'], stdout=subprocess.PIPE, text=True)\n"
        "for line in rank.stdout:\n"
        "    print(line, end='', flush=True)\n"
        "    if line.startswith('went on'):\n"
        "        break\n"
        "last = time.monotonic()\n"
        "assert rank.wait() == 0\n"
        "print('EXIT', time.monotonic() - last, flush=True)\n"
    )
    env = {"WANDB_API_KEY": "k" * 40}
    submitted = mrunner(f"+context={context}", "train.py", "lr=1", "--detach", env=env)
    assert submitted.returncode == 0, submitted.stderr
    sweep = submitted.stdout.strip().splitlines()[-1]
    identity = run_id(sweep, 0)
    fake_wandb.wait(lambda: identity in fake_wandb.runs and fake_wandb.runs[identity].lines, timeout=120, what="step 0")
    fake_wandb.stop()
    (tmp_path / "gate").write_text("")

    started = time.monotonic()
    assert ended(mrunner, sweep, timeout=120)[0]["state"] == "completed"
    log = mrunner("logs", f"{sweep}/0").stdout
    assert "went on" in log and log.count("W&B did not take this process's metrics") == 1, log
    assert "`mrunner results` uploads them later" in log
    # The exit's bound, then W&B's service process ending: 10 s more is ample, where W&B's own finish waits
    # for the server for as long as it is gone.
    exit_seconds = float(log.split("EXIT ")[1].split()[0])
    assert FINISH_SECONDS <= exit_seconds < FINISH_SECONDS + 10, log
    assert time.monotonic() - started < 120
    assert fake_wandb.runs[identity].points("loss") == [(0, 1.0)]

    down = mrunner("results", sweep, env=env)  # the server still down: one warning, the table as usual
    assert down.returncode == 0 and "W&B at project p of " in down.stderr, down.stderr
    assert json.loads(mrunner("results", sweep, "--json", env=env).stdout)[0]["loss"] == 0.25

    fake_wandb.start()  # the server is back
    shown = mrunner("results", sweep, env=env)
    assert shown.returncode == 0 and "W&B: uploaded the new metrics of 1 experiment" in shown.stderr, shown.stderr
    points = [(0, 1.0), (1, 0.5), (2, pytest.approx(1 / 3)), (3, 0.25)]
    assert fake_wandb.runs[identity].points("loss") == points
    again = mrunner("results", sweep, env=env)
    assert again.returncode == 0 and "uploaded" not in again.stderr, again.stderr
    assert list(fake_wandb.runs) == [identity] and fake_wandb.runs[identity].points("loss") == points
    assert fake_wandb.unknown == []


@pytest.mark.slow  # waits out W&B's bounded start (INIT_SECONDS, 15 s) on purpose: that bound is what it tests
def test_a_server_down_at_the_start_the_experiment_trains_on_and_pull_makes_its_run_once(
    fake_wandb, mrunner, mrunner_home, tmp_path
):
    """The server answered at submission and is gone when the experiment starts its run (at its first report):
    ``wandb.init`` gives up after ``INIT_SECONDS`` (W&B's default: 90 s), warning once; the experiment trains
    on. Its retry, the server back, does not forward to W&B (its steps would pass the lost ones, which W&B
    would then leave out), warning once, and completes; `pull` makes the run, named, grouped, holding the
    parameters, with every step of both attempts once, and `status --wait` later sends nothing."""
    from mrunner.wandb_run import INIT_SECONDS

    context = online(mrunner_home, fake_wandb, "late", retry_failed=1)
    (tmp_path / "train.py").write_text(
        "import os, sys, time, mrunner, wandb\n"  # the client imported first, as a script using W&B does
        "c = mrunner.get_configuration()\n"
        "a = mrunner.attempt()\n"
        f"while not os.path.exists(os.path.join({str(tmp_path)!r}, f'gate{{a}}')):\n"
        "    time.sleep(0.05)\n"
        "started = time.monotonic()\n"
        "mrunner.report({'loss': 1.0 + a}, step=3 * a)\n"
        "print('FIRST', time.monotonic() - started, flush=True)\n"
        "for step in (1, 2):\n"
        "    mrunner.report({'loss': 1.0 / (1 + step) + a}, step=step + 3 * a)\n"
        "print('trained', flush=True)\n"
        "sys.exit(3 if a == 0 else 0)\n"
    )
    env = {"WANDB_API_KEY": "k" * 40}
    submitted = mrunner(f"+context={context}", "train.py", "lr=1", "--detach", env=env)
    assert submitted.returncode == 0, submitted.stderr
    sweep = submitted.stdout.strip().splitlines()[-1]
    fake_wandb.stop()
    (tmp_path / "gate0").write_text("")
    wait_for(
        lambda: experiments(mrunner, sweep)[0]["attempt"],
        lambda attempt: attempt == 1,
        timeout=180,
        what="the retry",
    )
    log = mrunner("logs", f"{sweep}/0", "--attempt", "0").stdout
    assert "trained" in log and log.count("W&B refused a report") == 1, log
    assert "`mrunner results` uploads them later" in log
    # The bound, plus starting and ending W&B's service process (a second or two on a loaded machine).
    first = float(log.split("FIRST ")[1].split()[0])
    assert INIT_SECONDS <= first < INIT_SECONDS + 5, log

    fake_wandb.start()
    (tmp_path / "gate1").write_text("")
    assert ended(mrunner, sweep, timeout=180)[0]["state"] == "completed"
    log = mrunner("logs", f"{sweep}/0").stdout
    assert "trained" in log and log.count("W&B refused a report (Abandoned: an earlier process") == 1, log
    assert fake_wandb.runs == {}  # nothing live: the retry left W&B to the catch-up

    pulled = mrunner("pull", sweep, "--to", str(tmp_path / "out"), env=env)
    assert pulled.returncode == 0 and "W&B: uploaded the new metrics of 1 experiment" in pulled.stderr, pulled.stderr
    (run,) = fake_wandb.runs.values()
    assert run.id == run_id(sweep, 0)
    assert (run.name, run.group, run.parameters()) == ("train", sweep, {"lr": 1})
    points = [(s + 3 * a, pytest.approx(1.0 / (1 + s) + a)) for a in (0, 1) for s in range(3)]
    assert run.points("loss") == points
    waited = mrunner("status", sweep, "--wait", env=env)
    assert waited.returncode == 0 and "uploaded" not in waited.stderr, waited.stderr
    assert run.points("loss") == points


def test_a_server_down_at_submission_is_refused_before_anything_is_recorded(mrunner, mrunner_home, tmp_path):
    pytest.importorskip("wandb")
    server = FakeWandbServer()  # its port, with nobody listening
    context = online(mrunner_home, server, "down")
    (tmp_path / "train.py").write_text("import mrunner\n")
    refused = mrunner(f"+context={context}", "train.py", "lr=1", env={"WANDB_API_KEY": "k" * 40})
    assert refused.returncode == 2 and len(refused.stderr.strip().splitlines()) == 1, refused.stderr
    assert f"tracks experiments in W&B online, but the server at {server.url} does not answer" in refused.stderr
    assert json.loads(mrunner("status", "--json").stdout) == []
    with server:  # the same server up: taken
        taken = mrunner(f"+context={context}", "train.py", "lr=1", "--wait", env={"WANDB_API_KEY": "k" * 40})
    assert taken.returncode == 0, taken.stderr


def test_deferred_with_the_server_down_at_submission_warns_and_a_later_results_uploads(mrunner, mrunner_home, tmp_path):
    """`tracking: deferred` to W&B online whose server is down at submission: a warning, the sweep runs (the
    experiments get nothing of W&B), its `--wait` and a `results` warn that the metrics wait; the server up,
    `results` uploads each step once into one run per experiment."""
    pytest.importorskip("wandb")
    server = FakeWandbServer()  # nobody listening yet
    (tmp_path / "train.py").write_text(SCRIPT)
    keys = {"backend": "local", "wandb": True, "wandb_mode": "online", "wandb_project": "p", "tracking": "deferred"}
    write_context(mrunner_home, "later", keys)
    env = {"WANDB_API_KEY": "k" * 40, "WANDB_BASE_URL": server.url}  # this machine's, for the uploads
    done = mrunner("+context=later", "train.py", "lr=0.1", "--wait", env=env)
    assert done.returncode == 0, done.stderr
    assert f"the W&B server {server.url} does not answer now" in done.stderr, done.stderr
    assert f"W&B at project p of {server.url} does not take sweep" in done.stderr, done.stderr
    sweep = done.stdout.strip().splitlines()[-1]
    with server:
        shown = mrunner("results", sweep, env=env)
        assert shown.returncode == 0 and "W&B: uploaded the new metrics of 1 experiment" in shown.stderr, shown.stderr
        again = mrunner("results", sweep, env=env)
        assert again.returncode == 0 and "uploaded" not in again.stderr, again.stderr
    (run,) = server.runs.values()
    assert (run.id, run.name, run.group, run.parameters()) == (run_id(sweep, 0), "train", sweep, {"lr": 0.1})
    assert run.points("loss") == [(s, pytest.approx(0.1 * (3 - s))) for s in range(3)]
