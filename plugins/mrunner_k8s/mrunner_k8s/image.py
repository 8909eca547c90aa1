"""The experiment image: the base image, mrunner's small client library, the installed requirements in a
layer of their own, then the code snapshot. Tagged by content, so an unchanged snapshot is neither built nor
pushed again; a new image also gets a readable UTC timestamp tag.

No build argument is ever passed and no secret is ever written into the Dockerfile: the registry password
reaches only docker's push call (``auth_config``). A requirements file may hold an index's token
(``--extra-index-url https://user:TOKEN@host``): pip reads it in a build of its own, whose result keeps only
what pip installed (a local image, ``mrunner-requirements:r-DIGEST``, never pushed); the layers that held the
file are removed from the engine as that build ends, so no copy of the token stays in docker's build cache on
disk (the classic builder docker's Python client drives has no secret mounts). That local image is the cache:
equal requirements on the same base skip pip (``local_images`` removes those no recorded sweep uses). The experiment image copies from it and holds the file, at
``/mrunner/requirements.txt`` and in the code, with URL credentials masked.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import io
import os
import re
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from mrunner.errors import BackendError, MrunnerError, cut_output, mask_credentials
from mrunner.records import Sweep
from mrunner.reporter import Reporter
from mrunner.runtime import experiment_side_digest, experiment_side_files
from mrunner.snapshot import Snapshot
from mrunner_k8s import local_images, names
from mrunner_k8s.local_images import REQUIREMENTS_IMAGE, STAGE_LABEL
from mrunner_k8s.manifests import CLIENT_DIR, CODE_DIR

TEMPLATE_VERSION = 4
REQUIREMENTS_PATH = "/mrunner/requirements.txt"
STAGED = "/mrunner/staged"  # pip's build installs below it (``--root``), as if it were ``/``
REPLACED = "/mrunner/replaced-by-requirements.txt"
# The names of the installed distributions, one a line (the image's own python; importlib.metadata: 3.8+).
# pip's build lists them before and after it runs: those gone were replaced by the requirements (an upgrade
# uninstalls them there), and the final stage uninstalls them too before it copies the new ones in.
_NAMES = "{(d.metadata['Name'] or '').lower() for d in m.distributions()} - {''}"
_LIST = f"import importlib.metadata as m; print(*sorted({_NAMES}), sep=chr(10))"
_GONE = (
    "import importlib.metadata as m, sys; "
    f"sys.stdout.write(''.join(n + chr(10) for n in sorted(set(open('/mrunner/before.txt').read().split()) - {_NAMES})))"
)


@dataclass(frozen=True)
class Recipe:
    """Everything that decides the image's content, and the tag derived from it."""

    base_image: str
    python: str
    requirements: bytes
    snapshot_digest: str
    workdir: str
    with_client: bool
    # the requirements file's path in the snapshot, whose copy in the code is masked too (None: not in it)
    requirements_in_code: str | None = None

    def requirements_image(self, base_id: str) -> str:
        """The local image of what pip installed from these requirements on the base image whose id is
        ``base_id`` (a base tag pulled anew is another base): named by their content, so equal requirements
        find it and skip pip, and any other file (another token) builds anew."""
        digest = hashlib.sha256()
        for part in (
            str(TEMPLATE_VERSION).encode(),
            base_id.encode(),
            self.python.encode(),
            for_pip(self.requirements),
        ):
            digest.update(hashlib.sha256(part).digest())
        return f"{REQUIREMENTS_IMAGE}:r-{digest.hexdigest()[:24]}"

    def requirements_dockerfile(self, build: str) -> str:
        """The requirements build: pip reads the file (it may hold an index's token) and installs below
        STAGED; the result keeps only that folder and the list of what it replaced. ``build`` (unique per
        build) labels the layers that held the file, so that they are found and removed, and are never a cache
        another build could share while this one removes them."""
        py = self.python
        return (
            f"# mrunner requirements (template {TEMPLATE_VERSION})\n"
            f"FROM {self.base_image} AS pip\n"
            f"LABEL {STAGE_LABEL}={build}\n"
            f"COPY requirements.txt {REQUIREMENTS_PATH}\n"
            f'RUN {py} -c "{_LIST}" > /mrunner/before.txt'
            f" && {py} -m pip install --no-cache-dir --disable-pip-version-check --root {STAGED}"
            f" -r {REQUIREMENTS_PATH} && mkdir -p {STAGED}"
            f' && {py} -c "{_GONE}" > /mrunner/replaced.txt\n'
            "FROM scratch\n"
            "COPY --from=pip /mrunner/replaced.txt /replaced.txt\n"
            f"COPY --from=pip {STAGED}/ /staged/\n"
        )

    def dockerfile(self, requirements_image: str = REQUIREMENTS_IMAGE) -> str:
        """The experiment image's Dockerfile; ``requirements_image`` names pip's result as the build finds it
        on its engine (the content tag is the default's, known before any engine is asked)."""
        lines = [f"# mrunner experiment image (template {TEMPLATE_VERSION})"]
        py = self.python
        if has_requirements(self.requirements):
            lines.append(f"FROM {requirements_image} AS requirements")  # pip ran there: nothing of it is here
        lines.append(f"FROM {self.base_image}")
        # Always there: the container starts the experiment through its start wrapper (``mrunner.attempt``).
        lines.append(f"COPY mrunner-client/ {CLIENT_DIR}/")
        if self.with_client:
            lines.append(f"ENV PYTHONPATH={CLIENT_DIR}")
        if has_requirements(self.requirements):
            lines += [
                f"COPY --from=requirements /replaced.txt {REPLACED}",
                f"RUN if [ -s {REPLACED} ]; then {py} -m pip uninstall --yes --disable-pip-version-check -r {REPLACED}; fi",
                "COPY --from=requirements /staged/ /",
                f"COPY requirements-masked.txt {REQUIREMENTS_PATH}",
            ]
        workdir = os.path.normpath(os.path.join(CODE_DIR, self.workdir))
        lines += [f"COPY code/ {CODE_DIR}/", f"WORKDIR {workdir}"]
        return "\n".join(lines) + "\n"

    @property
    def tag(self) -> str:
        digest = hashlib.sha256()
        for part in (
            self.dockerfile().encode(),
            self.requirements,
            self.snapshot_digest.encode(),
            experiment_side_digest().encode(),
            (self.requirements_in_code or "").encode(),
        ):
            digest.update(hashlib.sha256(part).digest())
        return f"c-{digest.hexdigest()[:24]}"


