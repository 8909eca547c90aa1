"""A 2-point Slurm submission, this checkout against another (``--before DIR``), side by side in one run.

    .venv/bin/python benchmarks/slurm_ready_probe.py [--repeat 10] --before DIR [--ssh openssh|paramiko]

Times ``mrunner +context=bench train.py -m seed=A,B`` (the real CLI, from process start to return; new seeds
each time, so nothing is skipped as submitted) through the dispatch benchmark's ``bench`` context, whose
arrays are held (no task starts and loads the shared machine); the code is uploaded once, before the rounds.
Round by round the two take turns going first; each sweep is cancelled after the round. Made to compare where
the ``sbatch --test-only`` probe of the resource classes runs (``Backend.ready`` before recording, against
``Backend.admit`` after it): the same helper calls, moved.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import slurm_dispatch  # this folder is the script's first path entry
import slurm_pull
from slurm_status import run_child, summary

PYTHON = sys.executable


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument("--before", metavar="DIR", type=Path, required=True, help="the mrunner of this checkout")
    parser.add_argument("--ssh", choices=["openssh", "paramiko"], help="the context's transport")
    options = parser.parse_args()
    if options.ssh:
        slurm_dispatch.TRANSPORT.update({"ssh": options.ssh})
    root = Path(__file__).parent.parent
    sources = [root / "mrunner", *root.glob("plugins/*/mrunner_*")]
    sources += [options.before / "mrunner", *options.before.glob("plugins/*/mrunner_*")]
    subprocess.run([PYTHON, "-m", "compileall", "-q", *map(str, sources)], check=True, stdout=subprocess.DEVNULL)
    storage = f"{slurm_pull.SERVICE['storage_dir']}/bench-ready-{uuid.uuid4().hex[:8]}"
    load_start = os.getloadavg()
    loads: list[float] = []
    ways = ["mrunner", "before"]
    wall: dict[str, list[float]] = {way: [] for way in ways}
    cpu: dict[str, list[float]] = {way: [] for way in ways}
    with tempfile.TemporaryDirectory() as temporary:
        workdir = Path(temporary)
        home, project = workdir / "home", workdir / "project"
        slurm_dispatch.context(home, storage)
        project.mkdir()
        (project / "train.py").write_text(slurm_pull.TRAIN)
        env = slurm_dispatch.env_for(home)
        before_env = dict(env)
        paths = [str(options.before), *map(str, sorted(options.before.glob("plugins/mrunner_*")))]
        before_env["PYTHONPATH"] = os.pathsep.join(paths)
        sweeps = [slurm_pull.mrunner(home, project, "+context=bench", "train.py", "-m", "seed=0,1").stdout.split()[-1]]
        seed = 2
        try:
            for round_ in range(options.repeat):
                loads.append(os.getloadavg()[0])
                order = ways[round_ % len(ways) :] + ways[: round_ % len(ways)]
                for way in order:
                    argv = [PYTHON, "-m", "mrunner", "+context=bench", "train.py", "-m", f"seed={seed},{seed + 1}"]
                    seed += 2
                    elapsed, used, out = run_child(argv, project, before_env if way == "before" else env)
                    sweeps.append(out.decode().split()[-1])
                    wall[way].append(elapsed)
                    cpu[way].append(used)
                print(
                    f"round {round_} (load {loads[-1]:.1f}): "
                    + ", ".join(f"{w} {wall[w][-1]:.3f}s/{cpu[w][-1]:.3f}cpu" for w in ways),
                    file=sys.stderr,
                )
        finally:
            for sweep in sweeps:
                slurm_pull.mrunner(home, project, "cancel", sweep)
            slurm_pull.ssh(f"chmod -R u+w {storage} && rm -rf {storage}")
    report = {
        "command": "mrunner +context=bench train.py -m seed=A,B",
        "load_average": {"start": load_start, "end": os.getloadavg(), "rounds": loads},
        "wall_seconds": {way: summary(values) for way, values in wall.items()},
        "cpu_seconds": {way: summary(values) for way, values in cpu.items()},
    }
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
