"""`mrunner results --plot` and `--curves`: a sweep's metrics as pictures (PNG, SVG, PDF: matplotlib's formats).

matplotlib is an optional extra (``mrunner[plot]``), imported only here, drawing without a display (Agg). Both
pictures stay readable for large grids: up to ``LEGEND_LIMIT`` lines get a legend; more are coloured along a
colour bar of the axis that tells them apart, or, when no numeric axis does, get a colour and a dash each (up to
``STYLED_LIMIT``, with a legend beside the picture) or one per value of the axes with few values (a legend of
those values). A swept
axis whose values are geometric (0.001, 0.01, 0.1) is drawn on a log scale, and so is a metric spanning
several orders of magnitude.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mrunner.comparison import Experiment, Row, group_curve
from mrunner.errors import MrunnerError

LEGEND_LIMIT = 12
#: A positive axis whose largest value is at least this many times its smallest is drawn on a log scale.
LOG_SPAN = 50.0
#: The same for a metric's values (the y axis): of every experiment drawn, grouped with --over or not.
METRIC_LOG_SPAN = 1000.0


def _pyplot() -> Any:
    try:
        import matplotlib
    except ImportError:
        raise MrunnerError("pictures need matplotlib: pip install 'mrunner[plot]'") from None
    matplotlib.use("Agg")
    try:
        import matplotlib.pyplot as pyplot
    except ImportError as error:  # installed, but a package it needs is missing or broken
        raise MrunnerError(
            f"matplotlib is installed but cannot draw ({error}): pip install --force-reinstall 'mrunner[plot]'"
        ) from None
    return pyplot


def geometric(values: Sequence[Any]) -> bool:
    """Whether numbers are spread so that a log scale shows them evenly (positive, spanning LOG_SPAN or more)."""
    numbers = [v for v in values if _numeric(v)]
    if len(numbers) < 2 or len(numbers) != len(values) or min(numbers) <= 0:
        return False
    return max(numbers) / min(numbers) >= LOG_SPAN


def _numeric(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _label(axes: dict[str, Any]) -> str:
    return ", ".join(f"{key}={value}" for key, value in axes.items()) or "all"


def against_axis(
    experiments: Sequence[Experiment],
    rows: Sequence[Row],
    axes: Sequence[str],
    metric: str,
    x: str | None,
    over: Sequence[str],
    output: Path,
    sweep_id: str,
    label: str | None = None,
) -> None:
    """``metric`` against axis ``x`` (default: the first), a line for each value of the other axes, error bars
    (one standard deviation) over the ``over`` axes; ``label``: the metric's name as the table heads it
    (``metric:lr`` beside an axis ``lr``)."""
    label = label or metric
    if not axes:
        why = f"--over {','.join(over)} folds every axis" if over else "every parameter is constant"
        raise MrunnerError(f"sweep {sweep_id} has no axis left to draw {metric} against ({why})")
    x = x or axes[0]
    if x not in axes:
        raise MrunnerError(f"cannot draw against {x!r}: it is folded by --over; the axes left are {', '.join(axes)}")
    others = [axis for axis in axes if axis != x]
    lines: dict[tuple, list[Row]] = {}
    for row in rows:
        if metric in row.metrics:
            lines.setdefault(tuple(str(row.axes[a]) for a in others), []).append(row)
    xs = [row.axes[x] for row in rows]
    numeric_x = all(_numeric(v) for v in xs)
    categories = list(dict.fromkeys(str(v) for v in xs))
    pyplot = _pyplot()
    figure, axis = pyplot.subplots(figsize=(8, 5), layout="constrained")
    line_axes = [{a: members[0].axes[a] for a in others} for members in lines.values()]
    colour, handles = _colouring(pyplot, figure, axis, line_axes, others)
    logged = _log_if_spread(axis, [r.metrics[metric] for r in rows if metric in r.metrics])
    scale = 1.0 if logged else _scale([r.metrics[metric] for r in rows if metric in r.metrics])
    for number, members in enumerate(lines.values()):
        members = sorted(members, key=lambda r: r.axes[x] if numeric_x else categories.index(str(r.axes[x])))
        positions = [r.axes[x] if numeric_x else categories.index(str(r.axes[x])) for r in members]
        values = [r.metrics[metric] / scale for r in members]
        style = colour(number, line_axes[number])
        if over:
            errors = [r.std.get(metric, 0.0) / scale for r in members]
            axis.errorbar(positions, values, yerr=errors, capsize=3, marker="o", markersize=3, **style)
        else:
            axis.plot(positions, values, marker="o", markersize=3, **style)
    if numeric_x and geometric(xs):
        axis.set_xscale("log")
    elif numeric_x and all(type(v) is int for v in xs):  # seeds, widths, layers: no tick between two whole numbers
        from matplotlib.ticker import MaxNLocator

        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
    if not numeric_x:
        axis.set_xticks(range(len(categories)), categories, rotation=30 if len(categories) > 6 else 0)
    axis.set_xlabel(x)
    axis.set_ylabel(label + _scaled(scale) + (f" (mean ± std over {', '.join(over)})" if over else ""))
    axis.set_title(f"sweep {sweep_id}: {label} against {x}", fontsize=10)
    _save(pyplot, figure, axis, len(lines), output, handles)


def curves(
    experiments: Sequence[Experiment],
    rows: Sequence[Row],
    axes: Sequence[str],
    metric: str,
    output: Path,
    sweep_id: str,
    label: str | None = None,
) -> None:
    """``metric`` against its step, a line per row: an experiment, or with ``--over`` a group's mean with a band
    of one standard deviation; ``label`` as ``against_axis`` takes it."""
    label = label or metric
    by_index = {experiment.index: experiment for experiment in experiments}
    pyplot = _pyplot()
    figure, axis = pyplot.subplots(figsize=(8, 5), layout="constrained")
    drawn = [row for row in rows if any(by_index[i].curves.get(metric) for i in row.indices)]
    colour, handles = _colouring(pyplot, figure, axis, [row.axes for row in drawn], list(axes))
    # the scale is chosen from every experiment's values, grouped or not: the same sweep gets the same y axis
    every = [v for row in drawn for i in row.indices for v in by_index[i].curves.get(metric, {}).values()]
    logged = _log_if_spread(axis, every)
    scale = 1.0 if logged else _scale(every)
    partial = False
    every_step: set[int] = set()
    for number, row in enumerate(drawn):
        members = [by_index[i].curves[metric] for i in row.indices if by_index[i].curves.get(metric)]
        found = [(step, mean / scale, std / scale, n) for step, mean, std, n in group_curve(members)]
        steps, means = [point[0] for point in found], [point[1] for point in found]
        every_step.update(steps)
        style = colour(number, row.axes)
        if len(members) > 1 and "label" in style:
            style["label"] += f" (n={len(members)})"
        whole = [point[3] == len(members) for point in found]
        if len(steps) == 1:  # a line of one point draws nothing: a marker shows it
            style = {**style, "marker": "o", "markersize": 4}
        # solid where every member covers the step; dotted where fewer do (one ran longer, or started later)
        axis.plot(steps, [m if w else math.nan for m, w in zip(means, whole)], **style)
        if not all(whole):
            partial = True
            near = [not w or not all(whole[max(0, i - 1) : i + 2]) for i, w in enumerate(whole)]
            dotted = {key: value for key, value in style.items() if key != "label"}
            axis.plot(steps, [m if n else math.nan for m, n in zip(means, near)], **{**dotted, "linestyle": ":"})
        if len(members) > 1:  # the band where two or more members cover the step
            low = [m - s if n > 1 else math.nan for _, m, s, n in found]
            high = [m + s if n > 1 else math.nan for _, m, s, n in found]
            axis.fill_between(steps, low, high, color=style["color"], alpha=0.15, linewidth=0)
    from matplotlib.ticker import MaxNLocator

    axis.xaxis.set_major_locator(MaxNLocator(integer=True))
    if len(every_step) == 1:  # one step: a range of whole numbers around it, so that its ticks are whole too
        axis.set_xlim(min(every_step) - 1, min(every_step) + 1)
    axis.set_xlabel("step")
    axis.set_ylabel(label + _scaled(scale))
    grouped = len(drawn) < len(experiments)
    note = " (mean ± std per group" + ("; dotted: fewer members)" if partial else ")")
    axis.set_title(f"sweep {sweep_id}: {label} per step" + (note if grouped else ""), fontsize=10)
    _save(pyplot, figure, axis, len(drawn), output, handles)


#: Past LEGEND_LIMIT lines with no numeric axis to colour by, each line still gets a style of its own (a colour
#: and a dash) and a legend beside the picture, up to this many lines.
STYLED_LIMIT = 40
_DASHES: tuple[Any, ...] = ("-", "--", ":", "-.")
#: Beyond STYLED_LIMIT, the axis that sets the lines' colour has at most this many values, and the one that sets
#: their dash at most len(_DASHES): the legend names those values, not each line.
_KEY_VALUES = 10


def _colouring(pyplot: Any, figure: Any, axis: Any, labels: list[dict[str, Any]], names: Sequence[str]) -> Any:
    """``(style, handles)``: a function (line number, its axes' values) -> line style, and the legend's entries
    when they are not the lines' own labels (``None``: a legend of the labelled lines, if any). Few lines: one
    colour each, labelled. Many: coloured along the first numeric axis that tells them apart, with a colour bar,
    thin and translucent so that a thousand stay legible. Many with no such axis: up to ``STYLED_LIMIT`` a colour
    and a dash each, labelled; beyond, coloured by the value of one axis and dashed by that of another, the
    legend naming those values."""
    if len(labels) <= LEGEND_LIMIT:
        cycle = pyplot.rcParams["axes.prop_cycle"].by_key()["color"]
        return lambda number, axes: {"color": cycle[number % len(cycle)], "label": _label(axes)}, None
    import matplotlib.colors as colors

    varying = [n for n in names if len({str(a.get(n)) for a in labels}) > 1]
    ordered = [n for n in varying if all(_numeric(a.get(n)) for a in labels)]
    ordered.sort(key=lambda n: "seed" in n.lower())  # a seed orders nothing: colour by a real axis first
    width = 0.6 if len(labels) > 100 else 1.0
    alpha = 0.35 if len(labels) > 100 else 0.7
    if not ordered:
        return _categorical(pyplot, labels, varying, width, alpha)
    scale = ordered[0]
    values = [a[scale] for a in labels]
    norm = (colors.LogNorm if geometric(values) else colors.Normalize)(min(values), max(values))
    cmap = pyplot.get_cmap("viridis")
    figure.colorbar(pyplot.cm.ScalarMappable(norm=norm, cmap=cmap), ax=axis, label=scale)
    return lambda number, axes: {"color": cmap(norm(axes[scale])), "alpha": alpha, "linewidth": width}, None


def _categorical(pyplot: Any, labels: list[dict[str, Any]], varying: list[str], width: float, alpha: float) -> Any:
    """Styles for many lines that no numeric axis orders (``_colouring``)."""
    palette = [pyplot.get_cmap("tab10")(i) for i in range(10)]
    if len(labels) <= STYLED_LIMIT:
        return (
            lambda number, axes: {
                "color": palette[number % len(palette)],
                "linestyle": _DASHES[number // len(palette) % len(_DASHES)],
                "label": _label(axes),
            },
            None,
        )
    from matplotlib.lines import Line2D

    # each axis's values in order of first appearance, read once (not once per line drawn)
    values = {n: list(dict.fromkeys(str(a.get(n)) for a in labels)) for n in varying}
    keyed = sorted((n for n in varying if len(values[n]) <= _KEY_VALUES), key=lambda n: -len(values[n]))
    colour_by = keyed[0] if keyed else None
    dash_by = next((n for n in keyed[1:] if len(values[n]) <= len(_DASHES)), None)
    handles = []
    if colour_by is not None:
        handles += [Line2D([], [], color=palette[i], label=f"{colour_by}={v}") for i, v in enumerate(values[colour_by])]
    if dash_by is not None:
        handles += [
            Line2D([], [], color="black", linestyle=_DASHES[i], label=f"{dash_by}={v}")
            for i, v in enumerate(values[dash_by])
        ]
    colour_of = {v: palette[i] for i, v in enumerate(values[colour_by])} if colour_by is not None else {}
    dash_of = {v: _DASHES[i] for i, v in enumerate(values[dash_by])} if dash_by is not None else {}

    def style(number: int, axes: dict[str, Any]) -> dict[str, Any]:
        found: dict[str, Any] = {"alpha": alpha, "linewidth": width, "color": "tab:blue"}
        if colour_by is not None:
            found["color"] = colour_of[str(axes.get(colour_by))]
        if dash_by is not None:
            found["linestyle"] = dash_of[str(axes.get(dash_by))]
        return found

    return style, handles or None


def _log_if_spread(axis: Any, values: list[float]) -> bool:
    """A log y axis for positive values spanning ``METRIC_LOG_SPAN`` or more; whether it was chosen."""
    finite = [v for v in values if math.isfinite(v)]
    if finite and min(finite) > 0 and max(finite) / min(finite) >= METRIC_LOG_SPAN:
        axis.set_yscale("log")
        return True
    return False


#: A metric drawn on a linear axis whose largest magnitude reaches this is drawn divided by a power of ten, the
#: axis's label saying which: matplotlib places a linear axis's ticks with arithmetic that overflows near a
#: float's maximum ("arange: cannot compute length"), and its own offset notation does not avoid that.
SCALE_FROM = 1e100


def _scale(values: list[float]) -> float:
    """The power of ten the values are drawn divided by (1 for values matplotlib draws as they are)."""
    largest = max((abs(v) for v in values if math.isfinite(v)), default=0.0)
    return 10.0 ** math.floor(math.log10(largest)) if largest >= SCALE_FROM else 1.0


def _scaled(scale: float) -> str:
    return "" if scale == 1.0 else f" (×1e{round(math.log10(scale))})"


def _save(pyplot: Any, figure: Any, axis: Any, lines: int, output: Path, handles: list[Any] | None) -> None:
    if handles is not None:
        axis.legend(handles=handles, fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1))
    elif LEGEND_LIMIT < lines <= STYLED_LIMIT and axis.get_legend_handles_labels()[0]:
        axis.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1), ncols=math.ceil(lines / 20))
    elif 1 < lines <= LEGEND_LIMIT:
        axis.legend(fontsize=8)
    axis.grid(True, alpha=0.3)
    import io
    import warnings

    kind = output.suffix[1:].lower()
    picture = io.BytesIO()
    try:
        if kind not in figure.canvas.get_supported_filetypes():
            known = ", ".join(sorted(figure.canvas.get_supported_filetypes()))
            raise MrunnerError(f"-o {output}: matplotlib writes no .{kind} file; name a .png, .svg or .pdf ({known})")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("ignore", RuntimeWarning)  # numpy's overflows near a float's maximum: drawn right
            figure.savefig(picture, format=kind, dpi=120)  # drawn in memory: a failure here is no write's
    except (ValueError, OverflowError, FloatingPointError) as error:
        raise MrunnerError(f"cannot draw {axis.get_ylabel()} into {output}: matplotlib: {error}") from None
    finally:
        pyplot.close(figure)
    _warn_of_missing_glyphs(caught, output)
    try:
        output.write_bytes(picture.getvalue())
    except OSError as error:
        raise MrunnerError(f"cannot write {output}: {error.strerror or error}") from None


def _warn_of_missing_glyphs(caught: list[Any], output: Path) -> None:
    """matplotlib's warning per character its font cannot draw (a metric or axis named in CJK: DejaVu Sans has
    none), each a source line of mrunner's, as one line naming them; any other warning as matplotlib gave it."""
    import re
    import warnings

    missing: list[str] = []
    for warning in caught:
        found = re.match(r"Glyph (\d+) .*missing from", str(warning.message))  # "font(s) X", "current font"
        if found is None:
            warnings.showwarning(warning.message, warning.category, warning.filename, warning.lineno)
        elif chr(int(found[1])) not in missing:
            missing.append(chr(int(found[1])))
    if missing:
        print(
            f"mrunner: warning: {output} shows boxes for {''.join(missing)!r}: matplotlib's font has no glyph for"
            " them; name a font that has (font.family in a matplotlibrc), or use other names",
            file=sys.stderr,
        )
