"""The experiment's side of Neptune tracking: ``get_configuration(with_neptune=True)`` starts the run.

This is the only place mrunner imports ``neptune``, and only when the experiment asks for it: the import
takes seconds, so the submitting side (and experiments that do not track) never pay for it. The module
itself imports only the standard library, so ``mrunner.neptune_run`` costs nothing until used.

What the submitting side arranged (``mrunner.trackers.neptune``): ``MRUNNER_NEPTUNE=1`` when the context
has ``neptune: true``, ``NEPTUNE_MODE`` and ``NEPTUNE_PROJECT`` as plain environment, ``NEPTUNE_API_TOKEN``
as a secret. Neptune reads those itself.
"""

from __future__ import annotations

import functools
import hashlib
import os
import sys
from collections.abc import Mapping
from typing import Any

from mrunner.errors import mask_credentials

ENABLED_VARIABLE = "MRUNNER_NEPTUNE"  # the same name as mrunner.trackers.neptune.ENABLED_VARIABLE
DATA_DIRECTORY_VARIABLE = "NEPTUNE_DATA_DIRECTORY"  # neptune >= 1.x: where .neptune/ data goes
CUSTOM_RUN_ID_LIMIT = 36  # Neptune refuses longer custom run ids
#: What the experiment's start of its run (``get_configuration(with_neptune=True)``, else the first report)
#: waits, at most, for Neptune's handful of requests, where Neptune's own retries hold a server that is gone
#: for about a minute. A run not started by then is taken for lost: forwarding stops, with one warning,
#: and the catch-up (``mrunner.uploads``) sends the metrics into the same run later.
START_SECONDS = 15.0
#: What the exit of a process whose run mrunner started waits for Neptune to send its queued operations
#: (Neptune's own default: a minute after the server stopped answering). Points not sent by then stay in the
#: experiment's metrics file, noted for the catch-up, and in Neptune's own queue under ``.neptune/``.
FINISH_SECONDS = 10.0
#: What ``mrunner.metrics.untracked("Neptune")`` writes in the metrics file (``mrunner.uploads`` looks for it).
UNTRACKED_MARK = b'"untracked": "Neptune"'
#: The keys of ``mrunner.metrics``'s notes of a process's forwarding (``metrics.FORWARDING``), spelt out here (the
#: same words as there: ``mrunner.metrics`` imports this module): a process that started the run on a server
#: writes the first, and its exit, once Neptune took every operation, the second; an opening without its closing
#: is a process killed outright, whose experiment the catch-up (``mrunner.uploads``) replays once it has ended.
FORWARDING, FORWARDED = "forwarding", "forwarded"

_run: Any = None


def neptune_run() -> Any:
    """This experiment's Neptune run (a ``neptune.Run``), started by ``get_configuration(with_neptune=True)``.

    ``None`` when it was not started, or when the experiment's context has ``neptune: false``: write
    ``run = mrunner.neptune_run()`` then ``if run is not None: run["loss"].append(loss)``.
    """
    return _run


