"""What guarding the code snapshot costs, per sweep and per experiment, on a 2,000-file project; writes
benchmarks/results-snapshot-guard.md.

    uv run --no-sync python benchmarks/snapshot_guard.py [--files 2000] [--experiments 50]

Per sweep (once per code digest): freezing the tree (the copy mrunner made before) plus the guard: the
immutable flag on every entry (*sealed*), or a stat record and a pristine copy (*watched*, where the flag
cannot be set). Per experiment: laying out its folder (real folders and a link per file, against the former
link per top-level entry) and the guard's check before it starts (sealed: one flag read; watched: a stat of
every entry), and restoring a tree an experiment damaged. Best of 3 rounds, medians over the experiments.
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
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results-snapshot-guard.md"


def make_project(root: Path, files: int) -> None:
    """``files`` files of 2 KiB: a script, 40 folders of data and configs, two levels deep."""
    (root / "exp.py").write_text("print('hi')\n")
    for index in range(files - 1):
        folder = root / ("data" if index % 2 else "conf") / f"part{index % 20:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"f{index:05d}.txt").write_bytes(os.urandom(1024).hex().encode())


def timed(action) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def freeze(snapshot_module, project: Path, store: Path, fake_no_flag: bool) -> tuple[float, float, Path]:
    """(seconds to copy the tree, seconds to guard it, the tree)."""
    from mrunner import treeguard

    if fake_no_flag:
        os.environ[treeguard.FAKE_NO_FLAG] = "1"
    else:
        os.environ.pop(treeguard.FAKE_NO_FLAG, None)
    frozen = snapshot_module.take(project, store=store)
    copy = timed(lambda: snapshot_module._build_tree(frozen, frozen.tree.parent))
    guard = timed(lambda: treeguard.protect(frozen.tree))
    return copy, guard, frozen.tree


def per_experiment(tree: Path, entries: list[str], storage: Path, count: int) -> list[float]:
    from mrunner import layout

    times = []
    for index in range(count):
        where = layout.Layout(str(storage), "bench", "s", index, "exp")
        times.append(timed(lambda w=where: layout.prepare(w, str(tree), entries)))
    return times


def checks(tree: Path, count: int) -> list[float]:
    from mrunner import treeguard

    return [timed(lambda: treeguard.check(tree, "sweep")) for _ in range(count)]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--files", type=int, default=2000)
    parser.add_argument("--experiments", type=int, default=50)
    options = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="mrunner-guard-bench-"))
    os.environ.pop("MRUNNER_FAKE_NO_IMMUTABLE", None)
    os.environ["XDG_DATA_HOME"] = str(base / "home")
    from mrunner import layout, snapshot, treeguard

    project = base / "project"
    project.mkdir()
    make_project(project, options.files)
    rows: dict[str, list[float]] = {}
    for round_ in range(3):
        for kind, fake in (("sealed", False), ("watched", True)):
            store = base / f"store-{kind}-{round_}"
            copy, guard, tree = freeze(snapshot, project, store, fake)
            rows.setdefault("freeze: copy the tree (as before)", []).append(copy)
            rows.setdefault(f"freeze: guard it, {kind}", []).append(guard)
            files = snapshot.load(tree.name, store=store).files
            mirror = layout.working_entries(files, mirror=True)
            linked = [entry.replace("m ", "l ", 1) for entry in mirror]  # the former link per top-level entry
            storage = base / f"storage-{kind}-{round_}"
            before = per_experiment(tree, linked, storage / "linked", options.experiments)
            after = per_experiment(tree, mirror, storage / "mirror", options.experiments)
            rows.setdefault("experiment folder: a link per top-level entry (before)", []).append(
                statistics.median(before)
            )
            rows.setdefault("experiment folder: real folders, a link per file (now)", []).append(
                statistics.median(after)
            )
            rows.setdefault(f"check before each experiment, {kind}", []).append(
                statistics.median(checks(tree, options.experiments))
            )
            if kind == "watched":
                (tree / "exp.py").write_text("damaged")
                os.remove(tree / "data" / "part01" / "f00001.txt")
                rows.setdefault("check that finds 2 damaged files and restores them, watched", []).append(
                    timed(lambda t=tree: treeguard.check(t, "sweep"))
                )
            treeguard.unseal(tree)
            for root in (store, storage):
                for inner, _, _ in os.walk(root):
                    os.chmod(inner, 0o755)
                shutil.rmtree(root)
    mirror_dir, tree = _one_mirror(base, project)
    inodes = sum(len(d) + len(f) for _, d, f in os.walk(mirror_dir))
    treeguard.unseal(tree)
    shutil.rmtree(base, ignore_errors=True)
    load = os.getloadavg()[0]
    lines = [
        "# Guarding the code snapshot: cost per sweep and per experiment",
        "",
        f"Produced by `uv run --no-sync python benchmarks/snapshot_guard.py --files {options.files} "
        f"--experiments {options.experiments}` on {time.strftime('%Y-%m-%d')}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}, {_filesystem()}, as {'root' if os.geteuid() == 0 else 'a user'}, "
        f"load average {load:.1f}; a project of {options.files} files of 2 KiB in 40 folders; best of 3 rounds "
        f"(per experiment: the median over {options.experiments} experiments).",
        "",
        "| step | when | time |",
        "|---|---|---|",
    ]
    for name, values in rows.items():
        when = "per sweep of new code" if name.startswith("freeze") else "per experiment"
        if name.startswith("check that finds"):
            when = "when an experiment damaged the tree"
        lines.append(f"| {name} | {when} | {min(values) * 1000:.1f} ms |")
    lines += [
        "",
        f"An experiment's folder now holds {inodes} entries (folders and links) for this project, against "
        f"3 with a link per top-level entry: links, never a copy of the files' content. The watched guard keeps "
        f"one more copy of the tree per code digest (not per experiment or sweep).",
        "",
    ]
    RESULTS.write_text("\n".join(lines))
    sys.stdout.write("\n".join(lines))


def _one_mirror(base: Path, project: Path) -> tuple[Path, Path]:
    """An experiment's folder laid out as mrunner does now, and the tree it links to."""
    from mrunner import layout, snapshot

    store = base / "store-count"
    frozen = snapshot.take(project, store=store)
    tree = frozen.folder()
    where = layout.Layout(str(base / "count"), "bench", "s", 0, "exp")
    return Path(layout.prepare(where, str(tree), layout.working_entries(frozen.files, mirror=True))), tree


def _filesystem() -> str:
    import subprocess

    done = subprocess.run(["df", "-T", tempfile.gettempdir()], capture_output=True, text=True)
    kind = done.stdout.splitlines()[-1].split()[1] if done.returncode == 0 else "unknown file system"
    return f"{kind} ({tempfile.gettempdir()})"


if __name__ == "__main__":
    main()
