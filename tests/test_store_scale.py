"""The records at scale: a look at one experiment costs the same in a sweep of 10 and of 50,000, and
`mrunner status` of a 50,000-run sweep shows counts and the rows worth a look.

Each test runs on a sweep of 5,000 and of 50,000 runs; the 50,000 are ``slow`` (the whole run keeps them, the fast
tier runs the 5,000, where a scan of a table or a decode of every run still shows as clearly against the sweep of
10).

Costs are counted, not timed: SQLite's virtual-machine steps (``set_progress_handler``) for the same lookups in
both sweeps, and every statement's query plan must search an index instead of scanning a table. The timings
are in benchmarks/results-status.md.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from mrunner.records import CANCELLED, COMPLETED, FAILED, LOST, RUNNING, SUBMITTED, Run, RunUpdate, Sweep
from mrunner.store import Store
from mrunner.testing.once import built_once

#: The large sweep's sizes: five chunks of records (``store.RECORD_CHUNK``) and fifty.
SIZES = [pytest.param(5_000, id="5000"), pytest.param(50_000, id="50000", marks=pytest.mark.slow)]


def _sweep(sweep_id: str, count: int) -> tuple[Sweep, list[Run]]:
    sweep = Sweep(
        id=sweep_id,
        name="train",
        created_at=time.time(),
        context_name="local",
        backend="local",
        context={"backend": "local", "storage_dir": "/nonexistent"},
        project="p",
        snapshot_digest="d" * 64,
        project_dir="/p",
    )
    runs = [Run(sweep_id, i, f"{sweep_id[:4]}{i:012x}", "train", {"lr": i}, ["python3", "t.py"]) for i in range(count)]
    return sweep, runs


@pytest.fixture(scope="module", params=SIZES)
def large(request: pytest.FixtureRequest) -> int:
    """How many runs the large sweep has."""
    return request.param


@pytest.fixture(scope="module")
def records(tmp_path_factory: pytest.TempPathFactory, large: int) -> Store:
    """One database holding a sweep of 10 and a sweep of ``large`` experiments, a few of them failed or running,
    built once per test run (``built_once``: every worker of pytest-xdist reads the same file); the tests
    only read it, and a test that records works on a copy (``_counted_copy``)."""

    def build(folder: Path) -> None:
        store = Store(folder / "records.db")
        for sweep_id, count in (("aaaa-small", 10), ("bbbb-large", large)):
            sweep, runs = _sweep(sweep_id, count)
            store.record_sweep(sweep, runs)
            store.apply(sweep.id, [RunUpdate(i, SUBMITTED) for i in range(count)])
            store.apply(sweep.id, [RunUpdate(i, COMPLETED, exit_code=0) for i in range(2, count - 2)])
            updates = [RunUpdate(count - 2, FAILED, exit_code=3, detail="it failed"), RunUpdate(1, RUNNING)]
            store.apply(sweep.id, updates)
        store.close()

    return Store(built_once(tmp_path_factory, f"store-scale-records-{large}", build) / "records.db")


def _lookups(store: Store, sweep_id: str, index: int) -> None:
    """What `mrunner status SWEEP/INDEX` reads from the records."""
    sweep, run = store.find(f"{sweep_id}/{index}")
    assert run is not None and run.index == index
    store.run(sweep.id, index)
    store.history(sweep.id, index)
    store.attempts(sweep.id, index)
    store.latest_details(sweep.id, [index])
    assert store.find_run(run.id)[1].index == index


def _steps(store: Store, sweep_id: str, index: int) -> int:
    """SQLite virtual-machine instructions the lookups take: a scan of a table grows with it, a search does not."""
    steps = 0

    def count() -> int:
        nonlocal steps
        steps += 1
        return 0

    store._db.set_progress_handler(count, 1)
    try:
        _lookups(store, sweep_id, index)
    finally:
        store._db.set_progress_handler(None, 1)
    return steps


def test_a_lookup_of_one_experiment_costs_the_same_in_a_sweep_of_10_and_a_large_one(large, records):
    in_small = _steps(records, "aaaa-small", 8)
    in_large = _steps(records, "bbbb-large", large - 2)
    assert in_large <= in_small * 1.2 + 50, (in_small, in_large)


def test_every_statement_of_a_lookup_searches_an_index(large, records):
    statements: list[str] = []
    records._db.set_trace_callback(statements.append)
    try:
        _lookups(records, "bbbb-large", large - 2)
    finally:
        records._db.set_trace_callback(None)
    plain = sqlite3.connect(records.path)
    for statement in statements:
        plan = " | ".join(row[3] for row in plain.execute(f"EXPLAIN QUERY PLAN {statement}"))
        for table in ("experiments", "events", "attempts"):
            assert f"SCAN {table}" not in plan, (statement, plan)
    assert statements


def test_iterating_and_slicing_the_runs(large, records):
    assert [run.index for run in records.runs("bbbb-large", limit=3, last=True)] == [large - 3, large - 2, large - 1]
    assert [run.index for run in records.runs("bbbb-large", [FAILED, RUNNING])] == [1, large - 2]
    chunk = large // 7 - 3  # seven full chunks and a part
    assert sum(1 for _ in records.iter_runs("bbbb-large", chunk=chunk)) == large
    assert records.counts("bbbb-large") == {SUBMITTED: 2, RUNNING: 1, COMPLETED: large - 4, FAILED: 1}


def _lines(output: str) -> list[str]:
    return output.rstrip("\n").splitlines()


def test_status_of_a_large_sweep_shows_counts_and_the_rows_worth_a_look(large, records, mrunner, mrunner_home):
    (mrunner_home / "data" / "mrunner").mkdir(parents=True)
    path = mrunner_home / "data" / "mrunner" / "records.db"
    source = sqlite3.connect(records.path)
    source.execute("VACUUM INTO ?", (str(path),))
    source.close()

    shown = mrunner("status", "bbbb-large")
    assert shown.returncode == 0, shown.stderr
    lines = _lines(shown.stdout)
    # no supervisor runs the sweep: the local backend finds its unfinished experiments lost
    assert f"{large} experiments: {large - 4} completed, 1 failed, 3 lost" in shown.stdout
    assert len(lines) < 40, shown.stdout
    assert any(line.split()[0] == str(large - 2) and FAILED in line for line in lines)
    assert "it failed" in shown.stdout and "--all shows every row" in lines[-1]
    assert sum(LOST in line for line in lines[4:]) == 3
    for index in (0, 1, 4, large - 5, large - 1):
        assert any(line.split()[0] == str(index) for line in lines[4:]), index

    everything = mrunner("status", "bbbb-large", "--all")
    assert len(_lines(everything.stdout)) == 4 + large

    as_json = mrunner("status", "bbbb-large", "--json")
    document = json.loads(as_json.stdout)
    assert len(document["experiments"]) == large
    assert document["experiments"][large - 2]["detail"] == "it failed"
    assert document["experiments"][large - 2]["state"] == FAILED

    narrow = mrunner("status", "bbbb-large", env={"COLUMNS": "40"})
    assert narrow.returncode == 0, narrow.stderr
    table = _lines(narrow.stdout)[3:-1]  # the rows, between the counts and the last line (plain text)
    assert max(len(line) for line in table) <= 40, narrow.stdout
    assert any(line.split()[0] == str(large - 2) for line in table)  # the row's index is never cut


def _counted_copy(records: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Store, Callable[[], int]]:
    """A copy of the module's records (a test that records must not change them for the others), and how many
    runs the store has decoded since: every ``Run`` is made by ``store._run`` from its row."""
    from mrunner import store as store_module

    source = sqlite3.connect(records.path)
    source.execute("VACUUM INTO ?", (str(tmp_path / "records.db"),))
    source.close()
    decoded = [0]
    decode = store_module._run

    def counted(row):
        decoded[0] += 1
        return decode(row)

    monkeypatch.setattr(store_module, "_run", counted)
    return Store(tmp_path / "records.db"), lambda: decoded[0]


def test_status_json_of_a_large_sweep_streams_each_run_once(large, records, tmp_path, monkeypatch):
    """`status --json` writes the first experiment after decoding a chunk of runs, not the whole sweep
    (the look at the backend reads only the unfinished runs), and decodes each run once."""
    import argparse
    import io
    import sys

    from mrunner import store as store_module
    from mrunner.commands import sweeps

    copy, decoded = _counted_copy(records, tmp_path, monkeypatch)  # the look records the lost runs: a copy
    monkeypatch.setattr(sweeps, "Store", lambda: copy)
    at_first_experiment: list[int] = []

    class Output(io.StringIO):
        def write(self, text: str) -> int:
            if '"index"' in text and not at_first_experiment:
                at_first_experiment.append(decoded())
            return super().write(text)

    output = Output()
    monkeypatch.setattr(sys, "stdout", output)
    options = argparse.Namespace(sweep="bbbb-large", json=True, wait=False, all=False, limit=10)
    assert sweeps.status_command(options) == 0
    document = json.loads(output.getvalue())
    assert len(document["experiments"]) == large
    assert [e["state"] for e in document["experiments"][:3]] == [LOST, LOST, COMPLETED]
    assert at_first_experiment[0] <= store_module.RECORD_CHUNK + 3, at_first_experiment
    assert decoded() <= large + 3


def test_each_look_of_a_wait_at_a_large_sweep_reads_only_its_unfinished_runs(large, records, tmp_path, monkeypatch):
    """`status SWEEP --wait` looks every few seconds: each look decodes the runs the backend is asked about
    (the three unfinished ones here), not the whole sweep (the counts and the pending reasons come from SQL), and the
    wait's end reads no run either: the summary and the exit code are the counts'. The test plays the sweep's
    supervisor (this process, alive, recorded as the sweep's): between looks it ends one more run."""
    from mrunner import following, process
    from mrunner.reporter import Reporter

    copy, decoded = _counted_copy(records, tmp_path, monkeypatch)  # the wait records what changes: a copy
    sweep = copy.sweep("bbbb-large")
    sweep.detail["supervisor"] = process.identity()
    copy.update_sweep(sweep)
    unfinished = [r.index for r in copy.runs(sweep.id, [SUBMITTED, RUNNING])]
    assert unfinished == [0, 1, large - 1]
    before = decoded()  # the set-up's own reads
    at_each_line: list[int] = []
    lines: list[str] = []

    class Supervising(Reporter):  # without a terminal: a line at each change of the counts
        def step(self, message: str) -> None:
            at_each_line.append(decoded())
            lines.append(message)
            copy.apply(sweep.id, [RunUpdate(unfinished[len(lines) - 1], COMPLETED, exit_code=0)])

    counts = following.wait(sweep, copy, Supervising(quiet=False), interval=0.001)

    per_look = [b - a for a, b in zip([before, *at_each_line], [*at_each_line, decoded()])]
    assert per_look == [3, 2, 1, 0], per_look  # the unfinished runs of each look; the last look finds none
    assert counts == {COMPLETED: large - 1, FAILED: 1}
    assert lines == [
        f"sweep bbbb-large: 2 submitted, 1 running, {large - 4} completed, 1 failed",
        f"sweep bbbb-large: 1 submitted, 1 running, {large - 3} completed, 1 failed",
        f"sweep bbbb-large: 1 submitted, {large - 2} completed, 1 failed",
    ]


def test_gc_and_cancel_of_a_large_sweep_read_only_its_unfinished_runs(
    large, records, tmp_path, monkeypatch, mrunner_home
):
    """`cancel` needs only the runs that have not ended and `mrunner gc` decides from the states alone: neither
    decodes every run of a large sweep (each read the whole sweep, gc twice for a sweep with active runs)."""
    import argparse

    from mrunner import cleanup
    from mrunner.commands import sweeps
    from mrunner.reporter import Reporter

    copy, decoded = _counted_copy(records, tmp_path, monkeypatch)  # cancel records its changes: a copy
    monkeypatch.setattr(sweeps, "Store", lambda: copy)
    sweep = copy.sweep("bbbb-large")
    sweep.context["grace_period"] = 0  # what the local backend's cancel reads of a recorded context
    copy.update_sweep(sweep)
    before = decoded()
    assert sweeps.cancel_command(argparse.Namespace(target="bbbb-large")) == 0
    assert decoded() - before <= 2 * 3, decoded() - before  # the three unfinished runs, read and handed over
    assert copy.counts("bbbb-large") == {COMPLETED: large - 4, FAILED: 1, CANCELLED: 3}
    copy.apply("aaaa-small", [RunUpdate(2, RUNNING)])  # ended: refused, so the small sweep keeps its 3 active
    before = decoded()
    cleanup.collect(copy, older_than=0, dry_run=True, reporter=Reporter(quiet=True))
    assert decoded() - before <= 3, decoded() - before  # the small sweep's active runs, asked about
