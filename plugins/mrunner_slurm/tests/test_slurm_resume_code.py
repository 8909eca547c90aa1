"""A Slurm submission stopped (SIGTERM, as Ctrl-C) once the code was uploaded into the cluster's storage and
before any array was submitted, then the project edited: `mrunner resume` without ``--current-code`` runs
every experiment once from the uploaded code folder, the code as submitted (``Backend.packaged``); once `gc`
has collected that folder, the refusal names ``--current-code``. On the loopback cluster (tests/services/slurm);
the process signals itself right after the backend's ``package`` returns."""

from __future__ import annotations

import hashlib
import signal
import uuid
from pathlib import Path

import pytest

from mrunner.testing import ended, interrupted_after, logged, states, stopped_after, write_context
from plugins.mrunner_slurm.tests.test_slurm_cluster import single_line, slurm_context

EXPERIMENT = """\
import os
import sys
from mrunner import get_configuration
import version

done = os.path.join(os.environ["MRUNNER_CHECKPOINT_DIR"], "done")
with open(done, "a") as stream:
    stream.write("x")
print("RAN", get_configuration().i, version.CODE, len(open(done).read()), flush=True)
print("PREFIX", sys.prefix, flush=True)
"""  # its index, the code it ran, how many times it got that far, and the virtualenv it ran in


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


def ran_once_each_as_submitted(mrunner, sweep: str) -> None:
    """Every experiment completed, each having run once, with the code as submitted."""
    found = ended(mrunner, sweep)
    assert [found[i]["state"] for i in range(3)] == ["completed"] * 3, found
    assert [logged(mrunner, f"{sweep}/{i}", "RAN") for i in range(3)] == [[str(i), "submitted", "1"] for i in range(3)]


def venv_key(python: str, requirements: str) -> str:
    """The name of the virtualenv folder of these requirements, worked out here as the docs give it (the
    content's sha256 with the interpreter), not by the backend's own code."""
    return hashlib.sha256(python.encode() + b"\0" + requirements.encode()).hexdigest()[:24]


def test_stopped_after_the_upload_resume_runs_the_uploaded_code_once_each(mrunner, project):
    sweep = stopped_after_the_upload(mrunner)
    assert set(states(mrunner, sweep).values()) == {"cancelled"}
    (project / "version.py").write_text('CODE = "edited"\n')
    resumed = mrunner("resume", sweep, "--wait")
    assert resumed.returncode == 0, resumed.stderr
    told = resumed.stdout + resumed.stderr
    assert "version.py changed since the submission" in told and "code: sent" not in told, told
    ran_once_each_as_submitted(mrunner, sweep)


def test_the_requirements_edited_too_resume_runs_the_uploaded_code_in_the_submitted_virtualenv(
    mrunner, mrunner_home, project, slurm_service
):
    """With a ``requirements_file``, stopped once the code was uploaded, before the virtualenv was made; then
    the code and the requirements edited. The requirements were recorded before the upload: the virtualenv
    is built from them (its folder named by their content), never from the edited file."""
    from mrunner.store import Store

    storage = f"{slurm_service['storage_dir']}/test-{uuid.uuid4().hex[:10]}"
    context = slurm_context(slurm_service, storage, requirements_file="requirements.txt")
    write_context(mrunner_home, "test-slurm", context)
    (project / "requirements.txt").write_text("# as submitted\n")
    sweep = stopped_after_the_upload(mrunner)
    (project / "version.py").write_text('CODE = "edited"\n')
    (project / "requirements.txt").write_text("# edited since\n")
    resumed = mrunner("resume", sweep, "--wait")
    assert resumed.returncode == 0, resumed.stderr
    told = resumed.stdout + resumed.stderr
    assert "changed since the submission" in told and "code: sent" not in told, told
    ran_once_each_as_submitted(mrunner, sweep)
    recorded = Store().sweep(sweep)
    assert recorded.detail["identified"] == {"requirements": "# as submitted\n"}, recorded.detail
    key = venv_key(recorded.context["python"], "# as submitted\n")
    assert recorded.detail["venv"].endswith(f"/.mrunner/venvs/{key}"), recorded.detail
    for index in range(3):
        shown = mrunner("logs", f"{sweep}/{index}").stdout.splitlines()
        prefixes = [line.split()[1] for line in shown if line.startswith("PREFIX ")]
        assert len(prefixes) == 1 and prefixes[0].endswith(f"/.mrunner/venvs/{key}"), prefixes


