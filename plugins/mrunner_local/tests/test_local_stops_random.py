"""Finished work never runs twice, whatever stops a local sweep and whenever: randomised trials (the moments are
drawn by a seeded RNG, many of them while experiments finish), each followed by `resume`; the experiments' own
ledger (each appends one mark when it completes) proves that every point completed exactly once."""

from __future__ import annotations

import json
import os
import random
import signal
import time
from pathlib import Path

import pytest

from mrunner.records import COMPLETED
from mrunner.store import Store, default_path
from mrunner.testing import start_mrunner, wait_for

# Completing is one step: once the mark is written no stopping signal is taken any more, and the process ends
# with exit 0 at once (no interpreter teardown for a signal to land in). Before it, SIGTERM stops it with 143.
LEDGER = """
import os, random, signal, sys, time
from mrunner import get_configuration

config = get_configuration()
signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
open(os.path.join(config.ledger, f"started-{config.i}"), "a").close()
time.sleep(random.Random(config.trial * 1000 + config.i).choice([0, 0, 0.05, 0.1, 0.2, 0.4]))
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT, signal.SIGHUP})
with open(os.path.join(config.ledger, f"done-{config.i}"), "a") as ledger:
    ledger.write("x")
os._exit(0)
"""

POINTS = 24
PARALLEL = 6

# Dozens of sweeps of 24 experiments, long on purpose: the whole run (tests/run) has them, the fast tier not.
pytestmark = pytest.mark.slow


@pytest.fixture
def project(tmp_path: Path, mrunner) -> Path:
    (tmp_path / "project").mkdir()
    (tmp_path / "project" / "ledger.py").write_text(LEDGER)
    mrunner.cwd = tmp_path / "project"
    return tmp_path / "project"


def done(ledger: Path) -> dict[int, int]:
    return {int(p.name.split("-")[1]): len(p.read_text()) for p in ledger.glob("done-*")}


def latest_sweep(mrunner) -> str:
    return json.loads(mrunner("status", "--json").stdout)[0]["sweep"]["id"]


def states(mrunner, sweep: str) -> dict[int, str]:
    return {e["index"]: e["state"] for e in json.loads(mrunner("status", sweep, "--json").stdout)["experiments"]}


def stop_moment(rng: random.Random, ledger: Path) -> None:
    """Wait for a random number of completions (0: for the first start), then a few random milliseconds: a
    stop that often meets an experiment in the middle of completing."""
    completions = rng.randrange(POINTS)
    wait_for(lambda: len(done(ledger)) >= completions and any(ledger.glob("started-*")), timeout=120, every=0.01)
    time.sleep(rng.uniform(0, 0.05))


def finish_and_check(mrunner, sweep: str, ledger: Path) -> None:
    resumed = mrunner("resume", sweep, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert set(states(mrunner, sweep).values()) == {COMPLETED}
    assert done(ledger) == dict.fromkeys(range(POINTS), 1), "a point completed twice, or never"


def arguments(trial: int, ledger: Path) -> list[str]:
    return [
        "ledger.py",
        "-m",
        f"i=range({POINTS})",
        f"trial={trial}",
        f"ledger={ledger}",
        f"context.max_parallel={PARALLEL}",
        "context.grace_period=5",
    ]


@pytest.mark.parametrize(("number", "trials"), [(signal.SIGINT, 20), (signal.SIGTERM, 4), (signal.SIGHUP, 4)])
def test_a_signal_to_mrunner_at_random_moments_never_runs_finished_work_again(mrunner, project, number, trials):
    rng = random.Random(number)
    for trial in range(trials):
        ledger = project.parent / f"ledger-{trial}"
        ledger.mkdir()
        process = start_mrunner(project, *arguments(trial, ledger))
        stop_moment(rng, ledger)
        process.send_signal(number)
        _, stderr = process.communicate(timeout=60)
        assert process.returncode in (0, 128 + number) and "Traceback" not in stderr, stderr  # 0: it had ended
        finish_and_check(mrunner, latest_sweep(mrunner), ledger)


def test_a_cancel_at_random_moments_never_runs_finished_work_again(mrunner, project):
    rng = random.Random(7)
    for trial in range(4):
        ledger = project.parent / f"ledger-{trial}"
        ledger.mkdir()
        submitted = mrunner(*arguments(trial, ledger), "--detach")
        assert submitted.returncode == 0, submitted.stderr
        sweep = submitted.stdout.strip().splitlines()[-1]
        stop_moment(rng, ledger)
        cancelled = mrunner("cancel", sweep)
        assert cancelled.returncode == 0, cancelled.stderr
        finish_and_check(mrunner, sweep, ledger)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"


def test_a_detached_supervisor_killed_at_random_moments_leaves_nothing_unsupervised(mrunner, mrunner_home, project):
    """kill -9 of the background supervisor: what runs goes on under its attempt wrapper to its own recorded end
    (never recorded ended while it runs), what waited is recorded lost, and `resume` runs exactly that."""
    rng = random.Random(9)
    for trial in range(4):
        kill_the_supervisor(mrunner, project, rng, trial)


def kill_the_supervisor(mrunner, project: Path, rng: random.Random, trial: int) -> None:
    ledger = project.parent / f"ledger-{trial}"
    ledger.mkdir()
    submitted = mrunner(*arguments(trial, ledger), "--detach")
    assert submitted.returncode == 0, submitted.stderr
    sweep = submitted.stdout.strip().splitlines()[-1]
    stop_moment(rng, ledger)
    supervisor = int(Store(default_path()).sweep(sweep).detail["supervisor"].split("@")[0])
    os.kill(supervisor, signal.SIGKILL)
    wait_for(lambda: not alive(supervisor), timeout=120, every=0.01)
    running = [index for index, state in states(mrunner, sweep).items() if state == "running"]
    wait_for(lambda: "running" not in states(mrunner, sweep).values(), timeout=120, every=0.01)
    ended = states(mrunner, sweep)
    # completed, or (killed between recording it running and telling its wrapper to start) never started
    assert all(ended[i] == COMPLETED or (ended[i] == "lost" and i not in done(ledger)) for i in running)
    finish_and_check(mrunner, sweep, ledger)
