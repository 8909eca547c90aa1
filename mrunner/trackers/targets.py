"""Which trackers this machine tells about a sweep's experiments after they ran: one rule for the uploads
(``mrunner.uploads``) and for the end of a sweep a command waited for (``commands.run.tell_trackers``), so
that a sweep is never told at one and left alone at the other."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mrunner.trackers import mlflow, neptune, wandb


def told_from_here(context: Mapping[str, Any]) -> dict[str, bool]:
    """The trackers (``mlflow``, ``wandb``, ``neptune``) this machine sends a sweep's metrics to, each with
    whether it is deferred (every metric goes from here) or live (only the catch-up of an experiment that
    stopped forwarding, and MLflow's runs ended): MLflow when enabled, W&B when deferred or online, Neptune
    when live. W&B offline and Neptune's local modes keep their runs where the experiments wrote them.
    Empty: nothing to tell."""
    told = {}
    if mlflow.enabled(context):
        told["mlflow"] = mlflow.deferred(context)
    if wandb.deferred(context) or (wandb.enabled(context) and wandb.mode(context) == "online"):
        told["wandb"] = wandb.deferred(context)
    if neptune.live(context):
        told["neptune"] = False
    return told
