"""The records database."""

from __future__ import annotations

import multiprocessing
import time

import pytest

from mrunner.errors import MrunnerError
from mrunner.records import CANCELLED, COMPLETED, FAILED, PENDING, RUNNING, SUBMITTED, Run, RunUpdate, Sweep
from mrunner.store import Store


def a_sweep(sweep_id: str = "brave-turing-000001", context: str = "local", count: int = 3) -> tuple[Sweep, list[Run]]:
    sweep = Sweep(
        id=sweep_id,
        name="train",
        created_at=time.time(),
        context_name=context,
        backend="local",
        context={"backend": "local"},
        project="p",
        snapshot_digest="d" * 64,
        project_dir="/p",
    )
    runs = [Run(sweep_id, i, f"{sweep_id[-6:]}{i:010d}", "train", {"i": i}, ["python3", "t.py"]) for i in range(count)]
    return sweep, runs


def test_round_trip_and_history(tmp_path):
    store = Store(tmp_path / "r.db")
    sweep, runs = a_sweep()
    store.record_sweep(sweep, runs)
    store.apply(sweep.id, [RunUpdate(0, SUBMITTED, backend_ref="job-7")])
    store.apply(sweep.id, [RunUpdate(0, COMPLETED, exit_code=0)])
    run = store.run(sweep.id, 0)
    assert (run.state, run.exit_code, run.backend_ref, run.parameters) == (COMPLETED, 0, "job-7", {"i": 0})
    assert [h[1] for h in store.history(sweep.id, 0)] == ["planned", "submitted", "completed"]
    assert store.sweep("brave-tur").id == sweep.id


def test_an_ended_experiment_keeps_its_final_state(tmp_path):
    store = Store(tmp_path / "r.db")
    sweep, runs = a_sweep()
    store.record_sweep(sweep, runs)
    store.apply(sweep.id, [RunUpdate(1, CANCELLED)])
    assert store.apply(sweep.id, [RunUpdate(1, FAILED, exit_code=-15)]) == []  # the late exit of a killed child
    assert store.run(sweep.id, 1).state == CANCELLED


def test_an_experiments_state_alone_is_its_runs_and_a_missing_one_is_named(tmp_path):
    store = Store(tmp_path / "r.db")
    sweep, runs = a_sweep()
    store.record_sweep(sweep, runs)
    store.apply(sweep.id, [RunUpdate(2, RUNNING, backend_ref="pid:1@2")])
    assert [store.state(sweep.id, i) for i in range(3)] == [store.run(sweep.id, i).state for i in range(3)]
    assert store.state(sweep.id, 2) == RUNNING
    with pytest.raises(MrunnerError, match="has no experiment 7: the sweep has experiments 0-2"):
        store.state(sweep.id, 7)


def test_prefixes_must_be_unambiguous(tmp_path):
    store = Store(tmp_path / "r.db")
    for sweep_id in ("calm-curie-aaaaaa", "calm-curie-bbbbbb"):
        store.record_sweep(*a_sweep(sweep_id))
    with pytest.raises(MrunnerError, match="ambiguous"):
        store.sweep("calm-curie")
    with pytest.raises(MrunnerError, match="no sweep"):
        store.sweep("nothing")
    sweep, run = store.find_run("calm-curie-aaaaaa/2")
    assert (sweep.id, run.index) == ("calm-curie-aaaaaa", 2)
    assert store.find_run("bbbbbb0000000001")[1].sweep_id == "calm-curie-bbbbbb"


