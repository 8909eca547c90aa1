"""Following a detached local sweep (`status SWEEP --wait` from another shell) whose supervisor stops meanwhile:
each look reads the sweep as recorded now, so the reason the supervisor recorded as it stopped (a full disk)
is what the runs it never started end with, not "its supervisor is gone (killed, ...)"."""

from __future__ import annotations

import time
from pathlib import Path

from mrunner import following
from mrunner.records import CANCELLED, SUBMITTED, Run, RunUpdate, Sweep
from mrunner.reporter import Reporter
from mrunner.store import Store


def test_a_wait_begun_before_the_supervisor_stopped_ends_its_runs_with_the_recorded_reason(tmp_path: Path):
    store = Store(tmp_path / "records.db")
    sweep = Sweep(
        id="sweep-following",
        name="train",
        created_at=time.time(),
        context_name="local",
        backend="local",
        context={"backend": "local", "storage_dir": str(tmp_path / "storage")},
        project="p",
        snapshot_digest="d" * 64,
        project_dir=str(tmp_path),
        detail={"supervisor": "2147483646@1"},  # no such process: the supervisor is gone
    )
    store.record_sweep(
        sweep, [Run(sweep.id, i, f"id{i:014d}", "train", {"i": i}, ["python3", "t.py"]) for i in range(3)]
    )
    store.apply(sweep.id, [RunUpdate(i, SUBMITTED, detail="queued locally") for i in range(3)])
    followed = store.sweep(sweep.id)  # what `status --wait` read when it began
    stopped = store.sweep(sweep.id)
    stopped.detail["stopped"] = "the disk of /storage is full: free at least 1.0 MB there"
    store.update_sweep(stopped)  # the supervisor's last word, after the wait began

    assert following.wait(followed, store, Reporter(), interval=0.01) == {CANCELLED: 3}

    assert [run.state for run in store.runs(sweep.id)] == [CANCELLED] * 3
    details = store.latest_details(sweep.id, [0, 1, 2])
    assert set(details.values()) == {"its supervisor stopped: the disk of /storage is full: free at least 1.0 MB there"}
