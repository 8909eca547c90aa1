"""mrunner: run a grid of ML experiments on your machine, a Slurm cluster or Kubernetes.

Inside an experiment: ``from mrunner import get_configuration`` (``mrunner.checkpoint_dir()`` and
``mrunner.attempt()`` for resuming, ``mrunner.report({"loss": loss}, step=step)`` for what it measured) (and ``mrunner.neptune_run()`` for the run
``get_configuration(with_neptune=True)`` started). In a spec file:
``from mrunner import create_experiments``. A backend plugin subclasses ``mrunner.Backend`` and registers
it with ``@mrunner.hookimpl`` (docs/write-a-backend.md). Importing ``mrunner`` costs almost nothing: everything but
``get_configuration`` is loaded on first use.
"""

from mrunner.client import attempt, checkpoint_dir, get_configuration
from mrunner.metrics import report

__version__ = "0.2.0"
__all__ = [
    "get_configuration",
    "checkpoint_dir",
    "attempt",
    "report",
    "neptune_run",
    "create_experiments",
    "create_experiments_helper",
    "Experiment",
    "hookimpl",
    "Backend",
]

_LAZY = {
    "create_experiments": "mrunner.spec",
    "create_experiments_helper": "mrunner.helpers.specification_helper",
    "Experiment": "mrunner.experiment",
    "hookimpl": "mrunner.hookspecs",
    "Backend": "mrunner.backend",
    "neptune_run": "mrunner.tracking",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'mrunner' has no attribute {name!r}")
