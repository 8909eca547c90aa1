"""Experiment folders back from the cluster (`mrunner pull`) and mrunner's own files there collected
(`mrunner gc`), each in one call over the plugin's verified connection.

A pull runs the core's ``mrunner.transfer`` on the login node (sent ahead of its request on stdin and kept
compiled there, like the helper: ``mrunner_slurm.shipped``), which walks the experiment folders while this
machine lists its own copies; this machine then sends what it has (sizes and times), the cluster answers with
one compressed stream of the files that are new or changed, and each is written aside and renamed here.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mrunner import layout, transfer
from mrunner.backend import Artefact, Keep, Pulled
from mrunner.errors import BackendError
from mrunner.records import ACTIVE, Run, Sweep
from mrunner.reporter import Reporter

if TYPE_CHECKING:
    from mrunner_slurm.shipped import Shipped
    from mrunner_slurm.transport import Connection

CHUNK = 1 << 18


def storage_of(sweep: Sweep) -> str:
    return str(sweep.package.get("storage_dir") or sweep.context["storage_dir"])


def folders(sweep: Sweep, runs: Sequence[Run]) -> dict[str, str]:
    where = [layout.of_run(storage_of(sweep), sweep, run) for run in runs]
    return {w.folder_name: w.experiment_dir for w in where}


def pull(
    connection: Connection,
    sweep: Sweep,
    runs: Sequence[Run],
    destination: Path,
    include: Sequence[str],
    reporter: Reporter,
) -> Pulled:
    """The sender starts walking the cluster's folders first; this machine lists its own meanwhile. The folder
    of each experiment that is not running is settled there first (``mrunner.settling``: one whose attempt's
    wrapper was killed outright before it made the folders the experiment renamed under its copy-on-write
    view whole), as the local backend's pull and the next attempt do: one attribute read per folder where
    nothing is to be done."""
    from mrunner_slurm import remote

    wanted = folders(sweep, runs)
    ended = [path for run, path in zip(runs, wanted.values()) if run.state not in ACTIVE]
    sender = _settling_sender()  # kept compiled on the cluster, as the helper
    call = connection.start(sender.command(remote.HELPER_PYTHON))
    connection.calls += 1

    def chunks() -> Iterator[bytes]:
        while data := call.recv(CHUNK):
            yield data

    try:
        with contextlib.suppress(OSError):  # the sender ended early: its stream ends early, its errors say why
            call.send(sender.head + transfer.request_bytes(wanted, include, settle=ended))
        local = transfer.Local(str(destination), wanted)
        with contextlib.suppress(OSError):
            call.send(transfer.have_bytes(local.have))
            call.shutdown_write()
        received = transfer.receive(chunks(), str(destination), reporter.progress, f"pull {sweep.id}")
    except (EOFError, ValueError) as error:
        raise _failed(connection, call, "pull", error) from None
    finally:
        call.close()
    local.remove_parts()
    return Pulled(received.files, received.bytes, received.unchanged)


@functools.cache
def _settling_sender() -> Shipped:
    from mrunner import settling
    from mrunner_slurm import shipped

    return shipped.of_source("mrunner-pull", settling.sender_source())


def summaries_input(sweep: Sweep, runs: Sequence[Run], have: Mapping[str, list[int]]) -> tuple[Shipped, bytes]:
    """What ``summaries`` runs and sends: the sender of summaries (``mrunner.summaries``) and its stdin. Made
    apart, so that ``Backend.summaries`` makes it (compressing the sender's source, the request of a thousand
    folders) while the connection that the warm-up started may still be opening, not after."""
    from mrunner import summaries as made
    from mrunner_slurm import shipped

    sender = shipped.of_source("mrunner-summaries", made.sender_source())
    kept = {folder: {layout.METRICS_FILE: mark} for folder, mark in have.items()}
    request = transfer.request_bytes(folders(sweep, runs), [layout.METRICS_FILE], summarise=True)
    return sender, sender.head + request + transfer.have_bytes(kept)


def summaries(
    connection: Connection, sweep: Sweep, made: tuple[Shipped, bytes], reporter: Reporter
) -> dict[str, tuple[int, int, bytes]]:
    """``Backend.summaries``: the pull's sender with ``mrunner.metrics`` ahead of it (kept compiled on the
    cluster as the plain sender is) reads each metrics file this machine lacks and sends its summary;
    ``made`` is ``summaries_input``'s."""
    from mrunner_slurm import remote

    sender, stdin = made
    call = connection.start(sender.command(remote.HELPER_PYTHON))
    connection.calls += 1

    def chunks() -> Iterator[bytes]:
        while data := call.recv(CHUNK):
            yield data

    try:
        with contextlib.suppress(OSError):  # the sender ended early: its stream ends early, its errors say why
            call.send(stdin)
            call.shutdown_write()
        received = transfer.receive(chunks(), "", reporter.progress, f"results {sweep.id}")
    except (EOFError, ValueError) as error:
        raise _failed(connection, call, "summaries", error) from None
    finally:
        call.close()
    return received.summaries


def _failed(connection: Connection, call: Any, what: str, error: Exception) -> Exception:
    """The error of a stream that ended early or made no sense: the connection lost, or the sender's words."""
    from mrunner_slurm.transport import Result

    code = call.exit_status()
    if code == -1:
        return connection.lost()
    message = Result(code, b"", call.stderr()).error
    return BackendError(f"{what} from {connection.target.alias} failed: {message} ({error})")


def collect(connection: Connection, storage: str, sweeps: Sequence[Sweep], keep: Keep, dry_run: bool) -> list[Artefact]:
    """One ``gc`` helper call for one storage folder: what our ended sweeps used goes unless a kept sweep or a
    queued or running job (of any machine) uses it too; what no record names goes once old enough. Besides
    the code store, that is each sweep's secrets file, task bundles and batch scripts (see the helper's
    ``_collect_sweep_files``)."""
    from mrunner_slurm import remote

    kept = {sweep.id for sweep in keep.sweeps}
    document: dict[str, Any] = {
        "storage": storage,
        "keep_digests": sorted({s.snapshot_digest for s in sweeps if s.id in kept}),
        "remove_digests": sorted({s.snapshot_digest for s in sweeps if s.id not in kept}),
        "keep_venvs": sorted({str(s.detail["venv"]) for s in sweeps if s.id in kept and s.detail.get("venv")}),
        "remove_venvs": sorted({str(s.detail["venv"]) for s in sweeps if s.id not in kept and s.detail.get("venv")}),
        "keep_sweeps": sorted(s.id for s in sweeps if s.id in kept),
        "remove_sweeps": sorted(s.id for s in sweeps if s.id not in kept),
        "unknown_age": max(keep.older_than, keep.grace),
        "grace": keep.grace,
        "dry_run": dry_run,
    }
    answer = remote.call(connection, ["gc"], remote.pack(document))
    host = connection.target.alias
    return [Artefact(kind, f"{host}:{path}", files, size) for kind, path, files, size in answer["removed"]]
