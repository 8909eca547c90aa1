"""The one grid engine: the command line's overrides (Hydra's grammar) and the grids written in Python
(``params_grid`` of ``create_experiments`` and of the original's ``create_experiments_helper``) span the
same lazy ``Grid``.

``lr=0.1,0.01 seed=range(5)`` is a grid of 10 points in the order Hydra's basic sweeper uses (the last
override varies fastest). A ``Grid`` is a sequence: its length is a product and point ``i`` is computed
from ``i`` by mixed-radix arithmetic, so a million-point grid is counted without building anything.
Keys varied together (a tuple key, keys ending in ``___``) are one dimension of several axes, and a list
of grids is their ``Union``, one after the other.
"""

from __future__ import annotations

import bisect
import itertools
import math
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mrunner.errors import MrunnerError

if TYPE_CHECKING:
    from hydra.core.override_parser.types import Override

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


Point = list[tuple[Axis, Any]]


class Grid(Sequence[Point]):
    """The cartesian product of its dimensions; each point is a list of (axis, value).

    A dimension is an axis, or several axes varied together: their values at the same position go into the
    same point, and the dimension is as long as its shortest axis (as ``zip`` pairs them).
    """

    def __init__(self, axes: Sequence[Axis | Sequence[Axis]]) -> None:
        self.dimensions = [(axis,) if isinstance(axis, Axis) else tuple(axis) for axis in axes]
        self.axes = [axis for dimension in self.dimensions for axis in dimension]
        self._sizes = [min(len(axis.values) for axis in dimension) for dimension in self.dimensions]
        self._count = math.prod(self._sizes)

    def __len__(self) -> int:
        return self._count

    def __getitem__(self, index: int) -> Point:  # type: ignore[override]
        return [(axis, axis.values[position]) for axis, position in self._positions(index)]

    def __iter__(self) -> Iterator[Point]:
        return (self[i] for i in range(self._count))

    def overrides(self, index: int) -> list[str]:
        """Point ``index`` as the overrides a Hydra app receives, in the order they were given."""
        return [axis.override(position) for axis, position in self._positions(index)]

    def _positions(self, index: int) -> list[tuple[Axis, int]]:
        """Each axis and the position of its value in point ``index``, in the order of the axes."""
        if not -self._count <= index < self._count:
            raise IndexError(index)
        index %= self._count
        positions = []
        for dimension, size in zip(reversed(self.dimensions), reversed(self._sizes)):
            index, position = divmod(index, size)
            positions += [(axis, position) for axis in reversed(dimension)]
        positions.reverse()
        return positions


class Union(Sequence[Point]):
    """Grids one after the other: a list of ``params_grid`` mappings spans the union of their grids."""

    def __init__(self, grids: Sequence[Grid]) -> None:
        self.grids = list(grids)
        self._starts = list(itertools.accumulate((len(g) for g in self.grids), initial=0))

    def __len__(self) -> int:
        return self._starts[-1]

    def __getitem__(self, index: int) -> Point:  # type: ignore[override]
        if not -len(self) <= index < len(self):
            raise IndexError(index)
        index %= len(self)
        # the last grid that starts at or before the index: an empty grid starts where the next one does
        which = bisect.bisect_right(self._starts, index) - 1
        return self.grids[which][index - self._starts[which]]

    def __iter__(self) -> Iterator[Point]:
        return (point for grid in self.grids for point in grid)


# -- parsing -------------------------------------------------------------------------------------------------


#: ``KEY=VALUE``, ``KEY=A,B,C`` and ``KEY=range(...)`` with a dotted key of letters, digits and ``_`` and values
#: that are each one token of Hydra's grammar whose meaning is plain: a decimal integer, a decimal with a fraction,
#: a word of letters, digits and ``_``. Most command lines are only this; the rest goes to Hydra's parser.
_PLAIN = re.compile(r"([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*)=([\w.,()-]+)", re.ASCII)
_INT = re.compile(r"-?(?:0|[1-9][0-9]*)", re.ASCII)
_FLOAT = re.compile(r"-?(?:0|[1-9][0-9]*)\.[0-9]+", re.ASCII)
_WORD = re.compile(r"[A-Za-z_]\w*", re.ASCII)
_RANGE = re.compile(r"range\((-?\d+)(?:,(-?\d+))?(?:,(-?\d+))?\)", re.ASCII)
#: words Hydra's lexer reads as a boolean, null or float, not as a string
_NOT_WORDS = frozenset({"true", "false", "null", "nan", "inf"})


