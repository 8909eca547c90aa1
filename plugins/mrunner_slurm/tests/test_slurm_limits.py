"""A site's job limits on the loopback cluster (tests/services/slurm), as the limited user `mrlimited` meets
them: decided once and recorded before the first sbatch (a submission cut off between an sbatch and its
record resumes into the same arrays), refused before anything is uploaded or recorded, the QOS's limits
(per user and QOS-wide) read with the association's, and a task held back by a limit on running jobs shown
in words while `--wait` waits for it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid

import pytest

from mrunner.records import COMPLETED, PENDING, PLANNED, RUNNING
from mrunner.testing import start_mrunner, wait_for, write_context
from plugins.mrunner_slurm.tests.test_slurm_cluster import Cluster, slurm_context

# Each point appends one line to its own ledger in its experiment folder: the lines say how often it ran.
# With a `go` file to wait for (the throttling test), it runs until the test lets it end.
LEDGER = """
import os, time
from mrunner import get_configuration

config = get_configuration()
gate = os.path.join(os.environ["STORAGE_DIR"], "go")
while config.get("gated") and not os.path.exists(gate):
    time.sleep(0.2)
with open(os.path.join(os.environ["MRUNNER_EXPERIMENT_DIR"], "ran"), "a") as ledger:
    ledger.write("ran\\n")
"""

# `mrunner ARGS` that dies as a `kill -9` would, the moment Slurm has accepted its first array and before
# that is recorded: the records still say every run is planned, the cluster has the array.
CUT_OFF_AFTER_SBATCH = """
import os, runpy, sys
from mrunner import store

applied = store.Store.apply

def cut_off(self, sweep_id, updates, *args, **kwargs):
    if any(update.state == "submitted" for update in updates):
        os._exit(137)
    return applied(self, sweep_id, updates, *args, **kwargs)

store.Store.apply = cut_off
sys.argv[0] = "mrunner"
runpy.run_module("mrunner", run_name="__main__", alter_sys=True)
"""


@pytest.fixture
def limited(slurm_limited_service, mrunner_home, tmp_path):
    """The limited user's context `test-slurm` (its storage_dir this test's own folder), the ledger
    experiment, and at the end every job of this test's sweeps cancelled."""
    storage = f"{slurm_limited_service['storage_dir']}/test-{uuid.uuid4().hex[:10]}"
    cluster = Cluster(slurm_limited_service, storage)
    (tmp_path / "train.py").write_text(LEDGER)
    yield cluster
    from mrunner.store import Store

    for sweep in Store().sweeps():
        jobs = f"squeue -h -u $(id -un) -o '%F %j' | grep -F mrunner-{sweep.id}- | cut -d' ' -f1 | sort -u"
        cluster.ssh(f"{jobs} | xargs -r scancel", check=False)


def capped_qos(service: dict) -> dict:
    """The QOS the limited user may ask for (tests/services/slurm/README.md), where start.sh made it."""
    if "qos" not in service:  # a cluster started by an older start.sh
        message = "the Slurm service has no QOS capped: restart it with tests/services/slurm/start.sh"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return service["qos"]


def sweep_jobs(cluster: Cluster, sweep: str) -> list[str]:
    """The sweep's jobs (one per array task) Slurm lists, as ``ARRAYJOB NAME`` lines."""
    listing = cluster.ssh("squeue -h -r -u $(id -un) -o '%F %j'")
    return sorted(line for line in listing.splitlines() if f"mrunner-{sweep}-" in line)


def submitted_under(cluster: Cluster) -> list[str]:
    """The jobs (a pending array as one line) that ran, or are to run, in this test's storage folder: those
    Slurm holds (squeue; a held job is never eligible, so accounting does not list it yet) and those its
    accounting has in any state (sacct): what any sbatch of its sweeps left."""
    states = "PD,R,CD,CA,F,TO,PR,NF,OOM,RQ,S,BF,DL"
    listing = cluster.ssh(
        f"squeue -h -u $(id -un) -o '%i|%Z'; sacct -n -X -P -S now-1hour -E now -s {states} -o JobID,WorkDir"
    )
    return sorted({line for line in listing.splitlines() if f"|{cluster.storage}/" in line})


def queued_under(cluster: Cluster) -> list[str]:
    """The jobs (one per array task) Slurm has queued or running in this test's storage folder."""
    listing = cluster.ssh("squeue -h -r -u $(id -un) -o '%i|%Z'")
    return [line for line in listing.splitlines() if f"|{cluster.storage}/" in line]


