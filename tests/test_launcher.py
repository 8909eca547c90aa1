"""The test kit's warm launcher (``mrunner.testing.launcher``): a child it forks is the process
``python -m MODULE ARGS`` would be, seen from inside (what a probe module prints of itself) and from outside
(exit status, output, input, timeout), and a call it could not make exactly runs in a new process."""

from __future__ import annotations

import contextlib
import json
import os
import resource
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from mrunner.testing import launcher as warm
from mrunner.testing.commands import MrunnerCommand

# What a process can see of how it was started. Not compared: its pid, its parent (the launcher, for a warm
# child: the probe prints it so that a test can tell the two apart) and what is imported.
PROBE = r"""
import atexit, json, os, resource, signal, stat, sys

atexit.register(lambda: os.write(1, b"exit handler of the command\n"))  # before `logging` is imported, as mrunner's console
import logging

class Closing(logging.Handler):
    def emit(self, record): pass
    def close(self):
        os.write(1, b"logging shut down\n")
        super().close()

logging.getLogger("probe").addHandler(Closing())

def disposition(number):
    handler = signal.getsignal(number)
    return handler if isinstance(handler, int) else getattr(handler, "__name__", repr(handler))

descriptors = {}
for name in os.listdir("/proc/self/fd"):
    try:
        descriptors[name] = stat.S_IFMT(os.fstat(int(name)).st_mode)
    except OSError:
        pass  # the listing's own
with open("/proc/self/cmdline", "rb") as cmdline:
    arguments = cmdline.read().rstrip(b"\0").split(b"\0")
seen = {
    "argv": sys.argv,
    "orig_argv": sys.orig_argv,
    "path0": sys.path[0],
    "cwd": os.getcwd(),
    "environ": dict(os.environ),
    "signals": {str(n): disposition(n) for n in signal.valid_signals() if n not in (signal.SIGKILL, signal.SIGSTOP) and signal.getsignal(n) is not None},
    "mask": sorted(signal.pthread_sigmask(signal.SIG_BLOCK, [])),
    "descriptors": descriptors,
    "ttys": [os.isatty(fd) for fd in (0, 1, 2)],
    "line_buffering": [sys.stdin.line_buffering, sys.stdout.line_buffering, sys.stderr.line_buffering],
    "encodings": [sys.stdin.encoding, sys.stdout.encoding, sys.stderr.encoding],
    "stdin": sys.stdin.read(),
    "main": [__name__, __spec__.name, sys.modules["__main__"].__spec__.name, __file__],
    "cmdline": [a.decode() for a in arguments],
    "process group": os.getpgrp(),
    "session": os.getsid(0),
    "umask": os.umask(0o022),
    "open files limit": resource.getrlimit(resource.RLIMIT_NOFILE),
    "priority": os.getpriority(os.PRIO_PROCESS, 0),
    "CPUs": sorted(os.sched_getaffinity(0)),
}
print(json.dumps(seen, sort_keys=True))
print("parent", os.getppid())
print("to stderr", file=sys.stderr)
sys.stdout.flush()
how = sys.argv[1]
if how == "exit":
    sys.exit(int(sys.argv[2]))
if how == "raise":
    raise ValueError("a bug")
if how == "interrupt":
    raise KeyboardInterrupt
if how == "kill":
    os.kill(os.getpid(), signal.SIGTERM)
if how == "sleep":
    import time
    time.sleep(600)
"""


@pytest.fixture(scope="module")
def launcher() -> Iterator[warm.Launcher]:
    started = warm.Launcher(os.environ)
    assert started.refusal is None, started.refusal
    yield started
    started.close()


@pytest.fixture
def probe(tmp_path: Path) -> Path:
    folder = tmp_path / "cwd"
    folder.mkdir()
    (folder / "probe.py").write_text(PROBE)
    return folder


def fresh(args: list[str], cwd: Path, env: dict[str, str], input: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "probe", *args], cwd=cwd, env=env, input=input, capture_output=True, text=True
    )


