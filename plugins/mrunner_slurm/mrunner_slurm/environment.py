"""The experiments' Python environment on the cluster: a virtualenv built from ``requirements_file``
once per distinct content (``storage_dir/.mrunner/venvs/<sha256>``), then reused by every sweep."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from mrunner import snapshot
from mrunner.errors import MrunnerError
from mrunner.records import Sweep
from mrunner.reporter import Reporter
from mrunner_slurm import remote
from mrunner_slurm.transport import Connection


def identity(sweep: Sweep, frozen: snapshot.Snapshot) -> dict[str, str]:
    """The requirements' content, recorded when the sweep's code is first packaged, before it is uploaded:
    the virtualenv a resume builds or reuses is this one whatever the file became since."""
    if not sweep.context.get("requirements_file"):
        return {}
    return {"requirements": requirements(sweep, frozen).decode("utf-8", "surrogateescape")}


def requirements(sweep: Sweep, frozen: snapshot.Snapshot | None = None) -> bytes:
    """The requirements file's content: as recorded before the code was first uploaded (``identity``), or as
    uploaded with it (read back from the cluster by ``SlurmBackend.packaged``); else from the sweep's code
    snapshot (``frozen``, or the one recorded); else from the project folder."""
    name = sweep.context["requirements_file"]
    for recorded in (sweep.detail.get("identified", {}).get("requirements"), sweep.package.get("requirements")):
        if isinstance(recorded, str):
            return recorded.encode("utf-8", "surrogateescape")
    project = Path(sweep.project_dir)
    frozen = frozen or snapshot.load(sweep.snapshot_digest, root=project)
    relative = in_snapshot(sweep, frozen)
    if relative is not None:
        return frozen.read(relative)
    candidates = [project / sweep.workdir / name, project / name, Path(os.path.expanduser(name))]
    for candidate in candidates:
        if candidate.is_file():
            return candidate.read_bytes()
    raise MrunnerError(
        f"requirements_file {name} not found in the project {project}: fix the context's requirements_file"
    )


def in_snapshot(sweep: Sweep, frozen: snapshot.Snapshot) -> str | None:
    """The requirements file's path in the code snapshot (its workdir, then its root), None when it is not
    part of it."""
    name = sweep.context["requirements_file"]
    for relative in (os.path.normpath(os.path.join(sweep.workdir, name)), name):
        if relative in frozen.files:
            return relative
    return None


def identified_requirements(sweep: Sweep, frozen: snapshot.Snapshot) -> bool:
    """Whether the snapshot can be read whole again with the requirements ``identity`` recorded: they are the
    requirements file's snapshotted content, and no other file changed since (``Snapshot.restore``)."""
    text = sweep.detail.get("identified", {}).get("requirements")
    if not sweep.context.get("requirements_file") or not isinstance(text, str):
        return False
    relative = in_snapshot(sweep, frozen)
    return relative is not None and frozen.restore(relative, text.encode("utf-8", "surrogateescape"))


def ensure_venv(connection: Connection, sweep: Sweep, reporter: Reporter) -> str:
    content = requirements(sweep)
    python = sweep.context["python"]
    key = hashlib.sha256(python.encode() + b"\0" + content).hexdigest()[:24]
    path = f"{sweep.package['storage_dir']}/.mrunner/venvs/{key}"
    reporter.step(f"virtualenv for {sweep.context['requirements_file']}: {path}")
    answer = remote.call(connection, ["venv", path, python], content)
    if answer["built"]:
        reporter.step("virtualenv built on the cluster (later sweeps reuse it)")
    return answer["venv"]
