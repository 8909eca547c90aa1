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


def requirements(sweep: Sweep) -> bytes:
    """The requirements file's content: from the sweep's code snapshot, else from the project folder."""
    name = sweep.context["requirements_file"]
    project = Path(sweep.project_dir)
    frozen = snapshot.load(sweep.snapshot_digest, root=project)
    for relative in (os.path.normpath(os.path.join(sweep.workdir, name)), name):
        if relative in frozen.files:
            return frozen.read(relative)
    candidates = [project / sweep.workdir / name, project / name, Path(os.path.expanduser(name))]
    for candidate in candidates:
        if candidate.is_file():
            return candidate.read_bytes()
    raise MrunnerError(
        f"requirements_file {name} not found in the project {project}: fix the context's requirements_file"
    )


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
