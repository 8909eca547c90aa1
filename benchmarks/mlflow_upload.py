"""A deferred upload (`tracking: deferred`) of a whole sweep into the real MLflow server (tests/services/mlflow).

    .venv/bin/python benchmarks/mlflow_upload.py [--experiments 1000] [--steps 100] [--code DIR] [--uri URI]

What is uploaded: a sweep of ``--experiments`` experiments with ``mlflow: true`` and ``tracking: deferred``,
three parameters each, whose metrics files hold ``--steps`` lines of what ``mrunner.report({"loss", "acc",
"lr"}, step=i)`` writes (300 points for 100 steps), laid out as `results` keeps them. The timed call is
``mrunner.uploads.upload`` (what `results`, `pull` and `status --wait` call once the files are back), in a
process of its own whose ``mrunner`` is the one below ``--code`` (default: this checkout; another checkout,
such as a ``git worktree`` of an earlier commit, measures the code before a change). Its records are made in
that process (no backend: the upload reads only the records and the files). Each round uses a fresh MLflow
experiment, so every run is new, as in a sweep's first upload; then a second call, with nothing new, and a
check that the server holds a run per experiment with every point.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Run in the measured process: argv = the data home, experiments, steps, the MLflow URI and experiment name.
UPLOAD = textwrap.dedent(
    r"""
    import json, os, sys, time
    home, count, steps, uri, experiment = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
    os.environ["XDG_DATA_HOME"] = home
    from pathlib import Path
    from mrunner import uploads
    if os.environ.get("BENCH_WORKERS"):  # --workers: how many experiments MLflow gets at once
        uploads._Mlflow.workers = int(os.environ["BENCH_WORKERS"])
    from mrunner.layout import METRICS_FILE, of_run
    from mrunner.records import Run, Sweep
    from mrunner.reporter import Reporter

    context = {"backend": "slurm", "mlflow": True, "tracking": "deferred", "mlflow_tracking_uri": uri,
               "mlflow_experiment": experiment}
    sweep = Sweep(f"bench-{experiment[-8:]}", "bench", time.time(), "bench", "slurm", context, "bench", "0" * 64, "/")
    runs = [
        Run(sweep.id, k, f"{sweep.id}-{k}", "train", {"lr": 0.001 * (1 + k % 10), "seed": k // 10, "depth": 4}, [])
        for k in range(count)
    ]
    folder = Path(home) / "files"
    start = time.time()
    for k, run in enumerate(runs):
        lines = []
        for i in range(steps):
            metrics = {"loss": round(1.0 / (1 + i) + k * 1e-4, 6), "acc": round(i / steps, 4), "lr": 0.001}
            lines.append(json.dumps({"attempt": 0, "step": i, "time": start + i, "metrics": metrics}) + "\n")
        place = folder / of_run("", sweep, run).folder_name
        place.mkdir(parents=True)
        (place / METRICS_FILE).write_text("".join(lines))
    began = time.perf_counter()
    first = uploads.upload(sweep, runs, folder, Reporter())
    middle = time.perf_counter()
    second = uploads.upload(sweep, runs, folder, Reporter())
    ended = time.perf_counter()
    print(json.dumps({"first": middle - began, "second": ended - middle, "uploaded": [first, second]}))
    """
)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--experiments", type=int, default=1000)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--code", type=Path, default=ROOT, help="the checkout whose mrunner uploads")
    parser.add_argument("--uri", help="the MLflow server (default: tests/services/mlflow's state file)")
    parser.add_argument("--workers", type=int, help="experiments sent at once (default: mrunner's own choice)")
    options = parser.parse_args()
    uri = options.uri or json.loads(Path("/tmp/mrunner-services/mlflow.json").read_text())["tracking_uri"]
    experiment = f"bench-upload-{uuid.uuid4().hex[:8]}"
    commit = subprocess.run(
        ["git", "-C", str(options.code), "log", "-1", "--format=%h %s"], capture_output=True, text=True
    ).stdout.strip()
    load_start = os.getloadavg()
    with tempfile.TemporaryDirectory() as home:
        environment = {**os.environ, "PYTHONPATH": str(options.code.resolve())}
        if options.workers:
            environment["BENCH_WORKERS"] = str(options.workers)
        arguments = [home, str(options.experiments), str(options.steps), uri, experiment]
        done = subprocess.run(
            [sys.executable, "-c", UPLOAD, *arguments], env=environment, capture_output=True, text=True
        )
    if done.returncode:
        raise SystemExit(f"the upload failed: {done.stderr}")
    measured = json.loads(done.stdout.strip().splitlines()[-1])

    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    found = client.get_experiment_by_name(experiment)
    runs = []
    token = None
    while True:
        page = client.search_runs([found.experiment_id], max_results=1000, page_token=token)
        runs += page
        token = page.token
        if not token:
            break
    sample = sorted(runs, key=lambda run: run.info.run_name or "")[len(runs) // 2]
    points = len(client.get_metric_history(sample.info.run_id, "loss"))
    if len(runs) != options.experiments or points != options.steps or measured["uploaded"] != [len(runs), 0]:
        raise SystemExit(f"MLflow holds {len(runs)} runs, {points} loss points in one; uploaded {measured['uploaded']}")
    print(
        json.dumps(
            {
                "code": commit,
                "experiments": options.experiments,
                "workers": options.workers,
                "steps": options.steps,
                "points_per_experiment": 3 * options.steps,
                "mlflow": uri,
                "load_average": {"start": load_start, "end": os.getloadavg()},
                "seconds": {"first_upload": measured["first"], "second_upload": measured["second"]},
                "per_experiment_ms": 1000 * measured["first"] / options.experiments,
                "when": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
