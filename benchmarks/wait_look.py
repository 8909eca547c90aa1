"""CPU of each look of `mrunner status SWEEP --wait` (``following.wait``) at a sweep of 10 and of 50,000 runs.

    uv run --no-sync python benchmarks/wait_look.py

Each sweep is local, recorded as supervised by this process (alive, so the backend changes nothing), with
all runs completed but the last ``LOOKS``, which are running; between two looks the benchmark, playing the
supervisor, completes one of them, so the wait makes ``LOOKS + 1`` looks with no sleep between them. The
figure is the process's CPU time of the whole wait divided by its looks, best of three. It prints a line per
size; the code it measures is whatever ``mrunner`` imports (run it with another checkout on ``PYTHONPATH`` to
compare).
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from typing import Any

SIZES = (10, 50_000)
LOOKS = 10


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="mrunner-wait-") as temporary:
        os.environ["XDG_DATA_HOME"] = str(Path(temporary) / "data")
        from mrunner import following, process
        from mrunner.records import COMPLETED, RUNNING, SUBMITTED, Run, RunUpdate, Sweep
        from mrunner.store import Store

        store = Store()
        for count in SIZES:
            best = float("inf")
            for trial in range(3):
                sweep = Sweep(
                    id=f"sweep-{count}-{trial}",
                    name="train",
                    created_at=time.time(),
                    context_name="local",
                    backend="local",
                    context={"backend": "local", "storage_dir": str(Path(temporary) / "storage")},
                    project="p",
                    snapshot_digest="d" * 64,
                    project_dir="/p",
                    detail={"supervisor": process.identity()},
                )
                runs = (
                    Run(sweep.id, i, f"{trial}{count:06d}{i:09x}", "train", {"lr": i}, ["t.py"]) for i in range(count)
                )
                store.record_sweep(sweep, runs)
                store.apply(sweep.id, [RunUpdate(i, SUBMITTED) for i in range(count)])
                store.apply(sweep.id, [RunUpdate(i, COMPLETED, exit_code=0) for i in range(count - LOOKS)])
                store.apply(sweep.id, [RunUpdate(i, RUNNING) for i in range(count - LOOKS, count)])
                left = list(range(count - LOOKS, count))

                looks = LOOKS + 1
                start = time.process_time()
                following.wait(sweep, store, supervising(store, sweep.id, left), interval=0)
                best = min(best, (time.process_time() - start) / looks)
            print(f"{count} runs: {best * 1000:.1f} ms of CPU per look ({looks} looks, best of three)")


def supervising(store: Any, sweep_id: str, left: list[int]) -> Any:
    """A reporter that, at each line of the wait, completes one more of the ``left`` runs, as a supervisor would."""
    from mrunner.records import COMPLETED, RunUpdate
    from mrunner.reporter import Reporter

    class Supervising(Reporter):
        def step(self, message: str) -> None:
            store.apply(sweep_id, [RunUpdate(left.pop(), COMPLETED, exit_code=0)])

    return Supervising()


if __name__ == "__main__":
    main()
