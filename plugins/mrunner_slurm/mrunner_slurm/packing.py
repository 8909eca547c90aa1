"""Packing: several grid points per Slurm array task (``points_per_task``), so that a grid fits a site's job
limits (every array task counts as a job against ``MaxSubmitJobs``; ``MaxArraySize`` caps an array).

Each point of a packed task keeps what it has unpacked: its own folder, log, attempts, exit code, status and
cancel. The batch script (``mrunner_slurm.batch``) runs a task's points one after another, or
``points_at_once`` at a time, each through the same per-point steps and attempt wrapper as an unpacked task
(``mrunner.attempt``); a task Slurm requeues (preemption, the time limit, ``scontrol requeue``) comes back
as its next attempt and runs only the points that did not complete (an exit code 0 recorded), and a point
cancelled inside its task is skipped by it (or stopped alone, if it runs). This module decides only which
points go to which task, how many a task holds, and the task's time limit.

The packing is decided once per attempt and recorded (``decided``) before the first sbatch: a submission
cut off between an sbatch and its record, submitted again (`mrunner resume`), packs the same runs the same
way whatever the site's allowance is by then, so its arrays get the same names and the cluster's helper
finds the ones already submitted instead of running their points twice.

``time`` stays a point's time: a task of K points, N at once, asks Slurm for ``time x ceil(K / N)``. The
other resources stay a point's too: N points at once share the task's, so the task asks for N times each
(``cpu``, 1 CPU when unset; ``mem``; ``gpu``), and each running point is confined to its share
(``mrunner.attempt``'s ``--cpus-per-point``: CPU affinity and ``CUDA_VISIBLE_DEVICES``; under ``cmd_type:
srun`` a job step of its share: ``point_step``). A ``--time`` (or ``--mem``, ...) among the context's
``sbatch_options`` comes after these on sbatch's command line and so sets the task's request as written.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from mrunner.errors import MrunnerError

T = TypeVar("T")

#: Slurm's default MaxArraySize, assumed where the cluster did not say (a dry run).
DEFAULT_MAX_ARRAY_SIZE = 1001


@dataclass(frozen=True)
class Limits:
    """What the site allows this user, as far as the user can read it; None where unknown: the fields of
    ``mrunner_slurm.limits.Limits`` (``site_limits``'s reading of ``sacctmgr``) packing decides from."""

    max_submit_jobs: int | None = None  # jobs (array tasks) queued or running at once (MaxSubmitJobs)
    max_jobs: int | None = None  # jobs running at once (MaxJobs): throttles, does not refuse
    max_array_size: int | None = None  # task ids of an array below this (MaxArraySize)
    jobs_in_queue: int | None = None  # jobs queued or running now that count against max_submit_jobs


def as_limits(found: Any) -> Limits:
    """Any object with the four fields (``mrunner_slurm.limits.Limits``) as this module's ``Limits``."""
    if isinstance(found, Limits):
        return found
    return Limits(
        *(getattr(found, name, None) for name in ("max_submit_jobs", "max_jobs", "max_array_size", "jobs_in_queue"))
    )


def points_per_task(context: Mapping[str, Any], count: int, limits: Limits) -> int:
    """K for ``count`` points: the context's number, or for ``auto`` the fewest points per task with which
    the whole sweep is accepted: its tasks within the user's remaining MaxSubmitJobs, and in one array of
    MaxArraySize tasks where the site sets no job limit this user can read."""
    asked = context.get("points_per_task", 1)
    if asked != "auto":
        return int(asked)
    room = limits.max_array_size or DEFAULT_MAX_ARRAY_SIZE
    if limits.max_submit_jobs is not None:
        left = limits.max_submit_jobs - (limits.jobs_in_queue or 0)
        if left <= 0:
            raise MrunnerError(
                f"points_per_task: auto finds no room: {limits.jobs_in_queue} jobs are queued or running of the "
                f"{limits.max_submit_jobs} the site's limit allows; wait for some to end, or cancel some"
            )
        room = min(room, left)
    return max(1, math.ceil(count / room))


def fitting(sizes: Sequence[int], room: int, least: int = 1) -> int | None:
    """The fewest points per task, at least ``least``, with which resource classes of ``sizes`` points each
    make at most ``room`` tasks (a task holds one class's points: each class is its own array, so a class's
    last task may be part-full); None when even one task per class is more than ``room``."""
    if len(sizes) > room:
        return None
    k = max(least, math.ceil(sum(sizes) / room) if room else 1, 1)
    while sum(math.ceil(n / k) for n in sizes) > room:
        k += 1
    return k


def auto_fitted(context: Mapping[str, Any], sizes: Sequence[int], room: int | None, k: int) -> int:
    """``k`` for resource classes of ``sizes`` points under ``points_per_task: auto`` with ``room`` jobs left:
    packed further until every class's tasks fit (``fitting``), else one task per class; any other
    ``points_per_task``, or no known room, keeps ``k``."""
    if context.get("points_per_task") != "auto" or room is None:
        return k
    return fitting(sizes, room, k) or max(sizes)


def tasks(points: Sequence[T], k: int) -> list[list[T]]:
    """The points in tasks of ``k`` consecutive ones (the last may hold fewer)."""
    return [list(points[start : start + k]) for start in range(0, len(points), k)]


def at_once(context: Mapping[str, Any], k: int) -> int:
    """How many points a task of ``k`` points runs at a time: ``points_at_once``, at most ``k``."""
    return max(1, min(int(context.get("points_at_once") or 1), k))


def rounds(context: Mapping[str, Any], k: int) -> int:
    """How many points one after another a task of ``k`` points runs at most."""
    return math.ceil(k / at_once(context, k))


#: The times sbatch takes for no limit (any case): a task of several such points has no limit either.
UNLIMITED_TIMES = ("unlimited", "infinite")


def task_context(context: Mapping[str, Any], k: int) -> Mapping[str, Any]:
    """The context whose resources a task of ``k`` points asks for: ``time`` is a point's, so the task's is
    that times its rounds; ``cpu`` (1 when unset), ``mem`` and ``gpu`` are a point's, so the task's are
    those times the points it runs at once."""
    if k <= 1:
        return context
    result = dict(context)
    if context.get("time") not in (None, "") and str(context["time"]).strip().lower() not in UNLIMITED_TIMES:
        result["time"] = slurm_time(minutes(context["time"]) * rounds(context, k))
    n = at_once(context, k)
    if n > 1:
        result["cpu"] = int(context.get("cpu") or 1) * n
        if context.get("mem") not in (None, ""):
            result["mem"] = times(context["mem"], n)
        if context.get("gpu") not in (None, ""):
            result["gpu"] = times(context["gpu"], n)
    return result


#: A size as Slurm's ``--mem`` takes it (whole, an optional unit), or a GPU count after an optional type.
_AMOUNT = re.compile(r"^(?P<head>(?:[^:]*:)*)(?P<number>\d+)(?P<unit>[KMGTkmgt]?)$")


def times(amount: str | int, n: int) -> str:
    """``8G`` x 2 = ``16G``; ``a100:1`` x 2 = ``a100:2`` (a memory size or a GPU request, ``n`` points' worth)."""
    found = _AMOUNT.match(str(amount).strip())
    if found is None:
        raise MrunnerError(f"cannot share {amount!r} among points: not a whole amount such as 8G or a100:1")
    return f"{found['head']}{int(found['number']) * n}{found['unit']}"


def shareable(amount: str | int) -> bool:
    """Whether ``times`` can multiply ``amount`` (a whole memory size such as 8G, 500M; a GPU count)."""
    return _AMOUNT.match(str(amount).strip()) is not None


def point_step(context: Mapping[str, Any], k: int) -> list[str]:
    """The ``srun`` options of a point's job step (``cmd_type: srun``) when a task of ``k`` points runs
    several at once: one task of the point's own CPUs, memory and GPUs, and only those (``--exact``), so that
    the steps run side by side, each confined by Slurm as far as the site's task plugin and cgroups do."""
    if at_once(context, k) <= 1:
        return []
    options = ["--exact", "--ntasks=1", f"--cpus-per-task={int(context.get('cpu') or 1)}"]
    if context.get("mem") not in (None, ""):
        options.append(f"--mem={context['mem']}")
    if context.get("gpu") not in (None, "", 0, "0"):
        options.append(f"--gres=gpu:{str(context['gpu']).strip()}")
    return options


def point_share(context: Mapping[str, Any], k: int) -> str | None:
    """What each point of a task of ``k`` points running several at once gets, for the dry run and the
    records: ``each point 2 CPUs, 8G, gpu:1 of the task's``; None when points run one after another."""
    if at_once(context, k) <= 1:
        return None
    parts = [f"{int(context.get('cpu') or 1)} CPU{'s' * (int(context.get('cpu') or 1) != 1)}"]
    if context.get("mem") not in (None, ""):
        parts.append(f"{context['mem']} memory")
    if context.get("gpu") not in (None, "", 0, "0"):
        parts.append(f"gpu:{context['gpu']}")
    return "each point " + ", ".join(parts) + " of the task's"


def minutes(value: str | int) -> float:
    """A Slurm time (``60``, ``MM:SS``, ``HH:MM:SS``, ``D-HH``, ``D-HH:MM``, ``D-HH:MM:SS``) in minutes."""
    text = str(value).strip()
    if "-" in text:
        days, rest = text.split("-", 1)
        hours, mins, secs = ([float(p) for p in rest.split(":")] + [0.0, 0.0])[:3]
        return float(days) * 1440 + hours * 60 + mins + secs / 60
    parts = [float(p) for p in text.split(":")]
    if len(parts) == 3:
        return parts[0] * 60 + parts[1] + parts[2] / 60
    return parts[0] + (parts[1] / 60 if len(parts) == 2 else 0)


def slurm_time(total_minutes: float) -> str:
    """Minutes as Slurm's ``D-HH:MM:SS``."""
    seconds = math.ceil(total_minutes * 60)
    days, seconds = divmod(seconds, 86400)
    return f"{days}-{seconds // 3600:02d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def describe(context: Mapping[str, Any], count: int, limits: Limits) -> str | None:
    """The dry run's line on packing, or None when each task runs one point as asked. A ``points_per_task``
    above the sweep's size packs it whole: its one task holds (and its time is that of) ``count`` points."""
    k = min(points_per_task(context, count, limits), max(count, 1))
    if k <= 1 and context.get("points_per_task") == "auto":
        return (
            "packed: points_per_task auto: 1 point per task as far as a dry run can tell (it reads no limits); "
            "at submission the site's MaxSubmitJobs less your jobs queued, and its MaxArraySize, decide"
        )
    if k <= 1:
        return None
    n = at_once(context, k)
    how = "one after another" if n == 1 else f"{n} at once ({point_share(context, k)})"
    auto = (
        " (auto, from Slurm's default MaxArraySize; the cluster's limits decide at submission)"
        if context.get("points_per_task") == "auto"
        else ""
    )
    time = (
        f", each task's time limit {task_context(context, k)['time']}" if context.get("time") not in (None, "") else ""
    )
    tasks = math.ceil(count / k)
    points = f"{tasks} array tasks of up to {k} points each" if tasks != 1 else f"1 array task of all {k} points"
    return f"packed: {points}{auto}, {how}{time}"


def decided(plan: Mapping[str, Any] | None, runs: Iterable[Any], k: int, max_array_size: int) -> dict[str, Any]:
    """``plan`` (what ``sweep.detail["packing"]`` records: per attempt, each decision's ``points_per_task``,
    ``max_array_size`` and runs) with the decision for ``runs`` added: recorded before their first sbatch."""
    result = {attempt: list(entries) for attempt, entries in (plan or {}).items()}
    by_attempt: dict[int, list[int]] = {}
    for run in runs:
        by_attempt.setdefault(run.attempt, []).append(run.index)
    for attempt, indices in by_attempt.items():
        entry = {"points_per_task": k, "max_array_size": max_array_size, "runs": ranges(indices)}
        result.setdefault(str(attempt), []).append(entry)
    return result


def recorded(plan: Mapping[str, Any] | None, runs: Iterable[T]) -> tuple[list[tuple[int, int, list[T]]], list[T]]:
    """``runs`` as the recorded ``plan`` packs them: per decision its ``points_per_task``, ``max_array_size``
    and its runs among ``runs`` (each packed as when it was decided: ``mrunner_slurm.submit.units`` of the
    same runs in the same order gives the same arrays), and the runs no decision covers."""
    plan = plan or {}
    groups: dict[tuple[int, int], list[T]] = {}
    decisions: dict[tuple[int, int], tuple[int, int]] = {}
    covered: dict[int, list[set[int]]] = {}
    left: list[T] = []
    for run in runs:
        attempt, index = run.attempt, run.index  # type: ignore[attr-defined]
        if attempt not in covered:
            entries = plan.get(str(attempt), [])
            covered[attempt] = [indices(entry["runs"]) for entry in entries]
            for position, entry in enumerate(entries):
                decisions[(attempt, position)] = (int(entry["points_per_task"]), int(entry["max_array_size"]))
        decision = next((n for n, members in enumerate(covered[attempt]) if index in members), None)
        if decision is None:
            left.append(run)
        else:
            groups.setdefault((attempt, decision), []).append(run)
    return [(*decisions[key], members) for key, members in groups.items()], left


def ranges(numbers: Iterable[int]) -> str:
    """``0-39,45,50-52``: sorted indices in a few characters (a sweep's decision is usually one range)."""
    parts: list[str] = []
    ordered = sorted(numbers)
    start = 0
    for position in range(1, len(ordered) + 1):
        if position == len(ordered) or ordered[position] != ordered[position - 1] + 1:
            first, last = ordered[start], ordered[position - 1]
            parts.append(str(first) if first == last else f"{first}-{last}")
            start = position
    return ",".join(parts)


def indices(text: str) -> set[int]:
    """The indices ``ranges`` wrote."""
    result: set[int] = set()
    for part in filter(None, text.split(",")):
        first, _, last = part.partition("-")
        result.update(range(int(first), int(last or first) + 1))
    return result
