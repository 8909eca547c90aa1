"""Hydra apps through mrunner, side by side in one run; writes benchmarks/results-hydra.md.

    uv sync --all-packages --group bench --compile-bytecode && uv run --no-sync python benchmarks/hydra.py [--repeat 3]

1. The override check of a 1,000-point sweep of a Hydra app with a config group (``db=mysql,postgres
   lr=range(0,500)``): the check alone, in process (the first call pays for Hydra's config loader);
   ``--dry-run`` of the app against the same grid of a plain script (which is not checked); and, when the
   loopback Slurm cluster runs (tests/services/slurm), a whole submission of both, held (``--hold``) and
   cancelled at once, so no task loads the machine (after one turn that deploys the code, taking turns).
2. A 200-point sweep of a trivial Hydra app, two experiments at a time, per experiment: ``xargs -P2``
   running the app itself (the floor), ``mrunner app.py -m ...`` (local backend), ``python app.py -m
   hydra/launcher=mrunner ...``, and Hydra's basic (sequential) and joblib (``n_jobs=2``) launchers.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

HERE = Path(__file__).resolve().parent
PY = sys.executable
SERVICE = Path(os.environ.get("MRUNNER_SERVICES_DIR", "/tmp/mrunner-services")) / "slurm.json"
GROUPED_APP = """
import hydra

@hydra.main(config_path="conf", config_name="config", version_base=None)
def main(cfg):
    cfg.lr

if __name__ == "__main__":
    main()
"""
TRIVIAL_APP = """
import hydra

@hydra.main(config_path=None, config_name=None, version_base=None)
def main(cfg):
    cfg.i

if __name__ == "__main__":
    main()
"""
PLAIN = "from mrunner import get_configuration\nget_configuration()\n"
GRID = ["db=mysql,postgres", "lr=range(0,500)"]
NOTE = "Hydra's basic and joblib launchers run each job inside a Python that has started and imported Hydra already (basic: the launching process itself; joblib: worker processes it reuses), so they pay no start-up per job. mrunner runs each experiment as a process of its own, from the code snapshot, with its own folder and records, as the `xargs` floor does: its cost per experiment is the app's own start-up."
CHECK_PROBE = """
import sys, time
from pathlib import Path
from mrunner import app_config, grid
axes = grid.grid(sys.argv[1:], multirun=True).axes
times = []
for _ in range(3):
    start = time.perf_counter()
    composed = app_config.check(Path("app.py"), [[]], axes)
    times.append(time.perf_counter() - start)
