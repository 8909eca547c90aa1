"""Names Kubernetes accepts, made from mrunner's: RFC 1123 labels (lower-case alphanumerics and ``-``,
at most 63 characters, alphanumeric at both ends), deterministic so a repeated submission finds its own
objects again.

A Job's name starts with what makes it unique (sweep id, index, attempt) and ends with the experiment's
readable name, so shortening to 63 characters can only cut the readable part.
"""

from __future__ import annotations

import hashlib
import re

MAX_LENGTH = 63
_INVALID = re.compile(r"[^a-z0-9-]+")
_LABEL_VALUE_INVALID = re.compile(r"[^A-Za-z0-9._-]+")

PVC_NAME = "mrunner-storage"
CONFIG_DIR = "/etc/mrunner"
CONFIG_FILE = "config.json"


def rfc1123(text: str, limit: int = MAX_LENGTH, fallback: str = "x") -> str:
    """``text`` as an RFC 1123 label: lower-cased, other characters as ``-``, cut to ``limit``."""
    name = _INVALID.sub("-", text.lower()).strip("-")
    name = re.sub("-{2,}", "-", name)[:limit].rstrip("-")
    return name or fallback


def namespace(project: str) -> str:
    """The project's namespace; a name that had to be changed gets a short hash so two projects differ."""
    name = rfc1123(project, fallback="mrunner")
    if name != project:
        suffix = hashlib.sha256(project.encode()).hexdigest()[:6]
        name = f"{name[: MAX_LENGTH - 7].rstrip('-')}-{suffix}"
    return name


def job(sweep_id: str, index: int, attempt: int, experiment: str) -> str:
    """The Job of one attempt of one experiment: ``SWEEP-INDEX[-rATTEMPT]-NAME``, at most 63 characters."""
    head = rfc1123(f"{sweep_id}-{index}" + (f"-r{attempt}" if attempt else ""), limit=MAX_LENGTH)
    tail = rfc1123(experiment, fallback="")
    return f"{head}-{tail}"[:MAX_LENGTH].rstrip("-") if tail else head


def secret(sweep_id: str) -> str:
    return rfc1123(f"{sweep_id}-secrets")


def config_map(sweep_id: str) -> str:
    return rfc1123(f"{sweep_id}-config")


def config_key(index: int) -> str:
    return f"{index}.json"


def label_value(text: str) -> str:
    """A label value: at most 63 of ``[A-Za-z0-9._-]``, alphanumeric at both ends (or empty)."""
    return _LABEL_VALUE_INVALID.sub("-", text)[:MAX_LENGTH].strip("-._")


def image_repository(registry_url: str, project: str) -> str:
    """``registry/project`` without a scheme: ``https://gcr.io/p`` and project ``My Proj`` give ``gcr.io/p/my-proj``."""
    registry = re.sub(r"^[a-z]+://", "", registry_url.strip()).rstrip("/")
    repository = re.sub(r"[^a-z0-9._-]+", "-", project.lower()).strip("-._") or "mrunner"
    return f"{registry}/{repository}" if registry else repository
