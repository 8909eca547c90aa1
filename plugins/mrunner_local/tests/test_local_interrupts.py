"""Stopping a local sweep is exact: Ctrl-C, SIGTERM and SIGHUP to mrunner, and `mrunner cancel`, as a user sends them."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mrunner.records import CANCELLED, COMPLETED, PLANNED, RUNNING, Run, RunUpdate, Sweep
from mrunner.store import Store
from mrunner.testing import as_from_a_terminal, start_mrunner, states, wait_for

# Ignores SIGTERM, as does a child it starts in its group; holds on attempt 0 until killed, exits 0 on later ones.
STUBBORN = """
import os, signal, subprocess, sys, time
from mrunner import get_configuration

config = get_configuration()
if config.get("quick_index") == config.i:
    sys.exit(0)
signal.signal(signal.SIGTERM, signal.SIG_IGN)
child = subprocess.Popen([sys.executable, "-c", "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)"])
with open(os.path.join(config.pids, f"{config.i}.{os.environ['MRUNNER_ATTEMPT']}"), "w") as out:
    out.write(f"{os.getpid()} {child.pid}")
while os.environ["MRUNNER_ATTEMPT"] == "0":
    time.sleep(0.05)
child.kill()
"""


@pytest.fixture
def project(tmp_path: Path, mrunner) -> Path:
    (tmp_path / "project").mkdir()
    (tmp_path / "project" / "stubborn.py").write_text(STUBBORN)
    (tmp_path / "pids").mkdir()
    mrunner.cwd = tmp_path / "project"
    return tmp_path / "project"


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"


@pytest.mark.parametrize("number", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_an_interrupt_kills_experiments_that_ignore_sigterm_after_the_grace_and_resume_runs_the_rest(
    mrunner, project, number
):
    pids = project.parent / "pids"
    process = start_mrunner(
        project, "stubborn.py", "-m", "i=range(3)", f"pids={pids}", "context.max_parallel=2", "context.grace_period=1"
    )
    wait_for(lambda: len(list(pids.iterdir())) == 2)  # two run, the third waits for a slot
    sweep = json.loads(mrunner("status", "--json").stdout)[0]["sweep"]["id"]
    held = [int(pid) for path in pids.iterdir() for pid in path.read_text().split()]
    process.send_signal(number)
    _, stderr = process.communicate(timeout=30)
    assert process.returncode == 128 + number and "Traceback" not in stderr, stderr  # 130, 143, 129
    assert "stopping 2 running experiments: SIGTERM, then SIGKILL after 1 s" in stderr
    assert f"mrunner resume {sweep}" in stderr
    assert not [pid for pid in held if alive(pid)]  # nothing outlives what the records call ended
    assert set(states(mrunner, sweep).values()) == {CANCELLED}
    resumed = mrunner("resume", sweep)
    assert resumed.returncode == 0, resumed.stderr
    assert set(states(mrunner, sweep).values()) == {COMPLETED}
    assert sorted(path.name for path in pids.iterdir()) == [
        "0.0",
        "0.1",
        "1.0",
        "1.1",
        "2.1",
    ]  # the third never started


def test_an_interrupt_cancels_an_experiment_waiting_for_its_gpus(mrunner, project):
    """Per-point GPU counts: experiment 0 holds both GPUs, experiment 1 (one GPU) waits for one in its worker;
    Ctrl-C records it cancelled, and it never starts."""
    pids = project.parent / "pids"
    process = start_mrunner(
        project,
        "stubborn.py",
        "-m",
        "context.gpus_per_experiment=2,1",
        "i=0",
        f"pids={pids}",
        "context.gpus=[0,1]",
        "context.grace_period=1",
    )
    wait_for(lambda: (pids / "0.0").exists())
    sweep = json.loads(mrunner("status", "--json").stdout)[0]["sweep"]["id"]
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=30)
    assert process.returncode == 130, stderr
    assert states(mrunner, sweep) == {0: CANCELLED, 1: CANCELLED}
    assert sorted(path.name for path in pids.iterdir()) == ["0.0"]  # experiment 1 never started


def test_an_experiment_that_ended_before_the_interrupt_keeps_its_end(mrunner, project):
    pids = project.parent / "pids"
    process = start_mrunner(
        project,
        "stubborn.py",
        "-m",
        "i=range(2)",
        f"pids={pids}",
        "quick_index=0",
        "context.max_parallel=2",
        "context.grace_period=1",
    )
    wait_for(lambda: (pids / "1.0").exists())
    sweep = json.loads(mrunner("status", "--json").stdout)[0]["sweep"]["id"]
    wait_for(lambda: states(mrunner, sweep)[0] == COMPLETED)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=30)
    assert process.returncode == 130, stderr
    assert states(mrunner, sweep) == {0: COMPLETED, 1: CANCELLED}


WAITS = """
import os, time
from mrunner import get_configuration

