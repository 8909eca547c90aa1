"""Experiments in code: ``create_experiments`` and spec files that assign ``experiments_list``.

A spec file is recognised by reading it, never by running it: it assigns the variable at top level.
A plain experiment script is never executed by mrunner itself.
"""

from __future__ import annotations

import ast
import os
import re
import runpy
import sys
import traceback
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, NoReturn

from mrunner import grid
from mrunner.errors import MrunnerError
from mrunner.experiment import Experiment, tag_list
from mrunner.naming import experiment_name, random_name

DEFAULT_VARIABLE = "experiments_list"
ZIP_SUFFIX = "___"


def is_spec_file(path: Path, variable: str = DEFAULT_VARIABLE) -> bool:
    """Whether ``path`` is Python that assigns ``variable`` at top level (read, not run)."""
    try:
        tree = ast.parse(path.read_bytes(), filename=str(path))
    except (SyntaxError, ValueError, OSError):
        return False
    for node in tree.body:
        targets: list[ast.expr] = []
        if isinstance(node, ast.Assign):
            targets = node.targets
        elif isinstance(node, (ast.AnnAssign, ast.AugAssign)):
            targets = [node.target]
        for target in targets:
            names = target.elts if isinstance(target, (ast.Tuple, ast.List)) else [target]
            if any(isinstance(name, ast.Name) and name.id == variable for name in names):
                return True
    return False


#: the names a spec file builds its experiments with (``create_experiments_helper``: the original tool's)
BUILDERS = frozenset({"Experiment", "create_experiments", "create_experiments_helper"})


def builds_experiments(path: Path) -> bool:
    """Whether ``path`` builds experiments with mrunner's builders (``from mrunner... import Experiment``, or
    ``import mrunner.experiment as me`` and ``me.Experiment(...)``), as a spec file does: a spec that assigns its
    list to another name would otherwise run as an experiment script, doing nothing."""
    try:
        tree = ast.parse(path.read_bytes(), filename=str(path))
    except (SyntaxError, ValueError, OSError):
        return False
    aliases: set[str] = set()  # the names mrunner's modules are bound to, for ``me.Experiment``
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "mrunner":
            if any(alias.name in BUILDERS for alias in node.names):
                return True
            aliases.update(alias.asname or alias.name for alias in node.names)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "mrunner":
                    aliases.add(alias.asname or alias.name.split(".")[0])
    return any(
        isinstance(node, ast.Attribute) and node.attr in BUILDERS and _root(node.value) in aliases
        for node in ast.walk(tree)
    )


def _root(node: ast.expr) -> str | None:
    """The name an attribute chain starts from (``mrunner`` of ``mrunner.experiment.Experiment``)."""
    while isinstance(node, ast.Attribute):
        node = node.value
    return node.id if isinstance(node, ast.Name) else None


#: words only a spec file has: it then is one even when it does not parse (``create_experiments_helper`` too)
SPEC_WORDS = re.compile(r"\b(?:experiments_list|create_experiments\w*)\b")


def syntax_error(path: Path, forced: bool = False) -> str | None:
    """The line naming the syntax error of a spec file (``forced``: named by ``--spec``, else one that speaks of
    ``experiments_list`` or ``create_experiments``), which mrunner runs itself; None when it parses, or is a plain
    script, whose interpreter (the context's python, maybe newer than mrunner's) judges it."""
    try:
        source = path.read_bytes()
        ast.parse(source, filename=str(path))
    except SyntaxError as error:
        if forced or SPEC_WORDS.search(source.decode(errors="replace")):
            where = f" line {error.lineno}" if error.lineno else ""
            return f"spec {path}{where}: SyntaxError: {error.msg}: fix it (mrunner runs a spec file to find its experiments)"
    except (OSError, ValueError):
        pass  # unreadable, or null bytes: the plan says what is wrong with the target
    return None


class _SpecExit(BaseException):
    """A spec file's ``os._exit(code)``, raised instead while mrunner runs the spec in its own process."""

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


def _refused_exit(code: int) -> NoReturn:
    raise _SpecExit(code)


