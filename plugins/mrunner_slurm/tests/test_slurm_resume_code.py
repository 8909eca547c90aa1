"""A Slurm submission stopped (SIGTERM, as Ctrl-C) once the code was uploaded into the cluster's storage and
before any array was submitted, then the project edited: `mrunner resume` without ``--current-code`` runs
every experiment once from the uploaded code folder, the code as submitted (``Backend.packaged``); once `gc`
has collected that folder, the refusal names ``--current-code``. On the loopback cluster (tests/services/slurm);
the process signals itself right after the backend's ``package`` returns."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from mrunner.testing import ended, logged, states, stopped_after, write_context
from plugins.mrunner_slurm.tests.test_slurm_cluster import single_line, slurm_context

EXPERIMENT = """\
import os
from mrunner import get_configuration
import version

done = os.path.join(os.environ["MRUNNER_CHECKPOINT_DIR"], "done")
with open(done, "a") as stream:
    stream.write("x")
print("RAN", get_configuration().i, version.CODE, len(open(done).read()), flush=True)
"""  # its index, the code it ran, and how many times it got that far


@pytest.fixture
def project(slurm_service: dict, mrunner, mrunner_home: Path, tmp_path: Path) -> Path:
    storage = f"{slurm_service['storage_dir']}/test-{uuid.uuid4().hex[:10]}"
    write_context(mrunner_home, "test-slurm", slurm_context(slurm_service, storage))
    (tmp_path / "exp.py").write_text(EXPERIMENT)
    (tmp_path / "version.py").write_text('CODE = "submitted"\n')
    mrunner.cwd = tmp_path
    return tmp_path


def stopped_after_the_upload(mrunner, moment: str = "mrunner_slurm.plugin:SlurmBackend.package") -> str:
    """Submit three experiments, stopped right after ``moment`` returns (by default ``package``: the code is
    uploaded, the records do not have its folder yet); the sweep's id."""
    sweep, stopped = stopped_after(mrunner, moment, "+context=test-slurm", "exp.py", "-m", "i=range(3)")
    assert "code: sent" in stopped.stderr, stopped.stderr  # uploaded before the stop
    return sweep


def test_stopped_after_the_upload_resume_runs_the_uploaded_code_once_each(mrunner, project):
    sweep = stopped_after_the_upload(mrunner)
    assert set(states(mrunner, sweep).values()) == {"cancelled"}
    (project / "version.py").write_text('CODE = "edited"\n')
    resumed = mrunner("resume", sweep, "--wait")
    assert resumed.returncode == 0, resumed.stderr
    told = resumed.stdout + resumed.stderr
    assert "version.py changed since the submission" in told and "code: sent" not in told, told
    found = ended(mrunner, sweep)
    assert [found[i]["state"] for i in range(3)] == ["completed"] * 3, found
    assert [logged(mrunner, f"{sweep}/{i}", "RAN") for i in range(3)] == [[str(i), "submitted", "1"] for i in range(3)]


def test_once_gc_collected_the_uploaded_code_resume_names_current_code(mrunner, project):
    """Stopped once the sweep was packaged and prepared (the records name its code folder, so `gc` visits it)."""
    sweep = stopped_after_the_upload(mrunner, "mrunner.plugins.sweep_submitted")
    (project / "version.py").write_text('CODE = "edited"\n')
    collected = mrunner("gc", "--older-than", "0")
    assert collected.returncode == 0, collected.stderr
    assert "slurm: freed " in collected.stdout and "slurm: freed 0 " not in collected.stdout, collected.stdout
    refused = mrunner("resume", sweep)
    line = single_line(refused.stderr)
    assert f"`mrunner resume {sweep} --current-code`" in line and "version.py changed" in line, line
    assert list(states(mrunner, sweep).values()) == ["cancelled"] * 3