def plain_axis(text: str) -> tuple[Axis, bool] | None:
    """The axis of an override that needs no Hydra to read, and whether Hydra calls it a sweep (``a=range(1)``
    is one, of one value); None for anything else (``parse`` and ``axis`` read it then).

    The result is what ``axis(parse(text))`` gives (``tests/test_grid.py`` compares the two), without importing
    Hydra: its import is most of the start of a command that plans a sweep (benchmarks/results-core.md)."""
    match = _PLAIN.fullmatch(text)
    if match is None:
        return None
    key, value = match.groups()
    ranged = _RANGE.fullmatch(value)
    if ranged is not None:
        given = [n for n in ranged.groups() if n is not None]
        if not all(_INT.fullmatch(n) for n in given):
            return None
        numbers = [int(n) for n in given]
        start, stop, step = {1: [0, *numbers, 1], 2: [*numbers, 1], 3: numbers}[len(numbers)]
        if step <= 0:
            return None
        return Axis(key, SET, range(start, stop, step), text, key, None), True
    values = [_plain_value(token) for token in value.split(",")]
    if any(v is None for v in values):
        return None
    texts = [f"{key}={v}" for v in values]
    return Axis(key, SET, values, text, key, texts), len(values) > 1


def _plain_value(token: str) -> int | float | str | None:
    if _INT.fullmatch(token):
        return int(token)
    if _FLOAT.fullmatch(token):
        return float(token)
    if _WORD.fullmatch(token) and token.lower() not in _NOT_WORDS:
        return token
    return None


def parse(text: str) -> Override:
    """Parse one override, or raise an error that shows where it went wrong."""
    from hydra.errors import HydraException

    from mrunner import hydra_internals  # Hydra's grammar: only parsing needs it, not the grids written in Python

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
    from hydra.core.override_parser.types import OverrideType, ValueType

    from mrunner import hydra_internals

    text = override.input_line or override.key_or_group
    key = override.key_or_group
    if not key:
        raise MrunnerError(f"override {text!r} has no key: write KEY=VALUE")
    if override.package:
        key = f"{key}@{override.package}"
    how = {OverrideType.CHANGE: SET, OverrideType.ADD: ADD, OverrideType.FORCE_ADD: FORCE, OverrideType.DEL: DELETE}[
        override.type
    ]
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
    from mrunner import hydra_internals

    if hydra_internals.deletes_whatever_value(override):
        return element
    return f"{element}={override.get_value_element_as_str()}"


def _range_values(override: Override) -> Sequence[Any]:
    from mrunner import hydra_internals

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
    axes = [_axis(text, glob_options) for text in texts]
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


def _axis(text: str, glob_options: GlobOptions | None) -> Axis:
    plain = plain_axis(text)
    return plain[0] if plain is not None else axis(parse(text), glob_options)


# -- grids written in Python ---------------------------------------------------------------------------------

#: One mapping of ``params_grid`` (key -> values) read into the dimensions of its grid.
Dimensions = Callable[[Mapping[Any, Any]], list[Axis | tuple[Axis, ...]]]


def python_grid(params_grid: Mapping[Any, Any] | Sequence[Mapping[Any, Any]], dimensions: Dimensions) -> Union:
    """The grid of ``params_grid``, one mapping or a list of them (the union of their grids, in order).

    The way a mapping is read (which keys vary together, what a value may be) is the caller's: the
    original's helper and ``create_experiments`` differ there, and keep their own rules."""
    grids = [params_grid] if isinstance(params_grid, Mapping) else list(params_grid)
    for one in grids:
        if not isinstance(one, Mapping):
            raise MrunnerError(f"params_grid must be a mapping or a list of mappings, got {type(one).__name__}")
    return Union([Grid(dimensions(one)) for one in grids])


def listed(key: Any, values: Any) -> list[Any]:
    """The values a key of a grid written in Python takes: a list, tuple, range or array of them. A single
    value is refused naming the list to write: it used to run as one point (and a string, in the original's
    ``itertools.product``, as one point per character), so a forgotten ``[...]`` went unnoticed."""
    if isinstance(values, (list, tuple, range)):
        return list(values)
    if hasattr(values, "tolist") and hasattr(values, "dtype"):  # a NumPy array or a pandas Series
        return list(values.tolist())
    raise MrunnerError(
        f"params_grid[{key!r}] must be a list of values, got {type(values).__name__} {values!r}: "
        f"write [{values!r}] for a single value (or set it in base_config)"
    )


def parameter_axis(key: Any, values: Sequence[Any]) -> Axis:
    """An axis of a grid written in Python: ``key`` is a name as written (``a.b`` is one key, as the
    original's ``config.update(point)`` took it), set to each of ``values``."""
    return Axis(key, SET, values, str(key), str(key))


def parameters(point: Point) -> dict[str, Any]:
    """A point of a grid written in Python as the mapping of its keys to their values."""
    return {axis.key: value for axis, value in point}


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
