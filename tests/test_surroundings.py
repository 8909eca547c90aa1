"""Broken surroundings: unreadable files, read-only data and config folders, a full disk, a damaged records
database, a context that is not a mapping. Each is one line naming the path and what to do, a non-zero
exit, and nothing half-recorded.

The tests run as root here and in CI, and root reads and writes through file modes: the command runs under
``setpriv`` without the capabilities that bypass them (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH), as an
ordinary user would. A full disk is a small tmpfs mounted for the test (real ENOSPC, not a simulated one).
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from tests.test_cli_errors import SCRIPT, assert_one_line_error

WITHOUT_OVERRIDES = ["setpriv", "--bounding-set=-dac_override,-dac_read_search"]


def run(home: Path, cwd: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """The real command line with the test's mrunner home, unable to bypass file modes even as root."""
    prefix = WITHOUT_OVERRIDES if os.geteuid() == 0 else []
    return subprocess.run(
        [*prefix, sys.executable, "-m", "mrunner", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "XDG_CONFIG_HOME": str(home / "config"), "XDG_DATA_HOME": str(home / "data"), **(env or {})},
    )


def sweeps_in(db: Path) -> int:
    return sqlite3.connect(db).execute("SELECT COUNT(*) FROM sweeps").fetchone()[0] if db.exists() else 0


@pytest.fixture
def project(tmp_path: Path) -> Path:
    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "train.py").write_text(SCRIPT)
    return folder


@pytest.fixture
def small_disk(tmp_path: Path):
    """A 1 MiB tmpfs: writes past it fail with ENOSPC."""
    mount = tmp_path / "small-disk"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], capture_output=True, text=True
    )
    if done.returncode != 0:
        message = f"cannot mount a small tmpfs for a full disk: {done.stderr.strip()}"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=True)


def test_an_unreadable_file_in_the_project_is_named_with_what_to_do(mrunner_home, project):
    secret = project / "private.key"
    secret.write_text("no")
    secret.chmod(0)
    result = run(mrunner_home, project, "train.py")
    assert_one_line_error(result, f"cannot read {secret}: Permission denied", "make it readable", ".mrunnerignore")
    assert sweeps_in(mrunner_home / "data" / "mrunner" / "records.db") == 0
    (project / ".mrunnerignore").write_text("private.key\n")
    assert run(mrunner_home, project, "train.py").returncode == 0


def test_odd_file_names_and_symlink_loops_in_the_project_are_no_problem(mrunner_home, project):
    (project / "line\nbreak.txt").write_text("x")
    (project / "it's $HOME & more.txt").write_text("x")
    os.symlink("loop", project / "loop")
    os.symlink(project, project / "self")  # a link to its own folder
    result = run(mrunner_home, project, "train.py")
    assert result.returncode == 0, result.stderr


def test_a_read_only_data_folder(mrunner_home, project):
    data = mrunner_home / "data"
    assert run(mrunner_home, project, "train.py").returncode == 0  # records exist, then the folder turns read-only
    for folder, _, names in os.walk(data):
        os.chmod(folder, 0o555)
        for name in names:
            os.chmod(os.path.join(folder, name), 0o444)
    try:
        submission = run(mrunner_home, project, "train.py", "seed=2")
        assert_one_line_error(submission, str(data / "mrunner"), "XDG_DATA_HOME")
        status = run(mrunner_home, project, "status")
        assert status.returncode == 0 or status.stderr.count("\n") == 1, status.stderr  # reading may still work
    finally:
        for folder, _, _ in os.walk(data):
            os.chmod(folder, 0o755)
    assert sweeps_in(data / "mrunner" / "records.db") == 1


def test_a_read_only_config_folder(mrunner_home, project):
    config = mrunner_home / "config" / "mrunner"
    config.mkdir(parents=True)
    config.chmod(0o555)
    result = run(mrunner_home, project, "context", "add", "--name", "mine", "--backend", "local")
    assert_one_line_error(result, f"cannot write {config}/context/mine.yaml", "XDG_CONFIG_HOME")
    result = run(mrunner_home, project, "config", "set", "current_context", "local")
    assert_one_line_error(result, f"cannot write {config}/config.yaml", "XDG_CONFIG_HOME")
    config.chmod(0o755)


