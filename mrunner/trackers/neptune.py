"""Neptune, the built-in tracker: the submitting side of it.

This module never imports ``neptune`` (seconds to import); the experiment's side, which does, is
``mrunner.tracking``. Here the context's ``neptune*`` keys are declared and checked, the API token travels to
the experiments only as a secret (``mrunner_secrets``), the project and mode as plain environment
(``mrunner_experiment_env``), and after submission the user is told where the sweep is in Neptune.

Credentials come from the environment (``NEPTUNE_API_TOKEN``, ``NEPTUNE_PROJECT``), else from
``~/.neptune.yaml`` (the original mrunner's file: ``api_token:`` and ``project:``); a context's
``neptune_project`` names the project before either. Neptune's own variables of the submitting shell
(``NEPTUNE_MODE``, ``NEPTUNE_PROJECT`` and its tuning ones, ``FORWARDED``) apply wherever the context does
not set the matching key, and travel with each experiment's environment, so they hold on every backend,
not only on this machine.
"""

from __future__ import annotations

import base64
import functools
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from mrunner import trackers
from mrunner.errors import MrunnerError
from mrunner.hookspecs import hookimpl
from mrunner.schema import key

TOKEN_VARIABLE = "NEPTUNE_API_TOKEN"
PROJECT_VARIABLE = "NEPTUNE_PROJECT"
MODE_VARIABLE = "NEPTUNE_MODE"
#: Set to "1" in an experiment whose context has ``neptune: true``; ``mrunner.tracking`` reads it.
ENABLED_VARIABLE = "MRUNNER_NEPTUNE"
#: Neptune's modes that create runs (its fifth, read-only, only opens existing ones: refused by the check).
MODES = ("async", "sync", "offline", "debug")
#: Modes that never talk to a Neptune server: no token, no project needed.
LOCAL_MODES = ("offline", "debug")
DEFAULT_APP_URL = "https://app.neptune.ai"
#: Neptune's settings read from its environment variables (neptune/envs.py) that have no context key:
#: taken from the submitting shell into each experiment's environment unless the context's ``env`` sets them.
FORWARDED = (
    "NEPTUNE_ALLOW_SELF_SIGNED_CERTIFICATE",
    "NEPTUNE_REQUEST_TIMEOUT",
    "NEPTUNE_RETRIES_TIMEOUT",
    "NEPTUNE_MONITORING_NAMESPACE",
    "NEPTUNE_SYNC_BATCH_TIMEOUT",
    "NEPTUNE_SYNC_AFTER_STOP_TIMEOUT",
    "NEPTUNE_SUBPROCESS_KILL_TIMEOUT",
    "NEPTUNE_MAX_DISK_USAGE",
    "NEPTUNE_RAISE_ERROR_ON_DISK_USAGE_EXCEEDED",
    "NEPTUNE_ASYNC_BATCH_SIZE",
    "NEPTUNE_ENABLE_DEFAULT_ASYNC_LAG_CALLBACK",
    "NEPTUNE_ENABLE_DEFAULT_ASYNC_NO_PROGRESS_CALLBACK",
)


@dataclass(frozen=True)
class Credentials:
    token: str | None
    project: str | None


def config_file() -> Path:
    """The original mrunner's (and the old Neptune CLI's) global configuration file."""
    return Path.home() / ".neptune.yaml"


def credentials(context: Mapping[str, Any] | None = None) -> Credentials:
    """The API token and project: environment first, then ``~/.neptune.yaml``; ``neptune_project`` wins."""
    token = os.environ.get(TOKEN_VARIABLE) or None
    project = (context or {}).get("neptune_project") or os.environ.get(PROJECT_VARIABLE) or None
    if token is None or project is None:
        stored = _read_config_file()
        token = token or _text(stored.get("api_token"))
        project = project or _text(stored.get("project"))
    return Credentials(token, project)


def _read_config_file() -> dict[str, Any]:
    path = config_file()
    try:
        stamp = path.stat().st_mtime_ns
    except OSError:
        return {}
    return _parse_config_file(str(path), stamp)


@functools.lru_cache(maxsize=4)
def _parse_config_file(name: str, stamp: int) -> dict[str, Any]:
    """Parsed once per version of the file: ``mrunner_experiment_env`` asks for every experiment."""
    import yaml

    path = Path(name)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as error:
        raise MrunnerError(f"cannot read {path}: {type(error).__name__}; fix or remove it") from None
    return dict(data) if isinstance(data, dict) else {}


def _text(value: Any) -> str | None:
    return str(value) if value not in (None, "") else None


def _enabled(context: Mapping[str, Any]) -> bool:
    return bool(context.get("neptune"))


def _mode(context: Mapping[str, Any]) -> str:
    """The context's ``neptune_mode`` (or ``NEPTUNE_MODE`` in its ``env``), else ``$NEPTUNE_MODE`` (as
    Neptune's docs tell users to export), else async."""
    own = context.get("env") or {}
    return context.get("neptune_mode") or own.get(MODE_VARIABLE) or os.environ.get(MODE_VARIABLE) or "async"


def _mode_source(context: Mapping[str, Any]) -> str:
    if context.get("neptune_mode"):
        return "neptune_mode"
    return f"env {MODE_VARIABLE}" if MODE_VARIABLE in (context.get("env") or {}) else f"${MODE_VARIABLE}"


@dataclass(frozen=True, kw_only=True)
class NeptuneKeys:
    """The keys Neptune adds to every context."""

    neptune: bool = key(False, help="track every experiment as a Neptune run (needs `pip install mrunner[neptune]`)")
    neptune_project: str | None = key(
        None, help="Neptune project WORKSPACE/NAME (default: $NEPTUNE_PROJECT or ~/.neptune.yaml)"
    )
    neptune_mode: str | None = key(
        None,
        help=f"Neptune connection mode: {'|'.join(MODES)} (default: $NEPTUNE_MODE, else async); offline writes "
        f".neptune/ in each experiment's folder",
    )


