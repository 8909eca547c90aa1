"""What mrunner records about a sweep and its experiments, and the states an experiment goes through.

These plain objects are what the core hands to backend hooks and what ``store.Store`` persists. They hold
no secret: secrets travel separately, from the trackers to the backend, and are never recorded.
"""

from __future__ import annotations

import hashlib
import signal
from dataclasses import asdict, dataclass, field
from typing import Any

from mrunner.errors import mask_credentials

PLANNED = "planned"  # recorded, not yet handed to the backend
SUBMITTED = "submitted"  # the backend accepted it
PENDING = "pending"  # queued by the scheduler
RUNNING = "running"
COMPLETED = "completed"
FAILED = "failed"
CANCELLED = "cancelled"
TIMEOUT = "timeout"
PREEMPTED = "preempted"
LOST = "lost"  # the backend no longer knows it and it never reported an end

STATES = (PLANNED, SUBMITTED, PENDING, RUNNING, COMPLETED, FAILED, CANCELLED, TIMEOUT, PREEMPTED, LOST)
ACTIVE = frozenset({SUBMITTED, PENDING, RUNNING})
TERMINAL = frozenset({COMPLETED, FAILED, CANCELLED, TIMEOUT, PREEMPTED, LOST})
# What `mrunner resume` runs again: never handed over, or ended without completing.
RESUMABLE = frozenset({PLANNED, FAILED, CANCELLED, TIMEOUT, PREEMPTED, LOST})
#: What a backend's detail of a ``pending`` run says when the platform can never run the request as asked
#: (more nodes than the partition has, more CPUs than any node): `--wait` ends with that line instead of
#: waiting for ever.
CANNOT_RUN = "can never run as asked"


@dataclass
class Run:
    """One experiment of a sweep, as recorded.

    ``index`` is its position in the sweep (the Slurm array index, the suffix of its Kubernetes Job);
    ``id`` its stable identity (script, parameters, code snapshot); ``attempt`` grows on each resume, so a
    backend can name a resubmission differently from the attempt that failed while keeping a repeated
    submission of the same attempt idempotent. ``resources`` are the context keys this experiment asks for
    differently from its sweep (a swept ``context.mem=8G,32G``, a spec's per-experiment resources): its
    context is ``context(sweep)``, and runs of equal ``resources`` form one resource class.
    """

    sweep_id: str
    index: int
    id: str
    name: str
    parameters: dict[str, Any]
    command: list[str]
    env: dict[str, str] = field(default_factory=dict)
    tags: list[str] = field(default_factory=list)
    state: str = PLANNED
    attempt: int = 0
    backend_ref: str | None = None
    exit_code: int | None = None
    updated_at: float = 0.0
    resources: dict[str, Any] = field(default_factory=dict)

    @property
    def ref(self) -> str:
        """How a user names this experiment on the command line: ``SWEEP/INDEX``."""
        return f"{self.sweep_id}/{self.index}"

    def context(self, sweep: Sweep) -> dict[str, Any]:
        """The context this experiment runs with: the sweep's, with its own ``resources`` over it."""
        return {**sweep.context, **self.resources} if self.resources else sweep.context

    @property
    def resource_class(self) -> str:
        """Its ``resources`` as one label (``mem=32G gpu=2``), the same for every run of its class; empty when
        it asks for nothing beyond its sweep's context."""
        return resource_label(self.resources)

    def config_document(self, sweep: Sweep) -> dict[str, Any]:
        """The content of the experiment's ``MRUNNER_CONFIG`` file: its parameters and metadata."""
        return {
            "parameters": self.parameters,
            "name": self.name,
            "id": self.id,
            "index": self.index,
            "attempt": self.attempt,
            "sweep": sweep.id,
            "sweep_name": sweep.name,
            "tags": self.tags,
            "project": sweep.project,
            "backend": sweep.backend,
            "context": sweep.context_name,
            "snapshot": sweep.snapshot_digest,
            "git_commit": sweep.git_commit,
            "git_dirty": sweep.git_dirty,
        }


def resource_label(resources: dict[str, Any]) -> str:
    """``mem=32G gpu=2``: per-point resources as a label, keys in a fixed order."""
    if not resources:  # most points ask for none: asked per point, so spared the join
        return ""
    return " ".join(f"{key}={resources[key]}" for key in sorted(resources))


@dataclass
class Sweep:
    """A submission: a set of runs of one code snapshot on one context."""

    id: str
    name: str
    created_at: float
    context_name: str
    backend: str
    context: dict[str, Any]
    project: str
    snapshot_digest: str
    project_dir: str
    workdir: str = "."  # the directory experiments start in, relative to the snapshot root
    git_commit: str | None = None
    git_dirty: bool | None = None
    tags: list[str] = field(default_factory=list)
    argv: list[str] = field(default_factory=list)
    package: dict[str, Any] = field(default_factory=dict)  # what the backend's packaging step returned
    detail: dict[str, Any] = field(default_factory=dict)  # backend bookkeeping (supervisor pid, job ids, ...)


