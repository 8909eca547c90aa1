"""Preemption, time limits and requeue on the real loopback cluster: a task Slurm requeues comes back as its
next attempt of the same array task, continues from its checkpoint folder and keeps every attempt's log; a
task reaching its time limit saves on the warning signal and is requeued by the wrapper, up to max_requeue,
then ends `timeout`. Slurm holds a requeued job for two minutes before it is eligible again; the tests let it
start two seconds after the requeue (`scontrol update StartTime=now`), as an impatient user would."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from mrunner.records import COMPLETED, FAILED, PENDING, PREEMPTED, TIMEOUT
from mrunner.testing import wait_for, write_context
from plugins.mrunner_slurm.tests.test_slurm_cluster import Cluster, slurm_context, status

# Saves its step in the checkpoint folder after every step; SIGUSR1 (the time limit near) saves and notes it;
# SIGTERM (requeue, cancel) saves and stops. `slow_until` attempts take `pause` seconds per step, later ones none.
CHECKPOINTING = """
import json, os, signal, sys, time
import mrunner

config = mrunner.get_configuration()
path = os.path.join(mrunner.checkpoint_dir(), "state.json")
state = json.load(open(path)) if os.path.exists(path) else {"step": 0, "attempts": [], "warned": []}
state["attempts"].append(mrunner.attempt())

def save(*_):
    with open(path + ".tmp", "w") as out:
        json.dump(state, out)
    os.replace(path + ".tmp", path)

def warned(*_):
    state["warned"].append(mrunner.attempt())
    save()

signal.signal(signal.SIGUSR1, warned)
signal.signal(signal.SIGTERM, lambda *_: (save(), sys.exit(143)))
print("attempt", mrunner.attempt(), "from step", state["step"], flush=True)
while state["step"] < config.steps:
    state["step"] += 1
    save()
    time.sleep(config.pause if mrunner.attempt() < config.slow_until else 0)
print("done at step", state["step"], flush=True)
"""


@pytest.fixture
def project(slurm_service: dict, tmp_path: Path, mrunner_home: Path, mrunner):
    import uuid

    storage = f"{slurm_service['storage_dir']}/test-{uuid.uuid4().hex[:10]}"
    (tmp_path / "train.py").write_text(CHECKPOINTING)
    return Cluster(slurm_service, storage)


def checkpoint(cluster: Cluster, document: dict, run: dict) -> dict:
    folder = (
        f"{cluster.storage}/{document['sweep']['project']}/{run['sweep_id']}/checkpoints/{run['index']}-{run['name']}"
    )
    text = cluster.ssh(f"cat {folder}/state.json 2>/dev/null", check=False)
    return json.loads(text) if text.strip() else {"step": 0, "attempts": [], "warned": []}


def release_command(ref: str) -> str:
    """A shell line that lets a requeued task start now instead of after Slurm's two-minute hold, once its
    requeue is two seconds old; it prints `early` before then (and does nothing), else `released` or `free`.

    slurmd refuses a task whose new credential dates from the same second as the revocation of its last one
    ("Job credential revoked": the task fails with exit 1 and is gone), which is what Slurm's hold guards
    against. The requeue's time is the begin time Slurm set, less its hold (cred_expire, 120 s here)."""
    return (
        f"begin=$(squeue -h -j {ref} -O EligibleTime 2>/dev/null | tr -d ' '); now=$(date +%s); "
        f'case "$begin" in 20*) begin=$(date -d "$begin" +%s);; *) begin=0;; esac; '
        f'if [ "$begin" -le $((now + 3)) ]; then echo free; elif [ "$now" -lt $((begin - 118)) ]; then echo early; '
        f"else scontrol update JobId={ref} StartTime=now && echo released; fi"
    )


def release(cluster: Cluster, ref: str) -> None:
    """Let a requeued task start now instead of after Slurm's two-minute hold, as soon as that is safe (see
    ``release_command``)."""
    wait_for(
        lambda: cluster.ssh(release_command(ref)),
        lambda said: "early" not in said,
        timeout=30,
        every=0.2,
        what=f"the requeue of {ref} to get two seconds old",
    )


