"""Two identical submissions at the same moment run each experiment once: the check for what is already
submitted and the recording are one transaction."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time

COUNT = 20

# The spec says it is ready, then blocks opening the FIFO `go` until the test opens its other end: both
# mrunner processes leave the barrier together, right before they snapshot and record.
SPEC = (
    """\
import os, pathlib
from mrunner import create_experiments

sync = pathlib.Path(os.environ["SYNC_DIR"])
(sync / f"ready-{os.getpid()}").touch()
os.close(os.open(sync / "go", os.O_RDONLY))
experiments_list = create_experiments("work.py", params_grid={"i": list(range(%d))})
"""
    % COUNT
)

WORK = """\
import os
from mrunner import get_configuration

with open(os.environ["RAN_FILE"], "a") as stream:
    stream.write(f"{get_configuration().i}\\n")
"""


def test_two_identical_submissions_at_once_run_each_experiment_once(tmp_path):
    project, sync = tmp_path / "project", tmp_path / "sync"
    project.mkdir()
    sync.mkdir()
    (project / "spec.py").write_text(SPEC)
    (project / "work.py").write_text(textwrap.dedent(WORK))
    os.mkfifo(sync / "go")
    ran = tmp_path / "ran.txt"
    env = {**os.environ, "SYNC_DIR": str(sync), "RAN_FILE": str(ran)}
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "mrunner", "spec.py"],
            cwd=project,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    deadline = time.monotonic() + 120
    while len(list(sync.glob("ready-*"))) < 2:  # both are at the barrier (or one died: say so)
        assert all(p.poll() is None for p in processes), [p.communicate() for p in processes]
        assert time.monotonic() < deadline, "the submissions never reached the barrier"
        time.sleep(0.01)
    release = os.open(sync / "go", os.O_WRONLY)  # both readers are waiting: this opens it for both at once
    os.close(release)
    outputs = [p.communicate(timeout=300) for p in processes]
    assert [p.returncode for p in processes] == [0, 0], outputs
    assert sorted(int(line) for line in ran.read_text().split()) == list(range(COUNT))
    skipped = [err for _, err in outputs if f"{COUNT} of {COUNT} experiments were already submitted" in err]
    assert len(skipped) == 1, outputs
    sweeps = {out.split()[0] for out, _ in outputs}
    assert len(sweeps) == 1  # the one that skipped everything names the sweep that runs them
