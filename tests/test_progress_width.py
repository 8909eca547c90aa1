"""The progress line fits a narrow terminal: the real command line under a pseudo-terminal of that size, every
redraw no wider than the terminal (a wider one wraps and leaves a stale line behind at each redraw), and nothing
of it cut: the sweep's id, the count and each state stay whole (the elapsed time and the bar give way)."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import struct
import subprocess
import sys
import termios
from collections.abc import Callable
from pathlib import Path

import pytest

from mrunner.testing import MrunnerCommand


def _on_terminal(args: list[str], cwd: Path, columns: int, seen: Callable[[str], None] = lambda text: None) -> str:
    """What ``python -m mrunner ARGS`` wrote on a pseudo-terminal ``columns`` wide, escape sequences left out,
    one entry per redraw (each line and each carriage return); ``seen(text so far)`` after each read."""
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, columns, 0, 0))
    env = {key: value for key, value in os.environ.items() if key not in ("COLUMNS", "LINES")}
    child = subprocess.Popen(
        [sys.executable, "-m", "mrunner", *args],
        cwd=cwd,
        stdin=follower,
        stdout=follower,
        stderr=follower,
        env={**env, "TERM": "xterm"},
    )
    os.close(follower)
    output = b""
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # the child ended and closed the terminal
            break
        if not chunk:
            break
        output += chunk
        seen(output.decode(errors="replace"))
    os.close(leader)
    assert child.wait() == 0, output.decode(errors="replace")
    return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", output.decode(errors="replace"))


def _redraws(text: str) -> list[str]:
    return [segment.rstrip() for line in text.split("\n") for segment in line.split("\r")]


def _project(tmp_path: Path, script: str) -> Path:
    project = tmp_path / "project"
    project.mkdir()
    (project / "pyproject.toml").write_text("[project]\nname = 'p'\n")
    (project / "train.py").write_text(script)
    return project


@pytest.mark.parametrize("columns", [40, 50, 60, 80])
def test_the_progress_line_of_an_inline_sweep_fits_and_is_never_cut(tmp_path: Path, mrunner_home: Path, columns):
    project = _project(tmp_path, "import time\ntime.sleep(0.5)\n")
    args = ["train.py", "-m", "i=range(6)", "a_long_parameter_name=1", "context.max_parallel=2"]
    text = _on_terminal(args, project, columns)
    sweep = next(line.split()[1].rstrip(":") for line in _redraws(text) if line.startswith("sweep "))
    progress = [segment for segment in _redraws(text) if re.search(r"\b[0-6]/6\b", segment)]
    assert progress, text
    assert all(len(segment) <= columns for segment in _redraws(text)), text  # the lines about the sweep too
    assert all(f"sweep {sweep} " in segment and "\u2026" not in segment for segment in progress), progress


@pytest.mark.parametrize("columns", [40, 60])
def test_the_progress_of_status_wait_fits_and_shows_every_state_whole(tmp_path: Path, mrunner_home: Path, columns):
    """`status SWEEP --wait` from another shell: the counts of each state (``4 submitted, 2 running``) go below
    the bar, broken between words, instead of being cut at the terminal's edge. The experiments wait for a file
    the test writes once the progress has shown them unfinished."""
    gate = tmp_path / "gate"
    project = _project(tmp_path, f"import os, time\nwhile not os.path.exists({str(gate)!r}):\n    time.sleep(0.05)\n")
    submitted = MrunnerCommand(project)(
        "train.py", "-m", "i=range(6)", "context.max_parallel=2", "--detach", "--yes", "--quiet"
    )
    assert submitted.returncode == 0, submitted.stderr
    sweep = submitted.stdout.split()[-1]

    def release(text: str) -> None:
        if "running" in text or "submitted" in text:
            gate.touch()

    text = _on_terminal(["status", sweep, "--wait"], project, columns, release)
    redraws = _redraws(text)
    assert all(len(segment) <= columns for segment in redraws), redraws
    assert not [segment for segment in redraws if "\u2026" in segment], redraws
    assert any(re.fullmatch(r"(\d+ (submitted|running|completed)(, )?)+", segment) for segment in redraws), redraws
    assert any(re.fullmatch(rf"sweep {sweep}\b.* [0-6]/6( .*)?", segment) for segment in redraws), redraws


def test_wait_on_a_terminal_says_the_final_counts_once(tmp_path: Path, mrunner_home: Path):
    """At the end of `--wait` on a terminal the bar stays, and the final counts are said once, by the line
    after it, not also by the bar's detail line left above it; the follower's bar, drawn once the run's own
    ended, starts at the real count, not at 0/3."""
    project = _project(tmp_path, "import time\ntime.sleep(0.3)\n")
    text = _on_terminal(["train.py", "-m", "i=range(3)", "--wait"], project, 100)
    redraws = [segment for segment in _redraws(text) if segment]
    last_bar = max(i for i, segment in enumerate(redraws) if re.search(r"\b3/3\b", segment))
    followed = redraws[redraws.index(next(s for s in redraws if re.fullmatch(r"[a-z]+-[a-z]+-[0-9a-f]+", s))) :]
    assert not [segment for segment in followed if re.search(r"\b0/3\b", segment)], followed  # no stale 0/3
    assert [segment for segment in redraws[last_bar:] if "3 completed" in segment] == [
        next(segment for segment in redraws if re.fullmatch(r"sweep \S+: 3 completed", segment))
    ], redraws
