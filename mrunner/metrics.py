"""``mrunner.report(metrics, step=None)``: what an experiment measured, kept in its own folder.

Each call appends one line of JSON (``{"attempt", "step", "time", "metrics"}``) to the experiment's metrics
file (``mrunner.layout.METRICS_FILE`` in ``MRUNNER_EXPERIMENT_DIR``) with a single ``write`` on a descriptor
opened with ``O_APPEND``: the kernel places each line at the file's end, so several processes of one
experiment (DDP ranks) append whole lines side by side, and a later attempt (a requeue, a resume) appends to
what the earlier ones wrote. Nothing is buffered in the process: a line written is on its way to the disk
even if the process is killed the next instant, and a kill mid-write leaves at most one torn last line,
which readers skip (``mrunner.metrics``).

Then it forwards the same numbers to every tracker the context enabled in the experiment (Neptune, MLflow,
W&B). A context with ``tracking: deferred`` enables MLflow here not at all: mrunner uploads the file's lines
from the submitting machine when it brings them back (``mrunner.uploads``).

Part of the experiment side shipped with each sweep (``mrunner.runtime``): the standard library only; a
tracker's package is imported on the first report that forwards to it.
"""

from __future__ import annotations

import json
import operator
import os
import sys
import time
from collections.abc import Callable, Iterator, Mapping

TYPE_CHECKING = False
if TYPE_CHECKING:  # the annotations only: an experiment does not pay for importing ``typing``
    from typing import Any

EXPERIMENT_DIR_VARIABLE = "MRUNNER_EXPERIMENT_DIR"  # the names of mrunner.layout's contract
ATTEMPT_VARIABLE = "MRUNNER_ATTEMPT"
METRICS_FILE = "mrunner-metrics.jsonl"  # the same as mrunner.layout.METRICS_FILE

_descriptor: int | None = None
_opened_by: int | None = None  # the process that opened it: a forked child opens its own
_attempt = 0
_warned = False
_forwarders: list[Callable[[dict[str, float], int | None, float], None]] | None = None


def report(metrics: Mapping[str, Any], step: int | None = None) -> None:
    """Record ``metrics`` (names to numbers), optionally at training step ``step``.

    ``mrunner results SWEEP`` shows them as a table over the grid; trackers the context enables receive
    them too. Cheap enough for every training step. For a step reported twice (an attempt that restarted
    from an earlier checkpoint) the later attempt's value counts. Outside mrunner (no
    ``MRUNNER_EXPERIMENT_DIR``) it does nothing and warns once.
    """
    values = _numbers(metrics)
    if step is not None and (type(step) is not int or not 0 <= step < _STEP_LIMIT):
        step = _step(step)  # the common case, a plain int in range, costs no call
    descriptor = _open()
    if descriptor is None:
        return
    now = time.time()  # the line's time is the tracker's too: an upload that sends the line again repeats the point
    line = json.dumps({"attempt": _attempt, "step": step, "time": now, "metrics": values})
    os.write(descriptor, (line + "\n").encode())
    for forward in _forwarders or ():
        forward(values, step, now)


#: The steps every tracker takes (MLflow and W&B keep a step as a signed 64-bit number).
_STEP_LIMIT = 2**63


