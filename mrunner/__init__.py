"""mrunner: run a grid of ML experiments on your machine, a Slurm cluster or Kubernetes.

Inside an experiment: ``from mrunner import get_configuration`` (``mrunner.checkpoint_dir()`` and
``mrunner.attempt()`` for resuming, ``mrunner.report({"loss": loss}, step=step)`` for what it measured) (and ``mrunner.neptune_run()`` for the run
``get_configuration(with_neptune=True)`` started). In a spec file:
``from mrunner import create_experiments``. A backend plugin subclasses ``mrunner.Backend`` and registers
it with ``@mrunner.hookimpl`` (docs/write-a-backend.md). Importing ``mrunner`` costs almost nothing: everything but
``get_configuration`` is loaded on first use.
"""

import sys


def _run_as_main() -> str | None:
    """The module Python is locating to run when it is mrunner's (``python -m mrunner``, the attempt's wrapper
    ``python -m mrunner.attempt``): argv[0] is "-m" meanwhile, and the first ``-m`` option names the module;
    ``python -m their_package`` importing mrunner does not match."""
    if sys.argv[:1] != ["-m"]:
        return None
    options = sys.orig_argv[1:]
    for at, option in enumerate(options):
        if option.startswith("-m"):
            named = option[2:] or "".join(options[at + 1 : at + 2])
            return named if named in ("mrunner", "mrunner.attempt") else None
    return None


_MAIN = _run_as_main()
if _MAIN == "mrunner":
    # `python -m mrunner` runs this file before `__main__`: Ctrl-C (SIGTERM, SIGHUP) from here on ends the start
    # quietly with one line and 128 + the signal, as the console script's `mrunner_entry` makes it
    from mrunner_entry import quiet_start

    quiet_start()
elif _MAIN == "mrunner.attempt":
    # the attempt's wrapper, as a backend starts it: a SIGINT before the wrapper's own handlers are in (the first
    # lines of `mrunner.attempt.main`) ends it by the signal, as a SIGTERM then does, not with a traceback of the
    # import it cut in the attempt's log; an ignored SIGINT stays ignored
    import _signal

    if _signal.getsignal(_signal.SIGINT) is _signal.default_int_handler:
        _signal.signal(_signal.SIGINT, _signal.SIG_DFL)

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
