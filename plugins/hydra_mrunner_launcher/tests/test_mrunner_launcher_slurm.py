"""Hydra's ``IntegrationTestSuite`` with ``hydra/launcher=mrunner`` on the real loopback Slurm cluster
(tests/services/slurm): each job is an array task that runs the app's script from the code snapshot as the
cluster's user (mrtest), in a virtualenv the Slurm backend builds on the cluster from requirements.txt.

The suite's apps report by writing a file at an absolute path of this machine, which the test then reads.
The loopback cluster runs on this machine, so the apps can write there: the tests' folders are made open
to the cluster's user (a scratch folder in /tmp, umask 0). The launcher itself relies on no shared folder
unless ``shared_fs`` says so; both ways are run:
- ``TestSlurmSharedFs`` (``shared_fs=true``, a cluster that mounts this machine's folders, as when
  launching from a login node): the whole suite applies.
- ``TestSlurmRemote`` (``shared_fs=false``, the default off the local backend): the three tests that
  look at the job's working directory do not apply, and say why.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import tempfile
from pathlib import Path

import pytest

# Hydra's suite, its asserts rewritten (the repository's pytest names its plugins: see test_mrunner_launcher.py)
pytest.register_assert_rewrite("hydra.test_utils.launcher_common_tests")

from hydra.test_utils.launcher_common_tests import IntegrationTestSuite  # noqa: E402

from mrunner.testing import write_context  # noqa: E402
from plugins.hydra_mrunner_launcher.tests.apps import failed_sweep, returned, run_app  # noqa: E402

# The virtualenv the jobs run in, built once per content and kept in a storage_dir of its own for later runs.
REQUIREMENTS = "hydra-core==1.3.8\n"
STORAGE = "hydra-launcher-tests"
_SCRATCH: list[Path] = []


def scratch_root() -> Path:
    """One folder per test session in /tmp, open to the cluster's user."""
    if not _SCRATCH:
        folder = Path(tempfile.mkdtemp(prefix="mrunner-hydra-slurm-"))
        folder.chmod(0o777)
        atexit.register(shutil.rmtree, folder, ignore_errors=True)
        _SCRATCH.append(folder)
    return _SCRATCH[0]


def slurm_context(service: dict) -> dict:
    """The keys of the tests' Slurm context on the loopback cluster."""
    return {
        "backend": "slurm",
        "slurm_url": service["alias"],
        "ssh_config": service["ssh_config"],
        "storage_dir": f"{service['storage_dir']}/{STORAGE}",
        "partition": service["partition"],
        "requirements_file": "requirements.txt",
        "time": 10,
    }


def flags(shared: bool) -> list[str]:
    return [
        "-m",
        "hydra/launcher=mrunner",
        "hydra.launcher.context=test-slurm",
        f"hydra.launcher.shared_fs={str(shared).lower()}",
        "hydra.launcher.poll_interval=0.5",
    ]


# The launcher is chosen on the command line: the cluster's virtualenv has hydra-core, not this plugin, and
# every job composes the app's config (whose defaults must name only configs the cluster has).
TASK_CFG = {"defaults": [{"override hydra/job_logging": "disabled"}]}


class _OnSlurm(IntegrationTestSuite):
    @pytest.fixture(autouse=True)
    def cluster(self, slurm_service: dict, mrunner_home: Path):
        write_context(mrunner_home, "test-slurm", slurm_context(slurm_service))
        umask = os.umask(0)  # the jobs (as mrtest) create folders in the ones made here (as this user)
        yield
        os.umask(umask)

    def get_test_scratch_dir(self, tmpdir: Path) -> Path:
        folder = scratch_root() / Path(str(tmpdir)).name
        folder.mkdir(mode=0o777, exist_ok=True)
        (folder / "requirements.txt").write_text(REQUIREMENTS)
        return folder


@pytest.mark.parametrize("task_launcher_cfg, extra_flags", [(TASK_CFG, flags(shared=True))])
class TestSlurmSharedFs(_OnSlurm):
    """Jobs write into their Hydra output folders, which the (loopback) cluster sees at the same paths."""


@pytest.mark.parametrize("task_launcher_cfg, extra_flags", [(TASK_CFG, flags(shared=False))])
class TestSlurmRemote(_OnSlurm):
    """Jobs write into their experiment folders on the cluster, as on a cluster that shares nothing."""

    NOT_HERE = "the job runs on the cluster in its own experiment folder (MRUNNER_EXPERIMENT_DIR, named after "

    @pytest.mark.skip(
        reason=NOT_HERE + "the sweep), not in the Hydra output folder of this machine, which a "
        "cluster need not see; TestSlurmSharedFs runs it"
    )
    def test_custom_sweeper_run_workdir(self, task_launcher_cfg: dict, extra_flags: list) -> None:
        pass

    @pytest.mark.skip(
        reason="get_original_cwd() is the folder the job started in on the cluster: the folder the "
        "multirun was launched from is on this machine; TestSlurmSharedFs runs it"
    )
    def test_get_orig_dir_multirun(self, task_launcher_cfg: dict, extra_flags: list) -> None:
        pass

    @pytest.mark.skip(
        reason="to_absolute_path() resolves against get_original_cwd() and the test checks the job's "
        "working directory, both on the cluster (see above); TestSlurmSharedFs runs it"
    )
    def test_to_absolute_path_multirun(self, task_launcher_cfg: dict, extra_flags: list) -> None:
        pass


def test_on_the_cluster_values_come_back_failures_fail_and_the_sweep_is_recorded(slurm_service, mrunner_home, mrunner):
    write_context(mrunner_home, "test-slurm", slurm_context(slurm_service))
    folder = scratch_root() / "returns"
    folder.mkdir(mode=0o777, exist_ok=True)
    (folder / "requirements.txt").write_text(REQUIREMENTS)
    values = returned(run_app(folder, "drive", *flags(shared=False)[1:], "hydra.sweep.dir=first", "+x=1,2"))
    assert [(v["status"], v["value"]) for v in values] == [("COMPLETED", {"twice": 2}), ("COMPLETED", {"twice": 4})]
    sweep, failure = failed_sweep(run_app(folder, *flags(shared=False), "hydra.sweep.dir=sweep", "+x=1,boom"), 1)
    assert "failed: ValueError: boom is not a number" in failure
    listed = json.loads(mrunner("status", sweep, "--json").stdout)
    assert listed["sweep"]["backend"] == "slurm"
    assert [e["state"] for e in listed["experiments"]] == ["completed", "failed"]
    assert '"value": {"twice": 2}' in mrunner("logs", f"{sweep}/0").stdout
    # without a shared file system, the launcher wrote the job's Hydra outputs here
    assert (folder / "sweep" / "0" / ".hydra" / "config.yaml").read_text().strip() == "x: 1"
    assert '"value": {"twice": 2}' in (folder / "sweep" / "0" / "app.log").read_text()
