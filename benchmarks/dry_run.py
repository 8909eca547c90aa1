"""CPU of a counted dry run and of recording, against the sweep's size; appends to benchmarks/results-dry-run.md.

    uv run --no-sync python benchmarks/dry_run.py [--sizes 1000 10000] [--before DIR] [--label TEXT]

Each measurement runs in a fresh process in a fresh mrunner home, on the local backend, with a 2-D grid of
``exp.py -m a=range(N/100) b=range(100)`` (a counted grid: at most ``dry_run.DRY_RUN_COUNTED`` points):

- "dry run": the whole command ``mrunner exp.py -m ... --dry-run`` with no records yet;
- "dry run, recorded": the same after the same grid was recorded once (the dry run then looks up which
  points were submitted already: every one was);
- "record": ``submission.record`` of the grid in-process (grid, commands, environments, identities, the
  check against the records, the inserts), the process's CPU during the call alone;
- "submit --detach": the whole command ``mrunner exp.py -m ... --detach --yes context.max_parallel=1`` in a
  home of its own (recording, the hand-over, the start of the detached supervisor, whose own CPU is not
  counted); the sweep is cancelled once measured.

CPU is user + system time of the child (``RUSAGE_CHILDREN``), so the machine's load changes it less than the
wall clock. ``--before DIR``: a folder holding another ``mrunner`` package, its ``conf`` and its
``plugins`` (``git archive main mrunner conf plugins | tar -x -C DIR``), measured in the same run, each
size alternating with this tree's, and put in the same table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results-dry-run.md"


def _grid(size: int) -> list[str]:
    return [f"a=range({size // 100})", "b=range(100)"]


def child_record(size: int, folder: Path) -> dict:
    from mrunner import planning, submission
    from mrunner.reporter import Reporter
    from mrunner.store import Store

    request = planning.Request(target=folder / "exp.py", overrides=_grid(size), multirun=True, yes=True)
    plan = planning.Plan(request, cwd=folder)
    store = Store()
    before = time.process_time()
    submission.record(plan, store, Reporter(quiet=True))
    return {"cpu": time.process_time() - before}


def _cpu_of(command: list[str], cwd: Path, env: dict) -> float:
    return _run(command, cwd, env)[0]


def _run(command: list[str], cwd: Path, env: dict) -> tuple[float, str]:
    """The command's CPU (its own report, for the in-process case) and its output."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, check=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.stdout.strip().startswith("{"):
        return float(json.loads(done.stdout)["cpu"]), done.stdout
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime), done.stdout + done.stderr


def measure(size: int, tree: Path | None) -> dict[str, float]:
    """The three cases for one size, with ``tree``'s mrunner (None: the installed one)."""
    with tempfile.TemporaryDirectory(prefix="mrunner-dry-run-") as temporary:
        folder = Path(temporary)
        project = folder / "project"
        project.mkdir()
        (project / "exp.py").write_text("from mrunner import get_configuration\nget_configuration()\n")
        env = {**os.environ, "XDG_DATA_HOME": str(folder / "data"), "XDG_CONFIG_HOME": str(folder / "config")}
        if tree is not None:
            plugins = sorted(str(plugin) for plugin in (tree / "plugins").glob("*") if plugin.is_dir())
            env["PYTHONPATH"] = os.pathsep.join([str(tree), *plugins, *filter(None, [os.environ.get("PYTHONPATH")])])
        dry = [sys.executable, "-m", "mrunner", "exp.py", "-m", *_grid(size), "--dry-run"]
        _cpu_of(dry, project, env)  # once unmeasured: compiles what PYTHONDONTWRITEBYTECODE leaves uncompiled
        result = {"dry run": _cpu_of(dry, project, env)}
        result["record"] = _cpu_of([sys.executable, __file__, "--child", str(size), str(project)], project, env)
        result["dry run, recorded"] = _cpu_of(dry, project, env)
        own = {**env, "XDG_DATA_HOME": str(folder / "data-submitted")}
        submit = [sys.executable, "-m", "mrunner", "exp.py", "-m", *_grid(size), "--detach", "--yes"]
        result["submit --detach"], output = _run([*submit, "context.max_parallel=1"], project, own)
        sweep = re.search(r"^([a-z]+-[a-z]+-[0-9a-f]+)$", output, re.MULTILINE)  # the id it prints alone
        assert sweep is not None, output
        supervisor = re.search(r"supervisor pid (\d+)", output)
        assert supervisor is not None, output
        subprocess.run([sys.executable, "-m", "mrunner", "cancel", sweep.group(1)], cwd=project, env=own, check=True)
        _wait_gone(int(supervisor.group(1)))  # before its folder is removed
        return result


def _wait_gone(pid: int) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    raise SystemExit(f"the detached supervisor {pid} did not stop after `mrunner cancel`")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="*", default=[1_000, 10_000])
    parser.add_argument("--before", type=Path, help="a folder holding the mrunner package to compare with")
    parser.add_argument("--label", default="", help="what this run compares, for the results' heading")
    parser.add_argument("--child", nargs=2, metavar=("SIZE", "FOLDER"), help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.child:
        print(json.dumps(child_record(int(options.child[0]), Path(options.child[1]))))
        return
    rows = []
    for size in options.sizes:
        before = measure(size, options.before.resolve()) if options.before else None
        after = measure(size, None)
        rows.append((size, before, after))
        print(size, before, after, flush=True)
    write(rows, options)


def write(rows: list[tuple[int, dict | None, dict]], options: argparse.Namespace) -> None:
    command = "uv run --no-sync python benchmarks/dry_run.py --sizes " + " ".join(str(r[0]) for r in rows)
    if options.before:
        command += " --before DIR"
    lines = [
        "",
        f"## CPU of a counted dry run and of recording{': ' + options.label if options.label else ''}",
        "",
        f"Produced by `{command}` on {time.strftime('%Y-%m-%d')}, {os.cpu_count()} CPUs, Python "
        f"{platform.python_version()}, load average {os.getloadavg()[0]:.1f} at the end; CPU seconds (user + "
        "system) of one fresh process per case, a 2-D grid `exp.py -m a=range(N/100) b=range(100)` on the local "
        "backend. The dry runs and the submission are the whole command (Python, Hydra, the plan, the snapshot); "
        "record is `submission.record` alone.",
        "",
    ]
    cases = ("dry run", "dry run, recorded", "record", "submit --detach")
    if options.before:
        lines += ["| experiments | case | before | after | after / before |", "|---|---|---|---|---|"]
        for size, before, after in rows:
            assert before is not None
            for case in cases:
                lines.append(
                    f"| {size:,} | {case} | {before[case]:.2f} s | {after[case]:.2f} s "
                    f"| {after[case] / before[case]:.2f}x |"
                )
    else:
        lines += ["| experiments | case | CPU |", "|---|---|---|"]
        for size, _, after in rows:
            lines += [f"| {size:,} | {case} | {after[case]:.2f} s |" for case in cases]
    with RESULTS.open("a") as results:
        results.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
