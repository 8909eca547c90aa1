"""Parameter overrides in Hydra's grammar, and the grid they span, expanded lazily.

``lr=0.1,0.01 seed=range(5)`` is a grid of 10 points in the order Hydra's basic sweeper uses (the last
override varies fastest). A ``Grid`` is a sequence: its length is a product and point ``i`` is computed
from ``i`` by mixed-radix arithmetic, so a million-point grid is counted without building anything.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from hydra.core.override_parser.types import Override, OverrideType, ValueType
from hydra.errors import HydraException

from mrunner import hydra_internals
from mrunner.errors import MrunnerError

SET, ADD, FORCE, DELETE = "set", "add", "force", "delete"


@dataclass(frozen=True)
class Axis:
    """One override: a key, how it applies (set, ``+`` add, ``++`` force, ``~`` delete) and its values.

    ``texts`` are the override each value becomes for a Hydra app, as Hydra's basic sweeper writes it for
    each of its jobs (``+a=0``, ``db=mysql``); ``None`` for a lazy integer range, whose texts are computed.
    """

    key: str
    how: str
    values: Sequence[Any]
    text: str
    key_element: str = ""
    texts: Sequence[str] | None = None

    @property
    def is_sweep(self) -> bool:
        return len(self.values) != 1

    def override(self, position: int) -> str:
        """The override of the value at ``position``, in Hydra's grammar."""
        if self.texts is None:
            return f"{self.key_element}={self.values[position]}"
        return self.texts[position]


class Grid(Sequence[list[tuple[Axis, Any]]]):
    """The cartesian product of ``axes``; each point is a list of (axis, value)."""

    def __init__(self, axes: Sequence[Axis]) -> None:
        self.axes = list(axes)
        self._sizes = [len(axis.values) for axis in self.axes]
        self._count = math.prod(self._sizes)

    def __len__(self) -> int:
        return self._count

    def __getitem__(self, index: int) -> list[tuple[Axis, Any]]:  # type: ignore[override]
        if not -self._count <= index < self._count:
            raise IndexError(index)
        index %= self._count
        point = []
        for axis, size in zip(reversed(self.axes), reversed(self._sizes)):
            index, position = divmod(index, size)
            point.append((axis, axis.values[position]))
        point.reverse()
        return point

    def __iter__(self) -> Iterator[list[tuple[Axis, Any]]]:
        return (self[i] for i in range(self._count))

    def overrides(self, index: int) -> list[str]:
        """Point ``index`` as the overrides a Hydra app receives, in the order they were given."""
        index %= self._count
        texts = []
        for axis, size in zip(reversed(self.axes), reversed(self._sizes)):
            index, position = divmod(index, size)
            texts.append(axis.override(position))
        texts.reverse()
        return texts


# -- parsing -------------------------------------------------------------------------------------------------


def parse(text: str) -> Override:
    """Parse one override, or raise an error that shows where it went wrong."""
    try:
        return hydra_internals.parse_override(text)
    except hydra_internals.OverrideSyntaxError as error:
        column = min(error.column, len(text))
        raise MrunnerError(
            f"invalid override {text!r} at character {column + 1} "
            f"({text[:column]}\u2192{text[column:]}): {error}; see Hydra's override grammar"
        ) from None
    except HydraException as error:
        raise MrunnerError(f"invalid override {text!r}: {error}") from None


GlobOptions = Callable[[str], Sequence[str]]


