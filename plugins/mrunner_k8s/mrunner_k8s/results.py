"""Experiment folders back from the project's volume claim (`mrunner pull`), through the Kubernetes API alone.

A short-lived pod of the sweep's own image mounts the claim read-only (``manifests.pull_pod``), and the core's
``mrunner.transfer`` runs in it through ``exec``, as on Slurm: its source and the request (what this machine
already has) go in on stdin, length-prefixed (an exec on Kubernetes 1.20 cannot close stdin), and the gzip
stream of the files that are new or changed comes back on stdout, each written aside and renamed here. The
pod is deleted when the pull ends, however it ends; one whose mrunner vanished ends by itself (a minute after
its transfer, at the latest at its deadline), and `mrunner gc` deletes what is left of it.
"""

from __future__ import annotations

import json
import secrets
import time
import zlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from mrunner import layout, transfer
from mrunner.backend import Pulled
from mrunner.errors import BackendError, NoLog
from mrunner.records import Run, Sweep
from mrunner.reporter import Reporter
from mrunner_k8s import manifests, names
from mrunner_k8s.cluster import STUCK_REASONS, Cluster, api_message

#: How long a pull pod may take to start (pulling the image on a node that lacks it, attaching the volume).
START_SECONDS = 300
STDIN_CHUNK = 1 << 18


def folders(sweep: Sweep, runs: Sequence[Run]) -> dict[str, str]:
    """FOLDER -> the experiment's folder as the pull pod (and the experiment) sees it."""
    where = [layout.of_run(sweep.context["storage"], sweep, run) for run in runs]
    return {w.folder_name: w.experiment_dir for w in where}


def output_dirs(sweep: Sweep, runs: Sequence[Run]) -> dict[int, str]:
    """``pvc/CLAIM:PATH``, PATH as the experiments see it (the claim mounted at ``storage``)."""
    return {
        run.index: f"pvc/{names.PVC_NAME}:{layout.of_run(sweep.context['storage'], sweep, run).experiment_dir}"
        for run in runs
    }


def pull(
    cluster: Cluster,
    sweep: Sweep,
    runs: Sequence[Run],
    destination: Path,
    include: Sequence[str],
    reporter: Reporter,
) -> Pulled:
    wanted = folders(sweep, runs)
    local = transfer.Local(str(destination), wanted)
    request = transfer.request_bytes(wanted, include) + transfer.have_bytes(local.have)
    with pull_pod(cluster, sweep, reporter) as name:
        received = _transfer(cluster, sweep, name, request, destination, reporter)
    local.remove_parts()
    return Pulled(received.files, received.bytes, received.unchanged)


@contextmanager
def pull_pod(cluster: Cluster, sweep: Sweep, reporter: Reporter) -> Iterator[str]:
    """A running pull pod's name; the pod is deleted when the block ends, an interruption included."""
    _check_claim(cluster)
    name = f"{names.rfc1123(sweep.id, limit=48)}-pull-{secrets.token_hex(3)}"
    try:
        body = manifests.pull_pod(sweep, name)
        cluster.call(
            f"create the pull pod {name} in namespace {cluster.namespace}",
            cluster.core.create_namespaced_pod,
            cluster.namespace,
            body,
        )
        _wait_until_running(cluster, name)
        yield name
    finally:
        _delete(cluster, name, reporter)


def _check_claim(cluster: Cluster) -> None:
    claim = cluster.if_exists(
        f"read volume claim {names.PVC_NAME} in namespace {cluster.namespace}",
        cluster.core.read_namespaced_persistent_volume_claim,
        names.PVC_NAME,
        cluster.namespace,
    )
    if claim is None:
        raise BackendError(
            f"volume claim {names.PVC_NAME} is gone from namespace {cluster.namespace} (deleted outside mrunner): "
            f"there is nothing to read the sweep's results from"
        )
    if claim.metadata.deletion_timestamp is not None:
        raise BackendError(
            f"volume claim {names.PVC_NAME} in namespace {cluster.namespace} is being deleted: no new pod may mount it"
        )


