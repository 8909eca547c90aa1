"""The run-state rules of ``mrunner.states`` as rules: pure functions over states, no records, no backend."""

from __future__ import annotations

import itertools

import pytest

from mrunner import states
from mrunner.records import (
    ACTIVE,
    CANCELLED,
    COMPLETED,
    FAILED,
    LOST,
    PENDING,
    PLANNED,
    PREEMPTED,
    REQUEUED,
    RESUMABLE,
    RESUMED,
    RETRIED,
    RUNNING,
    STATES,
    SUBMITTED,
    SUBMITTED_BY_USER,
    TERMINAL,
    TIMEOUT,
    RunUpdate,
)
from mrunner.states import Change, change


def test_every_state_is_either_unfinished_or_ended():
    assert states.UNFINISHED | TERMINAL == set(STATES)
    assert not states.UNFINISHED & TERMINAL


def test_resume_runs_what_never_started_or_ended_without_completing():
    assert RESUMABLE == (TERMINAL - {COMPLETED}) | {PLANNED}
    assert not RESUMABLE & ACTIVE


def test_a_repeated_submission_skips_what_is_being_submitted_runs_or_completed():
    assert states.TAKEN == {PLANNED, SUBMITTED, PENDING, RUNNING, COMPLETED}
    assert not states.TAKEN & RESUMABLE - {PLANNED}


def test_only_a_backend_records_a_handed_state():
    """A hand-over that failed or was interrupted records failed or cancelled: those do not prove a start."""
    assert states.HANDED == {SUBMITTED, PENDING, RUNNING, COMPLETED, TIMEOUT, PREEMPTED, LOST}


@pytest.mark.parametrize("state", [PLANNED, *sorted(ACTIVE)])
@pytest.mark.parametrize("reported", STATES)
def test_a_run_not_yet_ended_takes_any_report(state, reported):
    assert change(state, 0, RunUpdate(0, reported)) is Change.SAME_ATTEMPT


@pytest.mark.parametrize("state, reported", [(s, r) for s, r in itertools.product(sorted(TERMINAL), STATES) if s != r])
def test_an_ended_run_keeps_its_end(state, reported):
    """A late "failed" from a killed process never overwrites the "cancelled" the user's cancel recorded."""
    assert change(state, 0, RunUpdate(0, reported)) is Change.KEPT
    assert change(state, 0, RunUpdate(0, reported), keep_terminal=False) is Change.SAME_ATTEMPT


def test_the_same_end_again_is_no_change_of_state():
    """Reported again (a late exit code, a backend reference), the recorded end is updated, not kept from."""
    assert change(COMPLETED, 0, RunUpdate(0, COMPLETED, exit_code=0)) is Change.SAME_ATTEMPT


@pytest.mark.parametrize("reported", [COMPLETED, FAILED])
def test_the_experiments_own_end_outranks_a_cancel_recorded_while_it_was_ending(reported):
    assert change(CANCELLED, 0, RunUpdate(0, reported, ended_by_itself=True)) is Change.SAME_ATTEMPT
    assert change(FAILED, 0, RunUpdate(0, COMPLETED, ended_by_itself=True)) is Change.KEPT  # only a cancel


@pytest.mark.parametrize("state", [s for s in STATES if s != CANCELLED])
def test_a_later_attempt_starts_whatever_the_run_was_recorded_as_but_cancelled(state):
    assert change(state, 1, RunUpdate(0, PENDING, attempt=2)) is Change.LATER_ATTEMPT
    assert change(state, 2, RunUpdate(0, PENDING, attempt=2)) is not Change.LATER_ATTEMPT  # the same attempt
    assert change(state, 3, RunUpdate(0, PENDING, attempt=2)) is Change.EARLIER_ATTEMPT  # an earlier one


@pytest.mark.parametrize("state", STATES)
@pytest.mark.parametrize(
    "update",
    [
        RunUpdate(0, CANCELLED, detail="stopped by a signal to its pid", attempt=0),  # the late end that was seen
        RunUpdate(0, COMPLETED, exit_code=0, ended_by_itself=True, attempt=0),  # even the experiment's own end
        RunUpdate(0, FAILED, exit_code=1, ended_by_itself=True, attempt=0),
        RunUpdate(0, RUNNING, backend_ref="pid:1@2", attempt=0),  # a started (pid) update
        RunUpdate(0, PREEMPTED, attempt=0),  # a refresh's reading of the platform
        RunUpdate(0, LOST, attempt=0),
    ],
)
@pytest.mark.parametrize("keep_terminal", [True, False])
def test_an_update_of_an_earlier_attempt_than_the_recorded_one_is_never_applied(state, update, keep_terminal):
    """A detached supervisor's end of attempt 0, recorded after `resume` reset the run to attempt 1 (waiting
    again), must neither end nor touch attempt 1, whatever it reports and whatever attempt 1 is recorded as."""
    assert change(state, 1, update, keep_terminal) is Change.EARLIER_ATTEMPT
    assert change(state, 0, update, keep_terminal) is not Change.EARLIER_ATTEMPT  # its own attempt: applied


def test_a_requeue_seen_after_a_cancel_does_not_undo_it():
    assert change(CANCELLED, 0, RunUpdate(0, PENDING, attempt=1)) is Change.KEPT
    assert change(CANCELLED, 0, RunUpdate(0, PENDING, attempt=1), keep_terminal=False) is Change.SAME_ATTEMPT


def test_the_cancels_own_account_of_a_later_attempt_and_that_attempts_own_end_are_recorded():
    assert change(CANCELLED, 0, RunUpdate(0, CANCELLED, attempt=1)) is Change.LATER_ATTEMPT
    assert change(CANCELLED, 0, RunUpdate(0, FAILED, attempt=1, ended_by_itself=True)) is Change.LATER_ATTEMPT


def test_an_attempt_that_ended_by_itself_completed_with_exit_code_0_only():
    assert states.ended(0) == COMPLETED
    assert [states.ended(code) for code in (1, 2, 137, -9)] == [FAILED] * 4


def test_how_attempts_started_when_the_platform_reports_a_later_one():
    """Recorded attempt 1 (a resume), reported attempt 4: 2 came after 1 failed by itself (retried), 3 after
    2 was stopped by the platform (requeued), 4 after 3 failed."""
    update = RunUpdate(0, RUNNING, attempt=4, ends={1: FAILED, 2: PREEMPTED, 3: FAILED})
    assert [states.start_cause(update, attempt, 1) for attempt in (1, 2, 3, 4)] == [RESUMED, RETRIED, REQUEUED, RETRIED]
    assert states.start_cause(update, 0, 0) == SUBMITTED_BY_USER
    assert states.restart_cause(update, 4) == RETRIED
    assert states.restart_cause(RunUpdate(0, RUNNING, attempt=1), 1) == REQUEUED  # nothing said of attempt 0


def test_an_attempt_the_platform_replaced_without_saying_how_it_ended_was_preempted():
    update = RunUpdate(0, RUNNING, attempt=3, ends={1: TIMEOUT})
    assert [states.replaced_end(update, attempt) for attempt in (0, 1, 2)] == [PREEMPTED, TIMEOUT, PREEMPTED]
