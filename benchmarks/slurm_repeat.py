"""A grid submitted again while its first submission's tasks are still queued, on the loopback cluster
(tests/services/slurm): the cost of the counting pass that a submission beyond the job allowance makes.

    .venv/bin/python benchmarks/slurm_repeat.py [--points 5000] [--rounds 3]

Why: a repeated grid plans as many jobs as its first submission holds. As ``mrlimited`` (``MaxSubmitJobs=20``)
with 11 tasks held, the repeat's 11 are beyond the 9 left, so ``Backend.ready`` refuses the plan
(``RefusedAsPlanned``) and the core counts, without recording, the runs it would record
(``submission.to_record``: every planned run's identity, looked up in the records a chunk at a time), finds
none, and records nothing (exit 0). As ``mrtest`` (no limit) the same repeat is within the allowance and makes
no such pass. Both first submissions are ``--hold`` (nothing runs; the limited user's 11 jobs are held only
while the benchmark runs, then cancelled).

Each repeat is the real CLI (``python -m mrunner +context=bench exp.py -m i=range(N)``), timed from process
start to exit, its CPU from ``getrusage``; the counting pass is timed inside the same process by a wrapper
around ``submission.to_record`` (its result unchanged). The load average is printed beside each figure.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

SERVICE = json.loads(Path(os.environ.get("MRUNNER_SERVICES_DIR", "/tmp/mrunner-services"), "slurm.json").read_text())

# The repeat, with the counting pass timed: the wrapper returns what the pass returns.
TIMED = """
import runpy, sys, time
from mrunner import submission

counted = submission.to_record

def timed(*args, **kwargs):
    start = time.perf_counter()
    try:
        return counted(*args, **kwargs)
    finally:
        print(f"counting pass: {time.perf_counter() - start:.3f} s", file=sys.stderr)

submission.to_record = timed
sys.argv = ["mrunner", *sys.argv[1:]]
runpy.run_module("mrunner", run_name="__main__", alter_sys=True)
"""

HELD_TASKS = 11  # beyond half of MaxSubmitJobs=20: the repeat's as many are more than what is left


def load() -> str:
    return Path("/proc/loadavg").read_text().split()[0]


def ssh(who: dict, command: str) -> str:
    argv = ["ssh", "-F", SERVICE["ssh_config"], who["alias"], command]
    return subprocess.run(argv, capture_output=True, text=True, check=False).stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--points", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    k = math.ceil(args.points / HELD_TASKS)
    users = {"mrlimited (beyond the allowance)": {**SERVICE, **SERVICE["limited"]}, "mrtest (no limit)": SERVICE}
    with tempfile.TemporaryDirectory(prefix="slurm-repeat-") as base:
        home, project = Path(base), Path(base) / "project"
        project.mkdir()
        (project / "exp.py").write_text("print('never runs: held')\n")
        (project / "timed.py").write_text(TIMED)
        env = {**os.environ, "XDG_CONFIG_HOME": str(home / "config"), "XDG_DATA_HOME": str(home / "data")}
        folder = home / "config" / "mrunner" / "context"
        folder.mkdir(parents=True)
        grid = ["+context=bench", "exp.py", "-m", f"i=range({args.points})"]
        storages = {}
        try:
            for label, who in users.items():
                storages[label] = storage = f"{who['storage_dir']}/bench-repeat-{uuid.uuid4().hex[:8]}"
                document = {
                    "backend": "slurm",
                    "slurm_url": who["alias"],
                    "ssh_config": SERVICE["ssh_config"],
                    "storage_dir": storage,
                    "partition": SERVICE["partition"],
                    "points_per_task": k,
                    "sbatch_options": ["--hold"],
                }
                (folder / "bench.yaml").write_text(json.dumps(document))
                first = subprocess.run(
                    [sys.executable, "-m", "mrunner", *grid], cwd=project, env=env, capture_output=True, text=True
                )
                if first.returncode:
                    sys.exit(f"the first submission as {label} failed: {first.stderr.strip()}")
                for round_ in range(1, args.rounds + 1):
                    before = resource.getrusage(resource.RUSAGE_CHILDREN)
                    start = time.perf_counter()
                    again = subprocess.run(
                        [sys.executable, "timed.py", *grid], cwd=project, env=env, capture_output=True, text=True
                    )
                    wall = time.perf_counter() - start
                    after = resource.getrusage(resource.RUSAGE_CHILDREN)
                    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
                    counted = [line for line in again.stderr.splitlines() if line.startswith("counting pass")]
                    print(
                        f"{label}, round {round_}: exit {again.returncode}, {wall:.3f} s wall, {cpu:.3f} s CPU, "
                        f"{counted[0] if counted else 'no counting pass'}; load {load()}",
                        flush=True,
                    )
        finally:
            for label, storage in storages.items():
                who = users[label]
                ssh(
                    who,
                    f"squeue -h -u $(id -un) -o '%F %Z' | grep -F ' {storage}/' | cut -d' ' -f1 | sort -u | "
                    f"xargs -r scancel; chmod -R u+w {storage} 2>/dev/null; rm -rf {storage}",
                )


if __name__ == "__main__":
    main()
