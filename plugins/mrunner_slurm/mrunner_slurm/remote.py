"""Calling the cluster-side helper (``remote_helper.py``) over the connection: one exec channel per call."""

from __future__ import annotations

import functools
import json
import shlex
import zlib
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from mrunner.errors import BackendError
from mrunner_slurm import remote_helper
from mrunner_slurm.ssh import Connection, Result

HELPER_PYTHON = "python3"  # the login node's interpreter that runs the helper (not the experiments')


@functools.cache
def _helper() -> bytes:
    blob = zlib.compress(Path(remote_helper.__file__).read_bytes(), 9)
    return str(len(blob)).encode() + b"\n" + blob


def _command(*args: str) -> str:
    return shlex.join([HELPER_PYTHON, "-c", remote_helper.LAUNCHER, *args])


def pack(document: Any) -> bytes:
    """A JSON document as the helper reads it: zlib-compressed (1,000 tasks' files shrink ~10x)."""
    return zlib.compress(json.dumps(document).encode(), 1)


def run(connection: Connection, args: Iterable[str], stdin: bytes | Iterable[bytes] = b"") -> Result:
    """Run a helper command; its stdin is the helper itself, then ``stdin``."""
    chunks = [stdin] if isinstance(stdin, (bytes, bytearray)) else stdin
    return connection.run(_command(*args), _prefixed(chunks))


def _prefixed(chunks: Iterable[bytes]) -> Iterator[bytes]:
    yield _helper()
    yield from chunks


def call(connection: Connection, args: Iterable[str], stdin: bytes | Iterable[bytes] = b"") -> Any:
    """Run a helper command and return its JSON answer; a failure is a ``BackendError`` with its message."""
    result = run(connection, list(args), stdin)
    if result.code:
        raise BackendError(_helper_error(connection, result))
    return json.loads(result.stdout.decode().strip().splitlines()[-1])


def lines(connection: Connection, args: Iterable[str], stdin: bytes) -> Iterator[dict[str, Any]]:
    """Run a helper command that answers with one JSON line per event, as they come."""
    for line in connection.lines(_command(*args), _helper() + stdin):
        if line.strip():
            yield json.loads(line)


def _helper_error(connection: Connection, result: Result) -> str:
    message = result.error.removeprefix("mrunner: ")
    if result.code == 127 or "command not found" in message:
        return f"{connection.target.alias} has no {HELPER_PYTHON} on its PATH, which mrunner needs on the login node"
    return f"on {connection.target.alias}: {message}"