def start_neptune_run(info: Mapping[str, Any]) -> Any:
    """Start the Neptune run of the experiment described by ``info`` (its ``MRUNNER_CONFIG`` document).

    Named after the experiment, tagged with its tags and its sweep's id, holding every parameter under
    ``parameters/`` and mrunner's facts (sweep, snapshot digest, git commit, backend, context, scheduler
    job id) under ``mrunner/``. Returns the run; calling it again returns the same run. In an experiment of
    a sweep tracking live, a server that has not started the run within ``START_SECONDS`` (or an earlier
    process of the experiment that lost it) gives ``None`` with one warning: the experiment goes on, its
    reports stay in its folder, and the catch-up (``mrunner.uploads``) sends them into the run later.
    """
    global _run
    if _run is not None:
        return _run
    if info.get("sweep") and os.environ.get(ENABLED_VARIABLE) != "1":
        print(
            f"mrunner: Neptune is off in context {info.get('context')} (neptune: false): no Neptune run is "
            f"started and mrunner.neptune_run() is None",
            file=sys.stderr,
            flush=True,
        )
        return None
    if _gave_up:
        return None
    experiment_dir = os.environ.get("MRUNNER_EXPERIMENT_DIR")
    if experiment_dir:  # offline data (and async's queue) in the experiment's own folder, not its cwd
        os.environ.setdefault(DATA_DIRECTORY_VARIABLE, os.path.join(experiment_dir, ".neptune"))
    try:
        import neptune  # noqa: F401  (here, on the caller's thread: a missing package is the caller's to fix)
    except ImportError as error:
        if error.name != "neptune":
            raise  # neptune is there but broken: its own error says more
        raise RuntimeError(
            f"get_configuration(with_neptune=True) needs the neptune package in the experiment's environment "
            f"({sys.executable}): pip install 'mrunner[neptune]'"
        ) from None
    if not info.get("sweep") or os.environ.get("NEPTUNE_MODE") in ("offline", "debug"):
        _run = _init_run(info)  # by hand, or no server to wait for: Neptune's own errors, as they come
        return _run
    try:
        _run = _bounded(info)
    except Exception as error:
        _give_up(f"{type(error).__name__}: {error}")
        return None
    return _run


#: Set when this process gave up on Neptune (the run not started in time): no run is started after it.
_gave_up = False
#: ``mrunner.metrics.untracked``, handed over with the forwarders (``mrunner.metrics`` imports this module):
#: notes in the metrics file that this process stopped sending Neptune its reports.
_untracked: Any = None


def _bounded(info: Mapping[str, Any]) -> Any:
    """``_init_run`` on a thread of its own, waited for ``START_SECONDS``. A start that comes later is not
    used (its run is stopped at the exit): the reports of the meantime went nowhere, the catch-up sends them."""
    import threading

    from mrunner.layout import metrics_file_holds

    if metrics_file_holds(UNTRACKED_MARK):
        raise Abandoned("an earlier process of this experiment lost Neptune")
    outcome: list[Any] = []

    def start() -> None:
        try:
            outcome.append(_init_run(info))
        except BaseException as error:  # handed to the caller's thread
            outcome.append(error)

    thread = threading.Thread(target=start, name="mrunner-neptune-start", daemon=True)
    thread.start()
    thread.join(START_SECONDS)
    if not outcome:
        raise TimeoutError(f"the server did not start the run within {START_SECONDS:g} s")
    if isinstance(outcome[0], BaseException):
        raise outcome[0]
    return outcome[0]


def _give_up(why: str) -> None:
    global _gave_up
    _gave_up = True
    if _untracked is not None:
        _untracked("Neptune")
    print(
        f"mrunner: Neptune did not start this experiment's run ({mask_credentials(why)}); mrunner.neptune_run() is None, and "
        f"the reported metrics stay in the experiment's mrunner-metrics.jsonl: `mrunner results` uploads them "
        f"later",
        file=sys.stderr,
        flush=True,
    )


def _init_run(info: Mapping[str, Any]) -> Any:
    """``neptune.init_run`` for the experiment, its parameters and mrunner's facts set."""
    import neptune
    from neptune.utils import stringify_unsupported

    options: dict[str, Any] = {}
    if "NEPTUNE_CUSTOM_RUN_ID" not in os.environ and info.get("sweep"):
        # Every process of every attempt of one experiment (DDP ranks, a requeued Slurm job, a replaced pod,
        # a `mrunner resume`) joins the same run instead of starting another.
        options["custom_run_id"] = _custom_run_id(info)
    options.update(_missing_credentials())
    run = neptune.init_run(
        name=str(info.get("name") or "experiment"), tags=tags(info), git_ref=False, **options
    )  # mrunner records the commit itself: the snapshot it runs from is no git checkout
    parameters = info.get("parameters") or {}
    if parameters:
        run["parameters"] = stringify_unsupported(dict(parameters))
    run["mrunner"] = stringify_unsupported(system_facts(info))
    run["mrunner/attempts"].append(str(info.get("attempt", 0)))  # one entry per attempt that joined the run
    if info.get("sweep") and os.environ.get("NEPTUNE_MODE") not in ("offline", "debug"):  # a server, a catch-up
        import atexit

        if _untracked is not None:  # the note the catch-up looks for should this process vanish
            _untracked("Neptune", FORWARDING)
        atexit.register(_finish, run)  # after Neptune's own stop was registered (at its init): runs before it
    return run


