"""Core and local-backend benchmarks, side by side in one run; writes benchmarks/results-core.md.

    uv sync --all-packages --group bench --compile-bytecode && uv run --no-sync python benchmarks/core.py [--repeat 3]

Installed packages are measured with their bytecode compiled (``--compile-bytecode``), as pip leaves them;
the script compiles mrunner's own sources too, since a machine with PYTHONDONTWRITEBYTECODE=1 (this one)
would otherwise recompile them on every run.

1. `mrunner --help` and a 3-point `--dry-run` against bare `python -c pass`, and which heavy libraries each imports.
2. Counting a 1,000,000-point grid with `--dry-run`: wall time and peak memory (aim: < 3 s, < 200 MB).
3. 200 experiments that read their parameters with get_configuration() and exit, two at a time: mrunner's local
   backend against `xargs -P2` running the same commands, Hydra's basic launcher and its joblib launcher
   (aim: within 1.3x of xargs).

``--before DIR`` also runs part 3's local sweep with the mrunner of another tree (``git archive REV mrunner
plugins conf | tar x -C DIR``, put first on ``PYTHONPATH``), alternating with this one in each repeat: before and
after a change under the same load, with each way's CPU (user + system of its processes) beside its wall time.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
PY = sys.executable
HEAVY = ["hydra", "omegaconf", "pluggy", "rich", "paramiko", "kubernetes", "docker", "neptune"]
EXPERIMENT = "from mrunner import get_configuration\nconfig = get_configuration()\n"
HYDRA_APP = """
import hydra

@hydra.main(config_path=None, config_name=None, version_base=None)
def main(cfg):
    cfg.i

