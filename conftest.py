"""Fixtures shared by the core's and the plugins' tests.

Every test gets its own mrunner home (XDG config and data folders), so records and contexts never leak
between tests or into the developer's own. Tests that need a real service (the loopback Slurm cluster,
the Kubernetes cluster) get it from the state files the scripts in tests/services write; without the
service such a test is skipped on a developer's machine and FAILS in CI (CI=true).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent
SERVICES_DIR = Path(os.environ.get("MRUNNER_SERVICES_DIR", "/tmp/mrunner-services"))


@pytest.fixture(autouse=True)
def mrunner_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh XDG config and data home for mrunner, and a fresh plugin manager."""
    from mrunner import plugins

    home = tmp_path_factory.mktemp("mrunner-home")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / "config"))
    monkeypatch.setenv("XDG_DATA_HOME", str(home / "data"))
    monkeypatch.delenv("MRUNNER_PLUGINS", raising=False)
    plugins.reset()
    yield home
    plugins.reset()


def service(name: str) -> dict:
    """The state file of a loopback service started by tests/services/NAME/start.sh."""
    path = SERVICES_DIR / f"{name}.json"
    if not path.exists():
        message = f"the {name} service is not running: start it with tests/services/{name}/start.sh"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return json.loads(path.read_text())


@pytest.fixture(scope="session")
def slurm_service() -> dict:
    return service("slurm")


@pytest.fixture(scope="session")
def sshd_mfa_service() -> dict:
    """The MFA login node and the bastion in front of the Slurm cluster (tests/services/sshd-mfa)."""
    return service("sshd-mfa")


@pytest.fixture(scope="session")
def k8s_service() -> dict:
    return service("k8s")


class MrunnerCommand:
    """Runs the real ``mrunner`` command line in a subprocess, with the test's mrunner home."""

    def __init__(self, cwd: Path) -> None:
        self.cwd = cwd

    def __call__(self, *args: str, env: dict | None = None, timeout: float = 300, cwd: Path | None = None,
                 input: str | None = None) -> subprocess.CompletedProcess:  # fmt: skip
        return subprocess.run(
            [sys.executable, "-m", "mrunner", *args], cwd=cwd or self.cwd, capture_output=True, text=True,
            timeout=timeout, env={**os.environ, **(env or {})}, input=input,
        )  # fmt: skip


@pytest.fixture
def mrunner(tmp_path: Path) -> MrunnerCommand:
    """``mrunner(*args)`` runs the command line in ``tmp_path`` and returns the completed process."""
    return MrunnerCommand(tmp_path)
