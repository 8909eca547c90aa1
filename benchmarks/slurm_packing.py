"""Packing benchmark on the loopback cluster (tests/services/slurm), side by side in one run.

    .venv/bin/python benchmarks/slurm_packing.py [--points 1000] [--seconds 1] [--k 50] [--overhead-points 200]
                                                 [--rounds 1] [--unpacked] [--limited]

1. A grid of ``--points`` points of ``--seconds`` each (``exp.py``: ``time.sleep``), K points per array task:
   - mrunner: ``mrunner +context=bench exp.py -m i=range(N) --wait`` with ``points_per_task: K`` (the real CLI,
     from process start to the end of ``--wait``: code upload, submission, every point's own log, exit code
     and status);
   - a hand-written "K points per array task" bash loop: one ``sbatch --wait --array=0-(N/K-1)`` whose task
     runs its K points with ``python3 exp.py``, each point's output in its own log and its exit code in a
     file, submitted over one ssh command (no code upload: exp.py is written there first);
   - with ``--unpacked``: mrunner with ``points_per_task: 1`` (one task per point), to show what the site's
     job limits do to it (refused, or trickling).
``--points 0`` leaves this part out.
2. Per-point overhead inside one job: ``--overhead-points`` points of an empty ``exp.py`` in one task, packed
   mrunner against a bare ``for`` loop of ``python3 exp.py`` in one job; measured on the cluster from the
   exit-code files' times (first point's end to last point's end, divided by the points between), so the
   submission is not in it.
One round of each way, mrunner first: the load average is printed next to every number, since the machine
is shared.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

SERVICE = json.loads(Path(os.environ.get("MRUNNER_SERVICES_DIR", "/tmp/mrunner-services"), "slurm.json").read_text())
#: --limited: the site-like cluster's user under MaxSubmitJobs (tests/services/slurm, "limited" in slurm.json)
ACCOUNT: dict[str, str] = {}


def as_limited() -> None:
    limited = SERVICE["limited"]
    SERVICE.update(alias=limited["alias"], storage_dir=limited["storage_dir"])
    ACCOUNT["account"] = limited["account"]


def ssh(command: str, check: bool = True) -> str:
    return subprocess.run(
        ["ssh", "-F", SERVICE["ssh_config"], SERVICE["alias"], command], capture_output=True, text=True, check=check
    ).stdout


def load() -> str:
    return Path("/proc/loadavg").read_text().split()[0]


def mrunner(home: Path, project: Path, *args: str) -> tuple[float, subprocess.CompletedProcess]:
    env = {**os.environ, "XDG_CONFIG_HOME": str(home / "config"), "XDG_DATA_HOME": str(home / "data")}
    start = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "mrunner", *args], cwd=project, env=env, capture_output=True, text=True
    )
    return time.perf_counter() - start, result


def context(home: Path, storage: str, **keys: object) -> None:
    folder = home / "config" / "mrunner" / "context"
    folder.mkdir(parents=True, exist_ok=True)
    document = {
        "backend": "slurm",
        "slurm_url": SERVICE["alias"],
        "ssh_config": SERVICE["ssh_config"],
        "storage_dir": storage,
        "partition": SERVICE["partition"],
        **ACCOUNT,
        **keys,
    }
    (folder / "bench.yaml").write_text(json.dumps(document))


BASH_TASK = """#!/bin/bash
# the hand-written way: task t runs points t*K .. t*K+K-1, each its own log and exit-code file
cd {folder}
for ((j = 0; j < {k}; j++)); do
  i=$((SLURM_ARRAY_TASK_ID * {k} + j))
  [ "$i" -lt {points} ] || break
  python3 exp.py "$i" >logs/$i.log 2>&1
  echo $? >status/$i
