"""The experiment's side of MLflow tracking: one MLflow run per experiment, the same for all its attempts.

What the submitting side arranged (``mrunner.trackers.mlflow``): ``MRUNNER_MLFLOW=1`` when the context has
``mlflow: true``, ``MLFLOW_TRACKING_URI`` (and ``MLFLOW_EXPERIMENT_NAME`` when the context names one) as plain
environment, credentials as secrets. MLflow reads those itself.

The run is found, or made, once per process, by ``get_configuration()`` or the first ``mrunner.report``: its id
is kept in the experiment's folder (``RUN_ID_FILE``, under a lock, so that ranks starting together make one),
and an experiment whose folder lost it finds it again by its tag ``mrunner.experiment`` (``SWEEP/INDEX``). Then
``MLFLOW_RUN_ID`` is set in this process's environment, so the script's own ``mlflow.start_run()`` continues
that run instead of starting another. ``mlflow`` is imported here only, and only then.
"""

from __future__ import annotations

import fcntl
import os
import sys
import time
from collections.abc import Mapping
from typing import Any

ENABLED_VARIABLE = "MRUNNER_MLFLOW"  # the same name as mrunner.trackers.mlflow.ENABLED_VARIABLE
RUN_ID_FILE = ".mrunner-mlflow-run"  # in the experiment's folder
TAG = "mrunner.experiment"
#: MLflow's limit on a parameter's value (longer ones are cut, not refused).
PARAMETER_LIMIT = 6000

_run_id: str | None = None
_client: Any = None


def enabled() -> bool:
    return os.environ.get(ENABLED_VARIABLE) == "1"


def run_id(info: Mapping[str, Any]) -> str:
    """The MLflow run of the experiment ``info`` describes (its ``MRUNNER_CONFIG`` document), made if needed;
    ``MLFLOW_RUN_ID`` is set to it."""
    global _run_id
    if _run_id is None:
        folder = os.environ.get("MRUNNER_EXPERIMENT_DIR") or "."
        with open(os.path.join(folder, RUN_ID_FILE), "a+", encoding="ascii") as stream:
            fcntl.flock(stream, fcntl.LOCK_EX)
            stream.seek(0)
            _run_id = stream.read().strip() or None
            if _run_id is None:
                _run_id = _find_or_create(info)
                stream.write(_run_id + "\n")
                stream.flush()
        os.environ["MLFLOW_RUN_ID"] = _run_id
    return _run_id


def client() -> Any:
    global _client
    if _client is None:
        try:
            from mlflow.tracking import MlflowClient
        except ImportError as error:
            if error.name not in ("mlflow", "mlflow.tracking"):
                raise
            raise RuntimeError(
                f"mlflow: true needs the mlflow package in the experiment's environment ({sys.executable}): "
                f"pip install 'mrunner[mlflow]'"
            ) from None
        _client = MlflowClient()
    return _client


def _find_or_create(info: Mapping[str, Any]) -> str:
    name = os.environ.get("MLFLOW_EXPERIMENT_NAME") or str(info.get("project") or "mrunner")
    return find_or_create(client(), name, info)


def find_or_create(tracker: Any, name: str, info: Mapping[str, Any], experiment_id: str | None = None) -> str:
    """The run tagged with this experiment (an earlier attempt's, whose id file is gone, or the run deferred
    tracking made from the submitting machine), else a new one in MLflow experiment ``name`` (whose id the
    caller may know: ``experiment_id``), named after the experiment, tagged with its sweep, holding its
    parameters. ``tracker``: an ``MlflowClient``."""
    from mlflow.entities import Param, RunTag

    if experiment_id is None:
        experiment_id = experiment_of(tracker, name)
    key = f"{info.get('sweep')}/{info.get('index', 0)}"
    found = tracker.search_runs([experiment_id], filter_string=f"tags.`{TAG}` = '{key}'", max_results=1)
    if found:
        return str(found[0].info.run_id)
    tags = {TAG: key, "mrunner.sweep": str(info.get("sweep")), "mrunner.experiment_id": str(info.get("id"))}
    tags.update({f"mrunner.tag.{tag}": "1" for tag in info.get("tags") or []})
    run = tracker.create_run(experiment_id, run_name=str(info.get("name") or "experiment"), tags=tags)
    parameters = _flat(info.get("parameters") or {})
    batch = [Param(k, str(v)[:PARAMETER_LIMIT]) for k, v in parameters.items()]
    attempt = [RunTag("mrunner.attempt", str(info.get("attempt", 0)))]
    for start in range(0, max(len(batch), 1), 100):  # MLflow takes at most 100 parameters per batch
        tracker.log_batch(run.info.run_id, params=batch[start : start + 100], tags=attempt if not start else [])
    return str(run.info.run_id)


def experiment_of(tracker: Any, name: str) -> str:
    """The id of MLflow experiment ``name``, made if needed."""
    experiment = tracker.get_experiment_by_name(name)
    if experiment is not None:
        return str(experiment.experiment_id)
    try:
        return str(tracker.create_experiment(name))
    except Exception:  # another experiment of the sweep made it first
        return str(tracker.get_experiment_by_name(name).experiment_id)


def log(metrics: Mapping[str, float], step: int | None, timestamp: float | None = None) -> None:
    """Log one report to the experiment's run (at ``step``, 0 when it has none)."""
    from mlflow.entities import Metric

    from mrunner.layout import experiment_info

    identity = run_id(experiment_info())
    at = int((timestamp or time.time()) * 1000)
    client().log_batch(identity, metrics=[Metric(k, float(v), at, step or 0) for k, v in metrics.items()])


def _flat(parameters: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in parameters.items():
        if isinstance(value, Mapping) and value:
            flat.update(_flat(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat
