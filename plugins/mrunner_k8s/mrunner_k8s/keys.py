"""The context keys of ``backend: kubernetes``.

The validated context is recorded with every sweep, so no key holds a secret: the registry password is
read from the environment variable ``registry_password_env`` names (or from docker's own credential store),
and experiments' tokens travel through the core's ``secrets`` list into a Kubernetes Secret.
"""

from __future__ import annotations

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
    ContextKey("cpu", "str|int", None, "CPUs per experiment (request and limit), e.g. 4 or 500m"),
    ContextKey("mem", "str", None, "memory per experiment (request and limit), e.g. 8Gi"),
    ContextKey("gpu", "int", 0, "nvidia.com/gpu per experiment"),
    ContextKey("tpu", "int", 0, "google.com/tpu per experiment"),
    ContextKey("node_selector", "dict", {}, "node labels the experiments' pods require"),
    ContextKey("tolerations", "list", [], "pod tolerations, as in a pod spec (key, operator, value, effect)"),
    ContextKey("image_pull_secret", "str", None, "existing Secret the kubelet pulls the image with"),
    ContextKey("host_network", "bool", False, "run pods in the node's network (clusters without a network plugin)"),
    ContextKey("active_deadline_seconds", "int", None, "a Job running longer is stopped and recorded as timeout"),
    ContextKey("python", "str", "python3", "interpreter in the image that runs a .py experiment script"),
]  # fmt: skip
