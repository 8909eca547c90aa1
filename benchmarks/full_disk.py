"""What a full disk's line asks to free against what `resume` really grows the disk by, when the records share
the disk the experiments fill; writes benchmarks/results-full-disk.md. Root only (it mounts small tmpfs disks).

    uv run --no-sync python benchmarks/full_disk.py [--shapes fresh:200:30 history:200:30 ...]

A shape is ``KIND:POINTS:KB``: a detached sweep of POINTS experiments that each write KB kilobytes into their
folder, on a tmpfs of ``--disk`` MB that holds the records too (``XDG_DATA_HOME`` on it). ``fresh``: the sweep is
the records' first; ``history``: an earlier sweep of ``--history`` points is recorded and run first (on a larger
disk, which is then shrunk to what it uses plus ``--disk`` MB). When the sweep stops on the full disk, the line's
"free at least N MB" is read from ``status``, the disk is resized to hold exactly that much more than it uses,
and ``resume SWEEP --wait`` runs the rest while a thread samples the disk's use every millisecond. "grown" is the
peak use during the resume less the use at its start (the log is folded into the database and deleted at the
end, so the use after the resume is less than the peak); "ok" says the resume completed every experiment.

With ``--writes N`` (2000 unless 0), the cost of the log's bound: 2N state changes one transaction each in records
on ``--writes-dir`` (a real disk), under SQLite's own log settings and under mrunner's, in alternating rounds.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results-full-disk.md"

SCRIPT = """
import os
from mrunner import get_configuration

config = get_configuration()
with open("result.bin", "wb") as out:
    out.write(os.urandom(config.kb * 1000))
