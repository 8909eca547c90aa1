"""What keeping experiments from changing the code snapshot costs, per sweep and per experiment, on a
2,000-file project; writes benchmarks/results-snapshot-guard.md.

    uv run --no-sync python benchmarks/snapshot_guard.py [--files 2000] [--experiments 30]

Per sweep: freezing the tree (once per code digest, as before, for scale), then either the check that this
machine may mount a copy-on-write view (``mrunner.codeview.available``, every sweep) or, where it may not,
the watch's pristine copy and stat record (``mrunner.treeguard.watch``, once per code digest). Per experiment:
laying out its folder and, with the view, starting a process that mounts it (against one that does not:
the difference is the mount's cost, its namespace's end included); with the watch, the mirror (a link per
file) and the check before each experiment, and the restore after an experiment damaged the tree. Best of
3 rounds; per experiment, the median over the experiments.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results-snapshot-guard.md"
FAKE = "MRUNNER_FAKE_NO_OVERLAY"  # mrunner.codeview.FAKE_NO_MOUNT: the watched fallback


def make_project(root: Path, files: int) -> None:
    """``files`` files of 2 KiB: a script and 40 folders of data and configs."""
    (root / "exp.py").write_text("print('hi')\n")
    for index in range(files - 1):
        folder = root / ("data" if index % 2 else "conf") / f"part{index % 20:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"f{index:05d}.txt").write_bytes(os.urandom(1024).hex().encode())


def timed(action: Callable[[], object]) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def in_child(action: Callable[[], object]) -> float:
    """Seconds to fork a process that does ``action`` and to see it end (as a wrapper of an experiment)."""
    start = time.perf_counter()
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            action()
        except BaseException:
            code = 1
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit("the child failed")
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--files", type=int, default=2000)
    parser.add_argument("--experiments", type=int, default=30)
    options = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="mrunner-guard-bench-"))
    os.environ["XDG_DATA_HOME"] = str(base / "home")
    from mrunner import codeview

    load = os.getloadavg()
    project = base / "project"
    project.mkdir()
    make_project(project, options.files)
    mountable = codeview.available(str(project), str(base))
    rows: dict[str, tuple[str, list[float]]] = {}

    def add(name: str, when: str, value: float) -> None:
        rows.setdefault(name, (when, []))[1].append(value)

    for round_ in range(3):
        measure(base / f"store-{round_}", base / f"storage-{round_}", project, options.experiments, mountable, add)
    for fake in ([False] if mountable else []) + [True]:
        name = "watched" if fake else "view"
        wall = end_to_end(base, project, options.experiments, fake)
        add(
            f"{name}: `mrunner exp.py -m i=range({options.experiments})`, whole command, new code", "per sweep", wall[0]
        )
        add(f"{name}: the same sweep again (code frozen and watched before)", "per sweep", wall[1])
    shutil.rmtree(base, ignore_errors=True)
    lines = [
        "# Keeping experiments from changing the code snapshot: cost per sweep and per experiment",
        "",
        f"Produced by `uv run --no-sync python benchmarks/snapshot_guard.py --files {options.files} --experiments "
        f"{options.experiments}` on {time.strftime('%Y-%m-%d %H:%M')} UTC, {os.cpu_count()} CPUs (shared), Python "
        f"{platform.python_version()}, Linux {platform.release()}, {_filesystem(base.parent)}, as "
        f"{'root' if os.geteuid() == 0 else 'a user'}, load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f} at the "
        f"start; a project of {options.files} files of 2 KiB in 40 folders; best of 3 rounds (per experiment: the "
        f"median over {options.experiments} experiments). The copy-on-write view "
        f"{'was' if mountable else 'could not be'} mounted here.",
        "",
        "| step | when | time |",
        "|---|---|---|",
    ]
    for name, (when, values) in rows.items():
        lines.append(f"| {name} | {when} | {min(values) * 1000:.1f} ms |")
    lines += [
        "",
        "With the view, an experiment's folder holds only what the experiment wrote (a file it changed is copied",
        "into it on the first write, the file alone): no link and no copy per file of the project, and nothing is",
        "left mounted when the attempt ends (its mount namespace ends with it). The watch keeps one more copy of",
        "the tree per code digest (not per experiment or sweep) and costs a stat of every entry before each",
        "experiment, plus a link per file in each experiment's folder. The whole-command rows are one run each",
        "(a sweep of its own data folder, `max_parallel` the CPUs): on a shared machine they move with its load.",
        "",
    ]
    RESULTS.write_text("\n".join(lines))
    sys.stdout.write("\n".join(lines))


def end_to_end(base: Path, project: Path, count: int, fake: bool) -> tuple[float, float]:
    """Wall seconds of a whole local sweep of ``count`` experiments of the project, run twice (the second
    with a new tag, so the same code), in a data folder of its own."""
    import subprocess

    home = base / ("home-watched" if fake else "home-view")
    environ = {**os.environ, "XDG_DATA_HOME": str(home), "XDG_CONFIG_HOME": str(home / "config")}
    environ.pop(FAKE, None)
    if fake:
        environ[FAKE] = "1"
    walls = []
    for tag in ("first", "second"):
        command = [sys.executable, "-m", "mrunner", "exp.py", "-m", f"i=range({count})", f"+tag={tag}"]
        start = time.perf_counter()
        done = subprocess.run(command, cwd=project, env=environ, capture_output=True, text=True)
        walls.append(time.perf_counter() - start)
        if done.returncode != 0:
            raise SystemExit(f"the sweep failed: {done.stderr}")
    return walls[0], walls[1]


def measure(
    store: Path,
    storage: Path,
    project: Path,
    count: int,
    mountable: bool,
    add: Callable[[str, str, float], None],
) -> None:
    """One round: freeze the project in ``store``, lay out ``count`` experiments below ``storage``."""
    from mrunner import codeview, layout, snapshot, treeguard

    sweep, experiment = "per sweep", "per experiment"
    frozen = snapshot.take(project, store=store)
    add("freeze: copy the tree (as before)", "per sweep of new code", timed(frozen.folder))
    tree = str(frozen.tree)
    storage.mkdir()
    entries = layout.working_entries(frozen.files)
    linked = [layout.Layout(str(storage), "bench", "s", i, "exp") for i in range(count)]
    add(
        "links per top-level entry, no guard (before)",
        experiment,
        statistics.median(timed(lambda w=w: layout.prepare(w, tree, entries)) for w in linked),
    )
    if mountable:
        add(
            "view: may this machine mount? (`codeview.available`)",
            sweep,
            timed(lambda: codeview.available(tree, str(storage))),
        )
        views = [layout.Layout(str(storage / "view"), "bench", "s", i, "exp") for i in range(count)]
        folders = layout.real_folders(entries)

        def mount(where: layout.Layout) -> None:
            layout.prepare(where, tree, folders)
            codeview.mount(tree, where.experiment_dir, where.view_work_dir)

        bare = statistics.median(in_child(lambda w=w: layout.prepare(w, tree, folders)) for w in views)
        mounted = statistics.median(in_child(lambda w=w: mount(w)) for w in views)
        add("view: a process that lays out the folder, no mount (baseline)", experiment, bare)
        add("view: a process that lays out the folder and mounts the view", experiment, mounted)
        add("view: the mount alone (the difference)", experiment, mounted - bare)
    add(
        "watched: pristine copy, hashes and stat record (`treeguard.watch`)",
        "per sweep of new code",
        timed(lambda: treeguard.watch(frozen.tree, frozen.files, frozen.copy_file)),
    )
    mirror = layout.working_entries(frozen.files, mirror=True)
    mirrored = [layout.Layout(str(storage / "mirror"), "bench", "s", i, "exp") for i in range(count)]
    add(
        "watched: real folders and a link per file",
        experiment,
        statistics.median(timed(lambda w=w: layout.prepare(w, tree, mirror)) for w in mirrored),
    )
    add(
        "watched: the check before each experiment",
        experiment,
        statistics.median(timed(lambda: treeguard.check(frozen.tree, "s")) for _ in range(count)),
    )
    with open(frozen.tree / "exp.py", "a") as script:
        script.write("# damaged")
    os.remove(frozen.tree / "data" / "part01" / "f00001.txt")
    add(
        "watched: a check that finds 2 damaged files and restores them",
        "after an experiment damaged it",
        timed(lambda: treeguard.check(frozen.tree, "s")),
    )
    for folder in (store, storage):
        for inner, _, _ in os.walk(folder):
            os.chmod(inner, 0o755)
        shutil.rmtree(folder)


def _filesystem(folder: Path) -> str:
    import subprocess

    done = subprocess.run(["df", "-T", str(folder)], capture_output=True, text=True)
    kind = done.stdout.splitlines()[-1].split()[1] if done.returncode == 0 else "unknown file system"
    return f"{kind} ({folder})"


if __name__ == "__main__":
    main()
