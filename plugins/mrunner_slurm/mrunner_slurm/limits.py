"""A site's job limits as its user can read them, and the refusal of a submission that would exceed them.

Sites cap the jobs a user may have queued or running (``MaxSubmitJobs``, and ``MaxJobs`` running, set on the
user's association; ``MaxSubmitJobsPerUser``, ``MaxJobsPerUser`` on a QOS; ``GrpSubmitJobs``, ``GrpJobs`` on an
account or a QOS for all its users together, all with ``sacctmgr``), count every array task as one job, and
cap the size of a job array (``MaxArraySize``). sbatch refuses a whole array that does not fit the allowance left ("Job
violates accounting/QOS policy"), so a sweep submitted as several arrays would be half accepted: mrunner
reads the limits first and refuses before anything is submitted, naming the limit and what to change.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from mrunner.errors import Refused
from mrunner_slurm import packing, storage_check
from mrunner_slurm.transport import Connection

#: One round trip, its commands run at once (each sacctmgr asks slurmdbd: ~0.2 s on a loaded machine): the
#: user, its default account and its associations (``withassoc``), then the Grp limits of those accounts'
#: own associations (all their users' jobs count), the QOS limits (per user and for the whole QOS), the
#: controller's settings, and the jobs (array tasks each) queued or running, counted per user, account, QOS
#: and state (``uniq -c``: a few lines whatever the queue's size), and each partition's time limit (sinfo's
#: ``%l``, the default partition starred). Every part may fail (no accounting: sacctmgr cannot reach
#: slurmdbd) and then says nothing. With a storage folder, whether the user can write it (``storage_check``)
#: rides along: what refused it.
_SCRIPT = (
    "u=$(id -un); d=$(mktemp -d); trap 'rm -rf \"$d\"' EXIT; "
    '{ sacctmgr -nP show user "$u" withassoc '
    "format=DefaultAccount,Cluster,Account,Partition,MaxSubmit,MaxJobs,DefaultQOS,QOS >$d/a 2>/dev/null; "
    "a=$(cut -d'|' -f3 $d/a | sort -u | paste -sd,); "
    'if [ -n "$a" ]; then sacctmgr -nP show assoc accounts="$a" '
    "format=Cluster,Account,User,Partition,GrpSubmit,GrpJobs >$d/g 2>/dev/null; fi; } & "
    "sacctmgr -nP show qos format=Name,MaxSubmitPU,MaxJobsPU,GrpSubmit,GrpJobs >$d/q 2>/dev/null & "
    "scontrol show config 2>/dev/null | grep -E '^(ClusterName|MaxArraySize|AccountingStorageEnforce) ' >$d/c & "
    "squeue -h -r -t PD,R,CG,CF,S,RQ,RS,RH -o '%u|%a|%q|%t' 2>/dev/null | sort | uniq -c >$d/n & "
    "sinfo -h -a -o '%P|%l' 2>/dev/null | sort -u >$d/p & "
    "{STORAGE} "
    'wait; echo "$u"; for f in a q c n g s p; do echo @@; cat $d/$f 2>/dev/null; done'
)


@dataclass(frozen=True)
class Bound:
    """One limit on the jobs queued or running at once: its name as the site's admins set it, its value,
    how many jobs count against it now, and whose jobs count (empty: the user's in its association)."""

    name: str
    limit: int
    used: int
    scope: str = ""

    @property
    def left(self) -> int:
        return max(self.limit - self.used, 0)

    @property
    def phrase(self) -> str:
        """``MaxSubmitJobs=20 jobs queued or running``, with its scope: the refusal's words."""
        return f"{self.name}={self.limit} jobs queued or running" + (f" {self.scope}" if self.scope else "")


@dataclass(frozen=True)
class Limits:
    """What binds a user's submissions on a site; ``None`` where the site sets no limit or the user cannot
    read it (no accounting, limits not enforced). Of several limits on queued jobs (the association's
    MaxSubmitJobs, the QOS's MaxSubmitJobsPerUser and GrpSubmitJobs, the account's GrpSubmitJobs), the one
    that leaves the fewest jobs binds: its value, its name and the jobs counted against it are below."""

    #: jobs (each array task counts) the binding limit allows queued or running at once: sbatch refuses beyond
    max_submit_jobs: int | None
    #: jobs the user may have running at once (the smallest such limit): more wait in the queue
    max_jobs: int | None
    #: Slurm's MaxArraySize: array task ids must stay below it
    max_array_size: int | None
    #: jobs (array tasks each) queued or running now that count against ``max_submit_jobs`` (without a
    #: limit: the user's own)
    jobs_in_queue: int | None
    #: the binding limit on queued jobs in words, its name as ``sacctmgr`` shows it (``Bound.phrase``);
    #: empty: the association's MaxSubmitJobs
    submit_limit: str = ""
    #: each limit on running jobs by the pending reason Slurm gives a job it holds back for it
    #: (``AssocMaxJobsLimit``, ``QOSMaxJobsPerUserLimit``, ``AssocGrpJobsLimit``, ``QOSGrpJobsLimit``): what
    #: `status` says of such a job (``mrunner_slurm.jobs.pending_reason``)
    running: dict[str, int] = field(default_factory=dict)
    #: why the context's ``storage_dir`` cannot be written, in one line (``storage_check.refusal``); None: it can
    storage_refusal: str | None = None
    #: each partition's MaxTime as ``sinfo`` writes it (``infinite``, ``5:00``, ``1-00:00:00``)
    max_times: dict[str, str] = field(default_factory=dict)
    #: the partition a job asking for none goes to (``Default=YES``)
    default_partition: str | None = None

    @property
    def allowance(self) -> int | None:
        """How many more jobs the user may submit now; None when unlimited or unknown."""
        if self.max_submit_jobs is None:
            return None
        return max(self.max_submit_jobs - (self.jobs_in_queue or 0), 0)


def site_limits(
    connection: Connection, account: str | None = None, qos: str | None = None, storage_dir: str | None = None
) -> Limits:
    """The site's limits for the connection's user, read in one remote command with ``sacctmgr -nP show
    user withassoc``, ``show assoc`` (the accounts' Grp limits) and ``show qos`` (the association of
    ``account``, else the user's default account, and of ``qos``, else the association's default QOS; the
    one leaving the fewest jobs binds), ``scontrol show config`` and ``squeue``. Association and QOS limits
    count only where ``AccountingStorageEnforce`` enforces limits. Never raises for a site without
    accounting: its limits are None. With ``storage_dir``, whether the user can write it, in the same
    command (``Limits.storage_refusal``)."""
    probe = "" if storage_dir is None else storage_check.script(storage_dir, "$d/s") + " &"
    result = connection.run(_SCRIPT.replace("{STORAGE}", probe))
    return parse(result.stdout.decode(errors="replace"), account, qos, storage_dir)


class Reading:
    """``site_limits`` read on a thread of its own, so that a submission reads them while it snapshots the
    code and records the sweep (three sacctmgr, scontrol and squeue cost more than a round trip), and waits
    only at ``limits()``. ``connect`` opens the connection (without prompting) in that thread; when it gives
    none, ``limits()`` answers None and the caller reads them itself."""

    def __init__(
        self, connect: Callable[[], Connection | None], account: str | None, qos: str | None, storage_dir: str
    ) -> None:
        self._found: Limits | None = None
        self._failure: BaseException | None = None
        self._thread = threading.Thread(
            target=self._read, args=(connect, account, qos, storage_dir), name="mrunner-slurm-limits", daemon=True
        )
        self._thread.start()

    def _read(
        self, connect: Callable[[], Connection | None], account: str | None, qos: str | None, storage_dir: str
    ) -> None:
        try:
            connection = connect()
            if connection is not None:
                self._found = site_limits(connection, account, qos, storage_dir)
        except BaseException as failure:  # raised again in the caller's thread by limits()
            self._failure = failure

    def limits(self) -> Limits | None:
        self._thread.join()
        if self._failure is not None:
            raise self._failure
        return self._found


def parse(text: str, account: str | None = None, qos: str | None = None, storage_dir: str | None = None) -> Limits:
    """``site_limits``'s reading of the remote command's output (see ``_SCRIPT``)."""
    parts = [part.strip().splitlines() for part in text.split("@@")]
    parts += [[]] * (8 - len(parts))
    user_lines, associations, qoses, config_lines, queued, groups, storage, partitions = parts[:8]
    user = user_lines[0].strip() if user_lines else ""
    config = dict(line.split("=", 1) for line in config_lines if "=" in line)
    config = {key.strip(): value.strip() for key, value in config.items()}
    enforce = config.get("AccountingStorageEnforce", "")
    enforced = "limits" in enforce or "safe" in enforce
    cluster = config.get("ClusterName")
    jobs = _queue(queued)

    def count(**where: str | None) -> int:
        """The jobs queued or running of ``user``, ``account`` and ``qos`` as given."""
        return sum(
            n
            for (u, a, q, _), n in jobs.items()
            if all(value == {"user": u, "account": a, "qos": q}[key] for key, value in where.items())
        )

    submit: list[Bound] = []
    running: dict[str, int] = {}
    chosen_qos = qos
    for line in associations:
        fields = line.split("|")
        if len(fields) < 8:
            continue
        default_account, where, name, partition, max_submit, max_jobs, default_qos, allowed = fields[:8]
        account = account or default_account
        if (cluster and where != cluster) or (account and name != account) or partition:
            continue  # another cluster's, another account's, or a partition's own association
        if (limit := _number(max_submit)) is not None:
            submit.append(Bound("MaxSubmitJobs", limit, count(user=user, account=account)))
        if (limit := _number(max_jobs)) is not None:
            running["AssocMaxJobsLimit"] = limit
        if chosen_qos is None:
            listed = [q for q in allowed.split(",") if q]
            chosen_qos = default_qos or (listed[0] if len(listed) == 1 else None)
    for line in groups:  # the account's own association (no user): every user of the account counts
        fields = line.split("|")
        if len(fields) >= 6 and fields[1] == account and not fields[2] and not fields[3]:
            if (cluster and fields[0] != cluster) or not account:
                continue
            if (limit := _number(fields[4])) is not None:
                scope = f"in account {account} (all its users' jobs count)"
                submit.append(Bound("GrpSubmitJobs", limit, count(account=account), scope))
            if (limit := _number(fields[5])) is not None:
                running["AssocGrpJobsLimit"] = limit
    for line in qoses:
        fields = (line.split("|") + [""] * 5)[:5]
        if not chosen_qos or fields[0] != chosen_qos:
            continue
        if (limit := _number(fields[1])) is not None:
            scope = f"of yours in QOS {chosen_qos}"
            submit.append(Bound("MaxSubmitJobsPerUser", limit, count(user=user, qos=chosen_qos), scope))
        if (limit := _number(fields[3])) is not None:
            scope = f"in QOS {chosen_qos} (all its users' jobs count)"
            submit.append(Bound("GrpSubmitJobs", limit, count(qos=chosen_qos), scope))
        if (limit := _number(fields[2])) is not None:
            running["QOSMaxJobsPerUserLimit"] = limit
        if (limit := _number(fields[4])) is not None:
            running["QOSGrpJobsLimit"] = limit
    if not enforced:
        submit, running = [], {}
    binding = min(submit, key=lambda bound: (bound.left, bound.limit), default=None)
    return Limits(
        max_submit_jobs=binding.limit if binding else None,
        max_jobs=min(running.values(), default=None),
        max_array_size=_number(config.get("MaxArraySize", "")),
        jobs_in_queue=binding.used if binding else (count(user=user) if jobs or queued else None),
        submit_limit=binding.phrase if binding else "",
        running=running,
        storage_refusal=None if storage_dir is None else storage_check.refusal("\n".join(storage), storage_dir, user),
        **_partitions(partitions),
    )


def _partitions(lines: list[str]) -> dict[str, Any]:
    """``max_times`` and ``default_partition`` from ``sinfo -o '%P|%l'`` lines (``debug*|infinite``: the
    default partition is starred)."""
    max_times: dict[str, str] = {}
    default = None
    for line in lines:
        name, _, limit = line.strip().partition("|")
        if name and limit:
            if name.endswith("*"):
                name = default = name[:-1]
            max_times[name] = limit
    return {"max_times": max_times, "default_partition": default}


def _queue(lines: list[str]) -> dict[tuple[str, str, str, str], int]:
    """``uniq -c`` of ``user|account|qos|state`` lines: the jobs of each."""
    jobs: dict[tuple[str, str, str, str], int] = {}
    for line in lines:
        number, _, rest = line.strip().partition(" ")
        fields = rest.strip().split("|")
        if number.isdigit() and len(fields) == 4:
            key = (fields[0], fields[1], fields[2], fields[3])
            jobs[key] = jobs.get(key, 0) + int(number)
    return jobs


def _number(text: str) -> int | None:
    text = text.strip()
    return int(text) if text.isdigit() else None


def refuse_beyond(
    limits: Limits,
    jobs: int,
    where: str,
    points_per_task: int = 1,
    classes: Sequence[int] = (),
    waiting: int = 0,
    refusal: type[Refused] = Refused,
) -> None:
    """Raise ``Refused`` when ``jobs`` more jobs (array tasks of ``points_per_task`` experiments) exceed what
    the user may still submit: sbatch would refuse the arrays that do not fit, after the first ones were
    accepted. ``classes``: the experiments of each resource class being added (each its own arrays), beyond
    ``waiting`` jobs of arrays decided earlier: the ``points_per_task`` the refusal suggests is one with
    which they fit (``packing.fitting``). ``refusal``: the exception raised (``RefusedAsPlanned`` before the
    sweep is recorded)."""
    allowance = limits.allowance
    if allowance is None or jobs <= allowance:
        return
    binding = limits.submit_limit or f"MaxSubmitJobs={limits.max_submit_jobs} jobs queued or running"
    queued = limits.jobs_in_queue or 0
    now = f", {queued} of them queued or running now" if queued else ""
    each = _counted(points_per_task, classes)
    fits = packing.fitting(classes, allowance - waiting) if classes else math.ceil(jobs * points_per_task / allowance)
    if not allowance:
        change = "wait for some of those jobs to end"
    elif fits is None:
        change = (
            f"its {len(classes)} resource classes need a job each at least (each is its own array): sweep "
            f"fewer resource classes, or wait for some of those jobs to end"
        )
    else:
        change = (
            f"set the context key points_per_task (points_per_task: {fits}, or auto) to run more experiments "
            f"per job, or submit fewer experiments"
        )
    raise refusal(f"{where} allows at most {binding}{now}, and this sweep needs {jobs} ({each}): {change}")


def _counted(points_per_task: int, classes: Sequence[int]) -> str:
    """How a refusal's jobs come about, as the sweep is packed: a ``points_per_task`` beyond a resource
    class's experiments packs the class into one task, so a huge K reads as what it does, not as its
    number."""
    k = min(points_per_task, max(classes)) if classes else points_per_task
    if k <= 1:
        return "one per experiment"
    if len(classes) > 1:
        return "one per resource class" if k >= max(classes) else f"one per {k} experiments of each resource class"
    return "one for all its experiments" if classes and k >= classes[0] else f"one per {k} experiments"


def refuse_overtime(limits: Limits, tasks: Iterable[tuple[Mapping[str, Any], int]], where: str) -> None:
    """Raise ``Refused`` when a task (each resource class's context and the points its tasks hold at most)
    asks for more time than its partition's MaxTime: such a job is refused by sbatch where the site enforces
    partition limits, and waits forever (``PartitionTimeLimit``) where it does not. Packed, a task asks for
    ``time`` x its rounds (``packing.task_context``), so a point's time that fits may not fit a task."""
    for context, k in tasks:
        time = context.get("time")
        if time in (None, "") or _sets_time(context):
            continue
        asked = packing.task_context(context, k)["time"]
        names = str(context.get("partition") or limits.default_partition or "").split(",")
        bounds = [limits.max_times[name] for name in names if name in limits.max_times]
        if not bounds or len(bounds) < len(names):
            continue  # a partition the site does not list: sbatch --test-only says so
        longest = max(bounds, key=_minutes)
        if _minutes(str(asked)) <= _minutes(longest):
            continue
        partition, most = ",".join(names), _minutes(longest)
        allowed = f"partition {partition} allows at most {most:g} minutes per job (MaxTime={longest})"
        if str(asked) == str(time) or _minutes(str(time)) > most:
            raise Refused(
                f"{where}: {allowed}, and time={time} asks for more: set the context key time to at most "
                f"{math.floor(most)} (minutes), or the context key partition to another partition"
            )
        n = packing.at_once(context, k)
        fits = n * max(int(most // _minutes(str(time))), 1)
        how = "one after another" if n == 1 else f"{n} at once"
        raise Refused(
            f"{where}: {allowed}, and a task of {k} points of time={time}, {how}, asks for "
            f"{_minutes(str(asked)):g}: set the context key points_per_task to at most {fits} (or raise "
            f"points_at_once), lower time, or set the context key partition to another partition"
        )


def _sets_time(context: Mapping[str, Any]) -> bool:
    """Whether the context's ``sbatch_options`` set the task's time themselves (``--time``, ``-t``)."""
    extra = context.get("sbatch_options") or []
    words = [f"--{key.lstrip('-')}" for key in extra] if isinstance(extra, dict) else [str(item) for item in extra]
    return any(word == "-t" or word.startswith(("--time", "-t")) for word in words)


def _minutes(time: str) -> float:
    """A Slurm time in minutes; unlimited is longer than any."""
    if time.strip().lower() in packing.UNLIMITED_TIMES:
        return math.inf
    return packing.minutes(time)