def load_spec(path: Path, variable: str = DEFAULT_VARIABLE) -> list[Experiment]:
    """Run the spec file and return its experiments; any failure is one line naming the file and line."""
    sys.path.insert(0, str(path.parent.resolve()))
    real_exit = os._exit
    os._exit = _refused_exit  # type: ignore[assignment]  # it would end mrunner at once, with no word said
    try:
        # `script`: the spec file's name, which the original mrunner gave spec files (`globals()["script"]`)
        namespace = runpy.run_path(str(path), init_globals={"script": path.name}, run_name="__mrunner_spec__")
    except _SpecExit as error:
        raise MrunnerError(f"spec {path} called os._exit({error.code}) instead of assigning {variable}") from None
    except SystemExit as error:
        raise MrunnerError(f"spec {path} called exit({error.code}) instead of assigning {variable}") from None
    except BaseException as error:
        if isinstance(error, KeyboardInterrupt):
            raise
        if isinstance(error, MrunnerError):
            raise MrunnerError(f"spec {path}: {error}") from None
        raise MrunnerError(f"spec {path} raised {type(error).__name__}{_where(error, path)}: {error}") from None
    finally:
        os._exit = real_exit
        sys.path.pop(0)
    if variable not in namespace:
        raise MrunnerError(f"spec {path} does not define {variable}; assign the list of experiments to it")
    experiments = namespace[variable]
    if isinstance(experiments, Experiment):
        experiments = [experiments]
    if not isinstance(experiments, Iterable) or isinstance(experiments, (str, bytes, Mapping)):
        raise MrunnerError(f"spec {path}: {variable} must be a list of experiments, got {type(experiments).__name__}")
    experiments = list(experiments)
    for position, experiment in enumerate(experiments):
        if not isinstance(experiment, Experiment):
            raise MrunnerError(
                f"spec {path}: {variable}[{position}] is a {type(experiment).__name__}; "
                f"build experiments with mrunner.create_experiments(...)"
            )
    if not experiments:
        raise MrunnerError(f"spec {path}: {variable} is empty; the grid has no points")
    return experiments


def _where(error: BaseException, path: Path) -> str:
    resolved = path.resolve()
    frames = traceback.extract_tb(error.__traceback__)
    lines = [frame.lineno for frame in frames if Path(frame.filename).resolve() == resolved]
    return f" at line {lines[-1]}" if lines else ""


def expand_grid(params_grid: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None) -> list[dict[str, Any]]:
    """The points of a grid: a mapping of key -> list of values (cartesian product), or a list of such
    mappings (the union of their grids). Keys varied together instead of multiplied: a tuple key with a list
    of tuples, ``{("lr", "batch"): [(0.1, 32), (0.01, 64)]}``, or keys ending in ``___`` (the original's way),
    whose lists are zipped with each other (and vary fastest).
    """
    if params_grid is None:
        return [{}]
    return [grid.parameters(point) for point in grid.python_grid(params_grid, _dimensions)]


def _dimensions(params_grid: Mapping[Any, Any]) -> list[grid.Axis | tuple[grid.Axis, ...]]:
    dimensions: list[grid.Axis | tuple[grid.Axis, ...]] = []
    zipped: list[grid.Axis] = []
    for key, values in params_grid.items():
        values = grid.listed(key, values)
        if isinstance(key, tuple):
            rows = [tuple(row) for row in values]
            if any(len(row) != len(key) for row in rows):
                raise MrunnerError(f"params_grid key {key}: every value must be a tuple of {len(key)} items")
            dimensions.append(tuple(grid.parameter_axis(k, [row[i] for row in rows]) for i, k in enumerate(key)))
        elif isinstance(key, str) and key.endswith(ZIP_SUFFIX):
            zipped.append(grid.parameter_axis(key[: -len(ZIP_SUFFIX)], values))
        else:
            dimensions.append(grid.parameter_axis(key, values))
    if zipped:
        lengths = {len(axis.values) for axis in zipped}
        if len(lengths) > 1:
            raise MrunnerError(
                f"params_grid keys {', '.join(axis.key + ZIP_SUFFIX for axis in zipped)} are varied together, "
                f"so their lists must have the same length (got {sorted(lengths)})"
            )
        dimensions.append(tuple(zipped))
    return dimensions


def create_experiments(
    script: str,
    *,
    name: str | None = None,
    base_config: Mapping[str, Any] | None = None,
    params_grid: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None,
    tags: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    project: str | None = None,
    exclude: Sequence[str] | None = None,
    paths_to_copy: Sequence[str] | None = None,
    script_args: Sequence[str] = (),
    add_random_tag: bool = False,
    resources: Mapping[str, Any] | None = None,
) -> list[Experiment]:
    """Experiments for every point of ``params_grid`` merged over a copy of ``base_config``.

    ``script`` is a ``.py`` file or a shell command (``python3 train.py --fast``); ``name`` defaults to the
    script's file name. With ``add_random_tag`` the grid gets a docker-style tag of its own, handy to find
    it later in a tracker. ``resources`` (context keys such as ``{"mem": "32G", "gpu": 2}``) are what these
    experiments ask for instead of the context's: a grid whose big points need more is two calls, added
    together, each with its own resources.
    """
    readable = experiment_name(name or Path(_first_py(script) or script.split()[0]).stem)
    all_tags = tag_list(tags) + ([random_name()] if add_random_tag else [])
    base = dict(base_config or {})
    return [
        Experiment(
            script=script,
            parameters={**base, **point},
            name=readable,
            project=project,
            tags=list(all_tags),
            env=dict(env or {}),
            script_args=list(script_args),
            exclude=list(exclude or []),
            paths_to_copy=list(paths_to_copy or []),
            resources=dict(resources or {}),
        )
        for point in expand_grid(params_grid)
    ]


def _first_py(script: str) -> str | None:
    return next((token for token in script.split()[:2] if token.endswith(".py")), None)
