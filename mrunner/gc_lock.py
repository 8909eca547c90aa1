"""This machine's collection lock: a submission and a collection (`mrunner gc`, `mrunner forget`) exclude
each other with it.

A submission holds it shared while it packages and prepares (so several submit at once), a collection
exclusively while it decides and removes. A submission records its sweep before it packages, so a
collection that starts first makes it wait until the removal is over, and one that starts later sees the
sweep as planned. It is its own module because both sides need it and neither should import the other.
"""

from __future__ import annotations

import fcntl
from collections.abc import Iterator
from contextlib import contextmanager

from mrunner import paths


@contextmanager
def held(exclusive: bool) -> Iterator[None]:
    """Hold the lock, ``exclusive`` for a collection, shared for a submission."""
    path = paths.data_dir() / "gc.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as stream:
        fcntl.flock(stream, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        try:
            yield
        finally:
            fcntl.flock(stream, fcntl.LOCK_UN)
