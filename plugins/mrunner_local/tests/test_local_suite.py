"""The shared backend suite (mrunner.testing) against the local backend."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mrunner.testing import BackendTestSuite, write_context


class TestLocalBackend(BackendTestSuite):
    timeout = 120.0
    pull_streams = False  # hard links (or copies) made aside and renamed
    stopped_exit_codes = True  # read from the wrapper's note by the cancel and the supervisor

    @pytest.fixture
    def backend_context(self, mrunner_home) -> str:
        return write_context(mrunner_home, "suite-local", {"backend": "local", "max_parallel": 2, "grace_period": 5})

    def code_folder_exists(self, mrunner, sweep: str) -> bool | None:
        package = json.loads(mrunner("status", sweep, "--json").stdout)["sweep"]["package"]
        return Path(package["code_dir"]).is_dir()
