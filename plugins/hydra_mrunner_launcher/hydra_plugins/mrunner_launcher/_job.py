"""One job whose task function no command can reach (Hydra's in-process API, a notebook):
``python -m hydra_plugins.mrunner_launcher._job JOB_FILE``.

The launcher wrote the job file with cloudpickle (the task function, the job's config, Hydra's state), on
this machine and for this machine's Python, which is why such jobs run only on the local backend. The
job runs as Hydra's own launchers run theirs (``run_job``), then writes its ``JobReturn`` beside the file.
"""

from __future__ import annotations

import os
import sys


def result_path(job_file: str) -> str:
    return f"{job_file}.result"


def main(job_file: str) -> int:
    import cloudpickle
    from hydra.core.hydra_config import HydraConfig
    from hydra.core.singleton import Singleton
    from hydra.core.utils import JobStatus, run_job, setup_globals

    with open(job_file, "rb") as stream:
        job = cloudpickle.load(stream)
    setup_globals()
    Singleton.set_state(job["singleton_state"])
    HydraConfig.instance().set_config(job["config"])
    returned = run_job(
        hydra_context=job["hydra_context"],
        task_function=job["task_function"],
        config=job["config"],
        job_dir_key="hydra.sweep.dir",
        job_subdir_key="hydra.sweep.subdir",
    )
    try:
        data = cloudpickle.dumps(returned)
    except Exception:  # a return value (or exception) that cannot be pickled travels as its repr
        value = returned._return_value
        returned._return_value = repr(value) if returned.status == JobStatus.COMPLETED else RuntimeError(repr(value))
        data = cloudpickle.dumps(returned)
    partial = f"{result_path(job_file)}.partial"
    with open(partial, "wb") as stream:
        stream.write(data)
    os.replace(partial, result_path(job_file))
    return 0 if returned.status == JobStatus.COMPLETED else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