def _numbers(metrics: Mapping[str, Any]) -> dict[str, float]:
    """``metrics`` as plain numbers; a name that is not a string or a value that is not a number is refused
    here, in the experiment, where the mistake is made (a numpy scalar or a tensor of one element counts as
    its number; a bool, numpy's too, is no measurement)."""
    if type(metrics) is not dict and not isinstance(metrics, Mapping):
        raise TypeError(
            f"mrunner.report: metrics must map names to numbers, e.g. mrunner.report({{'loss': loss}}), not {metrics!r}"
        )
    values: dict[str, float] = {}
    for key, value in metrics.items():
        if not isinstance(key, str) or not key:
            raise TypeError(f"mrunner.report: metric names are non-empty strings, not {key!r}")
        kind = type(value)
        if kind is float or (kind is int and -_FLOAT_LIMIT < value < _FLOAT_LIMIT):
            values[key] = value  # kept as given
            continue
        if isinstance(value, (str, bytes, bool)) or not hasattr(value, "__float__") or _no_real(value):
            raise ValueError(f"mrunner.report: metric {key!r} is {_shown(value)}, not a number")
        try:  # numpy's scalars (float32, int64), Fraction, Decimal, a tensor of one element: its number
            number = _whole(value) if hasattr(value, "__index__") else float(value)
        except OverflowError:
            raise ValueError(f"mrunner.report: metric {key!r} is {_shown(value)}, too large for a number") from None
        except (TypeError, ValueError):
            raise ValueError(f"mrunner.report: metric {key!r} is {_shown(value)}, not a single number") from None
        if number - number != 0 and not _as_given(value, number):
            # infinite or nan only once converted (Decimal('1e400'), a long double beyond a float's range): the
            # conversion's overflow, not the experiment's value, which an infinite or nan value given is (kept)
            raise ValueError(f"mrunner.report: metric {key!r} is {_shown(value)}, too large for a number")
        values[key] = number
    return values


def _as_given(value: Any, number: float) -> bool:
    """Whether ``number``, infinite or nan, is ``value`` itself (a diverged loss: inf, nan), not an overflow of
    its conversion (``float(Decimal('1e400'))`` is inf without a word)."""
    try:
        return bool(value != value) if number != number else bool(value == number)
    except Exception:  # a comparison the value's type refuses: no telling, so no number
        return False


def _whole(value: Any) -> float:
    """An integer of numpy's (or another library's) as a plain int, or a float where it is none (an array of
    one float has ``__index__`` but refuses it)."""
    try:
        whole = operator.index(value)
    except TypeError:
        return float(value)
    float(whole)  # OverflowError beyond a float's range, as for a plain int
    return whole


def _shown(value: Any) -> str:
    """``repr(value)`` cut short, so that a refusal stays one readable line."""
    import reprlib

    return reprlib.repr(value)


#: An int beyond this is no float: refused (as float(value) does) instead of written and unreadable later.
_FLOAT_LIMIT = 2**1023


def _is_bool(value: Any) -> bool:
    """Whether ``value`` is a boolean of numpy or a tensor library (``numpy.bool_``, a ``torch.bool`` tensor)."""
    return str(getattr(value, "dtype", "")) in ("bool", "torch.bool")


def _no_real(value: Any) -> bool:
    """Whether ``value`` is of numpy's or a tensor library's kinds that are no real number though they convert
    to one: a boolean (``_is_bool``), a complex number (``float()`` of numpy's drops its imaginary part with
    only a warning)."""
    kind = str(getattr(value, "dtype", ""))
    return kind in ("bool", "torch.bool") or "complex" in kind


def _step(step: Any) -> int:
    """``step`` as an int: any whole number (numpy's too), from 0 to a 64-bit step, as every tracker keeps it."""
    if isinstance(step, bool) or _is_bool(step):
        raise TypeError(f"mrunner.report: step must be an int, not {type(step).__name__}")
    try:
        whole = operator.index(step)
    except TypeError:
        raise TypeError(f"mrunner.report: step must be an int, not {type(step).__name__}") from None
    if not 0 <= whole < _STEP_LIMIT:
        raise ValueError(f"mrunner.report: step must be 0 or more (below 2**63), not {whole}")
    return whole


def _open() -> int | None:
    global _descriptor, _opened_by, _attempt, _warned, _forwarders
    if _descriptor is not None and _opened_by == os.getpid():
        return _descriptor
    folder = os.environ.get(EXPERIMENT_DIR_VARIABLE)
    if not folder:
        if not _warned:
            _warned = True
            print(
                f"mrunner: {EXPERIMENT_DIR_VARIABLE} is not set (not run by mrunner): mrunner.report() records nothing",
                file=sys.stderr,
                flush=True,
            )
        return None
    path = os.path.join(folder, METRICS_FILE)
    _descriptor = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
    end = os.lseek(_descriptor, 0, os.SEEK_END)
    if end and os.pread(_descriptor, 1, end - 1) != b"\n":
        os.write(_descriptor, b"\n")  # an earlier process was killed mid-line: end it, so ours stay whole
    _opened_by = os.getpid()
    _attempt = int(os.environ.get(ATTEMPT_VARIABLE) or 0)
    _forwarders = _enabled_forwarders()
    return _descriptor


