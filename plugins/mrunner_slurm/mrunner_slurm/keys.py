"""The Slurm context keys (names kept from the original mrunner) and the sbatch options they become."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from mrunner.errors import MrunnerError
from mrunner.schema import key, keys_of
from mrunner_slurm import places
from mrunner_slurm.packing import UNLIMITED_TIMES, shareable


@dataclass(frozen=True, kw_only=True)
class SlurmKeys:
    """The keys of ``backend: slurm``; a key with an ``option`` becomes that sbatch option (``--mem=8G``)."""

    # fmt: off
    slurm_url: str = key(help="login node to submit from: [user@]host[:port] or a Host alias of your ssh config")
    ssh_config: str = key("~/.ssh/config", help="ssh config file honoured for slurm_url (HostName, User, Port, IdentityFile, ProxyJump, ...)")
    ssh: Literal["openssh", "paramiko"] | None = key(None, help="openssh (the system ssh client with your own config, reusing `mrunner login`) or paramiko; default: openssh where ssh is installed")
    login_persist: str = key("10h", help="how long a `mrunner login` connection stays up after its last use (OpenSSH time: 30m, 10h, 1d)")
    storage_dir: str = key("~/mrunner", option="STORAGE_DIR", help="folder on the cluster for code, virtualenvs and experiment outputs (`~` is its home; `$VAR` is not expanded)")
    python: str = key("python3", help="interpreter on the cluster that runs a .py experiment script")
    partition: str | None = key(None, option="--partition", help="Slurm partition", per_point=True)
    account: str | None = key(None, option="--account", help="Slurm account to charge")
    qos: str | None = key(None, option="--qos", help="quality of service", per_point=True)
    time: str | int | None = key(None, option="--time", help="time limit per experiment: minutes (60), or a Slurm time such as 1-12:00:00", per_point=True)
    nodes: int | None = key(None, option="--nodes", help="nodes per experiment", per_point=True)
    ntasks: int | None = key(None, option="--ntasks", help="tasks per experiment; with cmd_type srun the command runs once per task", per_point=True)
    cpu: int | None = key(None, option="--cpus-per-task", help="CPUs per experiment task", per_point=True)
    mem: str | None = key(None, option="--mem", help="memory per node, e.g. 8G", per_point=True)
    gpu: str | int | None = key(None, option="--gres", help="GPUs per experiment: a count (2 -> --gres=gpu:2) or type:count (a100:1 -> --gres=gpu:a100:1)", per_point=True)
    nodelist: str | None = key(None, option="--nodelist", help="run only on these nodes")
    exclude_nodes: str | None = key(None, option="--exclude", help="never run on these nodes")
    modules_to_load: list[str] = key([], help="environment modules loaded before the experiment (`module load NAME`)")
    sbatch_options: list[str] | dict[str, Any] = key([], help="extra sbatch options: a list such as [--constraint=a100] or a mapping {constraint: a100}")
    prolog_cmd: str | list[str] | None = key(None, help="shell line(s) run in the batch script before the experiment, verbatim (a string or a list)")
    cmd_type: Literal["sbatch", "srun"] = key("sbatch", help="sbatch: the batch script runs the command; srun: it runs it with srun inside the allocation")
    venv: str | None = key(None, help="an existing virtualenv on the cluster to activate")
    requirements_file: str | None = key(None, help="requirements file (in the project): a virtualenv is built from it on the cluster once per distinct content, then reused")
    conda: str | None = key(None, help="conda environment to activate (`conda activate NAME`)")
    singularity_container: str | None = key(None, help="Singularity/Apptainer image the command runs in (`singularity exec [--nv] IMAGE`)")
    array_parallelism: int | None = key(None, minimum=1, option="--array=...%N", help="at most this many experiments of a job array run at once")
    points_per_task: int | Literal["auto"] = key(1, minimum=1, help="grid points each array task runs, one after another, each with its own folder, log, attempts and status (Slurm counts a task as a job): a number, or auto for just enough that the sweep fits the site's job limits; `time` stays per point")
    points_at_once: int = key(1, minimum=1, help="of a task's points, how many run at once, each on its own share: cpu, mem and gpu stay per point and the task asks for points_at_once times them (cpu 1 when unset); each point is bound to its cpu CPUs and sees its gpu GPUs (CUDA_VISIBLE_DEVICES), and with cmd_type srun is a job step of that size with its mem; with time, a task may take time x ceil(points_per_task / points_at_once)")
    # fmt: on


#: An OpenSSH time (``ControlPersist``): ``30m``, ``10h``, ``1d``, ``1h30m``.
_PERSIST = re.compile(r"^(\d+[smhdwSMHDW]?)+$")
#: What sbatch takes as ``--mem``: a whole number of megabytes, or with a unit (``500M``, ``8G``, ``8GB``).
#: ``$NAME`` in a storage_dir: an environment variable, which nothing expands on the cluster (``${NAME}`` is
#: OmegaConf's, refused when the context is read).
_VARIABLE = re.compile(r"\$[A-Za-z_][A-Za-z0-9_]*")
_MEMORY = re.compile(r"^\d+([KMGT]B?)?$", re.IGNORECASE)
#: What sbatch takes as ``--time``: minutes, ``MM:SS``, ``HH:MM:SS``, ``D-HH``, ``D-HH:MM``, ``D-HH:MM:SS``.
_TIME = re.compile(r"^(\d+(:\d+){0,2}|\d+-\d+(:\d+){0,2})$")

#: The keys that become one sbatch option each as they are (``--mem=8G``): those declared with an ``--option``.
#: ``gpu`` (``--gres=gpu:N``) and ``array_parallelism`` (part of ``--array``) are written by their own code.
SIMPLE_OPTIONS = {
    name: declared.option
    for name, declared in keys_of(SlurmKeys).items()
    if declared.option and declared.option.startswith("--") and name not in ("gpu", "array_parallelism")
}


def check_combinations(context: Mapping[str, Any], context_name: str) -> None:
    """Reject combinations sbatch would refuse later, naming the key to fix (types, ranges and choices are
    checked from ``SlurmKeys``)."""
    if not _PERSIST.match(context["login_persist"]):
        raise MrunnerError(
            f"context {context_name}: login_persist must be a time such as 30m, 10h or 1d, got {context['login_persist']!r}"
        )
    if context["venv"] and context["requirements_file"]:
        raise MrunnerError(f"context {context_name}: set either venv or requirements_file, not both")
    gpu = context["gpu"]
    if gpu is not None and not str(gpu).split(":")[-1].isdigit():
        raise MrunnerError(f"context {context_name}: gpu must be a count or type:count (e.g. 2 or a100:1), got {gpu!r}")
    port = places.written_port(str(context["slurm_url"]))
    if port is not None and not 1 <= port <= 65535:  # ssh would say "Bad port" without naming the key
        raise MrunnerError(f"context {context_name}: slurm_url {context['slurm_url']!r} names port {port}, not 1-65535")
    variable = _VARIABLE.search(str(context["storage_dir"]))
    if variable:
        raise MrunnerError(
            f"context {context_name}: storage_dir {context['storage_dir']!r} names the environment variable "
            f"{variable[0]}, which mrunner does not expand on the cluster (it would make a folder named so): "
            "write the path itself (~ is the cluster user's home)"
        )
    _check_at_once(context, context_name)  # first: its messages say what sharing a task asks of cpu and mem
    _check_resources(context, context_name)


def _check_resources(context: Mapping[str, Any], context_name: str) -> None:
    """Refuse a resource sbatch would refuse: here, before anything is recorded, rather than at a later job
    array of a sweep whose per-point resources make several arrays (the first ones already submitted)."""
    mem = context.get("mem")
    if mem not in (None, "") and not _MEMORY.match(str(mem).strip()):
        raise MrunnerError(
            f"context {context_name}: mem must be a whole size such as 8G, 500M or 8192 (megabytes), got {mem!r}"
        )
    time = context.get("time")
    if time not in (None, "") and not (_TIME.match(str(time).strip()) or str(time).strip().lower() in UNLIMITED_TIMES):
        raise MrunnerError(
            f"context {context_name}: time must be minutes (60) or a Slurm time such as 2:00:00 or 1-12:00:00, "
            f"got {time!r}"
        )
    for name in ("cpu", "nodes", "ntasks"):
        value = context.get(name)
        if value is not None and int(value) < 1:
            raise MrunnerError(f"context {context_name}: {name} must be at least 1, got {value!r}")


def _check_at_once(context: Mapping[str, Any], context_name: str) -> None:
    """``points_at_once`` points share their task's resources (``mrunner_slurm.packing.task_context``): each
    must get at least one CPU and a whole part of its memory."""
    n, k = int(context.get("points_at_once") or 1), context.get("points_per_task", 1)
    if n <= 1:
        return
    if k != "auto" and n > int(k):
        raise MrunnerError(
            f"context {context_name}: points_at_once ({n}) is more than points_per_task ({k}): a task runs at "
            f"most its own points at once; raise points_per_task or lower points_at_once"
        )
    for name in ("nodes", "ntasks"):
        if int(context.get(name) or 1) > 1:
            raise MrunnerError(
                f"context {context_name}: {name}={context[name]} with points_at_once={n}: points that run at once "
                f"share one task's CPUs on one node; set points_at_once to 1 for multi-{name[:-1]} experiments"
            )
    cpu = context.get("cpu")
    if cpu is not None and int(cpu) < 1:
        raise MrunnerError(f"context {context_name}: cpu is per point with points_at_once: at least 1, got {cpu}")
    asked = _extra_option(context, ("cpus-per-task", "c"))
    if asked is not None and (not str(asked).isdigit() or int(asked) < n):
        raise MrunnerError(
            f"context {context_name}: --cpus-per-task={asked} in sbatch_options leaves {n} points at once less "
            f"than a CPU each; leave it out (the task asks for points_at_once x cpu) or lower points_at_once"
        )
    mem = context.get("mem")
    if mem not in (None, "") and (":" in str(mem) or not shareable(mem)):
        raise MrunnerError(
            f"context {context_name}: mem is per point with points_at_once and must be a whole size such as 8G "
            f"or 500M (the task asks for {n} times it), got {mem!r}"
        )


def _extra_option(context: Mapping[str, Any], names: tuple[str, ...]) -> Any:
    """The value of one of ``names`` among the context's ``sbatch_options`` (``--cpus-per-task=4``, ``-c 4``
    as one item ``-c4``, or a mapping's key), or None."""
    extra = context.get("sbatch_options") or []
    items = extra.items() if isinstance(extra, dict) else [(str(o), None) for o in extra]
    for raw, mapped in items:
        text = str(raw).lstrip("-")
        name, _, value = text.partition("=")
        if isinstance(extra, dict):
            value = str(mapped)
        elif not value and len(name) > 1 and name[0] == "c" and name[1:].isdigit() and str(raw).startswith("-c"):
            name, value = "c", name[1:]
        if name in names:
            return value
    return None


