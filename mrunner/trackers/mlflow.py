"""MLflow, a tracker plugin: the submitting side of it.

This module never imports ``mlflow``; the experiment's side, which does, is ``mrunner.mlflow_run``. Here the
context's ``mlflow*`` keys are declared and checked (a server that does not answer is refused before anything
is recorded), credentials travel to the experiments only as secrets, and the tracking URI and experiment name
as plain environment.

Credentials are MLflow's own variables of the submitting shell: ``MLFLOW_TRACKING_TOKEN``, or
``MLFLOW_TRACKING_USERNAME`` and ``MLFLOW_TRACKING_PASSWORD``.

With ``tracking: deferred`` (compute nodes without network) the experiments get nothing of MLflow, neither
its address nor its credentials: they only write their metrics files, and ``mrunner.uploads`` sends those
from this machine. A server down at submission is then a warning, not a refusal.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from mrunner import trackers
from mrunner.errors import MrunnerError, mask_credentials
from mrunner.hookspecs import hookimpl
from mrunner.schema import key

URI_VARIABLE = "MLFLOW_TRACKING_URI"
EXPERIMENT_VARIABLE = "MLFLOW_EXPERIMENT_NAME"
#: Set to "1" in an experiment whose context has ``mlflow: true``; ``mrunner.mlflow_run`` reads it.
ENABLED_VARIABLE = "MRUNNER_MLFLOW"
SECRETS = ("MLFLOW_TRACKING_TOKEN", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")
#: How long the check at submission waits for the server to answer.
CHECK_TIMEOUT = 10.0


def enabled(context: Mapping[str, Any]) -> bool:
    """Whether the context tracks its experiments in MLflow (live or deferred)."""
    return bool(context.get("mlflow"))


def deferred(context: Mapping[str, Any]) -> bool:
    """Whether this machine, not the experiments, sends the context's metrics to MLflow."""
    return enabled(context) and context.get("tracking") == "deferred"


def experiment_name(context: Mapping[str, Any], project: str) -> str:
    """The MLflow experiment a sweep's runs go into: the context's ``mlflow_experiment``, else the project."""
    return str(context.get("mlflow_experiment") or project)


def unanswered(uri: str) -> str | None:
    """Why the server at ``uri`` does not answer its health check, or ``None`` when it does (or when ``uri``
    is no HTTP server, such as a local ``file:`` store, which needs no answer)."""
    if not uri.startswith(("http://", "https://")):
        return None
    return trackers.unanswered(f"{uri.rstrip('/')}/health", CHECK_TIMEOUT, errors_answer=False)


