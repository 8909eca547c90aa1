"""Starting an attempt's wrapper (``mrunner.attempt``) on this machine: a fork that runs the wrapper's ``main``
with the command line every backend builds (``mrunner.attempt.command_line``), instead of a new interpreter
per experiment, whose start-up would cost about as much as a short experiment itself.

The fork is made by a small process of the supervisor's (``mrunner_local.forkserver``, started at the first
wrapper and kept while the supervisor lives), not by the supervisor itself: see that module for why and for
the child's set-up. It reports each wrapper's pid and, when the wrapper ends, its exit status.
"""

from __future__ import annotations

import atexit
import json
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Mapping, Sequence

from mrunner.attempt import START

_PREFIX = ["-m", "mrunner.attempt"]
#: The length that precedes each request's JSON (``mrunner_local.forkserver.HEADER``).
_HEADER_BYTES = 8


class Wrapper:
    """A started wrapper: its pid (the leader of a session of its own), told to start its experiment by
    ``start`` once the caller has recorded it running (``--handshake``)."""

    def __init__(self, command: Sequence[str], cwd: str, env: Mapping[str, str], output: int) -> None:
        if list(command[1:3]) != _PREFIX:
            raise ValueError(f"not a command line of mrunner.attempt: {command[:3]}")
        read, self._write = os.pipe()
        self._server = _server()
        try:
            self.pid = self._server.fork(list(command[3:]), cwd, dict(env), output, read)
        except BaseException:
            os.close(self._write)
            raise
        finally:
            os.close(read)

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
        """Its exit code, as ``Popen.returncode`` has it (``-N`` when a signal ``N`` killed it), once it ended:
        told by the wrapper as it exits, before the kernel is done with its exit (``gone``)."""
        return self._server.wait(self.pid)

    def gone(self) -> None:
        """Return once the wrapper's exit is done (reaped): its view's mount, and so its work folder, released."""
        self._server.gone_wait(self.pid)


class _ForkServer:
    """The supervisor's end of ``mrunner_local.forkserver``: one request at a time, answers and ends read by
    a thread of their own."""

    def __init__(self) -> None:
        ours, theirs = socket.socketpair()
        with theirs:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "mrunner_local.forkserver"],
                stdin=theirs.fileno(),
                stdout=subprocess.DEVNULL,
                start_new_session=True,
            )
        self.channel = ours
        self.requests = threading.Lock()
        self.changed = threading.Condition()
        self.answers: list[dict] = []
        self.ended: dict[int, int] = {}
        self.reaped: set[int] = set()
        self.gone = False
        self.owner = os.getpid()
        threading.Thread(target=self._read, name="mrunner-forkserver", daemon=True).start()

    def fork(self, argv: list[str], cwd: str, env: dict[str, str], output: int, handshake: int) -> int:
        """Fork a wrapper running ``mrunner.attempt.main(argv)``; its pid."""
        body = json.dumps({"argv": argv, "cwd": cwd, "env": env}).encode()
        with self.requests:
            if self.gone:
                raise OSError("the local backend's fork server ended")
            socket.send_fds(self.channel, [len(body).to_bytes(_HEADER_BYTES, "big")], [output, handshake])
            self.channel.sendall(body)
            with self.changed:
                self.changed.wait_for(lambda: self.answers or self.gone)
                if not self.answers:
                    raise OSError("the local backend's fork server ended")
                answer = self.answers.pop(0)
        if "error" in answer:
            raise OSError(*answer["error"])
        return int(answer["pid"])

    def wait(self, pid: int) -> int:
        """The exit code of the wrapper ``pid`` once it ended."""
        with self.changed:
            self.changed.wait_for(lambda: pid in self.ended or self.gone)
            if pid in self.ended:
                return self.ended.pop(pid)
        # The fork server ended first (killed): its wrappers went on without it, and their exit statuses went
        # to whoever reaps orphans; that they ended is told by /proc alone.
        _until_dead(pid)
        return -signal.SIGKILL

    def gone_wait(self, pid: int) -> None:
        """Return once the wrapper ``pid`` was reaped (or, its fork server gone, is no longer alive)."""
        with self.changed:
            self.changed.wait_for(lambda: pid in self.reaped or self.gone)
            if pid in self.reaped:
                self.reaped.discard(pid)
                return
        _until_dead(pid)

    def close(self) -> None:
        """Let it end (wrappers still running go on) and wait for that."""
        try:
            self.channel.shutdown(socket.SHUT_RDWR)  # an end of file, though the reading thread holds it open
        except OSError:
            pass
        self.channel.close()
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        except KeyboardInterrupt:
            # A stop (Ctrl-C, SIGTERM) while the exiting process waits here: it ends already, and the fork
            # server ends at the closed socket without it; a traceback from the exit would say otherwise.
            pass

    def _read(self) -> None:
        with self.channel.makefile("rb") as lines:
            for line in lines:
                message = json.loads(line)
                with self.changed:
                    if "exit" in message:
                        self.ended[int(message["exit"])] = int(message["code"])
                    elif "gone" in message:
                        self.reaped.add(int(message["gone"]))
                    else:
                        self.answers.append(message)
                    self.changed.notify_all()
        with self.changed:
            self.gone = True
            self.changed.notify_all()


def _until_dead(pid: int) -> None:
    while _alive(pid):
        threading.Event().wait(0.05)


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie no longer does: not every PID 1 reaps the orphans it inherits)."""
    try:
        with open(f"/proc/{pid}/stat") as stream:
            return stream.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


_lock = threading.Lock()
_started: _ForkServer | None = None


def start_server() -> None:
    """Start this process's fork server now rather than at its first wrapper: the server's start (an
    interpreter and its imports) then goes on while the caller prepares its first experiments."""
    _server()


def _server() -> _ForkServer:
    """This process's fork server, started at its first wrapper (and again should it have ended, or this
    process be a fork of the one that started it)."""
    global _started
    with _lock:
        if _started is None or _started.gone or _started.owner != os.getpid():
            _started = _ForkServer()
            atexit.register(_started.close)
        return _started
