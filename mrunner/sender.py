"""Forwarding an experiment's reports to live MLflow off its own thread, so a training loop never waits on a server.

MLflow's client sends each request in the caller's thread (W&B's and Neptune's queue it for their own:
``mrunner.tracking``). ``mrunner.report`` writes its line to the experiment's metrics file, then hands the report
to the tracker's ``Sender``: a put on an unbounded C queue, bounded by a count checked first. A background thread
takes what has queued and sends it in one go (one ``log_batch`` for up to a thousand values). A server that is
slow or gone (MLflow retries a refused connection for about four minutes) holds up that thread only: the
experiment's ``report`` stays a file write and a put.

Forwarding to a tracker stops, for the rest of the process, when its server has not let the sender find the
tracker's run within ``START_SECONDS`` of the experiment's start (``get_configuration()`` or the first report
waits no longer), when its server refuses a send, when ``QUEUE_LIMIT``
reports wait unsent (the server has fallen that far behind), or when the process exits with reports unsent after
``EXIT_SECONDS`` (the sender's thread is a daemon: it never holds the exit up for MLflow's retries). Then it warns
once and, for MLflow, notes it in the metrics file (``untracked``): the next ``mrunner results`` uploads the
experiment's lines into its run from the submitting machine (``mrunner.uploads``), each point once, since a point
sent twice carries the same time, step and value and MLflow's store keeps it once.

Part of the experiment side shipped with each sweep (``mrunner.runtime``): the standard library only.
"""

from __future__ import annotations

import os
import queue
import sys
import threading
import time
from collections.abc import Callable

from mrunner.errors import mask_credentials

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping

    Report = tuple[Mapping[str, float], int | None, float]  # metrics, step, the line's time

#: Reports waiting unsent before forwarding stops: minutes of a loop reporting every step at its fastest, a few
#: megabytes at most. A server that far behind is as good as gone; the catch-up takes over.
QUEUE_LIMIT = 100_000
#: What the exit gives the senders, all together, to send what is queued. A healthy server takes a backlog in a
#: few requests (MLflow: up to a thousand points each); a gone one would hold the exit for minutes of retries.
EXIT_SECONDS = 10.0
#: What the experiment's start (``get_configuration()`` or the first report) waits, at most, for the sender to
#: find or make the tracker's run: two to four requests (MLflow: the experiment, a search by tag, a new run and
#: its parameters), which a server that answers serves in tens of milliseconds, loaded or not. A server that
#: has not answered them by then is taken for gone (MLflow's own retries would hold the start for minutes):
#: forwarding stops, and the catch-up finds or makes the run later.
START_SECONDS = 5.0
#: The keys of ``mrunner.metrics``'s notes of a process's forwarding (``metrics.FORWARDING``), spelt out here (the
#: names of ``mrunner.metrics``, which imports this module through ``mrunner.tracking``).
FORWARDING, FORWARDED = "forwarding", "forwarded"
#: Reports sent at most in one go (one ``send`` call).
BATCH = 1000

_senders: list[Sender] = []
_registered_by: int | None = None


