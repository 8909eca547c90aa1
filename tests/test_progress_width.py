"""The progress line of an inline sweep fits a 40-column terminal: the real command line under a
pseudo-terminal of that size, every redraw no wider than the terminal (a wider one wraps and leaves a stale
line behind at each redraw)."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import struct
import subprocess
import sys
import termios
from pathlib import Path

COLUMNS = 40


def test_the_progress_line_fits_a_40_column_terminal(tmp_path: Path, mrunner_home: Path):
    project = tmp_path / "project"
    project.mkdir()
    (project / "pyproject.toml").write_text("[project]\nname = 'p'\n")
    (project / "train.py").write_text("import time\ntime.sleep(0.5)\n")
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, COLUMNS, 0, 0))
    env = {key: value for key, value in os.environ.items() if key not in ("COLUMNS", "LINES")}
    child = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mrunner",
            "train.py",
            "-m",
            "i=range(6)",
            "a_long_parameter_name=1",
            "context.max_parallel=2",
        ],
        cwd=project,
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
    assert child.wait() == 0, output.decode(errors="replace")
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", output.decode(errors="replace"))
    segments = [segment for line in text.split("\n") for segment in line.split("\r")]
    progress = [segment for segment in segments if "sweep" in segment and "/6" in segment or "━" in segment]
    assert progress, text
    assert max(len(segment.rstrip()) for segment in progress) <= COLUMNS, progress
