"""A disk that fills during a local sweep (inline and detached): the sweep stops with one line naming the disk and
the space needed, nothing is recorded lost, and after space is freed `resume` runs exactly what did not complete.
The disk is a small tmpfs this test mounts as the context's storage_dir (root only)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from mrunner.records import COMPLETED, TERMINAL
from mrunner.testing import start_mrunner, wait_for

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="mounting a small file system needs root")

# Each experiment writes 300 KB into its own folder on the storage disk, then marks the ledger (on another disk).
FILLS = """
import os
from mrunner import get_configuration

config = get_configuration()
with open("result.bin", "wb") as out:
    out.write(os.urandom(300_000))
with open(os.path.join(config.ledger, f"done-{config.i}"), "a") as ledger:
    ledger.write("x")
"""

POINTS = 12


@pytest.fixture
def disk(tmp_path: Path):
    folder = tmp_path / "disk"
    folder.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(folder)], check=True)
    yield folder
    subprocess.run(["umount", "-l", str(folder)], check=True)


@pytest.fixture
def project(tmp_path: Path, mrunner) -> Path:
    (tmp_path / "project").mkdir()
    (tmp_path / "project" / "fills.py").write_text(FILLS)
    (tmp_path / "ledger").mkdir()
    mrunner.cwd = tmp_path / "project"
    return tmp_path / "project"


def fill(disk: Path) -> None:
    """Take the last free byte of ``disk``, the records' reserve included."""
    for reserve in disk.rglob("*.reserve"):
        reserve.unlink()
    try:
        with open(disk / "filler", "wb") as filler:
            while True:
                filler.write(bytes(64 * 1024))
                filler.flush()
    except OSError:  # full, at the open or at a write
        pass


def done(ledger: Path) -> dict[int, int]:
    return {int(p.name.split("-")[1]): len(p.read_text()) for p in ledger.glob("done-*")}


def states(mrunner, sweep: str, env: dict | None = None) -> dict[int, str]:
    shown = json.loads(mrunner("status", sweep, "--json", env=env).stdout)
    return {e["index"]: e["state"] for e in shown["experiments"]}


@pytest.mark.parametrize("detach", [False, True])
def test_a_storage_disk_that_fills_stops_the_sweep_and_resume_runs_the_rest_once(mrunner, project, disk, detach):
    ledger = project.parent / "ledger"
    arguments = [
        "fills.py",
        "-m",
        f"i=range({POINTS})",
        f"ledger={ledger}",
        f"context.storage_dir={disk}",
        "context.max_parallel=2",
    ]
    result = mrunner(*arguments, *(["--detach"] if detach else []))
    assert "Traceback" not in result.stderr, result.stderr
    if detach:
        assert result.returncode == 0, result.stderr
        sweep = result.stdout.strip().splitlines()[-1]
        followed = mrunner("status", sweep, "--wait", timeout=120)  # from another shell, to the sweep's end
        assert followed.returncode != 0, followed.stdout + followed.stderr
        # why the supervisor stopped is recorded before the runs it did not start end: a follower sees it
        assert "its supervisor stopped before the end: the disk of" in followed.stdout, followed.stdout
        shown = mrunner("status", sweep).stdout
        assert f"the disk of {disk}" in shown and "free at least" in shown, shown
    else:
        assert result.returncode != 0, result.stderr
        sweep = json.loads(mrunner("status", "--json").stdout)[0]["sweep"]["id"]
        stopped = [line for line in result.stderr.splitlines() if "stopped: the disk of" in line]
        assert len(stopped) == 1 and str(disk) in stopped[0] and "free at least" in stopped[0], result.stderr
        assert stopped[0].count(f"mrunner resume {sweep}") == 1, stopped[0]  # said once, not again in a suffix
    ended = states(mrunner, sweep)
    assert "lost" not in ended.values() and COMPLETED in ended.values() and set(ended.values()) != {COMPLETED}
    assert {i for i, state in ended.items() if state == COMPLETED} == set(done(ledger))
    subprocess.run(["mount", "-o", "remount,size=20m", str(disk)], check=True)  # space freed
    resumed = mrunner("resume", sweep)
    assert resumed.returncode == 0, resumed.stderr
    assert set(states(mrunner, sweep).values()) == {COMPLETED}
    assert done(ledger) == dict.fromkeys(range(POINTS), 1)


