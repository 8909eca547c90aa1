"""``mrunner.report`` per call with live MLflow tracking into a real server, and the process's exit after it.

    uv run --no-sync python benchmarks/report_mlflow.py --uri http://127.0.0.1:5055 [--calls 2000] [--code DIR]

In a fresh process set up as an experiment (its folder, ``MRUNNER_MLFLOW=1``, a config naming a new sweep): one
first report (it imports the client and finds or makes the MLflow run; not counted), then ``--calls`` reports
timed, then the time from the last report to the process's end (what the exit waits for the points to be sent),
and the points the run holds afterwards. ``--code DIR`` runs another checkout's mrunner (``git archive main``
unpacked), for a side-by-side comparison. Prints one line of results.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid

CHILD = """
import time, mrunner
mrunner.report({"loss": 1.0}, step=0)
started = time.perf_counter()
for step in range(1, CALLS + 1):
    mrunner.report({"loss": 1.0 / (step + 1), "acc": step / CALLS}, step=step)
print((time.perf_counter() - started) / CALLS, time.time(), flush=True)
"""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--uri", required=True)
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--code", help="another checkout's folder holding mrunner/")
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        config = os.path.join(folder, "config.json")
        sweep = f"bench{uuid.uuid4().hex[:8]}"
        with open(config, "w") as stream:
            json.dump({"sweep": sweep, "index": 0, "name": "bench", "project": "bench", "parameters": {}}, stream)
        env = dict(os.environ, MRUNNER_CONFIG=config, MRUNNER_EXPERIMENT_DIR=folder, MRUNNER_MLFLOW="1")
        env.update(MLFLOW_TRACKING_URI=options.uri, MLFLOW_EXPERIMENT_NAME="mrunner-benchmark-report")
        if options.code:
            env["PYTHONPATH"] = options.code
        child = CHILD.replace("CALLS", str(options.calls))
        out = subprocess.run(  # in the folder: the working directory comes first on a -c child's path
            [sys.executable, "-c", child], env=env, cwd=folder, check=True, capture_output=True, text=True
        )
        ended = time.time()
        per_call, last = map(float, out.stdout.split())
        with open(os.path.join(folder, ".mrunner-mlflow-run")) as stream:
            run = stream.read().strip()
    from mlflow.tracking import MlflowClient

    points = len(MlflowClient(options.uri).get_metric_history(run, "loss"))
    print(
        f"code={options.code or 'this checkout'} calls={options.calls} per_call_us={per_call * 1e6:.1f} "
        f"exit_s={ended - last:.2f} points_in_run={points} load={os.getloadavg()[0]:.1f}"
    )


if __name__ == "__main__":
    main()
