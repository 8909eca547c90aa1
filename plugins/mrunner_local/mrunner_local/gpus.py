"""The GPUs of a local sweep, handed out to its experiments. Each experiment takes as many as its own
``gpus_per_experiment`` (a per-point resource: ``-m context.gpus_per_experiment=1,2`` gives the points of a
grid different counts), the lowest free ids first, and waits while fewer are free; so experiments of one
count always get the same aligned groups (``0,1`` and ``2,3`` of four GPUs, two each), as before per-point
counts existed.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

#: How often a waiting experiment looks whether its sweep was stopped meanwhile.
STOP_CHECK_SECONDS = 0.2


class GpuPool:
    """The free GPUs of a sweep, taken and given back by its workers."""

    def __init__(self, gpus: Sequence[str]) -> None:
        self._rank = {gpu: position for position, gpu in enumerate(gpus)}
        self._free = list(gpus)
        self._changed = threading.Condition()

    def take(self, count: int, stopping: threading.Event) -> list[str] | None:
        """``count`` GPUs, the lowest free ids, once that many are free; None when ``stopping`` is set first."""
        with self._changed:
            while len(self._free) < count:
                if stopping.is_set():
                    return None
                self._changed.wait(STOP_CHECK_SECONDS)
            taken, self._free = self._free[:count], self._free[count:]
            return taken

    def give(self, gpus: Sequence[str]) -> None:
        with self._changed:
            self._free = sorted([*self._free, *gpus], key=self._rank.__getitem__)
            self._changed.notify_all()
