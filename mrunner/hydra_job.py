"""The job side of Hydra's ``mrunner`` launcher: a Hydra callback that each job's overrides name, which
reports the job's config and how it ended as one line of its output.

The launcher reads that line back through the backend's logs, which every backend has, so neither a
shared file system nor a channel of its own is needed; the return value travels as JSON (plain data),
never as a pickle. Only the standard library is imported here, because the Slurm and Kubernetes
backends ship this module with every sweep (``runtime.EXPERIMENT_MODULES``); Hydra is imported by the
hooks, which run inside the Hydra app.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

MARKER = "mrunner-hydra-job: "


class JobReport:
    """Hydra callback (``hydra.callbacks.mrunner_job._target_=mrunner.hydra_job.JobReport``).

    ``original_cwd``: what ``hydra.utils.get_original_cwd()`` returns in the job, the folder the multirun
    was launched from, when the job runs on that machine; otherwise the job keeps the folder it started in.
    """

    def __init__(self, original_cwd: str | None = None) -> None:
        self.original_cwd = original_cwd

    def on_job_start(self, config: Any, **kwargs: Any) -> None:
        if not self.original_cwd:
            return
        from hydra.core.hydra_config import HydraConfig
        from omegaconf import read_write

        with read_write(config.hydra):
            config.hydra.runtime.cwd = self.original_cwd
        HydraConfig.instance().set_config(config)

    def on_job_end(self, config: Any, job_return: Any, **kwargs: Any) -> None:
        from omegaconf import OmegaConf

        report: dict[str, Any] = {
            "status": job_return.status.name,
            "cwd": os.getcwd(),
            "subdir": str(OmegaConf.select(config, "hydra.sweep.subdir")),
            # the config the job ran with, as written (interpolations kept): the launcher's JobReturn
            "config": OmegaConf.to_container(job_return.cfg, enum_to_str=True),
            "hydra": OmegaConf.to_container(job_return.hydra_cfg, enum_to_str=True),
        }
        value = job_return._return_value  # the property raises a failed job's exception
        if job_return.status.name == "COMPLETED":
            report.update(_plain(value))
        else:
            report["error"] = f"{type(value).__name__}: {value}"
        sys.stdout.write("\n" + MARKER + json.dumps(report) + "\n")
        sys.stdout.flush()

    # Hydra calls every hook of a callback; these have nothing to do.
    def on_run_start(self, config: Any, **kwargs: Any) -> None:
        pass

    def on_run_end(self, config: Any, **kwargs: Any) -> None:
        pass

    def on_multirun_start(self, config: Any, **kwargs: Any) -> None:
        pass

    def on_multirun_end(self, config: Any, **kwargs: Any) -> None:
        pass

    def on_compose_config(self, config: Any, **kwargs: Any) -> None:
        pass


def _plain(value: Any) -> dict[str, Any]:
    """``{"value": ...}`` when the return value is plain data (an OmegaConf container counts), else its repr."""
    if type(value).__module__.startswith("omegaconf"):
        from omegaconf import OmegaConf

        value = OmegaConf.to_container(value, resolve=True)
    try:
        json.dumps(value, allow_nan=True)
    except (TypeError, ValueError):
        return {"repr": repr(value)}
    return {"value": value}


def read_report(output: str) -> dict[str, Any] | None:
    """The last report in a job's output, or ``None`` if it never reported (it did not get that far)."""
    for line in reversed(output.splitlines()):
        if line.startswith(MARKER):
            try:
                report = json.loads(line[len(MARKER) :])
            except ValueError:
                continue  # a line cut short: the job was stopped while writing it
            return report if isinstance(report, dict) else None
    return None
