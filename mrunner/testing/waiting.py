"""The one way a test waits: for a state or an event it can look at, never for a fixed time."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_for(
    look: Callable[[], T],
    until: Callable[[T], object] = bool,
    *,
    timeout: float = 60.0,
    every: float = 0.05,
    what: str = "the condition",
) -> T:
    """Call ``look`` every ``every`` seconds until ``until`` holds for what it returned, and return that. After
    ``timeout`` seconds the test fails naming ``what`` and the last look, so a slow platform shows where it
    stood. ``wait_for(lambda: path.exists())`` waits for an event; ``wait_for(lambda: status(sweep), ended)``
    for a state, returning it."""
    deadline = time.monotonic() + timeout
    while True:
        seen = look()
        if until(seen):
            return seen
        assert time.monotonic() < deadline, f"timed out after {timeout:g} s waiting for {what}; last look: {seen!r}"
        time.sleep(every)
