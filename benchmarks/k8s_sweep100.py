"""A 100-experiment sweep: Kubernetes API calls and wall time for the submission and for one `status`.

    /work/main/.venv/bin/python benchmarks/k8s_sweep100.py [--count 100]

Runs the real CLI in this process against the loopback cluster, counting every HTTP request the
kubernetes client sends. The image is built once beforehand (a 1-experiment sweep of the same code), so
the submission measured is the Kubernetes part plus the image lookup in the registry.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import io
import os
import time
import uuid

from k8s_common import ApiCounter, delete_namespace, isolated_home, project, remove_images, service, write_context


def cli(*args: str) -> tuple[float, str]:
    from mrunner import cli as command_line

    stdout = io.StringIO()
    started = time.perf_counter()
    with contextlib.redirect_stdout(stdout):
        code = command_line.main(list(args))
    if code != 0:
        raise SystemExit(f"mrunner {' '.join(args)} exited {code}")
    return time.perf_counter() - started, stdout.getvalue()


def summary(calls: list[str]) -> str:
    counts = collections.Counter(calls)
    return "; ".join(f"{n}x {call}" for call, n in counts.most_common())


def all_ended(sweep_id: str) -> bool:
    from mrunner.records import TERMINAL
    from mrunner.store import Store

    cli("status", sweep_id)
    return all(run.state in TERMINAL for run in Store().runs(sweep_id))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=100)
    options = parser.parse_args()
    k8s = service()
    home = isolated_home()
    namespace = f"mrb-{uuid.uuid4().hex[:6]}"
    write_context(k8s, namespace, project="bench-sweep")
    os.chdir(project(home))
    counter = ApiCounter()
    try:
        cli("+context=bench-k8s", "--quiet", "exp.py", "warmup=1")  # builds and pushes the image
        counter.take()
        seconds, out = cli("+context=bench-k8s", "--quiet", "exp.py", "-m", f"seed=range({options.count})")
        submit_calls = counter.take()
        sweep_id = out.split()[-1]
        status_seconds, _ = cli("status", sweep_id)
        status_calls = counter.take()
        started = time.perf_counter()
        while not all_ended(sweep_id):
            time.sleep(2)
        all_done = time.perf_counter() - started
        counter.take()
        final_seconds, final = cli("status", sweep_id)
        final_calls = counter.take()
    finally:
        delete_namespace(k8s, namespace)
        from mrunner.store import Store

        remove_images(k8s, [s.package.get(key) for s in Store().sweeps(10) for key in ("image", "timestamp_tag")])
    print(f"{options.count} experiments on the loopback 1.20 cluster (one node)")
    print("| step | wall s | API calls | calls |")
    print("|---|---|---|---|")
    print(f"| submission (image already pushed) | {seconds:.2f} | {len(submit_calls)} | {summary(submit_calls)} |")
    print(f"| one `status` right after | {status_seconds:.2f} | {len(status_calls)} | {summary(status_calls)} |")
    print(f"| one `status` when all ended | {final_seconds:.2f} | {len(final_calls)} | {summary(final_calls)} |")
    print(
        f"all {options.count} Jobs ended about {all_done:.0f} s after the first status; final: {final.splitlines()[2]}"
    )


if __name__ == "__main__":
    main()
