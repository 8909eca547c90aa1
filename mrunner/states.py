"""The rules over an experiment's states, in one place: which change a recorded state accepts from a
backend, how an attempt's own end reads as a state, how an attempt came to start, which states count as
unfinished, taken or handed over.

The names and the basic sets (``ACTIVE``, ``TERMINAL``, ``RESUMABLE``) stay in ``mrunner.records``, the
vocabulary backends import. Everything here is pure (no database, no backend): ``store.Store.apply`` asks
``change`` and writes what it answers, and tests/test_states.py tests the rules as rules.
"""

from __future__ import annotations

import enum

from mrunner.records import (
    ACTIVE,
    CANCELLED,
    COMPLETED,
    FAILED,
    PLANNED,
    PREEMPTED,
    REQUEUED,
    RESUMED,
    RETRIED,
    STATES,
    SUBMITTED_BY_USER,
    TERMINAL,
    RunUpdate,
)

#: Not ended yet: recorded and waiting to be handed over, or with its backend (what `--wait` and `gc` wait for).
UNFINISHED = ACTIVE | {PLANNED}
#: What a repeated submission on the same context must not run again: being submitted right now (planned,
#: by a submitter still running), queued or running, or completed.
TAKEN = ACTIVE | {COMPLETED, PLANNED}
#: States only a backend records, for a run it accepted; a hand-over that failed or was interrupted before
#: the backend had the run records ``failed`` or ``cancelled`` without any of them.
HANDED = frozenset(STATES) - {PLANNED, FAILED, CANCELLED}


class Change(enum.Enum):
    """What a backend's report does to a recorded run (the answer of ``change``)."""

    KEPT = "kept"  # the recorded state stays: the run had ended, and the report does not outrank that end
    SAME_ATTEMPT = "same attempt"  # the recorded attempt takes the reported state (if anything differs)
    LATER_ATTEMPT = "later attempt"  # the platform started a later attempt: the earlier ones end, it starts
    EARLIER_ATTEMPT = "earlier attempt"  # about an attempt before the recorded one: ignored, never applied


def change(state: str, attempt: int, update: RunUpdate, keep_terminal: bool = True) -> Change:
    """What ``update`` does to a run recorded as ``state`` in ``attempt``.

    A report of a later attempt (``update.attempt``: the platform requeued or replaced it) starts that
    attempt, whatever the run was recorded as but ``cancelled``: a cancel recorded first is never undone by
    a requeue seen meanwhile, unless the report is the cancel's own account of the attempt it stopped, or
    that attempt's own end. With ``keep_terminal`` an ended run keeps its end: a late ``failed`` from a
    killed process must not overwrite the ``cancelled`` the user's cancel recorded, though the experiment's
    own end (its exit-code file, ``ended_by_itself``) outranks a ``cancelled`` recorded while it was ending.

    A report of an earlier attempt than the recorded one is ignored, whatever it says: it comes late (a
    detached supervisor's end of the attempt that `resume` or a retry has since replaced, a refresh that read
    the platform before the new attempt was recorded) and applied to the recorded attempt it would end, or
    start, an attempt it never saw. Every update names its attempt for that reason; ``None`` (the recorded
    one) is left only for the core's own decisions about whatever attempt is recorded (a cancel).
    """
    if update.attempt is not None and update.attempt < attempt:
        return Change.EARLIER_ATTEMPT
    later = update.attempt is not None and update.attempt > attempt
    if later and (state != CANCELLED or update.state == CANCELLED or update.ended_by_itself):
        return Change.LATER_ATTEMPT
    outranks_cancel = update.ended_by_itself and state == CANCELLED
    if keep_terminal and state in TERMINAL and update.state != state and not outranks_cancel:
        return Change.KEPT
    return Change.SAME_ATTEMPT


def ended(exit_code: int) -> str:
    """The state of an attempt that ended by itself with ``exit_code``."""
    return COMPLETED if exit_code == 0 else FAILED


def restart_cause(update: RunUpdate, attempt: int) -> str:
    """How ``attempt``, which the platform started by itself, came: retried after the attempt before failed
    by itself, or requeued (``update.ends`` says how earlier attempts ended)."""
    return RETRIED if update.ends.get(attempt - 1) == FAILED else REQUEUED


def start_cause(update: RunUpdate, attempt: int, recorded_attempt: int) -> str:
    """How ``attempt`` started, when ``update`` reports a later one than ``recorded_attempt``: the recorded
    attempt by the user (the first) or by `resume`, any after it by the platform (``restart_cause``)."""
    if attempt > recorded_attempt:
        return restart_cause(update, attempt)
    return SUBMITTED_BY_USER if attempt == 0 else RESUMED


def replaced_end(update: RunUpdate, attempt: int) -> str:
    """How ``attempt``, which the platform replaced by the later one ``update`` reports, ended: as
    ``update.ends`` says, else ``preempted``."""
    return update.ends.get(attempt, PREEMPTED)
