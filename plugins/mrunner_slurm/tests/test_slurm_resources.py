"""Per-point resources on the real loopback cluster: a grid sweeping ``context.mem`` runs each memory class as
its own job array, Slurm gives every task the memory its point asked for (as `scontrol show job` and the task's
own ``SLURM_MEM_PER_NODE`` say), `status` shows the classes, a resubmission of the same grid is skipped, and a
resumed failed point keeps its class."""

from __future__ import annotations

import json
import os
import re
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from mrunner.records import COMPLETED, FAILED, TERMINAL
from mrunner.testing import wait_for, write_context
from plugins.mrunner_slurm.tests.test_slurm_cluster import Cluster, slurm_context, status
from tests.test_resume_refused import records_of

# Writes the memory Slurm gave its task; fails with `exit` until the storage folder holds `heal`.
MEMORY = """
import json, os, sys
import mrunner
config = mrunner.get_configuration()
with open(os.path.join(os.environ["MRUNNER_EXPERIMENT_DIR"], f"memory.{mrunner.attempt()}"), "w") as out:
    json.dump({"mem": os.environ.get("SLURM_MEM_PER_NODE"), "job": os.environ.get("SLURM_ARRAY_JOB_ID")}, out)
if config.exit and not os.path.exists(os.path.join(os.environ["STORAGE_DIR"], "heal")):
    sys.exit(config.exit)
"""


@pytest.fixture
def cluster(slurm_service: dict, tmp_path: Path, mrunner_home: Path) -> Cluster:
    storage = f"{slurm_service['storage_dir']}/test-{uuid.uuid4().hex[:10]}"
    write_context(mrunner_home, "test-slurm", slurm_context(slurm_service, storage))
    (tmp_path / "train.py").write_text(MEMORY)
    return Cluster(slurm_service, storage)


def memory_of(cluster: Cluster, document: dict, run: dict, attempt: int) -> dict:
    folder = f"{cluster.storage}/{document['sweep']['project']}/{run['sweep_id']}/{run['index']}-{run['name']}"
    return json.loads(cluster.read(f"{folder}/memory.{attempt}"))


def asked_memory(cluster: Cluster, job: str) -> set[str]:
    """The memory every task of array ``job`` asks for, as `scontrol show job` lists them (one line a task)."""
    text = cluster.ssh(f"scontrol show job -o {job}")
    return set(re.findall(r"\bMinMemoryNode=(\S+)", text))


def ended(mrunner, sweep: str) -> dict:
    return wait_for(
        lambda: status(mrunner, sweep),
        lambda d: all(r["state"] in TERMINAL for r in d["experiments"]),
        timeout=180,
        every=1,
        what=f"every experiment of {sweep} to end",
    )


