"""`mrunner status SWEEP --json` of a 1,000-experiment Slurm sweep through an open `mrunner login` master.

    .venv/bin/python benchmarks/slurm_status.py [--repeat 10] [--experiments 1000] [--before DIR] [--table]

A real sweep is submitted held (no task starts and loads the shared machine) through the dispatch benchmark's
`bench` context with `ssh: openssh` and a `mrunner login` master; it stays pending while the rounds run, so
every `status` makes its one remote call (the helper's `squeue`), and is cancelled at the end. Round by
round, the ways take turns going first:
- mrunner: ``mrunner status SWEEP --json`` (the real CLI from process start, output to a pipe);
- before (``--before DIR``): the same with the mrunner (and plugins) of another checkout on PYTHONPATH;
- bare: ``ssh -S MASTER HOST squeue ...`` through the same master (the remote call's floor).
Each way's wall time and the child's CPU time (user+sys, from ``wait4``; load-independent) are reported as
median and range, with the 1-minute load average at each round. ``--table`` times the table instead of --json.
"""

from __future__ import annotations

import argparse
import json
import os
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


def run_child(argv: list[str], cwd: Path, env: dict) -> tuple[float, float, bytes]:
    """Like ``timed``, with the child's own CPU time read from ``wait4`` (its children included: ssh)."""
    read, write = os.pipe()
    started = time.perf_counter()
    pid = os.fork()
    if pid == 0:
        os.chdir(cwd)
        os.dup2(write, 1)
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 2)
        os.close(read)
        os.execve(argv[0], argv, env)
    os.close(write)
    chunks = []
    while chunk := os.read(read, 1 << 16):
        chunks.append(chunk)
    os.close(read)
    _, status, usage = os.wait4(pid, 0)
    elapsed = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status):
        raise SystemExit(f"{argv[:5]} failed with {os.waitstatus_to_exitcode(status)}")
    return elapsed, usage.ru_utime + usage.ru_stime, b"".join(chunks)


def summary(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument("--experiments", type=int, default=1000)
    parser.add_argument("--before", metavar="DIR", type=Path, help="also time the mrunner of this checkout")
    parser.add_argument("--table", action="store_true", help="time the table instead of --json")
    options = parser.parse_args()
    root = Path(__file__).parent.parent
    sources = [root / "mrunner", *root.glob("plugins/*/mrunner_*")]
    if options.before:
        sources += [options.before / "mrunner", *options.before.glob("plugins/*/mrunner_*")]
    subprocess.run([PYTHON, "-m", "compileall", "-q", *map(str, sources)], check=True, stdout=subprocess.DEVNULL)
    slurm_dispatch.TRANSPORT.update({"ssh": "openssh"})
    slurm_dispatch.LOGIN[0] = True
    storage = f"{slurm_pull.SERVICE['storage_dir']}/bench-status-{uuid.uuid4().hex[:8]}"
    load_start = os.getloadavg()
    loads: list[float] = []
    ways = ["mrunner", "bare"] + (["before"] if options.before else [])
    wall: dict[str, list[float]] = {way: [] for way in ways}
    cpu: dict[str, list[float]] = {way: [] for way in ways}
    with tempfile.TemporaryDirectory() as temporary:
        workdir = Path(temporary)
        home, project = workdir / "home", workdir / "project"
        slurm_dispatch.context(home, storage)  # logs in (`mrunner login bench`)
        project.mkdir()
        (project / "train.py").write_text(slurm_pull.TRAIN)
        sweep = slurm_pull.mrunner(
            home, project, "+context=bench", "train.py", "-m", f"seed=range({options.experiments})"
        ).stdout.split()[-1]
        env = slurm_dispatch.env_for(home)
        before_env = dict(env)
        if options.before:
            paths = [str(options.before), *map(str, sorted(options.before.glob("plugins/mrunner_*")))]
            before_env["PYTHONPATH"] = os.pathsep.join(paths)
        master = next((Path(env["XDG_RUNTIME_DIR"]) / "mrunner" / "ssh").glob("[0-9a-f]*[0-9a-f]"))
        command = [PYTHON, "-m", "mrunner", "status", sweep] + ([] if options.table else ["--json"])
        bare = [
            "/usr/bin/ssh", "-F", slurm_pull.SERVICE["ssh_config"], "-o", f"ControlPath={master}",
            "-o", "ControlMaster=no", slurm_pull.SERVICE["alias"], "squeue --me --noheader --array -o '%i %T'",
        ]  # fmt: skip
        try:
            for round_ in range(options.repeat):
                loads.append(os.getloadavg()[0])
                order = ways[round_ % len(ways) :] + ways[: round_ % len(ways)]
                for way in order:
                    argv = bare if way == "bare" else command
                    elapsed, used, out = run_child(argv, project, before_env if way == "before" else env)
                    if way != "bare" and not options.table:
                        rows = json.loads(out)["experiments"]
                        if len(rows) != options.experiments:
                            raise SystemExit(f"{way}: {len(rows)} rows")
                    wall[way].append(elapsed)
                    cpu[way].append(used)
                print(
                    f"round {round_} (load {loads[-1]:.1f}): "
                    + ", ".join(f"{w} {wall[w][-1]:.3f}s/{cpu[w][-1]:.3f}cpu" for w in ways),
                    file=sys.stderr,
                )
        finally:
            slurm_pull.mrunner(home, project, "cancel", sweep)
            slurm_dispatch.logout(home)
            slurm_pull.ssh(f"chmod -R u+w {storage} && rm -rf {storage}")
    report = {
        "experiments": options.experiments,
        "command": " ".join(command[1:]),
        "load_average": {"start": load_start, "end": os.getloadavg(), "rounds": loads},
        "wall_seconds": {way: summary(values) for way, values in wall.items()},
        "cpu_seconds": {way: summary(values) for way, values in cpu.items()},
        "under_0.3s": {way: sum(v < 0.3 for v in values) for way, values in wall.items()},
    }
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
