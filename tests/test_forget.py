"""`mrunner forget SWEEP` against the real local backend, through the command line: a sweep none of whose
experiments reached the backend loses its records and code snapshot; any other is refused in one line."""

from __future__ import annotations

import fcntl
import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from mrunner import paths
from mrunner.store import Store
from mrunner.testing import wait_for

SCRIPT = "from mrunner import get_configuration\nprint('i', get_configuration().i)\n"


@pytest.fixture
def project(tmp_path: Path, mrunner) -> Path:
    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "train.py").write_text(SCRIPT)
    mrunner.cwd = folder
    return folder


def trees() -> Path:
    from mrunner import snapshot

    return snapshot.store_dir() / "trees"


def snapshot_files(digest: str) -> list[str]:
    return sorted(p.name for p in trees().glob(f"{digest}*")) if trees().is_dir() else []


def assert_one_line_refusal(result, *fragments: str) -> None:
    assert result.returncode != 0, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mrunner: error: "), result.stderr
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def interrupted_before_packaging(project: Path) -> str:
    """A submission stopped (SIGTERM, as Ctrl-C) while `mrunner gc`'s lock keeps it from packaging: it has
    recorded its sweep and snapshot, and nothing reached the backend. Returns the sweep's id."""
    lock_path = paths.data_dir() / "gc.lock"
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # as a collection in progress does
        submission = subprocess.Popen(
            [sys.executable, "-m", "mrunner", "train.py", "-m", "i=range(3)"],
            cwd=project,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            wait_for(lambda: Store().sweeps(limit=10), what="the submission to record its sweep")
            submission.send_signal(signal.SIGTERM)
            _, err = submission.communicate(timeout=60)
        finally:
            if submission.poll() is None:
                submission.kill()
    assert submission.returncode == 128 + signal.SIGTERM, err  # 143: stopped by SIGTERM
    (sweep,) = Store().sweeps(limit=10)
    return sweep.id


def test_a_sweep_interrupted_before_submission_is_forgotten_with_its_snapshot(mrunner, project):
    sweep = interrupted_before_packaging(project)
    shown = json.loads(mrunner("status", sweep, "--json").stdout)
    assert {run["state"] for run in shown["experiments"]} == {"cancelled"}, shown
    digest = shown["sweep"]["snapshot_digest"]
    assert snapshot_files(digest), "the submission took no snapshot"
    forgot = mrunner("forget", sweep)
    assert forgot.returncode == 0 and f"forgot sweep {sweep}" in forgot.stdout, forgot.stdout + forgot.stderr
    assert snapshot_files(digest) == []
    gone = mrunner("status", sweep)
    assert gone.returncode != 0 and f"{sweep!r} in the records" in gone.stderr, gone.stderr
    assert mrunner("forget", sweep).returncode != 0


def test_a_sweep_whose_resume_was_refused_before_submission_is_forgotten(mrunner, project, tmp_path):
    """A resume refused for its context (a storage folder that cannot be made) is refused in one line naming the
    key before anything is recorded: the runs keep their state, and the sweep, which never reached its backend,
    can still be forgotten."""
    sweep = interrupted_before_packaging(project)
    (tmp_path / "a-file").write_text("")
    refused = mrunner("resume", sweep, f"context.storage_dir={tmp_path / 'a-file' / 'storage'}")
    assert refused.returncode != 0 and "Traceback" not in refused.stderr, refused.stderr
    assert len(refused.stderr.splitlines()) == 1 and "storage_dir" in refused.stderr, refused.stderr
    shown = json.loads(mrunner("status", sweep, "--json").stdout)
    assert {run["state"] for run in shown["experiments"]} == {"cancelled"}, shown
    digest = shown["sweep"]["snapshot_digest"]
    forgot = mrunner("forget", sweep)
    assert forgot.returncode == 0, forgot.stderr
    assert snapshot_files(digest) == [] and mrunner("status", sweep).returncode != 0


def test_a_sweep_that_reached_its_backend_is_refused_in_one_line_and_kept(mrunner, project):
    ran = mrunner("train.py", "-m", "i=range(2)")
    assert ran.returncode == 0, ran.stderr
    (sweep,) = Store().sweeps(limit=10)
    assert {run.state for run in Store().runs(sweep.id)} == {"completed"}
    refused = mrunner("forget", sweep.id)
    assert_one_line_refusal(refused, f"sweep {sweep.id} reached backend local", "2 of 2 experiments were submitted")
    assert mrunner("status", sweep.id).returncode == 0
    assert snapshot_files(sweep.snapshot_digest)


def test_an_interrupted_sweep_once_resumed_is_refused_and_an_unknown_one_named(mrunner, project):
    sweep = interrupted_before_packaging(project)
    resumed = mrunner("resume", sweep)
    assert resumed.returncode == 0, resumed.stderr
    assert_one_line_refusal(mrunner("forget", sweep), "reached backend local", "3 of 3")
    assert_one_line_refusal(mrunner("forget", "nosuchsweep"), "no sweep 'nosuchsweep'")
