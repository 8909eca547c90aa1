"""The shared backend suite (mrunner.testing) against the real loopback Slurm cluster."""

from __future__ import annotations

import uuid

import pytest

from mrunner.testing import BackendTestSuite, write_context


class TestSlurmBackend(BackendTestSuite):
    timeout = 300.0

    @pytest.fixture(params=["openssh", "paramiko"])
    def backend_context(self, request, slurm_service, mrunner_home) -> str:
        """The suite runs once per transport."""
        self.service = slurm_service
        keys = {
            "backend": "slurm",
            "ssh": request.param,
            "slurm_url": slurm_service["alias"],
            "ssh_config": slurm_service["ssh_config"],
            "storage_dir": f"{slurm_service['storage_dir']}/suite-{uuid.uuid4().hex[:10]}",
            "partition": slurm_service["partition"],
            "grace_period": 5,
        }
        return write_context(mrunner_home, "suite-slurm", keys)

    def while_waiting(self, mrunner, sweep: str, states: dict[int, dict]) -> None:
        """Let a requeued task (a retry) start soon instead of after Slurm's two-minute hold, as the requeue
        tests do."""
        import subprocess

        from plugins.mrunner_slurm.tests.test_slurm_requeue import release_command

        held = [e["backend_ref"] for e in states.values() if e["state"] == "pending" and e["attempt"] > 0]
        service = self.service
        for ref in held:
            update = ["ssh", "-F", service["ssh_config"], service["alias"], release_command(ref)]
            subprocess.run(update, capture_output=True, timeout=60)

    def code_folder_exists(self, mrunner, sweep: str) -> bool | None:
        import json
        import subprocess

        package = json.loads(mrunner("status", sweep, "--json").stdout)["sweep"]["package"]
        service = self.service
        probe = ["ssh", "-F", service["ssh_config"], service["alias"], f"test -d {package['code_dir']}"]
        return subprocess.run(probe, capture_output=True, timeout=60).returncode == 0
