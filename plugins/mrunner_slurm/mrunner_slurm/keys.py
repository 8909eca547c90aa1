"""The Slurm context keys (names kept from the original mrunner) and the sbatch options they become."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from mrunner.errors import MrunnerError
from mrunner.schema import ContextKey

KEYS = [
    ContextKey("slurm_url", "str", required=True, help="login node to submit from: [user@]host[:port] or a Host alias of your ssh config"),
    ContextKey("ssh_config", "str", "~/.ssh/config", "ssh config file honoured for slurm_url (HostName, User, Port, IdentityFile, ProxyJump, ...)"),
    ContextKey("ssh", "str", None, "openssh (the system ssh client with your own config, reusing `mrunner login`) or paramiko; default: openssh where ssh is installed"),
    ContextKey("login_persist", "str", "10h", "how long a `mrunner login` connection stays up after its last use (OpenSSH time: 30m, 10h, 1d)"),
    ContextKey("storage_dir", "str", "~/mrunner", "folder on the cluster for code, virtualenvs and experiment outputs (STORAGE_DIR)"),
    ContextKey("python", "str", "python3", "interpreter on the cluster that runs a .py experiment script"),
    ContextKey("partition", "str", None, "Slurm partition (--partition)"),
    ContextKey("account", "str", None, "Slurm account to charge (--account)"),
    ContextKey("qos", "str", None, "quality of service (--qos)"),
    ContextKey("time", "str|int", None, "time limit per experiment: minutes, or a Slurm time such as 1-12:00:00 (--time)"),
    ContextKey("nodes", "int", None, "nodes per experiment (--nodes)"),
    ContextKey("ntasks", "int", None, "tasks per experiment (--ntasks); with cmd_type srun the command runs once per task"),
    ContextKey("cpu", "int", None, "CPUs per experiment task (--cpus-per-task)"),
    ContextKey("mem", "str", None, "memory per node, e.g. 8G (--mem)"),
    ContextKey("gpu", "str|int", None, "GPUs per experiment: a count (2 -> --gres=gpu:2) or type:count (a100:1 -> --gres=gpu:a100:1)"),
    ContextKey("nodelist", "str", None, "run only on these nodes (--nodelist)"),
    ContextKey("exclude_nodes", "str", None, "never run on these nodes (--exclude)"),
    ContextKey("modules_to_load", "list", [], "environment modules loaded before the experiment (`module load NAME`)"),
    ContextKey("sbatch_options", "any", [], "extra sbatch options: a list such as [--constraint=a100] or a mapping {constraint: a100}"),
    ContextKey("prolog_cmd", "any", None, "shell line(s) run in the batch script before the experiment (a string or a list)"),
    ContextKey("cmd_type", "str", "sbatch", "sbatch: the batch script runs the command; srun: it runs it with srun inside the allocation"),
    ContextKey("venv", "str", None, "an existing virtualenv on the cluster to activate"),
    ContextKey("requirements_file", "str", None, "requirements file (in the project): a virtualenv is built from it on the cluster once and reused"),
    ContextKey("conda", "str", None, "conda environment to activate (`conda activate NAME`)"),
    ContextKey("singularity_container", "str", None, "Singularity/Apptainer image the command runs in (`singularity exec IMAGE`)"),
    ContextKey("array_parallelism", "int", None, "at most this many experiments of a job array run at once (--array=...%N)"),
]  # fmt: skip


_PERSIST = re.compile(r"^(\d+[smhdwSMHDW]?)+$")


def check(context: Mapping[str, Any], context_name: str) -> None:
    """Reject combinations sbatch would refuse later, naming the key to fix."""
    if context.get("ssh") not in (None, "openssh", "paramiko"):
        raise MrunnerError(f"context {context_name}: ssh must be openssh or paramiko, got {context.get('ssh')!r}")
    if not _PERSIST.match(str(context.get("login_persist") or "10h")):
        raise MrunnerError(
            f"context {context_name}: login_persist must be a time such as 30m, 10h or 1d, got {context.get('login_persist')!r}"
        )
    if context.get("cmd_type") not in ("sbatch", "srun"):
        raise MrunnerError(f"context {context_name}: cmd_type must be sbatch or srun, got {context.get('cmd_type')!r}")
    if context.get("venv") and context.get("requirements_file"):
        raise MrunnerError(f"context {context_name}: set either venv or requirements_file, not both")
    gpu = context.get("gpu")
    if gpu is not None and not str(gpu).split(":")[-1].isdigit():
        raise MrunnerError(f"context {context_name}: gpu must be a count or type:count (e.g. 2 or a100:1), got {gpu!r}")
    options = context.get("sbatch_options")
    if not isinstance(options, (list, dict)):
        raise MrunnerError(f"context {context_name}: sbatch_options must be a list of options or a mapping")
    if context.get("array_parallelism") is not None and context["array_parallelism"] < 1:
        raise MrunnerError(f"context {context_name}: array_parallelism must be at least 1")


def gres(gpu: str | int | None) -> str | None:
    """``2`` -> ``gpu:2``; ``a100:1`` -> ``gpu:a100:1``; 0 or unset -> no request."""
    if gpu is None or str(gpu).strip() in ("", "0"):
        return None
    return f"gpu:{str(gpu).strip()}"


def stopping_options(context: Mapping[str, Any]) -> list[str]:
    """Requeueable, with the wrapper (the batch shell: ``B:``) warned ``grace_period`` seconds before the time
    limit, so the experiment can save and the wrapper requeue it as its next attempt. A ``--signal`` of the
    context's own ``sbatch_options`` replaces the warning."""
    extra = context.get("sbatch_options") or []
    names = [str(k).lstrip("-") for k in extra] if isinstance(extra, dict) else [str(o).lstrip("-") for o in extra]
    options = ["--requeue"]
    if not any(name.split("=")[0] == "signal" for name in names):
        options.append(f"--signal=B:USR1@{max(int(context.get('grace_period', 30)), 1)}")
    return options


def resource_options(context: Mapping[str, Any]) -> list[str]:
    """The sbatch options for the resources each experiment asks for (one argv item each, no shell)."""
    simple = [
        ("partition", "--partition"), ("account", "--account"), ("qos", "--qos"), ("time", "--time"),
        ("nodes", "--nodes"), ("ntasks", "--ntasks"), ("cpu", "--cpus-per-task"), ("mem", "--mem"),
        ("nodelist", "--nodelist"), ("exclude_nodes", "--exclude"),
    ]  # fmt: skip
    options = [f"{flag}={context[key]}" for key, flag in simple if context.get(key) not in (None, "")]
    options += stopping_options(context)
    request = gres(context.get("gpu"))
    if request:
        options.append(f"--gres={request}")
    extra = context.get("sbatch_options") or []
    if isinstance(extra, dict):
        options += [
            f"--{k.lstrip('-')}" if v is True else f"--{k.lstrip('-')}={v}" for k, v in extra.items() if v is not False
        ]
    else:
        options += [str(item) for item in extra]
    return options
