"""What keeping experiments from changing the code snapshot costs, per sweep and per experiment, on a
2,000-file project; writes benchmarks/results-snapshot-guard.md.

    uv run --no-sync python benchmarks/snapshot_guard.py [--files 2000] [--experiments 30] [--slurm]

Per sweep: freezing the tree (once per code digest, as before, for scale), then either the check that this
machine may mount a copy-on-write view (``mrunner.codeview.available``, every sweep) or, where it may not,
the watch's pristine copy and stat record (``mrunner.treeguard.watch``, once per code digest). Per experiment:
laying out its folder and, with the view, starting a process that mounts it (against one that does not:
the difference is the mount's cost, its namespace's end included); with the watch, the mirror (a link per
file) and the check before each experiment, and the restore after an experiment damaged the tree. Best of
3 rounds; per experiment, the median over the experiments.

With ``--slurm``, the cluster side on the loopback test cluster (tests/services/slurm, as its user, who may
not mount: the watched copy), written as its own section of the results: the upload of new code (as before),
the watched copy of the code folder (``treeguard.watch_copy``, once per code digest, by the first job), the
check a later sweep's upload makes, and per experiment the layout (links per top-level entry into the code
folder before, into the watched copy now; a link per file for a root job), the check, and the attempt wrapper as a process around ``true``, as a
batch script starts it, before and now.
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
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results-snapshot-guard.md"
SLURM_SECTION = "## On Slurm"
#: The section benchmarks/view_renames.py writes, last in the results: kept by both runs of this one.
RENAMES_SECTION = "## Renaming folders of the code under the view"
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
    parser.add_argument("--slurm", action="store_true", help="the cluster side, on the loopback test cluster")
    options = parser.parse_args()
    if options.slurm:
        return on_slurm(options.files, options.experiments)
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
    earlier = RESULTS.read_text() if RESULTS.exists() else ""
    kept = earlier[earlier.index(SLURM_SECTION) :] if SLURM_SECTION in earlier else ""
    RESULTS.write_text("\n".join(lines) + ("\n" + kept if kept else ""))
    sys.stdout.write("\n".join(lines))


# Run on the cluster by `python3 - ARGS` (standard library and mrunner's experiment side only).
ON_CLUSTER = """
import json, os, shutil, statistics, subprocess, sys, time
from pathlib import Path
args = json.loads(sys.argv[1])
sys.path.insert(0, args["client"])
from mrunner import layout, treeguard

code, watched, storage, count = args["code"], Path(args["watched"]), args["storage"], args["count"]
rows = {}

def timed(action):
    start = time.perf_counter()
    action()
    return time.perf_counter() - start

def fresh(path):
    for folder, _, _ in os.walk(path):
        os.chmod(folder, 0o755)
    shutil.rmtree(path, ignore_errors=True)

copies = []
for _ in range(3):
    fresh(watched)
    fresh(treeguard.guard_dir(watched))
    copies.append(timed(lambda: treeguard.watch_copy(watched, Path(code))))
rows["copy"] = min(copies)
rows["check"] = statistics.median(timed(lambda: treeguard.check(watched, "s")) for _ in range(count))

def places(kind):
    return [layout.Layout(storage + "/" + kind, "bench", "s", i, "exp") for i in range(count)]

rows["links"] = statistics.median(timed(lambda w=w: layout.prepare(w, code, args["links"])) for w in places("links"))
rows["links now"] = statistics.median(
    timed(lambda w=w: layout.prepare(w, str(watched), args["links"])) for w in places("links-now")
)
rows["mirror"] = statistics.median(
    timed(lambda w=w: layout.prepare(w, str(watched), args["mirror"])) for w in places("mirror")
)

def wrapper(where, entries, extra):
    environ = {**os.environ, **where.environment(), "PYTHONPATH": args["client"]}
    argv = [sys.executable, "-m", "mrunner.attempt", "--code", code, "--entries", json.dumps(entries), *extra]
    subprocess.run([*argv, "--grace", "5", "--", "true"], env=environ, check=True)

rows["wrapper before"] = statistics.median(
    timed(lambda w=w: wrapper(w, args["links"], [])) for w in places("before")
)
rows["wrapper now"] = statistics.median(
    timed(lambda w=w: wrapper(w, args["mirror"], ["--view", "--watch", str(watched)])) for w in places("now")
)
script, data = watched / "exp.py", watched / "data" / "part01"
os.chmod(script, 0o644)
with open(script, "a") as stream:
    stream.write("# damaged")
