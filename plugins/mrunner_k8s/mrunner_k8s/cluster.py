"""Talking to the Kubernetes API server with the official client: the project's namespace and volume
claim, the sweep's Secret and ConfigMap, Jobs, and what status, logs and cancel need.

Every refusal of the API server becomes one ``BackendError`` line holding the server's own message. The
sweep's objects carry the label ``mrunner/sweep``, so status is one Job list and one pod list per sweep.
"""

from __future__ import annotations

import json
import re
import signal
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import replace
from typing import Any, NoReturn

from mrunner.attempt import STARTED_BEFORE
from mrunner.errors import BackendError, MrunnerError
from mrunner.records import (
    CANCELLED,
    CANNOT_RUN,
    COMPLETED,
    FAILED,
    LOST,
    PENDING,
    PREEMPTED,
    RUNNING,
    SUBMITTED,
    TIMEOUT,
    Run,
    RunUpdate,
    Sweep,
)
from mrunner_k8s import manifests, names

# A waiting container with one of these reasons will not start by itself: reported with the pending state.
# A pod that failed for one of these reasons was pushed off its node: the experiment itself did not fail.
PREEMPTION_REASONS = {"Evicted", "Preempting", "Shutdown", "NodeShutdown", "Terminated", "NodeLost"}
STUCK_REASONS = {
    "ErrImagePull",
    "ImagePullBackOff",
    "InvalidImageName",
    "CreateContainerConfigError",
    "CreateContainerError",
}


