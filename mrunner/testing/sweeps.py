"""What a test reads of a sweep, as a user does: through ``mrunner status --json`` and ``mrunner logs``, never
the records, so that one helper serves every backend, whose experiments may run on another machine."""

from __future__ import annotations

import json
from typing import Any

from mrunner.records import TERMINAL
from mrunner.testing.waiting import wait_for


def experiments(mrunner: Any, sweep: str, *, env: dict | None = None, timeout: float = 300.0) -> dict[int, dict]:
    """Each experiment of ``sweep`` as ``mrunner status SWEEP --json`` shows it, by index (``mrunner``: the
    fixture); the test fails with its stderr if the command fails."""
    shown = mrunner("status", sweep, "--json", env=env, timeout=timeout)
    assert shown.returncode == 0, shown.stderr
    return {entry["index"]: entry for entry in json.loads(shown.stdout)["experiments"]}


def states(mrunner: Any, sweep: str, *, env: dict | None = None) -> dict[int, str]:
    """Each experiment's state, by index: what most waits look at."""
    return {index: entry["state"] for index, entry in experiments(mrunner, sweep, env=env).items()}


def ended(mrunner: Any, sweep: str, *, timeout: float = 300.0, every: float = 0.5) -> dict[int, dict]:
    """The experiments (as ``experiments``) once every one is in a terminal state (``mrunner.records.TERMINAL``),
    whichever: a test then says which it expects, so that a wrong end fails on what it was, not on a timeout."""
    return wait_for(
        lambda: experiments(mrunner, sweep, timeout=timeout),
        lambda found: all(entry["state"] in TERMINAL for entry in found.values()),
        timeout=timeout,
        every=every,
        what=f"every experiment of {sweep} to end",
    )


def logged(mrunner: Any, run: str, mark: str) -> list[str]:
    """The words after ``mark`` on the line of experiment ``run``'s output (``SWEEP/INDEX``, its last attempt,
    as ``mrunner logs`` shows it) that starts with it; the test fails unless there is exactly one such line, so
    an experiment that prints ``mark`` once per run shows here whether it ran twice."""
    lines = [line for line in mrunner("logs", run).stdout.splitlines() if line.split(maxsplit=1)[:1] == [mark]]
    assert len(lines) == 1, f"{run} printed {len(lines)} lines starting with {mark}: {lines}"
    return lines[0].split()[1:]