def masked(text: bytes) -> bytes:
    """``text`` with the user and password of every URL masked: what the image holds of a requirements file."""
    return mask_credentials(text.decode("utf-8", "surrogateescape")).encode("utf-8", "surrogateescape")


_EDITABLE_VCS = re.compile(rb"^(\s*)(?:-e|--editable)(?:\s+|\s*=\s*)((?:git|hg|svn|bzr)\+)", re.MULTILINE)


def for_pip(text: bytes) -> bytes:
    """The requirements as pip's build reads them: a VCS requirement marked editable (``-e git+...``)
    installed as a plain one. Editable, pip would keep its checkout (and its ``.git/config``, with the URL's
    token) outside the folder the final stage copies, so the image would lack it; nobody edits it there."""
    return _EDITABLE_VCS.sub(rb"\1\2", text)


def has_requirements(text: bytes) -> bool:
    return any(line.strip() and not line.strip().startswith(b"#") for line in text.splitlines())


def requirements_of(sweep: Sweep, snapshot: Snapshot) -> bytes:
    """The requirements file's content: as recorded when the sweep's code was first packaged (``identify``),
    whatever the file became since; else looked up in the snapshot (its workdir, then its root), then in the
    project folder; empty when the context names none."""
    name = sweep.context.get("requirements_file")
    if not name:
        return b""
    recorded = sweep.detail.get("identified", {}).get("requirements")
    if isinstance(recorded, str):
        return recorded.encode("utf-8", "surrogateescape")
    path = Path(name).expanduser()
    if not path.is_absolute():
        for relative in (os.path.normpath(os.path.join(sweep.workdir, name)), os.path.normpath(name)):
            if relative in snapshot.files:
                return snapshot.read(relative)
        path = Path(sweep.project_dir) / path
    if path.is_file():
        return path.read_bytes()
    raise MrunnerError(f"requirements_file {name} not found in the project {sweep.project_dir}: fix the context key")