@hookimpl
def mrunner_context_keys() -> type:
    return NeptuneKeys


def live(context: Mapping[str, Any]) -> bool:
    """Whether the context's experiments send their runs to a Neptune server themselves (async or sync mode):
    then the server must answer at submission, and ``mrunner.uploads`` catches up an experiment that lost it."""
    return _enabled(context) and _mode(context) not in LOCAL_MODES


#: How long the submission's check waits for the Neptune server to answer (any HTTP answer will do).
CHECK_TIMEOUT = 5.0


def unanswered(url: str) -> str | None:
    """Why the Neptune server at ``url`` does not answer, or ``None`` when it answers anything (even an error)."""
    return trackers.unanswered(f"{url.rstrip('/')}/api/backend/swagger.json", CHECK_TIMEOUT)


@hookimpl
def mrunner_check(context: Mapping[str, Any], context_name: str, dry_run: bool) -> None:
    if TOKEN_VARIABLE in (context.get("env") or {}):
        raise MrunnerError(
            f"context {context_name} sets {TOKEN_VARIABLE} under `env`, which is recorded and shown: "
            f"remove it and export it in your shell (with `neptune: true` it is forwarded as a secret)"
        )
    if not _enabled(context):
        return
    mode = _mode(context)
    if mode == "read-only":
        raise MrunnerError(
            f"context {context_name}: {_mode_source(context)} read-only only opens existing Neptune runs, and every "
            f"experiment creates one: use {', '.join(MODES)}"
        )
    if mode not in MODES:
        raise MrunnerError(f"context {context_name}: {_mode_source(context)} {mode!r} is not one of {', '.join(MODES)}")
    if mode in LOCAL_MODES:
        return
    found = credentials(context)
    fallback = f"or set neptune_mode: offline, or neptune: false in context {context_name}"
    if not found.token:
        raise MrunnerError(
            f"context {context_name} tracks experiments in Neptune but no API token was found: "
            f"export {TOKEN_VARIABLE}=... or put `api_token:` in {config_file()} ({fallback})"
        )
    if not found.project:
        raise MrunnerError(
            f"context {context_name} tracks experiments in Neptune but names no project: set neptune_project: "
            f"WORKSPACE/NAME, export {PROJECT_VARIABLE}=WORKSPACE/NAME or put `project:` in {config_file()} ({fallback})"
        )
    if dry_run:
        return
    url = app_url()
    why = unanswered(url)
    if why is not None:
        hosted = "; Neptune's hosted service has shut down" if url == DEFAULT_APP_URL else ""
        raise MrunnerError(
            f"context {context_name} tracks experiments in Neptune ({mode}), but the server at {url} does not "
            f"answer ({why}{hosted}): start it (a self-hosted server's API token names it), {fallback}"
        )


@hookimpl
def mrunner_secrets(context: Mapping[str, Any]) -> dict[str, str]:
    if not _enabled(context) or _mode(context) in LOCAL_MODES:
        return {}
    token = credentials(context).token
    return {TOKEN_VARIABLE: token} if token else {}


@hookimpl
def mrunner_experiment_env(context: Mapping[str, Any], parameters: Mapping[str, Any]) -> dict[str, str]:
    if not _enabled(context):
        return {}
    env = {ENABLED_VARIABLE: "1", MODE_VARIABLE: _mode(context)}
    project = credentials(context).project
    if project:
        env[PROJECT_VARIABLE] = project
    own = context.get("env") or {}
    for name in FORWARDED:
        if name in os.environ and name not in own:
            env[name] = os.environ[name]
    if PROJECT_VARIABLE in own and not context.get("neptune_project"):
        env[PROJECT_VARIABLE] = str(own[PROJECT_VARIABLE])  # the context sets it: it wins over the shell
    return env


@hookimpl
def mrunner_sweep_submitted(sweep: Any, runs: Sequence[Any], reporter: Any) -> None:
    if not _enabled(sweep.context) or not runs:
        return
    mode = runs[0].env.get(MODE_VARIABLE) or _mode(sweep.context)
    if mode == "offline":
        reporter.step(
            f"neptune: offline; each experiment writes .neptune/ in its own folder, tagged {sweep.id}; "
            f"upload with `neptune sync --path EXPERIMENT_FOLDER`"
        )
    elif mode == "debug":
        reporter.step("neptune: debug mode; runs stay in each experiment's memory")
    else:
        project = runs[0].env.get(PROJECT_VARIABLE) or credentials(sweep.context).project
        reporter.step(f"neptune: experiments tagged {sweep.id} at {sweep_url(project, sweep.id)}")


def sweep_url(project: str | None, tag: str) -> str:
    """The project's runs table in the Neptune app, filtered to the runs carrying ``tag``."""
    query = f'(`sys/tags`:stringSet CONTAINS "{tag}")'
    return f"{app_url()}/{project or 'WORKSPACE/PROJECT'}/runs/table?query={quote(query, safe='')}"


def app_url() -> str:
    """The Neptune app's address, as encoded in the API token (self-hosted servers differ); never the token."""
    token = credentials().token
    if token:
        try:
            decoded = json.loads(base64.b64decode(token.encode(), validate=False).decode("utf-8"))
            address = decoded.get("api_url") or decoded.get("api_address")
            if isinstance(address, str) and address.startswith(("http://", "https://")):
                return address.rstrip("/")
        except (ValueError, UnicodeDecodeError, AttributeError):
            pass
    return DEFAULT_APP_URL
