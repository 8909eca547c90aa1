"""The attempt runner on a packed task (``python -m mrunner.attempt --points``), run for real on this machine:
one process runs the task's points, each an attempt of its own (folder, config, log, exit code, environment,
share of the GPUs); a point cancelled waiting is skipped, one cancelled running is stopped alone; a task
stopped mid-point runs, as its next attempt, only the points that did not complete, within max_requeue.
What Slurm adds around it (the batch script, requeue, ``mrunner cancel``) is tested on the loopback cluster in
plugins/mrunner_slurm/tests/test_slurm_packing.py."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from mrunner import layout
from mrunner.attempt import CANCELLED_NOTE, END_NOTE, command_line
from mrunner.testing import wait_for

# Appends its attempt to a ledger in its folder; holds while the file hold-INDEX is in the storage folder;
# exits 3 while fail-INDEX is there.
POINT = """
import os, sys, time
index = sys.argv[1]
storage = os.environ["STORAGE_DIR"]
with open(os.path.join(os.environ["MRUNNER_EXPERIMENT_DIR"], "ledger.txt"), "a") as ledger:
    ledger.write(os.environ["MRUNNER_ATTEMPT"] + "\\n")
print("point", index, "attempt", os.environ["MRUNNER_ATTEMPT"], "gpus", os.environ.get("CUDA_VISIBLE_DEVICES"),
      "launched", os.environ.get("MRUNNER_TEST_LAUNCHED"), "cpus", sorted(os.sched_getaffinity(0)),
      "omp", os.environ.get("OMP_NUM_THREADS"), flush=True)
while os.path.exists(os.path.join(storage, "hold-" + index)):
    time.sleep(0.05)
if os.path.exists(os.path.join(storage, "fail-" + index)):
    sys.exit(3)