def requirements_in_code(sweep: Sweep, snapshot: Snapshot) -> str | None:
    """The requirements file's path in the snapshot (its workdir, then its root), None when it is not there."""
    name = sweep.context.get("requirements_file")
    if not name or Path(name).expanduser().is_absolute():
        return None
    for relative in (os.path.normpath(os.path.join(sweep.workdir, name)), os.path.normpath(name)):
        if relative in snapshot.files:
            return relative
    return None


def recipe(sweep: Sweep, snapshot: Snapshot) -> Recipe:
    requirements = requirements_of(sweep, snapshot)
    # A user who installs mrunner itself in the image imports the whole package instead of the client alone
    # (the client stays in the image for the start wrapper, which runs from its folder).
    with_client = not any(line.strip().lower().startswith(b"mrunner") for line in requirements.splitlines())
    return Recipe(
        base_image=sweep.context["base_image"],
        python=sweep.context["python"],
        requirements=requirements,
        snapshot_digest=sweep.snapshot_digest,
        workdir=sweep.workdir,
        with_client=with_client,
        requirements_in_code=requirements_in_code(sweep, snapshot),
    )


def build_context(recipe: Recipe, snapshot: Snapshot, requirements_image: str = REQUIREMENTS_IMAGE) -> IO[bytes]:
    """The build context as a tar (a temporary file, never named on disk) of the snapshot's files, read
    straight from the snapshot (checked against their hashes), with fixed owners and times so docker's layer
    cache depends on content alone. The requirements as written are not in it (they reach only the
    requirements build: ``requirements_context``); the image gets them, and the code's copy of them, with URL
    credentials masked."""
    stream = tempfile.TemporaryFile()
    with tarfile.open(fileobj=stream, mode="w") as tar:
        _add_bytes(tar, "Dockerfile", recipe.dockerfile(requirements_image).encode())
        _add_bytes(tar, "requirements-masked.txt", masked(recipe.requirements))
        for name, data in experiment_side_files().items():  # the start wrapper, get_configuration(), tracking
            _add_bytes(tar, f"mrunner-client/{name}", data)
        for relative, (_, mode) in sorted(snapshot.files.items()):
            data = snapshot.read(relative)
            _add_bytes(tar, f"code/{relative}", masked(data) if relative == recipe.requirements_in_code else data, mode)
    stream.seek(0)
    return stream


def requirements_context(recipe: Recipe, build: str) -> IO[bytes]:
    """The requirements build's context: its Dockerfile and the requirements as pip reads them."""
    stream = tempfile.TemporaryFile()
    with tarfile.open(fileobj=stream, mode="w") as tar:
        _add_bytes(tar, "Dockerfile", recipe.requirements_dockerfile(build).encode())
        _add_bytes(tar, "requirements.txt", for_pip(recipe.requirements))
    stream.seek(0)
    return stream


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes, mode: int = 0o644) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime, info.uid, info.gid = len(data), mode, 0, 0, 0
    tar.addfile(info, io.BytesIO(data))


# -- docker --------------------------------------------------------------------------------------------------


def docker_client(context: Mapping[str, Any]) -> Any:
    import docker

    where = context.get("docker_host") or os.environ.get("DOCKER_HOST") or "the local docker socket"
    try:
        client = (
            docker.DockerClient(base_url=context["docker_host"]) if context.get("docker_host") else docker.from_env()
        )
        client.ping()
    except docker.errors.DockerException as error:
        raise MrunnerError(f"cannot reach docker at {where} to build the image: {_first_line(error)}") from None
    return client


