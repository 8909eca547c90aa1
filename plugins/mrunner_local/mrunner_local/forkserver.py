"""The small process that forks the local backend's attempt wrappers: ``python -m mrunner_local.forkserver``,
started once per supervisor, with nothing loaded but the wrapper (``mrunner.attempt``) and what it needs.

Why a process of its own: a fork costs what the forking process holds. Forked from the supervisor (the
``mrunner`` command itself when a sweep runs inline, Hydra and the records loaded), each wrapper copied the
supervisor's page tables, faulted in copies of the pages it touched, and tore the whole address space down at
its exit, while the supervisor faulted in copies of the pages it wrote as long as the wrapper lived (measured
in benchmarks/results-core.md). Forked from this process, a wrapper shares a small heap that nobody else
writes. A new interpreter per wrapper would cost more still (its start and imports).

The protocol, over the stream socket this process gets as its stdin: the supervisor sends a request (an
8-byte length with the descriptors of the attempt's output and handshake attached, then that many bytes of
JSON: argv, cwd, env); this process forks the wrapper and answers one JSON line ``{"pid": N}`` (or
``{"error": [errno, message]}``); when a wrapper ends it sends ``{"exit": N, "code": C}``, C as
``Popen.returncode`` has it, and ``{"gone": N}`` once it reaped it. The two differ in time: a wrapper tells its
exit code over a pipe of its own just before ``os._exit`` (its experiment ended, its exit-code file written),
while its exit itself may take milliseconds more in the kernel (the view's mount namespace torn down, the
overlay's upper file system synced): the supervisor's slot is free at the first, and the view's work folder
may go at the second. A wrapper killed outright tells nothing: its ``exit`` comes at the reap. It reaps its
wrappers, so the supervisor never sees them as its children. It
lives in a session of its own, so a Ctrl-C at the terminal reaches the supervisor alone, and ends when the
supervisor's end of the socket closes; wrappers still running then go on, as they did when their supervisor
died before.
"""

from __future__ import annotations

import ctypes  # noqa: F401  (loaded before any fork: the wrapper ties its experiment to it with ctypes)
import gc
import importlib
import json
import os
import select
import signal
import socket
import struct
import sys

from mrunner.attempt import FORWARDED, halted_by, main, warm_up

TYPE_CHECKING = False
if TYPE_CHECKING:  # the annotations only: every wrapper forked from here would copy ``typing``
    from typing import NoReturn

#: The length that precedes each request's JSON.
HEADER = struct.Struct("!Q")


def serve(channel: socket.socket) -> None:
    """Fork a wrapper per request until the supervisor closes ``channel``; report each one's end."""
    wake_read, wake_write = os.pipe()
    os.set_blocking(wake_write, False)
    signal.set_wakeup_fd(wake_write)
    signal.signal(signal.SIGCHLD, lambda *_: None)  # a handler, so that SIGCHLD writes to the wakeup pipe
    for number in FORWARDED:
        signal.signal(number, signal.SIG_IGN)  # a stop is the supervisor's to pass on, not this process's
    warm_up()
    gc.freeze()  # what is made now stays as it is: the forks share it
    try:
        while True:
            _reap(channel)
            poller = select.poll()  # not select(): a wrapper's pipe may be past its 1,024 descriptors
            for descriptor in (channel.fileno(), wake_read, *_telling):
                poller.register(descriptor, select.POLLIN)
            ready = [descriptor for descriptor, _ in poller.poll()]
            if wake_read in ready:
                os.read(wake_read, 4096)
            for told in ready:
                if told in _telling:
                    _told(channel, told)
            if channel.fileno() in ready and not _fork_one(channel):
                return
    except (BrokenPipeError, ConnectionResetError):
        return  # the supervisor went away while a wrapper's end was being told


def _fork_one(channel: socket.socket) -> bool:
    """Read one request and fork its wrapper; False when the supervisor is gone."""
    header, fds, _, _ = socket.recv_fds(channel, HEADER.size, 2)
    if len(header) < HEADER.size:
        for fd in fds:
            os.close(fd)
        return False
    (size,) = HEADER.unpack(header)
    body = bytearray()
    while len(body) < size:
        chunk = channel.recv(size - len(body))
        if not chunk:
            return False
        body += chunk
    request = json.loads(body)
    _preload(request["argv"])
    output, handshake = fds
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGCHLD, *FORWARDED})
    telling, tell = os.pipe()
    os.set_blocking(telling, False)  # read at a reap too, when a process the wrapper left may hold its end
    try:
        pid = os.fork()
        if pid == 0:
            _child(request["argv"], request["cwd"], request["env"], output, handshake, tell, blocked)
        answer: dict = {"pid": pid}
        _telling[telling] = pid
        _told_by[pid] = telling
    except OSError as error:
        answer = {"error": [error.errno, error.strerror or str(error)]}
        os.close(telling)
    finally:
        os.close(output)
        os.close(handshake)
        os.close(tell)
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
    channel.sendall(json.dumps(answer).encode() + b"\n")
    return True


