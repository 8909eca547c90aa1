"""The loopback cluster run as a site runs Slurm (tests/services/slurm): accounting (sacct, sacctmgr), job
limits on the limited user's association, and preemption as a partition policy (a job on the `high`
partition requeues the jobs of the preemptible `low` one)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from mrunner_slurm.remote_helper import NOT_STARTED

from mrunner.records import CANCELLED, COMPLETED, PENDING, PREEMPTED, RUNNING
from mrunner.testing import wait_for, write_context
from plugins.mrunner_slurm.tests.test_slurm_cluster import Cluster, slurm_context, status
from plugins.mrunner_slurm.tests.test_slurm_requeue import ends, release

# Works through `points`, `pause` seconds each (long enough that a preemption, which takes GraceTime and a
# scheduling pass, comes while it works). After each point it writes the point to its ledger and the next
# point to its checkpoint, with SIGTERM held off meanwhile, so a point is in the ledger exactly when the
# checkpoint says it is done. SIGTERM (a preemption, a cancel) saves and stops; the next attempt continues
# from the checkpoint.
LEDGER = """
import json, os, signal, sys, time
import mrunner

config = mrunner.get_configuration()
folder = mrunner.checkpoint_dir()
ledger, path = os.path.join(folder, "ledger.txt"), os.path.join(folder, "state.json")
state = json.load(open(path)) if os.path.exists(path) else {"next": 0}
print("attempt", mrunner.attempt(), "from point", state["next"], flush=True)

def save():
    with open(path + ".tmp", "w") as out:
        json.dump(state, out)
    os.replace(path + ".tmp", path)

def stop(signum, frame):
    save()
    print("signal", signum, "at point", state["next"], "saved", flush=True)
    sys.exit(143)

signal.signal(signal.SIGTERM, stop)
while state["next"] < config.points:
    time.sleep(config.pause)  # the point's work
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    with open(ledger, "a") as out:
        out.write("%d %d\\n" % (state["next"], mrunner.attempt()))
    state["next"] += 1
    save()
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})
print("done", flush=True)
"""


POINTS = 60


def checkpoints(cluster: Cluster, document: dict, run: dict) -> str:
    return (
        f"{cluster.storage}/{document['sweep']['project']}/{run['sweep_id']}/checkpoints/{run['index']}-{run['name']}"
    )


def ledger(cluster: Cluster, document: dict, run: dict) -> list[tuple[int, int]]:
    text = cluster.ssh(f"cat {checkpoints(cluster, document, run)}/ledger.txt 2>/dev/null", check=False)
    return [(int(point), int(attempt)) for point, attempt in (line.split() for line in text.splitlines())]


@pytest.fixture
def site(mrunner_home: Path, tmp_path: Path) -> Callable[..., Cluster]:
    """``site(service, script, **keys)``: the cluster as ``service``'s user, with a storage folder of this
    test's own, the context `test-slurm` of ``keys`` on it, and ``script`` as the experiment `train.py`."""

    def on(service: dict, script: str, **keys: Any) -> Cluster:
        storage = f"{service['storage_dir']}/test-{uuid.uuid4().hex[:10]}"
        write_context(mrunner_home, "test-slurm", slurm_context(service, storage, **keys))
        (tmp_path / "train.py").write_text(script)
        return Cluster(service, storage)

    return on


