"""`mrunner results` benchmark on the loopback Slurm cluster (tests/services/slurm), side by side in one run.

    .venv/bin/python benchmarks/slurm_results.py [--repeat 3] [--experiments 1000] [--steps 100] [--before DIR]

A real sweep of 1,000 experiments is submitted held and cancelled (as benchmarks/slurm_pull.py does, so no task
loads the shared machine); each experiment's metrics file is then written on the cluster's side where the
layout puts it: ``--steps`` lines of what ``mrunner.report({"loss", "acc", "lr"}, step=i)`` writes. Then,
round by round, the ways take turns going first:
- bare: ``ssh HOST 'cd SWEEP && tar c */mrunner-metrics.jsonl' | tar x`` (the same files, nothing else);
- mrunner: ``mrunner results SWEEP --json`` (the real CLI, from process start, its cache emptied first: it
  pulls the metrics files, reads them and prints the table as JSON), then the same command again (nothing
  changed: the second call; past the minute after the sweep's end, it reaches no backend).
Every round checks that results has a row per experiment with the last step's loss. Each way's CPU time
(user+system of the process and its children: ssh, tar, a forked parse) is reported beside its wall time. Both ways write to the
same file system (``--dest``, a tmpfs by default): the bare way's files and mrunner's data folder, where
`results` keeps the metrics files. ``--before DIR`` times, in the same rounds, the first call of the mrunner
of another checkout (a ``git worktree`` of an earlier commit): before and after a change under the same load.

With ``--mlflow URI`` the sweep's context has ``mlflow: true`` and ``tracking: deferred`` instead, and one round
measures the first `results` (which uploads every experiment's run to that MLflow server) and the second (which
uploads nothing), then checks the server holds a run per experiment with every point.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import slurm_dispatch  # this folder is the script's first path entry
import slurm_pull

PYTHON = sys.executable
METRICS = "mrunner-metrics.jsonl"

# Written on the cluster: argv = the experiment folders' JSON file and the steps; prints files and bytes.
WRITER = r"""
import json, os, sys, time
folders, steps = json.load(open(sys.argv[1])), int(sys.argv[2])
size = 0
start = time.time()
for k, folder in enumerate(folders):
    os.makedirs(folder, exist_ok=True)
    lines = []
    for i in range(steps):
        metrics = {"loss": round(1.0 / (1 + i) + k * 1e-4, 6), "acc": round(i / steps, 4), "lr": 0.001}
        lines.append(json.dumps({"attempt": 0, "step": i, "time": start + i, "metrics": metrics}) + "\n")
    data = "".join(lines).encode()
    with open(os.path.join(folder, "mrunner-metrics.jsonl"), "wb") as out:
        out.write(data)
    size += len(data)
print(json.dumps({"files": len(folders), "bytes": size}))
"""


def children_cpu() -> float:
    """User+system CPU seconds of this process's ended children so far (a way's CPU is the difference)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def write_metrics(dirs: list[str], steps: int) -> dict:
    listing = f"/tmp/mrunner-bench-results-{uuid.uuid4().hex[:8]}.json"
    slurm_pull.ssh(f"cat > {shlex.quote(listing)}", json.dumps(dirs))
    written = json.loads(slurm_pull.ssh(f"python3 - {shlex.quote(listing)} {steps}", WRITER))
    slurm_pull.ssh(f"rm -f {shlex.quote(listing)}")
    return written


def bare(sweep_dir: str, target: Path) -> float:
    target.mkdir(parents=True)
    remote = f"cd {shlex.quote(sweep_dir)} && tar c [0-9]*-*/{METRICS}"
    return slurm_pull.timed(
        f"{shlex.join(slurm_pull.SSH)} {shlex.quote(remote)} | tar x -C {shlex.quote(str(target))}", shell=True
    )


def results(home: Path, project: Path, sweep: str, count: int, steps: int, code: Path | None = None) -> float:
    """One `mrunner results SWEEP --json`, checked; with ``code``, the mrunner of that checkout (and its
    plugins) instead of this one's."""
    environment = slurm_dispatch.env_for(home)
    if code is not None:
        environment["PYTHONPATH"] = os.pathsep.join([str(code), *map(str, sorted(code.glob("plugins/mrunner_*")))])
    started = time.perf_counter()
    result = subprocess.run(
        [PYTHON, "-m", "mrunner", "results", sweep, "--json"],
        cwd=project,
        env=environment,
        capture_output=True,
        text=True,
    )
    elapsed = time.perf_counter() - started
    if result.returncode:
        raise SystemExit(f"mrunner results failed: {result.stderr}")
    rows = json.loads(result.stdout)
    if len(rows) != count or rows[0]["loss"] != round(1.0 / steps, 6):
        raise SystemExit(f"mrunner results gave {len(rows)} rows, first {rows[:1]}")
    return elapsed


