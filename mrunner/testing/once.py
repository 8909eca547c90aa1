"""A set-up built once per test run, for the module-scoped fixtures whose tests only read what they build.

pytest-xdist runs a module's tests on whichever worker is free (``--dist worksteal``), and each worker builds
a module-scoped fixture again: the 50,000 runs of ``tests/test_store_scale.py`` or a sweep run to its end
were built once per worker. ``built_once`` builds into a folder of the run's own temporary root (the one
pytest-xdist's workers share; without xdist the process's own) under a file lock, so the first worker builds
it and the others wait for it and read the same folder.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Callable
from pathlib import Path

import pytest

#: The file ``built_once`` writes last into a folder it built, so a folder without it is a half-done build.
DONE = ".built"


def built_once(factory: pytest.TempPathFactory, name: str, build: Callable[[Path], None]) -> Path:
    """The folder ``name`` of this test run, which ``build(folder)`` filled once, in this process or another
    worker of the same run. A build that failed leaves no mark: the next caller builds again (and fails the
    same way, as each worker's own build would)."""
    root = factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):  # a worker's root is popen-gwN inside the run's
        root = root.parent
    folder = root / f"once-{name}"
    with open(root / f"once-{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (folder / DONE).exists():
            if folder.exists():
                import shutil

                shutil.rmtree(folder)
            folder.mkdir()
            build(folder)
            (folder / DONE).write_text("")
    return folder