def test_a_job_on_the_high_partition_preempts_the_sweep_which_saves_and_continues_every_point_once(
    slurm_service, mrunner, site
):
    """Real preemption: nothing imitates it. The sweep runs on the preemptible partition, each experiment on
    one of the node's GPUs; the test submits a job of its own on the high partition that needs both GPUs;
    Slurm requeues the sweep's tasks to make room (PreemptMode=REQUEUE), which get SIGTERM, save and come back
    as attempt 1 once the high job ended. (GPUs rather than all CPUs: the shared cluster runs other tests'
    jobs on the default partition, which nothing preempts, and a job that waits for all CPUs would hold
    them back.)"""
    low, high = slurm_service["preemptible_partition"], slurm_service["preemptor_partition"]
    gpus = slurm_service["gres_gpus"]
    cluster = site(slurm_service, LEDGER, partition=low, grace_period=5, gpu=1)
    seeds = ",".join(str(seed) for seed in range(gpus))
    submitted = mrunner("+context=test-slurm", "train.py", "-m", f"seed={seeds}", f"points={POINTS}", "pause=1.5")
    assert submitted.returncode == 0, submitted.stderr
    sweep = submitted.stdout.strip().splitlines()[-1]
    document = status(mrunner, sweep)
    runs = document["experiments"]
    wait_for(
        lambda: [len(ledger(cluster, document, run)) for run in runs],
        lambda done: min(done) >= 3,
        timeout=120,
        every=0.5,
        what="both experiments to complete 3 points",
    )
    preemptor = cluster.ssh(
        f"sbatch --parsable -p {high} --gres=gpu:{gpus} --mem=100 --time=5 -J preemptor --wrap 'sleep 300'"
    ).strip()
    try:
        wait_for(
            lambda: cluster.ssh(f"squeue -h -j {preemptor} -o %T"),
            lambda state: "RUNNING" in state,
            timeout=60,
            every=0.5,
            what=f"the high-priority job {preemptor} to start",
        )
        preempted = wait_for(
            lambda: status(mrunner, sweep)["experiments"],
            lambda rs: all(r["attempt"] == 1 and r["state"] == PENDING for r in rs),
            timeout=60,
            every=1,
            what="both tasks requeued as attempt 1",
        )
        assert [r["backend_ref"] for r in preempted] == [r["backend_ref"] for r in runs]  # the same array tasks
        for run in runs:  # Slurm's accounting calls it what it was
            history = cluster.ssh(f"sacct -X -D -n -P -j {run['backend_ref']} -o State")
            assert history.splitlines()[0] == "PREEMPTED", history
    finally:
        cluster.ssh(f"scancel {preemptor}", check=False)
    for run in runs:
        release(cluster, run["backend_ref"])
    finished = wait_for(
        lambda: status(mrunner, sweep)["experiments"],
        lambda rs: all(r["state"] == COMPLETED for r in rs),
        timeout=180,
        every=1,
        what="both experiments to complete",
    )
    for run in finished:
        assert ends(run) == [(0, PREEMPTED), (1, COMPLETED)]
        written = ledger(cluster, document, run)
        assert sorted(point for point, _ in written) == list(range(POINTS))  # every point exactly once
        assert {attempt for _, attempt in written} == {0, 1}  # some before the preemption, the rest after
        earlier = mrunner("logs", f"{sweep}/{run['index']}", "--attempt", "0").stdout
        assert "signal 15 at point" in earlier and "saved" in earlier and "done" not in earlier
        resumed = mrunner("logs", f"{sweep}/{run['index']}").stdout
        assert f"attempt 1 from point {max(p for p, a in written if a == 0) + 1}" in resumed and "done" in resumed
    shown = mrunner("status", f"{sweep}/0").stdout
    assert "requeued" in shown and PREEMPTED in shown  # the attempts table: how attempt 1 came, how 0 ended


SLEEPER = """
import sys, time
import mrunner
time.sleep(float(mrunner.get_configuration().sleep))
"""


def test_status_of_tasks_squeue_forgot_comes_from_sacct_and_without_accounting_from_jobcomp(
    slurm_service, mrunner, site, monkeypatch
):
    """A task cancelled outside mrunner (an admin's scancel) leaves no exit code; once squeue forgot it
    (MinJobAge after its end), `status` asks sacct, in the same helper call. A site without accounting is the
    same call with a `sacct` first on the helper's PATH that fails as sacct fails there (a fake standing in
    for a site's missing slurmdbd): the answer comes from the jobcomp file."""
    from mrunner_slurm import jobs, remote, transport

    from mrunner.store import Store

    cluster = site(slurm_service, SLEEPER)
    context = slurm_context(slurm_service, cluster.storage)
    submitted = mrunner("+context=test-slurm", "train.py", "-m", "sleep=0,600")
    assert submitted.returncode == 0, submitted.stderr
    sweep = submitted.stdout.strip().splitlines()[-1]
    quick, slow = status(mrunner, sweep)["experiments"]
    job = slow["backend_ref"].split("_")[0]
    wait_for(
        lambda: cluster.ssh(f"squeue -h -j {slow['backend_ref']} -o %T"),
        lambda state: "RUNNING" in state,
        timeout=60,
        every=0.5,
        what="the slow experiment to run",
    )
    cluster.ssh(f"scancel {slow['backend_ref']}")
    wait_for(
        lambda: cluster.ssh(f"squeue -h -r --states=all -j {job} -o %i", check=False),
        lambda listed: not listed.strip(),
        timeout=180,
        every=2,
        what=f"squeue to forget job {job} (MinJobAge)",
    )

    fake = f"{cluster.storage}/fake-site-without-accounting"
    cluster.ssh(
        f"mkdir -p {fake} && printf '#!/bin/sh\\necho \"Slurm accounting storage is disabled\" >&2\\nexit 1\\n' "
        f"> {fake}/sacct && chmod +x {fake}/sacct"
    )
    command = remote._command
    # A fresh connection: one an earlier test of this process opened keeps a helper started in advance
    # (remote.prestart) with the real PATH; and none of this one's helpers may outlive the fake.
    transport.close_all()
    monkeypatch.setattr(remote, "_command", lambda *args: f"PATH={fake}:$PATH " + command(*args))
    try:
        store = Store()
        connection = transport.connection(context)
        calls = connection.calls
        updates = {u.index: u for u in jobs.status(connection, store.sweep(sweep), store.runs(sweep))}
    finally:
        transport.close_all()
        monkeypatch.setattr(remote, "_command", command)
    assert connection.calls - calls == 1  # one helper call for the sweep, as with accounting
    assert (updates[1].state, updates[1].detail) == (CANCELLED, "jobcomp: CANCELLED")

    document = status(mrunner, sweep)  # with accounting
    done, cancelled = document["experiments"]
    assert (done["state"], done["exit_code"]) == (COMPLETED, 0)
    assert cancelled["state"] == CANCELLED
    shown = json.loads(mrunner("status", f"{sweep}/1", "--json").stdout)
    assert any(str(detail or "").startswith("sacct: CANCELLED by") for _, _, _, detail in shown["history"]), shown


