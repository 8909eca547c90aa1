"""Ctrl-C while the ``mrunner`` command starts (Python importing mrunner and its dependencies) ends it quietly
with 130, as Ctrl-C later does (SIGTERM with 143, SIGHUP with 129: 128 + the signal, then as later); an
experiment's own SIGINT is left alone.

Each moment is reached, not slept to: an audit hook (installed by a ``sitecustomize`` on ``PYTHONPATH``) stops
the command in the import of one module, says so in a file and waits there for the signal.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mrunner.testing import as_from_a_terminal

pytestmark = pytest.mark.local

HOOK = """
import os, sys, time

_module, _ready = os.environ["STOP_IN_IMPORT"], os.environ["STOP_READY"]

def _stop(event, args):
    if event == "import" and args[0] == _module and not os.path.exists(_ready):
        with open(_ready, "w"):
            pass
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # the signal's handler runs in this loop
            time.sleep(0.005)

sys.addaudithook(_stop)
"""

#: Modules the command imports, in order: the package (its ``__init__``), the experiment's API it loads, the
#: command line, the commands' table, and the records (a command's, inside ``main`` already).
MOMENTS = ("mrunner", "mrunner.client", "mrunner.cli", "mrunner.commands", "mrunner.store")


def _interrupted(tmp_path: Path, mrunner_home: Path, module: str, command: list[str]) -> subprocess.CompletedProcess:
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    (hooks / "sitecustomize.py").write_text(HOOK)
    ready = tmp_path / "ready"
    env = {**os.environ, "PYTHONPATH": str(hooks), "STOP_IN_IMPORT": module, "STOP_READY": str(ready)}
    process = subprocess.Popen(
        [*command, "status"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=as_from_a_terminal,
    )
    deadline = time.monotonic() + 60
    while not ready.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert ready.exists(), f"the command never imported {module}: {process.communicate()}"
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=60)
    return subprocess.CompletedProcess(process.args, process.returncode, out, err)


@pytest.mark.parametrize("module", MOMENTS)
def test_ctrl_c_while_the_command_starts_ends_it_quietly(tmp_path, mrunner_home, module):
    script = Path(sys.executable).with_name("mrunner")
    result = _interrupted(tmp_path, mrunner_home, module, [str(script)])
    assert "Traceback" not in result.stderr
    assert result.returncode == 130, result.stderr
    assert result.stderr.splitlines() == ["mrunner: interrupted by SIGINT"]


@pytest.mark.parametrize("module", MOMENTS[1:])
def test_ctrl_c_while_python_m_mrunner_starts_ends_it_quietly(tmp_path, mrunner_home, module):
    """``python -m mrunner`` runs the package's ``__init__`` before ``__main__``: quiet from its first line
    (the import of ``mrunner`` itself is Python's, before any line of mrunner runs)."""
    result = _interrupted(tmp_path, mrunner_home, module, [sys.executable, "-m", "mrunner"])
    assert "Traceback" not in result.stderr
    assert result.returncode == 130, result.stderr
    assert result.stderr.splitlines() == ["mrunner: interrupted by SIGINT"]


def test_an_experiment_that_imports_mrunner_keeps_its_own_ctrl_c(tmp_path):
    """``mrunner.report`` runs inside user scripts: importing mrunner changes nothing of their SIGINT."""
    probe = "import signal, mrunner; print(signal.getsignal(signal.SIGINT) is signal.default_int_handler)"
    result = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        preexec_fn=as_from_a_terminal,
        check=True,
    )
    assert result.stdout.strip() == "True"


