"""Slurm backend benchmarks on the loopback cluster (tests/services/slurm), side by side in one run.

    .venv/bin/python benchmarks/slurm_dispatch.py [--repeat 3] [--skip-single] [--ssh openssh|paramiko] [--login]
    .venv/bin/python benchmarks/slurm_dispatch.py --transports openssh+login,openssh,paramiko

`--ssh` is the context's transport (default: the context's default, OpenSSH where installed); `--login` runs
`mrunner login bench` before each measured command (not timed), so OpenSSH goes through that master.
`--transports` measures mrunner once per listed transport in every round, side by side with the other ways
(`+login`: through a `mrunner login` master).

1. Dispatching 1,000 experiments of a 2,000-file project (code not yet on the cluster), wall time from
   process start to return:
   - mrunner: `mrunner +context=bench train.py -m seed=range(1000)` (the real CLI);
   - the bare limit: one process that imports paramiko, connects, streams one tar.gz of the code and
     1,000 task configs into `tar -x`, then runs one `sbatch --array=0-999`;
   - one `sbatch` per experiment over one connection (TCP_NODELAY set);
   - submitit's `map_array` of 1,000 tasks, run as mrtest on the cluster host (no code deploy).
2. Re-dispatch after changing one file of the project: bytes sent against the first dispatch.
3. `mrunner status` of the 1,000-experiment sweep: remote calls and wall time.
Every way submits its arrays held (`--hold`, for mrunner through the context's `sbatch_options`), so no
task starts and loads the machine while the others are measured; every array is cancelled afterwards (cancelled arrays count against MaxJobCount for MinJobAge).
The file system matters: ext4 creates a file 20x slower for ~5 minutes after many deletions (it skips
recently deleted inodes one by one), so do not start this right after removing many files. The ways take
turns going first, round by round; mrunner's own sources are compiled to bytecode first
(as an installed package is), since this machine sets PYTHONDONTWRITEBYTECODE=1.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

SERVICE = json.loads(Path(os.environ.get("MRUNNER_SERVICES_DIR", "/tmp/mrunner-services"), "slurm.json").read_text())
PYTHON = sys.executable
COUNT = 1000
FILES = 2000
PAUSE = 4.0  # seconds between dispatches: slurmctld is still busy with the 1,000 tasks just cancelled
TRANSPORT: dict[str, str] = {}  # the context's `ssh` key, from --ssh
LOGIN = [False]  # --login: a `mrunner login` master is open while mrunner is measured
TRAIN = "import os\nopen(os.path.join(os.environ['MRUNNER_EXPERIMENT_DIR'], 'done'), 'w').close()\n"


def ssh(command: str) -> str:
    return subprocess.run(
        ["ssh", "-F", SERVICE["ssh_config"], SERVICE["alias"], command], capture_output=True, text=True, check=True
    ).stdout


def make_project(root: Path) -> None:
    for i in range(FILES - 1):
        path = root / f"pkg{i % 40}" / f"module_{i}.py"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(
            f'"""Module {i}."""\n\n' + "".join(f"VALUE_{j} = {i * j} + {uuid.uuid4().int % 997}\n" for j in range(12))
        )
    (root / "train.py").write_text(TRAIN)


def context(home: Path, storage: str) -> None:
    folder = home / "config" / "mrunner" / "context"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "bench.yaml").write_text(
        json.dumps(
            {
                "backend": "slurm",
                "slurm_url": SERVICE["alias"],
                "ssh_config": SERVICE["ssh_config"],
                "storage_dir": storage,
                "partition": SERVICE["partition"],
                "time": 5,
                "sbatch_options": ["--hold"],
                **TRANSPORT,
            }
        )
    )
    if LOGIN[0]:
        subprocess.run(
            [PYTHON, "-m", "mrunner", "login", "bench"],
            env=env_for(home),
            check=True,
            capture_output=True,
            stdin=subprocess.DEVNULL,
        )


def logout(home: Path) -> None:
    if LOGIN[0]:
        subprocess.run([PYTHON, "-m", "mrunner", "logout", "bench"], env=env_for(home), capture_output=True)


def env_for(home: Path) -> dict:
    runtime = Path("/tmp") / f"mrb-{abs(hash(str(home))) % 10**8}"  # short: it holds sockets
    runtime.mkdir(mode=0o700, exist_ok=True)
    return {
        **os.environ,
        "XDG_CONFIG_HOME": str(home / "config"),
        "XDG_DATA_HOME": str(home / "data"),
        "XDG_RUNTIME_DIR": str(runtime),
    }


def timed(argv: list[str], cwd: Path, env: dict | None = None) -> tuple[float, subprocess.CompletedProcess]:
    started = time.perf_counter()
    result = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    if result.returncode:
        raise SystemExit(f"{argv[:4]} failed: {result.stderr}")
    return elapsed, result


def cancel_jobs(ids: set[str]) -> None:
    if ids:
        ssh("scancel " + " ".join(sorted(ids)))


def mrunner_dispatch(project: Path, home: Path) -> tuple[float, str]:
    elapsed, result = timed(
        [PYTHON, "-m", "mrunner", "+context=bench", "train.py", "-m", f"seed=range({COUNT})"], project, env_for(home)
    )
    return elapsed, result.stdout.strip().splitlines()[-1]


def sweep_jobs(home: Path, sweep: str, project: Path) -> tuple[float, dict, set[str]]:
    elapsed, result = timed([PYTHON, "-m", "mrunner", "status", sweep, "--json"], project, env_for(home))
    document = json.loads(result.stdout)
    jobs = {r["backend_ref"].split("_")[0] for r in document["experiments"] if r["backend_ref"]}
    return elapsed, document, jobs


BARE = r"""
import io, json, os, socket, sys, tarfile, time, zlib
import paramiko
project, storage, config = sys.argv[1], sys.argv[2], sys.argv[3]
entry = paramiko.SSHConfig.from_path(config).lookup("mrunner-test-slurm")
sock = socket.create_connection((entry["hostname"], int(entry["port"])))
sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
client = paramiko.SSHClient()
client.get_host_keys().load(entry["userknownhostsfile"])
client.set_missing_host_key_policy(paramiko.RejectPolicy())
client.connect(entry["hostname"], int(entry["port"]), username=entry["user"], key_filename=entry["identityfile"], sock=sock, look_for_keys=False, allow_agent=False)
class Gz:
    def __init__(self): self.z = zlib.compressobj(1, zlib.DEFLATED, 31); self.parts = []
    def write(self, b): self.parts.append(self.z.compress(b)); return len(b)
