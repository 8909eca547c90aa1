"""How the attempt wrapper starts the experiment (``mrunner.attempt._start``, a fork of its own rather than
``subprocess``): the experiment leads its own process group, dies with a wrapper killed outright, gets the
default disposition of the signals Python ignores and none of the wrapper's descriptors, and a command that
cannot start is said in one line with exit code 127."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from mrunner.attempt import command_line
from mrunner.layout import Layout
from mrunner.testing import wait_for

REPORT = """
import json, os, sys, time
seen = {
    "pid": os.getpid(),
    "group": os.getpgid(0),
    "ignored": int(open(sys.argv[3]).read().split()[1], 16),  # as the shell that exec'd this found them
    "fds": sorted(int(fd) for fd in os.listdir("/proc/self/fd")),
}
with open(sys.argv[1] + ".part", "w") as out:
    json.dump(seen, out)
os.rename(sys.argv[1] + ".part", sys.argv[1])
time.sleep(float(sys.argv[2]))
"""


def _start(tmp_path: Path, command: list[str]) -> subprocess.Popen:
    layout = Layout(str(tmp_path / "storage"), "p", "s", 0, "e")
    (tmp_path / "code").mkdir(exist_ok=True)
    line = command_line(sys.executable, str(tmp_path / "code"), command, grace=1.0)
    env = {**os.environ, **layout.environment()}
    return subprocess.Popen(line, env=env, stderr=subprocess.PIPE, text=True)


def _running(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie does not: not every PID 1 reaps the orphans it inherits)."""
    try:
        with open(f"/proc/{pid}/stat") as stream:
            return stream.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.skipif(sys.platform != "linux", reason="the tie to the wrapper is Linux's PR_SET_PDEATHSIG")
def test_the_experiment_leads_its_group_sees_default_sigpipe_no_wrapper_descriptor_and_dies_with_its_wrapper(
    tmp_path: Path,
) -> None:
    report = tmp_path / "report.json"
    ignored = tmp_path / "ignored"
    shell = f'grep SigIgn /proc/$$/status > {ignored}; exec "$0" -c "$1" {report} 60 {ignored}'
    wrapper = _start(tmp_path, ["sh", "-c", shell, sys.executable, REPORT])
    seen = wait_for(lambda: report.exists() and report.read_text(), what="the experiment's report")
    started = json.loads(seen)
    assert started["group"] == started["pid"] != wrapper.pid
    assert not started["ignored"] & (1 << (signal.SIGPIPE - 1))  # Python's own SIG_IGN is not passed on
    assert started["fds"] == [0, 1, 2, 3]  # its streams and the listing's own descriptor, nothing of the wrapper
    os.kill(wrapper.pid, signal.SIGKILL)
    assert wrapper.wait() == -signal.SIGKILL
    wait_for(lambda: not _running(started["pid"]), timeout=10, what="the experiment to die with its wrapper")


def test_a_command_that_cannot_start_exits_127_and_says_why(tmp_path: Path) -> None:
    wrapper = _start(tmp_path, ["no-such-program-of-mrunner"])
    _, stderr = wrapper.communicate(timeout=60)
    assert wrapper.returncode == 127
    assert stderr.strip().splitlines() == [
        "mrunner: cannot start no-such-program-of-mrunner: No such file or directory"
    ]
    assert (Path(Layout(str(tmp_path / "storage"), "p", "s", 0, "e").exit_code_file())).read_text().strip() == "127"
