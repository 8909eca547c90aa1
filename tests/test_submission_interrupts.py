"""Ctrl-C (here SIGTERM, which mrunner takes as Ctrl-C) landing between the moment the records take a new
sweep and the moment its hand-over begins: the sweep's runs end `cancelled`, never left `planned` (a repeated
submission skips planned runs as being submitted by another mrunner, so they would never run). The signal
is sent from inside the submitting process at exactly that moment, by a wrapper around the real CLI."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = "from mrunner import get_configuration\nprint('i', get_configuration().i)\n"

# `mrunner ARGS` that sends itself SIGTERM right after TARGET (a module attribute) returns
SIGNALLED_AFTER = """
import importlib, os, runpy, signal, sys

module_name, _, name = sys.argv.pop(1).rpartition(".")
owner_name, _, attribute = module_name.rpartition(":") if ":" in module_name else ("", "", "")
module = importlib.import_module(module_name.split(":")[0])
owner = getattr(module, attribute) if attribute else module
real = getattr(owner, name)

def signalled(*args, **kwargs):
    answer = real(*args, **kwargs)
    os.kill(os.getpid(), signal.SIGTERM)
    return answer

setattr(owner, name, signalled)
sys.argv[0] = "mrunner"
runpy.run_module("mrunner", run_name="__main__", alter_sys=True)
"""


@pytest.mark.parametrize(
    "moment",
    [
        "mrunner.store:Store.record_sweep",  # the records have the sweep; nothing else happened yet
        "mrunner.submission._report_recorded",  # the sweep is reported, its hand-over not begun
        "mrunner.submission.collect_secrets",  # the hand-over began, before its own interrupt handling
    ],
)
def test_an_interrupt_right_after_recording_cancels_the_runs_and_a_repeat_runs_them(
    mrunner, mrunner_home, tmp_path: Path, moment: str
):
    project = tmp_path / "project"
    project.mkdir()
    (project / "train.py").write_text(SCRIPT)
    (tmp_path / "signalled.py").write_text(SIGNALLED_AFTER)
    stopped = subprocess.run(
        [sys.executable, str(tmp_path / "signalled.py"), moment, "train.py", "-m", "i=range(3)"],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert stopped.returncode == 128 + signal.SIGTERM, stopped.stderr  # 143: stopped by SIGTERM, as a shell says
    assert "Traceback" not in stopped.stderr and "interrupted by SIGTERM" in stopped.stderr, stopped.stderr
    mrunner.cwd = project
    (listed,) = json.loads(mrunner("status", "--json").stdout)
    sweep = listed["sweep"]["id"]
    shown = json.loads(mrunner("status", sweep, "--json").stdout)
    assert [run["state"] for run in shown["experiments"]] == ["cancelled"] * 3, shown
    again = mrunner("train.py", "-m", "i=range(3)")
    assert again.returncode == 0, again.stderr
    assert "already submitted" not in again.stdout + again.stderr
    latest = json.loads(mrunner("status", "--json").stdout)[0]["sweep"]["id"]
    assert latest != sweep
    assert [run["state"] for run in json.loads(mrunner("status", latest, "--json").stdout)["experiments"]] == [
        "completed"
    ] * 3
