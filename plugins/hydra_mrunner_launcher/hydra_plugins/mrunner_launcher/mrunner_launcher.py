"""Hydra's ``mrunner`` launcher: a multirun's jobs become an mrunner sweep on any of mrunner's backends.

The class is small and imports nothing heavy: ``launch`` imports the flow (``_core``) when it is used, so
Hydra's plugin discovery stays fast.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from hydra.core.utils import JobReturn
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig


class MrunnerLauncher(Launcher):
    """Submits each batch of jobs as one mrunner sweep, waits for it to end, and returns one ``JobReturn``
    per job. ``options`` are ``hydra.launcher.*`` (see ``options.py``)."""

    def __init__(self, **options: Any) -> None:
        self.options = options
        self.config: DictConfig | None = None
        self.task_function: TaskFunction | None = None
        self.hydra_context: HydraContext | None = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config = config
        self.task_function = task_function
        self.hydra_context = hydra_context

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        from hydra_plugins.mrunner_launcher import _core

        return _core.launch(self, job_overrides, initial_job_idx)