def _delete(cluster: Cluster, name: str, reporter: Reporter) -> None:
    from kubernetes import client

    try:
        cluster.if_exists(
            f"delete the pull pod {name}",
            cluster.core.delete_namespaced_pod,
            name,
            cluster.namespace,
            body=client.V1DeleteOptions(grace_period_seconds=0),
        )
    except BackendError as error:  # never in place of what ended the pull
        reporter.warn(f"{error}; it ends by itself within {manifests.PULL_IDLE_SECONDS} s and `mrunner gc` removes it")


def _wait_until_running(cluster: Cluster, name: str) -> None:
    """Follow the pod (a watch, so its start is seen at once) until it runs; one line on why it does not."""
    from kubernetes import watch
    from kubernetes.client.exceptions import ApiException
    from urllib3.exceptions import HTTPError

    deadline = time.monotonic() + START_SECONDS
    waiting = "it was not scheduled"
    what = f"watch the pull pod {name} in namespace {cluster.namespace}"
    while (left := deadline - time.monotonic()) > 0:
        watcher = watch.Watch()
        events = watcher.stream(
            cluster.core.list_namespaced_pod,
            cluster.namespace,
            field_selector=f"metadata.name={name}",
            timeout_seconds=max(1, int(left)),
        )
        try:
            for event in events:
                if event["type"] == "DELETED":
                    raise BackendError(f"the pull pod {name} was deleted before it started (by someone else)")
                pod = event["object"]
                if pod.status.phase == "Running":
                    return
                waiting = _not_running(pod) or waiting
        except ApiException as error:
            raise BackendError(f"Kubernetes refused to {what}: {api_message(error)}") from None
        except HTTPError as error:
            cluster.unreachable(error, what)
        finally:
            watcher.stop()
    raise BackendError(f"the pull pod {name} did not start within {START_SECONDS} s: {waiting}")


def _not_running(pod: Any) -> str | None:
    """Why the pod does not run yet (None: no reason given); raises when it never will."""
    name = pod.metadata.name
    for status in pod.status.container_statuses or []:
        state = status.state
        if state and state.terminated:
            end = state.terminated
            raise BackendError(
                f"the pull pod {name} ended before the transfer: {end.reason} {end.message or ''}".strip()
            )
        if state and state.waiting:
            reason = f"{state.waiting.reason}: {state.waiting.message or ''}".strip(": ")
            if state.waiting.reason in STUCK_REASONS:
                raise BackendError(f"the pull pod {name} cannot start: {reason}")
            return reason
    if pod.status.phase in ("Failed", "Succeeded"):
        raise BackendError(
            f"the pull pod {name} ended before the transfer: {pod.status.reason} {pod.status.message or ''}".strip()
        )
    for condition in pod.status.conditions or []:
        if condition.type == "PodScheduled" and condition.status == "False":
            return f"unschedulable: {condition.message}"
    return None


class _Exec:
    """A process started in the pull pod through ``exec``: its stdin written at once (never closed: Kubernetes
    1.20 cannot), its stdout read frame by frame as it comes (the client's own channel buffers copy what they
    hold at every frame, which costs seconds per 100 MB), its stderr and end kept for the account of a failure."""

    def __init__(self, cluster: Cluster, pod: str, command: list[str], stdin: bytes = b"") -> None:
        from kubernetes.stream import stream

        self.cluster, self.pod, self.stdin = cluster, pod, stdin
        self.errors = bytearray()
        self.end = bytearray()
        self.connection = cluster.call(
            f"start a process in the pull pod {pod}",
            stream,
            cluster.core.connect_get_namespaced_pod_exec,
            pod,
            cluster.namespace,
            container="pull",
            command=command,
            stdin=bool(stdin),
            stdout=True,
            stderr=True,
            tty=False,
            _preload_content=False,
            binary=True,
        )

    def output(self) -> Iterator[bytes]:
        """Chunks of stdout until the process ends; ``EOFError`` when the connection breaks."""
        from kubernetes.stream.ws_client import ERROR_CHANNEL, STDERR_CHANNEL, STDOUT_CHANNEL
        from websocket import ABNF, WebSocketException

        try:
            for start in range(0, len(self.stdin), STDIN_CHUNK):
                self.connection.write_stdin(self.stdin[start : start + STDIN_CHUNK])
            socket = self.connection.sock
            while True:
                opcode, frame = socket.recv_data_frame(True)
                if opcode == ABNF.OPCODE_CLOSE:
                    return
                if opcode not in (ABNF.OPCODE_BINARY, ABNF.OPCODE_TEXT) or not frame.data:
                    continue
                data = frame.data if isinstance(frame.data, bytes) else frame.data.encode()
                channel, data = data[0], data[1:]
                if channel == STDOUT_CHANNEL and data:
                    yield data
                elif channel == STDERR_CHANNEL:
                    self.errors += data
                    del self.errors[:-65536]  # the last lines are the account
                elif channel == ERROR_CHANNEL:
                    self.end += data
        except (WebSocketException, OSError) as error:
            raise EOFError(f"the connection to the API server broke: {error}") from None

    def status(self) -> dict[str, Any]:
        """The exec's own end (``{"status": "Success"}``, or a failure and its message); ``{}`` when unknown."""
        try:
            return json.loads(bytes(self.end) or b"{}")
        except ValueError:
            return {}

    def close(self) -> None:
        self.connection.close()


