"""A sweep under a site's job limits against the same sweep of a user without limits, on the loopback cluster
(tests/services/slurm), one after another in one run.

    .venv/bin/python benchmarks/slurm_throttle.py [--points 40] [--seconds 1] [--qos]

``--points`` points of ``--seconds`` each (``exp.py``: ``time.sleep``), ``points_per_task: auto``, submitted
with the real CLI (``mrunner +context=bench exp.py -m i=range(N) --wait``, from process start to the end of
``--wait``):
- as ``mrtest``: no job limit, so auto packs nothing (one task per point; the node's 16 slots throttle);
- as ``mrlimited``: ``MaxSubmitJobs=20`` makes auto pack 2 points per task, and ``MaxJobs=16`` holds the
  tasks beyond 16 pending (reason ``AssocMaxJobsLimit``) until others end;
- with ``--qos``, as ``mrlimited`` in the QOS ``capped`` (``GrpSubmitJobs=6``, ``MaxJobsPerUser=2``).
While each waits, ``mrunner status --json`` is read every second, and the most tasks seen running at once and
the pending reasons seen are printed with the time. The load average is printed next to every number, since
the machine is shared.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

SERVICE = json.loads(Path(os.environ.get("MRUNNER_SERVICES_DIR", "/tmp/mrunner-services"), "slurm.json").read_text())


def load() -> str:
    return Path("/proc/loadavg").read_text().split()[0]


def run(home: Path, project: Path, who: dict, storage: str, points: int, seconds: float, **keys: object) -> str:
    folder = home / "config" / "mrunner" / "context"
    folder.mkdir(parents=True, exist_ok=True)
    document = {
        "backend": "slurm",
        "slurm_url": who["alias"],
        "ssh_config": SERVICE["ssh_config"],
        "storage_dir": storage,
        "partition": SERVICE["partition"],
        "points_per_task": "auto",
        **keys,
    }
    (folder / "bench.yaml").write_text(json.dumps(document))
    (project / "exp.py").write_text(f"import time\ntime.sleep({seconds})\n")
    env = {**os.environ, "XDG_CONFIG_HOME": str(home / "config"), "XDG_DATA_HOME": str(home / "data")}
    argv = [sys.executable, "-m", "mrunner", "+context=bench", "exp.py", "-m", f"i=range({points})", "--wait"]
    start = time.perf_counter()
    process = subprocess.Popen(argv, cwd=project, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    most, reasons, tasks = 0, set(), set()
    while process.poll() is None:
        listed = subprocess.run(
            [sys.executable, "-m", "mrunner", "status", "--json"], cwd=project, env=env, capture_output=True, text=True
        )
        sweeps = json.loads(listed.stdout or "[]")
        if sweeps:
            shown = subprocess.run(
                [sys.executable, "-m", "mrunner", "status", sweeps[0]["sweep"]["id"], "--json"],
                cwd=project,
                env=env,
                capture_output=True,
                text=True,
            )
            runs = json.loads(shown.stdout or '{"experiments": []}')["experiments"]
            tasks |= {e["backend_ref"] for e in runs if e["backend_ref"]}
            most = max(most, len({e["backend_ref"] for e in runs if e["state"] == "running"}))
            reasons |= {e["detail"] for e in runs if e["state"] == "pending" and e["detail"]}
        time.sleep(1)
    took = time.perf_counter() - start
    _, err = process.communicate()
    assert process.returncode == 0, err
    return (
        f"{took:.1f} s, {len(tasks)} array tasks, at most {most} running at once seen, pending reasons seen: "
        f"{sorted(reasons) or 'none'} (load {load()})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=40)
    parser.add_argument("--seconds", type=float, default=1.0)
    parser.add_argument("--qos", action="store_true", help="also as mrlimited in the QOS capped")
    options = parser.parse_args()
    limited = {**SERVICE, **SERVICE["limited"]}
    tag = uuid.uuid4().hex[:8]
    print(f"load average at start: {load()}")
    ways = [("mrtest, no job limit", SERVICE, {}), ("mrlimited, MaxSubmitJobs=20 MaxJobs=16", limited, {})]
    if options.qos:
        ways.append(("mrlimited in QOS capped", limited, {"qos": limited["qos"]["name"]}))
    for title, who, keys in ways:
        storage = f"{who['storage_dir']}/bench-throttle-{tag}"
        with tempfile.TemporaryDirectory() as temporary:
            home, project = Path(temporary, "home"), Path(temporary, "project")
            project.mkdir()
            said = run(home, project, who, storage, options.points, options.seconds, **keys)
            print(f"{title}: {options.points} points of {options.seconds:g} s, points_per_task: auto: {said}")
        subprocess.run(
            ["ssh", "-F", SERVICE["ssh_config"], who["alias"], f"chmod -R u+w {storage}; rm -rf {storage}"], check=False
        )


if __name__ == "__main__":
    main()
