"""Summaries of metrics files made where the files are: the table of `mrunner results` without the curves.

A first `results` of a large Slurm sweep spent most of its time bringing a thousand metrics files over and
parsing their hundred thousand lines here. Its table needs four numbers per metric (``--agg last|min|max|mean``),
so a backend that can (``Backend.summaries``) runs the pull's sender with ``mrunner.metrics`` ahead of it
(``sender_source``): the sender reads each file the receiver lacks and sends ``mrunner.metrics.summarised`` of
it in its place. They are kept beside the metrics files in `results`' cache (``CACHE``: ``marshal`` of
``{folder: (size, mtime_ns, summary)}``, the remote file's size and time), so that a second call reaches
nothing and the next pull of that experiment's file (``--curves``) or summary sends only what changed.
"""

from __future__ import annotations

import functools
import json
import marshal
import os
from pathlib import Path
from typing import Any

#: Beside the metrics files in `results`' cache.
CACHE = ".summaries.marshal"
_VERSION = 2  # 2: a report without a step after stepped ones comes after them (mrunner.metrics.curves)

#: The line of ``mrunner.transfer`` that its sender of summaries leaves out (the one of ``mrunner.metrics``,
#: ahead of it, stands for both: a future import comes first or not at all).
_FUTURE = b"\nfrom __future__ import annotations\n"


@functools.cache
def sender_source() -> bytes:
    """The source of the sender of summaries: ``mrunner.metrics`` (whose ``summarised`` ``mrunner.transfer``'s
    ``main`` calls when a request asks to summarise), then ``mrunner.transfer``, as one module: a backend runs
    it as it runs the transfer's own source (``python -c transfer.LAUNCHER``, or kept compiled)."""
    from mrunner import metrics, transfer

    sender = Path(transfer.__file__).read_bytes()
    if _FUTURE not in sender:
        raise AssertionError("mrunner.transfer lost its future import: mrunner.summaries.sender_source needs it")
    return Path(metrics.__file__).read_bytes() + b"\n" + sender.replace(_FUTURE, b"\n", 1)


def source() -> bytes:
    """What ``transfer.LAUNCHER`` reads on stdin ahead of a request to summarise: ``sender_source``,
    compressed."""
    import zlib

    blob = zlib.compress(sender_source(), 9)
    return str(len(blob)).encode() + b"\n" + blob


def decoded(received: dict[str, tuple[int, int, bytes]]) -> dict[str, tuple[int, int, dict[str, list[float]]]]:
    """``Receiver.summaries`` (FOLDER/FILE -> size, mtime_ns, JSON) as the cache keeps them: FOLDER -> size,
    mtime_ns, metric -> [last, min, max, mean, last step]. One decode of them all: a thousand small ones cost
    several times more."""
    if not received:
        return {}
    found = json.loads(b"[" + b",".join(data for _, _, data in received.values()) + b"]")
    return {
        name.split("/", 1)[0]: (size, mtime, summary)
        for (name, (size, mtime, _)), summary in zip(received.items(), found)
    }


def load(folder: Path) -> dict[str, tuple[int, int, dict[str, list[float]]]]:
    """The summaries kept in ``folder``; none when there are none yet or they were written by another Python."""
    try:
        version, found = marshal.loads((folder / CACHE).read_bytes())
    except (OSError, ValueError, EOFError, TypeError):
        return {}
    return found if version == _VERSION and isinstance(found, dict) else {}


def save(folder: Path, found: dict[str, Any]) -> None:
    """Replace the kept summaries by ``found`` (whole: a reader sees the old ones or the new)."""
    path = folder / CACHE
    temporary = path.with_name(f"{CACHE}.{os.getpid()}.tmp")
    temporary.write_bytes(marshal.dumps((_VERSION, found)))
    os.replace(temporary, path)
