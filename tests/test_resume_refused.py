"""A refused `mrunner resume` leaves the records exactly as they were: a resource change the backend's admission
refuses (a time beyond a partition's MaxTime, as Slurm's admission refuses it), a preparation that cannot reach
the platform, a key the backend lacks or a context that cannot be used. Backend-independent: a real plugin,
installed as a user installs one, that is the local backend with a partition's time limit at admission."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from mrunner import paths
from mrunner.store import Store
from mrunner.testing import wait_for, write_context

PICKY = '''
from dataclasses import dataclass

from mrunner import hookimpl
from mrunner.errors import BackendError, Refused
from mrunner.schema import key
from mrunner_local.plugin import LocalBackend, LocalKeys


@dataclass(frozen=True, kw_only=True)
class PickyKeys(LocalKeys):
    time: int = key(5, minimum=1, help="minutes per experiment", per_point=True)


class PickyBackend(LocalBackend):
    """The local backend behind a partition whose MaxTime is 5 minutes, and whose controller cannot be
    reached when asked for exactly 4 minutes."""

    name = "picky"
    keys = PickyKeys

    def admit(self, sweep, runs, reporter):
        asked = max(run.resources.get("time", sweep.context["time"]) for run in runs)
        if asked > 5:
            raise Refused(f"partition allows at most 5 minutes per job (MaxTime=5:00), asked {asked}: lower time")
        return {"admitted": asked}

    def setup_resources(self, sweep, secrets, reporter):
        if sweep.context["time"] == 4:
            raise BackendError("the controller cannot be reached: try again later")
        return super().setup_resources(sweep, secrets, reporter)


@hookimpl
def mrunner_register_backends(register):
    register(PickyBackend())
'''

# fails until the marker file exists: the sweep has a failed experiment to resume
SCRIPT = textwrap.dedent("""
    import os, sys
    from mrunner import get_configuration
    i = get_configuration().i
    sys.exit(0 if i == 0 or os.path.exists(os.environ["MARKER"]) else 1)