def test_recording_skips_what_is_taken_on_the_same_context_and_repeats_within_the_sweep(tmp_path):
    store = Store(tmp_path / "r.db")
    sweep, runs = a_sweep(count=4)
    store.record_sweep(sweep, runs)
    store.apply(sweep.id, [RunUpdate(0, RUNNING), RunUpdate(1, FAILED, exit_code=1), RunUpdate(2, COMPLETED)])
    again, repeat = a_sweep("brave-turing-000002", count=4)
    for run in repeat:
        run.id = runs[run.index].id
    recorded = store.record_sweep(again, [*repeat, repeat[1]])
    # 0 runs, 2 completed, 3 is still planned (being submitted): taken; 1 failed: recorded again, once
    assert (recorded.count, recorded.skipped, recorded.repeated, recorded.skipped_sweeps) == (1, 3, 1, [sweep.id])
    assert [(r.index, r.id) for r in store.runs(again.id)] == [(0, runs[1].id)]
    elsewhere, _ = a_sweep("brave-turing-000003", context="other-context", count=4)
    assert store.record_sweep(elsewhere, a_sweep(count=4)[1]).count == 4
    nothing, _ = a_sweep("brave-turing-000004")
    assert store.record_sweep(nothing, a_sweep(count=4)[1][2:]).count == 0
    with pytest.raises(MrunnerError, match="no sweep"):
        store.sweep(nothing.id)  # a sweep with nothing to run is not recorded at all
    forced = store.record_sweep(a_sweep("brave-turing-000005")[0], a_sweep(count=2)[1], skip_submitted=False)
    assert forced.count == 2


def _writer(path: str, sweep_id: str, worker: int) -> None:
    store = Store(path)
    for i in range(100):
        store.apply(
            sweep_id,
            [RunUpdate(i % 50, RUNNING if (i + worker) % 2 else SUBMITTED, detail=f"w{worker}")],
            keep_terminal=False,
        )


def test_two_processes_write_at_once(tmp_path):
    path = tmp_path / "r.db"
    store = Store(path)
    sweep, runs = a_sweep(count=50)
    store.record_sweep(sweep, runs)
    workers = [multiprocessing.Process(target=_writer, args=(str(path), sweep.id, w)) for w in range(2)]
    for worker in workers:
        worker.start()
    for _ in range(50):
        assert len(store.runs(sweep.id)) == 50  # readers are never blocked by the writers
    for worker in workers:
        worker.join(60)
        assert worker.exitcode == 0
    details = {h[3] for i in range(50) for h in store.history(sweep.id, i)}
    assert {"w0", "w1"} <= details


def test_a_new_reason_for_the_same_state_is_recorded_once(tmp_path):
    store = Store(tmp_path / "r.db")
    sweep, runs = a_sweep()
    store.record_sweep(sweep, runs)
    store.apply(sweep.id, [RunUpdate(0, PENDING, detail="Priority"), RunUpdate(1, PENDING)])
    store.apply(sweep.id, [RunUpdate(0, PENDING, detail="Priority"), RunUpdate(1, PENDING)])
    assert store.details(sweep.id) == {0: "Priority", 2: "recorded"}  # 2 is still planned
    store.apply(sweep.id, [RunUpdate(0, PENDING, detail="Resources"), RunUpdate(1, PENDING, detail="Resources")])
    assert store.details(sweep.id) == {0: "Resources", 1: "Resources", 2: "recorded"}
    assert store.details(sweep.id, [PENDING]) == {0: "Resources", 1: "Resources"}  # why the pending runs wait
    assert store.details(sweep.id, [RUNNING]) == {}
    assert [(h[1], h[3]) for h in store.history(sweep.id, 0)] == [
        ("planned", "recorded"),
        ("pending", "Priority"),
        ("pending", "Resources"),
    ]
    store.apply(sweep.id, [RunUpdate(0, RUNNING)])
    assert store.details(sweep.id) == {1: "Resources", 2: "recorded"}  # running now: the reason it waited is history


def test_planned_runs_of_a_submitter_that_died_are_not_taken(tmp_path):
    store = Store(tmp_path / "r.db")
    sweep, runs = a_sweep(count=2)
    store.record_sweep(sweep, runs)

    def same_runs(sweep_id: str):
        other, repeat = a_sweep(sweep_id, count=2)
        for run in repeat:
            run.id = runs[run.index].id
        return other, repeat

    assert store.record_sweep(*same_runs("brave-turing-000002")).count == 0  # this process runs: being submitted
    store._db.execute("UPDATE submitters SET process='999999999@1' WHERE sweep_id=?", (sweep.id,))
    assert store.record_sweep(*same_runs("brave-turing-000003")).count == 2  # a crash left them planned: run them


