"""The context keys of ``backend: kubernetes``.

The validated context is recorded with every sweep, so no key holds a secret: the registry password is
read from the environment variable ``registry_password_env`` names (or from docker's own credential store),
and experiments' tokens travel through the core's ``secrets`` list into a Kubernetes Secret.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from mrunner.errors import MrunnerError
from mrunner.schema import ContextKey

KEYS = [
    ContextKey("kubeconfig", "str", None, "kubeconfig file (default: $KUBECONFIG or ~/.kube/config)"),
    ContextKey("kube_context", "str", None, "kubeconfig context (default: its current context)"),
    ContextKey("registry_url", "str", None, "registry (and path) images are pushed to, e.g. gcr.io/my-project", required=True),
    ContextKey("registry_username", "str", None, "registry user (default: docker's stored credentials)"),
    ContextKey("registry_password_env", "str", None, "environment variable holding the registry password (never a context value)"),
    ContextKey("docker_host", "str", None, "docker daemon that builds images (default: $DOCKER_HOST or the local socket)"),
    ContextKey("base_image", "str", "python:3.11", "image the experiment image starts FROM"),
    ContextKey("requirements_file", "str", None, "pip requirements installed in their own layer (path in the project)"),
    ContextKey("build_network", "str", None, "network of the build, e.g. host or none (default: none without requirements, else docker's default)"),
    ContextKey("namespace", "str", None, "namespace of the project's objects (default: derived from the project name)"),
    ContextKey("storage", "str", "/storage", "where the project's volume claim is mounted (STORAGE_DIR)"),
    ContextKey("default_pvc_size", "str", "40Gi", "size of the volume claim when it is created"),
    ContextKey("storage_class", "str", None, "storage class of the volume claim (default: the cluster's default)"),
    ContextKey("pvc_access_mode", "str", "ReadWriteOnce", "access mode of the volume claim (ReadWriteMany for multi-node sweeps)"),
    ContextKey("cpu", "any", None, "CPUs per experiment (request and limit), e.g. 4, 0.5 or 500m"),
    ContextKey("mem", "any", None, "memory per experiment (request and limit), e.g. 8Gi"),
    ContextKey("gpu", "int", 0, "nvidia.com/gpu per experiment"),
    ContextKey("tpu", "int", 0, "google.com/tpu per experiment"),
    ContextKey("node_selector", "dict", {}, "node labels the experiments' pods require"),
    ContextKey("tolerations", "list", [], "pod tolerations, as in a pod spec (key, operator, value, effect)"),
    ContextKey("image_pull_secret", "str", None, "existing Secret the kubelet pulls the image with"),
    ContextKey("host_network", "bool", False, "run pods in the node's network (clusters without a network plugin)"),
    ContextKey("active_deadline_seconds", "int", None, "a Job running longer is stopped and recorded as timeout"),
    ContextKey("python", "str", "python3", "interpreter in the image that runs a .py experiment script"),
]  # fmt: skip

# The API server's grammar of a resource quantity: a decimal number, then a binary (Ki..Ei) or decimal
# (n, u, m, k, M, G, T, P, E) suffix or an exponent.
QUANTITY = re.compile(r"^[+]?([0-9]+(\.[0-9]*)?|\.[0-9]+)(Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE]|[eE][+-]?[0-9]+)?$")
TOLERATION_FIELDS = {"key": str, "operator": str, "value": str, "effect": str, "tolerationSeconds": int}
TOLERATION_OPERATORS = ("Exists", "Equal")
TOLERATION_EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")
ACCESS_MODES = ("ReadWriteOnce", "ReadOnlyMany", "ReadWriteMany", "ReadWriteOncePod")
_LABEL_NAME = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$")
_LABEL_PREFIX = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")


def check(context: Mapping[str, Any], context_name: str) -> None:
    """Every key the Job is built from, checked as the API server would, before an image is built or
    pushed: a mistake here would otherwise surface only at the first Job, after the push."""
    where = f"context {context_name}"
    for key in ("cpu", "mem", "default_pvc_size"):
        value = context.get(key)
        if value in (None, ""):
            continue
        if isinstance(value, bool) or not isinstance(value, (str, int, float)) or not QUANTITY.match(str(value)):
            raise MrunnerError(f"{where}: {key} {value!r} is not a Kubernetes quantity (e.g. 4, 0.5, 500m, 8Gi, 40Gi)")
    for key in ("gpu", "tpu"):
        if (context.get(key) or 0) < 0:
            raise MrunnerError(f"{where}: {key} must be 0 or more, got {context[key]}")
    deadline = context.get("active_deadline_seconds")
    if deadline is not None and deadline < 1:
        raise MrunnerError(f"{where}: active_deadline_seconds must be at least 1, got {deadline}")
    if context.get("pvc_access_mode") not in ACCESS_MODES:
        raise MrunnerError(
            f"{where}: pvc_access_mode must be one of {', '.join(ACCESS_MODES)}, got {context.get('pvc_access_mode')!r}"
        )
    for name, value in (context.get("node_selector") or {}).items():
        if not _label_key(str(name)) or not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise MrunnerError(f"{where}: node_selector {name}: {value!r} is not a node label (name: value)")
        if not _LABEL_NAME.match(str(value)):
            raise MrunnerError(f"{where}: node_selector {name}: {value!r} is not a valid label value")
    for item in context.get("tolerations") or []:
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
