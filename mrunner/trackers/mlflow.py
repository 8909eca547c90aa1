"""MLflow, a tracker plugin: the submitting side of it.

This module never imports ``mlflow``; the experiment's side, which does, is ``mrunner.mlflow_run``. Here the
context's ``mlflow*`` keys are declared and checked (a server that does not answer is refused before anything
is recorded), credentials travel to the experiments only as secrets, and the tracking URI and experiment name
as plain environment.

Credentials are MLflow's own variables of the submitting shell: ``MLFLOW_TRACKING_TOKEN``, or
``MLFLOW_TRACKING_USERNAME`` and ``MLFLOW_TRACKING_PASSWORD``.
"""

from __future__ import annotations

import os
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from mrunner.errors import MrunnerError
from mrunner.hookspecs import hookimpl
from mrunner.schema import key

URI_VARIABLE = "MLFLOW_TRACKING_URI"
EXPERIMENT_VARIABLE = "MLFLOW_EXPERIMENT_NAME"
#: Set to "1" in an experiment whose context has ``mlflow: true``; ``mrunner.mlflow_run`` reads it.
ENABLED_VARIABLE = "MRUNNER_MLFLOW"
SECRETS = ("MLFLOW_TRACKING_TOKEN", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")
#: How long the check at submission waits for the server to answer.
CHECK_TIMEOUT = 10.0


def _enabled(context: Mapping[str, Any]) -> bool:
    return bool(context.get("mlflow"))


def tracking_uri(context: Mapping[str, Any]) -> str | None:
    """The context's ``mlflow_tracking_uri``, else ``$MLFLOW_TRACKING_URI`` of the submitting shell."""
    return context.get("mlflow_tracking_uri") or os.environ.get(URI_VARIABLE) or None


@dataclass(frozen=True, kw_only=True)
class MlflowKeys:
    """The keys MLflow adds to every context."""

    mlflow: bool = key(
        False,
        help="track every experiment as an MLflow run (needs `pip install mrunner[mlflow]` where experiments run)",
    )
    mlflow_tracking_uri: str | None = key(None, help="the MLflow tracking server (default: $MLFLOW_TRACKING_URI)")
    mlflow_experiment: str | None = key(
        None, help="the MLflow experiment the runs go into (default: the project's name)"
    )


@hookimpl
def mrunner_context_keys() -> type:
    return MlflowKeys


@hookimpl
def mrunner_check(context: Mapping[str, Any], context_name: str, dry_run: bool) -> None:
    own = context.get("env") or {}
    for name in SECRETS:
        if name in own:
            raise MrunnerError(
                f"context {context_name} sets {name} under `env`, which is recorded and shown: remove it and export "
                f"it in your shell (with `mlflow: true` it is forwarded as a secret)"
            )
    if not _enabled(context):
        return
    uri = tracking_uri(context)
    if not uri:
        raise MrunnerError(
            f"context {context_name} tracks experiments in MLflow but names no server: set mlflow_tracking_uri: "
            f"http://HOST:PORT or export {URI_VARIABLE}=... (or mlflow: false)"
        )
    if dry_run or not uri.startswith(("http://", "https://")):
        return
    try:
        with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=CHECK_TIMEOUT):
            pass
    except (urllib.error.URLError, OSError, ValueError) as error:
        reason = getattr(error, "reason", error)
        raise MrunnerError(
            f"the MLflow server {uri} of context {context_name} does not answer ({reason}): start it, or "
            f"set mlflow: false"
        ) from None


@hookimpl
def mrunner_secrets(context: Mapping[str, Any]) -> dict[str, str]:
    if not _enabled(context):
        return {}
    return {name: os.environ[name] for name in SECRETS if os.environ.get(name)}


@hookimpl
def mrunner_experiment_env(context: Mapping[str, Any], parameters: Mapping[str, Any]) -> dict[str, str]:
    if not _enabled(context):
        return {}
    env = {ENABLED_VARIABLE: "1"}
    uri = tracking_uri(context)
    if uri:
        env[URI_VARIABLE] = uri
    if context.get("mlflow_experiment"):
        env[EXPERIMENT_VARIABLE] = str(context["mlflow_experiment"])
    return env


@hookimpl
def mrunner_sweep_submitted(sweep: Any, runs: Sequence[Any], reporter: Any) -> None:
    if not _enabled(sweep.context) or not runs:
        return
    uri = runs[0].env.get(URI_VARIABLE) or tracking_uri(sweep.context)
    experiment = sweep.context.get("mlflow_experiment") or sweep.project
    reporter.step(f"MLflow: runs in experiment {experiment!r} at {uri}, tagged mrunner.sweep={sweep.id}")
