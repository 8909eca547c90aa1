"""mrunner: run a grid of ML experiments on your machine, a Slurm cluster or Kubernetes.

Inside an experiment: ``from mrunner import get_configuration`` (``mrunner.checkpoint_dir()`` and
``mrunner.attempt()`` for resuming, ``mrunner.report({"loss": loss}, step=step)`` for what it measured) (and ``mrunner.neptune_run()`` for the run
``get_configuration(with_neptune=True)`` started). In a spec file:
``from mrunner import create_experiments``. A backend plugin subclasses ``mrunner.Backend`` and registers
it with ``@mrunner.hookimpl`` (docs/write-a-backend.md). Importing ``mrunner`` costs almost nothing: everything but
``get_configuration`` is loaded on first use.
"""

import sys


def _run_as_main() -> bool:
    """Whether Python is locating ``mrunner`` to run it (``python -m mrunner``): argv[0] is "-m" meanwhile, and
    the first ``-m`` option names the module; ``python -m their_package`` importing mrunner does not match."""
    if sys.argv[:1] != ["-m"]:
        return False
    options = sys.orig_argv[1:]
    for at, option in enumerate(options):
        if option.startswith("-m"):
            return (option[2:] or "".join(options[at + 1 : at + 2])) == "mrunner"
    return False


if _run_as_main():
    # `python -m mrunner` runs this file before `__main__`: Ctrl-C from here on ends the start quietly with one
    # line and 130, as the console script's `mrunner_entry` makes it
    from mrunner_entry import quiet_start

    quiet_start()

from mrunner.client import attempt, checkpoint_dir, get_configuration  # noqa: E402
from mrunner.metrics import report  # noqa: E402

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