def _finish(run: Any) -> None:
    """At the exit, stop mrunner's run (unless the script did) within ``FINISH_SECONDS``; when operations are
    left unsent, note it in the metrics file, so that the catch-up sends the experiment's points."""
    try:
        run.stop(seconds=FINISH_SECONDS)  # nothing when the script stopped it
        processor = getattr(run, "_op_processor", None)  # Neptune keeps no public count of what is unsent
        left = processor._queue.size() if processor is not None and hasattr(processor, "_queue") else 0
    except Exception as error:
        left, why = 1, f"{type(error).__name__}: {error}"
    else:
        why = f"its last operations were not sent within {FINISH_SECONDS:g} s of the exit"
    if left:
        _lost(why)
    elif _untracked is not None:  # every operation taken: no catch-up needed
        _untracked("Neptune", FORWARDED)


def _lost(why: str) -> None:
    if _untracked is not None:
        _untracked("Neptune")
    print(
        f"mrunner: Neptune did not take this process's metrics ({mask_credentials(why)}); they stay in the experiment's "
        f"mrunner-metrics.jsonl, and `mrunner results` uploads them later",
        file=sys.stderr,
        flush=True,
    )


def tags(info: Mapping[str, Any]) -> list[str]:
    """The experiment's tags plus its sweep's id, the tag that finds the whole sweep in Neptune."""
    found = [str(tag) for tag in info.get("tags") or []]
    if info.get("sweep"):
        found.append(str(info["sweep"]))
    return list(dict.fromkeys(found))


def system_facts(info: Mapping[str, Any]) -> dict[str, Any]:
    """What mrunner knows about this experiment, for the run's ``mrunner/`` namespace (no ``None`` values)."""
    facts = {
        "sweep": info.get("sweep"),
        "sweep_name": info.get("sweep_name"),
        "experiment_id": info.get("id"),
        "index": info.get("index"),
        "attempt": info.get("attempt"),
        "project": info.get("project"),
        "backend": info.get("backend"),
        "context": info.get("context"),
        "snapshot": info.get("snapshot"),
        "git_commit": info.get("git_commit"),
        "git_dirty": info.get("git_dirty"),
        "experiment_dir": os.environ.get("MRUNNER_EXPERIMENT_DIR"),
        **scheduler_job(),
    }
    return {key: value for key, value in facts.items() if value is not None}