def test_a_sweep_beyond_max_submit_jobs_is_refused_whole_before_anything_is_recorded(
    slurm_limited_service, mrunner, site
):
    """What the site does with an array beyond the user's MaxSubmitJobs: sbatch refuses it whole. mrunner
    refuses such a sweep before any sbatch, in one line naming the limit and points_per_task, and records
    nothing; jobs already queued count against the allowance."""
    from mrunner.store import Store

    allowed = slurm_limited_service["max_submit_jobs"]
    cluster = site(slurm_limited_service, "print('point')\n")

    site = cluster.ssh(f"sbatch --hold --array=0-{allowed} --wrap true 2>&1", check=False)
    assert "Job violates accounting/QOS policy" in site and "Submitted" not in site

    result = mrunner("+context=test-slurm", "train.py", "-m", f"i=range({allowed + 1})")
    assert result.returncode != 0 and "Traceback" not in result.stderr
    line = result.stderr.strip().splitlines()[-1]
    assert f"MaxSubmitJobs={allowed}" in line and "points_per_task" in line and f"needs {allowed + 1}" in line
    assert "nothing was submitted or recorded" in line
    assert Store().sweeps() == []
    assert "mrunner-" not in cluster.ssh("squeue -h -u $(id -un) -o %j")

    held = cluster.ssh(f"sbatch --parsable --hold --array=0-{allowed - 3} --wrap true").strip()
    try:
        result = mrunner("+context=test-slurm", "train.py", "-m", "i=range(3)")
        assert result.returncode != 0
        assert f"{allowed - 2} of them queued or running now" in result.stderr
        assert Store().sweeps() == []
    finally:
        cluster.ssh(f"scancel {held}", check=False)


def test_points_per_task_auto_packs_a_sweep_beyond_max_submit_jobs_into_the_allowance_and_runs_each_point_once(
    slurm_limited_service, mrunner, site
):
    """The same sweep that unpacked is refused (more experiments than MaxSubmitJobs) is accepted whole with
    ``points_per_task: auto``: packed into at most the allowance of array tasks, every point run once."""
    allowed = slurm_limited_service["max_submit_jobs"]
    points = 2 * allowed + 1
    cluster = site(
        slurm_limited_service,
        "import os\nfrom mrunner import get_configuration\n\n"
        "config = get_configuration()\n"
        "with open(os.path.join(os.environ['MRUNNER_EXPERIMENT_DIR'], 'ran'), 'a') as ledger:\n"
        "    ledger.write('x\\n')\n",
        points_per_task="auto",
    )
    result = mrunner("+context=test-slurm", "train.py", "-m", f"i=range({points})", "--wait", timeout=600)
    assert result.returncode == 0, result.stderr
    sweep = json.loads(mrunner("status", "--json").stdout)[0]["sweep"]["id"]
    shown = json.loads(mrunner("status", sweep, "--json").stdout)["experiments"]
    assert [e["state"] for e in shown] == [COMPLETED] * points
    tasks = {e["backend_ref"] for e in shown}
    assert len(tasks) <= allowed, tasks  # packed: fewer jobs than points
    ran = cluster.ssh(f"cat {' '.join(e['output_dir'].split(':', 1)[1] + '/ran' for e in shown)}")
    assert ran.split() == ["x"] * points  # every point once