os.chmod(data, 0o755)
os.remove(data / "f00001.txt")
rows["restore"] = timed(lambda: treeguard.check(watched, "s"))
print(json.dumps(rows))
"""


def on_slurm(files: int, count: int) -> None:
    """The cluster side on the loopback test cluster; writes its section of the results."""
    import shlex
    import subprocess
    import uuid

    from mrunner_slurm import deploy, remote, transport
    from mrunner_slurm.batch import watched_dir

    from mrunner import layout, snapshot
    from mrunner.reporter import Reporter
    from mrunner.runtime import experiment_side_files

    service = json.loads(Path("/tmp/mrunner-services/slurm.json").read_text())
    storage = f"{service['storage_dir']}/bench-guard-{uuid.uuid4().hex[:8]}"
    context = {"slurm_url": service["alias"], "ssh_config": service["ssh_config"]}
    ssh = ["ssh", "-F", service["ssh_config"], service["alias"]]
    base = Path(tempfile.mkdtemp(prefix="mrunner-guard-bench-"))
    os.environ["XDG_DATA_HOME"] = str(base / "home")
    load = os.getloadavg()
    try:
        project = base / "project"
        project.mkdir()
        make_project(project, files)
        frozen = snapshot.take(project, store=base / "store")
        connection = transport.connection(context)
        quiet = Reporter(quiet=True)
        upload = timed(lambda: deploy.deploy(connection, storage, frozen, quiet))
        facts = deploy.deploy(connection, storage, frozen, quiet)
        client = f"{facts['storage_dir']}/.mrunner/client/bench"
        side = {f"{client}/{name}": [data.decode(), 0o644] for name, data in experiment_side_files().items()}
        remote.call(connection, ["prepare"], remote.pack({"files": side}))
        args = {
            "code": facts["code_dir"],
            "watched": watched_dir(facts["code_dir"]),
            "storage": facts["storage_dir"],
            "client": client,
            "count": count,
            "links": layout.working_entries(frozen.files),
            "mirror": layout.working_entries(frozen.files, mirror=True),
        }
        done = subprocess.run(
            [*ssh, f"python3 - {shlex.quote(json.dumps(args))}"], input=ON_CLUSTER, capture_output=True, text=True
        )
        if done.returncode:
            raise SystemExit(f"the cluster side failed: {done.stderr}")
        rows = json.loads(done.stdout.strip().splitlines()[-1])
        reuse = min(timed(lambda: deploy.deploy(connection, storage, frozen, quiet)) for _ in range(5))
        checked = min(timed(lambda: deploy.deploy(connection, storage, frozen, quiet, "s2")) for _ in range(5))
    finally:
        subprocess.run([*ssh, f"chmod -R u+w {storage}; rm -rf {storage}"], capture_output=True)
        shutil.rmtree(base, ignore_errors=True)
    table = [
        (
            "upload of new code: the code folder of hard links into the store (as before)",
            "per sweep of new code",
            upload,
        ),
        (
            "the watched copy of the code folder and its stat record (first job without a view)",
            "per sweep of new code",
            rows["copy"],
        ),
        ("a later sweep's upload of the same code, without the check (before)", "per sweep", reuse),
        ("the same with the check of the watched copy (`begin`)", "per sweep", checked),
        ("links per top-level entry into the code folder (before)", "per experiment", rows["links"]),
        ("links per top-level entry into the watched copy (now, a user's job)", "per experiment", rows["links now"]),
        ("real folders and a link per file into it (a root job that cannot mount)", "per experiment", rows["mirror"]),
        ("the check before each experiment", "per experiment", rows["check"]),
        ("a check that finds 2 damaged files and restores them", "after an experiment damaged it", rows["restore"]),
        ("the attempt wrapper around `true`, links (before)", "per experiment", rows["wrapper before"]),
        (
            "the attempt wrapper around `true`, `--view --watch` (now: the watched copy)",
            "per experiment",
            rows["wrapper now"],
        ),
    ]
    lines = [
        SLURM_SECTION,
        "",
        f"Produced by `uv run --no-sync python benchmarks/snapshot_guard.py --slurm --files {files} --experiments "
        f"{count}` on {time.strftime('%Y-%m-%d %H:%M')} UTC against the loopback test cluster (tests/services/slurm, "
        f"on this machine: {os.cpu_count()} CPUs shared, load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f} at "
        f"the start), as its user `{service['user']}`, who may not mount: jobs link to the watched copy. Per sweep: "
        "best of 3 (uploads: of 5); per experiment: the median over the experiments.",
        "",
        "| step | when | time |",
        "|---|---|---|",
        *(f"| {name} | {when} | {value * 1000:.1f} ms |" for name, when, value in table),
        "",
        "A job that may mount (root) lays the copy-on-write view over its folder instead, as the local backend",
        "does (the table above: the mount's cost), and makes no watched copy. Either way the code folder, whose",
        "files are the store's, is never reached through an experiment's links, and nothing is copied per",
        "experiment: the watched copy is one per code digest, made by the first job that needs it.",
        "",
    ]
    earlier = RESULTS.read_text() if RESULTS.exists() else ""
    head = earlier[: earlier.index(SLURM_SECTION)] if SLURM_SECTION in earlier else earlier + "\n"
    tail = earlier[earlier.index(RENAMES_SECTION) :] if RENAMES_SECTION in earlier else ""
    RESULTS.write_text(head + "\n".join(lines) + ("\n" + tail if tail else ""))
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
