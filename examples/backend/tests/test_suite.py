"""The example backend passes mrunner's shared backend suite: `pip install mrunner` (with its pytest plugin, which
gives the fixtures ``mrunner_home`` and ``mrunner``), `pip install .` and `pytest` in this folder run it."""

import pytest

from mrunner.testing import BackendTestSuite, write_context


class TestProcessBackend(BackendTestSuite):
    #: Seconds a small sweep may take on this machine.
    timeout = 120.0
    #: `mrunner pull` links or copies the local files (mrunner.transfer.copy_folders) instead of streaming them.
    pull_streams = False

    @pytest.fixture
    def backend_context(self, mrunner_home, tmp_path):
        keys = {"backend": "process", "storage_dir": str(tmp_path / "storage"), "grace_period": 5}
        return write_context(mrunner_home, "suite-process", keys)