done
"""


def bash_loop(storage: str, points: int, k: int, seconds: float, tag: str) -> float:
    folder = f"{storage}/bash-{tag}"
    ssh(
        f"mkdir -p {folder}/logs {folder}/status && printf %s {shquote(experiment(seconds))} >{folder}/exp.py && "
        f"printf %s {shquote(BASH_TASK.format(folder=folder, k=k, points=points))} >{folder}/task.sh"
    )
    tasks = -(-points // k)
    if ACCOUNT:  # the limited user's tasks of the way before may still be ending: they count against its limit
        deadline = time.monotonic() + 120
        while ssh("squeue -h -u $USER -o %i").split() and time.monotonic() < deadline:
            time.sleep(1)
    start = time.perf_counter()
    ssh(
        f"sbatch --wait --parsable --partition={SERVICE['partition']} --array=0-{tasks - 1} "
        + (f"--account={ACCOUNT['account']} " if ACCOUNT else "")
        + f"--output={folder}/%A_%a.out {folder}/task.sh"
    )
    return time.perf_counter() - start


def shquote(text: str) -> str:
    import shlex

    return shlex.quote(text)


def experiment(seconds: float) -> str:
    return f"import time\ntime.sleep({seconds})\n" if seconds else "pass\n"


def spread(folder: str, count: int) -> float:
    """Seconds from the first point's exit-code file to the last one's, per point between them."""
    found = ssh(f"cd {folder} && find status -maxdepth 1 -type f -regex '.*/[0-9.]+' -printf '%T@\\n'").split()
    stamps = sorted(float(t) for t in found)
    assert len(stamps) == count, (len(stamps), count)
    return (stamps[-1] - stamps[0]) / (count - 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=1.0)
    parser.add_argument("--k", type=int, default=50)
    parser.add_argument("--overhead-points", type=int, default=200)
    parser.add_argument("--unpacked", action="store_true")
    parser.add_argument("--rounds", type=int, default=1, help="rounds of the per-point overhead, alternating ways")
    parser.add_argument("--limited", action="store_true", help="as the user under MaxSubmitJobs (slurm.json's limited)")
    options = parser.parse_args()
    if options.limited:
        as_limited()
    tag = uuid.uuid4().hex[:8]
    storage = f"{SERVICE['storage_dir']}/bench-packing-{tag}"
    with tempfile.TemporaryDirectory() as temporary:
        home, project = Path(temporary, "home"), Path(temporary, "project")
        project.mkdir()
        print(f"load average at start: {load()}")

        # 1. the grid, packed, both ways (--points 0: not measured)
        if options.points:
            (project / "exp.py").write_text(experiment(options.seconds))
            context(home, storage, points_per_task=options.k)
            took, result = mrunner(
                home, project, "+context=bench", "exp.py", "-m", f"i=range({options.points})", "--wait"
            )
            assert result.returncode == 0, result.stderr
            print(
                f"mrunner packed, {options.points} points of {options.seconds:g} s, K={options.k}: {took:.1f} s "
                f"(load {load()})"
            )
            took = bash_loop(storage, options.points, options.k, options.seconds, tag)
            print(f"bash loop, same K, one array: {took:.1f} s (load {load()})")
        if options.points and options.unpacked:
            context(home, storage, points_per_task=1)
            took, result = mrunner(
                home, project, "+context=bench", "exp.py", "-m", f"i=range({options.points})", "seed=1", "--wait"
            )
            said = result.stderr.strip().splitlines()[-1:] if result.returncode else []
            print(f"mrunner unpacked: exit {result.returncode} after {took:.1f} s {said} (load {load()})")

        # 2. per-point overhead inside one job (--overhead-points 0: not measured)
        n = options.overhead_points
        if not n:
            ssh(f"rm -rf {storage}", check=False)
            return
        (project / "exp.py").write_text(experiment(0))
        context(home, storage, points_per_task=n)
        overheads = []
        for number in range(options.rounds):  # alternating, so that a change of the machine's load hits both
            took, result = mrunner(
                home, project, "+context=bench", "exp.py", "-m", f"j=range({n})", f"round={number}", "--wait"
            )
            assert result.returncode == 0, result.stderr
            sweep = next(
                line for line in result.stdout.splitlines() if re.fullmatch(r"[a-z]+(-[a-z]+)*-[0-9a-f]{6}", line)
            )
            _, listed = mrunner(home, project, "status", sweep, "--json", "--all")
            first = json.loads(listed.stdout)["experiments"][0]["output_dir"].split(":", 1)[1]
            packed = spread(os.path.dirname(first), n)
            bash_loop(storage, n, n, 0, f"{tag}-overhead-{number}")
            bare = spread(f"{storage}/bash-{tag}-overhead-{number}", n)
            overheads.append(packed - bare)
            print(
                f"per point in one job, empty exp.py, {n} points: packed mrunner {packed * 1000:.1f} ms, bare loop "
                f"{bare * 1000:.1f} ms, overhead {(packed - bare) * 1000:.1f} ms (load {load()})"
            )
        if len(overheads) > 1:
            print(
                f"overhead per point, median of {len(overheads)} rounds: {statistics.median(overheads) * 1000:.1f} ms"
            )
    ssh(f"rm -rf {storage}", check=False)


if __name__ == "__main__":
    main()
