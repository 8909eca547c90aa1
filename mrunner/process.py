"""Which process is which: a pid with its start time, so that a reused pid is not taken for the process
that once had it (a submission killed long ago must not look like one still in progress)."""

from __future__ import annotations

import os


def start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (from /proc), or None when it cannot be read."""
    try:
        with open(f"/proc/{pid}/stat") as stream:
            return stream.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def identity(pid: int | None = None) -> str:
    """``PID@START`` of ``pid`` (default: this process)."""
    pid = os.getpid() if pid is None else pid
    return f"{pid}@{start_time(pid)}"


def alive(recorded: str) -> bool:
    """Whether the process recorded as ``PID@START`` still runs. Without /proc there is no telling: yes."""
    pid, _, started = recorded.partition("@")
    if not pid.isdigit():
        return False
    if not os.path.isdir("/proc/self"):
        return True
    return started != "None" and start_time(int(pid)) == started
