"""``mrunner.trackers.targets.told_from_here``: the one rule of which trackers this machine tells after a sweep,
shared by the uploads and by the end of a waited sweep (`run --wait`, `status --wait`)."""

from __future__ import annotations

import pytest

from mrunner import uploads
from mrunner.records import Sweep
from mrunner.trackers.targets import told_from_here


@pytest.mark.parametrize(
    "context, told",
    [
        ({}, {}),
        ({"mlflow": True}, {"mlflow": False}),
        ({"mlflow": True, "tracking": "deferred"}, {"mlflow": True}),
        ({"wandb": True}, {"wandb": False}),
        ({"wandb": True, "wandb_mode": "offline"}, {}),  # its runs stay where the experiments wrote them
        ({"wandb": True, "wandb_mode": "offline", "tracking": "deferred"}, {"wandb": True}),
        ({"neptune": True, "neptune_mode": "async"}, {"neptune": False}),
        ({"neptune": True, "neptune_mode": "offline"}, {}),
        ({"mlflow": True, "wandb": True, "tracking": "deferred"}, {"mlflow": True, "wandb": True}),
    ],
)
def test_which_trackers_are_told_and_the_uploads_ask_the_same(context, told, monkeypatch):
    for variable in ("WANDB_MODE", "NEPTUNE_MODE"):  # the shell's modes, which a context without its own follows
        monkeypatch.delenv(variable, raising=False)
    assert told_from_here(context) == told
    sweep = Sweep("s", "n", 0.0, "c", "local", context, "p", "d", "/p")
    assert uploads.uploading(sweep) == bool(told)
    assert uploads.deferred(sweep) == any(told.values())
