"""``mrunner.report`` per call against the floor; writes benchmarks/results-report.md.

    uv run --no-sync python benchmarks/report.py [--calls 200000]

"mrunner" is ``mrunner.report({"loss": ..., "acc": ...}, step=i)`` inside an experiment's environment (its
folder and attempt set, no tracker enabled): the values checked, one line of JSON with attempt, step and time,
one ``os.write`` on an ``O_APPEND`` descriptor. The floor is what a script would write by hand: the same
metrics through ``json.dumps``, a buffered file's ``write`` and ``flush`` (one system call per line too, so
the line is out of the process as mrunner's is). Each side runs in a fresh process, best of three rounds.
The aim: mrunner within 3x of the floor.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results-report.md"
ROUNDS = 3


def child(kind: str, calls: int, folder: str) -> float:
    """Seconds for ``calls`` reports of one kind (best of ``ROUNDS``), in this process."""
    best = float("inf")
    for round_ in range(ROUNDS):
        path = os.path.join(folder, f"{kind}-{round_}")
        os.makedirs(path)
        if kind == "mrunner":
            os.environ["MRUNNER_EXPERIMENT_DIR"] = path
            os.environ["MRUNNER_ATTEMPT"] = "0"
            import mrunner
            from mrunner import metrics

            metrics._descriptor = None  # a fresh file each round
            started = time.perf_counter()
            for step in range(calls):
                mrunner.report({"loss": 1.0 / (step + 1), "acc": step / calls}, step=step)
        else:
            with open(os.path.join(path, "metrics.jsonl"), "a") as stream:
                started = time.perf_counter()
                for step in range(calls):
                    stream.write(json.dumps({"step": step, "loss": 1.0 / (step + 1), "acc": step / calls}) + "\n")
                    stream.flush()
        best = min(best, time.perf_counter() - started)
    return best


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=200_000)
    parser.add_argument("--child", nargs=2, metavar=("KIND", "FOLDER"))
    options = parser.parse_args()
    if options.child:
        print(child(options.child[0], options.calls, options.child[1]))
        return
    seconds = {}
    with tempfile.TemporaryDirectory() as folder:
        for kind in ("floor", "mrunner"):
            out = subprocess.run(
                [sys.executable, __file__, "--calls", str(options.calls), "--child", kind, folder],
                check=True,
                capture_output=True,
                text=True,
            )
            seconds[kind] = float(out.stdout)
    rate = {kind: options.calls / value for kind, value in seconds.items()}
    ratio = seconds["mrunner"] / seconds["floor"]
    command = f"uv run --no-sync python benchmarks/report.py --calls {options.calls}"
    text = f"""# `mrunner.report` per call

Produced by `{command}` on {time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}, {os.cpu_count()} CPUs, Python {platform.python_version()}, load average {os.getloadavg()[0]:.1f}; best of {ROUNDS} rounds of {options.calls:,} calls, each side in a fresh process.

`mrunner.report({{"loss": ..., "acc": ...}}, step=i)` in an experiment's environment (no tracker) against a bare
`json.dumps` + `write` + `flush` of the same metrics to a file opened for appending. Aim: within 3x.

| | calls per second | per call | vs floor |
|---|---|---|---|
| floor (json.dumps + write + flush) | {rate["floor"]:,.0f} | {seconds["floor"] / options.calls * 1e6:.1f} us | 1.00x |
| mrunner.report | {rate["mrunner"]:,.0f} | {seconds["mrunner"] / options.calls * 1e6:.1f} us | {ratio:.2f}x |

Where mrunner's extra time goes: checking that each value is a number (one `isinstance` per metric), the
attempt, step and time in each line, and building the line before its one `os.write`. Both sides make one
system call per line; neither calls `fsync` (a line is safe from a killed process, not from a power cut).
"""
    RESULTS.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
