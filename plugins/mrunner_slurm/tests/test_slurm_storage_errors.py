"""The cluster's own storage trouble, named in one line: a storage_dir on a read-only file system, one the
cluster's user may not write, and a full disk at the code upload and at the virtualenv build. The file
systems are real: small tmpfs mounts made on this machine, where the loopback cluster's user sees them."""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from mrunner.testing import write_context
from plugins.mrunner_slurm.tests.test_slurm_cluster import slurm_context

pytestmark = pytest.mark.slurm


@pytest.fixture
def place(slurm_service: dict) -> Iterator[Path]:
    """A folder of this test's own below the cluster's storage, removed (with what is mounted in it) after."""
    folder = Path(slurm_service["storage_dir"]) / f"test-{uuid.uuid4().hex[:10]}"
    folder.mkdir(parents=True)
    yield folder
    for mount in sorted((line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()), reverse=True):
        if mount.startswith(f"{folder}/"):
            subprocess.run(["umount", mount], check=True)
    subprocess.run(["rm", "-rf", str(folder)], check=True)


def mounted(folder: Path, options: str) -> Path:
    """A tmpfs at ``folder`` owned by the cluster's user, mounted with ``options`` (``size=64k``, ``ro``)."""
    folder.mkdir()
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"{options},uid=mrtest,mode=0755", "tmpfs", str(folder)],
        capture_output=True,
        text=True,
    )
    if result.returncode:
        message = f"cannot mount a tmpfs here (needs root): {result.stderr.strip()}"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return folder


def submit(mrunner, mrunner_home, service: dict, storage: Path, **context) -> subprocess.CompletedProcess:
    write_context(mrunner_home, "test-slurm", slurm_context(service, str(storage), **context))
    return mrunner("+context=test-slurm", "train.py", "-m", "i=0,1", "--yes")


def one_line(result: subprocess.CompletedProcess) -> str:
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.startswith("mrunner: ") and "error" not in line[:9]]
    assert "Traceback" not in result.stderr, result.stderr
    return result.stderr.strip().splitlines()[-1] if not lines else lines[-1]


@pytest.fixture
def project(tmp_path: Path, mrunner) -> Path:
    (tmp_path / "train.py").write_text("print('hello')\n")
    return tmp_path


def refused_before_recording(mrunner, result: subprocess.CompletedProcess) -> str:
    """The one line, and nothing recorded: `mrunner status` lists no sweep (the probe leaves nothing on the
    cluster either: tests/test_slurm_limits.py checks a refused sweep's storage stays empty)."""
    line = one_line(result)
    assert "storage_dir" in line and "recorded" not in result.stderr, result.stderr  # not even for a moment
    listed = mrunner("status")
    assert listed.returncode == 0 and "no sweeps recorded yet" in listed.stdout, listed.stdout
    return line


def test_a_read_only_storage_dir_is_named_with_the_fix(place, project, mrunner, mrunner_home, slurm_service):
    storage = mounted(place / "ro", "ro,size=1m")
    line = refused_before_recording(mrunner, submit(mrunner, mrunner_home, slurm_service, storage))
    assert f"storage_dir {storage}: {storage} is on a read-only file system (EROFS)" in line, line
    assert "set the context's storage_dir to a writable folder" in line


def test_a_storage_dir_the_cluster_user_may_not_write_is_named_with_the_fix(
    place, project, mrunner, mrunner_home, slurm_service
):
    forbidden = place / "root-only"
    forbidden.mkdir(mode=0o755)  # root's: mrtest may not create anything in it
    os.chown(place, 0, 0)
    line = refused_before_recording(mrunner, submit(mrunner, mrunner_home, slurm_service, forbidden / "storage"))
    assert "user mrtest may not write" in line and str(forbidden) in line and "EACCES" in line, line


def test_a_storage_dir_that_is_a_file_on_the_cluster_is_named_with_the_fix(
    place, project, mrunner, mrunner_home, slurm_service
):
    os.chown(place, 0, 0)
    (place / "a-file").write_text("not a folder\n")
    line = refused_before_recording(mrunner, submit(mrunner, mrunner_home, slurm_service, place / "a-file"))
    assert f"storage_dir {place / 'a-file'}" in line and "not a folder" in line, line


def test_a_full_disk_at_the_code_upload_says_enospc_and_where(place, project, mrunner, mrunner_home, slurm_service):
    storage = mounted(place / "small", "size=64k")
    (project / "data.bin").write_bytes(os.urandom(256 * 1024))
    line = one_line(submit(mrunner, mrunner_home, slurm_service, storage))
    assert "no space left (ENOSPC)" in line and str(storage) in line and "cut off" not in line, line
    assert slurm_service["alias"] in line


def test_a_full_disk_at_the_virtualenv_build_says_enospc_not_ensurepip_exit_status_1(
    place, project, mrunner, mrunner_home, slurm_service
):
    storage = mounted(place / "small", "size=2m")
    (project / "requirements.txt").write_text("\n")
    line = one_line(submit(mrunner, mrunner_home, slurm_service, storage, requirements_file="requirements.txt"))
    assert "building the virtualenv failed" in line and "no space left, ENOSPC" in line and str(storage) in line
    assert "\x1b" not in line and len(line) < 600, line


def test_an_experiment_that_fills_the_disk_fails_with_enospc_in_its_detail(
    place, project, mrunner, mrunner_home, slurm_service
):
    """Its own writes fill the storage's file system: the run is failed, and status says the file system
    is full (a log may be empty then: nothing more could be written)."""
    storage = mounted(place / "small", "size=4m")
    (project / "train.py").write_text("open('big.bin', 'wb').write(bytes(8 * 2**20))\n")
    write_context(mrunner_home, "test-slurm", slurm_context(slurm_service, str(storage)))
    submitted = mrunner("+context=test-slurm", "train.py", "--wait")
    assert submitted.returncode == 1, submitted.stderr
    document = json.loads(mrunner("status", submitted.stdout.strip().splitlines()[-1], "--json").stdout)
    [run] = document["experiments"]
    assert run["state"] == "failed" and run["exit_code"] != 0
    assert f"no space left, ENOSPC: 0 KiB free at {storage}/" in (run["detail"] or ""), run
    # the wait's own account of the failure says it too, not "the end of its output:" and nothing after it
    said = next(line for line in submitted.stderr.splitlines() if " failed (exit " in line)
    assert "no space left, ENOSPC" in said and not said.endswith("the end of its output:"), submitted.stderr