def seen(result: subprocess.CompletedProcess) -> tuple[dict, int]:
    lines = result.stdout.splitlines()
    return json.loads(lines[0]), int(lines[1].split()[1])


# Local: it starts processes, though no mrunner; no fixture shows it.
pytestmark = pytest.mark.local


@contextlib.contextmanager
def inherited_changes() -> Iterator[None]:
    """What a process inherits from the test, changed after the launcher started: umask, a resource limit,
    the calling thread's signal mask."""
    umask = os.umask(0o027)
    limit = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(limit[0], 1000), limit[1]))
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR2})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        resource.setrlimit(resource.RLIMIT_NOFILE, limit)
        os.umask(umask)


@pytest.mark.parametrize("input", [None, "two\nlines\n"], ids=["inherited stdin", "input"])
def test_a_warm_child_is_the_process_a_new_interpreter_would_be(launcher, probe, input):
    if input is None and os.isatty(0):
        pytest.skip("the test process's stdin is a terminal (pytest -s): the probe would wait for it")
    env = {**os.environ, "MRUNNER_PROBE": "x" * 100, "COLUMNS": "77"}
    del env["PATH"]  # a variable of the launcher's start-up, not in this call's environment
    with inherited_changes():
        new = fresh(["exit", "3"], probe, env, input)
        child = launcher.run(["exit", "3"], str(probe), env, input, 60, module="probe")
    assert child is not None, "the launcher refused the call"
    (inside_new, parent_new), (inside_child, parent_child) = seen(new), seen(child)
    assert parent_new == os.getpid() and parent_child == launcher._process.pid  # one of each, really
    assert inside_child == inside_new
    assert inside_child["cmdline"] == [sys.executable, "-m", "probe", "exit", "3"]
    assert inside_child["environ"] == env
    assert inside_child["umask"] == 0o027 and inside_child["mask"] == [signal.SIGUSR2]
    assert (child.returncode, child.stderr) == (new.returncode, new.stderr) == (3, "to stderr\n")
    assert [line for line in child.stdout.splitlines() if not line.startswith("parent ")] == [
        line for line in new.stdout.splitlines() if not line.startswith("parent ")
    ]
    # the command's exit handler ran last, after logging's shut-down, as in a new interpreter
    assert child.stdout.splitlines()[2:] == ["logging shut down", "exit handler of the command"]


@pytest.mark.parametrize("how", ["raise", "interrupt", "kill"])
def test_an_uncaught_exception_a_ctrl_c_and_a_signal_end_it_as_they_end_a_new_interpreter(launcher, probe, how):
    new = fresh([how], probe, dict(os.environ))
    child = launcher.run([how], str(probe), os.environ, None, 60, module="probe")
    assert child is not None
    assert child.returncode == new.returncode
    assert how == "interrupt" or new.returncode == {"raise": 1, "kill": -signal.SIGTERM}[how]
    last = new.stderr.splitlines()[-1]
    assert child.stderr.splitlines()[-1] == last  # the traceback's frames above the probe are runpy's, not the same
    assert ("Traceback" in child.stderr) == ("Traceback" in new.stderr)


def test_at_its_timeout_the_child_is_killed_and_timeout_expired_raised(launcher, probe):
    with pytest.raises(subprocess.TimeoutExpired) as timed_out:
        launcher.run(["sleep"], str(probe), os.environ, None, 5, module="probe")
    parent = int(timed_out.value.stdout.decode().splitlines()[1].split()[1])
    assert parent == launcher._process.pid
    # the launcher reaped the killed child and serves the next call
    after = launcher.run(["exit", "0"], str(probe), os.environ, None, 60, module="probe")
    assert after is not None and after.returncode == 0