@pytest.mark.parametrize("detach", [False, True])
def test_a_full_disk_under_the_records_and_the_outputs_stops_the_sweep_and_resume_runs_the_rest_once(
    mrunner, project, disk, detach
):
    """The records database shares the disk the experiments fill: whichever write meets the full disk first
    (an experiment's output, its exit code, the records of its end), no experiment is recorded lost or runs
    twice, and `resume` after space is freed completes the rest."""
    ledger = project.parent / "ledger"
    subprocess.run(["mount", "-o", "remount,size=3m", str(disk)], check=True)
    env = {"XDG_DATA_HOME": str(disk / "data")}
    arguments = [
        "fills.py",
        "-m",
        f"i=range({POINTS})",
        f"ledger={ledger}",
        f"context.storage_dir={disk}/storage",
        "context.max_parallel=2",
    ]
    result = mrunner(*arguments, *(["--detach"] if detach else []), env=env)
    assert "Traceback" not in result.stderr, result.stderr
    if detach:
        assert result.returncode == 0, result.stderr
        sweep = result.stdout.strip().splitlines()[-1]
        wait_for(
            lambda: not {"submitted", "running"} & set(states(mrunner, sweep, env).values()), timeout=120, every=0.1
        )
    else:
        assert result.returncode != 0, result.stderr
        assert "disk" in result.stderr.splitlines()[-1], result.stderr
        sweep = json.loads(mrunner("status", "--json", env=env).stdout)[0]["sweep"]["id"]
    ended = states(mrunner, sweep, env)
    assert "lost" not in ended.values() and set(ended.values()) != {COMPLETED}, ended
    fill(disk)  # not a byte left, the records' reserve spent: what was recorded can still be read
    shown = mrunner("status", sweep, env=env)
    assert shown.returncode == 0 and f"{POINTS} experiments" in shown.stdout, shown.stderr
    subprocess.run(["mount", "-o", "remount,size=30m", str(disk)], check=True)  # space freed
    resumed = mrunner("resume", sweep, env=env)
    assert resumed.returncode == 0, resumed.stderr
    assert set(states(mrunner, sweep, env).values()) == {COMPLETED}
    assert done(ledger) == dict.fromkeys(range(POINTS), 1)


# Each experiment writes 60 files of a few bytes: their blocks, not their lengths, are what fills a disk.
SMALL_FILES = """
import os
from mrunner import get_configuration

config = get_configuration()
for number in range(60):
    with open(f"small-{number}.txt", "w") as out:
        out.write("x")
with open(os.path.join(config.ledger, f"done-{config.i}"), "a") as ledger:
    ledger.write("x")
"""


