"""A sweep's experiments side by side: what `mrunner results` shows, from their parameters and reported metrics.

The grid's axes are the parameters whose values differ between experiments (nested parameters and a Hydra app's
overrides, config-group choices included, as dotted names); the others are the constants, shown once. A metric
is summarised per experiment by ``agg`` over its curve (``mrunner.metrics.read``), and ``--over`` axes fold the
experiments that differ only there into one row of mean, standard deviation and count.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from mrunner.errors import MrunnerError
from mrunner.records import COMPLETED

AGGREGATES = ("last", "min", "max", "mean")


@dataclass
class Row:
    """One experiment (or, with ``--over``, one group of them): its axes' values, metrics and state."""

    axes: dict[str, Any]
    metrics: dict[str, float]
    state: str
    indices: list[int]
    #: with --over: each metric's standard deviation (where two or more experiments had it) and how many had it
    std: dict[str, float] = field(default_factory=dict)
    count: dict[str, int] = field(default_factory=dict)


@dataclass
class Experiment:
    """What `results` knows of one experiment: recorded facts and its curves (metric -> {step: value})."""

    index: int
    name: str
    state: str
    exit_code: int | None
    parameters: dict[str, Any]
    curves: dict[str, dict[int, float]]
    #: where the curves were not brought back: metric -> [last, min, max, mean, last step]
    #: (``mrunner.metrics.summary``, made where the metrics file is)
    summary: dict[str, list[float]] = field(default_factory=dict)


