"""The core's own plugin: the context keys every backend shares, and the secrets a context forwards."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from mrunner.errors import MrunnerError
from mrunner.hookspecs import hookimpl
from mrunner.schema import ContextKey

COMMON_KEYS = [
    ContextKey(
        "backend", "str", required=True, help="which backend runs the experiments (local, slurm, kubernetes, ...)"
    ),
    ContextKey("project", "str", help="project name (default: the project folder's name); names the k8s namespace"),
    ContextKey("python", "str", "python3", help="interpreter that runs a .py experiment script"),
    ContextKey("env", "dict", {}, help="environment variables (not secrets) set for every experiment"),
    ContextKey("secrets", "list", [], help="names of environment variables forwarded to experiments as secrets"),
    ContextKey("tags", "list", [], help="tags added to every experiment of this context"),
    ContextKey(
        "grace_period",
        "int",
        30,
        help="seconds an experiment gets to save after SIGTERM (cancel, Ctrl-C) before it is killed",
    ),
    ContextKey(
        "max_requeue",
        "int",
        3,
        help="times an experiment stopped by the platform (preempted, time limit, node or pod lost) is started "
        "again by itself as its next attempt",
    ),
    ContextKey(
        "retry_failed",
        "int",
        0,
        help="times an experiment whose script failed by itself (non-zero exit) is started again as its next attempt",
    ),
    ContextKey(
        "max_experiments",
        "int",
        10_000,
        minimum=1,
        help="a larger sweep is refused unless submitted with --yes (a typo like a=range(1000000) asks first)",
    ),  # fmt: skip
    ContextKey(
        "max_snapshot_mb",
        "int",
        200,
        minimum=1,
        help="a larger code snapshot is refused before it is copied: list data and outputs in .mrunnerignore",
    ),  # fmt: skip
]


@hookimpl
def mrunner_check(context: Mapping[str, Any], context_name: str) -> None:
    for key in ("grace_period", "max_requeue", "retry_failed"):
        if int(context.get(key) or 0) < 0:
            raise MrunnerError(f"context {context_name}: {key} must be 0 or more, got {context[key]}")
    names = context.get("secrets") or []
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


@hookimpl
def mrunner_secrets(context: Mapping[str, Any]) -> dict[str, str]:
    return {name: os.environ[name] for name in context.get("secrets") or [] if name in os.environ}
