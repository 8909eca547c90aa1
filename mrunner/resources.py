"""Per-point resources: context keys a grid point asks for differently from its sweep's context.

A swept context override on the command line (``context.mem=8G,32G``) is a dimension of the grid whose values
go to the experiments' resources instead of their parameters; a spec's experiment carries its own
(``create_experiments(..., resources={"mem": "32G"})``). Only keys a backend declares ``per_point`` (its
resources: ``schema.key(per_point=True)``) may vary so, because the backend submits each distinct set of
them as its own class (a Slurm job array each, a pod's own requests on Kubernetes); a key that says where
the sweep lives (``slurm_url``, ``storage_dir``, ``backend``) cannot.

The resources' dimension varies slowest: every class is one run of consecutive indices of each experiment,
so a class's job array has a compact index range.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from mrunner import grid
from mrunner.errors import MrunnerError
from mrunner.schema import ContextKey

PREFIX = "context."


def split(overrides: Sequence[str]) -> tuple[list[str], list[str]]:
    """``context.*`` overrides as the ones composed into the context, and the swept ones (per point)."""
    plain: list[str] = []
    swept: list[str] = []
    for text in overrides:
        known = grid.plain_axis(text)
        sweep = known[1] if known is not None else grid.parse(text).is_sweep_override()
        (swept if sweep else plain).append(text)
    return plain, swept


def axes(
    swept: Sequence[str],
    plain: Sequence[str],
    keys: Mapping[str, ContextKey],
    backend: str,
    context_name: str,
    multirun: bool,
) -> list[grid.Axis]:
    """The grid's resource axes, one per swept ``context.KEY=A,B`` (keyed by KEY, values checked as the
    context's are), refusing a key that may not vary per point and a key also set once."""
    found: list[grid.Axis] = []
    set_once = {_key(text) for text in plain}
    for text in swept:
        known = grid.plain_axis(text)
        axis = known[0] if known is not None else grid.axis(grid.parse(text))
        if not multirun:
            raise MrunnerError(f"override {text!r} is a sweep of {len(axis.values)} values: add -m to run every point")
        if axis.how == grid.DELETE or axis.key in set_once or any(a.text == text for a in found):
            raise MrunnerError(f"override {text!r}: {axis.key} is set more than once; keep one")
        name = axis.key.removeprefix(PREFIX)
        declared = _per_point(name, keys, backend, repr(text))
        values = [declared.check(value, context_name) for value in axis.values]
        found.append(grid.Axis(name, grid.SET, values, text, name))
    names = [axis.key for axis in found]
    if len(set(names)) < len(names):
        raise MrunnerError(f"context key {next(n for n in names if names.count(n) > 1)!r} is swept twice; keep one")
    return found


def _key(text: str) -> str:
    known = grid.plain_axis(text)
    return known[0].key if known is not None else grid.parse(text).key_or_group


def checked(
    resources: Mapping[str, Any], keys: Mapping[str, ContextKey], backend: str, context_name: str, who: str
) -> dict[str, Any]:
    """An experiment's own ``resources``, each key one that may vary per point and its value as the context
    would hold it."""
    return {name: _per_point(name, keys, backend, who).check(value, context_name) for name, value in resources.items()}


def _per_point(name: str, keys: Mapping[str, ContextKey], backend: str, who: str) -> ContextKey:
    declared = keys.get(name)
    if declared is not None and declared.per_point:
        return declared
    allowed = sorted(key for key, each in keys.items() if each.per_point)
    if not allowed:
        raise MrunnerError(
            f"{who}: the {backend} backend takes no per-point resources, so context key {name!r} must be one value "
            f"for the whole sweep"
        )
    what = (
        f"the {backend} backend has no context key {name!r}" if declared is None else f"{name!r} cannot vary per point"
    )
    raise MrunnerError(f"{who}: {what}; keys of the {backend} backend that may: {', '.join(allowed)}")


def point(resource_grid: grid.Grid, index: int) -> dict[str, Any]:
    """The resources of point ``index`` of the resources' grid (key -> value)."""
    return {axis.key: value for axis, value in resource_grid[index]}
