"""The local backend's attempt wrappers come from its fork server, not from the supervisor (that holds Hydra
and the records): their pids, handshake, exit statuses and a kill as before, and the server's end."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

from mrunner_local import wrapper
from mrunner_local.wrapper import Wrapper

from mrunner.attempt import SETUP_FAILED, UNSTARTED, command_line
from mrunner.testing import wait_for


def _started(tmp_path: Path, name: str) -> tuple[Wrapper, Path]:
    log = tmp_path / f"{name}.log"
    line = command_line(sys.executable, str(tmp_path), ["true"], grace=1.0, handshake=True)
    with open(log, "wb") as output:
        return Wrapper(line, str(tmp_path), {"PATH": os.environ["PATH"]}, output.fileno()), log


def _parent(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as stream:
        return int(stream.read().rsplit(")", 1)[1].split()[1])


def test_wrappers_are_forked_by_the_server_and_report_their_ends(tmp_path: Path) -> None:
    unstarted, log = _started(tmp_path, "unstarted")
    killed, _ = _started(tmp_path, "killed")
    server = wrapper._server().process.pid
    assert _parent(unstarted.pid) == server != os.getpid()
    wait_for(lambda: os.getsid(unstarted.pid) == unstarted.pid, what="a session of its own, as before")
    unstarted.abandon()
    assert unstarted.wait() == UNSTARTED
    assert "went away before it was recorded" in log.read_text()
    os.kill(killed.pid, signal.SIGKILL)
    assert killed.wait() == -signal.SIGKILL
    killed.abandon()


def test_a_killed_server_is_replaced_and_its_wrappers_still_end(tmp_path: Path) -> None:
    orphan, _ = _started(tmp_path, "orphan")
    old = wrapper._server()
    os.kill(old.process.pid, signal.SIGKILL)
    wait_for(lambda: old.gone, what="the fork server's end to be seen")
    orphan.abandon()  # it exits without its server: its end is told by /proc
    assert orphan.wait() == -signal.SIGKILL
    following, _ = _started(tmp_path, "following")
    assert wrapper._server() is not old
    following.abandon()
    assert following.wait() == UNSTARTED


def test_the_server_ends_with_its_supervisor(tmp_path: Path) -> None:
    unstarted, _ = _started(tmp_path, "unstarted")
    server = wrapper._server()
    server.close()
    assert server.process.returncode == 0
    unstarted.abandon()
    assert unstarted.wait() == -signal.SIGKILL  # its end is told by /proc alone
    assert not wrapper._alive(unstarted.pid)


def test_a_wrapper_tells_its_end_as_it_exits_and_is_reaped_after(tmp_path: Path) -> None:
    """The end a supervisor frees its slot at comes from the wrapper itself, before the kernel is done with its
    exit; its reap (``gone``) follows, and a wrapper killed outright, which tells nothing, still ends both ways."""
    told, _ = _started(tmp_path, "told")
    killed, _ = _started(tmp_path, "killed")
    server = wrapper._server()
    told.start()
    assert told.wait() == SETUP_FAILED  # no experiment's layout in its environment: an end of its own all the same
    told.gone()
    assert not wrapper._alive(told.pid)
    assert told.pid not in server.ended and told.pid not in server.reaped  # each told once, and forgotten
    os.kill(killed.pid, signal.SIGKILL)
    assert killed.wait() == -signal.SIGKILL
    killed.gone()
    assert not wrapper._alive(killed.pid)
    killed.abandon()


def test_the_server_tells_each_end_once_and_before_the_reap(tmp_path: Path) -> None:
    """Over the protocol itself: ``exit`` then ``gone``, once each, for a wrapper that told its code."""
    import json
    import socket
    import subprocess

    ours, theirs = socket.socketpair()
    with theirs:
        server = subprocess.Popen([sys.executable, "-m", "mrunner_local.forkserver"], stdin=theirs.fileno())
    try:
        read, write = os.pipe()
        os.write(write, b"start\n")
        os.close(write)
        argv = command_line(sys.executable, str(tmp_path), ["true"], grace=1.0, handshake=True)[3:]
        body = json.dumps({"argv": argv, "cwd": str(tmp_path), "env": {"PATH": os.environ["PATH"]}}).encode()
        with open(tmp_path / "log", "wb") as output:
            socket.send_fds(ours, [len(body).to_bytes(8, "big")], [output.fileno(), read])
        os.close(read)
        ours.sendall(body)
        ours.settimeout(30)  # a message that never comes fails the test, not the run
        lines = ours.makefile("rb")
        pid = json.loads(lines.readline())["pid"]
        assert [json.loads(lines.readline()) for _ in range(2)] == [{"exit": pid, "code": SETUP_FAILED}, {"gone": pid}]
    finally:
        ours.shutdown(socket.SHUT_RDWR)
        ours.close()
        server.wait(timeout=10)