def auth_config(context: Mapping[str, Any]) -> dict[str, str] | None:
    """Credentials for the push: ``registry_username`` and the password from ``registry_password_env``;
    None lets docker use the user's stored credentials (``docker login``)."""
    variable = context.get("registry_password_env")
    if not variable:
        return None
    password = os.environ.get(variable)
    if password is None:
        raise MrunnerError(f"registry_password_env names {variable} but it is not set: export {variable}=...")
    if not context.get("registry_username"):
        raise MrunnerError("registry_password_env is set but registry_username is not: add it to the context")
    return {"username": context["registry_username"], "password": password}


def identity(sweep: Sweep, snapshot: Snapshot) -> dict[str, Any]:
    """What names the sweep's image before it is built: its reference (the tag is the recipe's content) and,
    with a ``requirements_file``, the requirements' content, recorded before anything is pushed so that a
    resume after any stop and any edit runs, or builds, this image and no other."""
    plan = recipe(sweep, snapshot)
    facts: dict[str, Any] = {"image": reference(sweep, plan)}
    if sweep.context.get("requirements_file"):
        facts["requirements"] = plan.requirements.decode("utf-8", "surrogateescape")
    return facts


def identified_requirements(sweep: Sweep, snapshot: Snapshot) -> bool:
    """Whether the snapshot can be read whole again with the requirements ``identity`` recorded: they are the
    requirements file's snapshotted content, and no other file changed since (``Snapshot.restore``). Then
    the image the submission named can still be built from exactly the submitted content."""
    name = sweep.context.get("requirements_file")
    text = sweep.detail.get("identified", {}).get("requirements")
    if not name or not isinstance(text, str):
        return False
    for relative in (os.path.normpath(os.path.join(sweep.workdir, name)), os.path.normpath(name)):
        if relative in snapshot.files:
            return snapshot.restore(relative, text.encode("utf-8", "surrogateescape"))
    return False


def reference(sweep: Sweep, plan: Recipe) -> str:
    """The image a sweep's Jobs run: the project's repository, tagged by the recipe's content, so it is
    known before anything is built (a dry run shows it)."""
    return f"{names.image_repository(sweep.context['registry_url'], sweep.project)}:{plan.tag}"


def ensure(sweep: Sweep, snapshot: Snapshot, reporter: Reporter) -> dict[str, Any]:
    """Build and push the sweep's image unless the registry already has it (then no file of the snapshot
    is read). Returns the facts to record."""
    context = sweep.context
    plan = recipe(sweep, snapshot)
    repository = names.image_repository(context["registry_url"], sweep.project)
    image = reference(sweep, plan)
    auth = auth_config(context)
    client = docker_client(context)
    with _engine(f"building or pushing {image}"):
        return _build_and_push(client, plan, snapshot, sweep, repository, image, auth, reporter)


@contextlib.contextmanager
def _engine(what: str) -> Iterator[None]:
    """An engine that goes away between two requests (after the ping, before a push) named as docker's."""
    import docker
    import requests
    import urllib3

    try:
        yield
    except docker.errors.APIError:
        raise
    except (
        requests.exceptions.RequestException,
        urllib3.exceptions.HTTPError,
        docker.errors.DockerException,
        ConnectionError,
    ) as error:
        raise BackendError(f"the connection to docker was lost while {what}: {_first_line(error)}") from None


