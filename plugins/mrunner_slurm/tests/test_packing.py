"""Which points go to which task, how many a task holds (``auto`` against a site's limits) and a task's
time limit: mrunner_slurm.packing, in the test's process."""

from __future__ import annotations

import pytest
from mrunner_slurm import packing
from mrunner_slurm.packing import Limits
from mrunner_slurm.submit import units

from mrunner.errors import MrunnerError


def test_auto_packs_just_enough_for_the_users_remaining_max_submit_jobs():
    auto = {"points_per_task": "auto"}
    assert packing.points_per_task(auto, 5000, Limits(max_submit_jobs=20, max_array_size=1001)) == 250
    assert packing.points_per_task(auto, 5000, Limits(max_submit_jobs=20, jobs_in_queue=10)) == 500
    assert packing.points_per_task(auto, 10, Limits(max_submit_jobs=20)) == 1  # fits unpacked
    assert packing.points_per_task(auto, 2500, Limits(max_array_size=1001)) == 3  # no job limit: one array
    assert packing.points_per_task(auto, 2500, Limits()) == 3  # nothing known: Slurm's default MaxArraySize
    assert packing.points_per_task({"points_per_task": 7}, 2500, Limits(max_submit_jobs=1)) == 7  # as asked
    with pytest.raises(MrunnerError, match="20 jobs are queued or running of the 20"):
        packing.points_per_task(auto, 10, Limits(max_submit_jobs=20, jobs_in_queue=20))


def test_the_time_of_a_task_is_a_points_time_its_rounds():
    assert packing.task_context({"time": 30, "points_at_once": 1}, 4)["time"] == "0-02:00:00"
    assert packing.task_context({"time": "1:00:00", "points_at_once": 2}, 5)["time"] == "0-03:00:00"
    assert packing.task_context({"time": "1-00:00:00", "points_at_once": 1}, 2)["time"] == "2-00:00:00"
    assert packing.task_context({"time": "10:30", "points_at_once": 1}, 2)["time"] == "0-00:21:00"
    assert packing.task_context({"time": None, "points_at_once": 1}, 4)["time"] is None
    assert packing.task_context({"time": 30, "points_at_once": 1}, 1)["time"] == 30  # unpacked: untouched
    assert packing.task_context({"time": "UNLIMITED", "points_at_once": 1}, 4)["time"] == "UNLIMITED"  # no limit


def test_points_at_once_share_the_task_each_asking_for_its_own_cpu_mem_and_gpu():
    context = {"time": 30, "points_at_once": 2, "cpu": 3, "mem": "8G", "gpu": "a100:1"}
    asked = packing.task_context(context, 4)
    assert (asked["cpu"], asked["mem"], asked["gpu"], asked["time"]) == (6, "16G", "a100:2", "0-01:00:00")
    assert packing.task_context({"points_at_once": 2, "mem": "500"}, 2)["cpu"] == 2  # 1 CPU per point when unset
    assert packing.task_context({"points_at_once": 4, "cpu": 2}, 3)["cpu"] == 6  # at most the task's points
    assert packing.task_context({"points_at_once": 1, "cpu": 2, "mem": "1G"}, 4) == {
        "points_at_once": 1,
        "cpu": 2,
        "mem": "1G",
    }
    assert packing.point_share(context, 4) == "each point 3 CPUs, 8G memory, gpu:a100:1 of the task's"
    assert packing.point_step(context, 4) == [
        "--exact",
        "--ntasks=1",
        "--cpus-per-task=3",
        "--mem=8G",
        "--gres=gpu:a100:1",
    ]
    assert packing.point_step({**context, "points_at_once": 1}, 4) == []


class _Run:
    """What packing reads of a recorded run (``mrunner.records.Run``): its index, attempt and resource class."""

    resources: dict = {}
    resource_class = ""

    def __init__(self, index: int, attempt: int = 0) -> None:
        self.index, self.attempt = index, attempt


def test_packed_arrays_hold_at_most_max_array_size_tasks_of_consecutive_points():
    runs = [_Run(i) for i in range(23)]
    found = units(runs, 4, 2)  # type: ignore[arg-type]
    assert [len(unit.tasks or []) for unit in found] == [4, 4, 4]
    assert [[run.index for run in task] for task in found[0].tasks or []] == [[0, 1], [2, 3], [4, 5], [6, 7]]
    assert found[2].task_of()[22] == 3 and found[2].task_ids == [0, 1, 2, 3]
    assert found[0].name(type("S", (), {"id": "s-000000"})()).endswith("-a0-0-7-8-p2")  # type: ignore[arg-type]


def test_the_recorded_packing_packs_the_same_runs_the_same_way_and_leaves_the_others_to_decide():
    """What admit records before the first sbatch: a submission of the same runs after an interruption gets the
    decision back (K and MaxArraySize), whatever the allowance is by then; runs no decision covers are left."""
    first = [_Run(i) for i in range(30)]
    plan = packing.decided(None, first, 2, 1001)
    assert plan == {"0": [{"points_per_task": 2, "max_array_size": 1001, "runs": "0-29"}]}
    retried = [_Run(i, attempt=1) for i in (3, 4, 5, 9)]
    plan = packing.decided(plan, retried, 3, 1001)
    assert plan["1"] == [{"points_per_task": 3, "max_array_size": 1001, "runs": "3-5,9"}]
    again = [_Run(i) for i in range(10, 30)] + [_Run(7, attempt=1), *retried]
    groups, left = packing.recorded(plan, again)
    assert [(k, size, [run.index for run in runs]) for k, size, runs in groups] == [
        (2, 1001, list(range(10, 30))),
        (3, 1001, [3, 4, 5, 9]),
    ]
    assert [(run.index, run.attempt) for run in left] == [(7, 1)]
    sweep = type("S", (), {"id": "s-000000"})()
    names = [unit.name(sweep) for unit in units(groups[0][2], 1001, 2)]  # type: ignore[arg-type]
    assert names == ["mrunner-s-000000-a0-10-29-20-p2"]
    assert packing.indices(packing.ranges([5, 1, 2, 3, 9, 10])) == {1, 2, 3, 5, 9, 10}


def test_auto_packs_resource_classes_until_their_part_full_tasks_fit_too():
    """Each class is its own arrays, so its last task may be part-full: 4 classes of 3 points in 6 jobs
    need 3 points per task (2 would make 8 tasks), and 7 classes never fit in 6 jobs."""
    assert packing.fitting([3, 3, 3, 3], 6) == 3
    assert packing.fitting([12], 6) == 2  # one class: the total decides
    assert packing.fitting([3, 3, 3, 3], 6, least=4) == 4  # never below what was asked
    assert packing.fitting([1] * 7, 6) is None
    assert packing.fitting([5], 0) is None


def test_the_dry_run_of_a_points_per_task_beyond_the_sweep_packs_it_whole_with_the_time_of_its_points():
    """A huge points_per_task makes one task of the sweep's points, as a submission does: the dry run said
    "up to 1000000000 points each" with a time limit of 6944444 days, while the rendered sbatch asked 50 min."""
    from mrunner_slurm.submit import describe

    context = {
        "points_per_task": 10**9,
        "points_at_once": 1,
        "time": 10,
        "slurm_url": "site",
        "storage_dir": "~/m",
        "sbatch_options": [],
        "grace_period": 30,
        "max_requeue": 3,
    }
    line = packing.describe(context, 5, Limits())
    assert line == "packed: 1 array task of all 5 points, one after another, each task's time limit 0-00:50:00"
    assert "sbatch --time=0-00:50:00" in describe(context, 5)[-1]
