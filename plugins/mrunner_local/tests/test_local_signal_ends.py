"""An experiment that dies of a signal is recorded with the signal's name, whoever sent it: one passed on by
the pid `status` shows (its attempt wrapper), or the experiment's own crash. One that exits 128 + N by its own
choice is not: its exit code is its own."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest

from mrunner.records import FAILED, RunUpdate

# Attempt 0 sends the signal to its parent (the wrapper, the pid `status` shows), or to itself, then waits for it.
DIES = """
import os, signal, sys, time
from mrunner import get_configuration

config = get_configuration()
number = getattr(signal, config.signal)
os.kill(os.getppid() if config.to == "wrapper" else os.getpid(), number)
time.sleep(60)
"""


@pytest.mark.parametrize(("name", "to"), [("SIGUSR1", "wrapper"), ("SIGUSR2", "wrapper"), ("SIGABRT", "itself")])
def test_an_experiment_killed_by_a_signal_is_recorded_naming_it(mrunner, tmp_path: Path, name, to):
    project = tmp_path / "project"
    project.mkdir()
    (project / "dies.py").write_text(DIES)
    mrunner.cwd = project
    ran = mrunner("dies.py", f"signal={name}", f"to={to}")
    assert ran.returncode != 0, ran.stderr
    sweep = ran.stdout.strip().splitlines()[-1]
    document = json.loads(mrunner("status", sweep, "--json").stdout)
    experiment = document["experiments"][0]
    number = getattr(signal, name)
    assert (experiment["state"], experiment["exit_code"]) == (FAILED, 128 + number), experiment
    assert experiment["detail"] == f"killed by {name}", experiment
    assert f"killed by {name}" in mrunner("status", f"{sweep}/0").stdout
    assert f"mrunner: the experiment was killed by {name}" in mrunner("logs", f"{sweep}/0").stdout  # as on clusters


def test_an_experiment_that_exits_130_by_itself_is_not_said_to_be_killed(mrunner, tmp_path: Path):
    project = tmp_path / "project"
    project.mkdir()
    (project / "exits.py").write_text("import sys\nsys.exit(130)\n")
    mrunner.cwd = project
    ran = mrunner("exits.py")
    assert ran.returncode != 0, ran.stderr
    assert "killed" not in ran.stderr + ran.stdout, ran.stderr
    sweep = ran.stdout.strip().splitlines()[-1]
    experiment = json.loads(mrunner("status", sweep, "--json").stdout)["experiments"][0]
    assert (experiment["state"], experiment["exit_code"], experiment["detail"]) == (FAILED, 130, None), experiment
    shown = mrunner("status", f"{sweep}/0").stdout
    assert "killed" not in shown and "exit code 130" in shown, shown


@pytest.mark.parametrize("number", list(signal.Signals))
def test_every_signal_end_is_named_with_the_exit_code_a_shell_gives_it(number):
    """A death by signal N reaches the records as -N (the attempt wrapper's exit-code file, a raw ``Popen``
    return code, Slurm's ``0:N``); 128 + N is an exit code like any other."""
    killed = RunUpdate(0, FAILED, exit_code=-number)
    assert (killed.exit_code, killed.detail) == (128 + number, f"killed by {number.name}")
    assert RunUpdate(0, FAILED, exit_code=-number, detail="OOMKilled").detail == f"killed by {number.name}: OOMKilled"
    assert RunUpdate(0, FAILED, exit_code=128 + number).detail is None
    assert RunUpdate(0, FAILED, exit_code=1).detail is None
    assert RunUpdate(0, FAILED, exit_code=-70).detail is None  # no such signal
    assert RunUpdate(0, FAILED, end_codes={0: -number}).end_codes == {0: 128 + number}


def test_the_wrapper_tells_a_platform_that_reads_a_termination_message(mrunner, tmp_path: Path):
    """Kubernetes reads the file ``MRUNNER_TERMINATION_LOG`` names: a death by signal says so there (the
    container's exit code 128 + N cannot); an exit of the experiment's own writes nothing."""
    project = tmp_path / "project"
    project.mkdir()
    (project / "dies.py").write_text(DIES)
    (project / "exits.py").write_text("import sys\nsys.exit(130)\n")
    told = tmp_path / "termination-log"
    mrunner.cwd = project
    ran = mrunner("dies.py", "signal=SIGABRT", "to=itself", env={"MRUNNER_TERMINATION_LOG": str(told)})
    assert ran.returncode != 0 and told.read_text() == "killed by SIGABRT", ran.stderr
    told.unlink()
    ran = mrunner("exits.py", env={"MRUNNER_TERMINATION_LOG": str(told)})
    assert ran.returncode != 0 and not told.exists(), ran.stderr


# Starts a process of its own (a data loader's worker, a `cmd &`) in its process group, notes its pid, then ends.
LEAVES = """
import os, subprocess, sys
from mrunner import get_configuration

config = get_configuration()
child = subprocess.Popen(["sleep", "600"])
with open(os.path.join(config.children, str(config.code)), "w") as out:
    out.write(str(child.pid))
sys.exit(config.code)
"""


def _runs(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.parametrize("detach", [False, True])
def test_nothing_an_experiment_started_outlives_its_recorded_end(mrunner, tmp_path: Path, detach):
    """A process the experiment left in its group ran on unsupervised after the experiment completed or failed,
    holding its CPUs (or a GPU the next experiment gets), as no Slurm job or pod lets it."""
    from mrunner.testing import wait_for

    project = tmp_path / "project"
    project.mkdir()
    (project / "leaves.py").write_text(LEAVES)
    children = tmp_path / "children"
    children.mkdir()
    mrunner.cwd = project
    ran = mrunner("leaves.py", "-m", "code=0,3", f"children={children}", *(["--detach"] if detach else []))
    sweep = ran.stdout.strip().splitlines()[-1]

    def ended() -> bool:
        found = json.loads(mrunner("status", sweep, "--json").stdout)["experiments"]
        return [e["state"] for e in found] == ["completed", FAILED]

    wait_for(ended, timeout=120)
    assert sorted(path.name for path in children.iterdir()) == ["0", "3"]
    for noted in children.iterdir():
        pid = int(noted.read_text())
        wait_for(lambda pid=pid: not _runs(pid), timeout=10)  # gone with the end, not 600 s later


# Runs until stopped; with a handler, the script answers SIGTERM with an exit code of its own.
STOPPABLE = """
import signal, sys, time
from mrunner import get_configuration

config = get_configuration()
if config.handler:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(7))
print("started", flush=True)
while True:
    time.sleep(0.05)
"""


@pytest.mark.parametrize("how", ["cancel", "kill"])
def test_a_stopped_experiment_shows_what_its_script_did_with_the_stop(mrunner, tmp_path: Path, how):
    """`cancel` (or `kill -TERM` of the pid `status` shows) stops two experiments: one whose script exits 7 from its
    SIGTERM handler, one that SIGTERM kills. Both are `cancelled` (their ends are not their own), and `status`, its
    table and `--json`, shows each script's own exit code, 7 and -15, beside it: it was none before."""
    from mrunner.testing import experiments, wait_for

    project = tmp_path / "project"
    project.mkdir()
    (project / "stoppable.py").write_text(STOPPABLE)
    mrunner.cwd = project
    submitted = mrunner("stoppable.py", "-m", "handler=true,false", "context.grace_period=5", "--detach", "--quiet")
    assert submitted.returncode == 0, submitted.stderr
    sweep = submitted.stdout.strip().splitlines()[-1]
    for index in (0, 1):
        wait_for(lambda index=index: "started" in mrunner("logs", f"{sweep}/{index}").stdout, timeout=60, every=0.1)
    if how == "cancel":
        assert mrunner("cancel", sweep).returncode == 0
    else:
        import os

        for entry in experiments(mrunner, sweep).values():
            os.kill(int(entry["backend_ref"][4:].split("@")[0]), signal.SIGTERM)
    shown = wait_for(
        lambda: experiments(mrunner, sweep),
        lambda found: all(e["state"] == "cancelled" and e["exit_code"] is not None for e in found.values()),
        timeout=60,
        what="both cancelled with their scripts' exit codes",
    )
    assert {i: (e["exit_code"], e["attempts"][-1]["exit_code"]) for i, e in shown.items()} == {0: (7, 7), 1: (-15, -15)}
    table = [line for line in mrunner("status", sweep).stdout.splitlines() if line.split()[2:3] == ["cancelled"]]
    rows = {int(line.split()[0]): line.split() for line in table}
    assert rows[0][2:4] == ["cancelled", "7"] and rows[1][2:4] == ["cancelled", "-15"], table
    reason = "cancelled by `mrunner cancel`" if how == "cancel" else "stopped by a signal to its pid"
    assert len(table) == 2 and all(line.endswith(reason) for line in table), table