def test_stopped_before_anything_of_its_package_was_recorded_resume_reads_the_requirements_uploaded_with_it(
    mrunner, mrunner_home, project, slurm_service
):
    """A sweep stopped right after ``admit``, before anything of its package was recorded, whose code an
    earlier sweep uploaded; then the code and the requirements edited. The requirements are read from the
    code folder on the cluster (checked against the snapshot), so the virtualenv is the submitted one."""
    from mrunner.store import Store

    storage = f"{slurm_service['storage_dir']}/test-{uuid.uuid4().hex[:10]}"
    write_context(
        mrunner_home, "test-slurm", slurm_context(slurm_service, storage, requirements_file="requirements.txt")
    )
    (project / "requirements.txt").write_text("# as submitted\n")
    earlier = mrunner("+context=test-slurm", "exp.py", "i=9")
    assert earlier.returncode == 0 and "code: sent" in earlier.stderr, earlier.stderr
    moment = "mrunner_slurm.plugin:SlurmBackend.admit"
    stopped = interrupted_after(project, moment, "+context=test-slurm", "exp.py", "-m", "i=range(3)")
    # two sweeps recorded, not stopped_after's one: the earlier one is told apart below
    assert stopped.returncode == 128 + signal.SIGTERM and "Traceback" not in stopped.stderr, stopped.stderr
    (sweep,) = [found.id for found in Store().sweeps() if found.id != earlier.stdout.strip().splitlines()[-1]]
    assert Store().sweep(sweep).package == {} and "identified" not in Store().sweep(sweep).detail
    (project / "version.py").write_text('CODE = "edited"\n')
    (project / "requirements.txt").write_text("# edited since\n")
    resumed = mrunner("resume", sweep, "--wait")
    assert resumed.returncode == 0, resumed.stderr
    ran_once_each_as_submitted(mrunner, sweep)
    recorded = Store().sweep(sweep)
    assert recorded.package["requirements"] == "# as submitted\n", recorded.package
    key = venv_key(recorded.context["python"], "# as submitted\n")
    assert recorded.detail["venv"].endswith(f"/.mrunner/venvs/{key}"), recorded.detail


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


def test_stopped_before_the_upload_with_the_requirements_edited_resume_uploads_what_was_identified(
    mrunner, mrunner_home, project, slurm_service
):
    """Stopped once ``identify``'s facts were recorded, before anything was uploaded; then only the
    requirements file edited. `resume` uploads the code as submitted, that file from the recorded requirements
    (its snapshotted content), and builds the virtualenv from them: each experiment runs once with them."""
    from mrunner.store import Store

    storage = f"{slurm_service['storage_dir']}/test-{uuid.uuid4().hex[:10]}"
    context = slurm_context(slurm_service, storage, requirements_file="requirements.txt")
    write_context(mrunner_home, "test-slurm", context)
    (project / "requirements.txt").write_text("# as submitted\n")
    (project / "exp.py").write_text(EXPERIMENT + 'print("REQUIREMENTS", repr(open("requirements.txt").read()))\n')
    sweep, stopped = stopped_after(
        mrunner, "mrunner_slurm.deploy._recent_trees", "+context=test-slurm", "exp.py", "-m", "i=range(3)"
    )
    assert "code: sent" not in stopped.stderr, stopped.stderr
    assert Store().sweep(sweep).detail["identified"] == {"requirements": "# as submitted\n"}
    (project / "requirements.txt").write_text("# edited since\n")
    resumed = mrunner("resume", sweep, "--wait")
    assert resumed.returncode == 0, resumed.stderr
    told = resumed.stdout + resumed.stderr
    assert "requirements.txt changed since the submission" in told and "code: sent" in told, told
    ran_once_each_as_submitted(mrunner, sweep)
    assert [logged(mrunner, f"{sweep}/{i}", "REQUIREMENTS") for i in range(3)] == [["'#", "as", "submitted\\n'"]] * 3
    key = venv_key(Store().sweep(sweep).context["python"], "# as submitted\n")
    assert Store().sweep(sweep).detail["venv"].endswith(f"/.mrunner/venvs/{key}")
