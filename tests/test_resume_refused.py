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
from mrunner.testing import as_from_a_terminal, wait_for, write_context

PICKY = '''
import os
import sqlite3
import time
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


@hookimpl
def mrunner_secrets(context):
    """With STOP_READY set: once a resume has recorded its new attempts (before the hand-over asks the
    backend anything), say so in that file and wait there for the test's signal."""
    ready = os.environ.get("STOP_READY")
    if ready and context.get("backend") == "picky" and not os.path.exists(ready):
        with sqlite3.connect(os.environ["RECORDS"]) as db:
            resumed = db.execute("SELECT count(*) FROM attempts WHERE attempt>0").fetchone()[0]
        if resumed:
            with open(ready, "w"):
                pass
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:  # the signal's handler runs in this loop
                time.sleep(0.005)
    return {}
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
    assert "resuming" not in refused.stderr  # nothing claims to resume what is then refused
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
    assert resuming.returncode == 128 + signal.SIGTERM and "Traceback" not in err, err  # 143: SIGTERM's code
    assert "nothing was resumed" in err.strip().splitlines()[-1], err
    assert records_of(sweep.id) == before


def _failed_sweep(mrunner, mrunner_home, picky_site, tmp_path) -> tuple[str, dict[str, str]]:
    """A sweep on the picky backend with experiment 1 failed, and the environment its commands need."""
    project = tmp_path / "project"
    project.mkdir()
    (project / "train.py").write_text(SCRIPT)
    mrunner.cwd = project
    env = {"PYTHONPATH": str(picky_site), "MARKER": str(tmp_path / "marker")}
    write_context(mrunner_home, "picky", {"backend": "picky", "storage_dir": str(tmp_path / "storage")})
    assert mrunner("train.py", "-m", "i=range(2)", "+context=picky", env=env).returncode != 0
    (sweep,) = Store().sweeps(limit=10)
    return sweep.id, env


def _resumed_after_all(mrunner, sweep_id: str, env: dict[str, str], marker: Path) -> None:
    marker.write_text("")
    again = mrunner("resume", sweep_id, "--wait", env=env)
    assert again.returncode == 0, again.stdout + again.stderr
    assert {run.state for run in Store().runs(sweep_id)} == {"completed"}
    assert [attempt.number for attempt in Store().attempts(sweep_id, 1)[1]] == [0, 1]


def test_a_records_failure_inside_a_resumes_own_writes_leaves_the_records_as_they_were(
    mrunner, mrunner_home, picky_site, tmp_path
):
    """The resume's writes (the changed context, the new attempts, the runs planned again) fail at their
    second statement: a trigger makes the records database refuse the new attempt's row, as a failing disk
    would refuse it part-way. None of the resume's writes stays."""
    sweep_id, env = _failed_sweep(mrunner, mrunner_home, picky_site, tmp_path)
    before = records_of(sweep_id)
    with sqlite3.connect(Store().path) as db:
        db.execute(
            "CREATE TRIGGER refuse_attempts BEFORE INSERT ON attempts BEGIN SELECT RAISE(ABORT, 'disk I/O error'); END"
        )
    try:
        refused = mrunner("resume", sweep_id, "context.grace_period=3", env=env)
    finally:
        with sqlite3.connect(Store().path) as db:
            db.execute("DROP TRIGGER refuse_attempts")
    assert refused.returncode != 0 and "Traceback" not in refused.stderr, refused.stderr
    assert refused.stderr.strip().splitlines()[-1].startswith("mrunner: error: "), refused.stderr
    assert "resuming" not in refused.stderr
    assert records_of(sweep_id) == before
    _resumed_after_all(mrunner, sweep_id, env, tmp_path / "marker")


@pytest.mark.parametrize("number", [signal.SIGINT, signal.SIGTERM])
def test_a_resume_stopped_after_its_writes_and_before_the_hand_over_leaves_the_records_as_they_were(
    mrunner, mrunner_home, picky_site, tmp_path, number
):
    """The gap between the resume's records and the hand-over's first step (a plugin's ``mrunner_secrets``
    holds it open): the resume's writes are put back."""
    sweep_id, env = _failed_sweep(mrunner, mrunner_home, picky_site, tmp_path)
    before = records_of(sweep_id)
    ready = tmp_path / "ready"
    resuming = subprocess.Popen(
        [sys.executable, "-m", "mrunner", "resume", sweep_id, "context.grace_period=3"],
        cwd=mrunner.cwd,
        env={**os.environ, **env, "STOP_READY": str(ready), "RECORDS": str(Store().path)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=as_from_a_terminal,
    )
    try:
        wait_for(lambda: ready.exists() or resuming.poll() is not None, what="the resume to record its attempts")
        assert ready.exists(), resuming.communicate()
        resuming.send_signal(number)
        _, err = resuming.communicate(timeout=60)
    finally:
        if resuming.poll() is None:
            resuming.kill()
    assert resuming.returncode == 128 + number and "Traceback" not in err, err  # 130 for SIGINT, 143 for SIGTERM
    assert "nothing was resumed" in err.strip().splitlines()[-1], err
    assert "resuming" not in err
    assert records_of(sweep_id) == before
    _resumed_after_all(mrunner, sweep_id, env, tmp_path / "marker")


def test_a_second_resume_while_the_first_hands_over_refuses_and_each_experiment_runs_once(mrunner, tmp_path):
    """Two `resume`s of one sweep at once: the second read the runs the first had just planned again (or had
    cancelled ones it then planned a second time) and handed them to a supervisor of its own, so a finished
    experiment ran twice. The first holds them from its records on; the second says so in one line."""
    project = tmp_path / "project"
    project.mkdir()
    ledger = tmp_path / "ledger"
    (project / "train.py").write_text(
        "import os, sys\nfrom mrunner import get_configuration\ni = get_configuration().i\n"
        "with open(os.environ['LEDGER'], 'a') as f:\n    f.write(f'{i}\\n')\n"
        "sys.exit(0 if i == 0 or os.path.exists(os.environ['MARKER']) else 1)\n"
    )
    mrunner.cwd = project
    env = {"MARKER": str(tmp_path / "marker"), "LEDGER": str(ledger)}
    assert mrunner("train.py", "-m", "i=range(2)", env=env).returncode != 0  # experiment 1 failed
    (sweep,) = Store().sweeps(limit=10)
    (tmp_path / "marker").write_text("")
    before = records_of(sweep.id)

    def resume() -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, "-m", "mrunner", "resume", sweep.id],
            cwd=project,
            env={**os.environ, **env},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    lock_path = paths.data_dir() / "gc.lock"
    with open(lock_path, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # the first resume waits here, after its records, before the hand-over
        first = resume()
        try:
            wait_for(lambda: records_of(sweep.id) != before, what="the first resume to record its new attempt")
            second = resume()
            try:
                wait_for(lambda: second.poll() is not None, what="the second resume to refuse", timeout=60)
            finally:
                if second.poll() is None:
                    second.kill()
            _, err = second.communicate(timeout=60)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
        _, first_err = first.communicate(timeout=120)
    assert first.returncode == 0, first_err
    assert second.returncode != 0 and "Traceback" not in err, err
    line = err.strip().splitlines()[-1]
    assert line.startswith("mrunner: error: ") and "being resumed or submitted" in line, err
    assert sorted(ledger.read_text().split()) == ["0", "1", "1"]  # attempt 0 of both, attempt 1 of the failed one
    assert [attempt.number for attempt in Store().attempts(sweep.id, 1)[1]] == [0, 1]