def scheduler_job(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """The scheduler's name for the job running this process: a Slurm job (array task) or a Kubernetes pod."""
    env = os.environ if env is None else env
    if env.get("SLURM_ARRAY_JOB_ID") and env.get("SLURM_ARRAY_TASK_ID"):
        return {"scheduler": "slurm", "job_id": f"{env['SLURM_ARRAY_JOB_ID']}_{env['SLURM_ARRAY_TASK_ID']}"}
    if env.get("SLURM_JOB_ID"):
        return {"scheduler": "slurm", "job_id": env["SLURM_JOB_ID"]}
    if env.get("KUBERNETES_SERVICE_HOST") and env.get("HOSTNAME"):
        return {"scheduler": "kubernetes", "job_id": env["HOSTNAME"]}  # the pod's name
    return {}


def _custom_run_id(info: Mapping[str, Any]) -> str:
    """The experiment's identity in its sweep, the same for all its attempts."""
    readable = f"{info['sweep']}-{info.get('index', 0)}"
    if len(readable) <= CUSTOM_RUN_ID_LIMIT:
        return readable
    return hashlib.sha256(readable.encode()).hexdigest()[:CUSTOM_RUN_ID_LIMIT]


def _missing_credentials() -> dict[str, str]:
    """Token and project from ``~/.neptune.yaml`` when the environment lacks them (a script run by hand)."""
    if os.environ.get("NEPTUNE_MODE") in ("offline", "debug"):
        return {}  # no server, no credentials needed
    if os.environ.get("NEPTUNE_API_TOKEN") and os.environ.get("NEPTUNE_PROJECT"):
        return {}
    from mrunner.trackers.neptune import credentials

    found = credentials()
    options = {}
    if found.token and not os.environ.get("NEPTUNE_API_TOKEN"):
        options["api_token"] = found.token
    if found.project and not os.environ.get("NEPTUNE_PROJECT"):
        options["project"] = found.project
    return options


# -- forwarding mrunner.report ----------------------------------------------------------------------------------


def forwarders(untracked: Any) -> list[Any]:
    """The trackers this experiment's context enabled, each as a function ``(metrics, step, time)`` that logs
    one report (``mrunner.report`` calls them). A tracker's package is imported when its first report comes.

    MLflow's client sends each request in the caller's thread, and retries a server that is gone for minutes:
    its reports go through a background sender (``mrunner.sender``), so ``mrunner.report`` never waits on it;
    ``untracked(tracker)`` notes in the metrics file that forwarding to it stopped (``metrics.untracked``). W&B's
    and Neptune's clients queue what they are given and send it from their own process or thread: they are
    called directly, their run started on the experiment's thread (both start threads of their own, which an
    interpreter already exiting refuses)."""
    from mrunner import mlflow_run, wandb_run

    global _untracked
    found = []
    if os.environ.get(ENABLED_VARIABLE) == "1":
        _untracked = untracked
        found.append(_guarded("Neptune", _neptune_forward, untracked))
    if mlflow_run.enabled():
        from mrunner.sender import Sender

        found.append(Sender("MLflow", mlflow_run.log_many, untracked, mlflow_run.client, mlflow_run.start).put)
    if wandb_run.enabled():
        found.append(_guarded("W&B", functools.partial(wandb_run.log, untracked=untracked), untracked))
    return found


def _guarded(tracker: str, forward: Any, untracked: Any = None) -> Any:
    """``forward``, except that a failure (the server down) warns once and stops forwarding to that tracker in
    this process: the experiment goes on, and its metrics stay in its folder; with ``untracked``, the failure is
    noted there for the catch-up (``mrunner.uploads``)."""
    failed: list[BaseException] = []

    def call(metrics: Mapping[str, float], step: int | None, when: float) -> None:
        if failed:
            return
        try:
            forward(metrics, step, when)
        except Exception as error:
            failed.append(error)
            if untracked is not None:
                untracked(tracker)
            later = ", and `mrunner results` uploads them later" if untracked is not None else ""
            print(
                f"mrunner: {tracker} refused a report ({type(error).__name__}: {mask_credentials(str(error))}); "
                f"this process stops "
                f"sending it metrics, which stay in the experiment's mrunner-metrics.jsonl{later}",
                file=sys.stderr,
                flush=True,
            )

    return call


def join_runs(info: Mapping[str, Any]) -> None:
    """Called by ``get_configuration()``: set this experiment's W&B run identity (``WANDB_RUN_ID``) before the
    script starts its own run, so that its ``wandb.init()`` continues mrunner's, without a request. MLflow's
    run (``MLFLOW_RUN_ID``) is found by its sender (``forwarders``), which ``get_configuration()`` starts
    (``metrics.start_forwarding``): not on this thread, through MLflow's retries."""
    from mrunner import wandb_run

    if wandb_run.enabled():
        wandb_run.identify(info)


class Abandoned(Exception):
    """An earlier process of the experiment stopped forwarding to Neptune: this one does not forward either
    (its later steps would go in before the catch-up's, which Neptune then refuses: a series' steps only
    increase)."""


def _neptune_forward(metrics: Mapping[str, float], step: int | None, when: float) -> None:
    run = _run
    if run is None:
        if _gave_up:
            return  # said once, noted for the catch-up
        from mrunner.layout import experiment_info

        run = start_neptune_run(experiment_info())
        if run is None:
            return
    for name, value in metrics.items():
        run[f"metrics/{name}"].append(value, step=step, timestamp=when)