config = get_configuration()
open(os.path.join(config.folder, "started"), "w").close()
while not os.path.exists(os.path.join(config.folder, "go")):
    time.sleep(0.05)
"""


def test_a_hangup_that_nohup_ignores_leaves_the_sweep_running(mrunner, project):
    """`nohup mrunner ...`, then the terminal closes: the hangup stays ignored, as for any program under nohup."""
    folder = project.parent / "pids"
    (project / "waits.py").write_text(WAITS)

    def as_under_nohup() -> None:
        as_from_a_terminal()
        signal.signal(signal.SIGHUP, signal.SIG_IGN)

    process = start_mrunner(project, "waits.py", f"folder={folder}", preexec_fn=as_under_nohup)
    wait_for(lambda: (folder / "started").exists())
    process.send_signal(signal.SIGHUP)  # with a handler of mrunner's own, this would stop the sweep at once
    (folder / "go").touch()
    _, stderr = process.communicate(timeout=30)
    assert process.returncode == 0, stderr
    sweep = json.loads(mrunner("status", "--json").stdout)[0]["sweep"]["id"]
    assert states(mrunner, sweep) == {0: COMPLETED}


def test_an_end_read_from_the_exit_code_file_outranks_a_cancel_recorded_while_it_ended(mrunner_home, tmp_path):
    """The race a stop can meet (the experiment exits 0 just as the cancel is recorded), played on the records:
    the supervisor's end read from the attempt's exit-code file wins; an end from anywhere else does not."""
    from mrunner_local.supervisor import end_of

    store = Store(tmp_path / "records.db")
    sweep = Sweep("s1", "s", time.time(), "local", "local", {"storage_dir": str(tmp_path)}, "p", "d", str(tmp_path))
    runs = [Run("s1", index, f"id{index}", "e", {}, ["true"], state=PLANNED) for index in range(2)]
    store.record_sweep(sweep, runs)
    store.apply("s1", [RunUpdate(0, RUNNING), RunUpdate(1, RUNNING)])
    store.apply("s1", [RunUpdate(0, CANCELLED), RunUpdate(1, CANCELLED)])
    exit_file = tmp_path / "0.0"
    exit_file.write_text("0\n")
    store.apply("s1", [end_of(runs[0], str(exit_file), 0, stopped=True)])
    store.apply("s1", [end_of(runs[1], str(tmp_path / "missing"), -15, stopped=True)])
    store.apply("s1", [RunUpdate(1, COMPLETED, exit_code=0)])  # a late report without that proof changes nothing
    assert [run.state for run in store.runs("s1")] == [COMPLETED, CANCELLED]


def test_cancel_from_another_shell_kills_a_detached_experiment_that_ignores_sigterm(mrunner, project):
    pids = project.parent / "pids"
    result = mrunner("stubborn.py", "i=0", f"pids={pids}", "context.grace_period=1", "--detach")
    assert result.returncode == 0, result.stderr
    sweep = result.stdout.strip().splitlines()[-1]
    wait_for(lambda: (pids / "0.0").exists() and len((pids / "0.0").read_text().split()) == 2)
    held = [int(pid) for pid in (pids / "0.0").read_text().split()]
    cancelled = mrunner("cancel", sweep)
    assert cancelled.returncode == 0, cancelled.stderr
    assert not [pid for pid in held if alive(pid)]
    assert states(mrunner, sweep) == {0: CANCELLED}


def wrapper_pid(mrunner, sweep: str, index: int) -> int:
    """The pid `status` shows for an experiment (its attempt's wrapper)."""
    ref = json.loads(mrunner("status", f"{sweep}/{index}", "--json").stdout)["experiment"]["backend_ref"]
    return int(ref[len("pid:") :].split("@")[0])


@pytest.mark.parametrize("number", [signal.SIGTERM, signal.SIGKILL])
def test_a_kill_of_the_pid_status_shows_stops_the_experiment_as_a_cancel_does(mrunner, project, number):
    """`kill -TERM PID`: SIGTERM to the experiment's group, the grace period, SIGKILL, recorded cancelled; `kill -9
    PID`: nothing of the experiment runs on unsupervised, and it is recorded cancelled too, never failed."""
    pids = project.parent / "pids"
    result = mrunner("stubborn.py", "i=0", f"pids={pids}", "context.grace_period=1", "--detach")
    assert result.returncode == 0, result.stderr
    sweep = result.stdout.strip().splitlines()[-1]
    wait_for(lambda: (pids / "0.0").exists() and len((pids / "0.0").read_text().split()) == 2)
    held = [int(pid) for pid in (pids / "0.0").read_text().split()]
    os.kill(wrapper_pid(mrunner, sweep, 0), number)
    wait_for(lambda: not [pid for pid in held if alive(pid)], timeout=30)
    wait_for(lambda: states(mrunner, sweep) == {0: CANCELLED})
    shown = json.loads(mrunner("status", f"{sweep}/0", "--json").stdout)
    # the script's own end beside it: it ignores SIGTERM, so the kill after the grace period (none when the wrapper
    # itself was killed outright, and its experiment with it)
    assert shown["experiment"]["exit_code"] == (-signal.SIGKILL if number == signal.SIGTERM else None)
    expected = "stopped by a signal to its pid" if number == signal.SIGTERM else "its pid was killed (SIGKILL)"
    assert expected in mrunner("status", f"{sweep}/0").stdout


SAVER = """
import os, signal, sys, time
from mrunner import get_configuration

config = get_configuration()

def save_and_stop(number, _frame):
    sys.exit(3)  # saved its state, then stopped as many training loops do: a code of its own, not 0

signal.signal(signal.SIGTERM, save_and_stop)
with open(os.path.join(str(config.pids), "saver"), "w") as stream:
    stream.write(str(os.getpid()))
time.sleep(300)
"""


@pytest.mark.parametrize("how", ["kill -TERM of the pid status shows", "mrunner cancel"])
def test_an_experiment_that_stops_on_sigterm_with_a_code_of_its_own_is_cancelled_either_way(mrunner, project, how):
    """A handler that saves and exits 3 on SIGTERM: `kill -TERM PID` records it as `cancel` does (cancelled,
    not `failed 3`), and so a later experiment that fails by itself stays failed."""
    pids = project.parent / "pids"
    (project / "saver.py").write_text(SAVER)
    result = mrunner("saver.py", f"pids={pids}", "--detach")
    assert result.returncode == 0, result.stderr
    sweep = result.stdout.strip().splitlines()[-1]
    wait_for(lambda: (pids / "saver").exists() and (pids / "saver").read_text())
    if how == "mrunner cancel":
        assert mrunner("cancel", sweep).returncode == 0
    else:
        os.kill(wrapper_pid(mrunner, sweep, 0), signal.SIGTERM)
    wait_for(lambda: states(mrunner, sweep) == {0: CANCELLED}, what="the experiment recorded cancelled")
    shown = json.loads(mrunner("status", f"{sweep}/0", "--json").stdout)["experiment"]
    assert shown["exit_code"] in (None, 3), shown


QUEUED_HOOK = """
import os, sqlite3, sys, time

_ready, _records = os.environ["STOP_READY"], os.environ["STOP_RECORDS"]
_inside = []

def _stop(event, args):
    if event != "sqlite3.connect" or _inside or os.path.exists(_ready) or not os.path.exists(_records):
        return
    _inside.append(1)
    try:
        with sqlite3.connect(_records) as db:
            queued = db.execute("SELECT count(*) FROM experiments WHERE state='submitted'").fetchone()[0]
    finally:
        _inside.clear()
    if queued:  # the runs are recorded queued and the inline supervisor is not running yet: stop here
        with open(_ready, "w"):
            pass
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # the signal's handler runs in this loop
            time.sleep(0.005)

sys.addaudithook(_stop)
"""


def test_ctrl_c_after_the_runs_are_queued_and_before_they_are_supervised_records_them_cancelled(
    mrunner, mrunner_home, project, tmp_path
):
    """The moment between the runs recorded `submitted` (queued locally) and the inline supervisor that takes
    them (its records' connection): Ctrl-C there left them `submitted`, and `status` later called them `lost`
    ("its supervisor is gone")."""
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    (hooks / "sitecustomize.py").write_text(QUEUED_HOOK)
    ready = tmp_path / "ready"
    env = {
        **os.environ,
        "PYTHONPATH": str(hooks),
        "STOP_READY": str(ready),
        "STOP_RECORDS": str(Store().path),
    }
    (project / "quick.py").write_text("print('ran')\n")
    process = subprocess.Popen(
        [sys.executable, "-m", "mrunner", "quick.py", "-m", "i=range(3)"],
        cwd=project,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=as_from_a_terminal,
    )
    try:
        wait_for(lambda: ready.exists() or process.poll() is not None, what="the runs to be queued")
        assert ready.exists(), process.communicate()
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 130 and "Traceback" not in err, err
    sweep = json.loads(mrunner("status", "--json").stdout)[0]["sweep"]["id"]
    assert set(states(mrunner, sweep).values()) == {CANCELLED}, mrunner("status", sweep).stdout
    assert mrunner("resume", sweep, "--wait").returncode == 0