def _transfer(
    cluster: Cluster, sweep: Sweep, name: str, request: bytes, destination: Path, reporter: Reporter
) -> transfer.Receiver:
    command = [sweep.context["python"], "-c", transfer.LAUNCHER]
    process = _Exec(cluster, name, command, transfer.source() + request)
    try:
        return transfer.receive(process.output(), str(destination), reporter.progress, f"pull {sweep.id}")
    except (EOFError, ValueError, zlib.error) as error:
        raise BackendError(
            f"pull through pod {name} in namespace {cluster.namespace} failed: {_cause(process)} ({error})"
        ) from None
    finally:
        process.close()


#: Copies the file named by its argument to stdout; exits 3 when there is none.
READ_FILE = """
import shutil, sys
try:
    stream = open(sys.argv[1], "rb")
except FileNotFoundError:
    sys.exit(3)
shutil.copyfileobj(stream, sys.stdout.buffer)
"""


def claim_log(cluster: Cluster, sweep: Sweep, run: Run) -> Iterator[str]:
    """The attempt's log as the start wrapper wrote it on the claim: for an experiment whose pod went with its
    Job (`mrunner gc`, or a delete outside mrunner)."""
    import codecs

    path = layout.of_run(sweep.context["storage"], sweep, run).log_file()
    with pull_pod(cluster, sweep, Reporter()) as name:
        process = _Exec(cluster, name, [sweep.context["python"], "-c", READ_FILE, path])
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        try:
            for chunk in process.output():
                yield decoder.decode(chunk)
            yield decoder.decode(b"", final=True)
        except EOFError as error:
            raise BackendError(f"reading {path} through pod {name} failed: {_cause(process)} ({error})") from None
        finally:
            process.close()
        status = process.status()
        if status.get("status") not in (None, "Success"):
            code = _exit_code(status)
            if code == 3:  # named as every backend names an ended attempt without a log
                raise NoLog(
                    f"experiment {run.ref} has no log of attempt {run.attempt} (no pod: its Job was deleted; "
                    f"nothing at pvc/{names.PVC_NAME}:{path})"
                )
            raise BackendError(f"reading {path} through pod {name} failed: {_cause(process)}")


def _exit_code(status: dict[str, Any]) -> int | None:
    for cause in (status.get("details") or {}).get("causes") or []:
        if cause.get("reason") == "ExitCode":
            return int(cause["message"])
    return None


def _cause(process: _Exec) -> str:
    """The pod side's own account of a process that broke off: its last line of stderr, the exec's status,
    or why the pod stopped (its deadline)."""
    lines = [line for line in process.errors.decode(errors="replace").splitlines() if line.strip()]
    if lines:
        return lines[-1].strip()
    status = process.status()
    if status.get("status") not in (None, "Success"):
        return str(status.get("message") or status.get("reason"))
    cluster, name = process.cluster, process.pod
    try:
        pod = cluster.if_exists(f"read the pull pod {name}", cluster.core.read_namespaced_pod, name, cluster.namespace)
    except BackendError as error:
        return str(error)
    if pod is not None and pod.status.reason:
        return f"{pod.status.reason}: {pod.status.message or ''}".strip(": ")
    return "the pod gave no reason"