@pytest.mark.parametrize("form", [["-m", "their_package"], ["-mtheir_package"]])
def test_an_experiment_run_as_a_module_that_imports_mrunner_keeps_its_own_ctrl_c(tmp_path, form):
    """``python -m their_package`` whose ``__init__`` imports mrunner is not ``python -m mrunner``."""
    package = tmp_path / "their_package"
    package.mkdir()
    (package / "__init__.py").write_text("import mrunner\n")
    probe = "import signal; print(signal.getsignal(signal.SIGINT) is signal.default_int_handler)\n"
    (package / "__main__.py").write_text(probe)
    result = subprocess.run(
        [sys.executable, *form, "mrunner"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        preexec_fn=as_from_a_terminal,
        check=True,
    )
    assert result.stdout.strip() == "True"


#: Trials per command and signal: each sends the signal as a randomly chosen import of the command's start
#: is reported done (or once the command runs), so every moment after the entry's first lines gets its turns.
#: Forty in all, as two tests: ten in the fast tier, thirty more in the whole run (``slow``).
TRIALS = [pytest.param(10, id="10 trials"), pytest.param(30, id="30 trials", marks=pytest.mark.slow)]
#: The entry's module as Python's ``-X importtime`` names it once imported: its handlers are in from there.
ENTRY = "mrunner_entry"


def _stderr_lines(process: subprocess.Popen) -> Iterator[str]:
    assert process.stderr is not None
    for line in process.stderr:
        yield line.rstrip("\n")


#: What each command last wrote on stdout (``_signalled``): a command the signal reached only once it had done
#: everything (its output whole) ends 0, the signal landing in the interpreter's exit, where Python runs no handler.
OUTPUT: dict[tuple[str, ...], str] = {}


def _signalled(
    command: list[str], cwd: Path, number: int, after: int | None, entry: str = ENTRY
) -> tuple[int | None, int | None, int, list[str]]:
    """Start ``command`` with ``-X importtime``'s report on stderr and send ``number`` when the ``after``-th
    import once the entry's module (``entry``; ending in ``.``: the first of that package's modules) was
    imported is reported (``None``: never). Returns the index of that
    import (None: the command ended before it), how many imports followed the entry's, the exit code, and
    the stderr lines that are not the import report."""
    env = {**os.environ, "PYTHONPROFILEIMPORTTIME": "1"}
    process = subprocess.Popen(
        command,
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,  # a few lines: read once stderr ends
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=as_from_a_terminal,
    )
    other, seen, sent = [], None, None
    try:
        for line in _stderr_lines(process):
            if not line.startswith("import time:"):
                other.append(line)
                continue
            module = line.rpartition("|")[2].strip()
            if seen is None and (module.startswith(entry) if entry.endswith(".") else module == entry):
                seen = 0
            elif seen is not None:
                seen += 1
            if seen is not None and seen == after and sent is None:
                process.send_signal(number)  # while the command goes on importing: at its next instruction
                sent = seen
        assert process.stdout is not None
        OUTPUT[tuple(command)] = process.stdout.read()
        process.wait(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    return sent, seen, process.returncode, other


COMMANDS = {
    "console": lambda: [str(Path(sys.executable).with_name("mrunner"))],
    "python -m": lambda: [sys.executable, "-m", "mrunner"],
}


@pytest.mark.parametrize("trials", TRIALS)
@pytest.mark.parametrize("number", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP], ids=["SIGINT", "SIGTERM", "SIGHUP"])
@pytest.mark.parametrize("form", list(COMMANDS))
def test_a_signal_at_any_moment_of_the_start_ends_it_quietly_with_the_signals_code(
    tmp_path, mrunner_home, form, number, trials
):
    """Randomised moments: each trial sends the signal as the command reports a randomly chosen import done
    (``-X importtime``'s lines on stderr, read as they come), from the entry's own first lines (the console
    script's ``mrunner_entry``, ``mrunner/__init__`` under ``python -m``) to the command running. Never a
    traceback, at most one line, naming the signal, and the signal's code, 128 + the signal (130 for SIGINT,
    143 for SIGTERM, 129 for SIGHUP), the same while the command starts and once it runs (from there mrunner
    takes SIGTERM and SIGHUP as Ctrl-C, and still exits with their own code). What comes before those first
    lines (the interpreter's own start and ``site``) is Python's and not tried here."""
    command = [*COMMANDS[form](), "status"]
    _, imports, code, other = _signalled(command, tmp_path, number, None)  # the moments to choose from
    assert code == 0 and other == [] and imports, other
    whole = OUTPUT[tuple(command)]
    seed = random.randrange(1 << 30)
    chosen = random.Random(seed)
    named = f"mrunner: interrupted by {signal.Signals(number).name}"
    outcomes = set()
    for _ in range(trials):
        sent, _, code, other = _signalled(command, tmp_path, number, chosen.randrange(imports + 1))
        said = f"seed {seed}, signal at import {sent}: exit {code}, stderr {other}"
        assert not any("Traceback" in line for line in other), said
        if sent is None or code == 0:  # fewer imports this time (a cache), or the command had done all it does
            assert code == 0 and other == [] and OUTPUT[tuple(command)] == whole, said
            continue
        assert code == 128 + number and other == [named], said
        outcomes.add(code)
    assert outcomes, f"seed {seed}: no trial sent its signal"


@pytest.mark.parametrize("trials", TRIALS)
def test_a_sigint_while_the_attempts_wrapper_starts_ends_it_by_the_signal_without_a_traceback(tmp_path, trials):
    """The attempt's wrapper (``python -m mrunner.attempt``, as Slurm's batch script and a Kubernetes container
    start it): a SIGINT while it imports mrunner, before its own handlers are in, ends it by the signal (as a
    SIGTERM then does), never with a traceback in the attempt's log; once they are in, the wrapper takes it
    as its stop. Here the wrapper has no experiment's environment: it says so in one line and exits 97."""
    from mrunner.attempt import command_line

    command = command_line(sys.executable, str(tmp_path), ["true"], grace=1.0)
    _, imports, code, other = _signalled(command, tmp_path, signal.SIGINT, None, "mrunner.")
    assert code == 97 and len(other) == 1 and imports, other
    seed = random.randrange(1 << 30)
    chosen = random.Random(seed)
    outcomes = set()
    for _ in range(trials):
        sent, _, code, other = _signalled(command, tmp_path, signal.SIGINT, chosen.randrange(imports + 1), "mrunner.")
        said = f"seed {seed}, signal at import {sent}: exit {code}, stderr {other}"
        assert not any("Traceback" in line for line in other), said
        assert code in (-signal.SIGINT, 97, 128 + signal.SIGINT) and len(other) <= 1, said
        outcomes.add(code)
    assert -signal.SIGINT in outcomes, f"seed {seed}: {outcomes}"


def test_a_stop_that_lands_in_a_class_bodys_set_name_ends_the_command_by_the_signal(monkeypatch, capsys):
    """Python before 3.12 turns an exception raised in ``__set_name__`` (a dataclass field,
    ``functools.cached_property``, run as a module a command imports defines its classes) into a RuntimeError
    whose cause is the exception: a stop landing there (seen in the randomised trials above) is the stop,
    one line and 128 + the signal, not a traceback."""
    from mrunner import cli, interrupts

    def dispatch(args: list[str]) -> int:
        class Named:
            def __set_name__(self, owner: type, name: str) -> None:
                interrupts.stopping(signal.SIGTERM, None)

        class Owner:
            attribute = Named()

        return 0

    monkeypatch.setattr(cli, "_dispatch", dispatch)
    # main installs its handlers and its unraisable hook: the test process keeps its own
    monkeypatch.setattr(signal, "signal", lambda *args: None)
    monkeypatch.setattr(sys, "unraisablehook", sys.unraisablehook)
    assert cli.main(["status"]) == 128 + signal.SIGTERM
    assert capsys.readouterr().err == "mrunner: interrupted by SIGTERM\n"


def test_a_stop_that_lands_in_a_set_name_while_a_plugin_imports_is_the_stop_not_a_broken_plugin(monkeypatch, capsys):
    """The same stop inside a plugin's import (the Slurm plugin's dataclasses, loaded by every command that
    reads a context): the loader's "failed to import ... reinstall or uninstall it" is for a broken plugin,
    and said so after a Ctrl-C at that moment, exit 2."""
    from mrunner import cli, interrupts, plugins

    class EntryPoint:
        name = "slurm"

        def load(self) -> object:
            class Named:
                def __set_name__(self, owner: type, name: str) -> None:
                    interrupts.stopping(signal.SIGINT, None)

            class Connection:
                facts = Named()

            return Connection

    monkeypatch.setattr(cli, "_dispatch", lambda args: plugins._load(EntryPoint(), "mrunner-slurm 0.2.0"))
    monkeypatch.setattr(signal, "signal", lambda *args: None)
    monkeypatch.setattr(sys, "unraisablehook", sys.unraisablehook)
    assert cli.main(["status"]) == 128 + signal.SIGINT
    assert capsys.readouterr().err == "mrunner: interrupted by SIGINT\n"