def released_to_their_end(cluster: Cluster, runs: list[dict], timeout: float) -> None:
    """Release the requeued tasks of ``runs`` (one array) and wait until none of them is pending or running."""
    for run in runs:
        release(cluster, run["backend_ref"])
    job = runs[0]["backend_ref"].split("_")[0]
    wait_for(
        lambda: cluster.ssh(f"squeue -h -r -j {job} -O 'State:|'"),
        lambda listing: "PENDING" not in listing and "RUNNING" not in listing,
        timeout=timeout,
        every=0.5,
        what="the requeued tasks to end",
    )


def retried_to_their_end(cluster: Cluster, mrunner, sweep: str) -> list[dict]:
    """The runs of ``sweep`` once each has completed or failed, the tasks requeued for a retry released at
    every look (a release while Slurm still ends the attempt is undone, so it is asked again)."""

    def settled(runs: list[dict]) -> bool:
        for run in runs:
            if run["state"] == PENDING and run["attempt"] > 0:
                release(cluster, run["backend_ref"])
        return all(run["state"] in (COMPLETED, FAILED) for run in runs)

    return wait_for(lambda: status(mrunner, sweep)["experiments"], settled, timeout=120, every=1, what="the retry")


def ends(run: dict) -> list[tuple[int, str | None]]:
    return [(a["number"], a["end"]) for a in run["attempts"]]


def test_a_requeued_task_continues_from_its_checkpoint_as_attempt_1_and_its_neighbour_runs_once(
    project, mrunner, mrunner_home, slurm_service
):
    cluster = project
    write_context(mrunner_home, "test-slurm", slurm_context(slurm_service, cluster.storage, grace_period=5))
    submitted = mrunner("+context=test-slurm", "train.py", "-m", "i=0,1", "steps=30", "pause=0.5", "slow_until=9")
    assert submitted.returncode == 0, submitted.stderr
    sweep = submitted.stdout.strip().splitlines()[-1]
    document = status(mrunner, sweep)
    first = document["experiments"][0]
    wait_for(
        lambda: checkpoint(cluster, document, first)["step"],
        lambda step: step >= 3,
        timeout=60,
        every=0.5,
        what="experiment 0 to reach step 3",
    )
    cluster.ssh(f"scontrol requeue {first['backend_ref']}")
    runs = wait_for(
        lambda: status(mrunner, sweep)["experiments"],
        lambda rs: rs[0]["attempt"] == 1,
        timeout=60,
        every=1,
        what="the requeue",
    )
    assert runs[0]["state"] == PENDING and runs[0]["backend_ref"] == first["backend_ref"]
    # Slurm holds the requeued task until its begin time: status says why in words, not as Slurm's bare reason
    held = wait_for(
        lambda: status(mrunner, sweep)["experiments"][0],
        lambda run: "BeginTime" in str(run.get("detail")),
        timeout=30,
        every=0.5,
        what="the requeued task's hold to show",
    )
    assert held["detail"].startswith("queued until its begin time (BeginTime): Slurm holds a requeued task"), held
    squeue = cluster.ssh(f"squeue -h -r -j {first['backend_ref'].split('_')[0]} -O 'JobArrayID:|,State:|,RestartCnt:|'")
    assert f"{first['backend_ref']}|PENDING|1|" in squeue.replace(" ", "")  # squeue tells the same story
    release(cluster, first["backend_ref"])
    runs = wait_for(
        lambda: status(mrunner, sweep)["experiments"],
        lambda rs: all(r["state"] == COMPLETED for r in rs),
        timeout=120,
        every=1,
        what="the end",
    )
    document = status(mrunner, sweep)
    again, neighbour = document["experiments"]
    assert ends(again) == [(0, PREEMPTED), (1, COMPLETED)] and again["attempt"] == 1
    assert ends(neighbour) == [(0, COMPLETED)]
    state = checkpoint(cluster, document, again)
    assert state["step"] == 30 and state["attempts"] == [0, 1]
    assert checkpoint(cluster, document, neighbour)["attempts"] == [0]
    latest = mrunner("logs", f"{sweep}/0").stdout
    resumed_from = int(latest.split("attempt 1 from step ")[1].split()[0])
    assert resumed_from >= 3 and "done at step 30" in latest
    earlier = mrunner("logs", f"{sweep}/0", "--attempt", "0").stdout
    assert "attempt 0 from step 0" in earlier and "done" not in earlier  # kept, not truncated
    # Slurm's .out file is the task's, shared by both attempts: the requeue's notice is attempt 0's alone
    notice = "DUE TO JOB REQUEUE"
    assert notice in earlier.split("mrunner: what Slurm wrote about task")[1], earlier
    assert notice not in latest, latest


