"""The ``mrunner`` command's entry point, outside the ``mrunner`` package on purpose.

Python runs a package's ``__init__`` before any module of it, and mrunner's (the experiment's API and what it
loads) with the command line's own imports take a noticeable part of a second: Ctrl-C in that time raised
KeyboardInterrupt with a traceback, before ``mrunner.cli.main`` could catch it. This module loads nothing of
mrunner before it makes Ctrl-C end the command quietly with 130 (nothing is started or recorded yet), and
``main`` gives SIGINT back to Python's own handler as soon as it can stop as Ctrl-C should. An experiment that
imports ``mrunner`` never loads this module: its SIGINT stays its own.
"""

from __future__ import annotations

import os
import signal


def console() -> int:
    quiet_start()
    from mrunner.cli import console as command

    return command()


def quiet_start() -> None:
    """Ctrl-C ends the start from here on (also called by ``mrunner/__init__`` under ``python -m mrunner``)."""
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:  # an ignored SIGINT (nohup) stays ignored
        signal.signal(signal.SIGINT, starting)


def starting(_number: int, _frame: object) -> None:
    """Ctrl-C while mrunner starts: one line and 130, as the shell reports an interrupted command."""
    os.write(2, b"mrunner: interrupted\n")
    os._exit(130)


starting.mrunner_start_up = True  # type: ignore[attr-defined]  # how `mrunner.cli.main` knows it
