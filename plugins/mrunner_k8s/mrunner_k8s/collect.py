"""What `mrunner gc` removes on Kubernetes: a sweep's Secret and ConfigMap, its finished Jobs (their pods go
with them) and pull pods left behind. Never the volume claim (the results, checkpoints, logs and exit codes
are on it), the namespace, or the images in the registry.

Per namespace the records name: one list each of mrunner's Jobs, Secrets, ConfigMaps and pull pods. The cluster's
own state decides with the records: a sweep with a Job that has not finished (its pods mount the ConfigMap and
read the Secret) keeps everything, whatever the records say. Otherwise a recorded sweep outside ``Keep.sweeps``
loses its objects at once (this machine's submissions wait for the collection's lock); a sweep no record names
(another machine's, a submission cut off) only once its newest object (made, or a Job's end) is older than both
``Keep.older_than`` and ``Keep.grace``. A pull pod goes once it has ended, or outlived its deadline.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from mrunner.backend import Artefact, Keep
from mrunner.records import Sweep
from mrunner_k8s import manifests
from mrunner_k8s.cluster import Cluster

OURS = "app.kubernetes.io/managed-by=mrunner"


def collect(cluster: Cluster, recorded: Sequence[Sweep], keep: Keep, dry_run: bool) -> list[Artefact]:
    """Remove (or, with ``dry_run``, list) what no sweep needs in ``cluster.namespace``."""
    namespace = cluster.namespace
    listed = {
        "Job": cluster.call(
            f"list mrunner's Jobs in namespace {namespace}",
            cluster.batch.list_namespaced_job,
            namespace,
            label_selector=f"{OURS},mrunner/sweep",
        ).items,
        "Secret": cluster.call(
            f"list mrunner's Secrets in namespace {namespace}",
            cluster.core.list_namespaced_secret,
            namespace,
            label_selector=f"{OURS},mrunner/sweep",
        ).items,
        "ConfigMap": cluster.call(
            f"list mrunner's ConfigMaps in namespace {namespace}",
            cluster.core.list_namespaced_config_map,
            namespace,
            label_selector=f"{OURS},mrunner/sweep",
        ).items,
    }
    pods = cluster.call(
        f"list the pull pods in namespace {namespace}",
        cluster.core.list_namespaced_pod,
        namespace,
        label_selector=f"{OURS},{manifests.PULL_LABEL}",
    ).items
    by_sweep: dict[str, list[tuple[str, Any]]] = {}
    for kind, items in listed.items():
        for item in items:
            by_sweep.setdefault(item.metadata.labels["mrunner/sweep"], []).append((kind, item))
    kept = {sweep.id for sweep in keep.sweeps}
    known = {sweep.id for sweep in recorded}
    now = time.time()
    unknown_age = max(keep.older_than, keep.grace)
    chosen: list[tuple[str, Any]] = []
    for sweep_id, objects in sorted(by_sweep.items()):
        if sweep_id in kept or any(kind == "Job" and not _finished(item) for kind, item in objects):
            continue
        if sweep_id not in known and now - max(_newest(kind, item) for kind, item in objects) < unknown_age:
            continue
        chosen += [(kind, item) for kind, item in objects if item.metadata.deletion_timestamp is None]
    for pod in pods:
        ended = pod.status.phase in ("Succeeded", "Failed")
        if pod.metadata.deletion_timestamp is None and (ended or _age(pod, now) > manifests.PULL_DEADLINE_SECONDS):
            chosen.append(("pull pod", pod))
    if not dry_run:
        for kind, item in chosen:
            _delete(cluster, kind, item.metadata.name)
    return [Artefact(kind, f"{namespace}/{item.metadata.name}") for kind, item in chosen]


def _finished(job: Any) -> bool:
    return any(c.status == "True" and c.type in ("Complete", "Failed") for c in job.status.conditions or [])


def _newest(kind: str, item: Any) -> float:
    """When the object last changed in a way that matters: made, or (a Job) ended."""
    times = [item.metadata.creation_timestamp]
    if kind == "Job":
        times += [c.last_transition_time for c in item.status.conditions or [] if c.last_transition_time]
    return max(moment.timestamp() for moment in times)


def _age(item: Any, now: float) -> float:
    return now - item.metadata.creation_timestamp.timestamp()


def _delete(cluster: Cluster, kind: str, name: str) -> None:
    from kubernetes import client

    namespace = cluster.namespace
    what = f"delete {kind} {name} in namespace {namespace}"
    if kind == "Job":  # its pods too, in the background
        options = client.V1DeleteOptions(propagation_policy="Background")
        cluster.if_exists(what, cluster.batch.delete_namespaced_job, name, namespace, body=options)
    elif kind == "Secret":
        cluster.if_exists(what, cluster.core.delete_namespaced_secret, name, namespace)
    elif kind == "ConfigMap":
        cluster.if_exists(what, cluster.core.delete_namespaced_config_map, name, namespace)
    else:
        options = client.V1DeleteOptions(grace_period_seconds=0)
        cluster.if_exists(what, cluster.core.delete_namespaced_pod, name, namespace, body=options)
