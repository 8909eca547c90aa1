"""What renaming folders of the code costs an experiment under the copy-on-write view (``mrunner.codeview``):
the mount with ``redirect_dir=on`` and the ``settle`` after the experiment against the mount as it was (no
redirects, no settle), with no rename, and with a rename of one folder of the project or of a top-level
folder (before: ``shutil.move``, a copy inside the experiment, since ``os.rename`` said EXDEV; now:
``os.rename`` and the copy of the renamed folder into the experiment's folder by ``settle``). Root only;
writes its section of benchmarks/results-snapshot-guard.md.

    uv run --no-sync python benchmarks/view_renames.py [--files 2000] [--experiments 20]

Each experiment is a forked process that mounts the view over a folder of its own (as the attempt's wrapper
does), runs the scenario's statements in it, and with the view of now unmounts it and settles the folder;
the times are measured in that process (the mount, the statements, the end) and by the parent (the whole
process). The median over the experiments.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from snapshot_guard import RENAMES_SECTION as SECTION
from snapshot_guard import RESULTS, make_project

SCENARIOS = {
    "no rename": ("pass", "pass"),
    "one folder of 50 files renamed (`data/part01`)": (
        "shutil.move('data/part01', 'data/part01-renamed')",
        "os.rename('data/part01', 'data/part01-renamed')",
    ),
    "a top-level folder of 1,000 files renamed (`data`)": (
        "shutil.move('data', 'data-renamed')",
        "os.rename('data', 'data-renamed')",
    ),
}


def experiment(code: str, folder: str, work: str, now: bool, statements: str, report: int) -> None:
    """In the forked process: mount, run ``statements`` in the view, end; the four times on ``report``."""
    from mrunner import codeview

    start = time.perf_counter()
    if now:
        codeview.mount(code, folder, work)
    else:  # the mount as it was: no redirect_dir
        _mount_before(code, folder, work)
    mounted = time.perf_counter()
    os.chdir(folder)
    exec(statements, {"os": os, "shutil": shutil})
    os.chdir("/")
    ran = time.perf_counter()
    if now:
        codeview.unmount(folder)
    unmounted = time.perf_counter()
    if now:
        codeview.settle(folder)
    ended = time.perf_counter()
    os.write(report, json.dumps([mounted - start, ran - mounted, unmounted - ran, ended - unmounted]).encode())


def _mount_before(code: str, folder: str, work: str) -> None:
    import ctypes

    from mrunner import codeview

    libc = codeview._LIBC
    assert libc is not None
    os.makedirs(work, exist_ok=True)
    os.setxattr(folder, codeview.CODE_MARK, os.fsencode(code))
    if libc.unshare(codeview._CLONE_NEWNS) != 0 or libc.mount(
        b"none", b"/", None, codeview._MS_REC | codeview._MS_SLAVE, None
    ):
        raise OSError(ctypes.get_errno(), "namespace")
    options = f"lowerdir={code},upperdir={folder},workdir={work}"
    if libc.mount(b"overlay", os.fsencode(folder), b"overlay", 0, os.fsencode(options)) != 0:
        raise OSError(ctypes.get_errno(), "mount")


def one(code: Path, base: Path, name: str, now: bool, statements: str) -> list[float]:
    """The times of one experiment (mount, statements, unmount, settle, whole process) in seconds."""
    folder, work = base / f"{name}-folder", base / f"{name}-work"
    folder.mkdir()
    read, write = os.pipe()
    start = time.perf_counter()
    pid = os.fork()
    if pid == 0:
        code_ = 1
        try:
            os.close(read)
            experiment(str(code), str(folder), str(work), now, statements, write)
            code_ = 0
        finally:
            os._exit(code_)
    os.close(write)
    _, status = os.waitpid(pid, 0)
    whole = time.perf_counter() - start
    times = os.read(read, 4096)
    os.close(read)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"the experiment {name} failed")
    return [*json.loads(times), whole]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--files", type=int, default=2000)
    parser.add_argument("--experiments", type=int, default=20)
    options = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("the view is mounted as root: run this as root")
    load = os.getloadavg()
    base = Path(tempfile.mkdtemp(prefix="mrunner-renames-bench-"))
    code = base / "code"
    code.mkdir()
    make_project(code, options.files)
    rows = []
    try:
        for scenario, (before, now) in SCENARIOS.items():
            for label, is_now, statements in (("before", False, before), ("now", True, now)):
                times = [
                    one(code, base, f"{len(rows)}-{number}", is_now, statements)
                    for number in range(options.experiments)
                ]
                medians = [statistics.median(column) * 1000 for column in zip(*times)]
                rows.append(
                    f"| {scenario} | {label}: `{statements}` | " + " | ".join(f"{m:.1f}" for m in medians) + " |"
                )
    finally:
        shutil.rmtree(base, ignore_errors=True)
    lines = [
        SECTION,
        "",
        f"Produced by `uv run --no-sync python benchmarks/view_renames.py --files {options.files} --experiments "
        f"{options.experiments}` on {time.strftime('%Y-%m-%d %H:%M')} UTC, {os.cpu_count()} CPUs (shared), Python "
        f"{platform.python_version()}, Linux {platform.release()}, as root, load average {load[0]:.1f} {load[1]:.1f} "
        f"{load[2]:.1f} at the start; the project of the first table ({options.files} files of 2 KiB in 40 folders "
        f"below `data` and `conf`); the median over {options.experiments} experiments, each a forked process that "
        "mounts the view over a folder of its own. Before: the overlay without `redirect_dir`, where `os.rename` "
        "of a folder of the code says EXDEV and `shutil.move` copies it inside the experiment; now: "
        "`redirect_dir=on`, `os.rename`, and at the end the view unmounted and the folder settled "
        "(`codeview.settle`: the renamed folder's files copied into the experiment's folder).",
        "",
        "| experiment | view and statements | mount (ms) | statements (ms) | unmount (ms) | settle (ms) | whole process (ms) |",
        "|---|---|---|---|---|---|---|",
        *rows,
        "",
        "Without a rename, an experiment pays `settle`'s look at the attributes of each folder of its own folder;",
        "the unmount was done before by the end of the mount namespace, at the process's exit (in the whole",
        "process column); `mount` is the same with `redirect_dir=on`. With a rename, `os.rename` itself",
        "is immediate and the renamed folder's files are copied once, at the end, into the experiment's folder,",
        "which then holds them whole (before, `shutil.move` copied them inside the experiment, and `os.rename`",
        "failed). The whole process includes the fork and the end of the mount namespace.",
        "",
    ]
    earlier = RESULTS.read_text() if RESULTS.exists() else ""
    head = earlier[: earlier.index(SECTION)] if SECTION in earlier else earlier
    RESULTS.write_text(head.rstrip("\n") + "\n\n" + "\n".join(lines))
    sys.stdout.write("\n".join(lines))


if __name__ == "__main__":
    main()