""")


@pytest.fixture(scope="module")
def picky_site(tmp_path_factory) -> Path:
    """The plugin above, built and installed into a private site folder as pip would for a user."""
    folder = tmp_path_factory.mktemp("picky")
    package = folder / "mrunner-picky"
    (package / "mrunner_picky").mkdir(parents=True)
    (package / "mrunner_picky" / "__init__.py").write_text(PICKY)
    (package / "pyproject.toml").write_text(
        textwrap.dedent("""
        [project]
        name = "mrunner-picky"
        version = "1.0.0"
        [project.entry-points.mrunner]
        picky = "mrunner_picky"
        [build-system]
        requires = ["hatchling"]
        build-backend = "hatchling.build"
        """)
    )
    uv = shutil.which("uv")
    if uv is None:
        pytest.fail("uv is needed to install the test plugin (tests/run installs it)")
    site = folder / "site"
    subprocess.run(
        [uv, "pip", "install", "--quiet", "--no-deps", "--python", sys.executable, "--target", str(site), str(package)],
        check=True,
        capture_output=True,
    )
    return site


def records_of(sweep_id: str) -> dict[str, list[tuple]]:
    """Every recorded row of the sweep, table by table, as the database holds it."""
    with sqlite3.connect(Store().path) as db:
        return {
            table: sorted(db.execute(f"SELECT * FROM {table} WHERE {column}=?", (sweep_id,)).fetchall(), key=repr)
            for table, column in (
                ("sweeps", "id"),
                ("experiments", "sweep_id"),
                ("events", "sweep_id"),
                ("attempts", "sweep_id"),
                ("submitters", "sweep_id"),
            )
        }


@pytest.mark.parametrize(
    ("change", "said"),
    [
        (["context.time=10"], "MaxTime=5:00"),  # refused at admission
        (["--time", "10"], "MaxTime=5:00"),  # the same through the option
        (["context.time=4"], "controller cannot be reached"),  # a later step before the hand-over
        (["context.time=4", "--current-code"], "controller cannot be reached"),  # with a new snapshot too
        (["context.nosuchkey=1"], "nosuchkey"),  # a key the backend lacks
        (["context.storage_dir={a_file}/storage"], "storage_dir"),  # a context that cannot be used
    ],
)
def test_a_refused_resume_leaves_the_records_as_they_were(mrunner, mrunner_home, picky_site, tmp_path, change, said):
    project = tmp_path / "project"
    project.mkdir()
    (project / "train.py").write_text(SCRIPT)
    mrunner.cwd = project
    marker = tmp_path / "marker"
    env = {"PYTHONPATH": str(picky_site), "MARKER": str(marker)}
    (tmp_path / "a-file").write_text("")
    write_context(mrunner_home, "picky", {"backend": "picky", "storage_dir": str(tmp_path / "storage")})

    ran = mrunner("train.py", "-m", "i=range(2)", "+context=picky", env=env)
    assert ran.returncode != 0, ran.stdout + ran.stderr  # experiment 1 failed
    (sweep,) = Store().sweeps(limit=10)
    assert sorted(run.state for run in Store().runs(sweep.id)) == ["completed", "failed"]
    (project / "new.txt").write_text("the project moved on\n")  # --current-code would take a new snapshot
    before = records_of(sweep.id)

    changes = [part.format(a_file=tmp_path / "a-file") for part in change]
    refused = mrunner("resume", sweep.id, *changes, env=env)
    assert refused.returncode != 0, refused.stdout + refused.stderr
    errors = [line for line in refused.stderr.splitlines() if line.startswith("mrunner: error: ")]
    assert len(errors) == 1 and said in errors[0] and refused.stderr.rstrip().endswith(errors[0]), refused.stderr
    assert "Traceback" not in refused.stderr
    assert records_of(sweep.id) == before  # nothing half-recorded: not the change, not an attempt, not a state

    marker.write_text("")
    again = mrunner("resume", sweep.id, "--wait", env=env)  # asks for what the sweep asked for before
    assert again.returncode == 0, again.stdout + again.stderr
    shown = json.loads(mrunner("status", sweep.id, "--json", env=env).stdout)
    assert {run["state"] for run in shown["experiments"]} == {"completed"}, shown
    assert shown["sweep"]["context"]["time"] == 5, shown["sweep"]["context"]
    attempts = Store().attempts(sweep.id, 1)[1]
    assert [attempt.changes for attempt in attempts[1:]] == [{}], attempts


def test_a_resume_interrupted_before_its_hand_over_leaves_the_records_as_they_were(mrunner, tmp_path):
    """Ctrl-C (SIGTERM) while the resume waits for `mrunner gc`'s lock, after it began recording and before
    anything reached the backend: the change it asked for and the new attempts are put back."""
    project = tmp_path / "project"
    project.mkdir()
    (project / "train.py").write_text(SCRIPT)
    mrunner.cwd = project
    env = {"MARKER": str(tmp_path / "marker")}
    assert mrunner("train.py", "-m", "i=range(2)", env=env).returncode != 0  # experiment 1 failed
    (sweep,) = Store().sweeps(limit=10)
    before = records_of(sweep.id)

    lock_path = paths.data_dir() / "gc.lock"
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # as a collection in progress does
        resuming = subprocess.Popen(
            [sys.executable, "-m", "mrunner", "resume", sweep.id, "context.grace_period=3"],
            cwd=project,
            env={**os.environ, **env},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            wait_for(lambda: records_of(sweep.id) != before, what="the resume to record its new attempt")
            resuming.send_signal(signal.SIGTERM)
            _, err = resuming.communicate(timeout=60)
        finally:
            if resuming.poll() is None:
                resuming.kill()
    assert resuming.returncode == 130 and "Traceback" not in err, err
    assert "nothing was resumed" in err.strip().splitlines()[-1], err
    assert records_of(sweep.id) == before