main()
"""


def timed(
    command: list[str] | str, repeat: int, cwd: Path, env: dict, shell: bool = False
) -> tuple[float, float, float]:
    """(median, min, max) wall seconds of a command over ``repeat`` runs."""
    times = [once(command, cwd, env, shell)[0] for _ in range(repeat)]
    return statistics.median(times), min(times), max(times)


def once(command: list[str] | str, cwd: Path, env: dict, shell: bool = False) -> tuple[float, float]:
    """(wall seconds, CPU seconds of its processes: user + system of the children it waited for) of one run."""
    used = _children_cpu()
    start = time.perf_counter()
    subprocess.run(
        command, cwd=cwd, env=env, shell=shell, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    return time.perf_counter() - start, _children_cpu() - used


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def stats(values: list[float]) -> tuple[float, float, float]:
    return statistics.median(values), min(values), max(values)


def peak_rss_mb(command: list[str], cwd: Path, env: dict) -> tuple[float, float]:
    """(wall seconds, peak resident memory in MB) of one run, measured in a fresh child."""
    probe = (
        "import resource, subprocess, sys, time; s = time.perf_counter(); "
        "subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL); "
        "print(time.perf_counter() - s, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024)"
    )
    out = subprocess.run([PY, "-c", probe, *command], cwd=cwd, env=env, check=True, capture_output=True, text=True)
    wall, rss = out.stdout.split()
    return float(wall), float(rss)


def imported(args: list[str], cwd: Path, env: dict) -> list[str]:
    """Which heavy top-level packages a run of mrunner imports (from -X importtime)."""
    result = subprocess.run(
        [PY, "-X", "importtime", "-m", "mrunner", *args], cwd=cwd, env=env, capture_output=True, text=True
    )
    names = {line.split("|")[-1].strip().split(".")[0] for line in result.stderr.splitlines() if "|" in line}
    return [name for name in HEAVY if name in names]


def row(label: str, stats: tuple[float, float, float], base: float | None = None) -> str:
    median, low, high = stats
    ratio = f"{median / base:.2f}x" if base else ""
    return f"| {label} | {median:.3f} s ({low:.3f}-{high:.3f}) | {ratio} |"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--output", type=Path, default=HERE / "results-core.md")
    parser.add_argument("--before", metavar="DIR", type=Path, help="also run the local sweep with this tree's mrunner")
    options = parser.parse_args()
    sources = [HERE.parent / "mrunner", *HERE.parent.glob("plugins/*/mrunner_*")]
    if options.before:
        sources += [options.before / "mrunner", *options.before.glob("plugins/*/mrunner_*")]
    subprocess.run([PY, "-m", "compileall", "-q", *map(str, sources)], check=True, stdout=subprocess.DEVNULL)
    work = Path(tempfile.mkdtemp(prefix="mrunner-bench-"))
    env = {**os.environ, "XDG_DATA_HOME": str(work / "data"), "XDG_CONFIG_HOME": str(work / "config")}
    (work / "exp.py").write_text(EXPERIMENT)
    (work / "app.py").write_text(HYDRA_APP)
    mrunner = [PY, "-m", "mrunner"]
    lines = [
        "# Core and local backend benchmarks",
        "",
        f"Produced by `{' '.join(['python', 'benchmarks/core.py', *sys.argv[1:]])}` on {time.strftime('%Y-%m-%d')}, "
        f"{os.cpu_count()} CPUs, Python {platform.python_version()}, load average {os.getloadavg()[0]:.1f} at the start; "
        f"median of {options.repeat} runs (min-max), bytecode compiled.",
        "",
        "## Start-up",
        "",
        "| command | wall time | vs bare python |",
        "|---|---|---|",
    ]
    bare = timed([PY, "-c", "pass"], options.repeat * 3, work, env)
    lines.append(row("`python -c pass` (the floor)", bare))
    lines.append(row("`mrunner --help`", timed([*mrunner, "--help"], options.repeat * 3, work, env), bare[0]))
    dry = [*mrunner, "exp.py", "-m", "i=range(3)", "--dry-run"]
    lines.append(row("`mrunner exp.py -m i=range(3) --dry-run`", timed(dry, options.repeat * 3, work, env), bare[0]))
    lines += [
        "",
        f"Heavy libraries imported by `--help`: {imported(['--help'], work, env) or 'none'}; "
        f"by the 3-point dry run: {imported(['exp.py', '-m', 'i=range(3)', '--dry-run'], work, env) or 'none'} "
        "(plain overrides and a plain context are read without Hydra, `grid.plain_axis` and `config.plain`; "
        "no backend library is imported).",
        "",
        "## Counting a 1,000,000-point grid",
        "",
        "| command | wall time | peak memory |",
        "|---|---|---|",
    ]
    wall, rss = peak_rss_mb([*mrunner, "exp.py", "-m", "a=range(1000)", "b=range(1000)", "--dry-run"], work, env)
    lines.append(f"| `mrunner exp.py -m a=range(1000) b=range(1000) --dry-run` | {wall:.2f} s | {rss:.0f} MB |")

    count = 200
    configs = work / "configs"
    configs.mkdir()
    for i in range(count):
        (configs / f"{i}.yaml").write_text(json.dumps({"parameters": {"i": i}}))
    xargs = f"seq 0 {count - 1} | xargs -P2 -I{{}} env MRUNNER_CONFIG=configs/{{}}.yaml {PY} exp.py"
    sweep = [*mrunner, "exp.py", "-m", f"i=range({count})", "context.max_parallel=2", "--force", "--quiet"]
    basic = [PY, "app.py", "-m", f"+i=range({count})", f"hydra.sweep.dir={work}/multirun"]
    joblib = [*basic, "hydra/launcher=joblib", "hydra.launcher.n_jobs=2"]
    lines += [
        "",
        f"## {count} experiments that read their parameters and exit, two at a time",
        "",
        "| way | wall time | vs xargs |",
        "|---|---|---|",
    ]
    ways: dict[str, tuple[list[str] | str, dict, bool]] = {"floor": (xargs, env, True), "mrunner": (sweep, env, False)}
    if options.before:
        tree = options.before.resolve()
        path = [str(tree), *map(str, sorted(tree.glob("plugins/mrunner_*")))]
        ways["before"] = (sweep, {**env, "PYTHONPATH": os.pathsep.join(path)}, False)
    walls: dict[str, list[float]] = {way: [] for way in ways}
    cpus: dict[str, list[float]] = {way: [] for way in ways}
    for number in range(options.repeat):  # alternating, so that each way meets the same load
        for way in [*ways][number % len(ways) :] + [*ways][: number % len(ways)]:
            command, way_env, shell = ways[way]
            wall, cpu = once(command, work, way_env, shell)
            walls[way].append(wall)
            cpus[way].append(cpu)
    floor = stats(walls["floor"])
    lines.append(row("`xargs -P2` running `MRUNNER_CONFIG=... python exp.py` (the floor)", floor))
    lines.append(row("mrunner, local backend, `max_parallel=2`", stats(walls["mrunner"]), floor[0]))
    if options.before:
        lines.append(row(f"mrunner before (`{options.before}`), the same", stats(walls["before"]), floor[0]))
    lines.append(row("Hydra basic launcher (sequential, in-process)", timed(basic, 1, work, env), floor[0]))
    if _has("hydra_plugins.hydra_joblib_launcher"):
        lines.append(row("Hydra joblib launcher, `n_jobs=2`", timed(joblib, 1, work, env), floor[0]))
    else:
        lines.append("| Hydra joblib launcher | not installed (`uv sync --group bench`) | |")
    lines += [
        "",
        "Hydra's launchers run once (they take tens of seconds); the others are the median of the repeats.",
        "",
        f"CPU seconds (user + system of all its processes), median (min-max), load average {os.getloadavg()[0]:.1f} "
        "at the end: "
        + "; ".join(f"{way} {stats(cpus[way])[0]:.2f} s ({min(cpus[way]):.2f}-{max(cpus[way]):.2f})" for way in ways),
        "",
        "Each round, wall seconds: "
        + "; ".join(f"{way} " + ", ".join(f"{wall:.2f}" for wall in walls[way]) for way in ways),
        "",
    ]
    options.output.write_text("\n".join(lines))
    print("\n".join(lines))
    shutil.rmtree(work, ignore_errors=True)


def _has(module: str) -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False


if __name__ == "__main__":
    main()