def _preload(argv: list[str]) -> None:
    """Import what the wrapper's options make it load (``--view``: the view's mount; ``--watch``: the watch over
    a copy of the code) here, once, before its fork, not in every wrapper; and only what they need, since
    every fork copies what this process holds."""
    wanted = [name for option, name in _LOADS if option in argv and name not in sys.modules]
    for name in wanted:
        importlib.import_module(name)
    if wanted:
        gc.freeze()  # as what was loaded before the first fork


#: What a wrapper's option makes it import.
_LOADS = (("--view", "mrunner.codeview"), ("--watch", "mrunner.treeguard"))


#: The read ends of the pipes over which running wrappers tell their exit code, and whose each is.
_telling: dict[int, int] = {}
_told_by: dict[int, int] = {}
#: The wrappers whose exit code was told before their reap.
_reported: set[int] = set()
#: The descriptor a wrapper tells its exit code on (its first above the standard three; close on exec).
TELL_FD = 3


def _told(channel: socket.socket, telling: int) -> None:
    """A wrapper told its exit code (it is about to exit), or closed its pipe without (killed: its reap tells)."""
    try:
        told = os.read(telling, 16)
    except BlockingIOError:
        told = b""
    pid = _telling.pop(telling)
    del _told_by[pid]
    os.close(telling)
    if told:
        _reported.add(pid)
        channel.sendall(json.dumps({"exit": pid, "code": int(told)}).encode() + b"\n")


def _reap(channel: socket.socket) -> None:
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        if pid in _told_by:  # it may have told, and exited, since the last look
            _told(channel, _told_by[pid])
        message = b""
        if pid in _reported:
            _reported.discard(pid)
        else:
            message = json.dumps({"exit": pid, "code": os.waitstatus_to_exitcode(status)}).encode() + b"\n"
        channel.sendall(message + json.dumps({"gone": pid}).encode() + b"\n")


def _child(
    argv: list[str], cwd: str, env: dict[str, str], output: int, handshake: int, tell: int, mask: set
) -> NoReturn:
    """The wrapper: its own session, the handshake as stdin, the attempt's output as stdout and stderr, the
    default dispositions of the stopping signals (blocked until then), then ``mrunner.attempt.main``; its exit
    code told on ``tell`` (as ``TELL_FD``, which its experiment never gets) just before it exits."""
    code = 127
    try:
        gc.disable()  # nothing to collect in a short-lived wrapper; untouched pages stay shared
        signal.set_wakeup_fd(-1)
        for number in (signal.SIGCHLD, *FORWARDED):
            signal.signal(number, signal.SIG_DFL)
        os.setsid()
        os.dup2(handshake, 0)
        os.dup2(output, 1)
        os.dup2(output, 2)
        os.dup2(tell, TELL_FD, inheritable=False)
        os.closerange(TELL_FD + 1, os.sysconf("SC_OPEN_MAX"))  # the supervisor's channel, the wakeup pipe, ...
        os.chdir(cwd)
        _become(env)
        sys.stdin = open(0, closefd=False)
        sys.stdout = open(1, "w", closefd=False)
        sys.stderr = open(2, "w", closefd=False)
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        code = main(argv)
        if code != 0 and halted_by:  # stopped by a signal (to this pid, as `cancel` sends it): not its own end,
            code = 128 + halted_by[0]  # whatever code its handler chose; the supervisor records it cancelled
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
        try:
            os.write(TELL_FD, str(code & 0xFF).encode())  # as its exit status will say
        except OSError:
            pass
        os._exit(code)


def _become(env: dict[str, str]) -> None:
    """Make ``os.environ`` the wrapper's ``env``. It differs from this process's own (the supervisor's, which
    started it) in a few names only: those alone are set or removed, each of which costs a call to libc."""
    for name in [name for name in os.environ if name not in env]:
        del os.environ[name]
    for name, value in env.items():
        if os.environ.get(name) != value:
            os.environ[name] = value


def _channel() -> socket.socket:
    """The socket the supervisor gave as stdin, moved off descriptor 0 (a wrapper's handshake goes there)."""
    channel = socket.socket(fileno=os.dup(0))
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    return channel


if __name__ == "__main__":
    serve(_channel())
