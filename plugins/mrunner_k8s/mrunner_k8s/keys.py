"""The context keys of ``backend: kubernetes``.

The validated context is recorded with every sweep, so no key holds a secret: the registry password is
read from the environment variable ``registry_password_env`` names (or from docker's own credential store),
and experiments' tokens travel through the core's ``secrets`` list into a Kubernetes Secret.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from mrunner.errors import MrunnerError
from mrunner.schema import key


@dataclass(frozen=True, kw_only=True)
class KubernetesKeys:
    """The keys of ``backend: kubernetes``; ``option`` names the field of the Job's pod (or claim) a key sets."""

    # fmt: off
    kubeconfig: str | None = key(None, help="kubeconfig file (default: $KUBECONFIG or ~/.kube/config)")
    kube_context: str | None = key(None, help="kubeconfig context (default: its current context)")
    registry_url: str = key(help="registry (and path) images are pushed to, e.g. gcr.io/my-project")
    registry_username: str | None = key(None, help="registry user (default: docker's stored credentials)")
    registry_password_env: str | None = key(None, help="environment variable holding the registry password (never a context value)")
    docker_host: str | None = key(None, help="docker daemon that builds images (default: $DOCKER_HOST or the local socket)")
    base_image: str = key("python:3.11", help="image the experiment image starts FROM")
    requirements_file: str | None = key(
        None,
        help="pip requirements installed in their own layer (path in the project); an index URL's token reaches no pushed layer",
    )
    build_network: str | None = key(None, help="network of the build, e.g. host or none (default: none without requirements, else docker's default)")
    namespace: str | None = key(None, help="namespace of the project's objects (default: derived from the project name)")
    storage: str = key("/storage", option="STORAGE_DIR", help="where the project's volume claim is mounted in the pods (an absolute path)")
    default_pvc_size: str = key("40Gi", option="resources.requests.storage", help="size of the volume claim when it is created")
    storage_class: str | None = key(None, option="storageClassName", help="storage class of the volume claim (default: the cluster's default)")
    pvc_access_mode: Literal["ReadWriteOnce", "ReadOnlyMany", "ReadWriteMany", "ReadWriteOncePod"] = key("ReadWriteOnce", option="accessModes", help="access mode of the volume claim (ReadWriteMany for multi-node sweeps)")
    cpu: Any = key(None, option="resources cpu", help="CPUs per experiment (request and limit), e.g. 4, 0.5 or 500m", per_point=True)
    mem: Any = key(None, option="resources memory", help="memory per experiment (request and limit), e.g. 8Gi", per_point=True)
    gpu: int = key(0, minimum=0, option="resources nvidia.com/gpu", help="GPUs per experiment", per_point=True)
    tpu: int = key(0, minimum=0, option="resources google.com/tpu", help="TPUs per experiment", per_point=True)
    node_selector: dict[str, Any] = key({}, option="nodeSelector", help="node labels the experiments' pods require")
    tolerations: list[Any] = key([], option="tolerations", help="pod tolerations, as in a pod spec (key, operator, value, effect)")
    image_pull_secret: str | None = key(None, option="imagePullSecrets", help="existing Secret the kubelet pulls the image with")
    host_network: bool = key(False, option="hostNetwork", help="run pods in the node's network (clusters without a network plugin)")
    active_deadline_seconds: int | None = key(None, minimum=1, option="activeDeadlineSeconds", help="a Job running longer is stopped and recorded as timeout", per_point=True)
    python: str = key("python3", help="interpreter in the image that runs a .py experiment script")
    # fmt: on


# The API server's grammar of a resource quantity: a decimal number, then a binary (Ki..Ei) or decimal
# (n, u, m, k, M, G, T, P, E) suffix or an exponent.
QUANTITY = re.compile(r"^[+]?([0-9]+(\.[0-9]*)?|\.[0-9]+)(Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE]|[eE][+-]?[0-9]+)?$")
TOLERATION_FIELDS = {"key": str, "operator": str, "value": str, "effect": str, "tolerationSeconds": int}
TOLERATION_OPERATORS = ("Exists", "Equal")
TOLERATION_EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")
_IMAGE = re.compile(r"^[^\s/:@][^\s]*$")
_LABEL_NAME = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$")
_LABEL_PREFIX = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")