def shown(mrunner, sweep: str) -> list[dict]:
    result = mrunner("status", sweep, "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)["experiments"]


def test_a_submission_cut_off_between_sbatch_and_its_record_resumes_into_the_same_arrays_and_runs_each_point_once(
    limited, mrunner, mrunner_home, tmp_path
):
    """points_per_task: auto is decided once and recorded before the first sbatch. mrunner dies right after
    Slurm accepted the packed array, before recording it; by then the array's own tasks use most of the
    allowance, so deciding again would pack differently (other array names, every point submitted twice).
    The same grid submitted again records and submits nothing (its runs are the cut-off sweep's); the resume
    finds the array, submits nothing new, and every point runs once, counted from its own ledger."""
    cluster = limited
    allowed = cluster.service["max_submit_jobs"]
    points = allowed + allowed // 2  # more than the allowance: packed two per task
    context = {**slurm_context(cluster.service, cluster.storage), "points_per_task": "auto"}
    write_context(mrunner_home, "test-slurm", {**context, "sbatch_options": ["--hold"]})  # queued, not run yet
    (tmp_path / "cut.py").write_text(CUT_OFF_AFTER_SBATCH)
    cut = subprocess.run(
        [sys.executable, str(tmp_path / "cut.py"), "+context=test-slurm", "train.py", "-m", f"i=range({points})"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert cut.returncode == 137, cut.stderr
    sweep = json.loads(mrunner("status", "--json").stdout)[0]["sweep"]["id"]
    assert {e["state"] for e in shown(mrunner, sweep)} == {PLANNED}  # nothing recorded as submitted
    queued = sweep_jobs(cluster, sweep)
    arrays = {line.split()[0] for line in queued}
    assert len(arrays) == 1 and 0 < len(queued) <= allowed, queued
    k = -(-points // len(queued))
    left = allowed - int(cluster.ssh("squeue -h -r -u $(id -un) | wc -l"))
    assert k > 1 and (left <= 0 or -(-points // left) != k)  # auto decided now would pack otherwise, or refuse

    again = mrunner("+context=test-slurm", "train.py", "-m", f"i=range({points})")  # the same grid, submitted again
    assert again.returncode == 0, again.stderr
    assert (
        f"{points} of {points} experiments were already submitted" in again.stderr and "mrunner resume" in again.stderr
    )
    assert [s["sweep"]["id"] for s in json.loads(mrunner("status", "--json").stdout)] == [sweep]
    assert sweep_jobs(cluster, sweep) == queued

    resumed = mrunner("resume", sweep)
    assert resumed.returncode == 0, resumed.stderr
    assert "found job array" in resumed.stderr + resumed.stdout
    assert sweep_jobs(cluster, sweep) == queued  # the same tasks of the same array, no second one
    runs = shown(mrunner, sweep)
    assert {e["backend_ref"].split("_")[0] for e in runs} == arrays

    cluster.ssh(f"scontrol release {arrays.pop()}")
    waited = mrunner("status", sweep, "--wait", timeout=600)
    assert waited.returncode == 0, waited.stderr
    runs = shown(mrunner, sweep)
    assert [e["state"] for e in runs] == [COMPLETED] * points
    ledgers = cluster.ssh(" ".join(["cat", *(e["output_dir"].split(":", 1)[1] + "/ran" for e in runs)]))
    assert ledgers.split() == ["ran"] * points  # every point once


def test_a_sweep_beyond_the_qos_limits_is_refused_before_any_upload_record_or_tracker_and_auto_packs_into_them(
    limited, mrunner, mrunner_home, tmp_path
):
    """The QOS's GrpSubmitJobs (every user's jobs count) binds before its MaxSubmitJobsPerUser and the
    association's MaxSubmitJobs: a sweep beyond it is refused in one line naming it, before the code is
    uploaded, anything stays recorded or a tracker hears of it; with points_per_task: auto it is packed
    into that allowance."""
    from mrunner.store import Store

    cluster = limited
    qos = capped_qos(cluster.service)
    grp = qos["grp_submit_jobs"]
    assert grp < qos["max_submit_jobs_per_user"] < cluster.service["max_submit_jobs"]
    context = {**slurm_context(cluster.service, cluster.storage), "qos": qos["name"]}
    write_context(mrunner_home, "test-slurm", context)
    traces = tmp_path / "traces"
    traces.mkdir()
    result = mrunner(
        "+context=test-slurm", "train.py", "-m", f"i=range({grp + 1})", env={"MRUNNER_TRACE_CALLS": str(traces)}
    )
    assert result.returncode != 0 and "Traceback" not in result.stderr, result.stderr
    line = result.stderr.strip().splitlines()[-1]
    assert f"GrpSubmitJobs={grp} jobs queued or running in QOS {qos['name']}" in line, line
    assert f"needs {grp + 1}" in line and "points_per_task" in line and "nothing was submitted or recorded" in line
    assert Store().sweeps() == [] and json.loads(mrunner("status", "--json").stdout) == []
    assert cluster.ssh(f"ls -A {cluster.storage} 2>&1 || true").strip().endswith("No such file or directory")
    assert submitted_under(cluster) == []
    called = set(os.listdir(traces))
    assert "Backend.ready" in called, called  # refused before the sweep was recorded: admit is called after
    assert not called & {
        "Backend.admit",
        "Backend.package",
        "Backend.setup_resources",
        "Backend.submit",
        "mrunner_sweep_submitted",
    }

    write_context(mrunner_home, "test-slurm", {**context, "points_per_task": "auto", "sbatch_options": ["--hold"]})
    result = mrunner("+context=test-slurm", "train.py", "-m", f"i=range({grp + 1})")
    assert result.returncode == 0, result.stderr
    sweep = json.loads(mrunner("status", "--json").stdout)[0]["sweep"]["id"]
    tasks = sweep_jobs(cluster, sweep)
    assert 0 < len(tasks) <= grp, tasks  # packed into the QOS's allowance: 2 points per task
    assert len(submitted_under(cluster)) == 1  # the look that found nothing above sees a held array
    assert {e["state"] for e in shown(mrunner, sweep)} <= {"submitted", PENDING}


def test_tasks_beyond_the_qos_limit_on_running_jobs_are_queued_in_words_and_wait_ends_when_they_ran(
    limited, mrunner, mrunner_home, tmp_path
):
    """MaxJobsPerUser of the QOS: the tasks beyond it wait with reason QOSMaxJobsPerUserLimit, which status
    says in words with the limit read at submission; `--wait` waits for them (it does not take them for
    a request that can never run) and ends once every point ran once."""
    cluster = limited
    qos = capped_qos(cluster.service)
    running = qos["max_jobs_per_user"]
    write_context(mrunner_home, "test-slurm", {**slurm_context(cluster.service, cluster.storage), "qos": qos["name"]})
    result = mrunner("+context=test-slurm", "train.py", "-m", f"i=range({running + 1})", "gated=1")
    assert result.returncode == 0, result.stderr
    sweep = json.loads(mrunner("status", "--json").stdout)[0]["sweep"]["id"]
    said = f"queued: the site's limit of {running} running jobs (MaxJobsPerUser of the QOS: QOSMaxJobsPerUserLimit)"

    def throttled(runs: list[dict]) -> bool:
        states = [e["state"] for e in runs]
        held = [e for e in runs if e["state"] == PENDING]
        return states.count(RUNNING) == running and len(held) == 1 and said in str(held[0].get("detail"))

    wait_for(lambda: shown(mrunner, sweep), throttled, timeout=120, every=1, what="a task held back by the QOS")
    waiting = start_mrunner(tmp_path, "status", sweep, "--wait")
    try:
        cluster.ssh(f"touch {cluster.storage}/go")
        out, err = waiting.communicate(timeout=300)
    finally:
        waiting.kill()
    assert waiting.returncode == 0, err
    runs = shown(mrunner, sweep)
    assert [e["state"] for e in runs] == [COMPLETED] * (running + 1)
    ledgers = cluster.ssh(" ".join(["cat", *(e["output_dir"].split(":", 1)[1] + "/ran" for e in runs)]))
    assert ledgers.split() == ["ran"] * (running + 1)


def test_auto_packs_several_resource_classes_into_the_qos_allowance_and_each_point_runs_once(
    limited, mrunner, mrunner_home
):
    """Each resource class is its own array, its last task part-full: 4 classes of 3 points under the QOS's
    GrpSubmitJobs=6 would make 8 tasks at 2 points each, so auto packs 3 (4 tasks) and the sweep is
    accepted whole, where it used to be refused with the very option the user had set."""
    cluster = limited
    qos = capped_qos(cluster.service)
    assert qos["grp_submit_jobs"] == 6
    write_context(
        mrunner_home,
        "test-slurm",
        {**slurm_context(cluster.service, cluster.storage), "qos": qos["name"], "points_per_task": "auto"},
    )
    result = mrunner("+context=test-slurm", "train.py", "-m", "context.time=1,2,3,4", "i=range(3)")
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("submitted job array") == 4 and "3 experiments in 1 task," in result.stderr, (
        result.stderr
    )
    sweep = result.stdout.strip().splitlines()[-1]
    waited = mrunner("status", sweep, "--wait", timeout=600)
    assert waited.returncode == 0, waited.stderr
    runs = shown(mrunner, sweep)
    assert [e["state"] for e in runs] == [COMPLETED] * 12
    assert len({e["backend_ref"] for e in runs}) == 4  # one task of 3 points per class
    ledgers = cluster.ssh(" ".join(["cat", *(e["output_dir"].split(":", 1)[1] + "/ran" for e in runs)]))
    assert ledgers.split() == ["ran"] * 12  # every point once


def test_beyond_the_allowance_counts_only_the_runs_the_records_would_take_and_refuses_the_rest_before_recording(
    limited, mrunner, mrunner_home, tmp_path
):
    """The refusal before recording counts what the records would take: the same grid again (every run
    already submitted) records nothing and is not refused; a grid overlapping a submitted one is asked again
    of its new runs, which fit; a grid of new runs beyond what is left is refused before it is recorded
    (admit never runs), with nothing submitted."""
    from mrunner.store import Store

    cluster = limited
    allowed = cluster.service["max_submit_jobs"]
    assert allowed == 20
    write_context(
        mrunner_home, "test-slurm", {**slurm_context(cluster.service, cluster.storage), "sbatch_options": ["--hold"]}
    )
    first = mrunner("+context=test-slurm", "train.py", "-m", "i=range(11)")  # 11 queued: 9 left
    assert first.returncode == 0, first.stderr
    again = mrunner("+context=test-slurm", "train.py", "-m", "i=range(11)")  # 11 as planned, 0 to record
    assert again.returncode == 0, again.stderr
    assert "11 of 11 experiments were already submitted" in again.stderr, again.stderr
    overlapping = mrunner("+context=test-slurm", "train.py", "-m", "i=range(5,15)")  # 10 as planned, 4 new
    assert overlapping.returncode == 0, overlapping.stderr
    assert "6 of 10 experiments were already submitted" in overlapping.stderr, overlapping.stderr
    assert len(Store().sweeps()) == 2 and len(queued_under(cluster)) == 15
    arrays = submitted_under(cluster)
    assert len(arrays) == 2, arrays

    traces = tmp_path / "traces"
    traces.mkdir()
    beyond = mrunner(
        "+context=test-slurm", "train.py", "-m", "i=range(15,21)", env={"MRUNNER_TRACE_CALLS": str(traces)}
    )  # 6 new, 5 left
    assert beyond.returncode == 3 and "Traceback" not in beyond.stderr, beyond.stderr
    line = beyond.stderr.strip().splitlines()[-1]
    assert f"MaxSubmitJobs={allowed} jobs queued or running, 15 of them" in line and "needs 6" in line, line
    assert "points_per_task" in line and "nothing was submitted or recorded" in line, line
    assert len(Store().sweeps()) == 2 and submitted_under(cluster) == arrays
    called = set(os.listdir(traces))
    assert "Backend.ready" in called and "Backend.admit" not in called, called


@pytest.mark.parametrize(
    ("points_per_task", "grid", "each"),
    [
        (1_000_000_000, ["context.time=1,2,3,4,5,6,7", "i=range(2)"], "(one per resource class)"),
        (2, ["context.time=1,2,3,4", "i=range(3)"], "(one per 2 experiments of each resource class)"),
        (1_000_000_000, ["i=range(3)"], None),
    ],
)
def test_the_refusal_beyond_the_allowance_counts_the_jobs_as_they_are_packed_whatever_points_per_task_says(
    limited, mrunner, mrunner_home, points_per_task, grid, each
):
    """The refusal says how the jobs it counts come about, as the sweep would be packed: a points_per_task
    beyond a resource class's experiments packs the class into one task, so the line says "one per resource
    class", never "one per 1000000000 experiments"; below, it names the K each class's tasks hold. One class
    in one task fits, whatever K says."""
    from mrunner.store import Store

    cluster = limited
    qos = capped_qos(cluster.service)
    context = {**slurm_context(cluster.service, cluster.storage), "qos": qos["name"], "sbatch_options": ["--hold"]}
    write_context(mrunner_home, "test-slurm", {**context, "points_per_task": points_per_task})
    result = mrunner("+context=test-slurm", "train.py", "-m", *grid)
    if each is None:
        assert result.returncode == 0, result.stderr
        assert "3 experiments in 1 task" in result.stderr, result.stderr
        return
    assert result.returncode == 3 and "Traceback" not in result.stderr, result.stderr
    line = result.stderr.strip().splitlines()[-1]
    assert each in line and "1000000000" not in line, line
    assert Store().sweeps() == [] and submitted_under(cluster) == []