def deferred(home: Path, project: Path, sweep: str, options: argparse.Namespace, experiment: str, load: tuple) -> dict:
    """The first `results` with every run to upload, the second with none; then the server's runs checked."""
    from mlflow.tracking import MlflowClient

    loads = [os.getloadavg()[0]]
    first = results(home, project, sweep, options.experiments, options.steps)
    loads.append(os.getloadavg()[0])
    second = results(home, project, sweep, options.experiments, options.steps)
    client = MlflowClient(options.mlflow)
    found = client.get_experiment_by_name(experiment)
    runs = client.search_runs([found.experiment_id], max_results=options.experiments + 1)
    points = len(client.get_metric_history(runs[0].info.run_id, "loss"))
    if len(runs) != options.experiments or points != options.steps:
        raise SystemExit(f"MLflow holds {len(runs)} runs, {points} loss points in one")
    return {
        "experiments": options.experiments,
        "steps": options.steps,
        "mlflow": options.mlflow,
        "load_average": {"start": load, "end": os.getloadavg(), "calls": loads},
        "seconds": {"first_with_upload": first, "second": second},
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--experiments", type=int, default=1000)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--fresh", action="store_true", help="measure within a minute of the sweep's end")
    parser.add_argument("--mlflow", metavar="URI", help="deferred tracking into this MLflow server (one round)")
    parser.add_argument(
        "--dest",
        default="/dev/shm",
        help="the file system where the bare way's files and mrunner's data folder (its metrics cache) land",
    )
    parser.add_argument(
        "--before", metavar="DIR", type=Path, help="also time the first call of the mrunner of this checkout"
    )
    options = parser.parse_args()
    sources = [Path(__file__).parent.parent / "mrunner", *Path(__file__).parent.parent.glob("plugins/*/mrunner_*")]
    if options.before:
        sources += [options.before / "mrunner", *options.before.glob("plugins/*/mrunner_*")]
    subprocess.run([PYTHON, "-m", "compileall", "-q", *map(str, sources)], check=True, stdout=subprocess.DEVNULL)
    load_start = os.getloadavg()
    loads: list[float] = []
    rows: dict[str, list[float]] = {"bare": [], "mrunner": [], "mrunner_again": []}
    if options.before:
        rows["before"] = []
    cpu: dict[str, list[float]] = {way: [] for way in rows}
    storage = f"{slurm_pull.SERVICE['storage_dir']}/bench-results-{uuid.uuid4().hex[:8]}"
    experiment = f"bench-results-{uuid.uuid4().hex[:8]}"
    if options.mlflow:  # the benchmark context's extra keys
        slurm_dispatch.TRANSPORT.update(
            {
                "mlflow": True,
                "tracking": "deferred",
                "mlflow_tracking_uri": options.mlflow,
                "mlflow_experiment": experiment,
            }
        )
    with tempfile.TemporaryDirectory() as temporary, tempfile.TemporaryDirectory(dir=options.dest) as landing:
        workdir, pulls = Path(temporary), Path(landing)
        home, project = pulls / "home", workdir / "project"  # mrunner's files land where the bare way's do
        sweep, sweep_dir, dirs, _ = slurm_pull.make_sweep(home, project, storage, options.experiments)
        ended = time.monotonic()  # the sweep was cancelled: mrunner recorded its end
        written = write_metrics(dirs, options.steps)
        print(f"sweep {sweep}: wrote {written['files']} files, {written['bytes']} bytes", file=sys.stderr)
        cache = home / "data" / "mrunner" / "metrics" / sweep
        # A user reads the results of an ended sweep: past the minute in which results still asks the cluster
        # for an ended experiment's file (mrunner.commands.results.SETTLE_SECONDS); --fresh measures within it.
        if not options.fresh:
            time.sleep(max(0.0, ended + 61 - time.monotonic()))
        if options.mlflow:
            report = deferred(home, project, sweep, options, experiment, load_start)
            slurm_pull.ssh(f"chmod -R u+w {shlex.quote(storage)} && rm -rf {shlex.quote(storage)}")
            print(json.dumps(report, indent=1))
            return
        for round_ in range(options.repeat):
            loads.append(os.getloadavg()[0])
            ways = ["bare", "mrunner"] + (["before"] if options.before else [])
            for way in ways if round_ % 2 == 0 else ways[::-1]:
                if way == "before":
                    shutil.rmtree(cache, ignore_errors=True)
                    used = children_cpu()
                    rows["before"].append(
                        results(home, project, sweep, options.experiments, options.steps, options.before)
                    )
                    cpu["before"].append(children_cpu() - used)
                elif way == "bare":
                    target = pulls / f"bare{round_}"
                    used = children_cpu()
                    rows["bare"].append(bare(sweep_dir, target))
                    cpu["bare"].append(children_cpu() - used)
                    found = len(list(target.glob(f"*/{METRICS}")))
                    if found != options.experiments:
                        raise SystemExit(f"bare pulled {found} files")
                    shutil.rmtree(target)
                else:
                    shutil.rmtree(cache, ignore_errors=True)
                    used = children_cpu()
                    rows["mrunner"].append(results(home, project, sweep, options.experiments, options.steps))
                    cpu["mrunner"].append(children_cpu() - used)
                    used = children_cpu()
                    rows["mrunner_again"].append(results(home, project, sweep, options.experiments, options.steps))
                    cpu["mrunner_again"].append(children_cpu() - used)
            print(f"round {round_}: " + ", ".join(f"{k} {v[-1]:.2f}s" for k, v in rows.items()), file=sys.stderr)
    slurm_pull.ssh(f"chmod -R u+w {shlex.quote(storage)} && rm -rf {shlex.quote(storage)}")
    medians = {k: statistics.median(v) for k, v in rows.items()}
    report = {
        "experiments": options.experiments,
        "fresh": options.fresh,
        "steps": options.steps,
        "load_average": {"start": load_start, "end": os.getloadavg(), "rounds": loads},
        "written": written,
        "seconds": {k: slurm_pull.summary(v) for k, v in rows.items()},
        "cpu_seconds": {k: slurm_pull.summary(v) for k, v in cpu.items()},
        "first_vs_bare": medians["mrunner"] / medians["bare"],
        "per_round_first_vs_bare": [m / b for m, b in zip(rows["mrunner"], rows["bare"])],
    }
    if options.before:
        report["before_vs_bare"] = medians["before"] / medians["bare"]
        report["per_round_before_vs_bare"] = [m / b for m, b in zip(rows["before"], rows["bare"])]
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
