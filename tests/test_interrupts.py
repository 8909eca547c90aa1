"""mrunner.interrupts: a stop that lands while a backend hands work over waits until what was accepted is recorded;
the signal that stopped the command is known, for its exit code; a stop Python would drop still arrives."""

from __future__ import annotations

import os
import signal
import sys
import weakref

import pytest

from mrunner import interrupts
from mrunner.testing import wait_for


@pytest.fixture(autouse=True)
def as_the_cli_sets_it():
    """SIGTERM as the mrunner command takes it (Ctrl-C's SIGINT is ignored in a test run in the background)."""
    before = signal.signal(signal.SIGTERM, interrupts.stopping)
    interrupts.forget()
    yield
    signal.signal(signal.SIGTERM, before)
    interrupts.forget()


def test_a_signal_in_the_block_is_raised_after_it_and_the_block_completes(capsys):
    done = []
    with pytest.raises(KeyboardInterrupt):
        with interrupts.held():
            os.kill(os.getpid(), signal.SIGTERM)  # Python runs the handler at the next instruction
            done.append("recorded")
    assert done == ["recorded"]
    assert "stopping once what the backend accepts is recorded" in capsys.readouterr().err
    assert signal.getsignal(signal.SIGTERM) is interrupts.stopping  # restored


def test_a_second_signal_stops_at_once():
    reached = []
    with pytest.raises(KeyboardInterrupt):
        with interrupts.held():
            os.kill(os.getpid(), signal.SIGTERM)
            os.kill(os.getpid(), signal.SIGTERM)
            reached.append("after the second")
    assert reached == []


def test_without_a_signal_nothing_is_raised_and_an_ignored_signal_stays_ignored():
    before = signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        with interrupts.held():
            os.kill(os.getpid(), signal.SIGHUP)
        assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGHUP, before)


def test_with_stop_the_second_signal_stops_the_wait_and_the_block_completes_the_third_breaks_in():
    stopped, reached = [], []
    with pytest.raises(KeyboardInterrupt) as raised:
        with interrupts.held(lambda: stopped.append("stop")):
            os.kill(os.getpid(), signal.SIGTERM)
            os.kill(os.getpid(), signal.SIGTERM)
            reached.append("recorded what was accepted")
    assert (stopped, reached) == (["stop"], ["recorded what was accepted"])
    assert not isinstance(raised.value, interrupts.Unsettled)
    with pytest.raises(interrupts.Unsettled):
        with interrupts.held(lambda: stopped.append("stop")):
            for _ in range(3):
                os.kill(os.getpid(), signal.SIGTERM)
            reached.append("after the third")
    assert reached == ["recorded what was accepted"]


@pytest.mark.parametrize("number", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_the_first_signal_names_the_stop_and_gives_its_code(number):
    """128 + the signal, as a shell reports a command it ended; a later one (a Ctrl-C to hurry a SIGTERM's
    stop) does not change which stop it was."""
    assert (interrupts.exit_code(), interrupts.said()) == (130, "interrupted by SIGINT")  # Python's own Ctrl-C
    before = {n: signal.signal(n, interrupts.stopping) for n in (signal.SIGINT, signal.SIGHUP)}
    try:
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), number)
        later = signal.SIGINT if number != signal.SIGINT else signal.SIGTERM
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), later)
    finally:
        for n, handler in before.items():
            signal.signal(n, handler)
    assert interrupts.exit_code() == 128 + number
    assert interrupts.said() == f"interrupted by {signal.Signals(number).name}"


def test_a_stop_that_lands_where_python_drops_it_arrives_after_all(monkeypatch):
    """A signal whose handler runs inside a weakref callback (as in the import system's module-lock callback,
    run by every import): Python prints the interrupt as "Exception ignored" and drops it. Once the command
    line took over, the same signal arrives again in ordinary code and stops it."""
    monkeypatch.setattr(sys, "unraisablehook", sys.unraisablehook)  # put back after the test
    interrupts.take_over()

    class Thing:
        pass

    def in_the_callback(_reference: object) -> None:
        os.kill(os.getpid(), signal.SIGTERM)  # its handler runs before `os.kill` returns: here, in the callback

    thing = Thing()
    reference = weakref.ref(thing, in_the_callback)
    with pytest.raises(KeyboardInterrupt):
        del thing  # the callback runs, and its interrupt is dropped
        wait_for(lambda: False, timeout=30, what="the dropped SIGTERM to arrive again")
    assert reference() is None and interrupts.exit_code() == 128 + signal.SIGTERM