@pytest.mark.parametrize(
    "change",
    ["PYTHONPATH", "LC_ALL", "TZ", "shadowing file", "long command line", "missing folder", "NUL", "ignored signal"],
)
def test_a_call_a_forked_child_cannot_make_exactly_goes_to_a_new_process(launcher, probe, change, monkeypatch, request):
    env, args, cwd = dict(os.environ), ["exit", "0"], probe
    if change == "shadowing file":  # -m puts the working directory first on sys.path: yaml would be this file
        (probe / "yaml.py").write_text("")
    elif change == "long command line":
        args.append("x" * launcher._room)
    elif change == "missing folder":
        cwd = probe / "missing"
    elif change == "NUL":
        args.append("a\0b")
    elif change == "ignored signal":  # a new process would start with it ignored, the launcher did not
        previous = signal.signal(signal.SIGUSR1, signal.SIG_IGN)
        request.addfinalizer(lambda: signal.signal(signal.SIGUSR1, previous))
    else:
        env[change] = {"PYTHONPATH": str(probe), "LC_ALL": "C", "TZ": "Asia/Tokyo"}[change]
    assert launcher.run(args, str(cwd), env, None, 60, module="probe") is None
    # through the fixture's command: a new process, so the test gets what it would without the launcher
    monkeypatch.setattr(warm, "_launcher", launcher)
    command = MrunnerCommand(cwd)
    if change in ("missing folder", "NUL"):
        with pytest.raises(FileNotFoundError if change == "missing folder" else ValueError):
            command("--version", *args[2:])
    else:
        assert command("--version", *args[2:], env=env).stdout.startswith("mrunner ")


def test_mrunner_test_warm_0_makes_every_call_a_new_process(monkeypatch):
    monkeypatch.setenv(warm.SWITCH, "0")
    assert warm.launcher(os.environ) is None


PLUGINS = {  # an installed plugin's module, as the launcher imports it at its start
    "reads a variable": "import os\nSETTING = os.environ.get('PROBE_SETTING')\n",
    "reads the environment": "import os\nSETTINGS = dict(os.environ)\n",
    "installs a signal handler": "import signal\nsignal.signal(signal.SIGUSR1, lambda *_: None)\n",
    "changes a variable": "import os\nos.environ['PROBE_SETTING'] = 'mine'\n",
}


@pytest.mark.parametrize("plugin", PLUGINS)
def test_a_plugin_whose_import_depends_on_or_changes_the_process_is_caught_at_the_launchers_start(tmp_path, plugin):
    """The launcher imports every plugin's module once for all its children: a module that read a variable
    as it was imported makes a call with another value of it a new process; one that read every variable or
    changed the process (which a new interpreter that never imports it would not have) turns the launcher
    down, saying why."""
    (tmp_path / "probe_plugin.py").write_text(PLUGINS[plugin])
    info = tmp_path / "probe_plugin-0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: probe-plugin\nVersion: 0\n")
    (info / "entry_points.txt").write_text("[mrunner]\nprobe = probe_plugin\n")
    env = {**os.environ, "PYTHONPATH": str(tmp_path), "PROBE_SETTING": "a"}
    started = warm.Launcher(env)
    try:
        if plugin == "reads a variable":
            assert started.refusal is None
            assert started.eligible(["status"], env)
            assert not started.eligible(["status"], {**env, "PROBE_SETTING": "b"})
            assert not started.eligible(["status"], {k: v for k, v in env.items() if k != "PROBE_SETTING"})
        else:
            expected = {
                "reads the environment": "read the whole environment",
                "installs a signal handler": "changed the process's signal dispositions",
                "changes a variable": "changed the process's environment",
            }[plugin]
            assert started.refusal is not None and expected in started.refusal
            assert not started.eligible(["status"], env)
    finally:
        started.close()


def test_a_child_the_launcher_fails_to_set_up_is_the_launchers_failure_not_the_commands(launcher, probe, monkeypatch):
    monkeypatch.setattr(warm, "_inherited", lambda: {})  # a request the child cannot take
    with pytest.raises(warm.LauncherFailed, match="failed to start the command"):
        launcher.run(["exit", "0"], str(probe), os.environ, None, 60, module="probe")
    monkeypatch.undo()
    after = launcher.run(["exit", "0"], str(probe), os.environ, None, 60, module="probe")
    assert after is not None and after.returncode == 0
