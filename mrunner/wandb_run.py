"""The experiment's side of W&B tracking: one W&B run per experiment, the same for all its attempts.

What the submitting side arranged (``mrunner.trackers.wandb``): ``MRUNNER_WANDB=1`` when the context has
``wandb: true``, ``WANDB_MODE``, ``WANDB_PROJECT`` and ``WANDB_ENTITY`` as plain environment, the API key as a
secret. ``get_configuration()`` (or the first ``mrunner.report``) sets the run's identity in this process's
environment (``WANDB_RUN_ID``, derived from the sweep and index, so every attempt and every process resumes
the same run; ``WANDB_RUN_GROUP``, the sweep; ``WANDB_DIR``, the experiment's folder), so a script's own
``wandb.init()`` joins it too. ``wandb`` is imported here only, and only when a report is forwarded.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from typing import Any

ENABLED_VARIABLE = "MRUNNER_WANDB"  # the same name as mrunner.trackers.wandb.ENABLED_VARIABLE
#: What mrunner's own ``wandb.init()`` (on the experiment's thread, at its first report) waits for an online
#: server, where W&B's default is 90 s: the init starts W&B's service process (seconds on a loaded node) and
#: makes a few requests. A server that has not answered by then is taken for gone: the init fails, forwarding
#: to W&B stops with one warning, and the metrics stay in the experiment's folder. ``WANDB_INIT_TIMEOUT`` in
#: the environment wins. Offline, the init makes no request, and the bound never bites.
INIT_SECONDS = 15.0
#: What the exit of a process whose run mrunner started waits for W&B to take its last points (W&B's default:
#: until they are sent, however long the server is gone). Those not sent by then are replayed later.
FINISH_SECONDS = 10.0
#: What ``mrunner.metrics.untracked("W&B")`` writes in the metrics file, spelt out here (the names of
#: ``mrunner.metrics``, which imports this module through ``mrunner.tracking``).
UNTRACKED_MARK = b'"untracked": "W&B"'
FORWARDING, FORWARDED = "forwarding", "forwarded"  # the keys of ``mrunner.metrics.FORWARDING``'s notes


class Abandoned(Exception):
    """An earlier process of the experiment stopped forwarding to W&B: this one does not forward either."""


def enabled() -> bool:
    return os.environ.get(ENABLED_VARIABLE) == "1"


def run_id(info: Mapping[str, Any]) -> str:
    """The experiment's W&B run id: the same for all its attempts, unique across sweeps (W&B allows
    ``[a-z0-9]``, up to 64 characters)."""
    return hashlib.sha256(f"{info.get('sweep')}/{info.get('index', 0)}".encode()).hexdigest()[:32]


def identify(info: Mapping[str, Any]) -> None:
    """Set the run's identity in the environment, where ``wandb.init()`` reads it."""
    os.environ.setdefault("WANDB_RUN_ID", run_id(info))
    os.environ.setdefault("WANDB_RESUME", "allow")
    os.environ.setdefault("WANDB_RUN_GROUP", str(info.get("sweep") or "mrunner"))
    os.environ.setdefault("WANDB_NAME", str(info.get("name") or "experiment"))
    os.environ.setdefault("WANDB_PROJECT", str(info.get("project") or "mrunner"))
    folder = os.environ.get("MRUNNER_EXPERIMENT_DIR")
    if folder:
        os.environ.setdefault("WANDB_DIR", folder)


def log(metrics: Mapping[str, float], step: int | None, _when: float | None = None, *, untracked: Any = None) -> None:
    """Log one report to the experiment's run, started (or resumed) on the first; ``untracked("W&B")`` notes in
    the metrics file that its last points were lost at the exit (``metrics.untracked``, passed in: this module
    is imported by ``mrunner.metrics``'s own imports)."""
    import wandb

    if wandb.run is None:
        from mrunner.layout import experiment_info

        if _caught_up():
            raise Abandoned("an earlier process of this experiment lost W&B")
        info = experiment_info()
        identify(info)
        # quiet: W&B's "Currently logged in as" line asks the server who the key belongs to first, outside
        # init_timeout (WANDB_HTTP_TIMEOUT, 10 s, against a server that is gone); its other lines stay.
        bound = wandb.Settings(quiet=True)
        if not os.environ.get("WANDB_INIT_TIMEOUT"):
            bound.init_timeout = INIT_SECONDS
        bound.finish_timeout = FINISH_SECONDS
        run = wandb.init(
            config=dict(info.get("parameters") or {}), tags=[str(t) for t in info.get("tags") or []], settings=bound
        )
        import atexit

        if untracked is not None:  # the note the catch-up looks for should this process vanish (``metrics.FORWARDING``)
            untracked("W&B", FORWARDING)
        atexit.register(_finish, run, untracked)  # after W&B's own teardown was registered (at its init): run before it
    wandb.log(dict(metrics), step=step)


def _finish(run: Any, untracked: Any) -> None:
    """At the exit, end mrunner's run (unless the script did) within ``FINISH_SECONDS``; points W&B did not take
    by then are noted for the catch-up."""
    try:
        run.finish()  # nothing when the script finished it
    except Exception as error:
        _lost(untracked, f"{type(error).__name__}: {error}")
        return
    if getattr(run, "_finish_timed_out", False):
        _lost(untracked, f"its last points were not sent within {FINISH_SECONDS:g} s of the exit")
    elif untracked is not None:  # every point taken: no catch-up needed
        untracked("W&B", FORWARDED)


def _lost(untracked: Any, why: str) -> None:
    import sys

    from mrunner.errors import mask_credentials

    if untracked is not None:
        untracked("W&B")
    print(
        f"mrunner: W&B did not take this process's metrics ({mask_credentials(why)}); they stay in the experiment's "
        f"mrunner-metrics.jsonl, and `mrunner results` uploads them later",
        file=sys.stderr,
        flush=True,
    )


def _caught_up() -> bool:
    """Whether a process of this experiment (an earlier attempt, another rank) stopped forwarding to W&B."""
    from mrunner.layout import metrics_file_holds

    return metrics_file_holds(UNTRACKED_MARK)
