"""The Kubernetes objects of a sweep, built as the official client's models (which check field names and
types as they are built): the project's Namespace and volume claim, the sweep's Secret and ConfigMap,
one Job per experiment, and the pod `mrunner pull` reads the claim through.

Secrets appear here only as references (``env[].valueFrom.secretKeyRef``): the values go into the Secret
object alone, so the Job as stored by the API server, the image and the records never hold them.
"""

from __future__ import annotations

import json
import posixpath
from collections.abc import Iterable, Mapping
from typing import Any

from mrunner import layout
from mrunner.attempt import TERMINATION_LOG, command_line
from mrunner.records import Run, Sweep
from mrunner_k8s import names

CODE_DIR = "/mrunner/code"
#: mrunner's experiment side (``mrunner.runtime``), in every image: the start wrapper runs from here.
CLIENT_DIR = "/mrunner/client"
MANAGED_BY = {"app.kubernetes.io/managed-by": "mrunner"}
#: Seconds the kubelet waits after its SIGTERM beyond ``grace_period``, so that the wrapper's own kill of the
#: experiment's process group comes first and the pod ends the way the wrapper says.
KILL_MARGIN_SECONDS = 5


def _client():  # the models, imported on first use (the plugin module must stay cheap to import)
    from kubernetes import client

    return client


def sweep_labels(sweep: Sweep) -> dict[str, str]:
    return {**MANAGED_BY, "mrunner/project": names.label_value(sweep.project), "mrunner/sweep": sweep.id}


def run_labels(sweep: Sweep, run: Run) -> dict[str, str]:
    return {
        **sweep_labels(sweep),
        "mrunner/experiment": run.id,
        "mrunner/index": str(run.index),
        "mrunner/attempt": str(run.attempt),
    }


def namespace(name: str, project: str) -> Any:
    c = _client()
    labels = {**MANAGED_BY, "mrunner/project": names.label_value(project)}
    return c.V1Namespace(metadata=c.V1ObjectMeta(name=name, labels=labels))


def volume_claim(context: Mapping[str, Any], project: str) -> Any:
    c = _client()
    spec = c.V1PersistentVolumeClaimSpec(
        access_modes=[context["pvc_access_mode"]],
        resources=c.V1VolumeResourceRequirements(requests={"storage": str(context["default_pvc_size"])}),
        storage_class_name=context.get("storage_class"),
    )
    labels = {**MANAGED_BY, "mrunner/project": names.label_value(project)}
    return c.V1PersistentVolumeClaim(metadata=c.V1ObjectMeta(name=names.PVC_NAME, labels=labels), spec=spec)


def secret(sweep: Sweep, values: Mapping[str, str]) -> Any:
    c = _client()
    metadata = c.V1ObjectMeta(name=names.secret(sweep.id), labels=sweep_labels(sweep))
    return c.V1Secret(metadata=metadata, type="Opaque", string_data=dict(values))


def config_map(sweep: Sweep, runs: Iterable[Run]) -> Any:
    """One key per experiment holding its ``MRUNNER_CONFIG`` document (JSON, which YAML readers read too)."""
    c = _client()
    data = {names.config_key(run.index): json.dumps(run.config_document(sweep), sort_keys=True) for run in runs}
    metadata = c.V1ObjectMeta(name=names.config_map(sweep.id), labels=sweep_labels(sweep))
    return c.V1ConfigMap(metadata=metadata, data=data)


def command(sweep: Sweep, run: Run) -> list[str]:
    """The container's command: the core's start wrapper (``mrunner.attempt``) around the recorded command.

    It is PID 1, so it passes the kubelet's SIGTERM on to the experiment's process group (the kernel drops
    signals PID 1 has no handler for), kills the group after ``grace_period``, prepares the experiment's
    folder on the claim, writes the exit code there when the experiment ends by itself, and copies the output into
    the attempt's log on the claim (the pod's own log goes with its Job). With ``--once`` a pod the Job
    controller starts in place of a deleted one (Kubernetes 1.20 does so at once, while the deleted one
    still saves) finds the attempt's log and exits 98 without running it: the backend's status starts
    the next attempt as a new Job instead (``mrunner_k8s.requeue``). The container's
    working directory is the shipped client's folder, so ``python -m`` finds the wrapper that matches the
    layout even when the image installs another mrunner; the experiment itself starts in its own folder."""
    context = sweep.context
    return command_line(
        context["python"],
        CODE_DIR,
        run.command,
        workdir=sweep.workdir,
        entries=sweep.package["entries"],
        config_from=posixpath.join(names.CONFIG_DIR, names.CONFIG_FILE),
        grace=context["grace_period"],
        log=layout.of_run(context["storage"], sweep, run).log_file(),
        once=True,
    )


