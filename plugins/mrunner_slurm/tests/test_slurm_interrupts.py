"""Interrupts during a sweep's hand-over to the real loopback cluster, sent from inside the submitting process
at exact moments of the hand-over (before the helper call starts, once the helper has the arrays, once the
first array is accepted but before it is recorded). Whatever their number, the records stay true: every
array the cluster has is recorded with its job id, every experiment recorded cancelled has no job, and after
a third interrupt (the hand-over given up before it knew) `mrunner resume` finds what the cluster accepted
and submits the rest, each array once. Checked with squeue against the records. The arrays are submitted
held (`--hold`): nothing runs, and the sweep is cancelled at the end."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from mrunner.records import CANCELLED, PENDING, PLANNED
from mrunner.testing import as_from_a_terminal, write_context
from plugins.mrunner_slurm.tests.test_slurm_cluster import Cluster, slurm_context

SCRIPT = "print('never runs: held')\n"

# `mrunner ARGS` that sends itself COUNT signals at MOMENT of the Slurm hand-over (SIGTERM, which mrunner takes
# as Ctrl-C; with `group`, one SIGINT to its whole process group, as a terminal's Ctrl-C reaches the ssh
# processes too)
SIGNALLED = """
import os, runpy, signal, sys
from mrunner_slurm import remote

moment, count, group = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "group"
del sys.argv[1:4]

def send():
    for _ in range(count):
        if group:
            os.killpg(0, signal.SIGINT)
        else:
            os.kill(os.getpid(), signal.SIGTERM)

real_lines = remote.lines

def lines(connection, args, stdin, started=None):
    if moment == "start":  # the helper call not started yet
        send()

    def on_start(call):
        if moment == "fed":  # the helper has the whole document: it is about to sbatch, or doing it
            feed = call.feed

            def fed(data):
                sent = feed(data)
                send()
                return sent

            call.feed = fed
        if started is not None:
            started(call)

    for number, event in enumerate(real_lines(connection, args, stdin, started=on_start)):
        if moment == "event" and number == 0:  # the first array accepted, not yet recorded
            send()
        yield event

remote.lines = lines
sys.argv[0] = "mrunner"
runpy.run_module("mrunner", run_name="__main__", alter_sys=True)
"""

ARRAYS = 3  # one per resource class below


@pytest.fixture
def cluster(slurm_service: dict, tmp_path: Path, mrunner_home: Path) -> Iterator[Cluster]:
    storage = f"{slurm_service['storage_dir']}/test-{uuid.uuid4().hex[:10]}"
    write_context(
        mrunner_home, "test-slurm", slurm_context(slurm_service, storage, sbatch_options=["--hold"], grace_period=1)
    )
    (tmp_path / "held.py").write_text(SCRIPT)
    (tmp_path / "signalled.py").write_text(SIGNALLED)
    found = Cluster(slurm_service, storage)
    yield found
    # whatever a failed assertion left held on the shared cluster: the jobs whose folder is this test's
    listing = found.ssh(f"squeue -h -u {slurm_service['user']} -o '%F|%Z'", check=False).split()
    left = sorted({line.split("|")[0] for line in listing if line.split("|", 1)[-1].startswith(storage + "/")})
    if left:
        found.ssh("scancel " + " ".join(left), check=False)


def interrupted(tmp_path: Path, moment: str, count: int, group: bool = False) -> subprocess.CompletedProcess:
    args = ["held.py", "-m", "i=range(2)", "context.mem=100M,200M,300M"]
    line = [sys.executable, str(tmp_path / "signalled.py"), moment, str(count), "group" if group else "self"]
    return subprocess.run(
        [*line, "+context=test-slurm", *args],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=180,
        start_new_session=True,  # its own process group, for `group`'s SIGINT
        preexec_fn=as_from_a_terminal,
    )


def latest_sweep(mrunner) -> str:
    return json.loads(mrunner("status", "--json").stdout)[0]["sweep"]["id"]


def runs_of(mrunner, sweep: str) -> list[dict]:
    result = mrunner("status", sweep, "--json", "--all")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)["experiments"]


def jobs_on_cluster(cluster: Cluster, sweep: str) -> dict[str, str]:
    """The cluster's arrays of ``sweep``, job id -> name (squeue lists held jobs)."""
    listing = cluster.ssh(f"squeue -h -u {cluster.service['user']} --states=all -o '%F|%j'")
    jobs = dict(line.split("|", 1) for line in listing.split())
    return {job: name for job, name in jobs.items() if name.startswith(f"mrunner-{sweep}-")}


