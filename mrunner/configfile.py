"""The experiment's config file (``MRUNNER_CONFIG``): what mrunner wrote for one experiment, read back.

Every experiment pays for this module's imports when it calls ``get_configuration()``, on every backend, so
it imports only ``json``, ``os`` and ``sys`` (``mrunner.layout``, the rest of the contract, needs
``dataclasses``, whose import costs an experiment about as much as Python's own start-up:
benchmarks/results-core.md).
"""

from __future__ import annotations

import json
import os
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:  # the annotations only; ``typing`` is not imported at run time
    from typing import Any

CONFIG = "MRUNNER_CONFIG"


def experiment_info(path: str | None = None) -> dict[str, Any]:
    """Everything mrunner wrote for this experiment: ``parameters``, ``name``, ``id``, ``sweep``, ``tags``, ...

    Read from ``path`` if given, else from the file ``MRUNNER_CONFIG`` names.
    """
    path = path or os.environ.get(CONFIG)
    if not path:
        raise RuntimeError(
            f"{CONFIG} is not set: this script reads its parameters from mrunner. Run it with "
            f"`mrunner {os.path.basename(sys.argv[0] or 'script.py')} key=value ...`, or point "
            f"{CONFIG} at a YAML file with a `parameters:` mapping to run it by hand."
        )
    with open(path, encoding="utf-8") as stream:
        text = stream.read()
    try:
        document = json.loads(text)
    except ValueError:  # a YAML file written by hand
        import yaml

        document = yaml.safe_load(text)
    if not isinstance(document, dict) or not isinstance(document.get("parameters", {}), dict):
        raise RuntimeError(f"{path} ({CONFIG}) must be a mapping with a `parameters:` mapping")
    return document
