"""CPU time per point of a packed task, which a shared machine's load disturbs less than wall time: N empty
points (``exp.py``: ``pass``) through the attempt runner (``python3 -m mrunner.attempt --points``, as a packed
Slurm task runs them), the same with a fresh ``python3 -m mrunner.attempt`` per point (``--launcher python3``,
as packed points ran before the runner, less the bash subshell), against a bare loop of ``python3 exp.py`` (each point's output in a log, its exit code in
a file); and the CPU time of one start of the unpacked wrapper's imports (``python3 -c 'import
mrunner.attempt'``), which a packed point paid before the runner.

Run it where the experiments run, with this checkout's ``mrunner`` beside it; on the loopback cluster, whose
node shares this machine's /tmp:

    mkdir -p /tmp/cpu && cp -r mrunner benchmarks/packed_point_cpu.py /tmp/cpu/ && chmod -R a+rX /tmp/cpu
    ssh -F /tmp/mrunner-services/slurm/ssh_config mrunner-test-slurm python3 /tmp/cpu/packed_point_cpu.py 200
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from mrunner import layout  # noqa: E402  (this checkout's, from beside this file)
from mrunner.attempt import command_line  # noqa: E402


def cpu_per_point(argv: list[str], count: int, env: dict[str, str]) -> float:
    """Milliseconds of CPU (user + system, of every process ``argv`` started) per point."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(argv, check=True, env=env, stdout=subprocess.DEVNULL)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime) / count * 1000


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    root = tempfile.mkdtemp()
    try:
        code = os.path.join(root, "code")
        os.makedirs(code)
        with open(os.path.join(code, "exp.py"), "w") as stream:
            stream.write("pass\n")
        points = []
        for index in range(count):
            where = layout.Layout(os.path.join(root, "storage"), "p", "s-abcdef", index, f"e{index}")
            env = {**where.environment(), "MRUNNER_CONFIG_DOCUMENT": json.dumps({"attempt": 0})}
            points.append({"index": index, "env": env, "argv": ["python3", "exp.py"]})
        bundle = os.path.join(root, "task.jsonl")
        with open(bundle, "w") as stream:
            stream.write(json.dumps(points) + "\n")
        env = {**os.environ, "PYTHONPATH": HERE}
        runner = command_line("python3", code, [], entries=["l exp.py"], grace=5, points=bundle)
        packed = cpu_per_point(runner, count, env)
        # each point's attempt as a fresh `python3 -m mrunner.attempt`, as packed points ran before the runner
        fresh = command_line("python3", code, [], entries=["l exp.py"], grace=5, points=bundle, launcher=["python3"])
        shutil.rmtree(os.path.join(root, "storage"))
        started = cpu_per_point(fresh, count, env)
        loop = (
            f"mkdir -p {root}/bare; cd {code}; for i in $(seq {count}); do python3 exp.py >{root}/bare/$i.log 2>&1; "
            f"echo $? >{root}/bare/$i; done"
        )
        bare = cpu_per_point(["bash", "-c", loop], count, env)
        starts = f"for i in $(seq {count}); do python3 -c 'import mrunner.attempt'; done"
        wrapper = cpu_per_point(["bash", "-c", starts], count, env)
        with open("/proc/loadavg") as stream:
            load = stream.read().split()[0]
        print(
            f"CPU per point, {count} empty points: packed runner {packed:.1f} ms, a fresh wrapper per point "
            f"{started:.1f} ms, bare loop {bare:.1f} ms; overhead of the runner's point {packed - bare:.1f} ms, of a "
            f"fresh wrapper's {started - bare:.1f} ms; a start of python3 -c 'import mrunner.attempt': {wrapper:.1f} ms "
            f"(load {load})"
        )
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
