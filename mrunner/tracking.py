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

ENABLED_VARIABLE = "MRUNNER_NEPTUNE"  # the same name as mrunner.trackers.neptune.ENABLED_VARIABLE
DATA_DIRECTORY_VARIABLE = "NEPTUNE_DATA_DIRECTORY"  # neptune >= 1.x: where .neptune/ data goes
CUSTOM_RUN_ID_LIMIT = 36  # Neptune refuses longer custom run ids

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
    job id) under ``mrunner/``. Returns the run; calling it again returns the same run.
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
    experiment_dir = os.environ.get("MRUNNER_EXPERIMENT_DIR")
    if experiment_dir:  # offline data (and async's queue) in the experiment's own folder, not its cwd
        os.environ.setdefault(DATA_DIRECTORY_VARIABLE, os.path.join(experiment_dir, ".neptune"))
    try:
        import neptune
        from neptune.utils import stringify_unsupported
    except ImportError as error:
        if error.name != "neptune":
            raise  # neptune is there but broken: its own error says more
        raise RuntimeError(
            f"get_configuration(with_neptune=True) needs the neptune package in the experiment's environment "
            f"({sys.executable}): pip install 'mrunner[neptune]'"
        ) from None
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
    _run = run
    return run


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

    found = []
    if os.environ.get(ENABLED_VARIABLE) == "1":
        found.append(_guarded("Neptune", _neptune_forward))
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
                f"mrunner: {tracker} refused a report ({type(error).__name__}: {error}); this process stops "
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


def _neptune_forward(metrics: Mapping[str, float], step: int | None, _when: float) -> None:
    run = _run
    if run is None:
        from mrunner.layout import experiment_info

        run = start_neptune_run(experiment_info())
    for name, value in metrics.items():
        run[f"metrics/{name}"].append(value, step=step)