#: Job annotations counting the automatic attempts so far since the user's submission or resume.
REQUEUES = "mrunner/requeues"
RETRIES = "mrunner/retries"


def job(sweep: Sweep, run: Run, image: str, secret_names: Iterable[str], requeues: int = 0, retries: int = 0) -> Any:
    """One attempt's Job: one pod, never restarted, its parameters mounted from the sweep's ConfigMap;
    ``requeues`` and ``retries`` count the attempts started automatically before it. Its resources and
    deadline are the run's own where it asks for its own (``Run.resources``: a per-point resource)."""
    c = _client()
    context = run.context(sweep)
    storage = context["storage"]
    contract = layout.of_run(storage, sweep, run).environment()
    # the wrapper says a death by signal where the pod's status shows it (``cluster.signal_end``)
    fixed = {**contract, "PYTHONUNBUFFERED": "1", TERMINATION_LOG: "/dev/termination-log"}
    env = [c.V1EnvVar(name=key, value=value) for key, value in fixed.items()]
    env += [c.V1EnvVar(name=key, value=str(value)) for key, value in run.env.items() if key not in fixed]
    secret_name = names.secret(sweep.id)
    env += [
        c.V1EnvVar(
            name=key, value_from=c.V1EnvVarSource(secret_key_ref=c.V1SecretKeySelector(name=secret_name, key=key))
        )
        for key in sorted(secret_names)
    ]
    container = c.V1Container(
        name="experiment",
        image=image,
        image_pull_policy="IfNotPresent",  # images are tagged by content: a tag never changes
        command=command(sweep, run),
        working_dir=CLIENT_DIR,
        env=env,
        resources=resources(context),
        volume_mounts=[
            c.V1VolumeMount(name="mrunner-config", mount_path=names.CONFIG_DIR, read_only=True),
            c.V1VolumeMount(name="storage", mount_path=storage),
        ],
    )
    volumes = [
        c.V1Volume(
            name="mrunner-config",
            config_map=c.V1ConfigMapVolumeSource(
                name=names.config_map(sweep.id),
                items=[c.V1KeyToPath(key=names.config_key(run.index), path=names.CONFIG_FILE)],
            ),
        ),
        c.V1Volume(
            name="storage", persistent_volume_claim=c.V1PersistentVolumeClaimVolumeSource(claim_name=names.PVC_NAME)
        ),
    ]
    labels = run_labels(sweep, run)
    pod = c.V1PodSpec(
        restart_policy="Never",
        termination_grace_period_seconds=int(context["grace_period"]) + KILL_MARGIN_SECONDS,
        containers=[container],
        volumes=volumes,
        **placement(context),
    )
    spec = c.V1JobSpec(
        backoff_limit=0,
        active_deadline_seconds=context.get("active_deadline_seconds"),
        template=c.V1PodTemplateSpec(metadata=c.V1ObjectMeta(labels=labels), spec=pod),
    )
    metadata = c.V1ObjectMeta(
        name=names.job(sweep.id, run.index, run.attempt, run.name),
        labels=labels,
        annotations={
            "mrunner/name": run.name,
            "mrunner/ref": run.ref,
            REQUEUES: str(requeues),
            RETRIES: str(retries),
        },
    )
    return c.V1Job(api_version="batch/v1", kind="Job", metadata=metadata, spec=spec)


#: The label of a pull pod (value: the sweep's id): not ``mrunner/sweep``, so a sweep's status never sees it.
PULL_LABEL = "mrunner/pull-of"
#: A pull pod is stopped by the kubelet after this long, whatever happens to the mrunner that made it (a
#: longer pull is cut there; the next pull sends only what is still missing).
PULL_DEADLINE_SECONDS = 4 * 3600
#: ... and its main process ends this long after the last process ``exec`` started in the container ended.
PULL_IDLE_SECONDS = 60
#: The pull pod's main process: it waits while another process runs in the container (the transfer, started
#: through ``exec``) and ends ``PULL_IDLE_SECONDS`` after the last, reaping any orphan the exec leaves it, so an
#: orphaned pod ends by itself in a minute rather than at its deadline.
PULL_WATCH = f"""
import os, time
seen = time.monotonic()
while time.monotonic() - seen < {PULL_IDLE_SECONDS}:
    time.sleep(1)
    try:
        os.waitpid(-1, os.WNOHANG)
    except ChildProcessError:
        pass
    if any(name.isdigit() and int(name) != os.getpid() for name in os.listdir("/proc")):
        seen = time.monotonic()
"""


