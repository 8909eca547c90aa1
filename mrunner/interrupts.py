"""Ctrl-C (and SIGTERM, SIGHUP, which mrunner takes as Ctrl-C) held while a backend hands work to its
platform and records what it accepted.

An interrupt that lands after the platform accepted a job but before ``record`` wrote it leaves records that
say the experiment was never submitted: `mrunner resume` then submits it again as a new attempt, and it runs
twice. Inside ``held()`` the first such signal only says that mrunner will stop; the block finishes, and the
interrupt is raised when it ends. A second signal stops at once, for a platform that does not answer.
"""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


@contextmanager
def held() -> Iterator[None]:
    """Hold the signals above for the block; raise ``KeyboardInterrupt`` after it if one arrived. Outside the
    main thread (where Python runs signal handlers), and for a signal the process ignores, nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    arrived: list[int] = []

    def hold(number: int, _frame: object) -> None:
        if arrived:
            raise KeyboardInterrupt
        arrived.append(number)
        print("mrunner: stopping once what the backend accepts is recorded (again to stop at once)", file=sys.stderr)

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
