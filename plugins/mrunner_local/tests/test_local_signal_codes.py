"""mrunner stopped by a signal exits as a shell reports a command that signal ended, 128 + the signal (130 for
Ctrl-C's SIGINT, 143 for SIGTERM, 129 for SIGHUP), with one line naming it; SIGTERM and SIGHUP still stop it as
Ctrl-C does, so what is recorded is the same whichever of the three arrived. Shells, ``timeout``, schedulers
and CI systems read the code to tell a stop from a failure, and which stop it was."""

from __future__ import annotations

import json
import signal
from pathlib import Path

from mrunner.records import CANCELLED, RUNNING
from mrunner.store import Store
from mrunner.testing import start_mrunner, wait_for

# Says it runs (a file named by its index), then waits to be stopped; SIGTERM ends it as Python's default does.
WAITS = """
import os, time
from mrunner import get_configuration

config = get_configuration()
with open(os.path.join(config.started, str(config.i)), "w"):
    pass
time.sleep(600)
"""

SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def _project(tmp_path: Path, mrunner) -> tuple[Path, Path]:
    project = tmp_path / "project"
    project.mkdir()
    (project / "waits.py").write_text(WAITS)
    mrunner.cwd = project
    return project, tmp_path


def _ends(mrunner, sweep: str) -> dict[int, tuple]:
    """What the records say of each experiment's end, less its times."""
    listing = json.loads(mrunner("status", sweep, "--json").stdout)["experiments"]
    return {e["index"]: (e["state"], e["exit_code"], e["detail"], e["attempt"]) for e in listing}


def test_a_signal_to_an_inline_sweep_exits_with_its_code_and_records_as_ctrl_c_does(mrunner, tmp_path):
    """Each signal stops a running inline sweep of three (two run, one waits for a slot): the code is
    128 + the signal, the last line names it and how to resume, and the records are Ctrl-C's, the same for
    each signal (the running experiments stopped and cancelled, the waiting one cancelled)."""
    project, base = _project(tmp_path, mrunner)
    ends = {}
    for number in SIGNALS:
        started = base / f"started-{number}"
        started.mkdir()
        process = start_mrunner(
            project,
            "waits.py",
            "-m",
            "i=range(3)",
            f"started={started}",
            "context.max_parallel=2",
            "context.grace_period=5",
        )
        try:
            wait_for(
                lambda started=started, process=process: (
                    len(list(started.iterdir())) == 2 or process.poll() is not None
                ),
                what="two experiments to run",
            )
            assert process.poll() is None, process.communicate()
            process.send_signal(number)
            _, err = process.communicate(timeout=60)
        finally:
            if process.poll() is None:
                process.kill()
        name = signal.Signals(number).name
        assert process.returncode == 128 + number and "Traceback" not in err, err
        last = err.strip().splitlines()[-1]
        sweep = json.loads(mrunner("status", "--json").stdout)[0]["sweep"]["id"]
        assert last.startswith(f"mrunner: error: interrupted by {name}: sweep {sweep} records what was done"), err
        assert f"mrunner resume {sweep}" in last, err
        ends[number] = _ends(mrunner, sweep)
        assert {state for state, *_ in ends[number].values()} == {CANCELLED}, ends[number]
    assert ends[signal.SIGTERM] == ends[signal.SIGINT] and ends[signal.SIGHUP] == ends[signal.SIGINT], ends


def test_a_signal_to_status_wait_exits_with_its_code_and_leaves_the_sweep_running(mrunner, tmp_path):
    """`status SWEEP --wait` follows a detached sweep; each signal stops the following, not the sweep: the
    code is 128 + the signal, the last line names it and says the sweep goes on, and its records are as
    they were (the experiment still running under its supervisor)."""
    project, base = _project(tmp_path, mrunner)
    started = base / "started"
    started.mkdir()
    detached = mrunner("waits.py", "i=0", f"started={started}", "--detach")
    assert detached.returncode == 0, detached.stderr
    sweep = detached.stdout.strip().splitlines()[-1]
    try:
        wait_for(lambda: Store().run(sweep, 0).state == RUNNING, what="the experiment to run")
        before = _ends(mrunner, sweep)
        for number in SIGNALS:
            follow = start_mrunner(project, "status", sweep, "--wait")
            try:
                assert follow.stderr is not None
                assert follow.stderr.readline().startswith(f"sweep {sweep}: "), follow.communicate()  # following
                follow.send_signal(number)
                _, err = follow.communicate(timeout=60)
            finally:
                if follow.poll() is None:
                    follow.kill()
            name = signal.Signals(number).name
            assert follow.returncode == 128 + number and "Traceback" not in err, err
            last = err.strip().splitlines()[-1]
            assert last.startswith(f"mrunner: error: interrupted by {name}: stopped following sweep {sweep}"), err
            assert "which goes on" in last and f"mrunner cancel {sweep}" in last, err
            assert _ends(mrunner, sweep) == before
    finally:
        assert mrunner("cancel", sweep).returncode == 0
