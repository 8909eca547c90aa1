"""The Kubernetes objects of a sweep, built as the official client's models (which check field names and
types as they are built): the project's Namespace and volume claim, the sweep's Secret and ConfigMap, and
one Job per experiment.

Secrets appear here only as references (``env[].valueFrom.secretKeyRef``): the values go into the Secret
object alone, so the Job as stored by the API server, the image and the records never hold them.
"""

from __future__ import annotations

import json
import posixpath
from collections.abc import Iterable, Mapping
from typing import Any

from mrunner.errors import MrunnerError
from mrunner.records import Run, Sweep
from mrunner_k8s import names

CODE_DIR = "/mrunner/code"
MANAGED_BY = {"app.kubernetes.io/managed-by": "mrunner"}
# The container's first process, in the image's python: it creates the experiment's folder on the volume,
# runs the experiment as its child and passes termination signals on. As PID 1 the experiment itself
# would ignore the SIGTERM of a cancel (the kernel drops signals PID 1 has no handler for) and be killed
# only after the grace period.
BOOT = """\
import os, signal, subprocess, sys
os.makedirs(os.environ["MRUNNER_EXPERIMENT_DIR"], exist_ok=True)
child = subprocess.Popen(sys.argv[1:])
for number in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
    signal.signal(number, lambda received, frame: child.send_signal(received))
code = child.wait()
sys.exit(128 - code if code < 0 else code)
"""


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


def experiment_dir(sweep: Sweep, run: Run) -> str:
    return posixpath.join(sweep.context["storage"], sweep.project, sweep.id, f"{run.index}-{run.name}")


def job(sweep: Sweep, run: Run, image: str, secret_names: Iterable[str]) -> Any:
    """One experiment's Job: one pod, never restarted, its parameters mounted from the sweep's ConfigMap."""
    c = _client()
    context = sweep.context
    storage = context["storage"]
    env = [
        c.V1EnvVar(name="MRUNNER_CONFIG", value=posixpath.join(names.CONFIG_DIR, names.CONFIG_FILE)),
        c.V1EnvVar(name="MRUNNER_EXPERIMENT_DIR", value=experiment_dir(sweep, run)),
        c.V1EnvVar(name="STORAGE_DIR", value=storage),
        c.V1EnvVar(name="PYTHONUNBUFFERED", value="1"),
    ]
    fixed = {variable.name for variable in env}
    env += [c.V1EnvVar(name=key, value=str(value)) for key, value in run.env.items() if key not in fixed]
    secret_name = names.secret(sweep.id)
    env += [
        c.V1EnvVar(name=key, value_from=c.V1EnvVarSource(secret_key_ref=c.V1SecretKeySelector(name=secret_name, key=key)))
        for key in sorted(secret_names)
    ]  # fmt: skip
    container = c.V1Container(
        name="experiment",
        image=image,
        image_pull_policy="IfNotPresent",  # images are tagged by content: a tag never changes
        command=[context["python"], "-c", BOOT, *run.command],
        working_dir=posixpath.normpath(posixpath.join(CODE_DIR, sweep.workdir)),
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
        containers=[container],
        volumes=volumes,
        host_network=bool(context.get("host_network")) or None,
        node_selector={str(k): str(v) for k, v in (context.get("node_selector") or {}).items()} or None,
        tolerations=tolerations(context.get("tolerations") or []) or None,
        image_pull_secrets=[c.V1LocalObjectReference(name=context["image_pull_secret"])]
        if context.get("image_pull_secret")
        else None,
    )
    spec = c.V1JobSpec(
        backoff_limit=0,
        active_deadline_seconds=context.get("active_deadline_seconds"),
        template=c.V1PodTemplateSpec(metadata=c.V1ObjectMeta(labels=labels), spec=pod),
    )
    metadata = c.V1ObjectMeta(
        name=names.job(sweep.id, run.index, run.attempt, run.name),
        labels=labels,
        annotations={"mrunner/name": run.name, "mrunner/ref": run.ref},
    )
    return c.V1Job(api_version="batch/v1", kind="Job", metadata=metadata, spec=spec)


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


def tolerations(items: Iterable[Any]) -> list[Any]:
    """Tolerations as written in a pod spec (camelCase keys); an unknown key is an error, not ignored."""
    c = _client()
    fields = set(c.V1Toleration.attribute_map.values())
    result = []
    for item in items:
        if not isinstance(item, Mapping) or set(item) - fields:
            raise MrunnerError(
                f"context key 'tolerations': each item must be a mapping of {', '.join(sorted(fields))}; got {item!r}"
            )
        result.append(c.V1Toleration.from_dict(dict(item)))
    return result


def to_dict(model: Any) -> dict[str, Any]:
    """The object as sent to the API server (camelCase, no unset fields)."""
    return _client().ApiClient().sanitize_for_serialization(model)
