"""Deferred tracking (``tracking: deferred``): this machine sends what the experiments reported to MLflow.

Compute nodes without network (many Slurm clusters, Kubernetes pods in their own network) cannot reach a
tracking server, so with ``tracking: deferred`` the experiments only write their metrics files
(``mrunner.metrics``), and whenever ``mrunner results``, ``pull`` or ``status --wait`` brings those files
back, ``upload`` sends the lines added since the last upload into each experiment's MLflow run (the run live
tracking would have made: found by its tag, else made here, named, tagged, holding the parameters).

Each line is sent once: a ledger per sweep (``ledger_path``, next to the records, rewritten atomically after
each experiment) keeps how many bytes of each experiment's file were sent, and the run's id. A file that
grew (a running experiment, a later attempt appending) sends only its new whole lines; a second call with
nothing new reads no file and calls no server. Each value goes with the time it was reported, so should the
ledger lose an upload (a crash between the send and the write), MLflow's store drops the repeated points
(their key, time, step and value are the same). A server that does not answer is one warning; the lines
stay unsent, and the next call catches up.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from mrunner import metrics, paths
from mrunner.layout import METRICS_FILE, of_run, write_atomic
from mrunner.records import Run, Sweep
from mrunner.reporter import Reporter
from mrunner.trackers import mlflow as mlflow_tracker

#: MLflow takes at most this many metrics per ``log_batch``.
BATCH = 1000


def deferred(sweep: Sweep) -> bool:
    """Whether this machine uploads the sweep's metrics (its context defers tracking to a tracker)."""
    return mlflow_tracker.deferred(sweep.context)


def ledger_path(sweep_id: str) -> Path:
    """What was uploaded of a sweep: a small JSON file beside the records."""
    return paths.data_dir() / "uploads" / f"{sweep_id}.json"


def upload(sweep: Sweep, runs: Sequence[Run], folder: Path, reporter: Reporter) -> int:
    """Send the lines of each run's metrics file in ``folder`` (``INDEX-NAME/mrunner-metrics.jsonl``, as a
    pull lays them out) that no earlier upload sent; returns how many experiments sent something. Does
    nothing for a sweep that does not defer tracking."""
    if not deferred(sweep):
        return 0
    path = ledger_path(sweep.id)
    with _locked(path):
        ledger = _read(path)
        sent = ledger.setdefault("mlflow", {})
        pending = []
        for run in runs:
            file = folder / of_run("", sweep, run).folder_name / METRICS_FILE
            try:
                size = file.stat().st_size
            except FileNotFoundError:
                continue
            if size > sent.get(str(run.index), {}).get("offset", 0):
                pending.append((run, file))
        if not pending:
            return 0
        uri = mlflow_tracker.tracking_uri(sweep.context) or ""
        reason = mlflow_tracker.unanswered(uri)
        if reason is not None:
            reporter.warn(_waiting(sweep, uri, reason, len(pending)))
            return 0
        target = _Mlflow(uri, mlflow_tracker.experiment_name(sweep.context, sweep.project))
        done = 0
        for position, (run, file) in enumerate(pending):
            known = sent.get(str(run.index), {})
            try:
                offset, run_id = target.send(sweep, run, file, known.get("offset", 0), known.get("run"))
            except Exception as error:  # the server went away (or refused): the rest waits for the next call
                reporter.warn(_waiting(sweep, uri, f"{type(error).__name__}: {error}", len(pending) - position))
                break
            sent[str(run.index)] = {"offset": offset, "run": run_id}
            write_atomic(str(path), json.dumps(ledger))
            done += 1
        if done:
            reporter.step(f"MLflow: uploaded the new metrics of {done} experiment{'s' * (done != 1)} of {sweep.id}")
        return done


def _waiting(sweep: Sweep, uri: str, reason: str, count: int) -> str:
    first = reason.splitlines()[0] if reason else "no answer"
    return (
        f"the MLflow server {uri} does not take sweep {sweep.id}'s metrics ({first[:200]}); {count} experiment"
        f"{'s' * (count != 1)}' new metrics wait, and a later `mrunner results {sweep.id}` uploads them"
    )


class _Mlflow:
    """One MLflow server's client, made on the first experiment that has something to send."""

    def __init__(self, uri: str, experiment: str) -> None:
        from mlflow.tracking import MlflowClient

        self.client = MlflowClient(uri)
        self.experiment = experiment

    def send(self, sweep: Sweep, run: Run, file: Path, offset: int, run_id: str | None) -> tuple[int, str | None]:
        """Log the whole lines of ``file`` after byte ``offset`` to the experiment's run; returns the new offset
        and the run's id."""
        from mlflow.entities import Metric

        from mrunner import mlflow_run

        data = file.read_bytes()
        end = data.rfind(b"\n") + 1  # a line still being written (or torn) waits
        if offset > len(data):
            offset = 0  # the file was replaced (a folder removed and run again): its lines are all new
        implicit: dict[tuple[int, str], int] = {}
        for _ in metrics.points(metrics.entries(data[:offset]), implicit):
            pass  # counts the reports without a step that came before, to continue their numbering
        batch = [
            Metric(name, float(value), int(at * 1000), step)
            for _, name, step, value, at in metrics.points(metrics.entries(data[offset:end]), implicit)
        ]
        if not batch:
            return max(end, offset), run_id  # nothing whole and new (a torn line): no run to make yet
        if run_id is None:
            run_id = mlflow_run.find_or_create(self.client, self.experiment, run.config_document(sweep))
        for start in range(0, len(batch), BATCH):
            self.client.log_batch(run_id, metrics=batch[start : start + BATCH])
        return max(end, offset), run_id


def _read(path: Path) -> dict[str, Any]:
    try:
        found = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except ValueError:
        return {}  # unreadable: start again; MLflow drops the points it already holds (see the module's text)
    return found if isinstance(found, dict) else {}


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """One upload of a sweep at a time (two `mrunner results` in two shells would both send the new lines)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(f"{path}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def remove(sweep_id: str) -> None:
    """Forget what was uploaded of a forgotten sweep."""
    for name in (ledger_path(sweep_id), Path(f"{ledger_path(sweep_id)}.lock")):
        try:
            os.unlink(name)
        except FileNotFoundError:
            pass