def test_the_space_a_full_disk_asks_for_is_enough_for_the_rest_when_experiments_write_small_files(
    mrunner, project, disk
):
    """Freeing what the line asks for lets `resume` run the rest: the need is measured in the disk's blocks (a
    file of one byte takes a block), and counts the experiments the full disk cut short, which run again."""
    (project / "small.py").write_text(SMALL_FILES)
    ledger = project.parent / "ledger"
    points = 40
    arguments = ["small.py", "-m", f"i=range({points})", f"ledger={ledger}", f"context.storage_dir={disk}"]
    result = mrunner(*arguments, "context.max_parallel=2")
    assert result.returncode != 0 and "Traceback" not in result.stderr, result.stderr
    (line,) = [line for line in result.stderr.splitlines() if "stopped: the disk of" in line]
    asked = float(re.search(r"free at least ([0-9.]+) MB", line).group(1)) * 2**20
    sweep = json.loads(mrunner("status", "--json").stdout)[0]["sweep"]["id"]
    usage = shutil.disk_usage(disk)
    size = -(-int(usage.used + asked) // 4096) * 4  # KiB, whole pages: exactly what was asked is free
    subprocess.run(["mount", "-o", f"remount,size={size}k", str(disk)], check=True)
    resumed = mrunner("resume", sweep)
    assert resumed.returncode == 0, (line, resumed.stderr)
    assert set(states(mrunner, sweep).values()) == {COMPLETED}
    assert done(ledger) == dict.fromkeys(range(points), 1)


# Waits for a gate (on another disk) before it writes, so the test fills the disk while it runs.
GATED = """
import os, time
from mrunner import get_configuration

config = get_configuration()
while not os.path.exists(config.gate):
    time.sleep(0.05)
with open("result.bin", "wb") as out:
    out.write(os.urandom(300_000))
with open(os.path.join(config.ledger, f"done-{config.i}"), "a") as ledger:
    ledger.write("x")
"""


def test_a_detached_supervisor_says_why_it_stopped_though_its_disk_has_not_a_byte_left(mrunner, project, disk):
    """The disk under the records and the outputs fills completely (the records' reserve spent too) while
    experiments run: the detached supervisor still leaves the line saying why it stopped (in room it kept for
    it), and once space is freed `status` shows it and `resume` runs each of the rest once."""
    (project / "gated.py").write_text(GATED)
    ledger, gate = project.parent / "ledger", project.parent / "gate"
    env = {"XDG_DATA_HOME": str(disk / "data")}
    points = 6
    arguments = ["gated.py", "-m", f"i=range({points})", f"ledger={ledger}", f"gate={gate}"]
    result = mrunner(*arguments, "context.max_parallel=2", "--detach", env=env)
    assert result.returncode == 0, result.stderr
    sweep = result.stdout.strip().splitlines()[-1]
    wait_for(lambda: list(states(mrunner, sweep, env).values()).count("running") == 2, timeout=60, every=0.1)
    fill(disk)
    gate.touch()
    said = "its supervisor stopped before the end:"
    wait_for(lambda: said in mrunner("status", sweep, env=env).stdout, timeout=60, every=0.2)
    subprocess.run(["mount", "-o", "remount,size=30m", str(disk)], check=True)  # space freed
    wait_for(lambda: not {"submitted", "running"} & set(states(mrunner, sweep, env).values()), timeout=60, every=0.1)
    (line,) = [line for line in mrunner("status", sweep, env=env).stdout.splitlines() if line.startswith(said)]
    assert "disk is full" in line or "the disk of" in line, line
    resumed = mrunner("resume", sweep, env=env)
    assert resumed.returncode == 0, resumed.stderr
    assert set(states(mrunner, sweep, env).values()) == {COMPLETED}
    assert done(ledger) == dict.fromkeys(range(points), 1)


def test_logs_of_an_attempt_the_full_disk_kept_from_its_log_says_so_and_why(mrunner, project, disk):
    """An attempt that never started (the disk was full before its log could be made) has no log, and one whose
    output the full disk kept from its log printed nothing: `logs` says so in one line with the recorded reason,
    instead of printing nothing and exiting 0."""
    ledger = project.parent / "ledger"
    arguments = ["fills.py", "-m", f"i=range({POINTS})", f"ledger={ledger}", f"context.storage_dir={disk}"]
    assert mrunner(*arguments, "context.max_parallel=2").returncode != 0
    sweep = json.loads(mrunner("status", "--json").stdout)[0]["sweep"]["id"]
    ended = states(mrunner, sweep)
    unstarted = [i for i, state in ended.items() if state == "cancelled"]
    assert unstarted, ended
    shown = mrunner("logs", f"{sweep}/{unstarted[-1]}")
    assert shown.returncode != 0 and shown.stdout == "", shown
    assert shown.stderr.count("\n") == 1 and "has no log of attempt 0: not started: the disk of" in shown.stderr
    for index in (i for i, state in ended.items() if state == "failed"):
        shown = mrunner("logs", f"{sweep}/{index}")
        assert shown.returncode == 0 and "Traceback" not in shown.stderr, shown
        if not shown.stdout:
            assert shown.stderr.count("\n") == 1 and "printed nothing in attempt 0 (failed: " in shown.stderr
    completed = next(i for i, state in ended.items() if state == COMPLETED)
    assert mrunner("logs", f"{sweep}/{completed}").stderr == ""  # it printed nothing, and completed


# Each experiment writes 30 KB: many experiments, so the records of their ends grow as the outputs do.
SMALL_OUTPUTS = """
import os
from mrunner import get_configuration

config = get_configuration()
with open("result.bin", "wb") as out:
    out.write(os.urandom(30_000))
with open(os.path.join(config.ledger, f"done-{config.i}"), "a") as ledger:
    ledger.write("x")
"""


def test_the_space_asked_counts_the_records_when_they_share_the_full_disk(mrunner, project, disk):
    """The records (their database and its write-ahead log) lie on the disk the experiments fill: the line asks
    for what they need too, not only for what the sweep's folder grows by, so freeing exactly what it asks lets
    `resume` run the rest."""
    (project / "small.py").write_text(SMALL_OUTPUTS)
    ledger = project.parent / "ledger"
    subprocess.run(["mount", "-o", "remount,size=3m", str(disk)], check=True)
    env = {"XDG_DATA_HOME": str(disk / "data")}
    points = 200
    arguments = ["small.py", "-m", f"i=range({points})", f"ledger={ledger}", "--yes", "--detach"]
    result = mrunner(*arguments, env=env)
    assert result.returncode == 0, result.stderr
    sweep = result.stdout.strip().splitlines()[-1]
    followed = mrunner("status", sweep, "--wait", env=env, timeout=300)
    assert followed.returncode != 0, followed.stdout + followed.stderr
    (line,) = [line for line in mrunner("status", sweep, env=env).stdout.splitlines() if "free at least" in line]
    asked = float(re.search(r"free at least ([0-9.]+) MB", line).group(1)) * 2**20
    usage = shutil.disk_usage(disk)
    size = -(-int(usage.used + asked) // 4096) * 4  # KiB, whole pages: exactly what was asked is free
    subprocess.run(["mount", "-o", f"remount,size={size}k", str(disk)], check=True)
    resumed = mrunner("resume", sweep, "--wait", env=env, timeout=300)
    assert resumed.returncode == 0, (line, resumed.stdout, resumed.stderr)
    assert set(states(mrunner, sweep, env).values()) == {COMPLETED}
    assert done(ledger) == dict.fromkeys(range(points), 1)


# Point 0 runs until a gate (on another disk) opens; the others write 300 KB each, until the disk is full.
HOLDS_ONE = """
import os, time
from mrunner import get_configuration

config = get_configuration()
if config.i == 0:
    while not os.path.exists(config.gate):
        time.sleep(0.05)
else:
    with open("result.bin", "wb") as out:
        out.write(os.urandom(300_000))
with open(os.path.join(config.ledger, f"done-{config.i}"), "a") as ledger:
    ledger.write("x")
"""


def test_a_detached_supervisor_records_why_it_stopped_before_the_runs_it_will_not_start_end(mrunner, project, disk):
    """The supervisor stops early (its disk is full) while point 0 still runs: it has cancelled the points it will
    not start and is held, by an experiment the test lets go, between those cancels and its own end. Why it stopped
    must already be recorded then: otherwise a follower that sees every run end (the held one ending last, or the
    failing one) can finish without the reason, as a fast-tier run once did."""
    (project / "holds.py").write_text(HOLDS_ONE)
    ledger, gate = project.parent / "ledger", project.parent / "gate"
    arguments = ["holds.py", "-m", f"i=range({POINTS})", f"ledger={ledger}", f"gate={gate}"]
    result = mrunner(*arguments, f"context.storage_dir={disk}", "context.max_parallel=2", "--detach")
    assert result.returncode == 0, result.stderr
    sweep = result.stdout.strip().splitlines()[-1]
    try:
        held = wait_for(
            lambda: states(mrunner, sweep),
            lambda found: found[0] == "running" and all(s in TERMINAL for i, s in found.items() if i),
            timeout=120,
            every=0.1,
        )
        assert "cancelled" in held.values(), held  # the disk filled before every point started
        follower = start_mrunner(project, "status", sweep, "--wait")
        shown = mrunner("status", sweep).stdout
        assert f"its supervisor stopped before the end: the disk of {disk}" in shown, shown
    finally:
        gate.touch()  # point 0 ends either way: nothing is left running after the test
    out, err = follower.communicate(timeout=120)
    assert follower.returncode == 1 and "Traceback" not in err, (out, err)
    unwrapped = re.sub(r"\n +", "", out)  # its lines wrapped to the width it takes for a terminal's
    assert f"its supervisor stopped before the end: the disk of {disk}" in unwrapped, out
    assert done(ledger)[0] == 1