def axis(override: Override, glob_options: GlobOptions | None = None) -> Axis:
    """The values an override spans: one for a plain override, several for a sweep."""
    text = override.input_line or override.key_or_group
    key = override.key_or_group
    if not key:
        raise MrunnerError(f"override {text!r} has no key: write KEY=VALUE")
    if override.package:
        key = f"{key}@{override.package}"
    how = {
        OverrideType.CHANGE: SET, OverrideType.ADD: ADD, OverrideType.FORCE_ADD: FORCE, OverrideType.DEL: DELETE
    }[override.type]  # fmt: skip
    element = override.get_key_element()
    if how == DELETE:
        if override.is_sweep_override():
            raise MrunnerError(f"override {text!r}: a deletion (~{key}) takes one value at most, not a sweep")
        return Axis(key, how, [None], text, element, [_single_text(override, element)])
    if override.value_type == ValueType.INTERVAL_SWEEP:
        raise MrunnerError(
            f"override {text!r}: interval() is for optimisers, which sample it; a grid needs a list, range() or choice()"
        )
    if override.value_type == ValueType.GLOB_CHOICE_SWEEP:
        options = glob_options(key) if glob_options else []
        values: Sequence[Any] = override.value().filter(options)  # type: ignore[union-attr]
        if not values:
            raise MrunnerError(f"override {text!r}: glob() matched nothing among {list(options) or 'no options'}")
        return Axis(key, how, list(values), text, element, [f"{element}={value}" for value in values])
    if override.value_type == ValueType.RANGE_SWEEP:
        values = _range_values(override)
        texts = None if isinstance(values, range) else [f"{element}={v}" for v in override.sweep_string_iterator()]
        return Axis(key, how, values, text, element, texts)
    if override.is_sweep_override():
        values = [hydra_internals.plain(v) for v in override.sweep_iterator()]
        return Axis(key, how, values, text, element, [f"{element}={v}" for v in override.sweep_string_iterator()])
    return Axis(key, how, [override.value()], text, element, [_single_text(override, element)])


def _single_text(override: Override, element: str) -> str:
    """``key=value`` as Hydra's basic sweeper writes a plain override (``~key`` keeps its optional value)."""
    if hydra_internals.deletes_whatever_value(override):
        return element
    return f"{element}={override.get_value_element_as_str()}"


def _range_values(override: Override) -> Sequence[Any]:
    sweep = override.value()
    start, stop, step = sweep.start, sweep.stop, sweep.step  # type: ignore[union-attr]
    if sweep.shuffle:  # type: ignore[union-attr]
        return [hydra_internals.plain(v) for v in override.sweep_iterator()]
    if all(isinstance(x, int) and not isinstance(x, bool) for x in (start, stop, step)):
        return range(int(start), int(stop), int(step))  # type: ignore[arg-type]  # lazy, indexable: a million points cost nothing
    return [hydra_internals.plain(v) for v in override.sweep_iterator()]


def grid(
    texts: Sequence[str], multirun: bool, glob_options: GlobOptions | None = None, hydra_app: bool = False
) -> Grid:
    """The grid the overrides span; without ``multirun`` a sweep is an error that says to add ``-m``.

    For a Hydra app a key inside another override's key is Hydra's to judge (``db=postgres db.timeout=3``
    chooses a group option and sets a key of it): its config check refuses what the app does not accept."""
    axes = [axis(parse(text), glob_options) for text in texts]
    sweeps = [a for a in axes if a.is_sweep]
    if sweeps and not multirun:
        raise MrunnerError(
            f"override {sweeps[0].text!r} is a sweep of {len(sweeps[0].values)} values: add -m to run every point"
        )
    seen: dict[str, str] = {}
    for a in axes:
        if a.key in seen:
            raise MrunnerError(f"overrides {seen[a.key]!r} and {a.text!r} set the same key {a.key!r}; keep one")
        seen[a.key] = a.text
    for key, text in seen.items() if not hydra_app else ():  # `model=3 model.depth=4`: one would undo the other
        parts = key.split(".")
        for depth in range(1, len(parts)):
            parent = ".".join(parts[:depth])
            if parent in seen:
                raise MrunnerError(
                    f"overrides {seen[parent]!r} and {text!r} conflict: {key!r} is inside {parent!r}, which the first "
                    f"replaces; keep one (or set {parent} as a whole)"
                )
    return Grid(axes)


# -- applying ------------------------------------------------------------------------------------------------