#: How an attempt came to start.
SUBMITTED_BY_USER = "submitted"
REQUEUED = "requeued"  # started again by the platform (or the backend) after it stopped the attempt before
RETRIED = "retried"  # started again after the attempt before failed by itself (``retry_failed``)
RESUMED = "resumed"  # started again by `mrunner resume`


@dataclass
class Attempt:
    """One attempt of an experiment: how it started, with what, and how it ended (``end`` None: not yet)."""

    number: int
    started_at: float
    cause: str
    snapshot_digest: str
    #: the context keys this attempt ran with that differ from the sweep's first submission
    changes: dict[str, Any] = field(default_factory=dict)
    ended_at: float | None = None
    end: str | None = None
    exit_code: int | None = None
    detail: str | None = None


@dataclass
class RunUpdate:
    """A change of state a backend reports for one run of a sweep."""

    index: int
    state: str
    exit_code: int | None = None
    backend_ref: str | None = None
    detail: str | None = None
    #: The end the experiment's own exit-code file tells: it outranks a ``cancelled`` recorded while the
    #: experiment was already ending (a cancel is recorded before the signal, so a waiting run never starts).
    ended_by_itself: bool = False
    #: The attempt this state is of: the recorded one, or a later one the platform started by itself (a requeue
    #: after preemption or the time limit, a replaced pod). An update of an earlier attempt than the recorded
    #: one is ignored (``states.change``): it arrived after `resume` or a retry started the next. ``None``: the
    #: recorded attempt, whichever it is (only for the core's own decisions, such as a user's cancel).
    attempt: int | None = None
    #: How each earlier attempt ended (attempt -> state) when ``attempt`` is set; one missing is ``preempted``.
    ends: dict[int, str] = field(default_factory=dict)
    #: The exit code of each earlier attempt that ended by itself (a failure retried within ``retry_failed``).
    end_codes: dict[int, int] = field(default_factory=dict)
    #: Why an earlier attempt ended, where the backend knows better than "stopped by the platform": a packed
    #: point its task never reached in that attempt.
    end_details: dict[int, str] = field(default_factory=dict)
    #: Why the platform started an attempt, where the backend knows better than "requeued by the platform": a
    #: packed point whose task was requeued for the retry of another of its points.
    restart_details: dict[int, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.state not in STATES:
            raise ValueError(f"unknown experiment state {self.state!r}; states are {', '.join(STATES)}")
        killer = killed_by(self.exit_code) if self.state == FAILED else None
        if killer:  # every backend's failure by a signal names it, its exit code as a shell has it
            self.exit_code = 128 - (self.exit_code or 0)
            if killer not in (self.detail or ""):
                self.detail = f"killed by {killer}" + (f": {self.detail}" if self.detail else "")
        self.end_codes = {n: 128 - code if code < 0 else code for n, code in self.end_codes.items()}


#: The facts a backend records as a file's text for a resume (``Backend.identify``): shown as their digest and
#: line count, never as text, which may hold an index URL's token (``--index-url https://user:TOKEN@...``).
WITHHELD_FACTS = frozenset({"requirements"})


def shown(sweep: Sweep) -> dict[str, Any]:
    """The sweep's fields as `status --json` shows them: every fact named in ``WITHHELD_FACTS``, at any depth
    of ``detail`` and ``package``, as ``sha256:HEX (N lines)``; in every other text, a URL's credentials
    masked (``errors.mask_credentials``: a tracker's URI, an index URL quoted in a failure)."""

    def withheld(value: Any) -> Any:
        if isinstance(value, dict):
            return {
                key: _digest(item) if key in WITHHELD_FACTS and isinstance(item, str) else withheld(item)
                for key, item in value.items()
            }
        if isinstance(value, list):
            return [withheld(item) for item in value]
        return mask_credentials(value) if isinstance(value, str) else value

    return {key: withheld(value) for key, value in asdict(sweep).items()}


def _digest(text: str) -> str:
    lines = len(text.splitlines())
    digest = hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()
    return f"sha256:{digest} ({lines} line{'s' * (lines != 1)}; not shown: it may hold a token)"


def killed_by(exit_code: int | None) -> str | None:
    """The signal that killed the experiment (``SIGUSR1``) when its exit code is -N, as the attempt wrapper
    writes a death by signal N (it saw it through ``waitpid``) and Python's ``Popen`` has it; ``None`` for any
    other, 128 + N included: an experiment may exit 130 by its own choice, which is not a signal's doing."""
    if exit_code is None or exit_code >= 0:
        return None
    try:
        return signal.Signals(-exit_code).name
    except ValueError:
        return None