out = Gz()
with tarfile.open(fileobj=out, mode="w|") as archive:
    for folder, _, names in os.walk(project):
        for name in names:
            path = os.path.join(folder, name)
            data = open(path, "rb").read()
            info = tarfile.TarInfo("code/" + os.path.relpath(path, project)); info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    for i in range(1000):
        data = json.dumps({"parameters": {"seed": i}, "index": i}).encode()
        info = tarfile.TarInfo("tasks/%d.yaml" % i); info.size = len(data)
        archive.addfile(info, io.BytesIO(data))
out.parts.append(out.z.flush())
channel = client.get_transport().open_session()
channel.exec_command("mkdir -p %s/out && tar -xz -C %s && sbatch --parsable --hold --array=0-999 --time=5 --output=/dev/null -p debug --wrap %s" % (
    storage, storage, "'cd %s/code && MRUNNER_CONFIG=%s/tasks/$SLURM_ARRAY_TASK_ID.yaml python3 train.py'" % (storage, storage)))
for part in out.parts:
    channel.sendall(part)
channel.shutdown_write()
job = channel.makefile("rb").read().decode().strip()
assert channel.recv_exit_status() == 0, channel.makefile_stderr("rb").read()
print(job)
"""


def bare_dispatch(project: Path, storage: str, workdir: Path) -> tuple[float, str]:
    script = workdir / "bare.py"
    script.write_text(BARE)
    elapsed, result = timed([PYTHON, str(script), str(project), storage, SERVICE["ssh_config"]], workdir)
    return elapsed, result.stdout.strip()


SINGLE = r"""
import shlex, socket, sys, paramiko
storage, config, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
entry = paramiko.SSHConfig.from_path(config).lookup("mrunner-test-slurm")
sock = socket.create_connection((entry["hostname"], int(entry["port"])))
sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
client = paramiko.SSHClient()
client.get_host_keys().load(entry["userknownhostsfile"])
client.set_missing_host_key_policy(paramiko.RejectPolicy())
client.connect(entry["hostname"], int(entry["port"]), username=entry["user"], key_filename=entry["identityfile"], sock=sock, look_for_keys=False, allow_agent=False)
ids = []
for i in range(count):
    stdin, stdout, stderr = client.exec_command("sbatch --parsable --hold --time=5 --output=/dev/null -p debug --wrap " + shlex.quote("cd %s && python3 -c pass %d" % (storage, i)))
    ids.append(stdout.read().decode().strip())
