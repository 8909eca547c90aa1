"""mrunner's test kit, for mrunner's own tests and for a backend's in its own repository: the shared backend
suite (``BackendTestSuite``), the helpers its tests use, and a pytest plugin (``mrunner.testing.plugin``,
loaded by pytest wherever mrunner is installed) with the fixtures ``mrunner_home``, ``mrunner``,
``slurm_service`` and ``k8s_service``. A backend's test file is then only::

    from mrunner.testing import BackendTestSuite, write_context

    class TestMyBackend(BackendTestSuite):
        @pytest.fixture
        def backend_context(self, mrunner_home, tmp_path):
            return write_context(mrunner_home, "mine", {"backend": "mine", "storage_dir": str(tmp_path)})

(``examples/backend/tests/test_suite.py`` is one.) The ``mrunner`` fixture runs each command in a child of a
warm launcher (``mrunner.testing.launcher``; ``MRUNNER_TEST_WARM=0`` for new interpreters instead). The names
below load on first use, so pytest's start, which imports the plugin and so this package, stays light.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mrunner.testing.commands import (
        MrunnerCommand,
        as_from_a_terminal,
        interrupted_after,
        start_mrunner,
        stopped_after,
    )
    from mrunner.testing.contexts import write_context
    from mrunner.testing.once import built_once
    from mrunner.testing.services import service
    from mrunner.testing.suite import BackendTestSuite
    from mrunner.testing.sweeps import ended, experiments, logged, states
    from mrunner.testing.waiting import wait_for

__all__ = [
    "BackendTestSuite",
    "MrunnerCommand",
    "as_from_a_terminal",
    "built_once",
    "ended",
    "experiments",
    "interrupted_after",
    "logged",
    "service",
    "start_mrunner",
    "states",
    "stopped_after",
    "wait_for",
    "write_context",
]

_LAZY = {
    "BackendTestSuite": "mrunner.testing.suite",
    "MrunnerCommand": "mrunner.testing.commands",
    "as_from_a_terminal": "mrunner.testing.commands",
    "interrupted_after": "mrunner.testing.commands",
    "start_mrunner": "mrunner.testing.commands",
    "stopped_after": "mrunner.testing.commands",
    "ended": "mrunner.testing.sweeps",
    "experiments": "mrunner.testing.sweeps",
    "logged": "mrunner.testing.sweeps",
    "states": "mrunner.testing.sweeps",
    "built_once": "mrunner.testing.once",
    "service": "mrunner.testing.services",
    "wait_for": "mrunner.testing.waiting",
    "write_context": "mrunner.testing.contexts",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'mrunner.testing' has no attribute {name!r}")