def start_forwarding() -> None:
    """Start forwarding to the context's trackers now, before any report (``get_configuration()``): the MLflow
    sender finds the experiment's run, or gives up on a server that does not answer, within its bound."""
    _open()


def _enabled_forwarders() -> list[Callable[[dict[str, float], int | None, float], None]]:
    """The trackers this experiment's context enabled, each as a function taking (metrics, step, time)."""
    from mrunner import tracking

    return tracking.forwarders(untracked)


#: The key of the line an experiment appends when live forwarding to a tracker failed (its server down): the
#: submitting machine then uploads the experiment's lines to it (``mrunner.uploads``). Readers skip the line.
UNTRACKED = "untracked"


def untracked(tracker: str, key: str = UNTRACKED) -> None:
    """Note in the metrics file that this process stopped forwarding to ``tracker`` (``mrunner.tracking``); with
    ``key`` ``FORWARDING`` or ``FORWARDED`` (below), that it started, or that its exit saw every point taken
    (one callable that the trackers' forwarding is given, rather than modules that import this one)."""
    descriptor = _open()
    if descriptor is not None:
        note = {"attempt": _attempt, "time": time.time(), key: tracker}
        if key != UNTRACKED:
            note["process"] = os.getpid()
        os.write(descriptor, (json.dumps(note) + "\n").encode())


#: The keys of the lines a process writes when it starts forwarding to a tracker whose points the catch-up can
#: send (MLflow, W&B, Neptune) and when its exit saw every point taken (``forwarded``). An opening without its
#: closing is a process that ended without mrunner's tracker exit (SIGKILL, the OOM killer, a lost node, ``os._exit``):
#: the tracker may lack its last points, and once the experiment has ended the submitting machine replays its
#: lines (``mrunner.uploads``). Readers skip the lines.
FORWARDING, FORWARDED = "forwarding", "forwarded"


# -- reading --------------------------------------------------------------------------------------------------


def read(path: str) -> dict[str, dict[int, float]]:
    """The curves a metrics file holds: metric -> {step: value}, the later attempt's value for a step that
    several reported. A report without a step is at the step after the highest its metric reached so far in
    its attempt (0, 1, ...; after a report at step 9, step 10), never over a value reported at a step. A line
    that is not whole JSON (the torn last line of a killed process) is skipped."""
    with open(path, "rb") as stream:
        return curves_of(stream.read())


def curves_of(data: bytes) -> dict[str, dict[int, float]]:
    """``read`` of a metrics file's content."""
    found = _one_attempt_curves(data)
    return found if found is not None else curves(entries(data))


def summary(data: bytes) -> dict[str, list[float]]:
    """What `mrunner results` shows of a metrics file's content without its curves: metric -> [last, min, max,
    mean, last step], each as ``mrunner.comparison.aggregate`` makes it of ``curves_of(data)``. Made where the
    file is (the Slurm backend's sender, ``mrunner.summaries``), so that a thousand experiments' table crosses
    the network as a thousand short lines instead of their files, and is parsed there."""
    columns = _one_attempt_columns(data)
    if columns is not None and all(a < b for a, b in zip(columns[1], columns[1][1:])):
        names, steps, values = columns  # each step once, in order: a column is its curve's values in step order
        return {name: _summarised(column, steps[-1]) for name, column in zip(names, values)}
    return {
        name: _summarised(list(series.values()), next(reversed(series))) for name, series in curves_of(data).items()
    }


def summarised(data: bytes) -> bytes:
    """``summary`` as the sender sends it: JSON (a float's text gives back that very float)."""
    return json.dumps(summary(data)).encode()