def apply(parameters: Mapping[str, Any], point: Sequence[tuple[Axis, Any]]) -> dict[str, Any]:
    """A copy of ``parameters`` with one grid point applied; dotted keys address nested mappings.

    ``key=v`` sets the key whether it exists or not (a plain script has no config to extend);
    ``+key=v`` adds and refuses an existing key; ``++key=v`` sets; ``~key`` deletes.
    """
    result = _copied(parameters)
    for ax, value in point:
        *parents, leaf = ax.key.split(".")
        node = result
        for part in parents:
            child = node.get(part)
            if not isinstance(child, dict):
                if ax.how == DELETE:
                    raise MrunnerError(f"override {ax.text!r}: there is no key {ax.key!r} to delete")
                child = node[part] = {}
            node = child
        if ax.how == DELETE:
            if leaf not in node:
                raise MrunnerError(f"override {ax.text!r}: there is no key {ax.key!r} to delete")
            del node[leaf]
        elif ax.how == ADD and leaf in node:
            raise MrunnerError(f"override {ax.text!r}: key {ax.key!r} exists already; use {ax.key}=... to change it")
        else:
            node[leaf] = _copied(value)
    return result


def _copied(value: Any) -> Any:
    """A deep copy of plain data (what parameters are): a tenth of the time ``copy.deepcopy`` takes."""
    if isinstance(value, Mapping):
        return {key: _copied(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_copied(item) for item in value]
    return value


# -- passing parameters to a Hydra app ---------------------------------------------------------------------------


def hydra_overrides(parameters: Mapping[str, Any]) -> list[str]:
    """``key=value`` for every leaf of ``parameters`` (a spec's), in Hydra's grammar, for a Hydra app.

    A key keeps a ``+`` or ``++`` it starts with, so a spec can add keys the app's config lacks.
    """
    return [f"{key}={format_value(value)}" for key, value in leaves(parameters)]


def hydra_point(parameters: Mapping[str, Any], grid: Grid, index: int) -> tuple[dict[str, Any], list[str]]:
    """A Hydra app's experiment at point ``index``: the parameters to record and the overrides it receives.

    The experiment's own parameters (a spec's) come first, except those the point sets again; then the
    point's overrides as Hydra's basic sweeper writes them for its jobs, so each keeps Hydra's meaning
    (``db=postgres`` chooses a config group option, ``lr=3`` must name an existing key). The record keeps
    dotted keys as given (``db``, ``db.user``): a group choice and its keys do not nest.
    """
    point = grid[index]
    chosen = {axis.key for axis, _ in point}
    recorded: dict[str, Any] = {}
    overrides: list[str] = []
    for key, value in leaves(parameters):
        plain = key.lstrip("+")
        if plain not in chosen:
            recorded[plain] = value
            overrides.append(f"{key}={format_value(value)}")
    for axis, value in point:
        if axis.how != DELETE and not axis.key.startswith(("hydra.", "hydra/")):
            recorded[axis.key] = _copied(value)
    return recorded, overrides + grid.overrides(index)


def leaves(mapping: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    """(dotted key, value) for every non-mapping value of a nested mapping."""
    for key, value in mapping.items():
        if isinstance(value, Mapping) and value:
            yield from leaves(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


def describe(parameters: Mapping[str, Any]) -> str:
    """``a=1 model.depth=3``: parameters on one line, for listings."""
    return " ".join(f"{key}={value}" for key, value in leaves(parameters))


def format_value(value: Any) -> str:
    """A value as Hydra's override grammar reads it back unchanged (strings always quoted)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        # Hydra reads a backslash literally unless it precedes a quote (or ends the string): only those
        # runs of backslashes are doubled, then the quotes are escaped.
        escaped = re.sub(r"(\\+)(?='|$)", lambda m: m.group(1) * 2, value).replace("'", "\\'")
        escaped = escaped.replace("${", "\\${")  # a literal, not an interpolation for the app's OmegaConf
        return f"'{escaped}'"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(format_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{" + ",".join(f"{k}:{format_value(v)}" for k, v in value.items()) + "}"
    raise MrunnerError(f"parameter value {value!r} of type {type(value).__name__} cannot be passed to a Hydra app")