def flatten(parameters: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested parameters as dotted names (``{"model": {"depth": 3}}`` -> ``{"model.depth": 3}``)."""
    flat: dict[str, Any] = {}
    for key, value in parameters.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def split_axes(experiments: Sequence[Experiment]) -> tuple[list[str], dict[str, Any]]:
    """The varying parameters (in the order the experiments name them) and the constant ones with their value."""
    names: dict[str, None] = {}
    for experiment in experiments:
        names.update(dict.fromkeys(experiment.parameters))
    missing = object()
    axes, constants = [], {}
    for name in names:
        values = {_key(experiment.parameters.get(name, missing)) for experiment in experiments}
        if len(values) > 1:
            axes.append(name)
        else:
            constants[name] = experiments[0].parameters[name]
    return axes, constants


def metric_names(experiments: Sequence[Experiment]) -> list[str]:
    names: dict[str, None] = {}
    for experiment in experiments:
        names.update(dict.fromkeys(experiment.curves or experiment.summary))
    return list(names)


def group_curve(members: Sequence[Mapping[int, float]]) -> list[tuple[int, float, float, int]]:
    """A group's curve (``--curves --over``) as ``(step, mean, std, n)`` at each step any member reported.
    Members that reported on different steps (one every 10, another every 5 from 0 and at 15, 25) are each
    taken at every step within their own first and last, between two of their reports on the straight line
    through them: a mean of whichever members happened to report at a step would jump between them. A step
    beyond a member's range leaves it out: ``n`` is the members that cover the step, ``std`` 0 where only one does.
    Steps of each member in increasing order (as ``mrunner.metrics.read`` gives them)."""
    import bisect
    import statistics

    ordered = [(list(curve), list(curve.values())) for curve in members if curve]
    found = []
    for step in sorted({step for steps, _ in ordered for step in steps}):
        values = []
        for steps, ys in ordered:
            if not steps[0] <= step <= steps[-1]:
                continue
            at = bisect.bisect_left(steps, step)
            if steps[at] == step:
                values.append(ys[at])
            else:  # between two reports: on the line through them
                share = (step - steps[at - 1]) / (steps[at] - steps[at - 1])
                values.append(ys[at - 1] + share * (ys[at] - ys[at - 1]))
        spread = _stdev(values, statistics) if len(values) > 1 else 0.0
        found.append((step, _mean(values), spread, len(values)))
    return found


def aggregate(curve: Mapping[int, float], how: str) -> float:
    """``how`` of a curve's values in step order; ``mrunner.metrics.summary`` makes the same four numbers where
    the file is (a test holds them equal)."""
    values = list(curve.values())  # in step order
    if how == "last":
        return values[-1]
    if how in ("min", "max"):  # nan where any value is nan, as the mean; mrunner.metrics.lowest and highest
        return math.nan if any(map(math.isnan, values)) else (min if how == "min" else max)(values)
    return _mean(values)  # as mrunner.metrics.mean


def value(experiment: Experiment, metric: str, how: str) -> float | None:
    """An experiment's ``metric`` by ``how``: from its curve, else from its summary; None if it has neither."""
    curve = experiment.curves.get(metric)
    if curve:
        return aggregate(curve, how)
    summary = experiment.summary.get(metric)
    return summary[AGGREGATES.index(how)] if summary else None


def state_of(experiment: Experiment) -> str:
    """The experiment's state as a cell: empty when completed (the usual case), else the state (and exit code)."""
    if experiment.state == COMPLETED:
        return ""
    if experiment.exit_code not in (None, 0):
        return f"{experiment.state} ({experiment.exit_code})"
    return experiment.state


def matches(value: Any, wanted: str) -> bool:
    """Whether a parameter's value is what ``--where KEY=VALUE`` asks (numbers compared as numbers). A null is
    ``None`` here (as ``--json`` and the refusals say ``null``), never the empty text: ``KEY=`` is the empty
    string, as in the override that made the grid."""
    if str(value) == wanted:
        return True
    if isinstance(value, bool):
        return False  # no number: `flag=1` is not `flag=true`
    try:
        return float(value) == float(wanted)
    except (TypeError, ValueError):
        return False


def same(value: Any, wanted: Any) -> bool:
    """Whether a parameter's value is ``wanted``, a value as the grid's grammar reads it: numbers by value (0.1
    is 1e-1), a bool only a bool (True is not 1), lists and mappings item by item."""
    if isinstance(value, bool) or isinstance(wanted, bool):
        return type(value) is type(wanted) and value == wanted
    if isinstance(value, (list, tuple)) and isinstance(wanted, (list, tuple)):
        return len(value) == len(wanted) and all(same(a, b) for a, b in zip(value, wanted))
    if isinstance(value, Mapping) and isinstance(wanted, Mapping):
        return value.keys() == wanted.keys() and all(same(value[k], wanted[k]) for k in value)
    return bool(value == wanted)


def rows(
    experiments: Sequence[Experiment], axes: Sequence[str], metrics: Sequence[str], how: str, over: Sequence[str]
) -> list[Row]:
    """One row per experiment, or per group of experiments equal on every axis but ``over``."""
    single = [
        Row(
            axes={axis: experiment.parameters.get(axis) for axis in axes},
            metrics={m: found for m in metrics if (found := value(experiment, m, how)) is not None},
            state=state_of(experiment),
            indices=[experiment.index],
        )
        for experiment in experiments
    ]
    if not over:
        return single
    kept = [axis for axis in axes if axis not in over]
    groups: dict[tuple, list[Row]] = {}
    for row in single:
        groups.setdefault(tuple(_key(row.axes[axis]) for axis in kept), []).append(row)
    import statistics  # here: only --over needs it, and `results` connects sooner without it

    folded = []
    for members in groups.values():
        values = {m: [r.metrics[m] for r in members if m in r.metrics] for m in metrics}
        states = [r.state.split(" ")[0] for r in members if r.state]
        counted = {state: states.count(state) for state in dict.fromkeys(states)}
        folded.append(
            Row(
                axes={axis: members[0].axes[axis] for axis in kept},
                metrics={m: _mean(v) for m, v in values.items() if v},
                # a spread of one value is undefined, not 0: no std for it (no ± in the table, null in --json)
                std={m: _stdev(v, statistics) for m, v in values.items() if len(v) > 1},
                count={m: len(v) for m, v in values.items()},
                state=", ".join(f"{n} {state}" for state, n in counted.items()),
                indices=[i for r in members for i in r.indices],
            )
        )
    return folded


def _mean(values: list[float]) -> float:
    """A group's mean: exact summation; of values whose sum passes a float's maximum, their shares summed (the
    mean of 1e308 and 1e308 is 1e308, not inf); of infinities, what float arithmetic gives (nan for both signs)."""
    try:
        return math.fsum(values) / len(values)
    except OverflowError:
        try:
            return math.fsum(value / len(values) for value in values)
        except (ValueError, OverflowError):
            return sum(values) / len(values)
    except ValueError:
        return sum(values) / len(values)


def _stdev(values: list[float], statistics: Any) -> float:
    """A group's standard deviation; nan where a member is nan or infinite (the statistics module raises on
    those: the spread is undefined, and the table shows it so instead of a traceback)."""
    if not all(math.isfinite(v) for v in values):
        return math.nan
    try:
        return statistics.stdev(values)
    except OverflowError:  # finite values whose squares overflow (near 1e308)
        return math.inf


def sort(found: list[Row], key: str, axes: Sequence[str], metrics: Sequence[str], shown: Labels) -> list[Row]:
    """``--sort NAME`` ascending, ``--sort -NAME`` descending; rows whose value is nan (no number to order by:
    among the keys, it would leave the numbers around it unordered), then rows without a value, go last either
    way. NAME is a column as the table heads it: an axis, or a metric by its label (``metric:lr`` where an axis
    is ``lr``)."""
    descending = key.startswith("-")
    name = key.lstrip("-")
    metric = None if name in axes else shown.metric(name, metrics)
    if metric is None:
        check_names([name], axes, [shown.metrics[m] for m in metrics], "sort by")

    def value(row: Row) -> Any:
        return row.metrics.get(metric) if metric is not None else row.axes.get(name)

    def nan(row: Row) -> bool:
        return isinstance(value(row), float) and math.isnan(value(row))

    present = [row for row in found if value(row) is not None and not nan(row)]
    absent = [row for row in found if nan(row)] + [row for row in found if value(row) is None]
    try:
        present.sort(key=value, reverse=descending)
    except TypeError:  # an axis of mixed kinds: by its text
        present.sort(key=lambda row: _text(value(row)), reverse=descending)
    return present + absent


def check_names(names: Sequence[str], axes: Sequence[str], metrics: Sequence[str] | None, what: str) -> None:
    """Refuse a name that is none of ``axes`` (nor of ``metrics``, where a metric would do: ``None`` when only
    an axis would), naming those that exist."""
    for name in names:
        if name not in axes and name not in (metrics or ()):
            known = f"the sweep's axes are {', '.join(axes) or 'none (every parameter is constant)'}"
            if metrics is not None:
                known += f" and its metrics {', '.join(metrics) or 'none'}"
            raise MrunnerError(f"cannot {what} {name!r}: {known}")


#: The columns of `results`' records that are mrunner's own, not a parameter's or a metric's.
OWN_COLUMNS = ("index", "n", "state")


@dataclass
class Labels:
    """The name of each column of `results` (table header, JSON key, CSV column), all different: a parameter
    keeps its name (``--where``, ``--over`` and ``--x`` name it so), a metric keeps its name unless a parameter
    or a column of mrunner's has it (then ``metric:NAME``), and mrunner's own columns (``index``, ``n``,
    ``state``, a metric's ``NAME_std`` and ``NAME_n`` with ``--over``) give way to both (then ``mrunner:NAME``).
    Without this, a metric named like an axis (``lr``) overwrote the axis's value in ``--json`` and ``--csv``."""

    own: dict[str, str]
    metrics: dict[str, str]
    std: dict[str, str]
    count: dict[str, str]

    def metric(self, label: str, metrics: Sequence[str]) -> str | None:
        """The metric a name given on the command line means: its label, else its own name (when no axis
        has it)."""
        for name, given in self.metrics.items():
            if given == label:
                return name
        return label if label in metrics else None


def labels(parameters: Sequence[str], metrics: Sequence[str]) -> Labels:
    """Each column's label (``Labels``), for a sweep with these parameters (axes and constants) and metrics."""
    taken = set(parameters)

    def free(name: str, prefix: str) -> str:
        label = name
        while label in taken:
            label = f"{prefix}:{label}"
        taken.add(label)
        return label

    own = {name: free(name, "mrunner") for name in OWN_COLUMNS}
    shown = {name: free(name, "metric") for name in metrics}
    std = {name: free(f"{shown[name]}_std", "mrunner") for name in metrics}
    count = {name: free(f"{shown[name]}_n", "mrunner") for name in metrics}
    return Labels(own, shown, std, count)


def number(value: float) -> str:
    """A metric as a cell: four significant digits, plain or scientific as fits."""
    if value != value or value in (math.inf, -math.inf):
        return str(value)
    return f"{value:.4g}"


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def _key(value: Any) -> Any:
    """A value as a dictionary key (lists of a list-valued axis become tuples)."""
    if isinstance(value, list):
        return tuple(_key(item) for item in value)
    if isinstance(value, dict):
        return tuple(sorted((k, _key(v)) for k, v in value.items()))
    return value
