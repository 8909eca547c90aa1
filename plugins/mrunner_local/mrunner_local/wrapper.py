"""Starting an attempt's wrapper (``mrunner.attempt``) on this machine: a fork of the supervisor that runs the
wrapper's ``main`` with the command line every backend builds (``mrunner.attempt.command_line``), instead of a
new interpreter per experiment, whose start-up would cost about as much as a short experiment itself.

The fork is made from a worker thread of a process that has other threads, so the child touches nothing that
another thread might have held at the fork: it gets fresh standard streams, closes every inherited descriptor,
takes the default dispositions of the stopping signals (blocked across the fork, so that none reaches the
supervisor's own handlers in the child), and ends with ``os._exit``. Everything the wrapper needs is imported
before (``mrunner.attempt`` imports it at its top; ``ctypes``, which it loads to tie the experiment to it, too).
"""

from __future__ import annotations

import ctypes  # noqa: F401  (loaded here, before any fork: see the module's docstring)
import gc
import os
import signal
import sys
from collections.abc import Mapping, Sequence
from typing import NoReturn

from mrunner.attempt import FORWARDED, START, main

_PREFIX = ["-m", "mrunner.attempt"]


class Wrapper:
    """A started wrapper: its pid (the leader of a session of its own), told to start its experiment by
    ``start`` once the caller has recorded it running (``--handshake``)."""

    def __init__(self, command: Sequence[str], cwd: str, env: Mapping[str, str], output: int) -> None:
        if list(command[1:3]) != _PREFIX:
            raise ValueError(f"not a command line of mrunner.attempt: {command[:3]}")
        read, self._write = os.pipe()
        blocked = signal.pthread_sigmask(signal.SIG_BLOCK, FORWARDED)
        try:
            pid = os.fork()
            if pid == 0:
                _child(list(command[3:]), cwd, dict(env), output, read, blocked)
        except BaseException:
            os.close(self._write)
            raise
        finally:
            os.close(read)
            signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
        self.pid = pid

    def start(self) -> None:
        """Tell the wrapper to start its experiment."""
        try:
            os.write(self._write, START)
        finally:
            os.close(self._write)

    def abandon(self) -> None:
        """Never start it: the wrapper ends at once, having started nothing."""
        os.close(self._write)

    def wait(self) -> int:
        """Its exit code, as ``Popen.returncode`` has it (``-N`` when a signal ``N`` killed it)."""
        while True:
            try:
                _, status = os.waitpid(self.pid, 0)
            except InterruptedError:
                continue
            return os.waitstatus_to_exitcode(status)


def _child(argv: list[str], cwd: str, env: dict[str, str], output: int, handshake: int, mask: set) -> NoReturn:
    code = 127
    try:
        gc.disable()  # nothing to collect in a short-lived wrapper; untouched pages stay shared
        for number in FORWARDED:
            signal.signal(number, signal.SIG_DFL)
        os.setsid()
        os.dup2(handshake, 0)
        os.dup2(output, 1)
        os.dup2(output, 2)
        os.closerange(3, os.sysconf("SC_OPEN_MAX"))
        os.chdir(cwd)
        os.environ.clear()
        os.environ.update(env)
        sys.stdin = open(0, closefd=False)
        sys.stdout = open(1, "w", closefd=False)
        sys.stderr = open(2, "w", closefd=False)
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        code = main(argv)
    except SystemExit as exit:
        code = exit.code if isinstance(exit.code, int) else 2
    except BaseException as error:  # a bug of the wrapper: said in the attempt's log
        try:
            os.write(2, f"mrunner: the attempt wrapper failed: {error!r}\n".encode())
        except OSError:
            pass
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        except (OSError, ValueError):
            pass
        os._exit(code)
