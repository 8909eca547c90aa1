"""A sweep's ledger on this machine: a small JSON file saying what was already sent somewhere (the points
``mrunner.uploads`` sent to a tracker, the run statuses ``mrunner.mlflow_ends`` set), so that each is sent once.
Read whole, rewritten atomically by its owner (``layout.write_atomic``), and changed by one command at a time
(two commands in two shells would both send the same things)."""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def read(path: Path) -> dict[str, Any]:
    """The ledger, or an empty one where there is none yet or it cannot be read: what it held is then sent
    again, which the trackers take once (MLflow drops the points it holds; a status set again is the same)."""
    try:
        found = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return found if isinstance(found, dict) else {}


@contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold the ledger for one command: another waits until this one has read, sent and written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(f"{path}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def remove(path: Path) -> None:
    """Forget a ledger (of a forgotten sweep) and its lock file."""
    for name in (path, Path(f"{path}.lock")):
        try:
            os.unlink(name)
        except FileNotFoundError:
            pass