def deleted(uri: str, experiment: str) -> str | None:
    """The id of MLflow experiment ``experiment`` when the server at ``uri`` holds it deleted (in its trash,
    where no run can be made in it), else ``None`` (live, absent, or not known: no HTTP server, credentials it
    refuses, an answer of another shape). Asked of the REST API directly, with the shell's credentials in
    the request's header: the submitting machine need not have the mlflow client."""
    if not uri.startswith(("http://", "https://")):
        return None
    import base64
    import json
    import urllib.error
    import urllib.parse
    import urllib.request

    query = urllib.parse.urlencode({"experiment_name": experiment})
    request = urllib.request.Request(f"{uri.rstrip('/')}/api/2.0/mlflow/experiments/get-by-name?{query}")
    token, user, password = (os.environ.get(name) for name in SECRETS)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    elif user and password:
        request.add_header("Authorization", "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=CHECK_TIMEOUT) as response:
            found = json.load(response).get("experiment") or {}
    except (urllib.error.URLError, OSError, ValueError, AttributeError):
        return None
    return str(found.get("experiment_id")) if found.get("lifecycle_stage") == "deleted" else None


#: The tracking URI schemes MLflow itself knows (``mlflow.tracking._tracking_service.utils``): a local store
#: (a path, ``file:``), a server, Databricks, and SQLAlchemy databases (``postgresql+psycopg2`` too).
KNOWN_SCHEMES = ("", "file", "http", "https", "databricks", "databricks-uc", "uc")
DATABASE_SCHEMES = ("postgresql", "mysql", "sqlite", "mssql")
#: The entry point group of MLflow's tracking store plugins, which add schemes of their own.
STORE_PLUGINS = "mlflow.tracking_store"


def unknown_scheme(uri: str) -> str | None:
    """The scheme of ``uri`` when MLflow would not know it (none of its own, of no installed store plugin),
    else ``None``: checked here, because the experiments would only warn about it on their first report.
    ``ValueError`` when ``uri`` is no URI at all (``http://[::1:5000``)."""
    import urllib.parse

    scheme = urllib.parse.urlparse(uri).scheme.lower()
    if scheme in KNOWN_SCHEMES or scheme.split("+")[0] in DATABASE_SCHEMES:
        return None
    from importlib.metadata import entry_points

    if any(point.name == scheme for point in entry_points(group=STORE_PLUGINS)):
        return None
    return scheme


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
    if not enabled(context):
        return
    uri = tracking_uri(context)
    if not uri:
        raise MrunnerError(
            f"context {context_name} tracks experiments in MLflow but names no server: set mlflow_tracking_uri: "
            f"http://HOST:PORT or export {URI_VARIABLE}=... (or mlflow: false)"
        )
    try:
        scheme = unknown_scheme(uri)
    except ValueError as error:  # no URI at all (http://[::1:5000): urllib cannot even split it
        raise MrunnerError(
            f"context {context_name}: the MLflow tracking URI {uri} is malformed ({error}): use http://HOST:PORT, "
            f"http://[IPV6]:PORT, a folder (file:///PATH) or a database (sqlite:///FILE.db, postgresql://...)"
        ) from None
    if scheme is not None:
        raise MrunnerError(
            f"context {context_name}: MLflow knows no tracking URI scheme {scheme!r} ({uri}): use http://HOST:PORT, "
            f"https://..., a folder (file:///PATH) or a database (sqlite:///FILE.db, postgresql://...)"
        )
    _refuse_credentials(uri, context_name)
    if deferred(context):
        if importlib.util.find_spec("mlflow") is None:
            raise MrunnerError(
                f"context {context_name} defers MLflow tracking to this machine, where the mlflow client is not "
                f"installed: pip install 'mrunner[mlflow]' (or set tracking: live)"
            )
        return  # a server down now is a warning (mrunner_sweep_submitted): the upload waits for it
    if dry_run:
        return
    reason = unanswered(uri)
    if reason is not None:
        raise MrunnerError(
            f"the MLflow server {uri} of context {context_name} does not answer ({reason}): start it, or "
            f"set mlflow: false"
        )
    _refuse_deleted(uri, context, context_name)


def _refuse_credentials(uri: str, context_name: str) -> None:
    """An HTTP tracking URI holding credentials (``http://user:password@host``, or a token in its query) would
    be recorded and shown with the context (or reach the experiments as plain environment, from the shell's
    ``MLFLOW_TRACKING_URI``), and the server check cannot send them; they are not repeated in the refusal
    (``errors.mask_credentials``, the one rule of what is a credential)."""
    shown = mask_credentials(uri)
    if uri.lower().startswith(("http://", "https://")) and shown != uri:
        raise MrunnerError(
            f"context {context_name}: the MLflow tracking URI {shown} holds credentials, which would be recorded "
            f"and shown: take them out of it and export MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD (or "
            f"MLFLOW_TRACKING_TOKEN) in your shell, which reach the experiments as secrets only"
        )


def _refuse_deleted(uri: str, context: Mapping[str, Any], context_name: str) -> None:
    """A context's ``mlflow_experiment`` that the server holds deleted: no experiment could make its run, and
    no catch-up upload either, so it is refused now (the default experiment, the project's name, is not
    known yet here: its runs are refused at their first report, each saying why)."""
    named = context.get("mlflow_experiment")
    identity = deleted(uri, str(named)) if named else None
    if identity is not None:
        raise MrunnerError(
            f"the MLflow experiment {named!r} of context {context_name} is deleted at {uri}: restore it "
            f"(`mlflow experiments restore --experiment-id {identity}`), or name another mlflow_experiment"
        )


@hookimpl
def mrunner_secrets(context: Mapping[str, Any]) -> dict[str, str]:
    if not enabled(context) or deferred(context):
        return {}  # deferred: the credentials stay on this machine, which uploads
    return {name: os.environ[name] for name in SECRETS if os.environ.get(name)}


@hookimpl
def mrunner_experiment_env(context: Mapping[str, Any], parameters: Mapping[str, Any]) -> dict[str, str]:
    if not enabled(context) or deferred(context):
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
    if not enabled(sweep.context) or not runs:
        return
    uri = runs[0].env.get(URI_VARIABLE) or tracking_uri(sweep.context)
    experiment = experiment_name(sweep.context, sweep.project)
    if not deferred(sweep.context):
        reporter.step(f"MLflow: runs in experiment {experiment!r} at {uri}, tagged mrunner.sweep={sweep.id}")
        return
    reason = unanswered(uri or "")
    if reason is not None:
        reporter.warn(
            f"the MLflow server {uri} does not answer now ({reason}); the experiments' metrics wait in their "
            f"folders, and `mrunner results {sweep.id}` uploads them once it does"
        )
    else:
        reporter.step(
            f"MLflow (deferred): `mrunner results`, `pull` or `status --wait` of {sweep.id} uploads the runs into "
            f"experiment {experiment!r} at {uri}"
        )