"""


def mrunner(project: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "mrunner", *args], cwd=project, env=env, capture_output=True, text=True, timeout=900
    )


def mount(folder: Path, size: str, again: bool = False) -> None:
    options = f"remount,size={size}" if again else f"size={size}"
    command = ["mount", "-o", options, str(folder)] if again else ["mount", "-t", "tmpfs", "-o", options, "tmpfs"]
    subprocess.run(command + ([] if again else [str(folder)]), check=True)


def used(folder: Path) -> int:
    usage = os.statvfs(folder)
    return (usage.f_blocks - usage.f_bfree) * usage.f_frsize


def measure(kind: str, points: int, kb: int, disk_mb: float, history: int) -> dict:
    with tempfile.TemporaryDirectory() as temporary:
        root = Path(temporary)
        project, disk = root / "project", root / "disk"
        project.mkdir()
        disk.mkdir()
        (project / "writes.py").write_text(SCRIPT)
        env = {**os.environ, "XDG_CONFIG_HOME": str(root / "config"), "XDG_DATA_HOME": str(disk / "data")}
        env.pop("MRUNNER_PLUGINS", None)
        mount(disk, "200m" if kind == "history" else f"{int(disk_mb * 1024)}k")
        try:
            if kind == "history":
                earlier = mrunner(project, env, "writes.py", "-m", f"i=range({history})", "kb=0", "--yes")
                assert earlier.returncode == 0, earlier.stderr
                mount(disk, f"{-(-(used(disk) + int(disk_mb * 2**20)) // 4096) * 4}k", again=True)
            start = time.perf_counter()
            submitted = mrunner(project, env, "writes.py", "-m", f"i=range({points})", f"kb={kb}", "--yes", "--detach")
            assert submitted.returncode == 0, submitted.stderr
            sweep = submitted.stdout.strip().splitlines()[-1]
            mrunner(project, env, "status", sweep, "--wait")
            shown = mrunner(project, env, "status", sweep).stdout
            found = re.search(r"free at least ([0-9.]+) MB", shown)
            assert found, shown
            asked = int(float(found.group(1)) * 2**20)
            states = [
                e["state"] for e in json.loads(mrunner(project, env, "status", sweep, "--json").stdout)["experiments"]
            ]
            left = sum(state != "completed" for state in states)
            wal = disk / "data" / "mrunner" / "records.db-wal"
            wal_at_stop = wal.stat().st_size if wal.exists() else 0
            at_start = used(disk)
            mount(disk, f"{-(-(at_start + asked) // 4096) * 4}k", again=True)  # exactly what was asked is free
            peak = at_start
            done = threading.Event()

            def sample() -> None:
                nonlocal peak
                while not done.is_set():
                    peak = max(peak, used(disk))
                    time.sleep(0.001)

            sampler = threading.Thread(target=sample)
            sampler.start()
            resumed = mrunner(project, env, "resume", sweep, "--wait")
            done.set()
            sampler.join()
            final = [
                e["state"] for e in json.loads(mrunner(project, env, "status", sweep, "--json").stdout)["experiments"]
            ]
            ok = resumed.returncode == 0 and set(final) == {"completed"}
            return {
                "shape": f"{kind} {points} x {kb} KB",
                "left": left,
                "wal_at_stop": wal_at_stop,
                "asked": asked,
                "grown": peak - at_start,
                "ok": ok,
                "seconds": time.perf_counter() - start,
                "error": "" if ok else (resumed.stderr.strip().splitlines() or ["?"])[-1][:200],
            }
        finally:
            subprocess.run(["umount", "-l", str(disk)], check=False)


def state_changes(folder: Path, count: int, defaults: bool) -> float:
    """Seconds for ``2 * count`` state changes one transaction each (running, then completed: as a supervisor
    records them) in records on ``folder``'s disk; with ``defaults``, under SQLite's own log settings (a
    checkpoint every 1000 pages, no size limit: mrunner before its log was bounded)."""
    sys.path.insert(0, str(HERE.parent / "tests"))
    from test_store_scale import _sweep

    from mrunner.records import COMPLETED, RUNNING, RunUpdate
    from mrunner.store import Store

    with tempfile.TemporaryDirectory(dir=folder) as where:
        store = Store(Path(where) / "records.db")
        if defaults:
            store._db.execute("PRAGMA wal_autocheckpoint=1000")
            store._db.execute("PRAGMA journal_size_limit=-1")
        sweep, runs = _sweep("s", count)
        store.record_sweep(sweep, runs)
        start = time.perf_counter()
        for index in range(count):
            store.apply(sweep.id, [RunUpdate(index, RUNNING, backend_ref=f"pid:{index}", attempt=0)])
            store.apply(sweep.id, [RunUpdate(index, COMPLETED, exit_code=0, ended_by_itself=True, attempt=0)])
        seconds = time.perf_counter() - start
        store.close()
    return seconds


def mb(size: int) -> str:
    return f"{size / 2**20:.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--shapes", nargs="*", default=["fresh:200:30", "history:200:30", "fresh:60:100", "history:400:10"]
    )
    parser.add_argument("--disk", type=float, default=3.0, help="MB of the disk the sweep fills")
    parser.add_argument("--history", type=int, default=400, help="points of the earlier sweep of a history shape")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--writes", type=int, default=2000, help="experiments of the write-cost rows (0: none)")
    parser.add_argument("--writes-dir", type=Path, default=Path(tempfile.gettempdir()), help="a real disk's folder")
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds of the write-cost rows")
    arguments = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("benchmarks/full_disk.py mounts tmpfs disks: run it as root")
    rows = []
    for shape in arguments.shapes:
        kind, points, kb = shape.split(":")
        row = measure(kind, int(points), int(kb), arguments.disk, arguments.history)
        print(json.dumps(row), flush=True)
        rows.append(row)
    costs: dict[bool, list[float]] = {True: [], False: []}
    for _ in range(arguments.rounds if arguments.writes else 0):
        for defaults in (True, False):  # alternating: a shared machine's load falls on both alike
            costs[defaults].append(state_changes(arguments.writes_dir, arguments.writes, defaults))
    print(json.dumps({str(key): value for key, value in costs.items()}), flush=True)
    command = "uv run --no-sync python benchmarks/full_disk.py " + " ".join(sys.argv[1:])
    lines = [
        "# A full disk's line: what it asks to free against what `resume` grows the disk by",
        "",
        f"Produced by `{command.strip()}` on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
        f"{os.cpu_count()} CPUs (shared), Python {platform.python_version()}, as root, load average "
        f"{' '.join(f'{x:.1f}' for x in os.getloadavg())} at the end; a tmpfs of {arguments.disk:g} MB holds the "
        f"records and the outputs (a history shape: an earlier sweep of {arguments.history} points first).",
        "",
        "| shape | left to run | log at the stop (MB) | asked (MB) | grown (MB) | asked / grown | resume with exactly that freed |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        ratio = row["asked"] / max(1, row["grown"])
        verdict = "completed" if row["ok"] else f"FAILED: {row['error']}"
        lines.append(
            f"| {row['shape']} | {row['left']} | {mb(row['wal_at_stop'])} | {mb(row['asked'])} | {mb(row['grown'])} "
            f"| {ratio:.2f}x | {verdict} |"
        )
    lines += ["", __doc__.split("\n\n", 2)[2].strip(), ""]
    if arguments.writes:
        from mrunner.store import LOG_PAGES

        lines += [
            "## What bounding the log costs the writes",
            "",
            f"{2 * arguments.writes} state changes, one transaction each (running, then completed, for each of "
            f"{arguments.writes} experiments, as a supervisor records them), in records on {arguments.writes_dir} "
            f"(a real disk: a checkpoint syncs it); {arguments.rounds} alternating rounds.",
            "",
            "| log settings | best | median | per change (median) |",
            "|---|---|---|---|",
        ]
        for defaults, label in (
            (True, "SQLite's own (checkpoint every 1000 pages, no limit): before"),
            (False, f"mrunner's (checkpoint every {LOG_PAGES} pages, limit 1.5 times that)"),
        ):
            times = sorted(costs[defaults])
            median = times[len(times) // 2]
            lines.append(
                f"| {label} | {times[0]:.2f} s | {median:.2f} s | {median / (2 * arguments.writes) * 1e6:.0f} us |"
            )
        lines.append("")
    arguments.out.write_text("\n".join(lines))
    print(arguments.out.read_text())


if __name__ == "__main__":
    main()