def test_the_time_limit_saves_on_the_signal_requeues_up_to_max_requeue_then_ends_timeout(
    project, mrunner, mrunner_home, slurm_service
):
    cluster = project
    write_context(
        mrunner_home,
        "test-slurm",
        slurm_context(slurm_service, cluster.storage, grace_period=20, time=1, max_requeue=1),
    )
    # experiment 0 is slow in attempt 0 only (completes in attempt 1), experiment 1 in every attempt
    submitted = mrunner("+context=test-slurm", "train.py", "-m", "slow_until=1,9", "steps=1000", "pause=1")
    assert submitted.returncode == 0, submitted.stderr
    sweep = submitted.stdout.strip().splitlines()[-1]
    refs = [r["backend_ref"] for r in status(mrunner, sweep)["experiments"]]
    released: set[tuple[str, int]] = set()

    def settled(runs: list[dict]) -> bool:
        for run in runs:
            if run["state"] == PENDING and run["attempt"] > 0 and (run["backend_ref"], run["attempt"]) not in released:
                release(cluster, run["backend_ref"])
                released.add((run["backend_ref"], run["attempt"]))
        return all(run["state"] in (COMPLETED, TIMEOUT) for run in runs)

    wait_for(lambda: status(mrunner, sweep)["experiments"], settled, timeout=300, every=1, what="the time limits")
    document = status(mrunner, sweep)
    done, limited = document["experiments"]
    assert [r["backend_ref"] for r in (done, limited)] == refs  # the same array tasks
    assert ends(done) == [(0, TIMEOUT), (1, COMPLETED)]
    assert ends(limited) == [(0, TIMEOUT), (1, TIMEOUT)] and limited["state"] == TIMEOUT  # max_requeue reached
    state = checkpoint(cluster, document, done)
    assert state["step"] == 1000 and state["attempts"] == [0, 1] and 0 in state["warned"]
    assert 0 < int(mrunner("logs", f"{sweep}/0").stdout.split("attempt 1 from step ")[1].split()[0]) < 1000


def test_an_experiment_that_exited_0_is_completed_and_never_run_again_whatever_slurm_does_with_its_task(
    project, mrunner, mrunner_home, slurm_service
):
    """What a node lost mid-run does, without taking down the shared cluster's only node: Slurm requeues the
    task while the experiment's step goes on there, finishes and writes its exit code 0. Experiment 0 has
    completed when its task is requeued (`scontrol requeue` of the finished task); experiment 1 is requeued
    while it runs, and its attempt 0's exit code 0 is written afterwards (the late write of the lost node's
    step, written here as the test user writes it). Both stay or become completed, and when Slurm starts
    their tasks again the batch script does not run them."""
    cluster = project
    write_context(mrunner_home, "test-slurm", slurm_context(slurm_service, cluster.storage, grace_period=2))
    submitted = mrunner("+context=test-slurm", "train.py", "-m", "slow_until=0,9", "steps=100", "pause=1")
    assert submitted.returncode == 0, submitted.stderr
    sweep = submitted.stdout.strip().splitlines()[-1]
    document = status(mrunner, sweep)
    folder = f"{cluster.storage}/{document['sweep']['project']}/{sweep}"
    done, running = document["experiments"]
    wait_for(
        lambda: status(mrunner, sweep)["experiments"],
        lambda rs: rs[0]["state"] == COMPLETED and rs[1]["state"] == "running",
        timeout=60,
        every=1,
        what="0 to end",
    )
    assert cluster.ssh(f"cat {folder}/status/0.0").strip() == "0"
    cluster.ssh(f"scontrol requeue {done['backend_ref']}")  # kept by Slurm for MinJobAge after its end
    wait_for(
        lambda: checkpoint(cluster, document, running)["step"],
        lambda step: step >= 2,
        timeout=60,
        every=0.5,
        what="experiment 1 at step 2",
    )
    cluster.ssh(f"scontrol requeue {running['backend_ref']}")
    runs = wait_for(
        lambda: status(mrunner, sweep)["experiments"],
        lambda rs: rs[1]["attempt"] == 1,
        timeout=60,
        every=1,
        what="the requeue of experiment 1",
    )
    assert runs[1]["state"] == PENDING
    assert runs[0]["state"] == COMPLETED and runs[0]["attempt"] == 0  # its requeue changes nothing
    cluster.ssh(f"echo 0 > {folder}/status/1.0")  # the lost node's step ends after the requeue
    runs = wait_for(
        lambda: status(mrunner, sweep)["experiments"],
        lambda rs: rs[1]["state"] == COMPLETED,
        timeout=30,
        every=1,
        what="the late exit code 0",
    )
    assert runs[1]["exit_code"] == 0
    released_to_their_end(cluster, [done, running], timeout=60)
    document = status(mrunner, sweep)
    assert [(r["state"], r["exit_code"]) for r in document["experiments"]] == [(COMPLETED, 0), (COMPLETED, 0)]
    assert ends(document["experiments"][0]) == [(0, COMPLETED)]
    for run in document["experiments"]:
        assert checkpoint(cluster, document, run)["attempts"] == [0]  # never started again
        assert "completed (exit 0): not run again" in cluster.ssh(f"cat {folder}/logs/{run['index']}.1.log")