def gres(gpu: str | int | None) -> str | None:
    """``2`` -> ``gpu:2``; ``a100:1`` -> ``gpu:a100:1``; 0 or unset -> no request."""
    if gpu is None or str(gpu).strip() in ("", "0"):
        return None
    return f"gpu:{str(gpu).strip()}"


def stopping_options(context: Mapping[str, Any]) -> list[str]:
    """Requeueable, with the wrapper (the batch shell: ``B:``) warned ``grace_period`` seconds before the time
    limit, so the experiment can save and the wrapper requeue it as its next attempt. A ``--signal`` of the
    context's own ``sbatch_options`` replaces the warning."""
    extra = context["sbatch_options"]
    names = [str(k).lstrip("-") for k in extra] if isinstance(extra, dict) else [str(o).lstrip("-") for o in extra]
    options = ["--requeue"]
    if not any(name.split("=")[0] == "signal" for name in names):
        options.append(f"--signal=B:USR1@{max(int(context['grace_period']), 1)}")
    return options


def resource_options(context: Mapping[str, Any]) -> list[str]:
    """The sbatch options for the resources each experiment asks for (one argv item each, no shell)."""
    options = [
        f"{flag}={context[name]}" for name, flag in SIMPLE_OPTIONS.items() if context.get(name) not in (None, "")
    ]
    options += stopping_options(context)
    request = gres(context.get("gpu"))
    if request:
        options.append(f"--gres={request}")
    extra = context["sbatch_options"]
    if isinstance(extra, dict):
        options += [
            f"--{k.lstrip('-')}" if v is True else f"--{k.lstrip('-')}={v}" for k, v in extra.items() if v is not False
        ]
    else:
        options += [str(item) for item in extra]
    return options