print(" ".join(ids))
"""


def single_dispatch(storage: str, workdir: Path) -> tuple[float, set[str]]:
    script = workdir / "single.py"
    script.write_text(SINGLE)
    elapsed, result = timed([PYTHON, str(script), storage, SERVICE["ssh_config"], str(COUNT)], workdir)
    return elapsed, set(result.stdout.split())


SUBMITIT = r"""
import sys, time
started = time.perf_counter()
import submitit
def task(i):
    return i
executor = submitit.AutoExecutor(folder=sys.argv[1], cluster="slurm")
executor.update_parameters(slurm_partition="debug", timeout_min=5, slurm_array_parallelism=1000,
                           slurm_additional_parameters={"hold": True})
jobs = executor.map_array(task, list(range(1000)))
elapsed = time.perf_counter() - started
print(elapsed, jobs[0].job_id.split("_")[0])
"""


def ensure_submitit() -> None:
    """Give the cluster user a virtualenv with submitit (from PyPI) unless it has one: a fresh cluster has none."""
    setup = "test -x ~/bench-venv/bin/python || { python3 -m venv ~/bench-venv && ~/bench-venv/bin/pip install -q submitit; }"
    subprocess.run(["ssh", "-F", SERVICE["ssh_config"], SERVICE["alias"], setup], check=True)


def submitit_dispatch(storage: str) -> tuple[float, float, str]:
    started = time.perf_counter()
    result = subprocess.run(
        ["ssh", "-F", SERVICE["ssh_config"], SERVICE["alias"], f"~/bench-venv/bin/python - {storage}/submitit"],
        input=SUBMITIT,
        capture_output=True,
        text=True,
    )
    elapsed = time.perf_counter() - started
    if result.returncode:
        raise SystemExit(f"submitit failed: {result.stderr[-500:]}")
    inner, job = result.stdout.split()
    return elapsed, float(inner), job


def redispatch_bytes(project: Path, home: Path) -> tuple[int, int, int, int]:
    """First dispatch, then change one file and dispatch again, in-process, counting stdin bytes sent."""
    code = (
        "import json, sys\n"
        "from pathlib import Path\n"
        "from mrunner import planning, submission\n"
        "from mrunner.reporter import Reporter\n"
        "from mrunner.store import Store\n"
        "from mrunner_slurm import transport\n"
        "plan = planning.Plan(planning.Request(target=Path('train.py'), overrides=['seed=range(1000)'], multirun=True, context_name='bench'))\n"
        "sweep, runs = submission.submit(plan, Store(), Reporter(quiet=True))\n"
        "connection = next(iter(transport._CACHE.values()))\n"
        "print(json.dumps({'total': connection.bytes_sent, 'code': sweep.package['bytes_sent'], 'sweep': sweep.id}))\n"
    )
    _, first = timed([PYTHON, "-c", code], project, env_for(home))
    (project / "pkg3" / "module_3.py").write_text((project / "pkg3" / "module_3.py").read_text() + "CHANGED = True\n")
    _, second = timed([PYTHON, "-c", code], project, env_for(home))
    a, b = json.loads(first.stdout), json.loads(second.stdout)
    return a["code"], a["total"], b["code"], b["total"], a["sweep"], b["sweep"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--skip-single", action="store_true", help="skip the 1,000 separate sbatch calls (15 s)")
    parser.add_argument("--ssh", choices=["openssh", "paramiko"], help="the context's transport")
    parser.add_argument("--login", action="store_true", help="measure mrunner through a `mrunner login` master")
    parser.add_argument("--transports", help="comma-separated: openssh, openssh+login, paramiko (one mrunner way each)")
    options = parser.parse_args()
    if options.transports:
        transports = options.transports.split(",")
    else:
        transports = [(options.ssh or "default") + ("+login" if options.login else "")]
    sources = [Path(__file__).parent.parent / "mrunner", *Path(__file__).parent.parent.glob("plugins/*/mrunner_*")]
    subprocess.run([PYTHON, "-m", "compileall", "-q", *map(str, sources)], check=True, stdout=subprocess.DEVNULL)
    ensure_submitit()
    mrunner_ways = ["mrunner" if len(transports) == 1 else f"mrunner[{t}]" for t in transports]
    rows: dict[str, list[float]] = {way: [] for way in mrunner_ways}
    rows.update({"bare": [], "single": [], "submitit": [], "submitit_call": []})
    status_times: dict[str, list[float]] = {way: [] for way in mrunner_ways}
    calls = None
    with tempfile.TemporaryDirectory() as temporary:
        workdir = Path(temporary)
        project = workdir / "project"
        make_project(project)
        base = f"{SERVICE['storage_dir']}/bench-{uuid.uuid4().hex[:8]}"
        for round_ in range(options.repeat):
            ways = [*mrunner_ways, "bare", "submitit"]
            ways = ways[round_ % len(ways) :] + ways[: round_ % len(ways)]  # each way goes first in turn
            for way in ways:
                if way in mrunner_ways:
                    use_transport(transports[mrunner_ways.index(way)])
                    home = workdir / f"home{round_}-{mrunner_ways.index(way)}"
                    context(home, f"{base}/mrunner{round_}-{mrunner_ways.index(way)}")
                    elapsed, sweep = mrunner_dispatch(project, home)
                    rows[way].append(elapsed)
                    status_elapsed, document, jobs = sweep_jobs(home, sweep, project)
                    status_times[way].append(status_elapsed)
                    if calls is None:
                        calls = status_calls(project, home, sweep)
                    cancel_jobs(jobs)
                    logout(home)
                elif way == "bare":
                    elapsed, job = bare_dispatch(project, f"{base}/bare{round_}", workdir)
                    rows["bare"].append(elapsed)
                    cancel_jobs({job})
                else:
                    try:
                        elapsed, inner, job = submitit_dispatch(f"{base}/submitit{round_}")
                        rows["submitit"].append(elapsed)
                        rows["submitit_call"].append(inner)
                        cancel_jobs({job})
                    except SystemExit as error:
                        print(error, file=sys.stderr)
                time.sleep(PAUSE)
            print(f"round {round_}: " + ", ".join(f"{k} {v[-1]:.2f}s" for k, v in rows.items() if v), file=sys.stderr)
        if not options.skip_single:
            elapsed, ids = single_dispatch(f"{base}/single", workdir)
            rows["single"].append(elapsed)
            cancel_jobs(ids)
        use_transport(transports[0])
        home = workdir / "home-bytes"
        context(home, f"{base}/bytes")
        code1, total1, code2, total2, sweep1, sweep2 = redispatch_bytes(project, home)
        _, d1, jobs1 = sweep_jobs(home, sweep1, project)
        _, d2, jobs2 = sweep_jobs(home, sweep2, project)
        cancel_jobs(jobs1 | jobs2)
        logout(home)
        # ~50,000 files: left behind, every run would slow the file system down; code folders are read-only
        ssh(f"chmod -R u+w {base} && rm -rf {base}")
    report = {
        "transports": transports,
        "dispatch_seconds": {
            k: {"median": statistics.median(v), "min": min(v), "max": max(v), "n": len(v)} for k, v in rows.items() if v
        },
        "status": {
            "remote_calls": calls,
            **{f"{way}_median_seconds": statistics.median(times) for way, times in status_times.items()},
        },
        "redispatch": {
            "first_code_bytes": code1,
            "first_total_bytes": total1,
            "second_code_bytes": code2,
            "second_total_bytes": total2,
        },
    }
    print(json.dumps(report, indent=1))


def use_transport(transport: str) -> None:
    """Point the `bench` context at ``transport`` (``openssh``, ``paramiko`` or ``default``, ``+login`` for a master)."""
    name, _, login = transport.partition("+")
    TRANSPORT.clear()
    TRANSPORT.update({"ssh": name} if name != "default" else {})
    LOGIN[0] = login == "login"


def status_calls(project: Path, home: Path, sweep: str) -> int:
    """Remote calls one `refresh` of the 1,000-experiment sweep makes (in-process, counting exec channels)."""
    code = (
        "from mrunner import following\nfrom mrunner.store import Store\nfrom mrunner_slurm import transport\n"
        f"store = Store(); sweep = store.sweep({sweep!r}); following.refresh(sweep, store)\n"
        "print(sum(c.calls for c in transport._CACHE.values()))\n"
    )
    _, result = timed([PYTHON, "-c", code], project, env_for(home))
    return int(result.stdout.strip())


if __name__ == "__main__":
    main()
