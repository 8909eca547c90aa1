"""An attempt's end that a detached supervisor records late, after `resume` started the next attempt, must not
end that next attempt. The race behind the rare failure of the random-cancel trials (a point recorded
`cancelled` at attempt 1, with no pid, "stopped by a signal to its pid"), made deterministic: the old
supervisor is held (SIGSTOP) from before the cancel until the resumed attempt runs, then let go."""

from __future__ import annotations

import json
import os
import signal

import pytest

from mrunner import process
from mrunner.records import COMPLETED, RUNNING
from mrunner.store import Store, default_path
from mrunner.testing import wait_for

# The first attempt runs until stopped (SIGTERM: exit 143); the second waits for `release`, then completes.
SCRIPT = """
import os, signal, sys, time
from mrunner import get_configuration

config = get_configuration()
first = os.path.join(config.marks, "first")
if not os.path.exists(first):
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    open(first, "w").close()
    while True:
        time.sleep(0.05)
while not os.path.exists(os.path.join(config.marks, "release")):
    time.sleep(0.05)
with open(os.path.join(config.marks, "done"), "a") as done:
    done.write("x")
"""


@pytest.fixture
def project(tmp_path, mrunner):
    (tmp_path / "project").mkdir()
    (tmp_path / "project" / "exp.py").write_text(SCRIPT)
    mrunner.cwd = tmp_path / "project"
    return tmp_path / "project"


def test_a_late_end_of_the_cancelled_attempt_does_not_end_the_resumed_one(mrunner, project):
    marks = project.parent / "marks"
    marks.mkdir()
    submitted = mrunner("exp.py", f"marks={marks}", "context.grace_period=5", "--detach")
    assert submitted.returncode == 0, submitted.stderr
    sweep = submitted.stdout.strip().splitlines()[-1]
    wait_for(lambda: (marks / "first").exists(), timeout=60)
    store = Store(default_path())
    wait_for(lambda: store.run(sweep, 0).state == RUNNING, timeout=60)
    old = store.sweep(sweep).detail["supervisor"]
    os.kill(int(old.split("@")[0]), signal.SIGSTOP)  # its end of attempt 0 waits until attempt 1 runs
    try:
        cancelled = mrunner("cancel", sweep)
        assert cancelled.returncode == 0, cancelled.stderr
        resumed = mrunner("resume", sweep, "--detach")
        assert resumed.returncode == 0, resumed.stderr
        wait_for(lambda: (store.run(sweep, 0).attempt, store.run(sweep, 0).state) == (1, RUNNING), timeout=60)
    finally:
        os.kill(int(old.split("@")[0]), signal.SIGCONT)
    try:
        wait_for(lambda: not process.alive(old), timeout=60)  # it recorded what it had to, and ended
        run = store.run(sweep, 0)
        assert (run.attempt, run.state) == (1, RUNNING), store.history(sweep, 0)
    finally:
        (marks / "release").touch()  # attempt 1 ends either way: nothing is left running after the test
    wait_for(lambda: store.run(sweep, 0).state == COMPLETED, timeout=60)
    assert (marks / "done").read_text() == "x"
    shown = json.loads(mrunner("status", sweep, "--json").stdout)["experiments"][0]
    assert shown["state"] == COMPLETED