print(times[0], min(times[1:]), composed)
"""


def timed(command: list[str] | str, repeat: int, cwd: Path, env: dict, shell: bool = False) -> list[float]:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        subprocess.run(
            command, cwd=cwd, env=env, shell=shell, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        times.append(time.perf_counter() - start)
    return times


def spread(times: list[float], per: int = 1) -> str:
    median, low, high = statistics.median(times) / per, min(times) / per, max(times) / per
    unit, scale = ("ms", 1000) if per > 1 else ("s", 1)
    return f"{median * scale:.{1 if per > 1 else 3}f} {unit} ({low * scale:.{1 if per > 1 else 3}f}-{high * scale:.{1 if per > 1 else 3}f})"


def check_section(work: Path, env: dict, repeat: int) -> list[str]:
    (work / "conf" / "db").mkdir(parents=True)
    (work / "conf" / "config.yaml").write_text("defaults:\n  - db: mysql\n  - _self_\nlr: 0.1\n")
    (work / "conf" / "db" / "mysql.yaml").write_text("driver: mysql\n")
    (work / "conf" / "db" / "postgres.yaml").write_text("driver: postgres\n")
    (work / "app.py").write_text(GROUPED_APP)
    (work / "exp.py").write_text(PLAIN)
    probe = subprocess.run(
        [PY, "-c", CHECK_PROBE, *GRID], cwd=work, env=env, check=True, capture_output=True, text=True
    ).stdout.split()
    cold, warm, composed = float(probe[0]), float(probe[1]), int(probe[2])
    mrunner = [PY, "-m", "mrunner"]
    app_dry = timed([*mrunner, "app.py", "-m", *GRID, "--dry-run"], repeat * 3, work, env)
    plain_dry = timed([*mrunner, "exp.py", "-m", *GRID, "--dry-run"], repeat * 3, work, env)
    lines = [
        "## The override check of a 1,000-point sweep",
        "",
        f"`{' '.join(GRID)}` (1,000 points, a config group of 2 options): the app's config is composed "
        f"{composed} times, and each other value of `lr` is applied to those compositions.",
        "",
        "| what | wall time |",
        "|---|---|",
        f"| the check alone, first call in a process (imports Hydra's config loader) | {cold * 1000:.1f} ms |",
        f"| the check alone, again in the same process | {warm * 1000:.1f} ms |",
        f"| `mrunner app.py -m {' '.join(GRID)} --dry-run` (Hydra app: checked) | {spread(app_dry)} |",
        f"| `mrunner exp.py -m {' '.join(GRID)} --dry-run` (plain script: not checked) | {spread(plain_dry)} |",
    ]
    if SERVICE.exists():
        lines += slurm_rows(work, env, repeat)
    else:
        lines.append("| a held submission to the loopback Slurm cluster | not measured: the service is not running |")
    return lines


def slurm_rows(work: Path, env: dict, repeat: int) -> list[str]:
    service = json.loads(SERVICE.read_text())
    storage = f"{service['storage_dir']}/bench-hydra-{uuid.uuid4().hex[:8]}"
    folder = Path(env["XDG_CONFIG_HOME"]) / "mrunner" / "context"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "bench.yaml").write_text(
        json.dumps(
            {
                "backend": "slurm",
                "slurm_url": service["alias"],
                "ssh_config": service["ssh_config"],
                "storage_dir": storage,
                "partition": service["partition"],
                "time": 5,
                "sbatch_options": ["--hold"],
            }
        )
    )
    ways = (("Hydra app: checked", "app.py"), ("plain script: not checked", "exp.py"))
    times: dict[str, list[float]] = {script: [] for _, script in ways}
    for turn in range(repeat + 1):  # the first turn deploys the code and mrunner's client: not counted
        for _, script in ways if turn % 2 else reversed(ways):
            start = time.perf_counter()
            result = subprocess.run(
                [PY, "-m", "mrunner", "+context=bench", script, "-m", *GRID, "--force", "--quiet"],
                cwd=work,
                env=env,
                check=True,
                capture_output=True,
                text=True,
            )
            if turn:
                times[script].append(time.perf_counter() - start)
            subprocess.run(
                [PY, "-m", "mrunner", "cancel", result.stdout.split()[-1]],
                cwd=work,
                env=env,
                check=True,
                capture_output=True,
            )
    rows = [
        f"| `mrunner +context=slurm {script} -m ...`, held ({label}) | {spread(times[script])} |"
        for label, script in ways
    ]
    # the code folders are read-only on the cluster
    subprocess.run(
        ["ssh", "-F", service["ssh_config"], service["alias"], f"chmod -R u+w {storage}; rm -rf {storage}"], check=False
    )
    return rows


def sweep_section(work: Path, env: dict, repeat: int, count: int) -> list[str]:
    folder = work / "trivial"
    folder.mkdir()
    (folder / "app.py").write_text(TRIVIAL_APP)
    runs = work / "runs"
    xargs = f"seq 0 {count - 1} | xargs -P2 -I{{}} {PY} app.py +i={{}} hydra.run.dir={runs}/xargs/{{}}"
    ways = [
        ("`xargs -P2` running `python app.py +i=N` (the floor)", xargs, True),
        (
            "`mrunner app.py -m +i=range(200)`, local backend, `max_parallel=2`",
            [PY, "-m", "mrunner", "app.py", "-m", f"+i=range({count})", "context.max_parallel=2", "--force", "--quiet"],
            False,
        ),
        (
            "`python app.py -m hydra/launcher=mrunner +i=range(200)`, local backend, `max_parallel=2`",
            [
                PY,
                "app.py",
                "-m",
                "hydra/launcher=mrunner",
                "+hydra.launcher.context_keys.max_parallel=2",
                "hydra.launcher.quiet=true",
                f"+i=range({count})",
                f"hydra.sweep.dir={runs}/mrunner",
            ],
            False,
        ),
        (
            "Hydra basic launcher (sequential, in process)",
            [PY, "app.py", "-m", f"+i=range({count})", f"hydra.sweep.dir={runs}/basic"],
            False,
        ),
        (
            "Hydra joblib launcher, `n_jobs=2`",
            [
                PY,
                "app.py",
                "-m",
                "hydra/launcher=joblib",
                "hydra.launcher.n_jobs=2",
                f"+i=range({count})",
                f"hydra.sweep.dir={runs}/joblib",
            ],
            False,
        ),
    ]
    lines = [
        f"## A {count}-point sweep of a trivial Hydra app, two at a time",
        "",
        "| way | per experiment | whole sweep |",
        "|---|---|---|",
    ]
    for label, command, shell in ways:
        times = []
        for _ in range(repeat):
            shutil.rmtree(runs, ignore_errors=True)
            times += timed(command, 1, folder, env, shell=shell)
        lines.append(f"| {label} | {spread(times, per=count)} | {spread(times)} |")
    return [*lines, "", NOTE]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--output", type=Path, default=HERE / "results-hydra.md")
    options = parser.parse_args()
    sources = [
        HERE.parent / "mrunner",
        *HERE.parent.glob("plugins/*/mrunner_*"),
        HERE.parent / "plugins" / "hydra_mrunner_launcher" / "hydra_plugins",
    ]
    subprocess.run([PY, "-m", "compileall", "-q", *map(str, sources)], check=True, stdout=subprocess.DEVNULL)
    work = Path(tempfile.mkdtemp(prefix="mrunner-bench-hydra-"))
    env = {**os.environ, "XDG_DATA_HOME": str(work / "data"), "XDG_CONFIG_HOME": str(work / "config")}
    lines = [
        "# Hydra apps through mrunner",
        "",
        f"Produced by `{' '.join(['python', 'benchmarks/hydra.py', *sys.argv[1:]])}` on {time.strftime('%Y-%m-%d')}, "
        f"{os.cpu_count()} CPUs, Python {platform.python_version()}, load average {os.getloadavg()[0]:.1f} at the "
        f"start; median of {options.repeat} run(s) (min-max; the dry runs {options.repeat * 3}), bytecode compiled.",
        "",
    ]
    for section in (
        lambda: check_section(work, env, options.repeat),
        lambda: sweep_section(work, env, options.repeat, 200),
    ):
        lines += [*section(), ""]
        print("\n".join(lines), flush=True)
    options.output.write_text("\n".join(lines))
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
