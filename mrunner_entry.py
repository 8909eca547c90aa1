"""The ``mrunner`` command's entry point, outside the ``mrunner`` package on purpose.

Python runs a package's ``__init__`` before any module of it, and mrunner's (the experiment's API and what it
loads) with the command line's own imports take a noticeable part of a second: Ctrl-C in that time raised
KeyboardInterrupt with a traceback, before ``mrunner.cli.main`` could catch it. So this module, before it
loads anything (``signal`` alone imports ``enum`` and ``functools``, milliseconds in which a Ctrl-C was a
traceback too), makes SIGINT, SIGTERM and SIGHUP end the command quietly with one line naming the signal and
128 + the signal, the code the command ends with for them later too, and ``main`` takes them over as soon as it can stop as Ctrl-C should. Its first lines are its first statements:
the handlers go in as soon as Python has found this file. What comes before (the interpreter's own start,
``site``, finding this module) is Python's; a signal there ends Python as Python ends it. An experiment that
imports ``mrunner`` never loads this module: its SIGINT, SIGTERM and SIGHUP stay its own.
"""

import _signal  # first: Ctrl-C's handling goes in before anything else of this module (see below)
import os  # loaded by the interpreter's start already (``site``): nothing is found or run

#: The signals' names, for the line (``signal.Signals`` would import ``enum``).
NAMES = {_signal.SIGINT: b"SIGINT", _signal.SIGTERM: b"SIGTERM", _signal.SIGHUP: b"SIGHUP"}


def starting(number: int, _frame: object) -> None:
    """SIGINT (Ctrl-C), SIGTERM or SIGHUP while mrunner starts: one line naming it and 128 + the signal (130,
    143, 129), as the shell reports a command a signal ended; nothing is started or recorded yet."""
    os.write(2, b"mrunner: interrupted by " + NAMES[number] + b"\n")
    os._exit(128 + number)


starting.mrunner_start_up = True  # type: ignore[attr-defined]  # how `mrunner.cli.main` knows it


def quiet_start() -> None:
    """SIGINT, SIGTERM and SIGHUP end the start quietly from here on (run when this module is imported, by the console
    script and by ``mrunner/__init__`` under ``python -m mrunner``). A signal ignored by whoever started
    mrunner (``nohup``) stays ignored, as does one another handler took already."""
    if _signal.getsignal(_signal.SIGINT) is _signal.default_int_handler:
        _signal.signal(_signal.SIGINT, starting)
    for number in (_signal.SIGTERM, _signal.SIGHUP):
        if _signal.getsignal(number) == _signal.SIG_DFL:
            _signal.signal(number, starting)


quiet_start()


def console() -> int:
    from mrunner.cli import console as command

    return command()
