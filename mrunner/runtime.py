"""The experiment's side of mrunner as files, for backends to ship where experiments run (a folder on a
cluster, a layer of an image) when mrunner itself is not installed there.

These modules import only the standard library (``neptune`` only when an experiment asks for tracking), so
putting their folder on ``PYTHONPATH`` is all an experiment needs for ``from mrunner import
get_configuration``, ``mrunner.neptune_run()`` and the original mrunner's
``from mrunner.helpers.client_helper import get_configuration``.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

EXPERIMENT_MODULES = (
    "__init__.py",
    "client.py",
    "tracking.py",
    "metrics.py",
    "mlflow_run.py",
    "wandb_run.py",
    "sender.py",
    "layout.py",
    "configfile.py",
    "errors.py",
    "attempt.py",
    "codeview.py",
    "settling.py",
    "treeguard.py",
    "interrupts.py",
    "hydra_job.py",
    "helpers/__init__.py",
    "helpers/client_helper.py",
)


def experiment_side_files() -> dict[str, bytes]:
    """``{"mrunner/client.py": b"...", ...}``: the package as a folder on ``PYTHONPATH`` would hold it."""
    here = Path(__file__).resolve().parent
    return {f"mrunner/{name}": (here / name).read_bytes() for name in EXPERIMENT_MODULES}


def experiment_side_digest() -> str:
    """A short hash of those files: where a backend keeps one copy per version."""
    digest = hashlib.sha256()
    for name, data in sorted(experiment_side_files().items()):
        digest.update(name.encode() + b"\0" + hashlib.sha256(data).digest())
    return digest.hexdigest()[:16]
