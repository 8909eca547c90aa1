"""Per-point resources: what they add to planning a sweep and grouping it into Slurm job arrays; writes
benchmarks/results-resources.md.

    uv run --no-sync python -m benchmarks.resources [--runs 20000] [--repeats 7]

"make runs" is iterating ``planning.PlannedRuns`` (each experiment's point, command, environment, identity
and, with a swept ``context.mem``, its resources) for a sweep of RUNS experiments on a Slurm context (a dry
plan: nothing is contacted), with no resource swept against 2 and 4 classes of the same total size.
"group into arrays" is ``mrunner_slurm.submit.units`` over RUNS recorded-looking runs whose classes
alternate (the worst case: every class spans the whole index range). "status" is what `mrunner status SWEEP`
adds, ``Store.resource_classes`` (one GROUP BY over the sweep's rows), beside the ``Store.counts`` it already
made, for a recorded sweep of RUNS runs in two classes. Best of REPEATS, in one process, CPU time
of this process (the machine is shared: time spent waiting for a core is left out).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results-resources.md"


def best(repeats: int, action) -> float:
    times = []
    for _ in range(repeats):
        start = time.process_time()  # CPU time: the machine is shared, and waiting for a core is not our cost
        action()
        times.append(time.process_time() - start)
    return min(times)


def make_runs(runs: int, repeats: int) -> list[tuple[str, float]]:
    from mrunner.planning import Plan, PlannedRuns, Request, new_sweep
    from mrunner.snapshot import scan

    folder = Path(tempfile.mkdtemp(prefix="mrunner-bench-resources-"))
    os.environ["XDG_CONFIG_HOME"] = str(folder / "config")
    os.environ["XDG_DATA_HOME"] = str(folder / "data")
    contexts = folder / "config" / "mrunner" / "context"
    contexts.mkdir(parents=True)
    (contexts / "cluster.yaml").write_text(json.dumps({"backend": "slurm", "slurm_url": "nowhere.invalid"}))
    (folder / "exp.py").write_text("print('hi')\n")
    cases = {
        "no resource swept": ([], runs),
        "2 classes (context.mem=8G,32G)": (["context.mem=8G,32G"], runs // 2),
        "4 classes (context.mem=8G,32G context.gpu=1,2)": (["context.mem=8G,32G", "context.gpu=1,2"], runs // 4),
    }
    found = []
    for name, (swept, points) in cases.items():
        request = Request(
            folder / "exp.py",
            [f"a=range({points})"],
            multirun=True,
            context_name="cluster",
            context_overrides=swept,
            dry_run=True,
        )
        plan = Plan(request, cwd=folder)
        frozen = scan(plan.root)
        planned = PlannedRuns(plan, new_sweep(plan, frozen), frozen.digest)
        assert len(planned) == runs
        found.append((name, best(repeats, lambda planned=planned: sum(1 for _ in planned)) / runs))
    return found


def group(runs: int, repeats: int) -> list[tuple[int, float, int]]:
    from mrunner_slurm.submit import units

    from mrunner.records import Run

    found = []
    for classes in (1, 4, 16):
        made = [
            Run(
                "s",
                i,
                str(i),
                "n",
                {},
                ["python3", "exp.py"],
                resources={"mem": f"{i % classes}G"} if classes > 1 else {},
            )
            for i in range(runs)
        ]
        found.append((classes, best(repeats, lambda made=made: units(made, 1001)), len(units(made, 1001))))
    return found


def status(runs: int, repeats: int) -> tuple[float, float]:
    from mrunner.records import Run, Sweep
    from mrunner.store import Store

    store = Store(Path(tempfile.mkdtemp(prefix="mrunner-bench-resources-")) / "records.db")
    sweep = Sweep("bench-resources", "n", 0.0, "c", "slurm", {}, "p", "d" * 64, "/p")
    made = [
        Run("", i, f"{i:016x}", "n", {}, ["python3", "exp.py"], resources={"mem": "8G" if i % 2 else "32G"})
        for i in range(runs)
    ]
    store.record_sweep(sweep, made, skip_submitted=False)
    assert len(store.resource_classes(sweep.id)) == 2
    return (
        best(repeats, lambda: store.counts(sweep.id)),
        best(repeats, lambda: store.resource_classes(sweep.id)),
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=20000)
    parser.add_argument("--repeats", type=int, default=7)
    options = parser.parse_args()
    made = make_runs(options.runs, options.repeats)
    grouped = group(options.runs, options.repeats)
    counts, classes = status(options.runs, options.repeats)
    load = os.getloadavg()[0]
    lines = [
        "# Per-point resources",
        "",
        f"Produced by `uv run --no-sync python -m benchmarks.resources --runs {options.runs} --repeats "
        f"{options.repeats}` on {time.strftime('%Y-%m-%d')}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"load average {load:.1f} at the end; best of {options.repeats} in CPU time, one process.",
        "",
        f"Making the runs of a {options.runs:,}-experiment sweep (`PlannedRuns`: point, command, environment,",
        "identity, and the point's resources):",
        "",
        "| sweep | per experiment |",
        "|---|---|",
        *(f"| {name} | {seconds * 1e6:.1f} us |" for name, seconds in made),
        "",
        f"Grouping {options.runs:,} runs into Slurm job arrays (`mrunner_slurm.submit.units`), classes alternating",
        "from run to run (each class spans every index, so it needs arrays of its own across the whole range):",
        "",
        "| classes | time | arrays |",
        "|---|---|---|",
        *(f"| {classes} | {seconds * 1e3:.1f} ms | {arrays} |" for classes, seconds, arrays in grouped),
        "",
        f"`mrunner status SWEEP` of a recorded {options.runs:,}-run sweep in two classes: the classes line costs",
        f"{classes * 1e3:.1f} ms (`Store.resource_classes`), beside {counts * 1e3:.1f} ms for the state counts",
        "(`Store.counts`) it already read.",
        "",
        "The machine is shared by other work (the load average above): differences between rows smaller than",
        "the spread between repeated runs of this script are noise, not a cost of per-point resources.",
        "",
    ]
    RESULTS.write_text("\n".join(lines))
    sys.stdout.write("\n".join(lines))


if __name__ == "__main__":
    main()
