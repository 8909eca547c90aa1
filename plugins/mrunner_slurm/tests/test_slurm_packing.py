"""Packing on the real loopback cluster: several grid points per array task (``points_per_task``), each with
its own folder, log, attempts, exit code and status; a point cancelled inside its task is skipped or stopped
alone; a requeued task runs only its points that did not complete; resume runs only the failed point. Every
point appends its attempt to a ledger in its own folder: how often it ran is counted from there."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

from mrunner.records import CANCELLED, COMPLETED, FAILED, PENDING, RUNNING
from mrunner.testing import start_mrunner, wait_for, write_context
from plugins.mrunner_slurm.tests.test_slurm_cluster import Cluster, slurm_context, status
from plugins.mrunner_slurm.tests.test_slurm_requeue import release, retried_to_their_end

# Appends its attempt to its ledger; the point `hold` waits for the file `gate` in the storage folder (an
# attempt below `hold_until` only), the point `fail` exits 3 until the file `heal` is there.
POINT = """
import os, signal, sys, time
import mrunner

signal.signal(signal.SIGUSR1, lambda *_: print("warned of the time limit", flush=True))
config = mrunner.get_configuration()
storage = os.environ["STORAGE_DIR"]
with open(os.path.join(os.environ["MRUNNER_EXPERIMENT_DIR"], "ledger.txt"), "a") as ledger:
    ledger.write("%d\\n" % mrunner.attempt())
with open("/proc/self/status") as own:
    cpus = next(line.split()[1] for line in own if line.startswith("Cpus_allowed_list"))
print("point", config.i, "attempt", mrunner.attempt(), "gpus", os.environ.get("CUDA_VISIBLE_DEVICES"),
      "step", os.environ.get("SLURM_STEP_ID"), "cpus", cpus, "omp", os.environ.get("OMP_NUM_THREADS"),
      "slurm_cpus", os.environ.get("SLURM_CPUS_PER_TASK"), flush=True)
if config.i in (config.get("hold", -1), config.get("hold_too", -1)) and mrunner.attempt() < config.get("hold_until", 99):
    while not os.path.exists(os.path.join(storage, "gate")):
        time.sleep(0.1)
if config.i == config.get("fail", -1) and not os.path.exists(os.path.join(storage, "heal")):
    sys.exit(3)
