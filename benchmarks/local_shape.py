"""What the local backend's per-experiment shape costs by itself, beside `xargs -P2` and mrunner: the floor a
leaner local backend of the same shape could reach, without giving up a process per experiment.

    uv run --no-sync python benchmarks/local_shape.py [--experiments 200] [--repeat 3]

"The shape" is a driver that holds what the local fork server holds (``mrunner.attempt`` warmed,
``mrunner.codeview``) and runs the experiments two at a time, each through a wrapper forked from it that, as
the local backend's wrapper does: leads a session of its own, mounts the copy-on-write view of the code over
the experiment's folder (a mount namespace and an overlay; root only, else that way is left out), starts the
experiment as ``mrunner.attempt._start`` does (its own process group, tied to the wrapper by
``PR_SET_PDEATHSIG``), waits for it, kills what is left of its group, ends the view (``codeview.finish``) and
writes its exit code. What it leaves out is the rest of mrunner's machinery: the supervisor and its records,
the fork server's requests and reports, the wrapper's command line, handshake and folder set-up (config,
status), the log. The experiment is ``benchmarks/core.py``'s: it reads its parameters and exits.

mrunner's own sources are compiled first, as ``benchmarks/core.py`` does. Each way runs ``--repeat`` times,
alternating, so that each meets the same load; printed: the median wall time and the median CPU (user +
system of all its processes), and each against ``xargs -P2``.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

EXPERIMENT = "from mrunner import get_configuration\nconfig = get_configuration()\n"


def drive(count: int, root: str, code: str, configs: str, view: bool) -> int:
    """The shape: ``count`` experiments two at a time, each in a wrapper forked from this process."""
    import mrunner.attempt
    import mrunner.codeview  # noqa: F401  (held before the forks, as the fork server holds it)

    attempt = sys.modules["mrunner.attempt"]  # the module: ``mrunner.attempt`` is also the client's function
    attempt.warm_up()
    gc.freeze()
    running = started = failed = 0
    while started < count or running:
        while running < 2 and started < count:
            if os.fork() == 0:
                gc.disable()
                try:
                    code_ = _wrapper(started, root, code, configs, view)
                except BaseException as error:  # said, and counted as a failure
                    os.write(2, f"{error!r}\n".encode())
                    code_ = 1
                os._exit(code_)
            running += 1
            started += 1
        _, status = os.waitpid(-1, 0)
        running -= 1
        failed += status != 0
    return 1 if failed else 0


def _wrapper(number: int, root: str, code: str, configs: str, view: bool) -> int:
    attempt, codeview = sys.modules["mrunner.attempt"], sys.modules["mrunner.codeview"]

    os.setsid()
    folder = os.path.join(root, str(number))
    os.makedirs(folder, exist_ok=True)
    env = {**os.environ, "MRUNNER_CONFIG": os.path.join(configs, f"{number}.yaml")}
    cwd = code
    if view:
        codeview.mount(code, folder, os.path.join(root, f".work-{number}"))
        cwd = folder
    pid, _ = attempt._start([sys.executable, "exp.py"], cwd, env, piped=False)
    status = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
    attempt._signal_group(pid, signal.SIGKILL)
    if view:
        codeview.finish(folder)
    path = os.path.join(root, f"{number}.exit")
    with open(path + ".part", "w") as stream:
        stream.write(f"{status}\n")
    os.rename(path + ".part", path)
    return status


def once(command: list[str] | str, cwd: Path, env: dict[str, str], shell: bool = False) -> tuple[float, float]:
    """(wall seconds, CPU seconds of its processes) of one run."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(command, cwd=cwd, env=env, shell=shell, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--experiments", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--drive", nargs=4, metavar=("COUNT", "ROOT", "CODE", "CONFIGS"), help=argparse.SUPPRESS)
    parser.add_argument("--view", action="store_true", help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.drive:
        count, root, code, configs = options.drive
        sys.exit(drive(int(count), root, code, configs, options.view))
    here = Path(__file__).resolve().parent
    sources = [here.parent / "mrunner", *here.parent.glob("plugins/*/mrunner_*")]  # as benchmarks/core.py does
    subprocess.run(
        [sys.executable, "-m", "compileall", "-q", *map(str, sources)], check=True, stdout=subprocess.DEVNULL
    )
    work = Path(tempfile.mkdtemp(prefix="mrunner-shape-"))
    env = {**os.environ, "XDG_DATA_HOME": str(work / "data"), "XDG_CONFIG_HOME": str(work / "config")}
    (work / "code").mkdir()
    (work / "code" / "exp.py").write_text(EXPERIMENT)
    (work / "exp.py").write_text(EXPERIMENT)
    configs = work / "configs"
    configs.mkdir()
    count = options.experiments
    for i in range(count):
        (configs / f"{i}.yaml").write_text(json.dumps({"parameters": {"i": i}}))
    py = sys.executable
    runs = work / "runs"
    shape = [py, __file__, "--drive", str(count), str(runs), str(work / "code"), str(configs)]
    ways: dict[str, tuple[list[str] | str, bool]] = {
        "`xargs -P2` (the floor)": (
            f"seq 0 {count - 1} | xargs -P2 -I{{}} env MRUNNER_CONFIG=configs/{{}}.yaml {py} exp.py",
            True,
        ),
        "the shape, no view": (shape, False),
    }
    if os.geteuid() == 0:
        ways["the shape, with the view"] = ([*shape, "--view"], False)
    sweep = [py, "-m", "mrunner", "exp.py", "-m", f"i=range({count})", "context.max_parallel=2", "--force", "--quiet"]
    ways["mrunner, local backend"] = (sweep, False)
    walls: dict[str, list[float]] = {way: [] for way in ways}
    cpus: dict[str, list[float]] = {way: [] for way in ways}
    loads = [os.getloadavg()[0]]
    for number in range(options.repeat):
        names = [*ways]
        for way in names[number % len(names) :] + names[: number % len(names)]:
            shutil.rmtree(runs, ignore_errors=True)
            runs.mkdir()
            command, shell = ways[way]
            wall, cpu = once(command, work, env, shell)
            walls[way].append(wall)
            cpus[way].append(cpu)
        loads.append(os.getloadavg()[0])
    floor_wall = statistics.median(walls["`xargs -P2` (the floor)"])
    floor_cpu = statistics.median(cpus["`xargs -P2` (the floor)"])
    print(f"{count} experiments, {options.repeat} alternating rounds, load {min(loads):.1f}-{max(loads):.1f}")
    print("| way | wall, median (min-max) | CPU, median (min-max) | CPU per experiment above the floor |")
    print("|---|---|---|---|")
    for way in ways:
        wall, cpu = statistics.median(walls[way]), statistics.median(cpus[way])
        print(
            f"| {way} | {wall:.2f} s ({min(walls[way]):.2f}-{max(walls[way]):.2f}), {wall / floor_wall:.2f}x "
            f"| {cpu:.2f} s ({min(cpus[way]):.2f}-{max(cpus[way]):.2f}), {cpu / floor_cpu:.2f}x "
            f"| {(cpu - floor_cpu) * 1000 / count:.1f} ms |"
        )
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
