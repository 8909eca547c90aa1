"""The loopback services some tests need (a Slurm cluster behind sshd, a Kubernetes cluster with its Docker engine
and registries), as the scripts in the repository's tests/services started them."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest


def services_dir() -> Path:
    """Where the start scripts write each service's state file (``MRUNNER_SERVICES_DIR``)."""
    return Path(os.environ.get("MRUNNER_SERVICES_DIR", "/tmp/mrunner-services"))


def service(name: str) -> dict[str, Any]:
    """The state file of the loopback service started by tests/services/NAME/start.sh. Without it the test is
    skipped on a developer's machine and FAILS in CI (``CI=true``), where every service must run."""
    path = services_dir() / f"{name}.json"
    if not path.exists():
        message = f"the {name} service is not running: start it with tests/services/{name}/start.sh"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return json.loads(path.read_text())
