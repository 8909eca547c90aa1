"""An experiment's end as its MLflow run's status: FINISHED, FAILED or KILLED, with its end time.

The experiment's script runs as a process of its own, which cannot tell MLflow how it ended (it may be killed,
preempted, or cut off at its time limit; MLflow's own ``end_run`` at its exit says FINISHED even for a script
that failed). This machine's records know, so ``settle`` sets the status of each experiment's run once per end,
when a command that reads the records (``status``, ``--wait``, ``results``, ``pull``, ``cancel``, a submission
that returns with its sweep ended) finds an end that is not in MLflow yet: one search of the sweep's runs, then
one request per newly ended run (several at once). A sweep without MLflow costs nothing; a sweep with nothing
newly ended reads one small file and asks no server. A server that does not answer is a warning, and a later
command sets what is left.

A run that starts again (a resume, a requeue) is RUNNING again: with live tracking its process sets that at
its start (``mrunner.mlflow_run``); with ``tracking: deferred``, where the process cannot reach MLflow, the next
``settle`` does. A run that ``mrunner.uploads`` makes for an experiment that had ended gets its status there.

What was set is kept in a ledger per sweep beside the uploads' (``ledger_path``): each run's attempt and the
status set for it, and the time from which the records are read again.
"""

from __future__ import annotations

import importlib.util
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mrunner import ledger as ledger_file
from mrunner import paths
from mrunner.layout import write_atomic
from mrunner.records import CANCELLED, COMPLETED, FAILED, LOST, PREEMPTED, RUNNING, TERMINAL, TIMEOUT, Run, Sweep
from mrunner.reporter import Reporter
from mrunner.trackers import mlflow as mlflow_tracker

if TYPE_CHECKING:
    from mrunner.store import Store

#: An ended state as MLflow's run status. An experiment stopped from outside (cancelled, preempted and not
#: started again, cut off at its time limit) is KILLED; one that ended by itself without completing, or whose
#: end nobody saw (lost), FAILED.
STATUSES = {
    COMPLETED: "FINISHED",
    FAILED: "FAILED",
    LOST: "FAILED",
    CANCELLED: "KILLED",
    PREEMPTED: "KILLED",
    TIMEOUT: "KILLED",
}
#: How far before the last look the records are read again: a record written while it looked (its time taken
#: before it was committed) is seen by the next look; the ledger keeps it from being set twice.
MARGIN_SECONDS = 60.0
#: Runs set at once.
WORKERS = 8


def ledger_path(sweep_id: str) -> Path:
    """What was set of a sweep's runs: a small JSON file beside the uploads' ledger."""
    return paths.data_dir() / "uploads" / f"{sweep_id}.ends.json"


def status_of(run: Run) -> str:
    """The MLflow status the run's recorded state stands for (RUNNING for one not ended)."""
    return STATUSES.get(run.state, "RUNNING")


def settle(store: Store, sweep: Sweep, reporter: Reporter, uploading: bool = False) -> bool:
    """Set the MLflow status of the sweep's runs whose end (or start again after a set end) MLflow has not
    been told of; nothing for a sweep that does not track in MLflow. Returns False when MLflow was not told
    (warned): a caller ``uploading`` the sweep's metrics next then leaves MLflow out of that upload, which would
    warn a second time of the same server, and the warning names `results`, which does both later."""
    if not mlflow_tracker.enabled(sweep.context):
        return True
    path = ledger_path(sweep.id)
    with ledger_file.locked(path):
        ledger = ledger_file.read(path)
        began = time.time()
        since = ledger.get("since")
        known: dict[str, list[Any]] = ledger.setdefault("runs", {})
        wanted = [
            run
            for run in store.runs(sweep.id, TERMINAL | {RUNNING}, since=since)
            if _new(run, known.get(str(run.index)))
        ]
        if wanted:
            failure = _send(sweep, wanted, known)
            if failure is not None:
                write_atomic(str(path), json.dumps(ledger))  # what was set stays set; the rest waits
                later = (
                    f"results {sweep.id}` tells it and uploads what waits"
                    if uploading
                    else f"status {sweep.id}` tells it"
                )
                reporter.warn(
                    f"MLflow at {mlflow_tracker.tracking_uri(sweep.context)} was not told how "
                    f"{len(wanted)} experiment{'s' * (len(wanted) != 1)} of sweep {sweep.id} ended ({failure}); "
                    f"a later `mrunner {later}"
                )
                return False
        if wanted or since is None or began - MARGIN_SECONDS > since + MARGIN_SECONDS:
            ledger["since"] = began - MARGIN_SECONDS
            write_atomic(str(path), json.dumps(ledger))
    return True


def _new(run: Run, entry: list[Any] | None) -> bool:
    """Whether MLflow has not been told of the run's state: an end not set yet, or a start again after a set end."""
    if run.state in TERMINAL:
        return entry is None or entry[:2] != [run.attempt, status_of(run)]
    return entry is not None and entry[1] != "RUNNING"


def _send(sweep: Sweep, runs: Sequence[Run], known: dict[str, list[Any]]) -> str | None:
    """Set the status of ``runs``' MLflow runs (found by one search), noting each in ``known``; why it stopped
    short, or None."""
    where = mlflow_tracker.tracking_uri(sweep.context) or ""
    if not where:
        return f"no server named: set mlflow_tracking_uri or export {mlflow_tracker.URI_VARIABLE}"
    if importlib.util.find_spec("mlflow") is None:
        return "the mlflow client is not installed on this machine: pip install 'mrunner[mlflow]'"
    reason = mlflow_tracker.unanswered(where)
    if reason is not None:
        return reason.splitlines()[0][:200] if reason else "no answer"
    from concurrent.futures import ThreadPoolExecutor

    from mlflow.tracking import MlflowClient

    from mrunner import mlflow_run

    try:
        client = MlflowClient(where)
        experiment = client.get_experiment_by_name(mlflow_tracker.experiment_name(sweep.context, sweep.project))
        found = {} if experiment is None else mlflow_run.runs_of_sweep(client, str(experiment.experiment_id), sweep.id)
    except Exception as error:  # the server went away (or refused) since its health check
        return f"{type(error).__name__}: {error}"[:200]

    def one(run: Run) -> None:
        run_id = found.get(f"{sweep.id}/{run.index}", (None, False))[0]
        if run_id is not None:  # none: the experiment never made its run (it ended first), nothing to show
            set_status(client, run_id, run)
        known[str(run.index)] = [run.attempt, status_of(run), run_id]

    failure = None
    with ThreadPoolExecutor(WORKERS, thread_name_prefix="mrunner-ends") as pool:
        for future in [pool.submit(one, run) for run in runs]:
            raised = future.exception()
            if raised is not None and failure is None:
                failure = f"{type(raised).__name__}: {raised}"[:200]
    return failure


def set_status(client: Any, run_id: str, run: Run) -> None:
    """Set MLflow run ``run_id`` to the status ``run``'s recorded state stands for, an end with the time it
    was recorded, in one request."""
    from mrunner import mlflow_run

    status = status_of(run)
    mlflow_run.set_status(client, run_id, status, int(run.updated_at * 1000) if status != "RUNNING" else None)


def remove(sweep_id: str) -> None:
    """Forget what was set of a forgotten sweep's runs."""
    ledger_file.remove(ledger_path(sweep_id))
