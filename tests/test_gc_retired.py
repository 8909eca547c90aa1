"""`mrunner gc` and `forget` with a recorded cluster that cannot be reached (retired): gc collects every place
it can reach and warns in one line for the one it cannot; the retired cluster's sweep can be forgotten.

The retired cluster is a Slurm login node at a loopback port nothing listens on: the real Slurm backend
tries to reach it and fails as it would for a cluster that is gone."""

from __future__ import annotations

import socket
import time
from dataclasses import replace
from pathlib import Path

import pytest

from mrunner.records import RUNNING, RunUpdate, Sweep
from mrunner.store import Store
from mrunner.testing import wait_for


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # closed once the with ends: nothing listens there


@pytest.fixture
def retired_sweep(mrunner, tmp_path: Path) -> Sweep:
    """A local sweep that ended (collectable) and a Slurm sweep that reached a cluster that is gone."""
    project = tmp_path / "project"
    project.mkdir()
    (project / "train.py").write_text("print('done')\n")
    mrunner.cwd = project
    ran = mrunner("train.py", "-m", "i=range(2)")
    assert ran.returncode == 0, ran.stderr
    store = Store()
    (local,) = store.sweeps()
    retired = replace(
        local,
        id="gone-cluster-000001",
        backend="slurm",
        context_name="old",
        context={"backend": "slurm", "slurm_url": f"me@127.0.0.1:{_closed_port()}", "storage_dir": "~/mrunner"},
        package={"code_dir": "~/mrunner/code/x"},
        created_at=time.time() - 30 * 86400,
    )
    (run,) = store.runs(local.id)[:1]
    store.record_sweep(retired, [replace(run, sweep_id=retired.id, id="feedfacefeedface")], skip_submitted=False)
    store.apply(retired.id, [RunUpdate(0, RUNNING, backend_ref="12345_0")])
    return retired


def test_gc_collects_what_it_reaches_and_warns_once_for_a_retired_cluster(mrunner, retired_sweep):
    listed = mrunner("gc", "--dry-run", "--older-than", "0")
    assert listed.returncode == 0, listed.stderr
    assert "this machine: would free" in listed.stdout and "snapshot copy" in listed.stdout, listed.stdout
    warnings = [line for line in listed.stderr.splitlines() if line.startswith("mrunner: warning:")]
    assert len(warnings) == 1 and "127.0.0.1" in warnings[0], listed.stderr
    assert "Traceback" not in listed.stderr

    collected = mrunner("gc", "--older-than", "0")
    assert collected.returncode == 0, collected.stderr
    assert "this machine: freed" in collected.stdout, collected.stdout


def test_a_sweep_of_a_retired_cluster_can_be_forgotten(mrunner, retired_sweep):
    refused = mrunner("forget", retired_sweep.id)
    assert refused.returncode != 0 and "--retired" in refused.stderr, refused.stderr
    forgotten = mrunner("forget", "--retired", retired_sweep.id)
    assert forgotten.returncode == 0, forgotten.stderr
    assert f"forgot sweep {retired_sweep.id}" in forgotten.stdout
    assert retired_sweep.id not in {sweep.id for sweep in Store().sweeps()}


def test_forget_retired_refuses_a_sweep_whose_backend_still_runs_it(mrunner, tmp_path):
    project = tmp_path / "project"
    project.mkdir()
    (project / "train.py").write_text("import time\ntime.sleep(60)\n")
    mrunner.cwd = project
    sweep_id = mrunner("train.py", "--detach").stdout.strip()
    store = Store()
    wait_for(lambda: store.run(sweep_id, 0).state, lambda state: state == RUNNING, what="the experiment to run")
    refused = mrunner("forget", "--retired", sweep_id)
    assert refused.returncode != 0 and "runs 1 of its experiments" in refused.stderr, refused.stderr
    assert mrunner("cancel", sweep_id).returncode == 0
