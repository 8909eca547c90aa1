"""A site's job limits as its user can read them, and the refusal of a submission that would exceed them.

Sites cap the jobs a user may have queued or running (``MaxSubmitJobs``, and ``MaxJobs`` running, set on the
user's association or its QOS with ``sacctmgr``), count every array task as one job, and cap the size of a
job array (``MaxArraySize``). sbatch refuses a whole array that does not fit the allowance left ("Job
violates accounting/QOS policy"), so a sweep submitted as several arrays would be half accepted: mrunner
reads the limits first and refuses before anything is submitted, naming the limit and what to change.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from mrunner.errors import Refused
from mrunner_slurm.transport import Connection

#: One round trip: the user, its default account, its associations on this cluster, the QOS limits per
#: user, the controller's settings, and how many of its jobs (array tasks each) are queued or running.
#: Every part may fail (no accounting: sacctmgr cannot reach slurmdbd) and then says nothing.
_SCRIPT = (
    "id -un; echo @@; "
    'sacctmgr -nP show user "$(id -un)" format=DefaultAccount 2>/dev/null; echo @@; '
    'sacctmgr -nP show assoc user="$(id -un)" format=Cluster,Account,Partition,MaxSubmit,MaxJobs,DefaultQOS,QOS '
    "2>/dev/null; echo @@; "
    "sacctmgr -nP show qos format=Name,MaxSubmitPU,MaxJobsPU 2>/dev/null; echo @@; "
    "scontrol show config 2>/dev/null | grep -E '^(ClusterName|MaxArraySize|AccountingStorageEnforce) '; "
    "echo @@; "
    'squeue -h -r -u "$(id -un)" -t PD,R,CG,CF,S,RQ,RS,RH -o %i 2>/dev/null | wc -l'
)


@dataclass(frozen=True)
class Limits:
    """What binds a user's submissions on a site; ``None`` where the site sets no limit or the user cannot
    read it (no accounting, limits not enforced)."""

    #: jobs (each array task counts) the user may have queued or running at once: sbatch refuses beyond it
    max_submit_jobs: int | None
    #: jobs the user may have running at once: more wait in the queue (reason AssocMaxJobsLimit)
    max_jobs: int | None
    #: Slurm's MaxArraySize: array task ids must stay below it
    max_array_size: int | None
    #: the user's jobs (array tasks each) queued or running now
    jobs_in_queue: int | None

    @property
    def allowance(self) -> int | None:
        """How many more jobs the user may submit now; None when unlimited or unknown."""
        if self.max_submit_jobs is None:
            return None
        return max(self.max_submit_jobs - (self.jobs_in_queue or 0), 0)


def site_limits(connection: Connection, account: str | None = None, qos: str | None = None) -> Limits:
    """The site's limits for the connection's user, read in one remote command with ``sacctmgr -nP show
    assoc`` and ``show qos`` (the association of ``account``, else the user's default account, and of
    ``qos``, else the association's default QOS; the smaller of the two where both set one), ``scontrol
    show config`` and ``squeue``. Association and QOS limits count only where ``AccountingStorageEnforce``
    enforces limits. Never raises for a site without accounting: its limits are None."""
    result = connection.run(_SCRIPT)
    return parse(result.stdout.decode(errors="replace"), account, qos)


def parse(text: str, account: str | None = None, qos: str | None = None) -> Limits:
    """``site_limits``'s reading of the remote command's output (see ``_SCRIPT``)."""
    parts = [part.strip().splitlines() for part in text.split("@@")]
    parts += [[]] * (6 - len(parts))
    _, defaults, associations, qoses, config_lines, queued = parts[:6]
    config = dict(line.split("=", 1) for line in config_lines if "=" in line)
    config = {key.strip(): value.strip() for key, value in config.items()}
    enforced = "limits" in config.get("AccountingStorageEnforce", "") or "safe" in config.get(
        "AccountingStorageEnforce", ""
    )
    account = account or (defaults[0].strip() if defaults else None)
    cluster = config.get("ClusterName")
    max_submit = max_jobs = None
    chosen_qos = qos
    for line in associations:
        fields = line.split("|")
        if len(fields) < 7:
            continue
        where, name, partition, submit, running, default_qos, allowed = fields[:7]
        if (cluster and where != cluster) or (account and name != account) or partition:
            continue  # another cluster's, another account's, or a partition's own association
        max_submit, max_jobs = _number(submit), _number(running)
        if chosen_qos is None:
            listed = [q for q in allowed.split(",") if q]
            chosen_qos = default_qos or (listed[0] if len(listed) == 1 else None)
    for line in qoses:
        fields = line.split("|")
        if len(fields) >= 3 and fields[0] == chosen_qos:
            max_submit = _smaller(max_submit, _number(fields[1]))
            max_jobs = _smaller(max_jobs, _number(fields[2]))
    count = queued[0].strip() if queued else ""
    return Limits(
        max_submit_jobs=max_submit if enforced else None,
        max_jobs=max_jobs if enforced else None,
        max_array_size=_number(config.get("MaxArraySize", "")),
        jobs_in_queue=int(count) if count.isdigit() else None,
    )


def _number(text: str) -> int | None:
    text = text.strip()
    return int(text) if text.isdigit() else None


def _smaller(a: int | None, b: int | None) -> int | None:
    return b if a is None else a if b is None else min(a, b)


def refuse_beyond(limits: Limits, jobs: int, where: str) -> None:
    """Raise ``Refused`` when ``jobs`` more jobs (array tasks) exceed what the user may still submit: sbatch
    would refuse the arrays that do not fit, after the first ones were accepted."""
    allowance = limits.allowance
    if allowance is None or jobs <= allowance:
        return
    queued = limits.jobs_in_queue or 0
    now = f", {queued} of them queued or running now" if queued else ""
    fits = f"points_per_task: {math.ceil(jobs / allowance)}" if allowance else "points_per_task once some end"
    raise Refused(
        f"{where} allows at most MaxSubmitJobs={limits.max_submit_jobs} jobs queued or running{now}, and this "
        f"sweep needs {jobs} (one per experiment): set the context key points_per_task ({fits}) to run several "
        f"experiments per job, or submit fewer experiments"
    )
