"""`mrunner pull` benchmark on the loopback Slurm cluster (tests/services/slurm), side by side in one run.

    .venv/bin/python benchmarks/slurm_pull.py [--repeat 3] [--experiments 1000]

A real sweep of 1,000 experiments is submitted held (`--hold`, so no task starts and loads the machine) and
cancelled; its experiments' folders are then written on the cluster's side where the layout puts them:
10 small files each (text: metrics, a log, a config, some in nested folders; 0.1-4 KB) and one 1 MB file
of random bytes (a checkpoint-like file, incompressible), plus the link to the code every real experiment
folder has. Then, round by round, the ways take turns going first, each into a fresh folder:
- bare limit: `ssh HOST 'cd SWEEP && tar cz EXPERIMENT-FOLDERS' | tar xz` (OpenSSH, gzip's default level);
- the same uncompressed (`tar c | tar x`): on a loopback "network" the true floor;
- rsync over ssh: `rsync -az` of the same folders (an include filter: only the experiment folders);
- mrunner: `mrunner pull SWEEP --to DIR` (the real CLI), then the same command again (unchanged results),
  and, for comparison, rsync's second run too.
Every pulled tree is checked against what was written (file count and bytes), then removed. The pulls land
in a tmpfs (``--dest``, default /dev/shm): on this shared machine a gigabyte written to disk per pull soon
has the kernel throttling every writer while dirty pages are written back (a pull's writes took 1 s or 5.6 s
depending on what came before), and ext4 creates files much slower for minutes after many deletions (see
results-slurm.md). The cluster's side reads from its disk (the page cache, after the first round).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import slurm_dispatch  # this folder is the script's first path entry
from slurm_dispatch import context

SERVICE = json.loads(Path(os.environ.get("MRUNNER_SERVICES_DIR", "/tmp/mrunner-services"), "slurm.json").read_text())
PYTHON = sys.executable
SSH = ["ssh", "-F", SERVICE["ssh_config"], SERVICE["alias"]]
TRAIN = "import os\nopen(os.path.join(os.environ['MRUNNER_EXPERIMENT_DIR'], 'done'), 'w').close()\n"

# Written on the cluster: argv = the experiment folders' JSON file; prints files and bytes written.
WRITER = r"""
import json, os, random, sys
folders = json.load(open(sys.argv[1]))
code = sys.argv[2]
files = size = 0
rng = random.Random(7)
words = ["loss", "accuracy", "epoch", "step", "lr", "grad_norm", "val", "train", "seed", "time"]
for k, folder in enumerate(folders):
    os.makedirs(os.path.join(folder, "outputs", "eval"), exist_ok=True)
    os.symlink(os.path.join(code, "train.py"), os.path.join(folder, "train.py"))
    names = ["metrics.json", "log.txt", "params.yaml", "summary.txt", "outputs/history.csv", "outputs/notes.md",
             "outputs/eval/scores.json", "outputs/eval/confusion.txt", "outputs/eval/report.txt", "done"]
    for name in names:
        length = rng.randint(100, 4000)
        text = " ".join("%s=%.5f" % (rng.choice(words), rng.random()) for _ in range(length // 14))
        data = (text + "\n").encode()[:length]
        with open(os.path.join(folder, name), "wb") as out:
            out.write(data)
        files += 1
        size += len(data)
    with open(os.path.join(folder, "outputs", "model.bin"), "wb") as out:
        out.write(os.urandom(1 << 20))
    files += 1
    size += 1 << 20
print(json.dumps({"files": files, "bytes": size}))
"""


def ssh(command: str, stdin: str | None = None) -> str:
    return subprocess.run(SSH + [command], input=stdin, capture_output=True, text=True, check=True).stdout


def env_for(home: Path) -> dict:
    return slurm_dispatch.env_for(home)  # the same runtime folder as `context` logs in with


def mrunner(home: Path, cwd: Path, *argv: str) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [PYTHON, "-m", "mrunner", *argv], cwd=cwd, env=env_for(home), capture_output=True, text=True
    )
    if result.returncode:
        raise SystemExit(f"mrunner {' '.join(argv)} failed: {result.stderr}")
    return result


def make_sweep(home: Path, project: Path, storage: str, count: int) -> tuple[str, str, list[str], str]:
    """Submit held, cancel; returns sweep id, sweep folder, experiment folders, code folder."""
    context(home, storage)  # the dispatch benchmark's held-array context, `bench`
    project.mkdir(parents=True, exist_ok=True)
    (project / "train.py").write_text(TRAIN)
    sweep = mrunner(home, project, "+context=bench", "train.py", "-m", f"seed=range({count})").stdout.split()[-1]
    sweep = sweep.strip()
    document = json.loads(mrunner(home, project, "status", sweep, "--json").stdout)
    mrunner(home, project, "cancel", sweep)
    dirs = [row["output_dir"].split(":", 1)[1] for row in document["experiments"]]
    return sweep, os.path.dirname(dirs[0]), dirs, document["sweep"]["package"]["code_dir"]


def write_results(dirs: list[str], code_dir: str) -> dict:
    listing = f"/tmp/mrunner-bench-pull-{uuid.uuid4().hex[:8]}.json"
    ssh(f"cat > {shlex.quote(listing)}", json.dumps(dirs))
    written = json.loads(ssh(f"python3 - {shlex.quote(listing)} {shlex.quote(code_dir)}", WRITER))
    ssh(f"rm -f {shlex.quote(listing)}")
    return written


def tree(folder: Path) -> tuple[int, int]:
    """Regular files and their bytes below ``folder`` (links left out, as mrunner leaves them out)."""
    files = size = 0
    for directory, _, names in os.walk(folder):
        for name in names:
            path = os.path.join(directory, name)
            if not os.path.islink(path):
                files += 1
                size += os.lstat(path).st_size
    return files, size


def inodes(folder: Path) -> dict[str, tuple[int, int]]:
    return {
        os.path.join(directory, name): (info.st_ino, info.st_mtime_ns)
        for directory, _, names in os.walk(folder)
        for name in names
        for info in [os.lstat(os.path.join(directory, name))]
    }


def timed(argv: list[str] | str, **kwargs) -> float:
    started = time.perf_counter()
    result = subprocess.run(argv, capture_output=True, text=True, **kwargs)
    elapsed = time.perf_counter() - started
    if result.returncode:
        raise SystemExit(f"{argv} failed: {result.stderr[-1000:]}")
    return elapsed


def bare(sweep_dir: str, target: Path, compress: bool = True) -> float:
    target.mkdir(parents=True)
    z = "z" if compress else ""
    remote = f"cd {shlex.quote(sweep_dir)} && tar c{z} [0-9]*-*"
    return timed(f"{shlex.join(SSH)} {shlex.quote(remote)} | tar x{z} -C {shlex.quote(str(target))}", shell=True)


def rsync(sweep_dir: str, target: Path) -> float:
    target.mkdir(parents=True, exist_ok=True)
    shell = shlex.join(["ssh", "-F", SERVICE["ssh_config"]])
    argv = [
        "rsync",
        "-az",
        "-e",
        shell,
        "--include=/[0-9]*-*/***",
        "--exclude=*",
        f"{SERVICE['alias']}:{sweep_dir}/",
        f"{target}/",
    ]
    return timed(argv)


def pull(home: Path, project: Path, sweep: str, target: Path) -> float:
    return timed([PYTHON, "-m", "mrunner", "pull", sweep, "--to", str(target)], cwd=project, env=env_for(home))


def summary(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--experiments", type=int, default=1000)
    parser.add_argument("--dest", default="/dev/shm", help="where the pulled trees land (one at a time)")
    parser.add_argument("--ssh", choices=["openssh", "paramiko"], help="the context's transport")
    parser.add_argument("--login", action="store_true", help="pull through a `mrunner login` master")
    options = parser.parse_args()
    slurm_dispatch.TRANSPORT.update({"ssh": options.ssh} if options.ssh else {})
    slurm_dispatch.LOGIN[0] = options.login
    sources = [Path(__file__).parent.parent / "mrunner", *Path(__file__).parent.parent.glob("plugins/*/mrunner_*")]
    subprocess.run([PYTHON, "-m", "compileall", "-q", *map(str, sources)], check=True, stdout=subprocess.DEVNULL)
    load_start = os.getloadavg()
    loads: list[float] = []  # the 1-minute load average as each round starts
    rows: dict[str, list[float]] = {
        "bare": [],
        "tar_uncompressed": [],
        "rsync": [],
        "mrunner": [],
        "mrunner_again": [],
        "rsync_again": [],
    }
    storage = f"{SERVICE['storage_dir']}/bench-pull-{uuid.uuid4().hex[:8]}"
    with tempfile.TemporaryDirectory() as temporary, tempfile.TemporaryDirectory(dir=options.dest) as landing:
        workdir, pulls = Path(temporary), Path(landing)
        home, project = workdir / "home", workdir / "project"
        sweep, sweep_dir, dirs, code_dir = make_sweep(home, project, storage, options.experiments)
        written = write_results(dirs, code_dir)
        print(f"sweep {sweep}: wrote {written['files']} files, {written['bytes']} bytes", file=sys.stderr)
        for round_ in range(options.repeat):
            loads.append(os.getloadavg()[0])
            ways = ["bare", "tar_uncompressed", "rsync", "mrunner"]
            order = ways[round_ % 4 :] + ways[: round_ % 4]  # each way goes first in turn
            for way in order:
                target = pulls / f"{way}{round_}"
                if way == "bare":
                    rows["bare"].append(bare(sweep_dir, target))
                elif way == "tar_uncompressed":
                    rows[way].append(bare(sweep_dir, target, compress=False))
                elif way == "rsync":
                    rows["rsync"].append(rsync(sweep_dir, target))
                    rows["rsync_again"].append(rsync(sweep_dir, target))
                else:
                    rows["mrunner"].append(pull(home, project, sweep, target))
                    first = inodes(target)
                    rows["mrunner_again"].append(pull(home, project, sweep, target))
                    if inodes(target) != first:
                        raise SystemExit("the second pull rewrote files")
                found = tree(target)
                if found != (written["files"], written["bytes"]):
                    raise SystemExit(f"{way} pulled {found}, expected {written['files']} files, {written['bytes']} B")
                shutil.rmtree(target)
            print(f"round {round_}: " + ", ".join(f"{k} {v[-1]:.2f}s" for k, v in rows.items()), file=sys.stderr)
    ssh(f"chmod -R u+w {shlex.quote(storage)} && rm -rf {shlex.quote(storage)}")
    medians = {k: statistics.median(v) for k, v in rows.items()}
    rounds = range(len(rows["mrunner"]))  # ratios within a round: its ways ran minutes apart at most
    per_round = {
        "mrunner_vs_bare": [rows["mrunner"][i] / rows["bare"][i] for i in rounds],
        "mrunner_vs_tar_uncompressed": [rows["mrunner"][i] / rows["tar_uncompressed"][i] for i in rounds],
        "rsync_vs_tar_uncompressed": [rows["rsync"][i] / rows["tar_uncompressed"][i] for i in rounds],
        "second_pull_vs_first": [rows["mrunner_again"][i] / rows["mrunner"][i] for i in rounds],
        "rsync_second_vs_first": [rows["rsync_again"][i] / rows["rsync"][i] for i in rounds],
    }
    slurm_dispatch.logout(home)
    report = {
        "transport": options.ssh or "default",
        "login": options.login,
        "load_average": {"start": load_start, "end": os.getloadavg(), "rounds": loads},
        "written": written,
        "seconds": {k: summary(v) for k, v in rows.items()},
        "mrunner_vs_bare": medians["mrunner"] / medians["bare"],
        "rsync_vs_bare": medians["rsync"] / medians["bare"],
        "mrunner_vs_tar_uncompressed": medians["mrunner"] / medians["tar_uncompressed"],
        "second_pull_vs_first": medians["mrunner_again"] / medians["mrunner"],
        "per_round": {k: {"median": statistics.median(v), "all": v} for k, v in per_round.items()},
    }
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