def test_each_memory_class_is_its_own_array_and_resume_keeps_the_class(cluster, mrunner):
    args = ("+context=test-slurm", "train.py", "-m", "context.mem=600M,1200M", "exit=0,3")
    dry = mrunner(*args, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "2 resource classes, each submitted on its own:" in dry.stdout
    assert "mem=600M: 2 experiments" in dry.stdout and "mem=1200M: 2 experiments" in dry.stdout
    assert "--mem=600M" in dry.stdout and "--mem=1200M" in dry.stdout

    submitted = mrunner(*args)
    assert submitted.returncode == 0, submitted.stderr
    sweep = submitted.stdout.strip().splitlines()[-1]
    assert submitted.stderr.count("submitted job array") == 2, submitted.stderr
    runs = status(mrunner, sweep)["experiments"]
    assert [r["resources"] for r in runs] == [{"mem": "600M"}] * 2 + [{"mem": "1200M"}] * 2
    jobs = [r["backend_ref"].split("_")[0] for r in runs]
    assert jobs[0] == jobs[1] and jobs[2] == jobs[3] and jobs[0] != jobs[2], "one job array per class"
    assert len({r["id"] for r in runs}) == 4, "the memory is part of each experiment's identity"
    # Slurm's own view of each array, read while it still knows them
    assert asked_memory(cluster, jobs[0]) == {"600M"}
    assert asked_memory(cluster, jobs[2]) == {"1200M"}

    document = ended(mrunner, sweep)
    assert [r["state"] for r in document["experiments"]] == [COMPLETED, FAILED, COMPLETED, FAILED]
    assert [memory_of(cluster, document, r, 0)["mem"] for r in document["experiments"]] == [
        "600",
        "600",
        "1200",
        "1200",
    ]
    shown = mrunner("status", sweep)
    assert shown.returncode == 0, shown.stderr
    assert "resources: mem=600M (2), mem=1200M (2)" in shown.stdout
    assert "RESOURCES" in shown.stdout and "mem=1200M" in shown.stdout.splitlines()[-1]
    one = mrunner("status", f"{sweep}/3")
    assert "resources: mem=1200M (beyond context test-slurm)" in one.stdout, one.stdout

    cluster.ssh(f"touch {cluster.storage}/heal")
    resumed = mrunner("resume", sweep, "--wait")
    assert resumed.returncode == 0, resumed.stderr
    assert resumed.stderr.count("submitted job array") == 2, resumed.stderr
    document = status(mrunner, sweep)
    runs = document["experiments"]
    assert [r["state"] for r in runs] == [COMPLETED] * 4
    assert [r["attempt"] for r in runs] == [0, 1, 0, 1]
    assert [r["resources"] for r in runs] == [{"mem": "600M"}] * 2 + [{"mem": "1200M"}] * 2
    assert memory_of(cluster, document, runs[1], 1)["mem"] == "600"
    assert memory_of(cluster, document, runs[3], 1)["mem"] == "1200"

    again = mrunner(*args)  # the same grid again: every point completed, so nothing is submitted
    assert again.returncode == 0, again.stderr
    assert "4 of 4 experiments were already submitted" in again.stderr, again.stderr
    assert "submitted job array" not in again.stderr


def test_resume_with_a_resource_option_overrides_the_class(cluster, mrunner):
    submitted = mrunner("+context=test-slurm", "train.py", "-m", "context.mem=600M,1200M", "exit=3", "--wait")
    assert submitted.returncode == 1, submitted.stderr
    sweep = submitted.stdout.strip().splitlines()[-1]
    cluster.ssh(f"touch {cluster.storage}/heal")
    resumed = mrunner("resume", sweep, "--mem", "900M", "--wait")
    assert resumed.returncode == 0, resumed.stderr
    assert resumed.stderr.count("submitted job array") == 1, "one class left: both ask for 900M now"
    document = status(mrunner, sweep)
    runs = document["experiments"]
    assert [r["resources"] for r in runs] == [{"mem": "900M"}] * 2
    assert [memory_of(cluster, document, r, 1)["mem"] for r in runs] == ["900", "900"]
    assert [r["attempts"][1]["changes"] for r in runs] == [{"mem": "900M"}] * 2


def test_arrays_group_runs_by_attempt_and_resource_class():
    """No cluster: which arrays a submission makes, and the sbatch options each class's array gets."""
    from mrunner_slurm.submit import arrays, units

    from mrunner.planning import validated_context
    from mrunner.records import Run, Sweep

    def run(index: int, attempt: int, **resources) -> Run:
        return Run("s", index, f"id{index}", "n", {}, ["python3", "t.py"], attempt=attempt, resources=resources)

    runs = [run(0, 0, mem="1G"), run(1, 0, mem="2G"), run(2, 0, mem="1G"), run(3, 1, mem="2G"), run(4, 0)]
    grouped = units(runs, max_array_size=1001)
    assert [(u.attempt, u.resources, [r.index for r in u.runs]) for u in grouped] == [
        (0, {"mem": "1G"}, [0, 2]),
        (0, {"mem": "2G"}, [1]),
        (0, {}, [4]),
        (1, {"mem": "2G"}, [3]),
    ]
    assert len({u.name(Sweep("s", "n", 0, "c", "slurm", {}, "p", "d", "/p")) for u in grouped}) == 4
    context = validated_context("c", {"backend": "slurm", "slurm_url": "h", "mem": "500M"})
    sweep = Sweep(
        "s",
        "n",
        0,
        "c",
        "slurm",
        context,
        "p",
        "d" * 64,
        "/p",
        package={"storage_dir": "/st", "code_dir": "/st/code", "entries": []},
        detail={"sweep_dir": "/st/p/s"},
    )
    made = arrays(sweep, runs, 1001)
    assert [[o for o in a.argv if o.startswith("--mem=")] for a in made] == [
        ["--mem=1G"],
        ["--mem=2G"],
        ["--mem=500M"],
        ["--mem=2G"],
    ]
    assert [a.argv[3] for a in made] == ["--array=0,2", "--array=1", "--array=4", "--array=3"]


@pytest.mark.parametrize(
    "swept,said",
    [
        ("context.partition=debug,nosuch", "partition=nosuch"),
        ("context.qos=normal,capped", "qos=capped"),  # a QOS the user's association does not allow
        ("context.gpu=1,9", "gpu=9"),  # more GPUs than any node has
    ],
)
def test_a_resource_class_the_site_refuses_refuses_the_sweep_before_anything_is_recorded(
    cluster, mrunner, tmp_path, swept, said
):
    """A swept class Slurm would refuse: sbatch would accept the first class's array, then refuse the
    second's. Every class is asked first (sbatch --test-only) before the sweep is recorded (the backend's
    ``ready``), so the sweep is refused in one line naming the class and Slurm's reason, and the records
    never hold it, not even briefly (``admit``, called only once the sweep is recorded, never ran); nothing
    is uploaded or reaches the queue."""
    traces = tmp_path / "traces"
    traces.mkdir()
    refused = mrunner(
        "+context=test-slurm", "train.py", "-m", "exit=0,1", swept, env={"MRUNNER_TRACE_CALLS": str(traces)}
    )
    assert refused.returncode != 0 and "Traceback" not in refused.stderr, refused.stderr
    line = refused.stderr.strip().splitlines()[-1]
    assert f"refuses the 2 experiments with {said}" in line and "nothing was submitted or recorded" in line, line
    assert json.loads(mrunner("status", "--json").stdout) == []
    called = set(os.listdir(traces))
    assert "Backend.ready" in called, called
    assert not {"Backend.admit", "Backend.package", "Backend.submit", "mrunner_sweep_submitted"} & called, called
    assert cluster.ssh(f"ls -A {cluster.storage} 2>&1 || true").strip().endswith("No such file or directory")


def test_a_spec_experiments_class_the_site_refuses_is_refused_packed_before_the_sweep_is_recorded(
    cluster, mrunner, tmp_path
):
    """A spec experiment's own resources are known to planning as well, and packed (``points_per_task: 2``)
    the probe asks each class with the options its tasks would have: the records never hold the sweep."""
    (tmp_path / "spec.py").write_text(
        "from mrunner import create_experiments\n"
        "experiments_list = create_experiments('train.py', params_grid={'exit': [0, 0, 0]}) + create_experiments(\n"
        "    'train.py', params_grid={'exit': [0, 0, 0]}, resources={'partition': 'nosuch'})\n"
    )
    traces = tmp_path / "traces"
    traces.mkdir()
    refused = mrunner(
        "+context=test-slurm", "spec.py", "context.points_per_task=2", env={"MRUNNER_TRACE_CALLS": str(traces)}
    )
    assert refused.returncode != 0 and "Traceback" not in refused.stderr, refused.stderr
    line = refused.stderr.strip().splitlines()[-1]
    assert "refuses the 3 experiments with partition=nosuch" in line and "nothing was submitted or recorded" in line
    assert json.loads(mrunner("status", "--json").stdout) == []
    called = set(os.listdir(traces))
    assert "Backend.ready" in called and "Backend.admit" not in called, called


def test_packed_classes_whose_tasks_ask_the_same_are_refused_together_with_every_experiment_counted(
    cluster, mrunner, tmp_path
):
    """Packed (``points_per_task: 4``), a class of 4 points of 1 minute and one of 2 points of 2 minutes make
    tasks that ask for the same 4 minutes: one probe asks for both, so its refusal names both classes and all
    6 experiments (it named the first class and its 4 alone, as if the others were accepted)."""
    (tmp_path / "spec.py").write_text(
        "from mrunner import create_experiments\n"
        "experiments_list = create_experiments('train.py', params_grid={'exit': [0, 0, 0, 0]}, resources={\n"
        "    'partition': 'nosuch', 'time': 1}) + create_experiments(\n"
        "    'train.py', params_grid={'exit': [0, 0]}, resources={'partition': 'nosuch', 'time': 2})\n"
    )
    refused = mrunner("+context=test-slurm", "spec.py", "context.points_per_task=4")
    assert refused.returncode == 3 and "Traceback" not in refused.stderr, refused.stderr
    line = refused.stderr.strip().splitlines()[-1]
    assert "refuses the 6 experiments with partition=nosuch time=1 or partition=nosuch time=2" in line, line
    assert "--time=0-00:04:00" in line and "nothing was submitted or recorded" in line, line
    assert json.loads(mrunner("status", "--json").stdout) == []


@pytest.fixture
def timed_partition(cluster: Cluster) -> Iterator[str]:
    """A partition of this test's own on the cluster's node with MaxTime=5 (the shared ones have none), made
    and removed by the cluster's root as a site admin would (``scontrol create``/``delete``)."""
    name = f"mrunner-t{uuid.uuid4().hex[:8]}"
    root = cluster.service["root"]["alias"]

    def admin(command: str) -> None:
        subprocess.run(["ssh", "-F", cluster.service["ssh_config"], root, command], check=True, timeout=60)

    admin(f"scontrol create PartitionName={name} Nodes=ALL MaxTime=5 State=UP")
    yield name
    admin(f"squeue -h -p {name} -o %i | xargs -r scancel; scontrol delete PartitionName={name}")


@pytest.mark.parametrize(
    "keys,said",
    [
        (["context.time=10"], "and time=10 asks for more: set the context key time to at most 5 (minutes)"),
        (["context.time=1,10"], "and time=10 asks for more"),  # one class of two beyond it
        (
            ["context.time=2", "context.points_per_task=3"],  # a point fits, a task of 3 does not
            "a task of 3 points of time=2, one after another, asks for 6: set the context key points_per_task to at most 2",
        ),
    ],
)
def test_a_time_beyond_the_partitions_max_time_is_refused_before_anything_is_recorded(
    cluster, mrunner, tmp_path, timed_partition, keys, said
):
    """A job asking for more than its partition's MaxTime is refused by sbatch where the site enforces
    partition limits and waits forever where it does not (this cluster: EnforcePartLimits=NO, so sbatch
    --test-only accepts it): mrunner refuses it itself, in one line naming the partition's limit and the key
    to change, before anything is recorded or queued."""
    refused = mrunner(
        "+context=test-slurm", "train.py", f"context.partition={timed_partition}", *keys, "-m", "exit=0", "i=range(3)"
    )
    assert refused.returncode == 3 and "Traceback" not in refused.stderr, refused.stderr
    line = refused.stderr.strip().splitlines()[-1]
    assert f"partition {timed_partition} allows at most 5 minutes per job (MaxTime=5:00)" in line, line
    assert said in line and "nothing was submitted or recorded" in line, line
    assert json.loads(mrunner("status", "--json").stdout) == []
    assert cluster.ssh(f"squeue -h -p {timed_partition}") == ""


def test_a_packed_task_within_the_partitions_max_time_runs(cluster, mrunner, timed_partition):
    """Two points of 2 minutes one after another ask for 4 of the partition's 5: accepted and run."""
    result = mrunner(
        "+context=test-slurm",
        "train.py",
        f"context.partition={timed_partition}",
        "context.time=2",
        "context.points_per_task=2",
        "-m",
        "exit=0",
        "i=range(3)",
        "--wait",
    )
    assert result.returncode == 0, result.stderr
    sweep = json.loads(mrunner("status", "--json").stdout)[0]["sweep"]["id"]
    assert [run["state"] for run in status(mrunner, sweep)["experiments"]] == [COMPLETED] * 3


def test_a_resume_refused_for_a_time_beyond_max_time_leaves_the_records_as_they_were(cluster, mrunner, timed_partition):
    """`resume --time 10` on a partition of MaxTime=5 is refused at admission in one line, and records
    nothing: the next plain `resume` asks for the sweep's own time again, is accepted and runs the failed
    point."""
    ran = mrunner(
        "+context=test-slurm", "train.py", f"context.partition={timed_partition}", "context.time=2", "-m", "exit=0,3"
    )
    assert ran.returncode == 0, ran.stderr
    sweep = json.loads(mrunner("status", "--json").stdout)[0]["sweep"]["id"]
    assert sorted(run["state"] for run in ended(mrunner, sweep)["experiments"]) == [COMPLETED, FAILED]
    before = records_of(sweep)

    refused = mrunner("resume", sweep, "--time", "10")
    assert refused.returncode == 3 and "Traceback" not in refused.stderr, refused.stderr
    line = refused.stderr.strip().splitlines()[-1]
    assert f"partition {timed_partition} allows at most 5 minutes per job (MaxTime=5:00)" in line, line
    assert "nothing was resumed" in line, line
    assert records_of(sweep) == before
    assert cluster.ssh(f"squeue -h -p {timed_partition}") == ""

    cluster.ssh(f"touch {cluster.storage}/heal")
    resumed = mrunner("resume", sweep, "--wait")
    assert resumed.returncode == 0, resumed.stderr
    shown = status(mrunner, sweep)
    assert [run["state"] for run in shown["experiments"]] == [COMPLETED] * 2
    assert shown["sweep"]["context"]["time"] == 2, shown["sweep"]["context"]