def _build_and_push(
    client: Any,
    plan: Recipe,
    snapshot: Snapshot,
    sweep: Sweep,
    repository: str,
    image: str,
    auth: dict[str, str] | None,
    reporter: Reporter,
) -> dict[str, Any]:
    facts: dict[str, Any] = {"image": image, "built": False, "pushed_bytes": 0}
    found = _in_registry(client, image, auth)
    if found:
        reporter.step(f"image {image} is already in the registry: nothing to build or push")
        return {**facts, "image_digest": found}
    if not _local(client, image):
        started = time.monotonic()
        facts.update(_build(client, plan, snapshot, image, sweep, reporter))
        facts.update(built=True, build_seconds=round(time.monotonic() - started, 2))
        # Readable, and still unique when two images are built within the same second.
        stamp = f"{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}-{plan.tag[:8]}"
        client.api.tag(image, repository, stamp)
        facts["timestamp_tag"] = f"{repository}:{stamp}"
    pushed, layers, digest = _push(client, repository, plan.tag, auth, reporter)
    if digest:  # what `resume` finds in the registry to run the submitted code once this machine lost it
        facts["image_digest"] = digest
    message = f"pushed {image} ({layers} new layer{'s' * (layers != 1)}, {pushed / 1e6:.1f} MB)"
    if facts.get("timestamp_tag"):
        pushed += _push(client, repository, facts["timestamp_tag"].rsplit(":", 1)[1], auth, reporter)[0]
        message += f", also tagged {facts['timestamp_tag'].rsplit(':', 1)[1]}"
    reporter.step(message)
    facts["pushed_bytes"] = pushed
    return facts


def in_registry(sweep: Sweep, image: str) -> str | None:
    """The digest of ``image`` (its manifest's) in the sweep's registry, or None when the registry says it
    does not hold it: `resume` runs the submitted code from it only while it is there. A registry that
    cannot be asked (unreachable, credentials refused) is said as such, not taken for an image gone."""
    import docker

    context = sweep.context
    client = docker_client(context)
    with _engine(f"looking for {image} in the registry"):
        try:
            return str(client.images.get_registry_data(image, auth_config=auth_config(context)).id)
        except docker.errors.NotFound:
            return None
        except docker.errors.APIError as error:
            raise BackendError(
                f"cannot ask the registry whether it still holds {image}, the code as submitted: {_first_line(error)}"
            ) from None


def _in_registry(client: Any, image: str, auth: dict[str, str] | None) -> str | None:
    """The image's digest in the registry, None when it is not there."""
    import docker

    try:
        return str(client.images.get_registry_data(image, auth_config=auth).id)
    except docker.errors.NotFound:
        return None
    except docker.errors.APIError as error:  # unauthorised, unknown manifest, unreachable: the push tells
        if error.status_code in (401, 403, 404, 500):
            return None
        raise BackendError(f"registry check of {image} failed: {_first_line(error)}") from None


def _local(client: Any, image: str) -> bool:
    import docker

    try:
        client.images.get(image)
        return True
    except docker.errors.ImageNotFound:
        return False


def _build(
    client: Any, plan: Recipe, snapshot: Snapshot, image: str, sweep: Sweep, reporter: Reporter
) -> dict[str, Any]:
    """Build the image (pip's build first when this engine has no result of it); returns facts to record."""
    network = sweep.context.get("build_network")
    facts: dict[str, Any] = {}
    requirements_image = REQUIREMENTS_IMAGE
    if has_requirements(plan.requirements):
        base_id = _image_id(client, plan.base_image)
        requirements_image = plan.requirements_image(base_id) if base_id else ""
        if not requirements_image or _image_id(client, requirements_image) is None:
            requirements_image = _build_requirements(client, plan, network, reporter, sweep.context.get("docker_host"))
        facts["requirements_image"] = requirements_image  # this engine's cache of pip's work, never pushed
    reporter.step(f"building image {image} from {plan.base_image}")
    labels = {"mrunner.snapshot": plan.snapshot_digest, "mrunner.project": sweep.project}
    with build_context(plan, snapshot, requirements_image) as archive:  # nothing in it needs a network
        _run_build(client, archive, image, network or "none", labels, reporter)
    return facts


def _image_id(client: Any, name: str) -> str | None:
    import docker

    try:
        return str(client.images.get(name).id)
    except docker.errors.ImageNotFound:
        return None


