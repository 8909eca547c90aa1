"""A whole `mrunner ... --detach --yes` command's peak memory against the sweep's size; writes
benchmarks/results-sweep-memory.md.

    uv run --no-sync python benchmarks/sweep_memory.py [--sizes 10000 100000 1000000]

Each size is submitted from the command line in a fresh mrunner home, as a 2-D grid
(``exp.py -m a=range(N/1000) b=range(1000)``) of a script that exits at once, on the local backend with
``max_parallel=1``. The command's peak resident set (``ru_maxrss`` of the child: Python, Hydra, the plan,
the snapshot, the recording, the hand-over and the start of the detached supervisor) is what a user's
command costs; the aim is that at 10^5 and 10^6 it stays within 1.5x of 10^4. The detached supervisor's own
peak (``VmHWM``) is read once it has run for ``SUPERVISOR_SECONDS``, then it is stopped.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import resource
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results-sweep-memory.md"
SUPERVISOR_SECONDS = 10.0


def _vm_hwm_mb(pid: int) -> float:
    text = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmHWM:\s+(\d+) kB", text).group(1)) / 1024  # type: ignore[union-attr]


def measure(size: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="mrunner-sweep-memory-") as temporary:
        folder = Path(temporary)
        project = folder / "project"
        project.mkdir()
        (project / "exp.py").write_text("import sys\nsys.exit(0)\n")
        env = {**os.environ, "XDG_DATA_HOME": str(folder / "data"), "XDG_CONFIG_HOME": str(folder / "config")}
        command = [
            sys.executable,
            "-m",
            "mrunner",
            "exp.py",
            "-m",
            f"a=range({size // 1000})",
            "b=range(1000)",
            "--detach",
            "--yes",
            "context.max_parallel=1",
        ]
        before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        start = time.perf_counter()
        done = subprocess.run(command, cwd=project, env=env, capture_output=True, text=True, check=True)
        seconds = time.perf_counter() - start
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        assert peak >= before, "the children's peak is the largest so far: measure sizes smallest first"
        pid = int(re.search(r"supervisor pid (\d+)", done.stderr).group(1))  # type: ignore[union-attr]
        time.sleep(SUPERVISOR_SECONDS)
        supervisor = _vm_hwm_mb(pid)
        os.kill(pid, signal.SIGTERM)  # cancels what runs and what waits, as `mrunner cancel` would
        while Path(f"/proc/{pid}").exists() and "Z" not in Path(f"/proc/{pid}/stat").read_text().split()[2]:
            time.sleep(0.2)
        return {"seconds": seconds, "peak_mb": peak / 1024, "supervisor_mb": supervisor}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    sizes = sorted(parser.parse_args().sizes)
    results = {}
    for size in sizes:
        results[size] = measure(size)
        print(size, results[size], flush=True)
    smallest = results[sizes[0]]["peak_mb"]
    lines = [
        "# A sweep's memory, the whole command",
        "",
        f"Produced by `uv run --no-sync python benchmarks/sweep_memory.py --sizes {' '.join(map(str, sizes))}` on "
        f"{time.strftime('%Y-%m-%d')}, {os.cpu_count()} CPUs, Python {platform.python_version()}, load average "
        f"{os.getloadavg()[0]:.1f} at the end; one run per size, each a fresh process and mrunner home.",
        "",
        "`mrunner exp.py -m a=range(N/1000) b=range(1000) --detach --yes context.max_parallel=1` (local backend, a",
        "script that exits at once). The command's peak is its whole process's peak resident set (Python, Hydra,",
        "plan, snapshot, recording, hand-over); the supervisor's is its `VmHWM` after "
        f"{SUPERVISOR_SECONDS:g} s of running the sweep.",
        "",
        "| experiments | command | command peak memory | vs smallest | supervisor peak memory |",
        "|---|---|---|---|---|",
    ]
    for size in sizes:
        result = results[size]
        lines.append(
            f"| {size:,} | {result['seconds']:.1f} s | {result['peak_mb']:.0f} MB | "
            f"{result['peak_mb'] / smallest:.2f}x | {result['supervisor_mb']:.0f} MB |"
        )
    RESULTS.write_text("\n".join(lines) + "\n")
    print(RESULTS.read_text())


if __name__ == "__main__":
    main()