class Sender:
    """One tracker's forwarding for this process: ``put`` from the experiment, ``send`` on a daemon thread."""

    def __init__(
        self,
        tracker: str,
        send: Callable[[list[Report]], None],
        untracked: Callable[..., None] | None,
        prepare: Callable[[], object] | None = None,
        start: Callable[[Callable[[], bool]], object] | None = None,
    ) -> None:
        """``prepare`` runs here, on the caller's thread: what ``send`` needs that an exiting interpreter would
        refuse to the sender's thread (importing a client that registers its own exit functions), no network.
        ``start(stopped)`` runs first on the sender's thread (finding the tracker's run), the caller waiting for
        it up to ``START_SECONDS``: with a server that answers, what it sets up (``MLFLOW_RUN_ID``) is there
        when the caller goes on; with one that does not, forwarding stops then, and ``start``, still waiting on
        the server, asks ``stopped()`` before it makes anything (the catch-up makes the run instead, once)."""
        self.tracker = tracker
        self._send = send
        self._untracked = untracked
        self._queue: queue.SimpleQueue[Report | threading.Event] = queue.SimpleQueue()
        self._stopped = False
        self._lock = threading.Lock()
        self._owner = os.getpid()
        try:
            if prepare is not None:
                prepare()
        except Exception as error:
            self.stop(f"cannot send ({type(error).__name__}: {error})")
            return
        if untracked is not None:  # a tracker the catch-up serves: the note it looks for when the process vanishes
            untracked(tracker, FORWARDING)
        started = threading.Event()
        threading.Thread(target=self._run, args=(start, started), name=f"mrunner-{tracker}", daemon=True).start()
        _register(self)
        if not started.wait(START_SECONDS):
            self.stop(f"the server did not answer within {START_SECONDS:g} s of the experiment's start")

    def stopped(self) -> bool:
        """Whether forwarding stopped in this process."""
        return self._stopped

    def put(self, metrics: dict[str, float], step: int | None, when: float) -> None:
        """Queue one report; never blocks. A full queue stops forwarding (the catch-up sends the rest)."""
        if self._stopped:
            return
        if self._queue.qsize() >= QUEUE_LIMIT:
            self.stop(f"{QUEUE_LIMIT} reports waited unsent")
            return
        self._queue.put((metrics, step, when))

    def flushed(self) -> threading.Event:
        """An event set once everything queued before it was sent (or forwarding stopped)."""
        done = threading.Event()
        if self._stopped:
            done.set()
        else:
            self._queue.put(done)
        return done

    def stop(self, why: str) -> None:
        """Stop forwarding in this process, once: warn, and note it in the metrics file for the catch-up."""
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
        later = ""
        if self._untracked is not None:
            self._untracked(self.tracker)
            later = "; `mrunner results` uploads them later"
        print(
            f"mrunner: {self.tracker}: {mask_credentials(why)}; this process stops sending it metrics, which stay in the "
            f"experiment's mrunner-metrics.jsonl{later}",
            file=sys.stderr,
            flush=True,
        )

    def _run(self, start: Callable[[Callable[[], bool]], object] | None, started: threading.Event) -> None:
        try:
            if start is not None:
                start(self.stopped)
        except Exception as error:
            self.stop(f"refused a report ({type(error).__name__}: {error})")
        started.set()
        while True:
            batch: list[Report] = []
            done: list[threading.Event] = []
            item = self._queue.get()
            while True:
                if isinstance(item, threading.Event):
                    done.append(item)
                else:
                    batch.append(item)
                if len(batch) >= BATCH:
                    break
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
            if batch and not self._stopped:
                try:
                    self._send(batch)
                except Exception as error:
                    self.stop(f"refused a report ({type(error).__name__}: {error})")
            for event in done:
                event.set()


def _register(sender: Sender) -> None:
    """Flush this process's senders when it exits: before the interpreter's atexit functions (where MLflow and
    W&B end their runs), as ``concurrent.futures`` does, so the last reports reach a run that is still open."""
    global _registered_by
    if _registered_by != os.getpid():  # a forked child keeps none of its parent's threads
        _senders.clear()
        _registered_by = os.getpid()
        at_exit = getattr(threading, "_register_atexit", None)
        try:
            (at_exit or __import__("atexit").register)(close)
        except RuntimeError:  # the interpreter is already shutting down
            pass
    _senders.append(sender)


def close(seconds: float = EXIT_SECONDS) -> None:
    """Give the senders ``seconds`` together to send what is queued; a sender still busy then stops (its
    thread left behind, a daemon), so the catch-up sends the rest."""
    deadline = time.monotonic() + seconds
    waiting = [(sender, sender.flushed()) for sender in _senders if sender._owner == os.getpid()]
    for sender, done in waiting:
        if not done.wait(max(0.0, deadline - time.monotonic())):
            sender.stop(f"the last reports were not sent within {seconds:g} s of the exit (the server slow or gone)")
        elif not sender.stopped() and sender._untracked is not None:  # every point taken: no catch-up needed
            sender._untracked(sender.tracker, FORWARDED)
