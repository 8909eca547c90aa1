"""Ctrl-C (and SIGTERM, SIGHUP, which mrunner takes as Ctrl-C) held while a backend hands work to its
platform and records what it accepted; and which of them stopped the command.

SIGTERM and SIGHUP stop mrunner as Ctrl-C does (``KeyboardInterrupt``: what was done is recorded, the rest
resumable), but the command still exits as a signal's end is reported, 128 + the signal (130 for SIGINT, 143
for SIGTERM, 129 for SIGHUP): shells, ``timeout``, schedulers and CI systems read the code to tell which stop it
was. So the command's handlers (``stopping``, and ``held``'s) note the first signal that arrived
(``stopped_by``), and the command line exits with its code and names it in its line.

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
from typing import NoReturn

SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

_arrived: list[int] = []  # the signals that stopped this command, first first (``note``)
_raising: list[int] = []  # the signal whose ``KeyboardInterrupt`` a handler here raised last (``_unswallowed``)


def note(number: int) -> None:
    """Keep ``number`` as what stopped the command, unless one arrived before: the first stop is the one the
    command ends by (a second Ctrl-C after a SIGTERM only hurries it)."""
    if not _arrived:
        _arrived.append(number)


def forget() -> None:
    """A new command begins (``mrunner.cli.main``, which a test may call more than once in a process)."""
    _arrived.clear()
    _raising.clear()


def stopping(number: int, _frame: object) -> None:
    """The command's handler of the signals above: note which, and stop as Ctrl-C does."""
    note(number)
    _raise(number, KeyboardInterrupt)


def _raise(number: int, interrupt: type[KeyboardInterrupt]) -> NoReturn:
    _raising[:] = [number]
    raise interrupt


def take_over() -> None:
    """Make a stop that lands where Python cannot raise it arrive after all (the command line calls it once
    its handlers are in). Python runs a signal's handler between any two instructions, also inside a weakref
    callback or a ``__del__`` (the import system's module-lock callback runs in every import): an exception
    raised there is printed as "Exception ignored" and dropped, and the command went on as if it had never been
    stopped, exiting 0 with a traceback. ``sys.unraisablehook`` sees such an interrupt instead and sends the
    same signal again from another thread, so that its handler runs again once the callback has returned, in
    code that can stop. Anything else goes to the hook there was."""
    before = sys.unraisablehook
    if getattr(before, "mrunner_unswallowed", False):
        return

    def unswallowed(unraisable: sys.UnraisableHookArgs) -> None:
        if isinstance(unraisable.exc_value, KeyboardInterrupt) and _raising:
            import _thread
            import os

            # not here: this hook is Python code too, and `os.kill` runs the handler before it returns
            _thread.start_new_thread(os.kill, (os.getpid(), _raising[0]))
            return
        before(unraisable)

    unswallowed.mrunner_unswallowed = True  # type: ignore[attr-defined]
    sys.unraisablehook = unswallowed


def stopped_by() -> int:
    """The signal that stopped the command; SIGINT for a ``KeyboardInterrupt`` no handler here noted (Python's
    own SIGINT handler raised it)."""
    return _arrived[0] if _arrived else signal.SIGINT


def exit_code() -> int:
    """128 + the signal that stopped the command, as a shell reports a command a signal ended."""
    return 128 + stopped_by()


def said() -> str:
    """The stop in words, naming the signal: "interrupted by SIGTERM"."""
    return f"interrupted by {signal.Signals(stopped_by()).name}"


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
        note(number)
        if arrived and (stop is None or len(arrived) > 1):
            _raise(number, Unsettled if stop is not None else KeyboardInterrupt)
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
