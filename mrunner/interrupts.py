"""Ctrl-C (and SIGTERM, SIGHUP, which mrunner takes as Ctrl-C) held while a backend hands work to its
platform and records what it accepted.

An interrupt that lands after the platform accepted a job but before ``record`` wrote it leaves records that
say the experiment was never submitted: `mrunner resume` then submits it again as a new attempt, and it runs
twice. Inside ``held()`` the first such signal only says that mrunner will stop; the block finishes, and the
interrupt is raised when it ends. A second signal stops at once, for a platform that does not answer.

Stopping at once must not make the records false either: a block given ``stop`` (a backend that can ask its
platform afterwards what it accepted) is not broken into by the second signal, which calls ``stop`` instead
(it cuts the wait on the platform short); the block then finds out what the platform accepted and records
it, and the interrupt is raised after it, as after the first. Only a third signal breaks in, as
``Unsettled``: what the platform accepted since the last record is then unknown, and the core leaves those
runs ``planned`` for `mrunner resume`, which finds them (a platform's submission is idempotent).
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class Unsettled(KeyboardInterrupt):
    """An interrupt that broke into a hand-over (``held``'s last signal) before the block knew what the
    platform accepted: the runs not recorded as accepted may run, or not."""


@contextmanager
def held(stop: Callable[[], None] | None = None) -> Iterator[None]:
    """Hold the signals above for the block; raise ``KeyboardInterrupt`` after it if one arrived. Outside the
    main thread (where Python runs signal handlers), and for a signal the process ignores, nothing changes.
    With ``stop``, the second signal calls it (in the signal handler: it must only cut a wait short, e.g. end
    a connection) and the block goes on, and the third raises ``Unsettled``; without, the second raises
    ``KeyboardInterrupt``."""
    import threading  # here: the local attempt wrappers load this module, and forks of a process that
    # imported ``threading`` run its at-fork hook (benchmarks/results-core.md)

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    arrived: list[int] = []

    def hold(number: int, _frame: object) -> None:
        if arrived and (stop is None or len(arrived) > 1):
            raise Unsettled if stop is not None else KeyboardInterrupt
        arrived.append(number)
        if len(arrived) == 1:
            print(
                "mrunner: stopping once what the backend accepts is recorded (again to stop at once)", file=sys.stderr
            )
            return
        assert stop is not None
        print(
            "mrunner: stopping now: asking what the backend accepted, to record it (again to stop without knowing)",
            file=sys.stderr,
        )
        stop()

    before = {number: signal.getsignal(number) for number in SIGNALS}
    before = {number: handler for number, handler in before.items() if handler not in (signal.SIG_IGN, None)}
    for number in before:
        signal.signal(number, hold)
    try:
        yield
    finally:
        for number, handler in before.items():
            signal.signal(number, handler)
    if arrived:
        raise KeyboardInterrupt
