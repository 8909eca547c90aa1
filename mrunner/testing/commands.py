"""Running the real ``mrunner`` command line from a test: to its end (``MrunnerCommand``, the ``mrunner``
fixture) or started and left running for a test that interrupts or races it (``start_mrunner``)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from mrunner import interrupts
from mrunner.testing.launcher import launcher


class MrunnerCommand:
    """``mrunner(*args)`` runs the command line in ``cwd`` (the fixture's ``tmp_path`` unless a test moves it)
    with the test's mrunner home, and returns the completed process.

    The process is a child of this test process's warm launcher (``mrunner.testing.launcher``), which has
    imported mrunner once and forks a child that becomes ``python -m mrunner ARGS`` with this call's streams,
    directory and environment: a command's own work without an interpreter's start-up each time. A call a
    forked child could not make exactly as a new process would, and every call when ``MRUNNER_TEST_WARM=0``,
    runs in a new interpreter instead.
    """

    def __init__(self, cwd: Path) -> None:
        self.cwd = cwd

    def __call__(
        self,
        *args: str,
        env: dict | None = None,
        timeout: float = 300,
        cwd: Path | None = None,
        input: str | None = None,
    ) -> subprocess.CompletedProcess:
        environment = {**os.environ, **(env or {})}
        folder = cwd or self.cwd
        warm = launcher(environment)
        if warm is not None:
            done = warm.run(args, str(folder), environment, input, timeout)
            if done is not None:
                return done
        return subprocess.run(
            [sys.executable, "-m", "mrunner", *args],
            cwd=folder,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=environment,
            input=input,
        )


def as_from_a_terminal() -> None:
    """``preexec_fn`` of an mrunner a test stops as a user does: Ctrl-C's SIGINT, a closed terminal's SIGHUP
    and SIGTERM arrive with their usual meaning, as in a terminal's foreground job, however the test run was
    started (a shell starts a background command with SIGINT ignored, ``nohup`` with SIGHUP ignored, and an
    ignored signal is inherited)."""
    for number in interrupts.SIGNALS:
        signal.signal(number, signal.SIG_DFL)


def start_mrunner(cwd: Path, *args: str, preexec_fn: Callable[[], None] = as_from_a_terminal) -> subprocess.Popen:
    """`mrunner ARGS` started in ``cwd`` without waiting, for a test that interrupts or races it."""
    return subprocess.Popen(
        [sys.executable, "-m", "mrunner", *args],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=preexec_fn,
    )


# `mrunner ARGS` that sends itself SIGNALS SIGTERMs (which mrunner takes as Ctrl-C) right after the COUNTth call
# of TARGET returns: ``module.function`` or ``module:Class.method``
_SIGNALLED_AFTER = """
import importlib, os, runpy, signal, sys

target, count, signals = sys.argv.pop(1), int(sys.argv.pop(1)), int(sys.argv.pop(1))
module_name, _, name = target.rpartition(".")
module_name, _, attribute = module_name.partition(":")
owner = importlib.import_module(module_name)
owner = getattr(owner, attribute) if attribute else owner
real = getattr(owner, name)
calls = []

def signalled(*args, **kwargs):
    answer = real(*args, **kwargs)
    calls.append(1)
    if len(calls) == count:
        for _ in range(signals):
            os.kill(os.getpid(), signal.SIGTERM)
    return answer

setattr(owner, name, signalled)
sys.argv[0] = "mrunner"
runpy.run_module("mrunner", run_name="__main__", alter_sys=True)
"""


def interrupted_after(
    cwd: Path, target: str, *args: str, count: int = 1, signals: int = 1, timeout: float = 300
) -> subprocess.CompletedProcess:
    """`mrunner ARGS` in ``cwd``, stopped as by Ctrl-C at an exact moment: its own SIGTERM (``signals`` of them,
    as a user who presses Ctrl-C again) right after the ``count``-th call of ``target`` (``module.function`` or
    ``module:Class.method``, e.g. ``mrunner.plugins.sweep_submitted``: the backend has packaged and prepared the
    sweep, nothing is submitted) returns. Returns the completed process (stopped, it exits 143: 128 + SIGTERM)."""
    return subprocess.run(
        [sys.executable, "-c", _SIGNALLED_AFTER, target, str(count), str(signals), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        preexec_fn=as_from_a_terminal,
    )


def stopped_after(
    mrunner: MrunnerCommand, target: str, *args: str, signals: int = 1, timeout: float = 300
) -> tuple[str, subprocess.CompletedProcess]:
    """A submission `mrunner ARGS` in the ``mrunner`` fixture's folder stopped as ``interrupted_after`` stops it,
    with what every such test checks first: it exited as stopped by the signal (128 + SIGTERM), without a
    traceback, leaving one sweep recorded. Returns that sweep's id and the stopped process (for what the test
    asserts of its output: how far it had come)."""
    stopped = interrupted_after(mrunner.cwd, target, *args, signals=signals, timeout=timeout)
    assert stopped.returncode == 128 + signal.SIGTERM and "Traceback" not in stopped.stderr, stopped.stderr
    listed = mrunner("status", "--json", timeout=timeout)
    assert listed.returncode == 0, listed.stderr
    (sweep,) = [entry["sweep"]["id"] for entry in json.loads(listed.stdout)]
    return sweep, stopped
