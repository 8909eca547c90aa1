"""Weights & Biases, a tracker plugin: the submitting side of it.

This module never imports ``wandb``; the experiment's side, which does, is ``mrunner.wandb_run``. Here the
context's ``wandb*`` keys are declared and checked, ``WANDB_API_KEY`` travels to the experiments only as a
secret, and the project, entity and mode as plain environment (W&B reads them itself). With ``tracking:
deferred`` the experiments get none of it: ``mrunner.uploads`` replays their metrics files from this machine.
Online and live, the server must answer at submission (``unanswered``), where nothing is recorded yet.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from mrunner import trackers
from mrunner.errors import MrunnerError
from mrunner.hookspecs import hookimpl
from mrunner.schema import key

KEY_VARIABLE = "WANDB_API_KEY"
MODE_VARIABLE = "WANDB_MODE"
#: Set to "1" in an experiment whose context has ``wandb: true``; ``mrunner.wandb_run`` reads it.
ENABLED_VARIABLE = "MRUNNER_WANDB"
MODES = ("online", "offline")
BASE_URL_VARIABLE = "WANDB_BASE_URL"
#: W&B's own server, where its client goes without ``WANDB_BASE_URL``.
DEFAULT_URL = "https://api.wandb.ai"
#: How long the submission's check waits for the server to answer (any HTTP answer will do).
CHECK_TIMEOUT = 5.0


def enabled(context: Mapping[str, Any]) -> bool:
    return bool(context.get("wandb"))


def mode(context: Mapping[str, Any]) -> str:
    return context.get("wandb_mode") or os.environ.get(MODE_VARIABLE) or "online"


def deferred(context: Mapping[str, Any]) -> bool:
    """Whether this machine, not the experiments, sends the context's metrics to W&B (``mrunner.uploads``
    replays them into each experiment's run)."""
    return enabled(context) and context.get("tracking") == "deferred"


def base_url(context: Mapping[str, Any]) -> str:
    """The W&B server: the context's ``env: {WANDB_BASE_URL: ...}``, else the shell's, else W&B's own."""
    return (context.get("env") or {}).get(BASE_URL_VARIABLE) or os.environ.get(BASE_URL_VARIABLE) or DEFAULT_URL


def unanswered(url: str) -> str | None:
    """Why the W&B server at ``url`` does not answer, or ``None`` when it answers anything (even an error)."""
    return trackers.unanswered(f"{url.rstrip('/')}/healthz", CHECK_TIMEOUT)


@dataclass(frozen=True, kw_only=True)
class WandbKeys:
    """The keys W&B adds to every context."""

    wandb: bool = key(
        False, help="track every experiment as a W&B run (needs `pip install mrunner[wandb]` where experiments run)"
    )
    wandb_project: str | None = key(None, help="the W&B project (default: the project's name)")
    wandb_entity: str | None = key(None, help="the W&B entity, a user or team (default: W&B's own default)")
    wandb_mode: str | None = key(
        None,
        help="online | offline (default: $WANDB_MODE, else online); offline writes the run into the experiment's "
        "folder, for `wandb sync`",
    )


@hookimpl
def mrunner_context_keys() -> type:
    return WandbKeys


@hookimpl
def mrunner_check(context: Mapping[str, Any], context_name: str, dry_run: bool) -> None:
    if KEY_VARIABLE in (context.get("env") or {}):
        raise MrunnerError(
            f"context {context_name} sets {KEY_VARIABLE} under `env`, which is recorded and shown: remove it and "
            f"export it in your shell (with `wandb: true` it is forwarded as a secret)"
        )
    if not enabled(context):
        return
    if deferred(context) and importlib.util.find_spec("wandb") is None:
        raise MrunnerError(
            f"context {context_name} defers W&B tracking to this machine, where the wandb client is not "
            f"installed: pip install 'mrunner[wandb]' (or set tracking: live)"
        )
    chosen = mode(context)
    if chosen not in MODES:
        source = "wandb_mode" if context.get("wandb_mode") else f"${MODE_VARIABLE} (the default of wandb_mode)"
        raise MrunnerError(f"context {context_name}: {source} {chosen!r} is not one of {', '.join(MODES)}")
    if chosen == "online" and not os.environ.get(KEY_VARIABLE):
        raise MrunnerError(
            f"context {context_name} tracks experiments in W&B online but {KEY_VARIABLE} is not set: export it, "
            f"or set wandb_mode: offline (then `wandb sync` the runs from the experiments' folders)"
        )
    if chosen == "online" and not deferred(context) and not dry_run:
        url = base_url(context)
        why = unanswered(url)
        if why is not None:
            raise MrunnerError(
                f"context {context_name} tracks experiments in W&B online, but the server at {url} does not answer "
                f"({why}): start it or fix {BASE_URL_VARIABLE}, or set tracking: deferred (this machine uploads "
                f"later) or wandb_mode: offline"
            )


@hookimpl
def mrunner_secrets(context: Mapping[str, Any]) -> dict[str, str]:
    if not enabled(context) or deferred(context) or not os.environ.get(KEY_VARIABLE):
        return {}
    return {KEY_VARIABLE: os.environ[KEY_VARIABLE]}


@hookimpl
def mrunner_experiment_env(context: Mapping[str, Any], parameters: Mapping[str, Any]) -> dict[str, str]:
    if not enabled(context) or deferred(context):
        return {}
    env = {ENABLED_VARIABLE: "1", MODE_VARIABLE: mode(context)}
    if os.environ.get(BASE_URL_VARIABLE) and BASE_URL_VARIABLE not in (context.get("env") or {}):
        env[BASE_URL_VARIABLE] = os.environ[BASE_URL_VARIABLE]  # the server the submission checked
    if context.get("wandb_project"):
        env["WANDB_PROJECT"] = str(context["wandb_project"])
    if context.get("wandb_entity"):
        env["WANDB_ENTITY"] = str(context["wandb_entity"])
    return env


@hookimpl
def mrunner_sweep_submitted(sweep: Any, runs: Sequence[Any], reporter: Any) -> None:
    if not enabled(sweep.context) or not runs:
        return
    project = sweep.context.get("wandb_project") or sweep.project
    if deferred(sweep.context) and mode(sweep.context) == "online":
        url = base_url(sweep.context)
        reason = unanswered(url)
        if reason is not None:
            reporter.warn(
                f"the W&B server {url} does not answer now ({reason}); the experiments' metrics wait in their "
                f"folders, and `mrunner results {sweep.id}` uploads them once it does"
            )
            return
    if deferred(sweep.context):
        reporter.step(
            f"W&B (deferred): `mrunner results`, `pull` or `status --wait` of {sweep.id} replays the metrics into "
            f"project {project!r}, group {sweep.id}"
        )
    elif mode(sweep.context) == "offline":
        reporter.step(
            f"W&B offline: each experiment's run is in its folder (wandb/), group {sweep.id}: `wandb sync` it"
        )
    else:
        reporter.step(f"W&B: runs in project {project!r}, group {sweep.id}")