def pull_pod(sweep: Sweep, name: str) -> Any:
    """The short-lived pod `mrunner pull` reads the volume claim through: the sweep's own image (it has the
    experiment's Python, which runs ``mrunner.transfer``), the claim mounted read-only where the experiments
    mount it (so the layout's paths hold), placed as the experiments are (node selector, tolerations, host
    network) and preferably beside the project's running pods (a ``ReadWriteOnce`` claim is attached there)."""
    c = _client()
    context = sweep.context
    project = {**MANAGED_BY, "mrunner/project": names.label_value(sweep.project)}
    container = c.V1Container(
        name="pull",
        image=sweep.package["image"],
        image_pull_policy="IfNotPresent",
        command=[context["python"], "-c", PULL_WATCH],
        volume_mounts=[c.V1VolumeMount(name="storage", mount_path=context["storage"], read_only=True)],
    )
    beside = c.V1WeightedPodAffinityTerm(
        weight=100,
        pod_affinity_term=c.V1PodAffinityTerm(
            label_selector=c.V1LabelSelector(match_labels=project), topology_key="kubernetes.io/hostname"
        ),
    )
    spec = c.V1PodSpec(
        restart_policy="Never",
        active_deadline_seconds=PULL_DEADLINE_SECONDS,
        termination_grace_period_seconds=0,  # it only reads
        containers=[container],
        volumes=[
            c.V1Volume(
                name="storage",
                persistent_volume_claim=c.V1PersistentVolumeClaimVolumeSource(
                    claim_name=names.PVC_NAME, read_only=True
                ),
            )
        ],
        affinity=c.V1Affinity(
            pod_affinity=c.V1PodAffinity(preferred_during_scheduling_ignored_during_execution=[beside])
        ),
        **placement(context),
    )
    metadata = c.V1ObjectMeta(name=name, labels={**project, PULL_LABEL: sweep.id})
    return c.V1Pod(api_version="v1", kind="Pod", metadata=metadata, spec=spec)


def resources(context: Mapping[str, Any]) -> Any:
    """Requests equal to limits (the pod is Guaranteed when cpu and mem are both given)."""
    amounts: dict[str, str] = {}
    if context.get("cpu") not in (None, ""):
        amounts["cpu"] = str(context["cpu"])
    if context.get("mem"):
        amounts["memory"] = str(context["mem"])
    if context.get("gpu"):
        amounts["nvidia.com/gpu"] = str(context["gpu"])
    if context.get("tpu"):
        amounts["google.com/tpu"] = str(context["tpu"])
    c = _client()
    return c.V1ResourceRequirements(requests=amounts or None, limits=dict(amounts) or None)


def placement(context: Mapping[str, Any]) -> dict[str, Any]:
    """The pod-spec fields that say where and how a pod of the sweep may run: the experiments' and the pull pod's."""
    from kubernetes import client as c

    return {
        "host_network": bool(context.get("host_network")) or None,
        "node_selector": {str(k): str(v) for k, v in context["node_selector"].items()} or None,
        "tolerations": tolerations(context["tolerations"]) or None,
        "image_pull_secrets": [c.V1LocalObjectReference(name=context["image_pull_secret"])]
        if context.get("image_pull_secret")
        else None,
    }


def tolerations(items: Iterable[Any]) -> list[Any]:
    """Tolerations as written in a pod spec (camelCase keys), checked as ``keys.check`` does."""
    from mrunner_k8s.keys import check_toleration

    c = _client()
    result = []
    for item in items:
        check_toleration(item, "context key 'tolerations'")
        result.append(c.V1Toleration.from_dict(dict(item)))
    return result


def to_dict(model: Any) -> dict[str, Any]:
    """The object as sent to the API server (camelCase, no unset fields)."""
    return _client().ApiClient().sanitize_for_serialization(model)
