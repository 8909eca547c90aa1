"""What mrunner leaves on the user's Docker engine besides the experiment images: pip's results
(``mrunner-requirements:r-DIGEST``, the cache that lets equal requirements skip pip) and the leftovers of a
requirements build that was killed outright (its labelled layers, which held the requirements file and its
token, and its ``mrunner-requirements:build-ID`` result). Without this they build up on the engine for good.

An engine may be shared (``docker_host``: other users, other machines): what this machine's mrunner makes
there is noted in a ledger of its own (``kubernetes/local-images.jsonl`` in the data folder) before it is
made, and only that is ever removed. A build's ID names the machine and the process that runs it
(``HOST.PID.UNIQUE``): a build whose process is gone was killed, and its leftovers go at the next build or
`mrunner gc`. Submissions append to the ledger (holding the gc lock shared); `mrunner gc` rewrites it
(holding it exclusive).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mrunner import paths
from mrunner.backend import Artefact, Keep
from mrunner.errors import MrunnerError
from mrunner.records import Sweep
from mrunner.reporter import Reporter

#: The local images holding what pip installed from a requirements file, by its digest (never pushed).
REQUIREMENTS_IMAGE = "mrunner-requirements"
#: The label of the requirements build's own layers (the file with its token among them).
STAGE_LABEL = "org.mrunner.requirements-build"
CACHE_PREFIX = f"{REQUIREMENTS_IMAGE}:r-"
BUILD_PREFIX = f"{REQUIREMENTS_IMAGE}:build-"
LEDGER = "local-images.jsonl"


def build_id() -> str:
    """A new requirements build's ID: this machine, this process, and a unique part (so that its layers are
    never a cache another build shares)."""
    return f"{socket.gethostname()}.{os.getpid()}.{uuid.uuid4().hex}"


def _ledger() -> Path:
    return paths.data_dir() / "kubernetes" / LEDGER


def note(engine: str | None, kind: str, name: str) -> None:
    """Note in the ledger that this machine makes ``name`` (``kind``: a ``build`` ID, or a cache ``image``)
    on ``engine`` (the context's ``docker_host``; None: the environment's own), before it is made."""
    path = _ledger()
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as stream:
        stream.write(json.dumps({"engine": engine or "", kind: name}) + "\n")


def _noted() -> dict[str, dict[str, set[str]]]:
    """The ledger: per engine (``""``: the environment's own), the noted ``build`` IDs and cache ``image``s."""
    noted: dict[str, dict[str, set[str]]] = {}
    try:
        lines = _ledger().read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return noted
    for line in lines:
        try:
            entry = json.loads(line)
        except ValueError:  # a line cut by a full disk or a kill: what it named is left alone
            continue
        place = noted.setdefault(str(entry.get("engine") or ""), {"build": set(), "image": set()})
        for kind in ("build", "image"):
            if isinstance(entry.get(kind), str):
                place[kind].add(entry[kind])
    return noted


def _rewrite(noted: dict[str, dict[str, set[str]]]) -> None:
    """The ledger with only what may still be on an engine (written aside, then renamed over it)."""
    path = _ledger()
    if not path.exists():
        return
    lines = [
        json.dumps({"engine": engine, kind: name})
        for engine, kinds in sorted(noted.items())
        for kind, names in sorted(kinds.items())
        for name in sorted(names)
    ]
    aside = path.with_name(f".{LEDGER}.{os.getpid()}")
    aside.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    os.replace(aside, path)


def _killed(build: str) -> bool:
    """Whether ``build`` is this machine's and its process is gone (it cannot be running any more)."""
    parts = build.rsplit(".", 2)  # the host name may hold dots of its own
    if len(parts) != 3 or parts[0] != socket.gethostname() or not parts[1].isdigit():
        return False
    try:
        os.kill(int(parts[1]), 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # another user's live process
        return False
    return False


@dataclass(frozen=True)
class Leftover:
    """One build's leftovers on the engine: its result's name, if tagged, and the largest of its images."""

    build: str
    tag: str | None
    size: int


def leftovers(client: Any) -> list[Leftover]:
    """Every requirements build's leftovers the engine holds, one per build ID (a build that ends well or
    fails removes its own: what is here was killed, or is running now)."""
    builds: dict[str, list[dict[str, Any]]] = {}
    for image in client.api.images(all=True, filters={"label": STAGE_LABEL}):
        build = (image.get("Labels") or {}).get(STAGE_LABEL) or ""
        builds.setdefault(build, []).append(image)
    tags: dict[str, dict[str, Any]] = {}
    for image in client.api.images(name=REQUIREMENTS_IMAGE):
        for tag in image.get("RepoTags") or []:
            if tag.startswith(BUILD_PREFIX):
                tags[tag[len(BUILD_PREFIX) :]] = image
    found = []
    for build in sorted(set(builds) | set(tags)):
        tagged = tags.get(build)
        every = builds.get(build, []) + ([tagged] if tagged else [])
        size = max(int(image.get("Size") or 0) for image in every)
        found.append(Leftover(build=build, tag=f"{BUILD_PREFIX}{build}" if tagged else None, size=size))
    return found


def remove_build(client: Any, build: str, tag: str | None = None) -> None:
    """Remove one requirements build's images (its layers with the file among them): the newest of each line,
    whose untagged parents docker removes with it, down to the base image; then its result's name alone
    (``tag``; the image keeps a cache name it was given)."""
    import docker

    images = client.api.images(all=True, filters={"label": f"{STAGE_LABEL}={build}"})
    parents = {image.get("ParentId") for image in images}
    for image in images:
        if image["Id"] not in parents:
            with contextlib.suppress(docker.errors.NotFound):
                client.api.remove_image(image["Id"], force=True)
    if tag:
        with contextlib.suppress(docker.errors.NotFound):
            client.api.remove_image(tag, noprune=True)


def remove_killed_builds(client: Any, engine: str | None) -> None:
    """Before a requirements build: the leftovers of this machine's builds on ``engine`` whose process is gone
    (SIGKILL: nothing of theirs ran to remove them)."""
    mine = _noted().get(engine or "", {}).get("build", set())
    for leftover in leftovers(client):
        if leftover.build in mine and _killed(leftover.build):
            remove_build(client, leftover.build, leftover.tag)


def _cache_images(client: Any) -> Iterator[tuple[str, dict[str, Any]]]:
    for image in client.api.images(name=REQUIREMENTS_IMAGE):
        for tag in image.get("RepoTags") or []:
            if tag.startswith(CACHE_PREFIX):
                yield tag, image


def collect(sweeps: Sequence[Sweep], keep: Keep, dry_run: bool, reporter: Reporter) -> list[Artefact]:
    """`mrunner gc` on each engine the ledger names: the pip results this machine made that no recorded
    sweep's image was built from (``package["requirements_image"]``) once older than ``--older-than``, and its
    killed builds' leftovers. An engine that cannot be reached is one warning, and its lines stay."""
    noted = _noted()
    if not noted:  # nothing built here: no engine to ask (and docker not imported)
        return []
    import docker
    import requests

    from mrunner_k8s.image import docker_client

    used = {sweep.package.get("requirements_image") for sweep in sweeps} - {None}
    before = time.time() - keep.older_than
    removed: list[Artefact] = []
    for engine, kinds in sorted(noted.items()):
        where = f"docker engine {engine or '(the environment default)'}"
        try:
            client = docker_client({"docker_host": engine or None})
            removed += _collect_engine(client, where, kinds, used, before, dry_run)
        except (MrunnerError, docker.errors.DockerException, requests.exceptions.RequestException, OSError) as error:
            reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            reporter.warn(f"{where} left as it is (its requirements images too): {reason}")
    if not dry_run:
        _rewrite(noted)
    return removed


def _collect_engine(
    client: Any, where: str, kinds: dict[str, set[str]], used: set[Any], before: float, dry_run: bool
) -> list[Artefact]:
    """One engine's collection; ``kinds`` (the ledger's names for it) keeps, once done, only what stays."""
    import docker

    removed: list[Artefact] = []
    present = dict(_cache_images(client))
    for tag in sorted(kinds["image"]):
        image = present.get(tag)
        if image is None:  # removed by hand, or never made (its build failed)
            kinds["image"].discard(tag)
            continue
        if tag in used or float(image.get("Created") or 0) > before:
            continue
        if not dry_run:
            try:
                client.api.remove_image(tag)
            except docker.errors.NotFound:
                pass
            except docker.errors.APIError:  # a container uses it (a build running now): kept
                continue
            kinds["image"].discard(tag)
        removed.append(Artefact("requirements image", f"{tag} on {where}", bytes=int(image.get("Size") or 0)))
    found = {leftover.build: leftover for leftover in leftovers(client)}
    for build in sorted(kinds["build"]):
        leftover = found.get(build)
        if leftover is None:  # ended and removed its own, or an earlier build removed them
            kinds["build"].discard(build)
            continue
        if not _killed(build):  # running now
            continue
        if not dry_run:
            remove_build(client, build, leftover.tag)
            kinds["build"].discard(build)
        removed.append(Artefact("killed requirements build", f"{build} on {where}", bytes=leftover.size))
    return removed
