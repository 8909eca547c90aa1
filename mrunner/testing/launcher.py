"""The warm launcher: ``python -m mrunner`` for a test without a new interpreter's start-up each time.

Most of the CPU a test of the command line spends is not the command's work: it is a new interpreter
importing mrunner's modules, Hydra, OmegaConf and pluggy again (benchmarks/test-tiers.md). The launcher is
one process per test process (so one per pytest-xdist worker), started on the first call, that has imported
them once; for each call it forks a child that becomes ``python -m mrunner ARGS`` with the call's own
standard streams, working directory, environment, command line and signal dispositions, runs mrunner's
``__main__`` as ``-m`` does, and exits as that process would; the launcher sends back its exit status (the
pattern of multiprocessing's ``forkserver``).

What makes a warm child the process a new one would be:

- nothing imported before the call depends on the environment, the working directory or the command line:
  the launcher imports every module of the ``mrunner`` package (the test kit and ``__main__`` aside) and each
  module an entry point of the group ``mrunner`` names, and checks at start that doing so changed nothing a
  new process would not have (variables, signal dispositions, open descriptors, threads, warning filters,
  logging, ``sys.path``, the import machinery) and read no variable a call could set otherwise (a call whose
  value of a variable read at import differs from the launcher's runs in a new process); the exit handlers
  those imports registered run before the command's own, as if the modules were imported during the command;
- the child gets the call's descriptors as 0, 1 and 2 and closes every other one, takes the call's working
  directory (and ``sys.path[0]``, as ``-m`` puts it there), replaces ``os.environ`` whole, takes what a
  process inherits from the test at the call (umask, resource limits, priority, CPUs, the calling thread's
  signal mask), ``sys.argv`` and ``sys.orig_argv``, the signal dispositions a new interpreter starts with
  (from the signals the test ignores, as the launcher's were), and its ``/proc/PID/cmdline`` (written over
  the launcher's, which reserves room for it), and runs ``runpy.run_module("mrunner", run_name="__main__",
  alter_sys=True)``, so an exit, an uncaught exception or a Ctrl-C ends it as it ends ``python -m mrunner``;
- ``random`` reseeds itself in a forked child; ``os.urandom``, ``uuid`` and ``secrets`` read the kernel's.

Where a child could differ, the call goes to a new process instead (``Launcher.run`` returns None): a
variable read at an interpreter's start (``PYTHON*``, locale, ``TZ``, ``LD_*``...) differs from the
launcher's; a file in the working directory would shadow a module the launcher imported (``-m`` puts that
folder first on ``sys.path``); a standard stream is a terminal where the launcher's was not, or the other way
round; a site-packages folder changed since the launcher started (a package installed meanwhile); the test
ignores other signals, or is in another process group, than when the launcher started; a limit, priority or
CPU set cannot be taken; the command line does not fit the room reserved for it, or holds a NUL.

What still differs, and no test of mrunner looks at: the child's parent is the launcher, not the test
process (it is never the test's ``Popen``: a test that signals or waits for mrunner itself uses
``start_mrunner``, a real process); ``sys.modules`` holds what the launcher imported; string hashes are the
launcher's (``PYTHONHASHSEED``); an uncaught exception's traceback shows the launcher's frames above
mrunner's ``__main__``; ``/proc/PID/environ`` shows the launcher's start-up environment (the process's own,
``os.environ`` and what it passes to its children, is the call's).

``MRUNNER_TEST_WARM=0`` in the test run's environment makes every call a new process.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib
import os
import pickle
import selectors
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

#: Set to ``0`` in the test run's environment: every ``mrunner`` call is a new interpreter.
SWITCH = "MRUNNER_TEST_WARM"
#: Variables an interpreter reads as it starts (or the C library as it loads), which a forked child cannot
#: take from the call: a call whose value of one differs from the launcher's runs in a new process.
STARTUP_PREFIXES = ("PYTHON", "LC_", "LD_", "OPENSSL_", "MALLOC_", "GLIBC_")
STARTUP_NAMES = frozenset({"LANG", "LOCPATH", "GCONV_PATH", "TZ"})
#: Bytes of command line reserved in the launcher's own arguments, written over by each child's.
RESERVED = 65536
#: How long a launcher may take to import what it preloads on a loaded machine.
START_TIMEOUT = 300.0
_MESSAGE = 1 << 20  # the largest request: an environment and a command line


@dataclass(frozen=True)
class Request:
    """One call: ``python -m MODULE ARGS`` (``mrunner``; another module in the launcher's own tests), in
    a working directory, with a whole environment."""

    module: str
    args: tuple[str, ...]
    cwd: str
    env: dict[str, str]
    inherited: dict[str, Any]  # the rest of what a new process would take from the test's (``_inherited``)


# -- the test's side ------------------------------------------------------------------------------------------


class LauncherFailed(RuntimeError):
    """The launcher process died or could not start: a defect of the test kit, not of the test."""


class Launcher:
    """A running launcher and the connection to it; ``run`` is safe to call from several threads at once."""

    def __init__(self, env: Mapping[str, str]) -> None:
        import tempfile

        self.env = dict(env)
        self.pid = os.getpid()
        self._sending = threading.Lock()
        self._control, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self._log = tempfile.TemporaryFile()
        arguments = [str(theirs.fileno()), " " * RESERVED]
        #: the launcher's own command line, which each child's is written over: no longer than it
        self._room = len(_command_line(arguments, module=__name__))
        # A folder of its own as its working directory, so `-m` puts nothing of the tests first on its
        # sys.path; removed once it has started (the children take their own).
        folder = tempfile.mkdtemp(prefix="mrunner-launcher-")
        try:
            self._process = subprocess.Popen(
                [sys.executable, "-m", __name__, *arguments],
                cwd=folder,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=self._log,
                pass_fds=[theirs.fileno()],
            )
            theirs.close()
            self._control.settimeout(START_TIMEOUT)
            try:
                ready = self._control.recv(_MESSAGE)
            except OSError:  # the timeout too
                ready = b""
            self._control.settimeout(None)
        finally:
            os.rmdir(folder)
        if not ready:
            self._process.kill()
            self._process.wait()
            raise LauncherFailed(f"the mrunner test launcher did not start: {self._errors()}")
        #: why the launcher will not serve (preloading changed the process, say), or None; and the variables
        #: its imports read, which a call must have as the launcher had them
        self.refusal: str | None
        self.refusal, read = pickle.loads(ready)
        self._read = frozenset(read)

    def _errors(self) -> str:
        self._log.seek(0)
        text = self._log.read().decode(errors="replace").strip()
        return text.splitlines()[-1] if text else f"it ended with {self._process.poll()}"

    def close(self) -> None:
        """End the launcher (it ends when the connection closes) and reap it."""
        self._control.close()
        try:
            self._process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        self._log.close()

    def eligible(self, args: Sequence[str], env: Mapping[str, str], module: str = "mrunner") -> bool:
        """Whether a forked child can be this call's process: what is read at an interpreter's start is the
        launcher's, and the command line fits the room the launcher reserved for it."""
        if self.refusal is not None or len(_command_line(args, module)) > self._room:
            return False
        if any("\0" in text for text in (*args, *env, *env.values())) or any("=" in name for name in env):
            return False  # Popen refuses such a command or environment: let it say so
        names = {*env, *self.env, *self._read}
        return all(env.get(n) == self.env.get(n) for n in names if n in self._read or _read_at_start(n))

    def run(
        self,
        args: Sequence[str],
        cwd: str,
        env: Mapping[str, str],
        input: str | None,
        timeout: float | None,
        module: str = "mrunner",
    ) -> subprocess.CompletedProcess | None:
        """``subprocess.run([python, -m, module, *args], cwd=, env=, input=, timeout=, capture_output=True,
        text=True)`` in a warm child, or None when the call must be a new process instead."""
        if not self.eligible(args, env, module):
            return None
        import locale

        encoding = locale.getencoding()  # as subprocess decodes the output of text=True
        pipes = _Pipes(input is not None)
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        request = pickle.dumps(Request(module, tuple(args), str(cwd), dict(env), _inherited()))
        try:
            try:
                with self._sending:
                    socket.send_fds(self._control, [request], [theirs.fileno(), *pipes.theirs()])
            except OSError as error:
                raise LauncherFailed(f"the mrunner test launcher is gone ({error}): {self._errors()}") from None
            finally:
                pipes.close_theirs()
                theirs.close()
            data = input.encode(encoding) if input is not None else b""
            outcome = _follow(mine, pipes, data, timeout)
        finally:
            mine.close()
            pipes.close()
        command = [sys.executable, "-m", module, *args]
        if outcome.status is None:
            raise LauncherFailed(f"the mrunner test launcher ended during a call: {self._errors()}")
        if outcome.broken is not None:
            raise LauncherFailed(f"the mrunner test launcher failed to start the command:\n{outcome.broken}")
        if outcome.refused:
            return None
        if outcome.timed_out:
            output, errors = b"".join(outcome.stdout) or None, b"".join(outcome.stderr) or None
            raise subprocess.TimeoutExpired(command, timeout or 0, output=output, stderr=errors)
        return subprocess.CompletedProcess(
            command, outcome.status, _text(outcome.stdout, encoding), _text(outcome.stderr, encoding)
        )


class _Pipes:
    """A call's standard streams: the child's ends go to the launcher, the test keeps the others. Without
    input the child's stdin is the test process's own, as a new process would inherit it."""

    def __init__(self, with_input: bool) -> None:
        self._open: set[int] = set()
        self.stdin, child_stdin = -1, 0
        if with_input:
            child_stdin, self.stdin = self._pipe()
        self.stdout, child_stdout = self._pipe()
        self.stderr, child_stderr = self._pipe()
        self._theirs = [child_stdin, child_stdout, child_stderr]

    def _pipe(self) -> tuple[int, int]:
        read, write = os.pipe()
        self._open.update((read, write))
        return read, write

    def theirs(self) -> list[int]:
        return list(self._theirs)

    def close_theirs(self) -> None:
        for fd in self._theirs:
            self.close_one(fd)

    def close_one(self, fd: int) -> None:
        """Close ``fd`` once (a number closed twice could be another thread's new descriptor by then)."""
        if fd in self._open:
            self._open.discard(fd)
            os.close(fd)

    def close(self) -> None:
        for fd in list(self._open):
            self.close_one(fd)


@dataclass
class _Outcome:
    stdout: list[bytes] = field(default_factory=list)
    stderr: list[bytes] = field(default_factory=list)
    status: int | None = None
    refused: bool = False
    broken: str | None = None  # the launcher's failure to set a child up (its traceback)
    timed_out: bool = False


def _follow(call: socket.socket, pipes: _Pipes, data: bytes, timeout: float | None) -> _Outcome:
    """Write the input, read both outputs to their end and wait for the exit status, as ``subprocess.run``
    does; at the timeout, have the child killed and keep what was read."""
    outcome = _Outcome()
    with selectors.DefaultSelector() as selector:
        selector.register(call, selectors.EVENT_READ, "call")
        selector.register(pipes.stdout, selectors.EVENT_READ, outcome.stdout)
        selector.register(pipes.stderr, selectors.EVENT_READ, outcome.stderr)
        if pipes.stdin != -1:
            os.set_blocking(pipes.stdin, False)
            selector.register(pipes.stdin, selectors.EVENT_WRITE, "input")
        deadline = None if timeout is None else time.monotonic() + timeout
        written = 0
        while selector.get_map():
            remaining = None if deadline is None or outcome.timed_out else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                outcome.timed_out = True
                call.send(b"kill")  # by the launcher: the pid cannot be reused before the launcher reaps it
                for fd in (pipes.stdin, pipes.stdout, pipes.stderr):  # subprocess.run waits for the exit alone
                    if fd != -1 and fd in selector.get_map():
                        selector.unregister(fd)
                continue
            for key, _ in selector.select(remaining):
                if key.data == "call":
                    message = call.recv(_MESSAGE)
                    if not message:  # the launcher is gone: the caller says so
                        selector.unregister(call)
                        continue
                    kind, *rest = pickle.loads(message)
                    if kind == "exit":
                        outcome.status = rest[0]
                        selector.unregister(call)
                    elif kind == "refused":
                        outcome.refused = True
                    elif kind == "broken":
                        outcome.broken = rest[0]
                elif key.data == "input":
                    try:
                        written += os.write(pipes.stdin, data[written : written + 65536])
                    except BrokenPipeError:  # the child closed its stdin: as subprocess.run, not an error
                        written = len(data)
                    if written >= len(data):
                        selector.unregister(pipes.stdin)
                        pipes.close_one(pipes.stdin)
                else:
                    chunk = os.read(key.fd, 65536)
                    if chunk:
                        key.data.append(chunk)
                    else:
                        selector.unregister(key.fd)
    return outcome


def _inherited() -> dict[str, Any]:
    """What a process started now by this thread would inherit besides its streams, folder and environment."""
    import resource

    with open("/proc/self/status", encoding="ascii") as status:
        umask = next(int(line.split()[1], 8) for line in status if line.startswith("Umask:"))
    limits = {name: resource.getrlimit(getattr(resource, name)) for name in dir(resource) if name.startswith("RLIMIT_")}
    return {
        "umask": umask,
        "signal mask": signal.pthread_sigmask(signal.SIG_BLOCK, []),
        "ignored signals": _ignored(),
        "limits": limits,
        "priority": os.getpriority(os.PRIO_PROCESS, 0),
        "CPUs": os.sched_getaffinity(0),
        "process group and session": (os.getpgrp(), os.getsid(0)),
    }


def _ignored() -> set[int]:
    """The signals this process ignores, which a process it starts ignores too (Popen resets SIGPIPE and
    SIGXFSZ, which Python ignores, and a new Python ignores them again)."""
    ours = (signal.SIGKILL, signal.SIGSTOP, signal.SIGPIPE, signal.SIGXFSZ)
    return {n for n in signal.valid_signals() if n not in ours and signal.getsignal(n) == signal.SIG_IGN}


def _text(chunks: list[bytes], encoding: str) -> str:
    """Output as ``subprocess.run(text=True)`` gives it: decoded, universal newlines."""
    return b"".join(chunks).decode(encoding).replace("\r\n", "\n").replace("\r", "\n")


def _command_line(args: Sequence[str], module: str = "mrunner") -> bytes:
    """``/proc/PID/cmdline`` of ``python -m MODULE ARGS``."""
    return b"".join(os.fsencode(part) + b"\0" for part in (sys.executable, "-m", module, *args))


def _read_at_start(name: str) -> bool:
    import site

    user_site = name == "HOME" and bool(site.ENABLE_USER_SITE)
    return name.startswith(STARTUP_PREFIXES) or name in STARTUP_NAMES or user_site


_launcher: Launcher | None = None
_starting = threading.Lock()


def launcher(env: Mapping[str, str]) -> Launcher | None:
    """This process's launcher, started on first use with ``env``; None when ``MRUNNER_TEST_WARM=0``."""
    global _launcher
    if os.environ.get(SWITCH) == "0":
        return None
    with _starting:
        if _launcher is None or _launcher.pid != os.getpid():  # a forked test process starts its own
            _launcher = Launcher(env)
            atexit.register(_launcher.close)
            if _launcher.refusal is not None:
                import warnings

                warnings.warn(
                    f"mrunner test launcher: every call runs in a new process: {_launcher.refusal}", stacklevel=3
                )
        return _launcher


# -- the launcher's side --------------------------------------------------------------------------------------


@dataclass
class _Start:
    """What a new interpreter starts with, noted before anything is preloaded: each child takes it back."""

    signals: dict[int, Any]
    ignored: set[int]
    ttys: tuple[bool, ...]
    cwd_on_path: bool
    installed: dict[str, int | None]
    exit_handlers: list[tuple[Callable[..., Any], tuple, dict]] = field(default_factory=list)
    preloaded: dict[str, str | None] = field(default_factory=dict)


def main() -> None:
    """The launcher: preload, tell the test process whether it serves, serve; a child goes on as mrunner."""
    control = socket.socket(fileno=int(sys.argv[1]))
    start = _Start(
        signals=_signals(),
        ignored=_ignored(),
        ttys=_ttys(),
        cwd_on_path=bool(sys.path) and sys.path[0] == os.getcwd(),
        installed=_installed(),
    )
    with _exit_handlers_noted() as start.exit_handlers:
        before = _state()
        with _variables_noted() as read:
            _preload()
        after = _state()
    start.preloaded = _preloaded()
    changed = [what for what in before if before[what] != after[what]]
    refusal = None
    if changed:
        refusal = f"importing mrunner's modules and plugins changed the process's {', '.join(changed)}"
    elif _EVERY_VARIABLE in read:
        refusal = "importing mrunner's modules and plugins read the whole environment"
    elif not _cmdline_writable():
        refusal = "this system does not let a process rewrite its /proc/PID/cmdline"
    elif not hasattr(os, "pidfd_open"):
        refusal = "no os.pidfd_open here (Linux 5.3 or later)"
    import gc

    gc.collect()
    gc.freeze()  # what is loaded now lives as long as any child: the children's collections skip it
    control.send(pickle.dumps((refusal, sorted(read))))
    child = _serve(control) if refusal is None else None
    if child is None:
        os._exit(0)
    _become(*child, start)


def _signals() -> dict[int, Any]:
    return {
        number: signal.getsignal(number)
        for number in signal.valid_signals()
        if number not in (signal.SIGKILL, signal.SIGSTOP) and signal.getsignal(number) is not None
    }


def _ttys() -> tuple[bool, ...]:
    return tuple(os.isatty(fd) for fd in (0, 1, 2))


def _installed() -> dict[str, int | None]:
    """When each site-packages folder last changed: an installation there (a new ``.pth``) changes what a
    new interpreter puts on ``sys.path``, which a forked one cannot follow."""
    import site

    folders = [*site.getsitepackages(), *([site.getusersitepackages()] if site.ENABLE_USER_SITE else [])]
    times: dict[str, int | None] = {}
    for folder in folders:
        try:
            times[folder] = os.stat(folder).st_mtime_ns
        except OSError:
            times[folder] = None
    return times


_EVERY_VARIABLE = ""  # noted when an import went through the whole environment (dict(os.environ), say)


class _Noting(os._Environ):  # type: ignore[name-defined]
    """``os.environ``, noting the names read (through ``[]``, ``get``, ``in``, ``os.getenv``)."""

    def __init__(self, environ: Any, read: set[str]) -> None:
        super().__init__(environ._data, environ.encodekey, environ.decodekey, environ.encodevalue, environ.decodevalue)
        self.read = read

    def __getitem__(self, key: str) -> str:
        self.read.add(key)
        return super().__getitem__(key)

    def __iter__(self) -> Iterator[str]:
        self.read.add(_EVERY_VARIABLE)
        return super().__iter__()


@contextlib.contextmanager
def _variables_noted() -> Iterator[set[str]]:
    """The variables the block read: a module that reads one as it is imported keeps what the launcher's
    environment held, so a call with another value needs a new process. A module that imports ``environ``
    from ``os`` in the block keeps the noting mapping, which shares the real one's contents."""
    read: set[str] = set()
    environ = os.environ
    os.environ = _Noting(environ, read)  # noqa: B003  (a view of the same variables, not a new set)
    try:
        yield read
    finally:
        os.environ = environ  # noqa: B003


@contextlib.contextmanager
def _exit_handlers_noted() -> Iterator[list[tuple[Callable[..., Any], tuple, dict]]]:
    """The exit handlers registered in the block, taken out again at its end: each child registers them
    after the command's own first one (``_register_after_first``)."""
    noted: list[tuple[Callable[..., Any], tuple, dict]] = []
    register = atexit.register

    def noting(function: Callable[..., Any], *args: Any, **kwargs: Any) -> Callable[..., Any]:
        noted.append((function, args, kwargs))
        return register(function, *args, **kwargs)

    atexit.register = noting  # type: ignore[assignment]
    try:
        yield noted
    finally:
        atexit.register = register  # type: ignore[assignment]
        for function, _, _ in noted:
            atexit.unregister(function)


def _state() -> dict[str, Any]:
    """What a preloaded import must leave as it was: a new process that never imports it would not have
    the change."""
    import logging
    import tempfile
    import warnings

    return {
        "environment": dict(os.environ),
        "working directory": os.getcwd(),
        "signal dispositions": _signals(),
        "signal mask": signal.pthread_sigmask(signal.SIG_BLOCK, []),
        "open descriptors": sorted(os.listdir("/proc/self/fd")),
        "threads": threading.active_count(),
        "warning filters": list(warnings.filters),
        "root logger": (list(logging.root.handlers), logging.root.level, logging.root.manager.disable),
        "sys.path": list(sys.path),
        "import machinery": (list(sys.meta_path), list(sys.path_hooks)),
        "hooks": (sys.excepthook, sys.displayhook, sys.unraisablehook, sys.breakpointhook),
        "limits": (sys.getrecursionlimit(), sys.getswitchinterval(), sys.get_int_max_str_digits()),
        "tempfile.tempdir": tempfile.tempdir,
        "umask": os.umask(os.umask(0o022)),
    }


def _preload() -> None:
    """Import every module of mrunner (the test kit and ``__main__`` aside) and each module an entry point
    of the group ``mrunner`` names: what a command imports, paid once."""
    import pkgutil
    from importlib.metadata import entry_points

    import mrunner

    kit = __name__.rpartition(".")[0]  # this package: the test kit
    for module in pkgutil.walk_packages(mrunner.__path__, "mrunner."):
        if module.name != kit and not module.name.startswith(f"{kit}.") and not module.name.endswith(".__main__"):
            importlib.import_module(module.name)
    for entry_point in entry_points(group="mrunner"):
        importlib.import_module(entry_point.module)


def _preloaded() -> dict[str, str | None]:
    """Each loaded top-level module and the file it came from (None: a namespace package)."""
    found: dict[str, str | None] = {}
    for name, module in list(sys.modules.items()):
        if "." in name:
            continue
        file = getattr(module, "__file__", None)
        if file:
            found[name] = os.path.realpath(file)
        elif hasattr(module, "__path__"):
            found[name] = None
    return found


def _serve(control: socket.socket) -> tuple[socket.socket, list[int], Request] | None:
    """Fork a child per request until the test process closes the connection; returns only in a child."""
    selector = selectors.DefaultSelector()
    selector.register(control, selectors.EVENT_READ, None)
    running: dict[int, tuple[socket.socket, int]] = {}  # pid -> (the call's socket, its pidfd)
    while True:
        for key, _ in selector.select():
            if key.data is None:
                message, fds, _, _ = socket.recv_fds(control, _MESSAGE, 4)
                if not message:
                    return None
                call, streams = socket.socket(fileno=fds[0]), fds[1:]
                request: Request = pickle.loads(message)
                pid = os.fork()
                if pid == 0:
                    selector.close()
                    control.close()
                    for other, pidfd in running.values():
                        other.close()
                        os.close(pidfd)
                    return call, streams, request
                for fd in streams:
                    os.close(fd)
                pidfd = os.pidfd_open(pid)
                running[pid] = (call, pidfd)
                selector.register(pidfd, selectors.EVENT_READ, ("exit", pid))
                selector.register(call, selectors.EVENT_READ, ("call", pid))
            elif key.data[0] == "exit":
                pid = key.data[1]
                call, pidfd = running.pop(pid)
                _, status = os.waitpid(pid, 0)
                selector.unregister(pidfd)
                os.close(pidfd)
                if call in selector.get_map():
                    selector.unregister(call)
                _send(call, ("exit", os.waitstatus_to_exitcode(status)))
                call.close()
            else:
                pid = key.data[1]
                call = running[pid][0]
                try:
                    asked = call.recv(16)
                except OSError:
                    asked = b""
                if asked == b"kill":
                    os.kill(pid, signal.SIGKILL)
                else:  # the test stopped waiting: the child runs on, as a process a test forgot would
                    selector.unregister(call)


def _send(call: socket.socket, message: tuple) -> None:
    try:
        call.send(pickle.dumps(message))
    except OSError:
        pass  # the test stopped waiting for this call


def _become(call: socket.socket, streams: list[int], request: Request, start: _Start) -> None:
    """In the forked child: become ``python -m mrunner ARGS`` as the test would start it, and run it. A
    failure on the way is the launcher's, said as such, not the command's."""
    try:
        _set_up(call, streams, request, start)
    except BaseException:
        import traceback

        _send(call, ("broken", traceback.format_exc()))
        os._exit(1)
    import runpy

    runpy.run_module(request.module, run_name="__main__", alter_sys=True)


def _set_up(call: socket.socket, streams: list[int], request: Request, start: _Start) -> None:
    for target, fd in enumerate(streams):
        os.dup2(fd, target)
    keep = {0, 1, 2, call.fileno()}
    for fd in [int(name) for name in os.listdir("/proc/self/fd")]:
        if fd not in keep:
            try:
                os.close(fd)
            except OSError:
                pass  # the listing's own descriptor, closed already
    try:
        refusal = _refusal(request, start)
    except OSError as error:  # the working directory is gone, say: a new process fails as Popen says
        refusal = str(error)
    if refusal is not None:
        _send(call, ("refused", refusal))
        os._exit(0)
    os.environ.clear()
    os.environ.update(request.env)
    sys.argv = [sys.argv[0], *request.args]
    sys.orig_argv = [sys.executable, "-m", request.module, *request.args]
    if start.cwd_on_path:
        sys.path[0] = os.getcwd()
    _write_cmdline(_command_line(request.args, request.module))
    for number, handler in start.signals.items():
        if signal.getsignal(number) != handler:
            signal.signal(number, handler)
    signal.pthread_sigmask(signal.SIG_SETMASK, request.inherited["signal mask"])
    _register_after_first(start.exit_handlers)
    call.close()


def _refusal(request: Request, start: _Start) -> str | None:
    """Why this call cannot be a warm child, or None. In the child, once its streams are in place."""
    if _ttys() != start.ttys:
        return "a standard stream is a terminal where the launcher's is not, or the other way round"
    if _installed() != start.installed:
        return "a site-packages folder changed since the launcher started"
    inherited = request.inherited
    if inherited["ignored signals"] != start.ignored:
        return "the test ignores other signals than when the launcher started"
    if inherited["process group and session"] != (os.getpgrp(), os.getsid(0)):
        return "the test moved to another process group or session"
    import resource

    os.umask(inherited["umask"])
    try:
        for name, limit in inherited["limits"].items():
            if resource.getrlimit(getattr(resource, name)) != limit:
                resource.setrlimit(getattr(resource, name), limit)
        if os.getpriority(os.PRIO_PROCESS, 0) != inherited["priority"]:
            os.setpriority(os.PRIO_PROCESS, 0, inherited["priority"])
        if os.sched_getaffinity(0) != inherited["CPUs"]:
            os.sched_setaffinity(0, inherited["CPUs"])
    except (OSError, ValueError) as error:
        return f"the test's limits, priority or CPUs cannot be taken: {error}"
    os.chdir(request.cwd)
    import importlib.machinery as machinery

    suffixes = (*machinery.SOURCE_SUFFIXES, *machinery.BYTECODE_SUFFIXES, *machinery.EXTENSION_SUFFIXES)
    for entry in os.listdir("."):  # `-m` puts the working directory first on sys.path
        name, file = entry, os.path.join(entry, "__init__.py")
        for suffix in suffixes:
            if entry.endswith(suffix):
                name, file = entry[: -len(suffix)], entry
        if name not in start.preloaded:
            continue
        loaded = start.preloaded[name]
        if (loaded is None and os.path.isdir(entry)) or (os.path.exists(file) and os.path.realpath(file) != loaded):
            return f"{entry} in the working directory would shadow the module {name}"
    return None


def _cmdline_writable() -> bool:
    """Whether this process can write its ``/proc/PID/cmdline`` (as each child does)."""
    try:
        start, end = _cmdline_area()
        with open("/proc/self/mem", "r+b", buffering=0) as memory:
            memory.seek(start)
            current = memory.read(end - start)
            memory.seek(start)
            memory.write(current)
        with open("/proc/self/cmdline", "rb") as cmdline:
            return cmdline.read() == current
    except (OSError, ValueError, IndexError):
        return False


def _cmdline_area() -> tuple[int, int]:
    """Where this process's arguments are in its memory (``arg_start`` and ``arg_end`` of proc(5))."""
    with open("/proc/self/stat", "rb") as stat:
        fields = stat.read().rsplit(b")", 1)[1].split()
    return int(fields[45]), int(fields[46])  # fields 48 and 49; the list starts at field 3


def _write_cmdline(wanted: bytes) -> None:
    """The launcher's arguments overwritten with ``wanted``, the rest of their room zeroed."""
    start, end = _cmdline_area()
    with open("/proc/self/mem", "r+b", buffering=0) as memory:
        memory.seek(start)
        memory.write(wanted.ljust(end - start, b"\0"))


def _register_after_first(handlers: list[tuple[Callable[..., Any], tuple, dict]]) -> None:
    """Register ``handlers`` again right after the command's first exit handler (mrunner's ``console``
    registers one first thing): they then run before it, as the handlers of modules it imports do."""
    if not handlers:
        return
    register = atexit.register

    def first(function: Callable[..., Any], *args: Any, **kwargs: Any) -> Callable[..., Any]:
        atexit.register = register  # type: ignore[assignment]
        register(function, *args, **kwargs)
        for handler, handler_args, handler_kwargs in handlers:
            register(handler, *handler_args, **handler_kwargs)
        return function

    atexit.register = first  # type: ignore[assignment]


if __name__ == "__main__":
    main()