print("point", config.i, "done", flush=True)
"""


@pytest.fixture
def cluster(slurm_service: dict, tmp_path: Path, mrunner_home: Path) -> Cluster:
    storage = f"{slurm_service['storage_dir']}/test-{uuid.uuid4().hex[:10]}"
    (tmp_path / "point.py").write_text(POINT)
    return Cluster(slurm_service, storage)


def packed(cluster: Cluster, mrunner_home: Path, **keys) -> None:
    write_context(mrunner_home, "test-slurm", slurm_context(cluster.service, cluster.storage, grace_period=3, **keys))


def ledger(cluster: Cluster, document: dict, run: dict) -> list[int]:
    folder = f"{cluster.storage}/{document['sweep']['project']}/{run['sweep_id']}/{run['index']}-{run['name']}"
    return [int(line) for line in cluster.ssh(f"cat {folder}/ledger.txt 2>/dev/null", check=False).split()]


def submit(mrunner, *args: str) -> str:
    result = mrunner("+context=test-slurm", "point.py", "-m", *args)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().splitlines()[-1]


def states(mrunner, sweep: str) -> list[str]:
    return [run["state"] for run in status(mrunner, sweep)["experiments"]]


def test_a_packed_grid_runs_each_point_in_its_own_folder_log_and_status(cluster, mrunner, mrunner_home):
    packed(cluster, mrunner_home, points_per_task=3)
    sweep = submit(mrunner, "i=range(7)", "--wait")
    document = status(mrunner, sweep)
    runs = document["experiments"]
    assert [(r["state"], r["exit_code"], r["attempt"]) for r in runs] == [(COMPLETED, 0, 0)] * 7
    refs = [r["backend_ref"] for r in runs]
    job = refs[0].split("_")[0]
    assert refs == [f"{job}_{task}" for task in (0, 0, 0, 1, 1, 1, 2)]  # 3 tasks of one array
    assert all(ledger(cluster, document, run) == [0] for run in runs)
    folder = f"{cluster.storage}/{document['sweep']['project']}/{sweep}"
    assert cluster.ssh(f"cat {folder}/status/4.0").strip() == "0"
    for index in (0, 4, 6):
        logs = mrunner("logs", f"{sweep}/{index}")
        assert logs.returncode == 0 and f"point {index} done" in logs.stdout
        assert f"point {index + 1} " not in logs.stdout  # its own log only
    squeue = cluster.ssh(f"squeue -h -r --states=all -j {job} -o %i")
    assert sorted(squeue.split()) in ([], [f"{job}_0", f"{job}_1", f"{job}_2"])  # Slurm saw 3 tasks


def test_logs_follow_of_a_point_waiting_in_its_task_streams_it_from_its_start_to_its_end(
    cluster, mrunner, mrunner_home, tmp_path
):
    packed(cluster, mrunner_home, points_per_task=2)
    sweep = submit(mrunner, "i=range(2)", "hold=0")
    wait_for(
        lambda: states(mrunner, sweep),
        lambda found: found == [RUNNING, PENDING],
        timeout=60,
        every=0.5,
        what="point 1 to wait in its task",
    )
    follower = start_mrunner(tmp_path, "logs", f"{sweep}/1", "-f")
    cluster.ssh(f"touch {cluster.storage}/gate")
    out, err = follower.communicate(timeout=60)
    assert follower.returncode == 0, err
    assert out.splitlines()[0].startswith("point 1 attempt 0") and out.splitlines()[-1] == "point 1 done"
    assert "point 0" not in out


def test_cancel_inside_a_running_task_skips_a_waiting_point_and_stops_a_running_one_alone(
    cluster, mrunner, mrunner_home
):
    packed(cluster, mrunner_home, points_per_task=4)
    sweep = submit(mrunner, "i=range(4)", "hold=1")
    runs = wait_for(
        lambda: status(mrunner, sweep)["experiments"],
        lambda rs: [r["state"] for r in rs] == [COMPLETED, RUNNING, PENDING, PENDING],
        timeout=60,
        every=0.5,
        what="point 1 to run with 2 and 3 waiting in its task",
    )
    assert runs[2]["detail"] == "queued in its running task"
    cancel = mrunner("cancel", f"{sweep}/2")  # waiting inside the running task
    assert cancel.returncode == 0, cancel.stderr
    cancel = mrunner("cancel", f"{sweep}/1")  # running: stopped alone, the task goes on with point 3
    assert cancel.returncode == 0, cancel.stderr
    wait_for(
        lambda: states(mrunner, sweep),
        lambda found: found == [COMPLETED, CANCELLED, CANCELLED, COMPLETED],
        timeout=60,
        every=0.5,
        what="point 3 to complete after the cancels",
    )
    document = status(mrunner, sweep)
    runs = document["experiments"]
    assert [ledger(cluster, document, run) for run in runs] == [[0], [0], [], [0]]  # 2 never started
    assert (
        runs[2]["detail"]
        == "cancelled by `mrunner cancel` (inside its task: skipped if waiting, stopped alone if running)"
    )
    assert "done" not in mrunner("logs", f"{sweep}/1").stdout
    job = runs[0]["backend_ref"].split("_")[0]
    wait_for(
        lambda: cluster.ssh(f"squeue -h -r -j {job} -o %T"),
        lambda listing: "RUNNING" not in listing,
        timeout=30,
        every=0.5,
        what="the task to end",
    )
    assert states(mrunner, sweep) == [COMPLETED, CANCELLED, CANCELLED, COMPLETED]


def test_cancel_of_a_whole_packed_sweep_scancels_its_tasks(cluster, mrunner, mrunner_home):
    packed(cluster, mrunner_home, points_per_task=3)
    sweep = submit(mrunner, "i=range(6)", "hold=0", "hold_too=3")  # the first point of each task holds
    wait_for(
        lambda: states(mrunner, sweep),
        lambda found: found[0] == found[3] == RUNNING,
        timeout=60,
        every=0.5,
        what="points 0 and 3 to run",
    )
    job = status(mrunner, sweep)["experiments"][0]["backend_ref"].split("_")[0]
    cancel = mrunner("cancel", sweep)
    assert cancel.returncode == 0, cancel.stderr
    assert states(mrunner, sweep) == [CANCELLED] * 6
    assert cluster.ssh(f"squeue -h -r -j {job} -t PD,R -o %i").split() == []  # no task left to run
    document = status(mrunner, sweep)
    assert [ledger(cluster, document, run) for run in document["experiments"]] == [[0], [], [], [0], [], []]


def word_after(text: str, label: str) -> str:
    return text.split(f" {label} ")[1].split()[0]


def test_points_at_once_run_together_each_on_its_share_of_the_tasks_gpus(cluster, mrunner, mrunner_home):
    packed(cluster, mrunner_home, points_per_task=4, points_at_once=2, gpu=1)  # a GPU per point: the task asks 2
    sweep = submit(mrunner, "i=range(4)", "hold=0", "hold_too=1")
    runs = wait_for(
        lambda: status(mrunner, sweep)["experiments"],
        lambda rs: [r["state"] for r in rs] == [RUNNING, RUNNING, PENDING, PENDING],
        timeout=60,
        every=0.5,
        what="points 0 and 1 to run at once, 2 and 3 waiting in the task",
    )
    assert len({r["backend_ref"] for r in runs}) == 1
    cluster.ssh(f"touch {cluster.storage}/gate")
    wait_for(
        lambda: states(mrunner, sweep),
        lambda found: found == [COMPLETED] * 4,
        timeout=60,
        every=0.5,
        what="the task's four points to complete",
    )
    gpus = [mrunner("logs", f"{sweep}/{index}").stdout.split(" gpus ")[1].split()[0] for index in range(4)]
    assert sorted(gpus[:2]) == ["0", "1"] and all(g in ("0", "1") for g in gpus)  # one GPU each


def two_at_once(mrunner, sweep: str) -> list[dict]:
    """Wait for points 0 and 1 of the task to run at once (each holds at the gate), then open the gate."""
    runs = wait_for(
        lambda: status(mrunner, sweep)["experiments"],
        lambda rs: [r["state"] for r in rs] == [RUNNING, RUNNING],
        timeout=60,
        every=0.5,
        what="points 0 and 1 to run at once",
    )
    return runs


def test_points_at_once_are_each_bound_to_their_own_cpus_and_the_task_asks_for_both(
    cluster, mrunner, mrunner_home, slurm_service
):
    """cpu and mem are per point: the task asks for 2 CPUs and 2 x 100M; the runner binds each point to one
    CPU of the task's (this cluster's TaskPlugin=task/none binds nothing itself), and says so in its env."""
    packed(cluster, mrunner_home, points_per_task=2, points_at_once=2, cpu=1, mem="100M")
    sweep = submit(mrunner, "i=range(2)", "hold=0", "hold_too=1")
    runs = two_at_once(mrunner, sweep)
    ref = runs[0]["backend_ref"]
    assert {r["backend_ref"] for r in runs} == {ref}  # one task
    job = cluster.ssh(f"scontrol show job {ref}")
    assert " NumCPUs=2 " in job and "MinMemoryNode=200M" in job, job
    shown = mrunner("status", f"{sweep}/0")
    assert "job array " + ref.split("_")[0] + "; 2 at once, each point 1 CPU, 100M memory of" in shown.stdout, (
        shown.stdout
    )
    cluster.ssh(f"touch {cluster.storage}/gate")
    wait_for(lambda: states(mrunner, sweep), lambda found: found == [COMPLETED] * 2, timeout=60, every=0.5)
    logs = [mrunner("logs", f"{sweep}/{index}").stdout for index in range(2)]
    cpus = [word_after(log, "cpus") for log in logs]
    assert len(set(cpus)) == 2 and all("-" not in c and "," not in c for c in cpus), cpus  # one CPU each, apart
    assert [(word_after(log, "omp"), word_after(log, "slurm_cpus")) for log in logs] == [("1", "1")] * 2
    if slurm_service.get("accounting"):
        # slurmctld hands a job's record to slurmdbd on its own time: wait until the accounting has it
        asked = wait_for(
            lambda: cluster.ssh(f"sacct -X -n -P -j {ref} -o AllocCPUS,ReqMem").split(),
            bool,
            timeout=60,
            every=0.5,
            what=f"job {ref} in the accounting",
        )
        assert asked == ["2|200M"], asked


def test_with_cmd_type_srun_points_at_once_are_job_steps_of_their_share(cluster, mrunner, mrunner_home):
    """Under srun each point is a job step of 1 CPU and 100M (--exact), side by side in a task of 2 CPUs."""
    packed(cluster, mrunner_home, points_per_task=2, points_at_once=2, cpu=1, mem="100M", cmd_type="srun")
    sweep = submit(mrunner, "i=range(2)", "hold=0", "hold_too=1")
    ref = two_at_once(mrunner, sweep)[0]["backend_ref"]
    steps = cluster.ssh(f"squeue -h -s -j {ref} -o %i").split()
    assert len([step for step in steps if not step.endswith((".batch", ".extern"))]) == 2, steps  # both at once
    for step in (0, 1):  # each its share, side by side
        assert "TRES=cpu=1,mem=100M," in cluster.ssh(f"scontrol show step {ref}.{step}")
    cluster.ssh(f"touch {cluster.storage}/gate")
    wait_for(lambda: states(mrunner, sweep), lambda found: found == [COMPLETED] * 2, timeout=60, every=0.5)
    logs = [mrunner("logs", f"{sweep}/{index}").stdout for index in range(2)]
    assert sorted(word_after(log, "step") for log in logs) == ["0", "1"]
    assert [word_after(log, "slurm_cpus") for log in logs] == ["1", "1"]  # the step's own
    asked = wait_for(  # the accounting has the steps once slurmctld handed them to slurmdbd
        lambda: cluster.ssh(f"sacct -n -P -j {ref} -o JobID,AllocCPUS", check=False).split(),
        lambda found: len([line for line in found if line.split("|")[0].endswith((".0", ".1"))]) == 2,
        timeout=60,
        every=0.5,
        what=f"the steps of job {ref} in the accounting",
    )
    assert sorted(line for line in asked if line.split("|")[0].endswith((".0", ".1"))) == [
        f"{ref}.0|1",
        f"{ref}.1|1",
    ], asked


def test_a_requeued_task_runs_only_its_points_that_did_not_complete(cluster, mrunner, mrunner_home):
    packed(cluster, mrunner_home, points_per_task=3)
    sweep = submit(mrunner, "i=range(3)", "hold=1", "hold_until=1")  # point 1 holds in attempt 0 only
    runs = wait_for(
        lambda: status(mrunner, sweep)["experiments"],
        lambda rs: [r["state"] for r in rs] == [COMPLETED, RUNNING, PENDING],
        timeout=60,
        every=0.5,
        what="point 1 to run",
    )
    ref = runs[0]["backend_ref"]
    cluster.ssh(f"scontrol requeue {ref}")
    wait_for(
        lambda: status(mrunner, sweep)["experiments"],
        lambda rs: [r["attempt"] for r in rs] == [0, 1, 1],
        timeout=60,
        every=0.5,
        what="the requeue to show as the next attempt of points 1 and 2",
    )
    release(cluster, ref)
    wait_for(
        lambda: states(mrunner, sweep),
        lambda found: found == [COMPLETED] * 3,
        timeout=120,
        every=0.5,
        what="the requeued task to complete",
    )
    document = status(mrunner, sweep)
    runs = document["experiments"]
    assert [ledger(cluster, document, run) for run in runs] == [[0], [0, 1], [1]]
    assert [r["attempt"] for r in runs] == [0, 1, 1]
    assert "point 1 done" in mrunner("logs", f"{sweep}/1").stdout
    assert "not run again" in cluster.ssh(
        f"cat {cluster.storage}/{document['sweep']['project']}/{sweep}/logs/0.1.log"
    )  # point 0 completed in attempt 0: its task's next attempt did not run it


def test_a_task_requeued_with_two_points_running_runs_only_its_unfinished_points(cluster, mrunner, mrunner_home):
    """Two points at once: 0 and 2 hold in attempt 0 while 1 completes; the requeue stops both running points
    (the task's runner passes the signal on to each) and starts no further one; the task's next attempt runs
    0, 2 and 3, never 1 again."""
    packed(cluster, mrunner_home, points_per_task=4, points_at_once=2)
    sweep = submit(mrunner, "i=range(4)", "hold=0", "hold_too=2", "hold_until=1")
    runs = wait_for(
        lambda: status(mrunner, sweep)["experiments"],
        lambda rs: [r["state"] for r in rs] == [RUNNING, COMPLETED, RUNNING, PENDING],
        timeout=60,
        every=0.5,
        what="points 0 and 2 to run, 1 completed, 3 waiting in the task",
    )
    ref = runs[0]["backend_ref"]
    cluster.ssh(f"scontrol requeue {ref}")
    wait_for(
        lambda: status(mrunner, sweep)["experiments"],
        lambda rs: [r["attempt"] for r in rs] == [1, 0, 1, 1],
        timeout=60,
        every=0.5,
        what="the requeue to show as the next attempt of points 0, 2 and 3",
    )
    release(cluster, ref)
    wait_for(
        lambda: states(mrunner, sweep),
        lambda found: found == [COMPLETED] * 4,
        timeout=120,
        every=0.5,
        what="the requeued task to complete",
    )
    document = status(mrunner, sweep)
    assert [ledger(cluster, document, run) for run in document["experiments"]] == [[0, 1], [0], [0, 1], [1]]
    assert "point 1 done" in mrunner("logs", f"{sweep}/1").stdout


def test_a_task_at_its_time_limit_comes_back_and_runs_the_points_it_did_not_complete(cluster, mrunner, mrunner_home):
    """`time` is a point's: a task of 2 points asks for 2 minutes. Point 0 holds in attempt 0 until the warning
    before the time limit; its wrapper requeues the task, whose next attempt runs points 0 and 1."""
    packed(cluster, mrunner_home, points_per_task=2, time=1, max_requeue=1)
    write_context(
        mrunner_home,
        "test-slurm",
        slurm_context(cluster.service, cluster.storage, grace_period=20, points_per_task=2, time=1, max_requeue=1),
    )
    sweep = submit(mrunner, "i=range(2)", "hold=0", "hold_until=1")
    ref = status(mrunner, sweep)["experiments"][0]["backend_ref"]
    assert "TimeLimit=00:02:00" in cluster.ssh(f"scontrol show job {ref}")
    wait_for(
        lambda: status(mrunner, sweep)["experiments"],
        lambda rs: [r["attempt"] for r in rs] == [1, 1],
        timeout=200,
        every=1,
        what="the requeue at the time limit's warning",
    )
    release(cluster, ref)
    wait_for(
        lambda: states(mrunner, sweep),
        lambda found: found == [COMPLETED] * 2,
        timeout=120,
        every=0.5,
        what="the task's next attempt to complete both points",
    )
    document = status(mrunner, sweep)
    runs = document["experiments"]
    assert [ledger(cluster, document, run) for run in runs] == [[0, 1], [1]]
    assert [(a["number"], a["end"]) for a in runs[0]["attempts"]] == [(0, "timeout"), (1, COMPLETED)]
    assert "warned of the time limit" in mrunner("logs", f"{sweep}/0", "--attempt", "0").stdout


def test_resume_after_a_failure_runs_only_the_failed_point(cluster, mrunner, mrunner_home):
    packed(cluster, mrunner_home, points_per_task=2)
    result = mrunner("+context=test-slurm", "point.py", "-m", "i=range(4)", "fail=1", "--wait")
    assert result.returncode == 1, result.stderr
    sweep = result.stdout.strip().splitlines()[-1]
    runs = status(mrunner, sweep)["experiments"]
    assert [(r["state"], r["exit_code"]) for r in runs] == [(COMPLETED, 0), (FAILED, 3), (COMPLETED, 0), (COMPLETED, 0)]
    cluster.ssh(f"touch {cluster.storage}/heal")
    resumed = mrunner("resume", sweep, "--wait")
    assert resumed.returncode == 0, resumed.stderr
    document = status(mrunner, sweep)
    runs = document["experiments"]
    assert [(r["state"], r["attempt"]) for r in runs] == [
        (COMPLETED, 0),
        (COMPLETED, 1),
        (COMPLETED, 0),
        (COMPLETED, 0),
    ]
    assert [ledger(cluster, document, run) for run in runs] == [[0], [0, 1], [0], [0]]


def test_a_point_whose_task_came_back_for_a_siblings_retry_says_so_not_a_platform_requeue(
    cluster, mrunner, mrunner_home
):
    """Point 0 fails in attempt 0 and asks for its retry (retry_failed): its wrapper requeues the whole task,
    so point 1, not reached yet, comes back as attempt 1 too. Its history and its attempt 0's end say why: a
    retry of point 0, not a requeue by the platform."""
    packed(cluster, mrunner_home, points_per_task=2, retry_failed=1)
    sweep = submit(mrunner, "i=range(2)", "fail=0")

    runs = retried_to_their_end(cluster, mrunner, sweep)
    assert [(r["state"], r["attempt"]) for r in runs] == [(FAILED, 1), (COMPLETED, 1)]
    shown = status(mrunner, f"{sweep}/1")
    why = "its task was requeued for a retry of experiment 0"
    starts = [detail for _, _, _, detail in shown["history"] if (detail or "").startswith("attempt 1")]
    assert starts == [f"attempt 1 ({why})"], shown["history"]
    (first, _) = shown["attempts"]
    assert (first["number"], first["end"]) == (0, "preempted") and why in first["detail"], first


def test_with_cmd_type_srun_each_point_of_a_task_is_a_job_step_of_its_own(cluster, mrunner, mrunner_home):
    packed(cluster, mrunner_home, points_per_task=2, cmd_type="srun")
    result = mrunner("+context=test-slurm", "point.py", "-m", "i=range(2)", "fail=1", "--wait")
    assert result.returncode == 1, result.stderr  # a point failed
    sweep = result.stdout.strip().splitlines()[-1]
    runs = status(mrunner, sweep)["experiments"]
    assert [(r["state"], r["exit_code"]) for r in runs] == [(COMPLETED, 0), (FAILED, 3)]
    steps = [mrunner("logs", f"{sweep}/{index}").stdout.split(" step ")[1].split()[0] for index in range(2)]
    assert steps == ["0", "1"]  # one srun per point, as unpacked


def test_auto_packs_a_sweep_beyond_max_array_size_into_one_array_read_from_the_cluster(
    cluster, mrunner, mrunner_home, slurm_service
):
    """No job limit on this user: auto packs just enough for one array of the cluster's MaxArraySize (read
    with `scontrol show config`). Submitted held, then cancelled whole: every task scancelled."""
    packed(cluster, mrunner_home, points_per_task="auto", sbatch_options=["--hold"])
    count = slurm_service["max_array_size"] + 10
    sweep = submit(mrunner, f"i=range({count})")
    runs = every_run(mrunner, sweep)
    refs = {r["backend_ref"] for r in runs}
    job = next(iter(refs)).split("_")[0]
    expected = {f"{job}_{task}" for task in range(-(-count // 2))}  # 2 points per task, one array
    assert refs == expected, (len(refs), sorted(refs ^ expected)[:5])
    assert len(runs) == count and all(r["state"] == PENDING for r in runs)
    assert mrunner("cancel", sweep).returncode == 0
    assert cluster.ssh(f"squeue -h -r -j {job} -t PD,R -o %i").split() == []


def every_run(mrunner, sweep: str) -> list[dict]:
    result = mrunner("status", sweep, "--json", "--all")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)["experiments"]


def test_each_resource_class_is_packed_in_its_own_array(cluster, mrunner, mrunner_home):
    packed(cluster, mrunner_home, points_per_task=2)
    sweep = submit(mrunner, "i=range(2)", "context.mem=100M,200M", "--wait")
    runs = every_run(mrunner, sweep)
    assert [r["state"] for r in runs] == [COMPLETED] * 4
    jobs = {r["backend_ref"].split("_")[0] for r in runs}
    assert len(jobs) == 2 and len({r["backend_ref"] for r in runs}) == 2  # one task of 2 points per class


def test_the_dry_run_shows_the_packing(cluster, mrunner, mrunner_home):
    packed(cluster, mrunner_home, points_per_task=4, points_at_once=2, time=10)
    dry = mrunner("+context=test-slurm", "point.py", "-m", "i=range(10)", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert (
        "packed: 3 array tasks of up to 4 points each, 2 at once (each point 1 CPU of the task's), each task's "
        "time limit 0-00:20:00" in dry.stdout
    )
    assert "--array=0-2 " in dry.stdout and "--time=0-00:20:00" in dry.stdout and "--cpus-per-task=2" in dry.stdout
    # a grid smaller than K is one task of all its points, said as such (not "1 array task of up to 3 points each")
    dry = mrunner("+context=test-slurm", "point.py", "-m", "i=range(3)", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "packed: 1 array task of all 3 points, 2 at once" in dry.stdout, dry.stdout
    packed(cluster, mrunner_home, points_per_task=2, points_at_once=2, cpu=2, mem="1G", gpu=1, cmd_type="srun")
    dry = mrunner("+context=test-slurm", "point.py", "-m", "i=range(2)", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "2 at once (each point 2 CPUs, 1G memory, gpu:1 of the task's)" in dry.stdout
    assert "--cpus-per-task=4 --mem=2G" in dry.stdout and "--gres=gpu:2" in dry.stdout
    assert '["srun", "--exact", "--ntasks=1", "--cpus-per-task=2", "--mem=1G", "--gres=gpu:1", "python3"]' in dry.stdout
    packed(cluster, mrunner_home, points_per_task="auto")
    dry = mrunner("+context=test-slurm", "point.py", "-m", "i=range(2500)", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "packed: 834 array tasks of up to 3 points each (auto" in dry.stdout


@pytest.mark.parametrize(
    ("keys", "named"),
    [
        ({"points_per_task": 2, "points_at_once": 3}, "points_at_once (3) is more than points_per_task (2)"),
        ({"points_per_task": 2, "points_at_once": 2, "cpu": 0}, "cpu is per point"),
        ({"points_per_task": 2, "points_at_once": 2, "sbatch_options": ["--cpus-per-task=1"]}, "less than a CPU"),
        ({"points_per_task": 2, "points_at_once": 2, "mem": "1.5G"}, "mem is per point"),
        ({"points_per_task": 2, "points_at_once": 2, "ntasks": 2}, "ntasks=2 with points_at_once=2"),
        # a GPU per point is fine alone; two at once ask the node for gres:4, which sbatch refuses
        ({"points_per_task": 2, "points_at_once": 2, "gpu": 2}, "or lower points_at_once (each task asks for 2 "),
    ],
)
def test_points_at_once_beyond_the_task_is_refused_in_one_line_before_anything_is_recorded(
    cluster, mrunner, mrunner_home, keys, named
):
    packed(cluster, mrunner_home, **keys)
    result = mrunner("+context=test-slurm", "point.py", "-m", "i=range(2)")
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and named in lines[0] and "Traceback" not in result.stderr, result.stderr
    assert mrunner("status").stdout.count("point") == 0  # nothing recorded
    swept = {k: v for k, v in keys.items() if k != "mem"}
    if "mem" in keys:  # a swept value is a resource class of its own, checked as the context is
        packed(cluster, mrunner_home, **swept)
        result = mrunner("+context=test-slurm", "point.py", "-m", "i=range(2)", "context.mem=1G,1.5G")
        assert result.returncode != 0 and "mem is per point" in result.stderr, result.stderr
        assert mrunner("status").stdout.count("point") == 0


@pytest.mark.parametrize("value", [0, -1, "x"])
def test_a_bad_points_per_task_is_refused_in_one_line(cluster, mrunner, mrunner_home, value):
    packed(cluster, mrunner_home, points_per_task=value)
    result = mrunner("+context=test-slurm", "point.py", "-m", "i=range(2)")
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "points_per_task" in lines[0] and "Traceback" not in result.stderr, result.stderr
    assert mrunner("status").stdout.count("point") == 0  # nothing recorded
