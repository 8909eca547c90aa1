"""The experiment's side of MLflow tracking: one MLflow run per experiment, the same for all its attempts.

What the submitting side arranged (``mrunner.trackers.mlflow``): ``MRUNNER_MLFLOW=1`` when the context has
``mlflow: true``, ``MLFLOW_TRACKING_URI`` (and ``MLFLOW_EXPERIMENT_NAME`` when the context names one) as plain
environment, credentials as secrets. MLflow reads those itself.

The run is found, or made, once per process, at ``get_configuration()`` or the first ``mrunner.report`` (on
its sender's thread, ``mrunner.sender``, the experiment waiting ``START_SECONDS`` at most for it, then going
on without MLflow: a server down at the start holds it up no longer than that): its id
is kept in the experiment's folder (``RUN_ID_FILE``, under a lock, so that ranks starting together make one),
and an experiment whose folder lost it finds it again by its tag ``mrunner.experiment`` (``SWEEP/INDEX``). Then
``MLFLOW_RUN_ID`` is set in this process's environment, so the script's own ``mlflow.start_run()`` continues
that run instead of starting another. ``mlflow`` is imported here only, and only then.
"""

from __future__ import annotations

import fcntl
import os
import sys
from collections.abc import Callable, Iterator, Mapping
from typing import Any

ENABLED_VARIABLE = "MRUNNER_MLFLOW"  # the same name as mrunner.trackers.mlflow.ENABLED_VARIABLE
RUN_ID_FILE = ".mrunner-mlflow-run"  # in the experiment's folder
TAG = "mrunner.experiment"
ATTEMPT_TAG = "mrunner.attempt"  # set with a new run's parameters, in its first batch
#: MLflow's limit on a parameter's value (longer ones are cut, not refused).
PARAMETER_LIMIT = 6000

_run_id: str | None = None
_client: Any = None
_made_here = False  # whether this process made the run (then it is RUNNING already)


def enabled() -> bool:
    return os.environ.get(ENABLED_VARIABLE) == "1"


class Abandoned(Exception):
    """The experiment stopped waiting for its run before it was made: the catch-up makes it (``mrunner.uploads``)."""


def run_id(info: Mapping[str, Any], stopped: Callable[[], bool] = lambda: False) -> str:
    """The MLflow run of the experiment ``info`` describes (its ``MRUNNER_CONFIG`` document), made if needed
    unless ``stopped()`` (forwarding gave up on the server meanwhile); ``MLFLOW_RUN_ID`` is set to it."""
    global _run_id
    if _run_id is None:
        folder = os.environ.get("MRUNNER_EXPERIMENT_DIR") or "."
        with open(os.path.join(folder, RUN_ID_FILE), "a+", encoding="ascii") as stream:
            fcntl.flock(stream, fcntl.LOCK_EX)
            stream.seek(0)
            _run_id = stream.read().strip() or None
            if _run_id is None:
                _run_id = _find_or_create(info, stopped)
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


def _find_or_create(info: Mapping[str, Any], stopped: Callable[[], bool]) -> str:
    """The run tagged with this experiment (an earlier attempt's, whose id file is gone, or the one the catch-up
    or deferred tracking made from the submitting machine), else a new one, named after the experiment, tagged
    with its sweep, holding its parameters: unless ``stopped()``, when only the catch-up may make it."""
    name = os.environ.get("MLFLOW_EXPERIMENT_NAME") or str(info.get("project") or "mrunner")
    tracker = client()
    experiment_id = experiment_of(tracker, name)
    found = runs_tagged(tracker, experiment_id, key_of(info))
    if found:
        return str(found[0].info.run_id)
    if stopped() or _caught_up():  # a run made now could race the catch-up's, making two
        raise Abandoned("the experiment went on without its MLflow run; `mrunner results` makes it")
    global _made_here
    run_id = create(tracker, experiment_id, info)
    _made_here = True
    if stopped() or _caught_up():
        # The create landed after forwarding stopped (held on the way): the catch-up makes the run from now on,
        # and may have made it already. This run is left only when no other is there (the catch-up then finds
        # it and gives it the parameters); otherwise it goes, empty. Should the catch-up's run land after the
        # look below, the catch-up sees this one, still without parameters, and deletes it (``uploads``).
        if any(run.info.run_id != run_id for run in runs_tagged(tracker, experiment_id, key_of(info))):
            tracker.delete_run(run_id)
        raise Abandoned("the experiment went on without its MLflow run; `mrunner results` makes it")
    for _, params, tags in batches([], *first_batch(info)):
        tracker.log_batch(run_id, params=params, tags=tags)
    return run_id


#: What ``mrunner.metrics.untracked("MLflow")`` writes in the metrics file, spelt out here (the names of
#: ``mrunner.metrics``, which imports this module through ``mrunner.tracking``).
UNTRACKED_MARK = b'"untracked": "MLflow"'