class Cluster:
    """The API server of one context, and the namespace a sweep's objects live in."""

    def __init__(self, context: Mapping[str, Any], namespace: str) -> None:
        import os

        from kubernetes import client, config

        kubeconfig = os.path.expanduser(context["kubeconfig"]) if context.get("kubeconfig") else None
        try:
            self.api_client = config.new_client_from_config(config_file=kubeconfig, context=context.get("kube_context"))
        except (config.ConfigException, OSError, KeyError, TypeError) as error:
            where = context.get("kubeconfig") or "the default kubeconfig"
            raise MrunnerError(f"cannot load the Kubernetes configuration from {where}: {error}") from None
        self.namespace = namespace
        self.core = client.CoreV1Api(self.api_client)
        self.batch = client.BatchV1Api(self.api_client)

    def call(self, what: str, function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """``function(*args, **kwargs)``, its refusal turned into one clear line."""
        return self._call(what, False, function, *args, **kwargs)

    def create(self, what: str, function: Callable[..., Any], *args: Any, **kwargs: Any) -> bool:
        """Create an object; False when it already exists (409: a repeated submission, which is fine)."""
        return self._call(what, True, function, *args, **kwargs) is not None

    def if_exists(self, what: str, function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any | None:
        """Read or delete an object that may be gone; None when it does not exist (404)."""
        return self._call(what, False, function, *args, missing_ok=True, **kwargs)

    def _call(
        self,
        what: str,
        conflict_ok: bool,
        function: Callable[..., Any],
        *args: Any,
        missing_ok: bool = False,
        **kwargs: Any,
    ) -> Any:
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError

        try:
            result = function(*args, **kwargs)
            return True if conflict_ok else result
        except ApiException as error:
            if (conflict_ok and error.status == 409) or (missing_ok and error.status == 404):
                return None
            raise BackendError(f"Kubernetes refused to {what}: {api_message(error)}") from None
        except HTTPError as error:
            self.unreachable(error, what)

    def unreachable(self, error: Exception, what: str) -> NoReturn:
        host = self.api_client.configuration.host
        reason = str(getattr(error, "reason", None) or error).rsplit("): ", 1)[-1].strip("\"')")
        raise BackendError(f"cannot reach the Kubernetes API server at {host} to {what}: {reason}") from None

    # -- resources ---------------------------------------------------------------------------------------

    def preflight(self, context: Mapping[str, Any], project: str) -> None:
        """Whether ``ensure_namespace`` and ``ensure_claim`` would succeed, asked of the API server as
        server-side dry runs (its rights and admission checks, nothing created): called before the image is
        built and pushed, so that a sweep the cluster would refuse is refused before any build or push."""
        if not self.ensure_namespace(project, dry_run=True):
            self.ensure_claim(context, project, dry_run=True)  # a namespace still to create has no claim yet

    def ensure_namespace(self, project: str, dry_run: bool = False) -> bool:
        """Create the namespace if missing (True when created; with ``dry_run``, when it would be: the API
        server checks the rights and creates nothing). A user whose rights are a namespace's alone
        may neither read nor create namespaces: the namespace is then taken as theirs if they may work in it
        (list volume claims there); else one line says that it is missing or not theirs, and that they may not
        create it, instead of the refusal of the first object made in it."""
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError

        read = f"read namespace {self.namespace}"
        try:
            self.core.read_namespace(self.namespace)
            return False
        except ApiException as error:
            if error.status not in (403, 404):
                raise BackendError(f"Kubernetes refused to {read}: {api_message(error)}") from None
            missing = error.status == 404
        except HTTPError as error:
            self.unreachable(error, read)
        body = manifests.namespace(self.namespace, project)
        try:
            self.core.create_namespace(body, dry_run=_dry(dry_run))
            return True
        except ApiException as error:
            if error.status == 409:
                return False
            if error.status != 403:
                raise BackendError(
                    f"Kubernetes refused to create namespace {self.namespace}: {api_message(error)}"
                ) from None
            refusal = api_message(error)
        except HTTPError as error:
            self.unreachable(error, f"create namespace {self.namespace}")
        if not missing and self._usable():
            return False
        where = "does not exist" if missing else "does not exist or gives this user no rights"
        raise BackendError(
            f"namespace {self.namespace} {where}, and this user may not create it ({refusal}): set the "
            "context's `namespace` to one you may use, or ask the cluster's administrator to create it for you"
        )

    def _usable(self) -> bool:
        """Whether this user may work in the namespace (it exists, or their rights are the cluster's)."""
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError

        try:
            self.core.list_namespaced_persistent_volume_claim(self.namespace, limit=1)
            return True
        except ApiException as error:
            if error.status in (403, 404):
                return False
            raise BackendError(
                f"Kubernetes refused to list the volume claims of namespace {self.namespace}: {api_message(error)}"
            ) from None
        except HTTPError as error:
            self.unreachable(error, f"list the volume claims of namespace {self.namespace}")

    def ensure_claim(self, context: Mapping[str, Any], project: str, dry_run: bool = False) -> bool:
        """Create the project's volume claim if missing (with ``dry_run``, ask whether the API server would,
        this user's rights and the namespace's quota included, creating nothing); an existing claim is never
        changed. A namespace that
        is gone (deleted since ``ensure_namespace``, or missing to a user with the cluster's rights on claims
        but none on namespaces) is named as such, not as a claim the API server did not find."""
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError

        body = manifests.volume_claim(context, project)
        what = f"create volume claim {names.PVC_NAME} in namespace {self.namespace}"
        try:
            self.core.create_namespaced_persistent_volume_claim(self.namespace, body, dry_run=_dry(dry_run))
            return True
        except ApiException as error:
            if error.status == 409:
                return False
            if error.status == 404:
                raise BackendError(
                    f"namespace {self.namespace} does not exist ({api_message(error)}): set the context's "
                    "`namespace` to one you may use, or ask the cluster's administrator to create it for you"
                ) from None
            raise BackendError(f"Kubernetes refused to {what}: {api_message(error)}") from None
        except HTTPError as error:
            self.unreachable(error, what)

    def put_secret(self, sweep: Sweep, values: Mapping[str, str]) -> None:
        """The sweep's Secret with the current values (a resume may bring a renewed token)."""
        body = manifests.secret(sweep, values)
        what = f"store the sweep's Secret {body.metadata.name}"
        if not self.create(what, self.core.create_namespaced_secret, self.namespace, body):
            self.call(what, self.core.replace_namespaced_secret, body.metadata.name, self.namespace, body)

    def put_config(self, sweep: Sweep, runs: Sequence[Run]) -> None:
        """The experiments' MRUNNER_CONFIG documents; a resume adds or refreshes its runs' keys."""
        body = manifests.config_map(sweep, runs)
        size = sum(len(value) for value in body.data.values())
        if size > 900_000:
            raise MrunnerError(
                f"the parameters of {len(runs)} experiments take {size} bytes, over a ConfigMap's 1 MiB: split the sweep"
            )
        what = f"store the sweep's ConfigMap {body.metadata.name}"
        if not self.create(what, self.core.create_namespaced_config_map, self.namespace, body):
            patch = {"data": body.data}
            self.call(what, self.core.patch_namespaced_config_map, body.metadata.name, self.namespace, patch)

    # -- jobs ----------------------------------------------------------------------------------------------

    def create_job(self, body: Any) -> bool:
        return self.create(f"create Job {body.metadata.name}", self.batch.create_namespaced_job, self.namespace, body)

    def sweep_objects(self, sweep: Sweep) -> tuple[list[Any], list[Any]]:
        selector = f"mrunner/sweep={sweep.id}"
        jobs = self.call(
            "list the sweep's Jobs", self.batch.list_namespaced_job, self.namespace, label_selector=selector
        )
        pods = self.call(
            "list the sweep's pods", self.core.list_namespaced_pod, self.namespace, label_selector=selector
        )
        return jobs.items, pods.items

    def run_objects(self, sweep: Sweep, run: Run) -> tuple[list[Any], list[Any]]:
        """The Job and pods of the run's current attempt (``sweep_objects`` of one run)."""
        selector = f"mrunner/sweep={sweep.id},mrunner/index={run.index},mrunner/attempt={run.attempt}"
        jobs = self.call(
            "find the experiment's Job", self.batch.list_namespaced_job, self.namespace, label_selector=selector
        )
        pods = self.call(
            "find the experiment's pod", self.core.list_namespaced_pod, self.namespace, label_selector=selector
        )
        return jobs.items, pods.items

    def creation_refusals(self) -> dict[str, str]:
        """Why the Job controller could not create a Job's pod (a ResourceQuota, a LimitRange, an admission
        policy), by Job name: the latest ``FailedCreate`` event of each Job of the namespace (one call)."""
        events = self.call(
            "list why pods were not created",
            self.core.list_namespaced_event,
            self.namespace,
            field_selector="reason=FailedCreate,involvedObject.kind=Job",
        )
        found: dict[str, tuple[Any, str]] = {}
        for event in events.items:
            when = event.last_timestamp or event.event_time or event.metadata.creation_timestamp
            name = event.involved_object.name
            if name not in found or (when and found[name][0] and when > found[name][0]):
                found[name] = (when, event.message or "")
        return {name: message for name, (_, message) in found.items()}

    def claim_trouble(self) -> str:
        """One line on why the project's volume claim is not bound: its phase and its latest warning (a
        storage class that does not exist, a provisioner's refusal), with the context keys that fix it."""
        claim = self.call(
            f"read volume claim {names.PVC_NAME}",
            self.core.read_namespaced_persistent_volume_claim,
            names.PVC_NAME,
            self.namespace,
        )
        events = self.call(
            "list the volume claim's events",
            self.core.list_namespaced_event,
            self.namespace,
            field_selector=f"involvedObject.kind=PersistentVolumeClaim,involvedObject.name={names.PVC_NAME},type=Warning",
        )
        latest = max(events.items, key=lambda e: e.last_timestamp or e.metadata.creation_timestamp, default=None)
        why = f": {' '.join((latest.message or latest.reason or '').split())}" if latest is not None else ""
        return (
            f"its volume claim {names.PVC_NAME} cannot be bound ({claim.status.phase}){why}; fix storage_class, "
            f"pvc_access_mode or default_pvc_size, then delete the claim (it is never changed) and resume"
        )

    def delete_jobs(self, sweep: Sweep, runs: Sequence[Run]) -> None:
        """Delete the Jobs of ``runs`` of every attempt (and their pods) by label, Job first: a status that
        replaced a lost pod meanwhile finds the lost attempt's Job gone (``requeue``), and its new Job goes too."""
        from kubernetes import client

        options = client.V1DeleteOptions(propagation_policy="Background")
        indices = sorted(run.index for run in runs)
        for start in range(0, len(indices), 200):
            chosen = ",".join(str(i) for i in indices[start : start + 200])
            selector = f"mrunner/sweep={sweep.id},mrunner/index in ({chosen})"
            self.call(
                "delete the sweep's Jobs",
                self.batch.delete_collection_namespaced_job,
                self.namespace,
                label_selector=selector,
                body=options,
            )

    def job_stays(self, name: str) -> bool:
        """Whether the Job exists and is not being deleted."""
        from kubernetes.client.exceptions import ApiException

        try:
            job = self.batch.read_namespaced_job(name, self.namespace)
        except ApiException as error:
            if error.status == 404:
                return False
            raise BackendError(f"Kubernetes refused to read Job {name}: {api_message(error)}") from None
        return job.metadata is not None and job.metadata.deletion_timestamp is None

    def delete_job(self, name: str) -> None:
        from kubernetes import client
        from kubernetes.client.exceptions import ApiException

        try:
            self.batch.delete_namespaced_job(
                name, self.namespace, body=client.V1DeleteOptions(propagation_policy="Background")
            )
        except ApiException as error:
            if error.status != 404:
                raise BackendError(f"Kubernetes refused to delete Job {name}: {api_message(error)}") from None

    def nodes(self) -> list[Any] | None:
        """The cluster's nodes, or None when this user may not list them."""
        try:
            return list(self.call("list the nodes", self.core.list_node).items)
        except BackendError:
            return None

    def pod_of(self, sweep: Sweep, run: Run) -> Any | None:
        selector = f"mrunner/sweep={sweep.id},mrunner/index={run.index},mrunner/attempt={run.attempt}"
        pods = self.call(
            "find the experiment's pod", self.core.list_namespaced_pod, self.namespace, label_selector=selector
        )
        return max(pods.items, key=lambda pod: pod.metadata.creation_timestamp, default=None)

    def log_chunks(self, pod_name: str, follow: bool) -> Iterator[str]:
        response = self.call(
            f"read the log of pod {pod_name}",
            self.core.read_namespaced_pod_log,
            pod_name,
            self.namespace,
            container="experiment",
            follow=follow,
            _preload_content=False,
        )
        try:
            for chunk in response.stream(4096, decode_content=True):
                yield chunk.decode(errors="replace")
        finally:
            response.release_conn()


def api_message(error: Any) -> str:
    """The API server's own message in one line (``status``'s ``message``), with the HTTP status."""
    message = None
    try:
        message = json.loads(error.body or "{}").get("message")
    except (ValueError, AttributeError):
        pass
    text = " ".join(str(message or error.reason or "no message").split())
    text = text.split(", error found in #", 1)[0]  # a decoding error quotes the whole request after this
    return f"{text[:500]} (HTTP {error.status})"


# -- states --------------------------------------------------------------------------------------------------


def run_states(runs: Sequence[Run], jobs: Sequence[Any], pods: Sequence[Any]) -> list[RunUpdate]:
    """Each run's state from its Job's conditions and its pods' phases and container states.

    A pod lost to the platform (evicted, deleted while its Job stays, its node gone) makes its attempt
    ``preempted`` with ``LOSS`` in the detail: ``mrunner_k8s.requeue`` starts the next attempt for it. It is
    reported only once no pod of the attempt runs any more (a deleted pod is still saving its checkpoint)."""
    jobs_by_run = {_key(job.metadata.labels): job for job in jobs}
    pods_by_run: dict[tuple[str, str], list[Any]] = {}
    for pod in sorted(pods, key=lambda p: p.metadata.creation_timestamp):
        pods_by_run.setdefault(_key(pod.metadata.labels), []).append(pod)  # oldest first
    updates = []
    for run in runs:
        key = (str(run.index), str(run.attempt))
        update = _state(run, jobs_by_run.get(key), pods_by_run.get(key, []))
        if update and (
            update.state != run.state or update.exit_code != run.exit_code or _waits(update) or is_loss(update)
        ):
            updates.append(update)  # a pending run's reason always: the records keep the latest
    return updates


#: The scheduler's words for a pod whose volume claim is not bound (``Cluster.claim_trouble`` says why).
UNBOUND = "unbound immediate PersistentVolumeClaims"
#: The detail of a pending run whose Job has no pod yet.
NO_POD = "waiting for a pod"
_REFUSED = re.compile(r'^Error creating: pods "[^"]*" is forbidden: ')


def explain_waiting(
    updates: Sequence[RunUpdate], runs: Sequence[Run], jobs: Sequence[Any], refusals: Mapping[str, str]
) -> list[RunUpdate]:
    """Runs still waiting for a pod, with the reason the cluster refused to create it (``creation_refusals``)
    in one line instead of "waiting for a pod": a quota says which, what was asked and what is left."""
    names = {_key(job.metadata.labels): job.metadata.name for job in jobs}
    attempts = {run.index: str(run.attempt) for run in runs}
    explained = []
    for update in updates:
        refusal = refusals.get(names.get((str(update.index), attempts.get(update.index, "")), ""))
        if update.detail == NO_POD and refusal:
            reason = " ".join(_REFUSED.sub("", refusal).split())
            fix = "; raise the quota or submit with a smaller request" if "exceeded quota" in reason else ""
            update = replace(update, detail=f"the cluster refuses to create its pod: {reason}{fix}")
        explained.append(update)
    return explained


def _waits(update: RunUpdate) -> bool:
    return update.state == PENDING and bool(update.detail)


def never_schedulable(context: Mapping[str, Any], nodes: Sequence[Any]) -> str | None:
    """Why no node could ever hold one experiment's pod (its cpu, memory, GPUs or TPUs above every node's
    allocatable, a node without GPUs offering none), or None when one could. The resources are those
    ``manifests.resources`` asks for."""
    from kubernetes.utils import parse_quantity

    for key, resource in (("cpu", "cpu"), ("mem", "memory"), ("gpu", "nvidia.com/gpu"), ("tpu", "google.com/tpu")):
        if context.get(key) in (None, "") or (key != "cpu" and not context.get(key)):
            continue
        asked = parse_quantity(str(context[key]))
        largest = max((parse_quantity((node.status.allocatable or {}).get(resource, "0")) for node in nodes), default=0)
        if asked > largest:
            return (
                f"{CANNOT_RUN}: {key} {context[key]} is more than any node offers "
                f"(the largest allocatable {resource} is {_amount(resource, largest)}); cancel it and submit with less"
            )
    return None


def _amount(resource: str, amount: Any) -> str:
    """A node's allocatable amount as a user reads it: memory in binary units (``23.4Gi``), not in bytes."""
    if resource != "memory":
        return f"{amount:f}"
    for unit, size in (("Ti", 2**40), ("Gi", 2**30), ("Mi", 2**20), ("Ki", 2**10)):
        if amount >= size:
            return f"{float(amount) / size:.1f}".removesuffix(".0") + unit
    return f"{amount:f}"


#: Starts the detail of a ``preempted`` state that the platform caused (the attempt may be requeued).
LOSS = "pod lost: "


def is_loss(update: RunUpdate) -> bool:
    return update.state == PREEMPTED and (update.detail or "").startswith(LOSS)


def _key(labels: Mapping[str, str] | None) -> tuple[str, str]:
    labels = labels or {}
    return labels.get("mrunner/index", ""), labels.get("mrunner/attempt", "")


def _state(run: Run, job: Any | None, pods: Sequence[Any]) -> RunUpdate | None:
    # The Job's own stop (active_deadline_seconds) and a Job being deleted (a cancel) are no platform loss.
    watched = job is not None and job.metadata.deletion_timestamp is None and not _deadline_exceeded(job)
    if watched and pods:
        if any(_stopped(pod) and _container_running(pod) for pod in pods):
            return None  # a deleted pod's experiment is still saving: nothing starts before it ends
        if any(_stopped(pod) and _started(pod) for pod in pods) and not _ended(pods[-1]):
            return None  # the Job's own replacement of a deleted pod, about to refuse the attempt (--once)
        loss = _loss(job, pods[-1])
        if loss is not None:
            return RunUpdate(run.index, PREEMPTED, detail=LOSS + loss, attempt=run.attempt)
    elif watched and _has_condition(job, "Failed"):
        return RunUpdate(run.index, PREEMPTED, detail=LOSS + "its pod disappeared", attempt=run.attempt)
    pod = pods[-1] if pods else None
    update = _api_state(run, job, pod)
    if update is not None and update.state in (COMPLETED, FAILED) and not _stopped(pod):
        return replace(update, ended_by_itself=True)  # the wrapper also left the exit-code file on the claim
    return update


def _loss(job: Any, pod: Any) -> str | None:
    """Why the attempt's newest pod was lost to the platform, or None when it was not (it ran, or is to)."""
    if pod.status.phase in ("Failed", "Unknown") and pod.status.reason in PREEMPTION_REASONS:
        return f"{pod.status.reason}: {pod.status.message or ''}".strip()
    if _stopped(pod):
        if _started(pod) or _has_condition(job, "Failed"):
            return f"pod {pod.metadata.name} was deleted"
        return None  # deleted before it started: the Job controller starts the attempt in a new pod
    exit_code = _container_end(pod)[0]
    if exit_code == STARTED_BEFORE:
        return f"pod {pod.metadata.name} replaced a lost pod and did not run the attempt a second time"
    if exit_code is None and _has_condition(job, "Failed"):
        # the Job failed for a pod no longer listed (deleted, and gone once its experiment saved), while the
        # controller's replacement had not yet ended: a failed experiment's own pod stays, with its exit code
        return f"the pod that ran the attempt was deleted (the Job's new pod {pod.metadata.name} did not run it)"
    return None


def _started(pod: Any) -> bool:
    """Whether the pod's container ever ran (so the attempt's log exists on the claim)."""
    return any(
        status.state and (status.state.running or status.state.terminated)
        for status in pod.status.container_statuses or []
    )


def _ended(pod: Any) -> bool:
    return _stopped(pod) or pod.status.phase in ("Succeeded", "Failed")


def _deadline_exceeded(job: Any) -> bool:
    return any(
        c.status == "True" and c.type == "Failed" and c.reason == "DeadlineExceeded"
        for c in job.status.conditions or []
    )


def _has_condition(job: Any, kind: str) -> bool:
    return any(c.status == "True" and c.type == kind for c in job.status.conditions or [])


def _container_running(pod: Any) -> bool:
    return any(status.state and status.state.running for status in pod.status.container_statuses or [])


def _stopped(pod: Any | None) -> bool:
    """Whether the pod is being deleted (a cancel, or someone else): its end is then not its own."""
    return pod is not None and pod.metadata.deletion_timestamp is not None


def _api_state(run: Run, job: Any | None, pod: Any | None) -> RunUpdate | None:
    if job is None:
        return RunUpdate(run.index, LOST, detail="its Job is gone (deleted outside mrunner)", attempt=run.attempt)
    exit_code, reason = _container_end(pod)
    for condition in job.status.conditions or []:
        if condition.status != "True":
            continue
        if condition.type == "Complete":
            return RunUpdate(run.index, COMPLETED, exit_code=0 if exit_code is None else exit_code, attempt=run.attempt)
        if condition.type == "Failed":
            if condition.reason == "DeadlineExceeded":
                return RunUpdate(run.index, TIMEOUT, exit_code=exit_code, detail=condition.message, attempt=run.attempt)
            return RunUpdate(
                run.index, FAILED, exit_code=exit_code, detail=reason or condition.message, attempt=run.attempt
            )
    if pod is None:
        return (
            RunUpdate(run.index, PENDING, detail=NO_POD, attempt=run.attempt)
            if run.state in (SUBMITTED, PENDING)
            else None
        )
    phase = pod.status.phase
    if phase == "Running":
        return RunUpdate(run.index, RUNNING, attempt=run.attempt)
    if phase == "Succeeded":
        return RunUpdate(run.index, COMPLETED, exit_code=exit_code, attempt=run.attempt)
    if phase == "Failed":
        return RunUpdate(run.index, FAILED, exit_code=exit_code, detail=reason, attempt=run.attempt)
    return RunUpdate(run.index, PENDING, detail=_waiting_reason(pod), attempt=run.attempt)


def _container_end(pod: Any | None) -> tuple[int | None, str | None]:
    for status in (pod.status.container_statuses or []) if pod is not None else []:
        terminated = status.state.terminated if status.state else None
        if terminated is not None:
            reason = terminated.reason
            if reason == "ContainerCannotRun" and terminated.message:
                # the experiment never started (the context's `python` or a program missing from the image):
                # the runtime's words name it, and the pod's log is empty
                reason = f"{reason}: {' '.join(terminated.message.split())}"
            return signal_end(terminated.exit_code, terminated.message), reason
    return None, None


def signal_end(exit_code: int | None, message: str | None) -> int | None:
    """The container's exit code, -N where the start wrapper's termination message says signal N killed the
    experiment (its exit code 128 + N alone could be the experiment's own: ``records.killed_by``)."""
    words = (message or "").split()
    if exit_code is not None and len(words) == 3 and words[:2] == ["killed", "by"]:
        try:
            number = signal.Signals[words[2]]
        except KeyError:
            return exit_code
        if exit_code == 128 + number:
            return -number
    return exit_code


def _waiting_reason(pod: Any) -> str | None:
    for status in pod.status.container_statuses or []:
        waiting = status.state.waiting if status.state else None
        if waiting is not None and waiting.reason in STUCK_REASONS:
            return f"{waiting.reason}: {waiting.message or ''}".strip()
    for condition in pod.status.conditions or []:
        if condition.type == "PodScheduled" and condition.status == "False":
            return f"unschedulable: {condition.message}"
    return None


def cancelled(runs: Sequence[Run]) -> list[RunUpdate]:
    return [RunUpdate(run.index, CANCELLED, detail="its Job was deleted", attempt=run.attempt) for run in runs]


def _dry(dry_run: bool) -> Any:
    """The ``dry_run`` argument of a create call: ``All`` makes it a server-side dry run (checked as a creation,
    persisted nowhere); None, the client's default, creates."""
    return "All" if dry_run else None