def _summarised(values: list[float], step: int) -> list[float]:
    return [values[-1], lowest(values), highest(values), mean(values), step]


def lowest(values: list[float]) -> float:
    """A curve's least value as `results` shows it (``--agg min``): nan where any value is nan, as its mean is
    (Python's ``min`` keeps a nan only when it comes first, so the answer would hang on the step it is at).
    ``mrunner.comparison.aggregate`` makes the same of a curve (this module cannot be imported there)."""
    import math

    return math.nan if any(map(math.isnan, values)) else min(values)


def highest(values: list[float]) -> float:
    """A curve's greatest value as `results` shows it (``--agg max``): nan where any value is nan (``lowest``)."""
    import math

    return math.nan if any(map(math.isnan, values)) else max(values)


def mean(values: list[float]) -> float:
    """The mean of a curve's values as `results` shows it (``--agg mean``): exact summation, and where that
    cannot be made (infinities of both signs, an overflow) what plain float arithmetic gives (nan, inf), never
    an error."""
    import math

    try:
        return math.fsum(values) / len(values)
    except OverflowError:  # a sum past a float's maximum: the values' shares summed (1e308 and 1e308: 1e308)
        try:
            return math.fsum(value / len(values) for value in values)
        except (ValueError, OverflowError):
            return sum(values) / len(values)
    except ValueError:
        return sum(values) / len(values)


#: Report's own lines of one attempt and one set of metric names, as json.dumps writes them: a pattern each,
#: made on the first file that has them (a sweep's files share a few).
_PATTERNS: dict[tuple[bytes, tuple[str, ...]], Any] = {}


def _one_attempt_curves(data: bytes) -> dict[str, dict[int, float]] | None:
    """``read``'s common case, several times faster (``_one_attempt_columns``); ``None`` for any other file,
    which the general path reads."""
    columns = _one_attempt_columns(data)
    if columns is None:
        return None
    names, steps, values = columns
    ordered = all(a < b for a, b in zip(steps, steps[1:]))
    found: dict[str, dict[int, float]] = {}
    for name, column in zip(names, values):
        series = dict(zip(steps, column))  # a step reported twice: the later line's value
        found[name] = series if ordered else dict(sorted(series.items()))
    return found


def _one_attempt_columns(data: bytes) -> tuple[tuple[str, ...], list[int], list[list[float]]] | None:
    """The names, steps and each metric's values in the file's order, when every line is one of report's, with
    a step, all of one attempt, all with the same metrics in the same order. One regular expression, made for
    the first line's attempt and metric names, takes each line whole and captures its step and values (never
    its time), and each metric's column goes through JSON as one list of numbers: no dict per line. ``None``
    for any other file (a torn line, another attempt, a report without a step or with other metrics, a line
    of another shape, a value that is no number)."""
    if b'"forwarding": "' in data:  # a tracked experiment's notes (``FORWARDING``): the lines around them count
        data = _without_notes(data)
    first = data[: data.find(b"\n") + 1]
    head = b'{"attempt": '
    if not first.startswith(head):
        return None
    try:
        opening = json.loads(first)
        names = tuple(opening["metrics"])
    except (ValueError, KeyError, TypeError):
        return None
    attempt = first[len(head) : first.index(b",")]
    pattern = _PATTERNS.get((attempt, names))
    if pattern is None:
        if not names or not attempt.lstrip(b"-").isdigit():
            return None
        import re

        pattern = _PATTERNS[attempt, names] = re.compile(
            rb'^\{"attempt": '
            + re.escape(attempt)
            + rb', "step": (\d+), "time": [-+0-9.eE]+, "metrics": \{'
            + b", ".join(re.escape(json.dumps(name).encode()) + rb": ([^,{}\n]+)" for name in names)
            + rb"\}\}\n",
            re.M,
        )
    lines = pattern.findall(data)
    if not lines or len(lines) != data.count(b"\n") or not data.endswith(b"\n"):
        return None  # each match is one whole line from its start: as many as lines means every line matched
    columns = list(zip(*lines))  # the steps, then each metric's values
    values = []
    for text in columns[1:]:
        try:
            column = json.loads(b"[" + b",".join(text) + b"]")
        except ValueError:
            return None
        if not set(map(type, column)) <= _NUMBERS:
            return None  # a value that is no number (a line by another hand): the general path skips it
        values.append(column)
    return names, list(map(int, columns[0])), values


