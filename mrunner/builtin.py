"""The core's own plugin: the context keys every context has, and the secrets a context forwards."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from mrunner.errors import MrunnerError
from mrunner.hookspecs import hookimpl
from mrunner.schema import key


@dataclass(frozen=True, kw_only=True)
class CoreKeys:
    """The keys of every context, whatever its backend (a backend may override a default: ``Backend.keys``)."""

    backend: str = key(help="which backend runs the experiments (local, slurm, kubernetes, ...)")
    project: str | None = key(None, help="project name (default: the project folder's name); names the k8s namespace")
    python: str = key("python3", help="interpreter that runs a .py experiment script")
    env: dict[str, Any] = key({}, help="environment variables (not secrets) set for every experiment")
    secrets: list[str] = key([], help="names of environment variables forwarded to experiments as secrets")
    tags: list[Any] = key([], help="tags added to every experiment of this context")
    grace_period: int = key(
        30,
        minimum=0,
        maximum=86400,
        help="seconds an experiment gets to save after SIGTERM (cancel, Ctrl-C) before it is killed",
    )
    max_requeue: int = key(
        3,
        minimum=0,
        help="times an experiment stopped by the platform (preempted, time limit, node or pod lost) is started "
        "again by itself as its next attempt",
    )
    retry_failed: int = key(
        0,
        minimum=0,
        help="times an experiment whose script failed by itself (non-zero exit) is started again as its next attempt",
    )
    max_experiments: int = key(
        10_000,
        minimum=1,
        help="a larger sweep is refused unless submitted with --yes (a typo like a=range(1000000) asks first)",
    )
    tracking: Literal["live", "deferred"] = key(
        "live",
        help="live: experiments send their reports to the trackers the context enables (MLflow, W&B) themselves; "
        "deferred: they only write them into their folders (compute nodes without network), and mrunner uploads "
        "them from this machine when `results`, `pull` or `status --wait` brings them back",
    )
    max_snapshot_mb: int = key(
        200,
        minimum=1,
        help="a larger code snapshot is refused before it is copied: list data and outputs in .mrunnerignore",
    )


@hookimpl
def mrunner_check(context: Mapping[str, Any], context_name: str) -> None:
    names = context["secrets"]
    bad = [name for name in names if not isinstance(name, str) or not name]
    if bad:
        raise MrunnerError(
            f"context {context_name}: secrets lists names of environment variables; {bad[0]!r} is not one"
        )
    missing = [name for name in names if name not in os.environ]
    if missing:
        raise MrunnerError(
            f"context {context_name} forwards the secret {missing[0]} but it is not set in your environment: "
            f"export {missing[0]}=... or remove it from `secrets`"
        )


#: The context keys of the trackers whose reports ``tracking: deferred`` uploads from this machine.
DEFERRABLE_TRACKERS = ("mlflow", "wandb")


@hookimpl
def mrunner_sweep_submitted(sweep: Any, runs: Any, reporter: Any) -> None:
    """Say that ``tracking: deferred`` has nothing to defer when the context enables no tracker to upload to
    (a warning, not a refusal: a context may keep the setting while a tracker is switched off for a run)."""
    context = sweep.context
    if context.get("tracking") == "deferred" and not any(context.get(name) for name in DEFERRABLE_TRACKERS):
        reporter.warn(
            f"context {sweep.context_name} has tracking: deferred but enables no tracker to upload to "
            f"(mlflow: true or wandb: true): the metrics stay in the experiments' folders, for `mrunner results`"
        )


@hookimpl
def mrunner_secrets(context: Mapping[str, Any]) -> dict[str, str]:
    return {name: os.environ[name] for name in context["secrets"] if name in os.environ}
