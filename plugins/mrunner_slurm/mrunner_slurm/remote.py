"""Calling the cluster-side helper (``remote_helper.py``) over the connection: one exec channel per call."""

from __future__ import annotations

import json
import threading
import zlib
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from mrunner.errors import BackendError, cut_output
from mrunner_slurm import shipped
from mrunner_slurm.transport import Call, Connection, Result

HELPER_PYTHON = "python3"  # the login node's interpreter that runs the helper (not the experiments')


def _helper() -> shipped.Shipped:
    """The helper as sent with each call, kept compiled on the cluster (``mrunner_slurm.shipped``)."""
    return shipped.of_file("mrunner-slurm-helper", str(Path(__file__).with_name("remote_helper.py")))


def _command(*args: str) -> str:
    return _helper().command(HELPER_PYTHON, *args)


def pack(document: Any) -> bytes:
    """A JSON document as the helper reads it: zlib-compressed (1,000 tasks' files shrink ~10x)."""
    return zlib.compress(json.dumps(document).encode(), 1)


def prestart(connection: Connection) -> None:
    """Start a helper that waits for its command on stdin, so that the next call skips the cluster's python
    start-up and the helper's imports. Called while the core snapshots the code,
    and again in the background whenever a call took the spare one. A spare never used ends when the
    connection closes (its stdin reaches end of file). Failing to start one is not an error: the next
    call then starts its own helper, and reports what is wrong."""
    try:
        call = connection.start(_command("serve"))
        call.send(_helper().head)
    except Exception:
        return
    with _SPARE_LOCK:
        if connection.spare is None:
            connection.spare = call
            return
    call.close()


_SPARE_LOCK = threading.Lock()


def _take_spare(connection: Connection) -> Call | None:
    with _SPARE_LOCK:
        spare, connection.spare = connection.spare, None
    if spare is not None:
        threading.Thread(target=prestart, args=(connection,), name="mrunner-slurm-helper", daemon=True).start()
    return spare


def _start(connection: Connection, args: list[str]) -> tuple[Call, bytes]:
    """A started helper for ``args`` and what its stdin must begin with."""
    spare = _take_spare(connection)
    if spare is not None:
        return spare, json.dumps(args).encode() + b"\n"
    return connection.start(_command(*args)), _helper().head


def run(connection: Connection, args: Iterable[str], stdin: bytes | Iterable[bytes] = b"") -> Result:
    """Run a helper command; its stdin is the helper itself (or, for a spare, the command), then ``stdin``."""
    chunks = [stdin] if isinstance(stdin, (bytes, bytearray)) else stdin
    call, head = _start(connection, list(args))
    return call.finish(_prefixed(head, chunks))


def _prefixed(head: bytes, chunks: Iterable[bytes]) -> Iterator[bytes]:
    yield head
    yield from chunks


def call(connection: Connection, args: Iterable[str], stdin: bytes | Iterable[bytes] = b"") -> Any:
    """Run a helper command and return its JSON answer; a failure is a ``BackendError`` with its message."""
    result = run(connection, list(args), stdin)
    if result.code:
        raise BackendError(_helper_error(connection, result))
    return json.loads(result.stdout.decode().strip().splitlines()[-1])


def lines(
    connection: Connection, args: Iterable[str], stdin: bytes, started: Callable[[Call], None] | None = None
) -> Iterator[dict[str, Any]]:
    """Run a helper command that answers with one JSON line per event, as they come; ``started`` is given
    the call before it is fed (to cut it short: ``Call.abandon``)."""
    call, head = _start(connection, list(args))
    if started is not None:
        started(call)
    for line in call.lines(head + stdin):
        if line.strip():
            yield json.loads(line)


def _helper_error(connection: Connection, result: Result) -> str:
    """The helper's complaint as one line: its own first line (``mrunner: ...``) with the tool output it
    quotes below cut to what matters (colour codes gone, the last meaningful lines), or the output alone."""
    text = result.stderr.decode(errors="replace").strip()
    head, _, rest = text.partition("\n")
    if head.startswith("mrunner: "):
        message = head.removeprefix("mrunner: ") + (" " + cut_output(rest) if rest.strip() else "")
    else:
        message = cut_output(text) or f"exit status {result.code}"
    if result.code == 127 or "command not found" in message:
        return f"{connection.target.alias} has no {HELPER_PYTHON} on its PATH, which mrunner needs on the login node"
    return f"on {connection.target.alias}: {message}"