def test_a_node_lost_mid_run_does_not_run_its_finished_experiments_again(project, mrunner, mrunner_home, slurm_service):
    """A real lost node: slurmd is killed while two experiments run. The controller stops hearing from the node,
    marks it down after SlurmdTimeout and requeues its tasks, while their steps go on without slurmd, finish and
    write exit code 0. When slurmd is back (the service script starts it and returns the node to service), Slurm
    starts the tasks again: the batch script must see the finished experiments and not run them, and `status`
    must say completed. Counted from each experiment's own checkpoint: attempt 0 only. (The experiments outlive
    SlurmdTimeout: a step that ends before the node is marked down completes its job without slurmd.)"""
    cluster = project
    write_context(mrunner_home, "test-slurm", slurm_context(slurm_service, cluster.storage, grace_period=2))
    submitted = mrunner("+context=test-slurm", "train.py", "-m", "i=0,1", "steps=60", "pause=1", "slow_until=9")
    assert submitted.returncode == 0, submitted.stderr
    sweep = submitted.stdout.strip().splitlines()[-1]
    document = status(mrunner, sweep)
    folder = f"{cluster.storage}/{document['sweep']['project']}/{sweep}"
    runs = document["experiments"]
    wait_for(
        lambda: [checkpoint(cluster, document, run)["step"] for run in runs],
        lambda steps: min(steps) >= 2,
        timeout=60,
        every=0.5,
        what="both experiments at step 2",
    )
    restart = Path(__file__).resolve().parents[3] / "tests" / "services" / "slurm" / "start.sh"
    try:
        subprocess.run(["pkill", "-KILL", "-x", "slurmd"], check=True)
        wait_for(
            lambda: cluster.ssh(f"squeue -h -r -j {runs[0]['backend_ref'].split('_')[0]} -O 'RestartCnt:|,State:|'"),
            lambda listing: listing.strip() and all(line.split("|")[0].strip() != "0" for line in listing.splitlines()),
            timeout=120,
            every=1,
            what="the controller to requeue the lost node's tasks",
        )
        codes = " ".join(f"{folder}/status/{run['index']}.0" for run in runs)
        wait_for(
            lambda: cluster.ssh(f"cat {codes} 2>/dev/null", check=False).split(),
            lambda found: found == ["0", "0"],
            timeout=120,
            every=0.5,
            what="both experiments to end with exit code 0 without their slurmd",
        )
    finally:
        subprocess.run(["bash", str(restart)], check=True, capture_output=True)
    released_to_their_end(cluster, runs, timeout=90)
    document = status(mrunner, sweep)
    assert [(r["state"], r["exit_code"]) for r in document["experiments"]] == [(COMPLETED, 0), (COMPLETED, 0)]
    for run in document["experiments"]:
        assert checkpoint(cluster, document, run)["attempts"] == [0]  # never started again
        assert checkpoint(cluster, document, run)["step"] == 60