def test_planned_runs_of_a_submitter_that_died_after_packaging_stay_taken(tmp_path):
    """Packaged, its backend may have accepted some runs before their records: a new submission of the same
    runs skips them (`mrunner resume` of that sweep finds what the backend accepted), so none runs twice."""
    store = Store(tmp_path / "r.db")
    sweep, runs = a_sweep(count=2)
    store.record_sweep(sweep, runs)
    sweep.package = {"code_dir": "/somewhere"}
    store.update_sweep(sweep)
    store._db.execute("UPDATE submitters SET process='999999999@1' WHERE sweep_id=?", (sweep.id,))
    other, repeat = a_sweep("brave-turing-000004", count=2)
    for run in repeat:
        run.id = runs[run.index].id
    recorded = store.record_sweep(other, repeat)
    assert (recorded.count, recorded.skipped, recorded.skipped_sweeps) == (0, 2, [sweep.id])


def test_processes_opening_a_new_database_together_all_get_it(tmp_path):
    """Switching a new database to WAL answers "locked" at once to all but one opener: each waits instead."""
    import subprocess
    import sys

    code = (
        "import sys, time\nfrom pathlib import Path\nfrom mrunner.store import Store\n"
        "start = float(sys.argv[2])\nwhile time.time() < start: pass\n"
        "Store(Path(sys.argv[1])).sweeps()\nprint('ok')\n"
    )
    for round_ in range(10):
        start = str(time.time() + 0.3)
        openers = [
            subprocess.Popen(
                [sys.executable, "-c", code, str(tmp_path / f"{round_}.db"), start],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(3)
        ]
        results = [opener.communicate(timeout=120) for opener in openers]
        assert [out for out, _ in results] == ["ok\n"] * 3, results


def test_an_experiments_identity_includes_its_target_and_resources_but_not_how_it_is_scheduled():
    """Another cluster, storage or memory is a new run; max_parallel, the grace period, requeues, tags and
    tracking are not; a key left unset (a key a later mrunner adds) changes nothing."""
    from mrunner.experiment import identity, target

    slurm = {
        "backend": "slurm",
        "slurm_url": "login1",
        "storage_dir": "/scratch/me",
        "mem": "8G",
        "partition": "gpu",
        "grace_period": 30,
        "max_requeue": 3,
        "retry_failed": 0,
        "array_parallelism": None,
        "tags": ["a"],
        "neptune": False,
        "secrets": ["TOKEN"],
    }

    def of(context: dict) -> str:
        return identity(["python3", "train.py"], {"lr": 0.1}, {}, "digest", target(context))

    first = of(slurm)
    for key, value in [
        ("slurm_url", "login2"),
        ("storage_dir", "/scratch/other"),
        ("mem", "16G"),
        ("partition", "cpu"),
        ("time", 60),
        ("backend", "local"),
    ]:
        assert of({**slurm, key: value}) != first, key
    for key, value in [
        ("grace_period", 5),
        ("max_requeue", 0),
        ("retry_failed", 2),
        ("array_parallelism", 4),
        ("tags", ["b"]),
        ("neptune", True),
        ("mlflow_tracking_uri", "http://x"),
        ("secrets", []),
        ("max_parallel", 2),
        ("account", None),
    ]:
        assert of({**slurm, key: value}) == first, key


def test_guards_tracking_and_the_ssh_transport_are_not_part_of_an_experiments_identity():
    """A larger ``max_experiments`` or ``max_snapshot_mb`` (guards asked at submission), ``tracking: deferred``
    (a tracker's key), or another way to the same cluster (``ssh``, ``login_persist``) ran a completed grid
    again: none of them is where or with what it runs."""
    from mrunner.experiment import identity, target

    slurm = {"backend": "slurm", "slurm_url": "login1", "mem": "8G", "max_experiments": 10000}
    slurm |= {"max_snapshot_mb": 200, "tracking": "live", "ssh": "openssh", "login_persist": "10h"}

    def of(context: dict) -> str:
        return identity(["python3", "train.py"], {"lr": 0.1}, {}, "digest", target(context))

    for key, value in [
        ("max_experiments", 500),
        ("max_snapshot_mb", 1000),
        ("tracking", "deferred"),
        ("ssh", "paramiko"),
        ("login_persist", "1h"),
    ]:
        assert of({**slurm, key: value}) == of(slurm), key


def test_a_run_recorded_under_its_former_identity_counts_as_already_submitted(tmp_path):
    """An experiment an earlier mrunner recorded under the identity it gave then (its target as the context
    spelled it: ``planning.PlannedRun.former_id``) is skipped as already submitted, as is one recorded under
    its identity now; a run without either is recorded."""
    from mrunner.planning import PlannedRun

    store = Store(tmp_path / "r.db")
    assert not store.former_identities("local")  # new records: no former identity to look for
    old, runs = a_sweep("brave-turing-000001", count=2)  # ids as an earlier mrunner made them
    store.record_sweep(old, runs)
    assert not store.former_identities("local")  # recorded since: identities as they are made now
    old.created_at = 0.0  # recorded before the records were opened by this mrunner
    old.id = "brave-turing-000000"
    for run in runs:
        run.sweep_id = old.id
    store.record_sweep(old, runs, skip_submitted=False)
    assert store.former_identities("local") and not store.former_identities("other")
    new, _ = a_sweep("brave-turing-000002", count=0)
    planned = [
        PlannedRun(new.id, 0, "now-0", "train", {"i": 0}, ["python3", "t.py"], former_id=runs[0].id),
        PlannedRun(new.id, 1, "now-1", "train", {"i": 1}, ["python3", "t.py"], former_id="never-recorded"),
    ]
    recorded = store.record_sweep(new, planned)
    assert (recorded.count, recorded.skipped) == (1, 1)
    assert [run.id for run in store.runs(new.id)] == ["now-1"]
    again, _ = a_sweep("brave-turing-000003", count=0)
    recorded = store.record_sweep(again, [PlannedRun(again.id, 0, "now-1", "train", {}, ["python3"], former_id="x")])
    assert (recorded.count, recorded.skipped) == (0, 1)


def test_a_late_end_of_the_attempt_a_resume_replaced_is_ignored(tmp_path):
    """The race behind the random-stop test's rare `cancelled` at attempt 1 with no pid: a detached supervisor
    records the end of attempt 0 only after `resume` planned attempt 1. That end must not reach attempt 1:
    neither its state nor its attempt record, while attempt 1's own updates apply."""
    store = Store(tmp_path / "r.db")
    sweep, runs = a_sweep()
    store.record_sweep(sweep, runs)
    store.apply(sweep.id, [RunUpdate(0, RUNNING, backend_ref="pid:9@1", attempt=0)])
    store.apply(sweep.id, [RunUpdate(0, CANCELLED, detail="cancelled (mrunner was interrupted)")])
    store.start_resume(sweep, [0])
    resumed = store.run(sweep.id, 0)
    assert resumed.attempt == 1
    late = RunUpdate(0, CANCELLED, detail="stopped by a signal to its pid", attempt=0)
    assert store.apply(sweep.id, [late]) == []
    assert (store.run(sweep.id, 0).state, store.run(sweep.id, 0).attempt) == (resumed.state, 1)
    assert store.attempts(sweep.id, 0)[0][1].end is None  # attempt 1 has not ended
    store.apply(sweep.id, [RunUpdate(0, SUBMITTED, attempt=1)])
    store.apply(sweep.id, [RunUpdate(0, COMPLETED, exit_code=0, ended_by_itself=True, attempt=1)])
    assert store.apply(sweep.id, [RunUpdate(0, FAILED, exit_code=1, ended_by_itself=True, attempt=0)]) == []
    assert (store.run(sweep.id, 0).state, store.run(sweep.id, 0).attempt) == (COMPLETED, 1)