# LEDGER whose point ``gated`` holds after its first step until the storage folder holds `go`, whatever the
# attempt: the preemption comes while that point works, however long Slurm takes to preempt.
GATED = LEDGER.replace(
    'while state["next"] < config.points:\n',
    'gate = os.path.join(os.environ["STORAGE_DIR"], "go")\n'
    'while state["next"] < config.points:\n'
    '    while config.get("gated") == config.seed and state["next"] >= 1 and not os.path.exists(gate):\n'
    "        time.sleep(0.2)\n",
)


def test_a_packed_task_preempted_by_the_high_partition_runs_only_its_unfinished_points_each_step_once(
    slurm_service, mrunner, site
):
    """A task of 3 points (one after another, on one GPU) on the preemptible partition, preempted while its
    second point works (held after its first step until the test lets it go) by a job on the high partition
    that needs every GPU: the task comes back as attempt 1
    and runs only its second point (from that point's checkpoint) and its third; the first, completed
    before, never runs again. Counted from each point's own ledger: every step of every point once."""
    low, high = slurm_service["preemptible_partition"], slurm_service["preemptor_partition"]
    cluster = site(slurm_service, GATED, partition=low, grace_period=5, gpu=1, points_per_task=3)
    assert GATED != LEDGER
    steps = 4
    submitted = mrunner(
        "+context=test-slurm", "train.py", "-m", "seed=0,1,2", f"points={steps}", "pause=0.5", "gated=1"
    )
    assert submitted.returncode == 0, submitted.stderr
    assert "3 experiments in 1 task," in submitted.stderr, submitted.stderr
    sweep = submitted.stdout.strip().splitlines()[-1]
    document = status(mrunner, sweep)
    runs = document["experiments"]
    task = runs[0]["backend_ref"]
    assert {run["backend_ref"] for run in runs} == {task}
    wait_for(
        lambda: (status(mrunner, sweep)["experiments"], ledger(cluster, document, runs[1])),
        lambda seen: [r["state"] for r in seen[0]] == [COMPLETED, RUNNING, PENDING] and len(seen[1]) >= 1,
        timeout=120,
        every=0.5,
        what="the task's second point to be working",
    )
    preemptor = cluster.ssh(
        f"sbatch --parsable -p {high} --gres=gpu:{slurm_service['gres_gpus']} --mem=100 --time=5 -J preemptor "
        "--wrap 'sleep 300'"
    ).strip()
    try:
        wait_for(
            lambda: cluster.ssh(f"squeue -h -j {preemptor} -o %T"),
            lambda state: "RUNNING" in state,
            timeout=60,
            every=0.5,
            what=f"the high-priority job {preemptor} to start",
        )
        preempted = wait_for(
            lambda: status(mrunner, sweep)["experiments"],
            lambda rs: (
                [(r["state"], r["attempt"]) for r in rs][0] == (COMPLETED, 0)
                and [r["attempt"] for r in rs] == [0, 1, 1]
            ),
            timeout=60,
            every=1,
            what="the task requeued as attempt 1 with its unfinished points",
        )
        assert [r["backend_ref"] for r in preempted] == [task] * 3  # the same array task
        assert cluster.ssh(f"sacct -X -D -n -P -j {task} -o State").splitlines()[0] == "PREEMPTED"
    finally:
        cluster.ssh(f"scancel {preemptor}", check=False)
    release(cluster, task)
    cluster.ssh(f"touch {cluster.storage}/go")
    finished = wait_for(
        lambda: status(mrunner, sweep)["experiments"],
        lambda rs: all(r["state"] == COMPLETED for r in rs),
        timeout=180,
        every=1,
        what="every point to complete",
    )
    written = [ledger(cluster, document, run) for run in finished]
    for steps_done in written:
        assert sorted(step for step, _ in steps_done) == list(range(steps))  # every step of every point once
    assert {attempt for _, attempt in written[0]} == {0}  # completed before the preemption: never again
    assert {attempt for _, attempt in written[1]} == {0, 1}  # continued from its checkpoint
    assert ends(finished[0]) == [(0, COMPLETED)]
    assert ends(finished[1]) == [(0, PREEMPTED), (1, COMPLETED)]
    # the third point never started in attempt 0: its record says so, not that the platform stopped it
    assert finished[1]["attempts"][0]["detail"] == "stopped by the platform"
    assert finished[2]["attempts"][0]["detail"] == NOT_STARTED, finished[2]["attempts"]
