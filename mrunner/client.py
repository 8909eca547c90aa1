"""The experiment's side: ``get_configuration()`` reads the parameters mrunner gave this process.

Everything here is paid once per experiment, so it imports only the standard library: the config file is
written as JSON, which is also valid YAML, and read back with ``json``.
"""

from __future__ import annotations

import os

from mrunner.configfile import experiment_info

TYPE_CHECKING = False
if TYPE_CHECKING:  # the annotations only: an experiment does not pay for importing ``typing``
    from typing import Any

__all__ = ["Config", "experiment_info", "get_configuration"]

CONFIG_VARIABLE = "MRUNNER_CONFIG"
CHECKPOINT_VARIABLE = "MRUNNER_CHECKPOINT_DIR"  # the names of mrunner.layout's contract
ATTEMPT_VARIABLE = "MRUNNER_ATTEMPT"


class Config(dict):
    """The parameters: a dict whose keys also read as attributes, nested mappings included."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(f"no parameter {name!r}; parameters: {', '.join(self) or 'none'}") from None

    def __setattr__(self, name: str, value: Any) -> None:
        self[name] = value


def _wrap(value: Any) -> Any:
    if isinstance(value, dict):
        return Config({key: _wrap(item) for key, item in value.items()})
    if isinstance(value, list):
        return [_wrap(item) for item in value]
    return value


def get_configuration(print_diagnostics: bool = False, with_neptune: bool = False) -> Config:
    """The experiment's parameters, with attribute and key access (``config.lr`` or ``config["lr"]``).

    The script's own command-line flags are left alone. ``print_diagnostics`` prints the parameters and the
    experiment's identity. ``with_neptune`` starts the Neptune run for this experiment (name, tags,
    parameters, system facts) and makes it available as ``mrunner.neptune_run()``.
    """
    info = experiment_info()
    config = _wrap(info.get("parameters") or {})
    if print_diagnostics:
        print(f"mrunner experiment {info.get('name')} ({info.get('id')}) of sweep {info.get('sweep')}", flush=True)
        for key, value in config.items():
            print(f"  {key} = {value!r}", flush=True)
    if with_neptune:
        from mrunner.tracking import start_neptune_run

        if os.environ.get("MRUNNER_NEPTUNE") == "1":  # mrunner.tracking.ENABLED_VARIABLE
            from mrunner.metrics import start_forwarding

            start_forwarding()  # the metrics file, where a run that does not start is noted for the catch-up

        start_neptune_run(info)
    if os.environ.get("MRUNNER_WANDB") == "1":  # mrunner.wandb_run.ENABLED_VARIABLE
        from mrunner.tracking import join_runs

        join_runs(info)
    if os.environ.get("MRUNNER_MLFLOW") == "1":
        from mrunner.metrics import start_forwarding

        start_forwarding()  # the sender finds the run, this thread waiting for it sender.START_SECONDS at most
    return config


def checkpoint_dir() -> str:
    """This experiment's checkpoint folder: the same for every attempt (a requeue after preemption or the
    time limit, a `mrunner resume`), and its own, so a script resumes by loading what it saved there."""
    path = os.environ.get(CHECKPOINT_VARIABLE)
    if not path:
        raise RuntimeError(
            f"{CHECKPOINT_VARIABLE} is not set: this script is not run by mrunner; set it to a folder to run it by hand"
        )
    os.makedirs(path, exist_ok=True)
    return path


def attempt() -> int:
    """Which attempt of this experiment this process is: 0 for the first, then 1, 2, ... (0 outside mrunner)."""
    return int(os.environ.get(ATTEMPT_VARIABLE) or 0)
