"""`mrunner status` against the sweep's size; writes benchmarks/results-status.md.

    uv run --no-sync python benchmarks/status.py

One records database holds a local sweep of 10 and one of 50,000 experiments (all completed but the two
last: one failed, one running whose supervisor is gone). Each command is the real command line in a fresh
process (Python's start and mrunner's imports included), best of three.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results-status.md"
SIZES = (10, 50_000)


def build(data: Path) -> None:
    os.environ["XDG_DATA_HOME"] = str(data)
    from mrunner.records import COMPLETED, FAILED, RUNNING, SUBMITTED, Run, RunUpdate, Sweep
    from mrunner.store import Store

    store = Store()
    for count in SIZES:
        sweep = Sweep(
            id=f"sweep-{count}",
            name="train",
            created_at=time.time(),
            context_name="local",
            backend="local",
            context={"backend": "local", "storage_dir": str(data / "storage")},
            project="p",
            snapshot_digest="d" * 64,
            project_dir="/p",
        )
        runs = (Run(sweep.id, i, f"{count:06d}{i:010x}", "train", {"lr": i}, ["python3", "t.py"]) for i in range(count))
        store.record_sweep(sweep, runs)
        store.apply(sweep.id, [RunUpdate(i, SUBMITTED) for i in range(count)])
        store.apply(sweep.id, [RunUpdate(i, COMPLETED, exit_code=0) for i in range(count - 2)])
        store.apply(sweep.id, [RunUpdate(count - 2, FAILED, exit_code=1), RunUpdate(count - 1, RUNNING)])


def timed(args: list[str], env: dict) -> float:
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "mrunner", *args], env=env, check=True, stdout=subprocess.DEVNULL)
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="mrunner-status-") as temporary:
        data = Path(temporary) / "data"
        build(data)
        env = {**os.environ, "XDG_DATA_HOME": str(data), "XDG_CONFIG_HOME": str(Path(temporary) / "config")}
        commands = {
            "status SWEEP/INDEX (the last)": lambda n: ["status", f"sweep-{n}/{n - 1}"],
            "status SWEEP": lambda n: ["status", f"sweep-{n}"],
            "status --json SWEEP": lambda n: ["status", "--json", f"sweep-{n}"],
            "status --all SWEEP": lambda n: ["status", "--all", f"sweep-{n}"],
        }
        rows = []
        for what, args in commands.items():
            rows.append((what, *(timed(args(n), env) for n in SIZES)))
        baseline = timed(["--version"], env)
    lines = [
        "# `mrunner status` against the sweep's size",
        "",
        f"Produced by `uv run --no-sync python benchmarks/status.py` on {time.strftime('%Y-%m-%d')}, {os.cpu_count()} "
        f"CPUs, Python {platform.python_version()}, load average {os.getloadavg()[0]:.1f} at the end (a shared "
        "machine: under load every figure grows alike). Each command is the real command line in a fresh process, "
        f"best of three; `mrunner --version` alone takes {baseline:.2f} s.",
        "",
        f"| command | {' | '.join(f'{n:,} experiments' for n in SIZES)} |",
        f"|---|{'---|' * len(SIZES)}",
    ]
    lines += [f"| `{what}` | {' | '.join(f'{t:.2f} s' for t in times)} |" for what, *times in rows]
    lines += [
        "",
        "`status SWEEP/INDEX` reads one run through the primary key and asks the backend about it alone; an id",
        "prefix is a range of the identity index (tests/test_store_scale.py counts SQLite's steps for both sizes and",
        "checks every statement's query plan). `status SWEEP` reads counts (GROUP BY state) and the rows worth a look;",
        "`--json` and `--all` stream the runs a thousand at a time.",
    ]
    RESULTS.write_text("\n".join(lines) + "\n")
    print(RESULTS.read_text())


if __name__ == "__main__":
    main()
