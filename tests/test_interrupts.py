"""mrunner.interrupts: a stop that lands while a backend hands work over waits until what was accepted is recorded."""

from __future__ import annotations

import os
import signal

import pytest

from mrunner import interrupts
from mrunner.cli import _interrupt


@pytest.fixture(autouse=True)
def as_the_cli_sets_it():
    """SIGTERM as the mrunner command takes it (Ctrl-C's SIGINT is ignored in a test run in the background)."""
    before = signal.signal(signal.SIGTERM, _interrupt)
    yield
    signal.signal(signal.SIGTERM, before)


def test_a_signal_in_the_block_is_raised_after_it_and_the_block_completes(capsys):
    done = []
    with pytest.raises(KeyboardInterrupt):
        with interrupts.held():
            os.kill(os.getpid(), signal.SIGTERM)  # Python runs the handler at the next instruction
            done.append("recorded")
    assert done == ["recorded"]
    assert "stopping once what the backend accepts is recorded" in capsys.readouterr().err
    assert signal.getsignal(signal.SIGTERM) is _interrupt  # restored


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
