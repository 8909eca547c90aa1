"""The original mrunner's spec helper: ``from mrunner.helpers.specification_helper import create_experiments_helper``.

Old spec files run unchanged: every parameter of the original's ``create_experiments_helper`` is accepted
and means what it meant there, and ``get_combinations`` expands grids in the original's order (keys ending
in ``___`` varied together, outermost). Three things are decided elsewhere now: Neptune is switched on by
the context's ``neptune`` key (``with_neptune`` only names the project, and the link is printed after
submission), the snapshot always leaves out ``.git`` and follows ``.gitignore``, and an experiment's
parameters must be plain data (numbers, strings, lists, mappings; NumPy values are converted), because
they travel as JSON, never as pickles.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from mrunner import grid
from mrunner.errors import MrunnerError
from mrunner.experiment import Experiment, tag_list
from mrunner.naming import experiment_name as readable_name
from mrunner.naming import random_name as new_random_name

GIT_FILES = [".git", ".gitignore", ".gitmodules"]  # what exclude_git_files added to `exclude`
ZIPPED = "___"


def create_experiments_helper(
    experiment_name: str,
    base_config: Mapping[str, Any],
    params_grid: Mapping[str, Any] | Sequence[Mapping[str, Any]],
    script: str,
    python_path: str = "",
    tags: Sequence[str] | None = None,
    add_random_tag: bool = True,
    env: Mapping[str, str] | None = None,
    project_name: str | None = None,
    exclude_git_files: bool = True,
    exclude: Sequence[str] | None = None,
    with_neptune: bool = True,
    display_neptune_link: bool = True,
    copy_neptune_link: bool = True,
    paths_to_dump: str | None = None,
    paths_to_copy: Sequence[str] | None = None,
    with_mpi: bool = False,
    callbacks: Sequence[Callable[..., Any]] | None = None,
    update_lambda: Callable[[dict[str, Any], dict[str, Any]], Any] | None = None,
    _script_name: str | None = None,
    mrunner_ignore: str | None = None,
) -> list[Experiment]:
    """One experiment per point of ``params_grid`` (see ``get_combinations``) over a copy of ``base_config``.

    - ``script``: a ``.py`` file or a command (``python3 -m pkg.run --flag``; a leading ``python`` or
      ``python3`` is the context's ``python``), run from the code snapshot.
    - ``python_path``: ``:``-separated folders (relative to where the experiment starts) added to
      ``PYTHONPATH`` after the ``PYTHONPATH`` in ``env``.
    - ``tags``, plus ``_script_name``'s stem and, with ``add_random_tag``, one random name for the whole grid.
    - ``project_name``: the project (its last ``/`` part names folders and the Kubernetes namespace); with
      ``with_neptune``, a ``WORKSPACE/NAME`` is also the experiments' ``NEPTUNE_PROJECT`` (default
      ``$NEPTUNE_PROJECT_NAME``, as in the original).
    - ``exclude`` (gitignore patterns; ``exclude_git_files`` adds ``.git``, ``.gitignore``, ``.gitmodules``),
      ``mrunner_ignore`` (a file of such patterns), ``paths_to_copy`` (``paths_to_dump``: the same as one
      space-separated string) shape the code snapshot.
    - ``callbacks``: each is called as the original called it, ``callback(**names)`` with the helper's
      variables (``base_config``, ``params_configurations``, ``tags``, ``env``, ``exclude``,
      ``random_name``, ...), and may change them in place before the experiments are built.
    - ``update_lambda(config, point)`` merges a grid point into the copy of ``base_config`` (default
      ``config.update(point)``).
    - ``display_neptune_link`` and ``copy_neptune_link`` are accepted and have no effect: the Neptune link of
      the sweep is printed after submission. ``with_mpi=True`` is refused: start MPI in ``script`` itself.
    """
    if with_mpi:
        raise MrunnerError(
            "create_experiments_helper(with_mpi=True) is not supported: start MPI in the script itself, "
            "e.g. script='mpirun python3 train.py' (or srun on Slurm)"
        )
    tags = tag_list(tags or [])
    if _script_name:
        tags.append(Path(_script_name).stem)
    random_name = new_random_name()
    if add_random_tag:
        tags.append(random_name)
    if paths_to_dump:
        paths_to_copy = paths_to_dump.split()
    environment = dict(env or {})
    folders = [folder for folder in python_path.split(":") if folder]
    if folders:
        environment["PYTHONPATH"] = os.pathsep.join([*filter(None, [environment.get("PYTHONPATH")]), *folders])
    if with_neptune and project_name is None:
        project_name = os.environ.get("NEPTUNE_PROJECT_NAME") or None
    if with_neptune and project_name and "/" in project_name:
        environment.setdefault("NEPTUNE_PROJECT", project_name)
    exclude = list(exclude or []) + (GIT_FILES if exclude_git_files else []) + _patterns(mrunner_ignore)
    params_configurations = get_combinations(params_grid)
    experiments: list[Experiment] = []
    git_info = None  # the original's; the sweep records the git commit itself
    names = dict(
        experiment_name=experiment_name,
        base_config=base_config,
        params_grid=params_grid,
        script=script,
        python_path=python_path,
        tags=tags,
        add_random_tag=add_random_tag,
        env=environment,
        project_name=project_name,
        exclude_git_files=exclude_git_files,
        exclude=exclude,
        with_neptune=with_neptune,
        display_neptune_link=display_neptune_link,
        copy_neptune_link=copy_neptune_link,
        paths_to_dump=paths_to_dump,
        paths_to_copy=paths_to_copy,
        with_mpi=with_mpi,
        callbacks=callbacks,
        update_lambda=update_lambda,
        random_name=random_name,
        params_configurations=params_configurations,
        experiments=experiments,
        git_info=git_info,
    )
    for callback in callbacks or []:  # "last chance to change something", as the original called them
        callback(**names)
    update = update_lambda or (lambda config, point: config.update(point))
    name = readable_name(experiment_name)
    project = project_name.rstrip("/").rsplit("/", 1)[-1] if project_name else None
    for point in params_configurations:
        config = copy.deepcopy(dict(base_config))
        update(config, point)
        experiments.append(
            Experiment(
                script=script,
                parameters=_plain(config),
                name=name,
                project=project,
                tags=list(tags),
                env=dict(environment),
                exclude=list(exclude),
                paths_to_copy=list(paths_to_copy or []),
            )
        )
    return experiments


def get_combinations(param_grids: Mapping[str, Any] | Sequence[Mapping[str, Any]], limit: int | None = None):
    """Every combination of a grid (a mapping of key -> list of values) or of a list of grids (their union),
    in the original's order: keys with ``___`` (which is cut off) are zipped together and vary slowest, the
    other keys form a product in their order. ``limit`` keeps the first ``limit`` combinations."""
    combinations = [grid.parameters(point) for point in grid.python_grid(param_grids, _dimensions)]
    return combinations[:limit] if limit else combinations


def _dimensions(param_grid: Mapping[Any, Any]) -> list[grid.Axis | tuple[grid.Axis, ...]]:
    """The original's reading of a grid: every key with ``___`` in it (its last three characters cut off)
    in one dimension first, zipped as ``zip`` does (to the shortest list), then each other key."""
    zipped, axes = [], []
    for key, options in param_grid.items():
        if isinstance(key, str) and ZIPPED in key:
            zipped.append(grid.parameter_axis(key[: -len(ZIPPED)], _options(key, options)))
        else:
            axes.append(grid.parameter_axis(key, _options(key, options)))
    return [tuple(zipped), *axes] if zipped else list(axes)


def _options(key: Any, options: Any) -> list[Any]:
    return [_plain(option) for option in grid.listed(key, options)]


def _plain(value: Any) -> Any:
    """NumPy scalars and arrays as Python numbers and lists, so parameters travel as JSON."""
    if isinstance(value, Mapping):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    if hasattr(value, "tolist") and hasattr(value, "dtype"):
        return value.tolist()
    return value


def _patterns(ignore_file: str | None) -> list[str]:
    if not ignore_file:
        return []
    try:
        text = Path(ignore_file).read_text(errors="replace")
    except OSError as error:
        raise MrunnerError(f"mrunner_ignore={ignore_file!r}: cannot read it ({error.strerror})") from None
    return [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]
