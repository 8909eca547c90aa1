"""The MLflow sender on its own (``mrunner.sender``): what stops forwarding, once, and what the exit waits for.

``held_send`` is a fake standing for a server that holds a request forever, which a real server does not do on
demand; the real server going away is tests/test_tracking_mlflow.py's relay test."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator

from mrunner import sender


def held_send(holding: threading.Event, release: threading.Event):
    def send(reports: list) -> None:
        holding.set()
        release.wait()

    return send


def noting(notes: list[str]):
    """The sender's ``untracked`` callable, as ``mrunner.metrics.untracked`` takes it: a stop as the tracker's
    name, the forwarding notes (``metrics.FORWARDING``) as ``KEY:TRACKER``."""

    def note(tracker: str, key: str = "untracked") -> None:
        notes.append(tracker if key == "untracked" else f"{key}:{tracker}")

    return note


@contextlib.contextmanager
def held_sender(notes: list[str]) -> Iterator[sender.Sender]:
    """A sender whose first report's send is held until the block ends."""
    holding, release = threading.Event(), threading.Event()
    try:
        forwarding = sender.Sender("MLflow", held_send(holding, release), noting(notes))
        forwarding.put({"loss": 1.0}, 0, 1.0)
        assert holding.wait(30), "the sender never sent"
        yield forwarding
    finally:
        release.set()


def test_a_full_queue_stops_forwarding_once_and_notes_it(monkeypatch, capsys):
    monkeypatch.setattr(sender, "QUEUE_LIMIT", 3)
    notes: list[str] = []
    with held_sender(notes) as forwarding:
        started = time.monotonic()
        for step in range(1, 20):
            forwarding.put({"loss": 1.0}, step, 1.0)
        assert time.monotonic() - started < 1.0  # puts, none waiting on the held send
        assert notes == ["forwarding:MLflow", "MLflow"]
        err = capsys.readouterr().err
        assert err.count("3 reports waited unsent; this process stops sending it metrics") == 1, err
        assert "`mrunner results` uploads them later" in err


def test_the_exit_waits_for_a_held_send_only_its_bound_then_notes_it(capsys):
    notes: list[str] = []
    with held_sender(notes):
        started = time.monotonic()
        sender.close(0.5)
        assert time.monotonic() - started < 5.0  # the bound, and the scheduling of a loaded machine
        assert notes == ["forwarding:MLflow", "MLflow"]
        assert "the last reports were not sent within 0.5 s of the exit" in capsys.readouterr().err


def test_a_refused_send_stops_forwarding_and_later_reports_are_not_sent(capsys):
    sent: list[int] = []
    notes: list[str] = []

    def refusing(reports: list) -> None:
        sent.extend(step for _, step, _ in reports)
        raise ConnectionError("the server is gone")

    forwarding = sender.Sender("MLflow", refusing, noting(notes))
    forwarding.put({"loss": 1.0}, 0, 1.0)
    assert forwarding.flushed().wait(30)
    forwarding.put({"loss": 0.5}, 1, 2.0)
    assert forwarding.flushed().wait(30)
    assert sent == [0] and notes == ["forwarding:MLflow", "MLflow"]
    assert "refused a report (ConnectionError: the server is gone)" in capsys.readouterr().err


def test_a_send_that_works_gets_everything_queued_before_the_exit():
    sent: list[int] = []
    notes: list[str] = []
    forwarding = sender.Sender("MLflow", lambda reports: sent.extend(step for _, step, _ in reports), noting(notes))
    for step in range(2500):
        forwarding.put({"loss": 1.0}, step, 1.0)
    sender.close(30)
    assert sent == list(range(2500))
    assert notes == ["forwarding:MLflow", "forwarded:MLflow"]  # opened before its first point, closed with all taken


def test_a_start_held_past_its_bound_stops_forwarding_once_and_the_start_then_makes_nothing(monkeypatch, capsys):
    """``held_start`` stands for a server that does not answer the run's lookup: the caller goes on after
    ``START_SECONDS``, forwarding stopped and noted; the start, answered later, sees it stopped (it must not
    make a run the catch-up would make again) and nothing queued is sent."""
    monkeypatch.setattr(sender, "START_SECONDS", 0.2)
    holding, release, asked = threading.Event(), threading.Event(), threading.Event()
    seen: list[bool] = []
    sent: list[list] = []
    notes: list[str] = []

    def held_start(stopped) -> None:
        holding.set()
        release.wait()
        seen.append(stopped())
        asked.set()

    try:
        started = time.monotonic()
        forwarding = sender.Sender("MLflow", sent.append, noting(notes), start=held_start)
        assert time.monotonic() - started < 5.0  # the bound, and the scheduling of a loaded machine
        assert holding.is_set() and notes == ["forwarding:MLflow", "MLflow"]
        err = capsys.readouterr().err
        assert err.count("the server did not answer within 0.2 s of the experiment's start") == 1, err
        forwarding.put({"loss": 1.0}, 0, 1.0)
    finally:
        release.set()
    assert asked.wait(30) and seen == [True]
    assert forwarding.flushed().wait(30) and sent == [] and notes == ["forwarding:MLflow", "MLflow"]
