"""A script's own failure retried on the real loopback cluster (retry_failed: the wrapper requeues exactly its
array task), a finished task that Slurm runs again shown as its next attempt, and a cancel after Slurm started
a later attempt than the records know. The shared suite (test_slurm_suite) covers the retry as a user sees it;
these cover what only Slurm does. Requeued tasks are released from Slurm's two-minute hold, as an impatient
user would (see test_slurm_requeue)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from mrunner.records import CANCELLED, COMPLETED, FAILED
from mrunner.store import Store
from mrunner.testing import wait_for, write_context
from plugins.mrunner_slurm.tests.test_slurm_cluster import Cluster, slurm_context, status
from plugins.mrunner_slurm.tests.test_slurm_requeue import ends, release, retried_to_their_end

# Attempt 0 fails when `fail` is set; later attempts (or every attempt without `fail`) wait for the file `go`
# below STORAGE_DIR when `hold` is set, so a test sees them running for as long as it needs.
SCRIPT = """
import os, sys, time
import mrunner

config = mrunner.get_configuration()
print("attempt", mrunner.attempt(), flush=True)
if config.get("fail") and mrunner.attempt() == 0:
    sys.exit(3)
while config.get("hold") and mrunner.attempt() > 0 and not os.path.exists(os.path.join(os.environ["STORAGE_DIR"], "go")):
    time.sleep(0.2)
"""


@pytest.fixture
def cluster(slurm_service: dict, tmp_path: Path) -> Cluster:
    import uuid

    (tmp_path / "script.py").write_text(SCRIPT)
    return Cluster(slurm_service, f"{slurm_service['storage_dir']}/test-{uuid.uuid4().hex[:10]}")


def submit(mrunner, *args: str) -> str:
    submitted = mrunner("+context=test-slurm", "script.py", *args)
    assert submitted.returncode == 0, submitted.stderr
    return submitted.stdout.strip().splitlines()[-1]


def queued(cluster: Cluster, ref: str) -> tuple[str, int]:
    """Slurm's own state of the task and count of its restarts (squeue), never asked through mrunner;
    ("", -1) once Slurm forgot it."""
    line = cluster.ssh(f"squeue -h -r --states=all -j {ref} -O 'State:|,RestartCnt:|'", check=False).strip()
    state, _, count = line.replace(" ", "").partition("|")
    return (state, int(count.strip("|"))) if line else ("", -1)


def restarts(cluster: Cluster, ref: str) -> int:
    return queued(cluster, ref)[1]


def test_a_retry_counts_against_retry_failed_not_max_requeue(cluster, mrunner, mrunner_home, slurm_service):
    write_context(
        mrunner_home,
        "test-slurm",
        slurm_context(slurm_service, cluster.storage, grace_period=5, max_requeue=0, retry_failed=1),
    )
    sweep = submit(mrunner, "-m", "fail=0,1")

    runs = retried_to_their_end(cluster, mrunner, sweep)
    assert [(r["state"], r["exit_code"], r["attempt"]) for r in runs] == [(COMPLETED, 0, 0), (COMPLETED, 0, 1)]
    failed_once = status(mrunner, sweep)["experiments"][1]
    assert [(a["number"], a["cause"], a["end"], a["exit_code"]) for a in failed_once["attempts"]] == [
        (0, "submitted", FAILED, 3),
        (1, "retried", COMPLETED, 0),
    ]
    assert restarts(cluster, failed_once["backend_ref"]) in (1, -1)  # Slurm requeued that task once (or forgot it)
    assert "attempt 0" in mrunner("logs", f"{sweep}/1", "--attempt", "0").stdout


def test_a_finished_task_that_slurm_runs_again_stays_completed_and_is_not_run_again(
    cluster, mrunner, mrunner_home, slurm_service
):
    """An exit code 0 stands whatever Slurm does with the task later: its requeue starts the task again,
    whose batch script finds the experiment completed and does not run it (see also test_slurm_requeue)."""
    write_context(mrunner_home, "test-slurm", slurm_context(slurm_service, cluster.storage, grace_period=5))
    sweep = submit(mrunner, "i=0", "hold=1", "--wait")
    (run,) = status(mrunner, sweep)["experiments"]
    assert (run["state"], run["exit_code"], run["attempt"]) == (COMPLETED, 0, 0)
    cluster.ssh(f"scontrol requeue {run['backend_ref']}")  # within MinJobAge: Slurm still keeps the finished task
    (run,) = status(mrunner, sweep)["experiments"]
    assert (run["state"], run["exit_code"], run["attempt"]) == (COMPLETED, 0, 0)
    release(cluster, run["backend_ref"])
    log = f"{cluster.storage}/*/{sweep}/logs/0.1.log"
    wait_for(
        lambda: cluster.ssh(f"cat {log} 2>/dev/null", check=False),
        lambda text: "not run again" in text,
        timeout=60,
        every=0.5,
        what="the requeued task's log saying it did not run the experiment again",
    )
    assert restarts(cluster, run["backend_ref"]) == 1
    (run,) = status(mrunner, sweep)["experiments"]
    assert ends(run) == [(0, COMPLETED)] and (run["state"], run["attempt"]) == (COMPLETED, 0)


def test_a_cancel_after_slurm_started_a_later_attempt_reads_that_attempts_end(
    cluster, mrunner, mrunner_home, slurm_service
):
    """Attempt 0 failed (its exit-code file says 3) and was retried; the records, never refreshed, still say
    attempt 0: the cancel stops attempt 1 and the run ends cancelled, not failed with attempt 0's code."""
    write_context(
        mrunner_home, "test-slurm", slurm_context(slurm_service, cluster.storage, grace_period=5, retry_failed=1)
    )
    sweep = submit(mrunner, "i=0", "fail=1", "hold=1")
    (recorded,) = Store().runs(sweep)  # the records as they are, without asking Slurm
    ref = recorded.backend_ref
    assert recorded.attempt == 0 and ref
    deadline = time.monotonic() + 120
    folder = f"{cluster.storage}/*/{sweep}/logs"
    while "attempt 1" not in cluster.ssh(f"cat {folder}/0.1.log 2>/dev/null", check=False):
        assert time.monotonic() < deadline, f"attempt 1 never started: {queued(cluster, ref)}"
        if queued(cluster, ref) == ("PENDING", 1):  # requeued and held: released at every look, since a
            release(cluster, ref)  # release while Slurm still ends the attempt is undone
        time.sleep(0.5)
    assert Store().runs(sweep)[0].attempt == 0
    cancelled = mrunner("cancel", f"{sweep}/0")
    assert cancelled.returncode == 0, cancelled.stderr
    (run,) = status(mrunner, sweep)["experiments"]
    assert (run["state"], run["exit_code"], run["attempt"]) == (CANCELLED, None, 1)
    assert [(a["number"], a["end"], a["exit_code"]) for a in run["attempts"]] == [(0, FAILED, 3), (1, CANCELLED, None)]
