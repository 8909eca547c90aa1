"""What is checked before anything is recorded, by submissions and dry runs alike: that each experiment's
program is in the code snapshot, and runs as the user meant it to.

A failure found here costs one line and nothing else; found on a cluster, it costs a recorded, submitted
and failed sweep.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Collection, Sequence
from pathlib import Path

from mrunner.errors import MrunnerError
from mrunner.experiment import BARE_PYTHONS, Experiment


def target_script(target: Path, base_dir: Path) -> str:
    """The script string that runs the target file exactly: quoted (a path with spaces or shell characters
    stays one word), and a non-Python file as itself (``./run.sh``), which must then be executable."""
    relative = os.path.relpath(target.resolve(), base_dir)
    if target.suffix == ".py":
        return shlex.quote(relative)
    if not os.stat(target).st_mode & 0o111:
        raise MrunnerError(
            f"target {target} is not a Python file, so it runs as itself, but it is not executable: "
            f"`chmod +x {shlex.quote(str(target))}` (with a #! line), or name its interpreter in a spec "
            f"(script='bash {shlex.quote(relative)}')"
        )
    return shlex.quote(relative if os.sep in relative else f".{os.sep}{relative}")


def program(experiment: Experiment) -> tuple[str, bool] | None:
    """The file the experiment's script runs and whether it runs as itself (not through Python), or None
    when the script starts with a command found on PATH (``bash x.sh``: nothing to check)."""
    tokens = experiment.script_tokens
    if tokens[0].endswith(".py"):
        return tokens[0], False
    if tokens[0] in BARE_PYTHONS:
        return (tokens[1], False) if len(tokens) > 1 and tokens[1].endswith(".py") else None
    if os.sep in tokens[0]:
        return tokens[0], True
    return None


def in_the_snapshot(experiments: Sequence[Experiment], root: Path, base_dir: Path) -> None:
    """A spec's script named by an absolute path inside the project (``os.path.dirname(__file__)``, a common
    idiom) is rewritten relative to where mrunner runs, so it runs from the snapshot: as written it ran the
    project's file as it was when the experiment started. A Python file named by an absolute path outside the
    project is refused as ``../exp.py`` is: it would run live, from where it lies, not from any snapshot. An
    absolute path outside the project that runs as itself (``/opt/venv/bin/python``) is an installed program."""
    rewritten: dict[str, str] = {}
    for experiment in {e.script: e for e in experiments}.values():  # once per distinct script
        found = program(experiment)
        if found is None or not os.path.isabs(found[0]):
            continue
        real = Path(found[0]).resolve()
        if real != root and root not in real.parents:
            if not found[1]:
                raise outside(experiment, found[0], root)
            continue  # an installed program, outside the project
        tokens = experiment.script_tokens
        relative = os.path.relpath(real, base_dir)
        tokens[tokens.index(found[0])] = relative if not found[1] or os.sep in relative else f".{os.sep}{relative}"
        rewritten[experiment.script] = shlex.join(tokens)
    for experiment in experiments if rewritten else ():
        experiment.script = rewritten.get(experiment.script, experiment.script)


def check_programs(experiments: Sequence[Experiment], files: Collection[str], root: Path, workdir: str) -> None:
    """Every experiment's program is in the snapshot (``files``: its relative paths) and, when it runs as
    itself, executable."""
    for experiment in {e.script: e for e in experiments}.values():
        found = program(experiment)
        if found is None:
            continue
        path, as_itself = found
        if os.path.isabs(path):
            continue  # an installed program, outside the project
        relative = os.path.normpath(os.path.join(workdir, path)).replace(os.sep, "/")
        if relative == ".." or relative.startswith("../"):
            raise outside(experiment, path, root)
        if relative not in files:
            why = (
                "exists but is left out of the code snapshot (by .gitignore, .mrunnerignore or exclude): "
                "take it out of those patterns"
                if (root / relative).exists()
                else f"does not exist in the project {root}"
            )
            raise MrunnerError(f"experiment {experiment.name}: its script {path} ({relative}) {why}")
        if as_itself and not os.stat(root / relative).st_mode & 0o111:
            raise MrunnerError(
                f"experiment {experiment.name}: {path} runs as itself but is not executable: "
                f"`chmod +x {shlex.quote(str(root / relative))}`, or name its interpreter in the script"
            )


def outside(experiment: Experiment, path: str, root: Path) -> MrunnerError:
    """The one refusal of a script outside the project, however it is named (``../exp.py``, ``/tmp/exp.py``)."""
    return MrunnerError(
        f"experiment {experiment.name}: its script {path} lies outside the project {root}, whose folder is "
        f"what is snapshotted: move the script into the project"
    )