def check(context: Mapping[str, Any], context_name: str) -> None:
    """Every key the Job is built from, checked as the API server would, before an image is built or
    pushed: a mistake here would otherwise surface only at the first Job, after the push. Types, ranges
    and choices are checked from ``KubernetesKeys`` before."""
    where = f"context {context_name}"
    if not str(context["storage"]).startswith("/"):
        raise MrunnerError(
            f"{where}: storage {context['storage']!r} is not an absolute path: the folder of the pods where"
            " the volume claim is mounted, e.g. /storage"
        )
    registry = re.sub(r"^[a-z]+://", "", str(context["registry_url"]).strip()).strip("/")
    if not registry or re.search(r"\s", registry):
        raise MrunnerError(
            f"{where}: registry_url {context['registry_url']!r} names no registry: give the registry (and path)"
            " images are pushed to, e.g. gcr.io/my-project"
        )
    if not _IMAGE.match(str(context["base_image"])):
        raise MrunnerError(f"{where}: base_image {context['base_image']!r} is not an image name (e.g. python:3.11)")
    for name in ("cpu", "mem", "default_pvc_size"):
        value = context[name]
        if value in (None, ""):
            continue
        if isinstance(value, bool) or not isinstance(value, (str, int, float)) or not QUANTITY.match(str(value)):
            raise MrunnerError(f"{where}: {name} {value!r} is not a Kubernetes quantity (e.g. 4, 0.5, 500m, 8Gi, 40Gi)")
    for name, value in context["node_selector"].items():
        if not _label_key(str(name)) or not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise MrunnerError(f"{where}: node_selector {name}: {value!r} is not a node label (name: value)")
        if not _LABEL_NAME.match(str(value)):
            raise MrunnerError(f"{where}: node_selector {name}: {value!r} is not a valid label value")
    for item in context["tolerations"]:
        check_toleration(item, where)


def _label_key(name: str) -> bool:
    prefix, _, rest = name.rpartition("/")
    return bool(rest) and bool(_LABEL_NAME.match(rest)) and (not prefix or bool(_LABEL_PREFIX.match(prefix)))


def check_toleration(item: Any, where: str) -> None:
    """One toleration as written in a pod spec (camelCase keys), with the values the API server accepts."""
    fields = ", ".join(TOLERATION_FIELDS)
    if not isinstance(item, Mapping) or set(item) - set(TOLERATION_FIELDS):
        raise MrunnerError(f"{where}: each item of tolerations must be a mapping of {fields}; got {item!r}")
    for name, kind in TOLERATION_FIELDS.items():
        value = item.get(name)
        if value is not None and (not isinstance(value, kind) or isinstance(value, bool)):
            raise MrunnerError(f"{where}: toleration {name} must be {kind.__name__}, got {value!r}")
    operator = item.get("operator") or "Equal"
    if operator not in TOLERATION_OPERATORS:
        raise MrunnerError(f"{where}: toleration operator must be Exists or Equal, got {operator!r}")
    if operator == "Exists" and item.get("value"):
        raise MrunnerError(f"{where}: a toleration with operator Exists takes no value, got {item['value']!r}")
    if not item.get("key") and operator != "Exists":
        raise MrunnerError(f"{where}: a toleration without a key needs operator Exists (it matches every taint)")
    if item.get("effect") and item["effect"] not in TOLERATION_EFFECTS:
        raise MrunnerError(
            f"{where}: toleration effect must be one of {', '.join(TOLERATION_EFFECTS)}, got {item['effect']!r}"
        )
    if item.get("tolerationSeconds") is not None and item.get("effect") != "NoExecute":
        raise MrunnerError(f"{where}: tolerationSeconds needs effect NoExecute (the API server refuses it otherwise)")