def assert_true_to_the_cluster(cluster: Cluster, runs: list[dict], sweep: str, planned_ok: bool = False) -> None:
    """Every array the cluster has is recorded (all its experiments, with its job id), and nothing recorded
    as submitted lacks its array; the others were cancelled before submission (or, ``planned_ok``, left
    planned for resume)."""
    on_cluster = jobs_on_cluster(cluster, sweep)
    recorded = {run["backend_ref"].split("_")[0] for run in runs if run["state"] not in (CANCELLED, PLANNED)}
    assert set(on_cluster) == recorded, (on_cluster, runs)
    assert len(set(on_cluster.values())) == len(on_cluster)  # each array once
    for run in runs:
        if run["state"] == CANCELLED:
            assert not run["backend_ref"], run
        else:
            assert run["state"] == PENDING or (planned_ok and run["state"] == PLANNED), run
    by_job: dict[str, int] = {}
    for run in runs:
        if run["state"] == PENDING:
            by_job[run["backend_ref"].split("_")[0]] = by_job.get(run["backend_ref"].split("_")[0], 0) + 1
    assert all(count == 2 for count in by_job.values()), by_job  # an array's experiments are recorded together


def cancel_all(mrunner, cluster: Cluster, sweep: str) -> None:
    assert mrunner("cancel", sweep).returncode == 0
    assert all(
        state in ("CANCELLED", "")
        for state in cluster.ssh(
            f"squeue -h -u {cluster.service['user']} -o '%j %T' | grep -F 'mrunner-{sweep}-' || true"
        ).split()[1::2]
    )


@pytest.mark.parametrize("moment", ["start", "fed", "event"])
def test_a_second_interrupt_during_the_hand_over_records_exactly_what_the_cluster_accepted(
    cluster, mrunner, tmp_path, moment
):
    stopped = interrupted(tmp_path, moment, 2)
    assert stopped.returncode == 128 + signal.SIGTERM, stopped.stderr
    assert "Traceback" not in stopped.stderr, stopped.stderr
    sweep = latest_sweep(mrunner)
    runs = runs_of(mrunner, sweep)
    assert_true_to_the_cluster(cluster, runs, sweep)
    assert "stopping now" in stopped.stderr, stopped.stderr
    if moment == "start":  # nothing was sent: nothing submitted
        assert [run["state"] for run in runs] == [CANCELLED] * 6, stopped.stderr
    if moment == "event":  # the first array was accepted before the interrupts: recorded
        assert sum(run["state"] == PENDING for run in runs) >= 2
    resumed = mrunner("resume", sweep)  # the cancelled ones, as their next attempt
    assert resumed.returncode == 0, resumed.stderr
    runs = runs_of(mrunner, sweep)
    assert [run["state"] for run in runs] == [PENDING] * 6
    assert_true_to_the_cluster(cluster, runs, sweep)
    cancel_all(mrunner, cluster, sweep)


def test_a_third_interrupt_leaves_the_unknown_planned_and_resume_finds_what_the_cluster_accepted(
    cluster, mrunner, tmp_path
):
    stopped = interrupted(tmp_path, "event", 3)
    assert stopped.returncode == 128 + signal.SIGTERM, stopped.stderr
    assert "Traceback" not in stopped.stderr and "keeps those experiments planned" in stopped.stderr, stopped.stderr
    sweep = latest_sweep(mrunner)
    runs = runs_of(mrunner, sweep)
    assert {run["state"] for run in runs} <= {PLANNED, PENDING}, runs
    assert sum(run["state"] == PLANNED for run in runs) >= 2  # the first array, accepted, was not recorded
    resumed = mrunner("resume", sweep)
    assert resumed.returncode == 0, resumed.stderr
    assert "found job array" in resumed.stdout + resumed.stderr  # the accepted array, not submitted twice
    runs = runs_of(mrunner, sweep)
    assert [(run["state"], run["attempt"]) for run in runs] == [(PENDING, 0)] * 6
    assert_true_to_the_cluster(cluster, runs, sweep)
    assert len(jobs_on_cluster(cluster, sweep)) == ARRAYS
    cancel_all(mrunner, cluster, sweep)


def test_a_terminals_ctrl_c_reaches_mrunner_alone_which_completes_the_hand_over(cluster, mrunner, tmp_path):
    """One Ctrl-C to the whole foreground process group, as a terminal sends it, once the helper has the
    arrays: the ssh process carrying the hand-over is not in that group, so the hand-over completes and
    every array is recorded before mrunner stops."""
    stopped = interrupted(tmp_path, "fed", 1, group=True)
    assert stopped.returncode == 130, stopped.stderr
    assert "Traceback" not in stopped.stderr, stopped.stderr
    sweep = latest_sweep(mrunner)
    runs = runs_of(mrunner, sweep)
    assert [run["state"] for run in runs] == [PENDING] * 6, (runs, stopped.stderr)
    assert_true_to_the_cluster(cluster, runs, sweep)
    assert len(jobs_on_cluster(cluster, sweep)) == ARRAYS
    cancel_all(mrunner, cluster, sweep)