def _caught_up() -> bool:
    """Whether a process of this experiment (this one, another rank, an earlier attempt) stopped forwarding to
    MLflow (its note in the metrics file): from then on only the catch-up makes the experiment's run, never a
    process of the experiment, so that the two never make one each."""
    from mrunner.layout import metrics_file_holds

    return metrics_file_holds(UNTRACKED_MARK)


def runs_tagged(tracker: Any, experiment_id: str, key: str) -> list[Any]:
    """The live runs made for experiment ``key`` (``SWEEP/INDEX``), those holding their parameters first (one
    without them is a run whose maker stopped before it logged them: only the catch-up still uses it)."""
    found = tracker.search_runs([experiment_id], filter_string=f"tags.`{TAG}` = '{key}'", max_results=100)
    return sorted(found, key=lambda run: ATTEMPT_TAG not in run.data.tags)


def key_of(info: Mapping[str, Any]) -> str:
    """The value of the run's ``TAG``: ``SWEEP/INDEX``."""
    return f"{info.get('sweep')}/{info.get('index', 0)}"


def create(tracker: Any, experiment_id: str, info: Mapping[str, Any], start_time: int | None = None) -> str:
    """A new run for the experiment ``info`` describes: named after it, tagged with it and its sweep (the tags
    that find it again come with the run itself, so it is never there without them); ``start_time`` (in
    milliseconds; default now): when the experiment started, for a run made later (by an upload)."""
    tags = {TAG: key_of(info), "mrunner.sweep": str(info.get("sweep")), "mrunner.experiment_id": str(info.get("id"))}
    tags.update({name(f"mrunner.tag.{tag}"): "1" for tag in info.get("tags") or []})
    run = tracker.create_run(
        experiment_id, start_time=start_time, run_name=str(info.get("name") or "experiment"), tags=tags
    )
    return str(run.info.run_id)


def first_batch(info: Mapping[str, Any]) -> tuple[list[Any], list[Any]]:
    """What a new run gets besides its tags: the experiment's parameters (``Param``), and its attempt (``RunTag``)."""
    from mlflow.entities import Param, RunTag

    parameters = _flat(info.get("parameters") or {})
    params = [Param(name(k), str(v)[:PARAMETER_LIMIT]) for k, v in parameters.items()]
    return params, [RunTag(ATTEMPT_TAG, str(info.get("attempt", 0)))]


#: MLflow's limit on the length of a metric's, parameter's or tag's name.
NAME_LIMIT = 250
_NAMES: dict[str, str] = {}


def name(given: str) -> str:
    """``given`` (a metric's, parameter's or tag's name) as MLflow takes it: a character MLflow refuses (its
    names hold letters, digits, ``_ - . : /`` and spaces) becomes ``_``, as does a ``/`` of a name that is no
    plain path (``a//b``, ``/a``, ``a/``), and a name longer than MLflow's limit is cut. MLflow refuses a whole
    request for one such name: a metric ``acc@1 (%)`` kept every metric of the experiment out of MLflow, live
    and in every catch-up after. ``mrunner results`` keeps the name as reported."""
    found = _NAMES.get(given)
    if found is None:
        import posixpath
        import re

        found = re.sub(r"[^\w/.\- :]", "_", given)[:NAME_LIMIT]
        if posixpath.normpath(found) != found or found.startswith(("/", "..")) or found == ".":
            found = found.replace("/", "_")
            if found == "." or found.startswith(".."):  # no longer a path, but MLflow's check takes it for one
                found = "_" + found[1:]
        found = _NAMES[given] = found or "_"
    return found


#: What one ``log_batch`` may carry (MLflow's REST API refuses more).
MAX_METRICS, MAX_PARAMS_OR_TAGS, MAX_ENTITIES = 1000, 100, 1000


def batches(metrics: list[Any], params: list[Any], tags: list[Any]) -> Iterator[tuple[list[Any], list[Any], list[Any]]]:
    """``(metrics, params, tags)`` in as few ``log_batch`` requests as MLflow's limits allow, metrics filling
    each request up. The tags (at most a hundred) come with the last of the parameters: a run that has them
    has all its parameters (``runs_of_sweep``)."""
    chunks = [params[start : start + MAX_PARAMS_OR_TAGS] for start in range(0, len(params), MAX_PARAMS_OR_TAGS)]
    left = list(metrics)
    for number, some_params in enumerate(chunks or [[]]):
        some_tags = list(tags) if number == max(len(chunks) - 1, 0) else []
        room = min(MAX_METRICS, MAX_ENTITIES - len(some_params) - len(some_tags))
        some_metrics, left = left[:room], left[room:]
        if some_metrics or some_params or some_tags:
            yield some_metrics, some_params, some_tags
    for start in range(0, len(left), MAX_METRICS):
        yield left[start : start + MAX_METRICS], [], []


