"""A site's job limits as its user can read them, and the refusal of a submission that would exceed them.

Sites cap the jobs a user may have queued or running (``MaxSubmitJobs``, and ``MaxJobs`` running, set on the
user's association or its QOS with ``sacctmgr``), count every array task as one job, and cap the size of a
job array (``MaxArraySize``). sbatch refuses a whole array that does not fit the allowance left ("Job
violates accounting/QOS policy"), so a sweep submitted as several arrays would be half accepted: mrunner
reads the limits first and refuses before anything is submitted, naming the limit and what to change.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass

from mrunner.errors import Refused
from mrunner_slurm.transport import Connection

#: One round trip, its commands run at once (each sacctmgr asks slurmdbd: ~0.2 s on a loaded machine): the
#: user, its default account and its associations (``withassoc``), the QOS limits per user, the controller's
#: settings, and how many of its jobs (array tasks each) are queued or running. Every part may fail (no
#: accounting: sacctmgr cannot reach slurmdbd) and then says nothing.
_SCRIPT = (
    "u=$(id -un); d=$(mktemp -d); trap 'rm -rf \"$d\"' EXIT; "
    'sacctmgr -nP show user "$u" withassoc '
    "format=DefaultAccount,Cluster,Account,Partition,MaxSubmit,MaxJobs,DefaultQOS,QOS >$d/a 2>/dev/null & "
    "sacctmgr -nP show qos format=Name,MaxSubmitPU,MaxJobsPU >$d/q 2>/dev/null & "
    "scontrol show config 2>/dev/null | grep -E '^(ClusterName|MaxArraySize|AccountingStorageEnforce) ' >$d/c & "
    'squeue -h -r -u "$u" -t PD,R,CG,CF,S,RQ,RS,RH -o %i 2>/dev/null | wc -l >$d/n & '
    'wait; echo "$u"; for f in a q c n; do echo @@; cat $d/$f; done'
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
    user withassoc`` and ``show qos`` (the association of ``account``, else the user's default account, and of
    ``qos``, else the association's default QOS; the smaller of the two where both set one), ``scontrol
    show config`` and ``squeue``. Association and QOS limits count only where ``AccountingStorageEnforce``
    enforces limits. Never raises for a site without accounting: its limits are None."""
    result = connection.run(_SCRIPT)
    return parse(result.stdout.decode(errors="replace"), account, qos)


class Reading:
    """``site_limits`` read on a thread of its own, so that a submission reads them while it uploads the code
    (three sacctmgr, scontrol and squeue cost more than a round trip), and waits only at ``limits()``."""

    def __init__(self, connection: Connection, account: str | None = None, qos: str | None = None) -> None:
        self._found: Limits | None = None
        self._failure: BaseException | None = None
        self._thread = threading.Thread(
            target=self._read, args=(connection, account, qos), name="mrunner-slurm-limits", daemon=True
        )
        self._thread.start()

    def _read(self, connection: Connection, account: str | None, qos: str | None) -> None:
        try:
            self._found = site_limits(connection, account, qos)
        except BaseException as failure:  # raised again in the caller's thread by limits()
            self._failure = failure

    def limits(self) -> Limits:
        self._thread.join()
        if self._failure is not None:
            raise self._failure
        assert self._found is not None
        return self._found


def parse(text: str, account: str | None = None, qos: str | None = None) -> Limits:
    """``site_limits``'s reading of the remote command's output (see ``_SCRIPT``)."""
    parts = [part.strip().splitlines() for part in text.split("@@")]
    parts += [[]] * (5 - len(parts))
    _, associations, qoses, config_lines, queued = parts[:5]
    config = dict(line.split("=", 1) for line in config_lines if "=" in line)
    config = {key.strip(): value.strip() for key, value in config.items()}
    enforced = "limits" in config.get("AccountingStorageEnforce", "") or "safe" in config.get(
        "AccountingStorageEnforce", ""
    )
    cluster = config.get("ClusterName")
    max_submit = max_jobs = None
    chosen_qos = qos
    for line in associations:
        fields = line.split("|")
        if len(fields) < 8:
            continue
        default_account, where, name, partition, submit, running, default_qos, allowed = fields[:8]
        account = account or default_account
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


def refuse_beyond(limits: Limits, jobs: int, where: str, points_per_task: int = 1) -> None:
    """Raise ``Refused`` when ``jobs`` more jobs (array tasks of ``points_per_task`` experiments) exceed what
    the user may still submit: sbatch would refuse the arrays that do not fit, after the first ones were
    accepted."""
    allowance = limits.allowance
    if allowance is None or jobs <= allowance:
        return
    queued = limits.jobs_in_queue or 0
    now = f", {queued} of them queued or running now" if queued else ""
    each = "one per experiment" if points_per_task == 1 else f"one per {points_per_task} experiments"
    fits = (
        f"points_per_task: {math.ceil(jobs * points_per_task / allowance)}, or auto"
        if allowance
        else "points_per_task once some end"
    )
    raise Refused(
        f"{where} allows at most MaxSubmitJobs={limits.max_submit_jobs} jobs queued or running{now}, and this "
        f"sweep needs {jobs} ({each}): set the context key points_per_task ({fits}) to run more "
        f"experiments per job, or submit fewer experiments"
    )