def _without_notes(data: bytes) -> bytes:
    """``data`` without the whole lines ``_note`` wrote."""
    global _NOTES
    if _NOTES is None:
        import re

        _NOTES = re.compile(
            rb'^\{"attempt": -?\d+, "time": [-+0-9.eE]+, "forward(?:ing|ed)": "[^"\n]*", "process": \d+\}\n', re.M
        )
    return _NOTES.sub(b"", data)


_NOTES: Any = None


def entries(data: bytes) -> list[Any]:
    """The JSON objects of a metrics file's content, skipping any line that is not whole JSON."""
    text = data.decode("utf-8", "replace").strip()
    if not text:
        return []
    try:  # one parse of the whole file: several times faster than a parse per line
        return json.loads("[" + text.replace("\n", ",") + "]")
    except ValueError:  # a torn line (or interleaved writes on a file system without O_APPEND)
        found = []
        for line in text.splitlines():
            try:
                found.append(json.loads(line))
            except ValueError:
                continue
        return found


#: What a metric's value is in a file report wrote (JSON's numbers); a reader skips anything else.
_NUMBERS = frozenset((int, float))


def curves(lines: list[Any]) -> dict[str, dict[int, float]]:
    """``read`` of entries already parsed."""
    found: dict[str, dict[int, float]] = {}
    by: dict[str, dict[int, int]] = {}  # the attempt each kept value came from
    implicit: dict[tuple[int, str], int] = {}
    for entry in lines:  # ``points`` inlined and unrolled: this loop runs for every value `mrunner results` reads
        try:
            attempt, step, items = entry.get("attempt") or 0, entry.get("step"), entry["metrics"].items()
            if type(attempt) is not int:
                attempt = int(attempt)
        except (ValueError, KeyError, TypeError, AttributeError):
            continue  # not one of report's lines
        if step is not None and type(step) is not int:
            continue  # not one of report's lines (a line written by another hand)
        for name, value in items:
            if type(value) not in _NUMBERS:
                continue  # not a number: report never writes one
            at = step
            if at is None:
                at = implicit.get((attempt, name), 0)
                implicit[attempt, name] = at + 1
            elif at >= implicit.get((attempt, name), 0):
                implicit[attempt, name] = at + 1  # a report without a step after this one comes after it
            series = found.get(name)
            if series is None:
                series = found[name] = {}
                by[name] = {}
            attempts = by[name]
            earlier = attempts.get(at)
            if earlier is None or earlier <= attempt:
                series[at] = value
                attempts[at] = attempt
    return {name: dict(sorted(series.items())) for name, series in found.items()}


def points(lines: list[Any], implicit: dict[tuple[int, str], int]) -> Iterator[tuple[int, str, int, Any, float]]:
    """Each reported value of ``lines`` as ``(attempt, metric, step, value, time)``, in the file's order; a
    report without a step is at the step after the highest its metric reached so far in its attempt (0, 1,
    ...; after step 9, 10), kept in ``implicit`` (give the counts of the lines before, to continue them)."""
    for entry in lines:
        try:
            attempt, step, values = int(entry.get("attempt") or 0), entry.get("step"), entry["metrics"]
            items = values.items()
            at_time = float(entry.get("time") or 0.0)
        except (ValueError, KeyError, TypeError, AttributeError):
            continue  # not one of report's lines
        if step is not None and type(step) is not int:
            continue  # as ``curves`` reads it
        for name, value in items:
            if type(value) not in _NUMBERS:
                continue
            at = step
            if at is None:
                at = implicit.get((attempt, name), 0)
                implicit[attempt, name] = at + 1
            elif at >= implicit.get((attempt, name), 0):
                implicit[attempt, name] = at + 1
            yield attempt, name, at, value, at_time