def test_a_damaged_records_database_says_where_it_is_and_how_to_set_it_aside(mrunner_home, project):
    db = mrunner_home / "data" / "mrunner" / "records.db"
    db.parent.mkdir(parents=True)
    db.write_bytes(b"this is not a database, but it is long enough to look like a header" * 100)
    for args in (["status"], ["train.py"], ["status", "some-sweep"], ["resume", "some-sweep"], ["logs", "s/0"]):
        result = run(mrunner_home, project, *args)
        assert_one_line_error(result, f"the records database {db} is damaged", f"mv {db} {db}.damaged")
    db.rename(db.with_name("records.db.damaged"))
    assert run(mrunner_home, project, "status").returncode == 0


def test_a_context_file_that_is_valid_yaml_but_not_a_mapping(mrunner_home, project):
    folder = mrunner_home / "config" / "mrunner" / "context"
    folder.mkdir(parents=True)
    (folder / "listed.yaml").write_text("- backend: local\n")
    for args in (
        ["train.py", "+context=listed"],
        ["context", "show", "listed"],
        ["context", "copy", "listed", "x"],
    ):
        assert_one_line_error(run(mrunner_home, project, *args), "context listed", "must be a mapping")
    listed = run(mrunner_home, project, "context")  # the list goes on: the file is shown broken, with one warning
    assert listed.returncode == 0 and "(broken)" in listed.stdout, listed
    (warning,) = listed.stderr.strip().splitlines()
    assert "context listed" in warning and "must be a mapping" in warning, warning
    (folder / "listed.yaml").unlink()
    (mrunner_home / "config" / "mrunner" / "config.yaml").write_text("just text\n")
    for args in (["config"], ["train.py"], ["context", "use", "local"]):
        assert_one_line_error(run(mrunner_home, project, *args), "config.yaml must be a mapping", "delete it")


def assert_ends_in_one_error(result, *fragments: str) -> None:
    """Progress lines may come first; then exactly one error line, and no traceback."""
    lines = result.stderr.strip().splitlines()
    assert result.returncode != 0 and "Traceback" not in result.stderr, result.stderr
    assert [line for line in lines if line.startswith("mrunner: error: ")] == lines[-1:], result.stderr
    for fragment in fragments:
        assert fragment in lines[-1], lines[-1]


@pytest.mark.parametrize(
    "size, fragments",
    [
        (2 * 2**20, ["not enough space in", "MiB free", "(nothing was recorded)"]),  # found before recording
        (
            900 * 1024,
            ["cannot copy the code snapshot to", "No space left on device", "nothing was submitted or recorded"],
        ),
    ],
)
def test_a_full_disk_for_the_snapshot_leaves_nothing_recorded(mrunner_home, project, small_disk, size, fragments):
    (project / "weights.bin").write_bytes(os.urandom(size))  # fits the project's disk, not the small one
    env = {"XDG_DATA_HOME": str(small_disk)}
    assert_ends_in_one_error(run(mrunner_home, project, "train.py", env=env), *fragments)
    assert sweeps_in(small_disk / "mrunner" / "records.db") == 0
    status = run(mrunner_home, project, "status", env=env)
    assert status.returncode == 0 and "no sweeps recorded yet" in status.stdout


def test_a_disk_that_fills_up_while_recording_keeps_nothing_of_the_sweep(small_disk):
    from mrunner.errors import MrunnerError
    from mrunner.store import Store
    from tests.test_store import a_sweep

    store = Store(small_disk / "records.db")
    sweep, runs = a_sweep(count=20_000)  # a few MB of rows: more than the disk holds
    with pytest.raises(MrunnerError, match="cannot write the records database .*: the disk is full; free some"):
        store.record_sweep(sweep, runs)
    assert store.sweeps() == []


def test_an_unreadable_log_is_named(mrunner_home, project):
    result = run(mrunner_home, project, "train.py")
    assert result.returncode == 0, result.stderr
    sweep = result.stdout.split()[0]
    status = json.loads(run(mrunner_home, project, "status", sweep, "--json").stdout)
    logs = list((mrunner_home / "data").rglob("*.log"))
    assert logs and status["experiments"][0]["state"] == "completed"
    for log in logs:
        log.chmod(0)
    assert_one_line_error(run(mrunner_home, project, "logs", f"{sweep}/0"), "Permission denied", "permissions")