print("point", index, "done", flush=True)
"""


class Task:
    """A packed task of ``count`` points of POINT below ``tmp_path``, as a backend would lay it out."""

    def __init__(self, tmp_path: Path, count: int) -> None:
        self.storage = tmp_path / "storage"
        self.storage.mkdir()
        self.code = tmp_path / "code"
        self.code.mkdir()
        (self.code / "point.py").write_text(POINT)
        self.layouts = [layout.Layout(str(self.storage), "proj", "sweep-abcdef", i, f"p{i}") for i in range(count)]
        points = []
        for where in self.layouts:
            env = {**where.environment(), "MRUNNER_CONFIG_DOCUMENT": json.dumps({"i": where.index, "attempt": 0})}
            points.append({"index": where.index, "env": env, "argv": [sys.executable, "point.py", str(where.index)]})
        self.bundle = tmp_path / "task.jsonl"
        self.bundle.write_text(json.dumps([]) + "\n" + json.dumps(points) + "\n")  # the task is line 1

    def stop_file(self, index: int) -> Path:
        return self.storage / f"cancel-{index}"

    def start(
        self,
        restarts: int = 0,
        at_once: int = 1,
        requeues_left: int = 1,
        launcher: tuple = (),
        cpus_per_point: int | None = None,
        requeue_on: str | None = None,
        requeue_command: str | None = None,
        **env: str,
    ) -> subprocess.Popen:
        line = command_line(
            sys.executable,
            str(self.code),
            [],
            entries=layout.working_entries(["point.py"]),
            grace=5,
            requeues_left=requeues_left,
            stop_file=str(self.storage / "cancel-{index}"),
            points=str(self.bundle),
            task=1,
            restarts=restarts,
            points_at_once=at_once,
            cpus_per_point=cpus_per_point,
            launcher=launcher,
            requeue_on=requeue_on,
            requeue_command=requeue_command,
        )
        return subprocess.Popen(line, env={**os.environ, **env}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)

    def run(self, **options) -> int:
        runner = self.start(**options)
        out, _ = runner.communicate(timeout=60)
        assert b"Traceback" not in out, out.decode()
        return runner.returncode

    def ledger(self, index: int) -> list[int]:
        path = Path(self.layouts[index].experiment_dir, "ledger.txt")
        return [int(line) for line in path.read_text().split()] if path.exists() else []

    def log(self, index: int, attempt: int = 0) -> str:
        path = Path(self.layouts[index].log_file(attempt))
        return path.read_text() if path.exists() else ""

    def exit_code(self, index: int, attempt: int = 0) -> int | None:
        return layout.read_exit_code(self.layouts[index].exit_code_file(attempt))

    def note(self, index: int, attempt: int = 0) -> str | None:
        path = Path(self.layouts[index].exit_code_file(attempt) + END_NOTE)
        return path.read_text().strip() if path.exists() else None


def test_each_point_of_a_packed_task_is_an_attempt_of_its_own(tmp_path):
    task = Task(tmp_path, 4)
    (task.storage / "fail-2").touch()
    code = task.run(at_once=2, CUDA_VISIBLE_DEVICES="0,1,2,3")
    assert code == 3  # a failed point fails the task
    assert [task.exit_code(i) for i in range(4)] == [0, 0, 3, 0]
    assert [task.ledger(i) for i in range(4)] == [[0]] * 4
    for index in range(4):
        log = task.log(index)
        assert f"point {index} attempt 0" in log and all(f"point {o} " not in log for o in range(4) if o != index)
        assert json.loads(Path(task.layouts[index].config_file).read_text())["i"] == index
        assert Path(task.layouts[index].experiment_dir, "point.py").is_symlink()  # its folder mirrors the code
    gpus = [task.log(i).split(" gpus ")[1].split()[0] for i in range(4)]
    assert set(gpus) == {"0,1", "2,3"} and gpus[0] != gpus[1]  # two at once, each on its half


def test_points_at_once_are_each_bound_to_their_own_cpus(tmp_path):
    own = sorted(os.sched_getaffinity(0))
    task = Task(tmp_path, 2)
    (task.storage / "hold-0").touch()
    (task.storage / "hold-1").touch()
    runner = task.start(at_once=2, cpus_per_point=1)
    wait_for(lambda: [task.ledger(i) for i in range(2)], lambda found: found == [[0], [0]], timeout=30, what="both")
    for index in range(2):  # both run at once
        (task.storage / f"hold-{index}").unlink()
    out, _ = runner.communicate(timeout=60)
    assert runner.returncode == 0, out.decode()
    cpus = [task.log(i).split(" cpus ")[1].split(" omp ")[0] for i in range(2)]
    if len(own) >= 2:
        assert sorted(cpus) == sorted(str([cpu]) for cpu in own[:2]), cpus  # one CPU each, not the same
        omp = {task.log(i).split(" omp ")[1].split()[0] for i in range(2)}
        assert omp == {os.environ.get("OMP_NUM_THREADS", "1")}
    else:
        assert "the points share them, unbound" in out.decode()


def test_a_cancelled_point_is_skipped_waiting_and_stopped_alone_running(tmp_path):
    task = Task(tmp_path, 3)
    (task.storage / "hold-0").touch()
    task.stop_file(1).touch()  # cancelled before the task reached it
    runner = task.start()
    wait_for(lambda: task.ledger(0), lambda found: found == [0], timeout=30, what="point 0 to run")
    task.stop_file(0).touch()  # cancelled while it runs: stopped, and the task goes on with point 2
    out, _ = runner.communicate(timeout=60)
    assert runner.returncode == 128 + signal.SIGTERM, out.decode()
    assert (task.exit_code(0), task.note(0)) == (None, CANCELLED_NOTE)
    assert "point 0 done" not in task.log(0)
    assert (task.exit_code(1), task.note(1), task.log(1), task.ledger(1)) == (None, CANCELLED_NOTE, "", [])
    assert (task.exit_code(2), task.ledger(2)) == (0, [0])


def test_a_task_stopped_mid_point_runs_only_its_unfinished_points_within_max_requeue(tmp_path):
    task = Task(tmp_path, 3)
    (task.storage / "hold-1").touch()
    runner = task.start()
    wait_for(lambda: task.ledger(1), lambda found: found == [0], timeout=30, what="point 1 to run")
    runner.send_signal(signal.SIGTERM)  # a preemption or requeue: the task's next attempt follows
    out, _ = runner.communicate(timeout=60)
    assert runner.returncode == 128 + signal.SIGTERM, out.decode()
    assert [task.exit_code(i) for i in range(3)] == [0, None, None]
    assert task.log(2) == ""  # never reached

    (task.storage / "hold-1").unlink()
    # attempt 1 with no requeue left: point 1 started in attempt 0 and is not started again; point 2, which
    # attempt 0 never reached, has used no requeue and runs
    assert task.run(restarts=1, requeues_left=0) == 0
    assert "not run again" in task.log(0, 1) and task.ledger(0) == [0]
    assert "more than max_requeue=0" in task.log(1, 1) and task.note(1, 1) == "preempted"
    assert (task.exit_code(2, 1), task.ledger(2)) == (0, [1])

    # attempt 2 allowing 2 requeues: only point 1 is left to run, as attempt 2
    assert task.run(restarts=2, requeues_left=2) == 0
    assert [task.ledger(i) for i in range(3)] == [[0], [0, 2], [1]]
    assert task.exit_code(1, 2) == 0 and "point 1 done" in task.log(1, 2)
    assert json.loads(Path(task.layouts[1].config_file).read_text())["attempt"] == 2


def test_a_stopping_signal_as_the_task_starts_runs_no_further_point(tmp_path):
    task = Task(tmp_path, 2)
    (task.storage / "hold-0").touch()
    runner = task.start()
    runner.send_signal(signal.SIGTERM)  # at once: before the runner's handlers, around the fork, or later
    runner.communicate(timeout=60)
    assert task.exit_code(0) is None and "done" not in task.log(0)
    assert task.ledger(1) == [] and task.exit_code(1) is None  # the second point never starts


def test_under_a_launcher_each_point_is_an_attempt_process_of_its_own(tmp_path):
    """``--launcher`` (Slurm's cmd_type srun: a job step per point): the point's attempt is started as
    ``LAUNCHER -m mrunner.attempt ...``, here under ``env``, which marks the point's environment."""
    task = Task(tmp_path, 2)
    (task.storage / "fail-1").touch()
    assert task.run(launcher=("env", "MRUNNER_TEST_LAUNCHED=1", sys.executable)) == 3
    assert [task.exit_code(i) for i in range(2)] == [0, 3] and [task.ledger(i) for i in range(2)] == [[0], [0]]
    assert "point 0 done" in task.log(0) and "point 1 attempt 0" in task.log(1)
    assert "launched 1" in task.log(0)


def test_a_point_killed_by_the_time_limits_warning_ends_timeout_not_failed(tmp_path):
    """Slurm warns a task before its time limit (``--requeue-on USR1``); the runner passes the warning to the
    running point and requeues the task. A point with no handler for it dies of it: that end is the time
    limit's (noted ``timeout``, as for a point that saves and is stopped), not a failure of its own (it wrote
    exit code -10, which the cluster's status read as "failed 138, ended by itself")."""
    task = Task(tmp_path, 2)
    (task.storage / "hold-0").touch()
    requeued = tmp_path / "requeued"
    runner = task.start(requeue_on="USR1", requeue_command=json.dumps(["touch", str(requeued)]))
    wait_for(lambda: task.ledger(0), lambda found: found == [0], timeout=30, what="point 0 to run")
    runner.send_signal(signal.SIGUSR1)
    out, _ = runner.communicate(timeout=60)
    assert (task.exit_code(0), task.note(0)) == (None, "timeout"), out.decode()
    assert "stopped by the warning before the time limit (SIGUSR1)" in task.log(0)
    wait_for(requeued.exists, lambda found: found, timeout=30, what="the task's requeue")
    assert task.ledger(1) == []  # the task stops: its next attempt runs the rest