def _build_requirements(
    client: Any, plan: Recipe, network: str | None, reporter: Reporter, engine: str | None = None
) -> str:
    """pip's build on ``engine`` (the context's ``docker_host``, which ``client`` reaches); returns its image's
    name (``Recipe.requirements_image`` of the base it was built on, which it may have pulled). The layers
    that held the requirements file (the token) are removed as it ends, whether it succeeded, failed or was
    interrupted; those of this machine's earlier builds that were killed outright (SIGKILL: nothing of theirs
    ran to remove them) go first. The build and its image are noted for `mrunner gc` before they exist."""
    local_images.remove_killed_builds(client, engine)
    build = local_images.build_id()
    building = f"{local_images.BUILD_PREFIX}{build}"
    local_images.note(engine, "build", build)
    reporter.step(f"installing the requirements on {plan.base_image}")
    try:
        with requirements_context(plan, build) as archive:
            _run_build(client, archive, building, network, {}, reporter)
        base_id = _image_id(client, plan.base_image)
        name = plan.requirements_image(base_id or plan.base_image)
        repository, tag = name.rsplit(":", 1)
        local_images.note(engine, "image", name)
        client.api.tag(building, repository, tag)
        return name
    finally:
        local_images.remove_build(client, build, building)  # the result's build name alone: it keeps ``name``


def _run_build(
    client: Any, archive: IO[bytes], tag: str, network: str | None, labels: dict[str, str], reporter: Reporter
) -> None:
    tail: list[str] = []
    start = functools.partial(
        client.api.build,
        fileobj=archive,
        custom_context=True,
        tag=tag,
        rm=True,
        forcerm=True,
        pull=False,
        decode=True,
        network_mode=network,
        labels=labels,
    )
    for event in _events(start, f"building {tag}"):
        text = event.get("stream", "")
        if text.startswith("Step "):
            reporter.step(f"  {text.strip()}")
        tail = (tail + text.splitlines())[-20:]
        if "error" in event:
            detail = cut_output("\n".join(tail))  # pip's colours and pages of progress: its last words
            raise BackendError(f"docker build of {tag} failed: {cut_output(event['error'], 1)} ({detail})")


def _push(
    client: Any, repository: str, tag: str, auth: dict[str, str] | None, reporter: Reporter
) -> tuple[int, int, str | None]:
    """Push one tag; returns the bytes uploaded (layers the registry already had cost nothing), the
    number of layers uploaded and the digest the registry gave the image's manifest."""
    sent: dict[str, int] = {}
    pushed: set[str] = set()
    digest: str | None = None
    with reporter.progress(100, f"pushing {repository}:{tag}") as progress:
        start = functools.partial(client.api.push, repository, tag=tag, stream=True, decode=True, auth_config=auth)
        for event in _events(start, f"pushing {repository}:{tag}"):
            if "error" in event:
                raise BackendError(f"push of {repository}:{tag} failed: {event['error'].strip()}")
            layer, status = event.get("id"), event.get("status", "")
            detail = event.get("progressDetail") or {}
            if layer and status == "Pushing" and detail.get("total"):
                sent[layer] = max(sent.get(layer, 0), int(detail.get("current") or 0))
                progress.update(min(99, int(100 * detail["current"] / detail["total"])), f"pushing layer {layer}")
            elif layer and status == "Pushed":
                pushed.add(layer)
            digest = (event.get("aux") or {}).get("Digest") or digest
        progress.update(100)
    return sum(size for layer, size in sent.items() if layer in pushed), len(pushed), digest


def _events(start: Callable[[], Iterator[dict[str, Any]]], what: str) -> Iterator[dict[str, Any]]:
    """The events of a build or push that ``start`` begins: an engine gone before the first event (the
    request itself refused) or while it streams is named as docker's, not as the backend's connection."""
    import docker
    import requests
    import urllib3

    try:
        yield from start()
    except docker.errors.APIError as error:
        raise BackendError(f"{what} failed: {_first_line(error)}") from None
    # a dockerd that dies while it streams breaks the response in urllib3, below requests' own errors
    except (
        requests.exceptions.RequestException,
        urllib3.exceptions.HTTPError,
        docker.errors.DockerException,
        OSError,
    ) as error:
        raise BackendError(f"the connection to docker was lost while {what}: {_first_line(error)}") from None


def _first_line(error: BaseException) -> str:
    text = str(getattr(error, "explanation", None) or error).strip()
    return text.splitlines()[0] if text else type(error).__name__