def runs_of_sweep(tracker: Any, experiment_id: str, sweep_id: str) -> dict[str, tuple[str, bool]]:
    """The runs made for a sweep's experiments, by one search (a page per thousand runs): ``SWEEP/INDEX`` ->
    (run id, whether its first batch, the parameters with the attempt tag, reached it)."""
    found: dict[str, tuple[str, bool]] = {}
    token = None
    while True:
        page = tracker.search_runs(
            [experiment_id], filter_string=f"tags.`mrunner.sweep` = '{sweep_id}'", max_results=1000, page_token=token
        )
        for run in page:
            key = run.data.tags.get(TAG)
            complete = ATTEMPT_TAG in run.data.tags
            if key is not None and (key not in found or complete and not found[key][1]):
                # MLflow's order (newest first), one holding its parameters first: the one _find_or_create finds
                found[key] = (str(run.info.run_id), complete)
        token = page.token
        if not token:
            return found


def empty_runs_of_sweep(tracker: Any, experiment_id: str, sweep_id: str) -> list[tuple[str, str]]:
    """The live runs made for a sweep's experiments that hold no parameters, as (``SWEEP/INDEX``, run id): by
    one search (a page per thousand runs)."""
    found = []
    token = None
    while True:
        page = tracker.search_runs(
            [experiment_id], filter_string=f"tags.`mrunner.sweep` = '{sweep_id}'", max_results=1000, page_token=token
        )
        found += [
            (run.data.tags[TAG], str(run.info.run_id))
            for run in page
            if TAG in run.data.tags and ATTEMPT_TAG not in run.data.tags
        ]
        token = page.token
        if not token:
            return found


def experiment_of(tracker: Any, name: str) -> str:
    """The id of MLflow experiment ``name``, made if needed."""
    experiment = tracker.get_experiment_by_name(name)
    if experiment is not None:
        return str(experiment.experiment_id)
    try:
        return str(tracker.create_experiment(name))
    except Exception:  # another experiment of the sweep made it first
        return str(tracker.get_experiment_by_name(name).experiment_id)


def start(stopped: Callable[[], bool]) -> None:
    """Find or make this experiment's run, setting ``MLFLOW_RUN_ID`` (the sender's first step); ``stopped``:
    whether forwarding gave up on the server meanwhile."""
    from mrunner.layout import experiment_info

    identity = run_id(experiment_info(), stopped)
    if not _made_here:
        # an earlier attempt's run (a retry, a requeue, a resume), which this machine may have set FINISHED,
        # FAILED or KILLED (``mrunner.mlflow_ends``), or another process's of this one: it runs (again)
        set_status(client(), identity, "RUNNING", None)


def set_status(tracker: Any, run_id: str, status: str, end_time: int | None) -> None:
    """Set the run's status (and end time, in milliseconds; MLflow keeps the last one when None) in one
    request: ``MlflowClient.set_terminated`` would ask for the run first and print its address, and
    ``update_run`` asks for it first too."""
    from mlflow.entities import RunStatus

    store = getattr(getattr(tracker, "_tracking_client", None), "store", None)
    if store is None:  # a client of another shape: its public calls
        if status == "RUNNING":
            tracker.update_run(run_id, status=status)
        else:
            tracker.set_terminated(run_id, status=status, end_time=end_time)
        return
    store.update_run_info(run_id, RunStatus.from_string(status), end_time, None)


#: Per metric, the step after the highest this process logged: where its next report without a step goes.
_next_step: dict[str, int] = {}


def _step_of(metric: str, step: int | None) -> int:
    """The step a report of ``metric`` is logged at: its own, or without one the step after the highest its
    metric reached in this process (0, 1, ... when none has one), where ``mrunner.metrics.curves`` puts it for
    `results` and the catch-up: each point then has one step however it reaches MLflow. (Ranks reporting one
    metric without steps are numbered here each on its own, and in the file together.)"""
    following = _next_step.get(metric, 0)
    if step is None:
        _next_step[metric] = following + 1
        return following
    if step >= following:
        _next_step[metric] = step + 1
    return step


def log_many(reports: list[tuple[Mapping[str, float], int | None, float]]) -> None:
    """Log reports ``(metrics, step, time)`` to the experiment's run (a report without a step at ``_step_of``'s
    step), in as few requests as MLflow allows. Each point carries its line's time: sent again by the catch-up,
    it is kept once."""
    from mlflow.entities import Metric

    from mrunner.layout import experiment_info

    identity = run_id(experiment_info())
    points = [
        Metric(name(k), float(v), int(when * 1000), _step_of(k, step))
        for metrics, step, when in reports
        for k, v in metrics.items()
    ]
    for some, _, _ in batches(points, [], []):
        client().log_batch(identity, metrics=some)


def _flat(parameters: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in parameters.items():
        if isinstance(value, Mapping) and value:
            flat.update(_flat(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat
