"""`mrunner results`: a sweep's reported metrics as a table over its grid (or as JSON, CSV, a picture).

The metrics files (``mrunner.layout.METRICS_FILE``) come back through the backend's own pull, restricted to
them, into a cache below mrunner's data folder (never the project's): every backend works the same way, and a
second call transfers only the files that changed since the first.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import sys
import threading
from pathlib import Path
from typing import Any

from mrunner import comparison, following, metrics, paths, uploads
from mrunner.commands.results import fetch_metrics, fetch_summaries, metrics_cache, warm_up
from mrunner.comparison import Experiment, Row
from mrunner.errors import MrunnerError, NotFound
from mrunner.layout import METRICS_FILE, of_run
from mrunner.records import Run, Sweep
from mrunner.reporter import Reporter
from mrunner.store import Store
from mrunner.table import fit, render


def results_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "A sweep's reported metrics (mrunner.report) as a table: one row per experiment, the grid's varying "
        "axes as columns (the constant parameters above), each metric summarised, the state of any experiment "
        "that has not completed. Brings back only the metrics files, and only those that changed (with tracking: "
        "deferred, uploads what is new to the context's trackers)."
    )
    parser.add_argument("sweep", metavar="SWEEP", help="a sweep id (or prefix)")
    parser.add_argument(
        "--agg",
        choices=comparison.AGGREGATES,
        help="how a metric's curve becomes one number (default: last, its value at the last step); not with --curves",
    )
    parser.add_argument(
        "--over",
        metavar="AXES",
        action="append",
        default=[],
        help="fold the experiments that differ only in these axes (comma-separated, repeatable, e.g. seed) into one row: mean ± std, n",
    )
    parser.add_argument(
        "--sort",
        metavar="[-]NAME",
        help="order the table's rows by a metric or axis (ascending; -NAME descending); not with a picture",
    )
    parser.add_argument(
        "--where",
        metavar="KEY=VALUE",
        action="append",
        default=[],
        help="only experiments whose parameter KEY is VALUE, or one of V1,V2,... (repeatable: all must hold)",
    )
    output = parser.add_mutually_exclusive_group()
    output.add_argument("--json", action="store_true", help="print the rows as a JSON list of flat records (pandas)")
    output.add_argument("--csv", metavar="FILE", type=Path, help="write the rows to FILE as CSV ('-': print it)")
    output.add_argument("--plot", metavar="METRIC", help="draw METRIC against an axis (--x) into -o FILE.png")
    output.add_argument(
        "--curves", metavar="METRIC", help="draw METRIC against its step, a line per row, into -o FILE.png"
    )
    parser.add_argument("--x", metavar="AXIS", help="the axis on the horizontal of --plot (default: the first axis)")
    parser.add_argument("-o", "--output", metavar="FILE", type=Path, help="the picture --plot or --curves writes")


def results_command(options: argparse.Namespace) -> int:
    _check_picture_options(options)
    options.agg = options.agg or "last"
    if options.csv is not None and str(options.csv) != "-":
        paths.writable_file(options.csv, "--csv")
    if options.output is not None:
        paths.writable_file(options.output, "-o")
    store = Store()
    sweep = _sweep(store, options.sweep)
    warm_up(store, sweep)
    runs = following.refresh(sweep, store)
    experiments = fetch(store, sweep, runs, Reporter(), curves=bool(options.curves))
    over = [axis for value in options.over for axis in value.split(",") if axis]
    chosen = _where(experiments, options.where)
    axes, constants = comparison.split_axes(chosen)
    names = comparison.metric_names(chosen)
    shown = comparison.labels([*axes, *constants], names)
    comparison.check_names(over, axes, None, "fold over")
    drawn = None
    for wanted in (options.plot, options.curves):
        if wanted and (drawn := shown.metric(wanted, names)) is None:
            raise MrunnerError(
                f"no metric {wanted!r} in sweep {sweep.id}; its metrics: {', '.join(shown.metrics.values()) or 'none'}"
            )
    if options.x:
        comparison.check_names([options.x], axes, None, "draw against")
    found = comparison.rows(chosen, axes, names, options.agg, over)
    kept = [axis for axis in axes if axis not in over]
    if options.sort:
        folded = options.sort.lstrip("-")
        if folded in over and shown.metric(folded, names) is None:
            raise MrunnerError(
                f"cannot sort by {folded!r}: it is folded by --over; the axes left are {', '.join(kept) or 'none'}"
                f" and the metrics {', '.join(shown.metrics.values())}"
            )
        found = comparison.sort(found, options.sort, kept, names, shown)
    if drawn is not None:
        from mrunner import plot

        if options.plot:
            plot.against_axis(
                chosen, found, kept, drawn, options.x, over, options.output, sweep.id, shown.metrics[drawn]
            )
        else:
            plot.curves(chosen, found, kept, drawn, options.output, sweep.id, shown.metrics[drawn])
        print(f"wrote {options.output}")
        return 0
    records = _records(found, kept, constants, names, over, shown)
    if options.json:
        records, unwritten = _strict(records)
        # a record per line: readable, and json's C encoder (an indented dump runs its Python one)
        print("[\n" + ",\n".join(json.dumps(record, allow_nan=False) for record in records) + "\n]")
        if unwritten:
            Reporter().warn(
                f"--json writes nan, inf and -inf as null (JSON has no such numbers): {', '.join(unwritten)}; "
                f"--csv FILE keeps them"
            )
    elif options.csv:
        _write_csv(records, options.csv)
    else:
        print(_table(sweep, runs, found, kept, constants, names, over, options.agg, shown))
    return 0


def _check_picture_options(options: argparse.Namespace) -> None:
    """Refuse picture options that would be ignored or write elsewhere than named, before anything is fetched."""
    drawing = "--plot" if options.plot else "--curves" if options.curves else None
    if drawing is None:
        for given, name in ((options.output, "-o"), (options.x, "--x")):
            if given is not None:
                raise MrunnerError(
                    f"{name} goes with --plot METRIC{' or --curves METRIC' * (name == '-o')}: add it, or leave {name} out"
                )
        return
    if options.x is not None and options.curves:
        raise MrunnerError("--curves draws against the step: leave --x out (it goes with --plot)")
    if options.agg is not None and options.curves:
        raise MrunnerError(
            f"--curves draws every step, no summary of them: leave --agg {options.agg} out "
            f"(it goes with the table, --json, --csv and --plot)"
        )
    if options.sort is not None:
        raise MrunnerError(
            f"--sort orders the rows of a table, and {drawing} draws no table: leave --sort out "
            f"(--where chooses the experiments drawn)"
        )
    if options.output is None:
        raise MrunnerError(f"{drawing} draws into a file: add -o FILE.png")
    if options.output.is_dir():
        raise MrunnerError(
            f"-o {options.output} is a folder: name the picture's file, e.g. -o {options.output / 'loss.png'}"
        )
    if not options.output.suffix[1:]:
        raise MrunnerError(
            f"-o {options.output}: the file's extension says its format: add one, e.g. -o {options.output}.png (or .svg, .pdf)"
        )


def _sweep(store: Store, ref: str) -> Sweep:
    try:
        return store.sweep(ref)
    except NotFound:
        if "/" in ref:
            raise MrunnerError(
                f"results shows a whole sweep: `mrunner results {ref.split('/')[0]}` (one experiment's row: "
                f"add --where KEY=VALUE, or see `mrunner logs {ref}`)"
            ) from None
        recent = [sweep.id for sweep in store.sweeps(limit=5)]
        raise MrunnerError(
            f"no sweep {ref!r} in the records; recent sweeps: {', '.join(recent) or 'none (nothing was ever submitted)'}"
        ) from None


def fetch(store: Store, sweep: Sweep, runs: list[Run], reporter: Reporter, curves: bool = False) -> list[Experiment]:
    """Bring back what the experiments that started reported, and read it; refuse a sweep without any. For a
    table (not ``curves``), a backend that can sends each metrics file's summary instead of the file
    (``fetch_summaries``); else the files come back and are read here."""
    names = [of_run("", sweep, run).folder_name for run in runs]
    summarised = None
    if not curves and not uploads.uploading(sweep):  # an upload reads the files
        summarised = fetch_summaries(store, sweep, runs, reporter)
    if summarised is not None:
        folder = metrics_cache(sweep.id)
        found = read_cached(folder, [name for name in names if name not in summarised])
    else:
        summarised = {}
        with _Arrivals(metrics_cache(sweep.id), names) as arrived:
            folder = fetch_metrics(store, sweep, runs, reporter)
        found = read_cached(folder, names, arrived.parsed)
    experiments = []
    for run, name, identity in zip(runs, names, _identities(sweep, runs)):
        parameters = {**identity["first"], **comparison.flatten(run.parameters), **identity["last"]}
        summary = summarised.get(name)
        experiments.append(
            Experiment(
                run.index,
                run.name,
                run.state,
                run.exit_code,
                parameters,
                found.get(name, {}),
                summary[2] if summary is not None else {},
            )
        )
    if not any(experiment.curves or experiment.summary for experiment in experiments):
        raise MrunnerError(
            f"sweep {sweep.id} has no reported metrics yet ({following.summary(runs)}): its experiments record them "
            f"with mrunner.report({{'loss': loss}}, step=step)"
        )
    return experiments


def _identities(sweep: Sweep, runs: list[Run]) -> list[dict[str, dict[str, Any]]]:
    """What tells a sweep's experiments apart besides their parameters, as more axes: the experiment's name and
    tags where they differ between experiments of equal parameters (a spec file's `ppo` and `sac`), and the
    resources a point asks
    for (a swept `context.mem=8G,32G`, a spec's per-experiment resources) as `context.KEY`. Without them the
    rows of two such experiments looked alike, and `--over seed` folded `ppo` and `sac` into one mean. Each
    run's as ``{"first": ..., "last": ...}`` (the name before the parameters, the rest after them); a name or
    `tags` that a parameter has already gives way as `mrunner:name`, `mrunner:tags`."""
    taken = {key for run in runs for key in comparison.flatten(run.parameters)}

    def key(name: str) -> str:
        return name if name not in taken else f"mrunner:{name}"

    asked = list(dict.fromkeys(resource for run in runs for resource in run.resources))
    alike: dict[str, list[Run]] = {}  # the runs of equal parameters and resources
    for run in runs:
        same = json.dumps([run.parameters, [run.context(sweep).get(r) for r in asked]], sort_keys=True, default=str)
        alike.setdefault(same, []).append(run)
    # only where they tell apart what the parameters do not: names made of the parameters (`lr0.1_seed0`) are
    # no axis, or `--over seed` could fold nothing
    named = any(len({run.name for run in group}) > 1 for group in alike.values())
    tagged = any(len({tuple(run.tags) for run in group}) > 1 for group in alike.values())
    found = []
    for run in runs:
        last: dict[str, Any] = {f"context.{resource}": run.context(sweep).get(resource) for resource in asked}
        if tagged:
            last[key("tags")] = list(run.tags)
        found.append({"first": {key("name"): run.name} if named else {}, "last": last})
    return found


#: The parsed curves of a sweep's metrics files, beside them in the cache: ``marshal`` of ``{folder: (size,
#: mtime_ns, curves)}``. Parsing a thousand files of a hundred lines costs seconds; loading this, a tenth.
CURVES_CACHE = ".curves.marshal"
#: 2: values that are no numbers are left out; 3: a report without a step after stepped ones comes after them.
_CACHE_VERSION = 3


class _Arrivals:
    """Parses the metrics files a pull brings that were not in the cache before it, as they arrive (a pull
    renames each file into place once whole, in the order of the experiments): the parse of a first call's
    thousand files then runs while this process waits for the cluster's stream, not after it. A file that
    was there before may be replaced by the pull: ``read_cached`` reads it afterwards, as any file this
    thread did not reach."""

    def __init__(self, folder: Path, names: list[str]) -> None:
        self.paths = [(name, os.path.join(folder, name, METRICS_FILE)) for name in names]
        self.parsed: dict[str, tuple[int, int, dict[str, dict[int, float]]]] = {}
        self.ended = threading.Event()
        self.thread = threading.Thread(target=self._run, name="mrunner-metrics-arrivals", daemon=True)

    def __enter__(self) -> _Arrivals:
        self.absent = [(name, path) for name, path in self.paths if not os.path.exists(path)]
        if self.absent:
            self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.ended.set()
        if self.thread.is_alive():
            self.thread.join()

    def _run(self) -> None:
        for name, path in self.absent:
            while True:
                try:
                    status = os.stat(path)
                    break
                except FileNotFoundError:
                    if self.ended.wait(ARRIVAL_POLL):  # the pull ended without it: read_cached looks again
                        return
            try:
                self.parsed[name] = (status.st_size, status.st_mtime_ns, metrics.read(path))
            except OSError:
                return


#: How often the parse of arriving files looks for the next one while it waits for the stream.
ARRIVAL_POLL = 0.005


def read_cached(
    folder: Path, names: list[str], parsed: dict[str, tuple[int, int, dict[str, dict[int, float]]]] | None = None
) -> dict[str, dict[str, dict[int, float]]]:
    """The curves of ``folder/NAME/mrunner-metrics.jsonl`` for each of ``names`` that has one: parsed again only
    where the file's size or time changed since the last call (a pull rewrites a changed file whole), or since
    ``parsed`` (NAME -> size, mtime_ns, curves: parsed as it arrived)."""
    import marshal

    cache_path = folder / CURVES_CACHE
    try:
        version, cached = marshal.loads(cache_path.read_bytes())
        if version != _CACHE_VERSION or not isinstance(cached, dict):
            cached = {}
    except (OSError, ValueError, EOFError, TypeError):
        cached = {}  # none yet, or from another Python: parse again
    found: dict[str, dict[str, dict[int, float]]] = {}
    fresh: dict[str, tuple[int, int, dict[str, dict[int, float]]]] = {}
    base = str(folder)
    for name in names:
        path = os.path.join(base, name, METRICS_FILE)  # a str, not a Path: a thousand of them add up
        try:
            status = os.stat(path)
        except FileNotFoundError:
            continue
        known = (parsed or {}).get(name) or cached.get(name)
        if known is not None and known[0] == status.st_size and known[1] == status.st_mtime_ns:
            curves = known[2]
        else:
            curves = metrics.read(path)
        fresh[name] = (status.st_size, status.st_mtime_ns, curves)
        found[name] = curves
    if fresh != cached:
        temporary = cache_path.with_name(f"{CURVES_CACHE}.{os.getpid()}.tmp")
        temporary.write_bytes(marshal.dumps((_CACHE_VERSION, fresh)))
        os.replace(temporary, cache_path)
    return found


#: The characters of the override grammar that make ``a,b`` more than values split at commas (``'x,y',z``,
#: ``[1,2]``): such a ``--where`` is read by the grammar itself.
GRAMMAR = "'\"[]{}()\\"

#: How many of a parameter's values a refused ``--where`` names.
WHERE_VALUES_SHOWN = 10


def _where(experiments: list[Experiment], conditions: list[str]) -> list[Experiment]:
    chosen = experiments
    for condition in conditions:
        key, equals, wanted = condition.partition("=")
        if not equals or not key:
            raise MrunnerError(f"--where {condition!r}: expected KEY=VALUE, e.g. --where lr=0.1")
        if not any(key in experiment.parameters for experiment in experiments):
            names = dict.fromkeys(name for experiment in experiments for name in experiment.parameters)
            raise MrunnerError(f"--where {condition!r}: no parameter {key!r}; parameters: {', '.join(names) or 'none'}")
        matching = [e for e in chosen if key in e.parameters and comparison.matches(e.parameters[key], wanted)]
        if not matching and "," in wanted and not set(wanted) & set(GRAMMAR):  # lr=0.1,1.0: any of them
            alternatives = wanted.split(",")
            matching = [
                e
                for e in chosen
                if key in e.parameters and any(comparison.matches(e.parameters[key], one) for one in alternatives)
            ]
        if not matching:  # as the grid's override would write it: true, null, [1,2], 'x,y', 1e-1
            spelled = _as_the_grid_reads(key, wanted)
            matching = [
                e
                for e in chosen
                if key in e.parameters and any(comparison.same(e.parameters[key], one) for one in spelled)
            ]
        if not matching:
            values = dict.fromkeys(_spelled(e.parameters[key]) for e in chosen if key in e.parameters)
            shown = ", ".join(list(values)[:WHERE_VALUES_SHOWN]) + (", ..." if len(values) > WHERE_VALUES_SHOWN else "")
            among = (
                f" of those with {' and '.join(conditions[: conditions.index(condition)])}"
                if chosen is not experiments
                else ""
            )
            raise MrunnerError(f"--where {condition!r}: no experiment{among} has it; {key} is {shown or 'never set'}")
        chosen = matching
    return chosen


def _as_the_grid_reads(key: str, wanted: str) -> list[Any]:
    """The values ``KEY=VALUE`` spans in Hydra's override grammar, the one the grid was written in (``true``,
    ``null``, ``[1,2]``, ``'x,y'``, ``a,b``): none when it is no override there. Hydra is imported only for a
    ``--where`` the plain comparison did not match."""
    from mrunner import grid, hydra_internals

    try:
        return [hydra_internals.plain(value) for value in grid.axis(grid.parse(f"{key}={wanted}")).values]
    except MrunnerError:
        return []


def _spelled(value: Any) -> str:
    """A parameter's value as ``--where`` takes it back (the table shows a null as ``-``, a bool as ``True``)."""
    if value is None or isinstance(value, bool):
        return json.dumps(value)
    return _cell(value)


def _records(
    found: list[Row],
    axes: list[str],
    constants: dict[str, Any],
    names: list[str],
    over: list[str],
    shown: comparison.Labels,
) -> list[dict[str, Any]]:
    """The rows as flat records, every parameter included, for pandas (``pd.DataFrame(records)``); each key
    once (``comparison.Labels``)."""
    records = []
    for row in found:
        record: dict[str, Any] = (
            {shown.own["index"]: row.indices[0]} if not over else {shown.own["n"]: len(row.indices)}
        )
        record.update(constants)
        record.update(row.axes)
        for name in names:
            record[shown.metrics[name]] = _within_int64(row.metrics.get(name))
            if over:
                record[shown.std[name]] = row.std.get(name)
                record[shown.count[name]] = row.count.get(name, 0)
        record[shown.own["state"]] = row.state or "completed"
        records.append(record)
    return records


def _strict(records: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[str]]:
    """The records with each nan, inf and -inf as null, and the columns that held one: strict JSON has no such
    numbers (Python's ``NaN``/``Infinity`` are refused by jq and most readers but Python's and pandas'), and null
    is what both jq and ``pandas.read_json`` read as a missing number (NaN in a float column)."""
    unwritten: dict[str, None] = {}

    def finite(key: str, value: Any) -> Any:
        if isinstance(value, float) and not math.isfinite(value):
            unwritten[key] = None
            return None
        if isinstance(value, list):
            return [finite(key, item) for item in value]
        if isinstance(value, dict):
            return {k: finite(key, item) for k, item in value.items()}
        return value

    return [{key: finite(key, value) for key, value in record.items()} for record in records], list(unwritten)


def _within_int64(value: float | None) -> float | None:
    """A whole number beyond 64 bits as a float: pandas reads no such integer (``read_json`` refuses the whole
    document, "Value is too big!"; ``read_csv`` makes its column text), and a float is what it is then anyway."""
    if type(value) is int and not -(2**63) <= value < 2**63:
        return float(value)
    return value


def _write_csv(records: list[dict[str, Any]], path: Path) -> None:
    columns = list(dict.fromkeys(key for record in records for key in record))
    if str(path) == "-":
        _csv_to(sys.stdout, records, columns)
        return
    with open(path, "w", newline="", encoding="utf-8") as stream:
        _csv_to(stream, records, columns)
    print(f"wrote {len(records)} row{'s' * (len(records) != 1)} to {path}")


def _csv_to(stream: Any, records: list[dict[str, Any]], columns: list[str]) -> None:
    writer = csv.DictWriter(stream, columns)
    writer.writeheader()
    for record in records:
        writer.writerow(
            {key: json.dumps(value) if isinstance(value, (list, dict)) else value for key, value in record.items()}
        )


def _table(
    sweep: Sweep,
    runs: list[Run],
    found: list[Row],
    axes: list[str],
    constants: dict[str, Any],
    names: list[str],
    over: list[str],
    how: str,
    shown: comparison.Labels,
) -> str:
    lines = [
        fit(
            f"sweep {sweep.id}: {following.summary(runs)}; metrics: {how}"
            + (f", mean ± std over {', '.join(over)}" if over else "")
        )
    ]
    if constants:  # the lines above the table are broken between words to the terminal's width, as it fits
        lines.append(fit("constant: " + ", ".join(f"{key}={_cell(value)}" for key, value in constants.items())))
    headers = (
        (["#"] if not over else [])
        + axes
        + [shown.metrics[name] for name in names]
        + ([shown.own["n"]] if over else [])
        + [shown.own["state"]]
    )
    cells = []
    for row in found:
        values = []
        for name in names:
            if name not in row.metrics:
                values.append("-")
            elif over:
                cell = comparison.number(row.metrics[name])
                if name in row.std:  # a mean of one value has no spread to show
                    cell += f" ± {comparison.number(row.std[name])}"
                held = row.count.get(name, 0)
                # a mean over fewer than the row's n (a seed that failed before reporting) says so
                values.append(cell if held == len(row.indices) else f"{cell} ({held} of {len(row.indices)})")
            else:
                values.append(comparison.number(row.metrics[name]))
        first = [] if over else [row.indices[0]]
        cells.append(
            first
            + [_cell(row.axes[axis]) for axis in axes]
            + values
            + ([len(row.indices)] if over else [])
            + [row.state]
        )
    every_completed = all(not row.state for row in found)  # an empty column gives way first on a narrow terminal
    lines.append(render(headers, cells, drop=[len(headers) - 1] if every_completed else []))
    return "\n".join(lines)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    return json.dumps(value) if isinstance(value, (list, dict)) else str(value)
