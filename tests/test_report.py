"""``mrunner.report``: one whole line per call, durable across attempts and processes, refused values named."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mrunner import metrics
from mrunner.layout import METRICS_FILE

REPO = Path(__file__).resolve().parent.parent


def run_script(code: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    """``code`` in a fresh Python that imports mrunner from this checkout, as an experiment does."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MRUNNER_")}
    return subprocess.run(
        [sys.executable, "-c", code],
        env={**clean, "PYTHONPATH": str(REPO), **env},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_metrics_file_name_is_the_layouts():
    assert metrics.METRICS_FILE == METRICS_FILE


def test_each_call_appends_one_line_and_attempts_append_to_the_same_file(tmp_path):
    code = "import mrunner\nfor s in range(3): mrunner.report({'loss': 1.0 / (s + 1), 'n': s}, step=s + int(os.environ['MRUNNER_ATTEMPT']))"
    for attempt in ("0", "1"):
        done = run_script(
            "import os\n" + code, {"MRUNNER_EXPERIMENT_DIR": str(tmp_path), "MRUNNER_ATTEMPT": attempt}, tmp_path
        )
        assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in (tmp_path / METRICS_FILE).read_text().splitlines()]
    assert [(line["attempt"], line["step"]) for line in lines] == [(0, 0), (0, 1), (0, 2), (1, 1), (1, 2), (1, 3)]
    assert all(isinstance(line["time"], float) for line in lines)
    # steps 1 and 2 were reported by both attempts: the later one's values count
    assert metrics.read(str(tmp_path / METRICS_FILE)) == {
        "loss": {0: 1.0, 1: 1.0, 2: 0.5, 3: 1 / 3},
        "n": {0: 0, 1: 0, 2: 1, 3: 2},
    }


def test_several_processes_of_one_experiment_write_whole_lines(tmp_path):
    code = (
        "import os, mrunner\n"
        "pids = []\n"
        "for rank in range(4):\n"
        "    pid = os.fork()\n"
        "    if pid == 0:\n"
        "        for s in range(2000): mrunner.report({f'rank{rank}': float(s), 'pad' * 20: 1.5}, step=s)\n"
        "        os._exit(0)\n"
        "    pids.append(pid)\n"
        "for pid in pids: os.waitpid(pid, 0)\n"
    )
    done = run_script(code, {"MRUNNER_EXPERIMENT_DIR": str(tmp_path)}, tmp_path)
    assert done.returncode == 0, done.stderr
    lines = (tmp_path / METRICS_FILE).read_text().splitlines()
    assert len(lines) == 8000 and all(json.loads(line)["metrics"] for line in lines)
    curves = metrics.read(str(tmp_path / METRICS_FILE))
    assert all(curves[f"rank{rank}"] == {s: float(s) for s in range(2000)} for rank in range(4))


@pytest.mark.parametrize(
    "call, message",
    [
        ("mrunner.report({'loss': 'low'})", "ValueError: mrunner.report: metric 'loss' is 'low', not a number"),
        ("mrunner.report({'acc': None})", "ValueError: mrunner.report: metric 'acc' is None, not a number"),
        ("mrunner.report({'ok': True})", "ValueError: mrunner.report: metric 'ok' is True, not a number"),
        ("mrunner.report({'loss': 1.0}, step=1.5)", "TypeError: mrunner.report: step must be an int, not float"),
        ("mrunner.report({'loss': 1.0}, step=True)", "TypeError: mrunner.report: step must be an int, not bool"),
        (
            "mrunner.report({'loss': 1.0}, step=-1)",
            "ValueError: mrunner.report: step must be 0 or more (below 2**63), not -1",
        ),
        (
            "mrunner.report({'loss': 1.0}, step=2**63)",
            "ValueError: mrunner.report: step must be 0 or more (below 2**63), not 9223372036854775808",
        ),
        (
            "mrunner.report(0.5)",
            "TypeError: mrunner.report: metrics must map names to numbers, e.g. mrunner.report({'loss': loss}), not 0.5",
        ),
        (
            "mrunner.report([('loss', 1)])",
            "TypeError: mrunner.report: metrics must map names to numbers, e.g. mrunner.report({'loss': loss}), not [('loss', 1)]",
        ),
        ("mrunner.report({1: 0.5})", "TypeError: mrunner.report: metric names are non-empty strings, not 1"),
        ("mrunner.report({'': 0.5})", "TypeError: mrunner.report: metric names are non-empty strings, not ''"),
        ("mrunner.report({'m': {'a': 1}})", "ValueError: mrunner.report: metric 'm' is {'a': 1}, not a number"),
        ("mrunner.report({'m': [1.0]})", "ValueError: mrunner.report: metric 'm' is [1.0], not a number"),
        ("mrunner.report({'m': 1j})", "ValueError: mrunner.report: metric 'm' is 1j, not a number"),
        ("mrunner.report({'m': b'1'})", "ValueError: mrunner.report: metric 'm' is b'1', not a number"),
        (
            "mrunner.report({'m': 10**400})",
            "ValueError: mrunner.report: metric 'm' is 100000000000000000...0000000000000000000, too large for a number",
        ),
        (  # infinite only once converted: an overflow, not the experiment's value (an inf given is kept)
            "import decimal\nmrunner.report({'m': decimal.Decimal('1e400')})",
            "ValueError: mrunner.report: metric 'm' is Decimal('1E+400'), too large for a number",
        ),
        (
            "import decimal\nmrunner.report({'m': -decimal.Decimal('1e400')})",
            "ValueError: mrunner.report: metric 'm' is Decimal('-1E+400'), too large for a number",
        ),
        (
            "import fractions\nmrunner.report({'m': fractions.Fraction(10**400, 3)})",
            "ValueError: mrunner.report: metric 'm' is Fraction(1000...0000000000, 3), too large for a number",
        ),
        (
            "import numpy\nmrunner.report({'m': numpy.longdouble('1e400')})",
            "ValueError: mrunner.report: metric 'm' is np.longdouble('1e+400'), too large for a number",
        ),
        (
            "import numpy\nmrunner.report({'m': numpy.complex128(1 + 2j)})",
            "ValueError: mrunner.report: metric 'm' is np.complex128(1+2j), not a number",
        ),
        (
            "import numpy\nmrunner.report({'m': numpy.array([0.5 + 0j])})",
            "ValueError: mrunner.report: metric 'm' is array([0.5+0.j]), not a number",
        ),
        (
            "import numpy\nmrunner.report({'m': numpy.str_('1')})",
            "ValueError: mrunner.report: metric 'm' is np.str_('1'), not a number",
        ),
        (
            "import numpy\nmrunner.report({'m': numpy.bool_(True)})",
            "ValueError: mrunner.report: metric 'm' is np.True_, not a number",
        ),
        (
            "import numpy\nmrunner.report({'m': numpy.ones(2)})",
            "ValueError: mrunner.report: metric 'm' is array([1., 1.]), not a single number",
        ),
        (
            "import numpy\nmrunner.report({'m': 1.0}, step=numpy.float32(2))",
            "TypeError: mrunner.report: step must be an int, not float32",
        ),
    ],
)
def test_a_value_that_is_not_a_number_is_refused_naming_its_key(tmp_path, call, message):
    done = run_script(f"import mrunner\n{call}", {"MRUNNER_EXPERIMENT_DIR": str(tmp_path)}, tmp_path)
    assert done.returncode == 1 and done.stderr.strip().splitlines()[-1] == message
    assert not (tmp_path / METRICS_FILE).exists() or not (tmp_path / METRICS_FILE).read_text()


def test_numbers_of_numpy_and_the_standard_library_are_numbers(tmp_path):
    """numpy's scalars (a float32 mean, an int64 count, a step from numpy.arange), a 0-d array, Fraction and
    Decimal are numbers: recorded as plain JSON numbers (json cannot write them as they are)."""
    pytest.importorskip("numpy")
    code = (
        "import decimal, fractions, numpy, mrunner\n"
        "mrunner.report({'f32': numpy.float32(0.5), 'i64': numpy.int64(3), 'f16': numpy.float16(0.25),"
        " 'nan': numpy.float32('nan'), 'zero_d': numpy.array(0.75), 'third': fractions.Fraction(1, 4),"
        " 'dec': decimal.Decimal('0.125')}, step=numpy.int64(4))\n"
    )
    done = run_script(code, {"MRUNNER_EXPERIMENT_DIR": str(tmp_path)}, tmp_path)
    assert done.returncode == 0, done.stderr
    line = json.loads((tmp_path / METRICS_FILE).read_text())
    assert line["step"] == 4 and isinstance(line["step"], int)
    metrics_ = line["metrics"]
    assert math.isnan(metrics_.pop("nan"))
    assert metrics_ == {"f32": 0.5, "i64": 3, "f16": 0.25, "zero_d": 0.75, "third": 0.25, "dec": 0.125}
    assert isinstance(metrics_["i64"], int)


def test_an_infinite_or_nan_value_given_is_kept_as_given(tmp_path):
    """A diverged loss is a measurement: an inf or nan the experiment gives (a float, numpy's, Decimal's) is
    recorded as it is; only a value that becomes one by its conversion is refused (above)."""
    pytest.importorskip("numpy")
    code = (
        "import decimal, numpy, mrunner\n"
        "mrunner.report({'inf': float('inf'), 'ninf': numpy.float64('-inf'), 'f32': numpy.float32('inf'),"
        " 'dinf': decimal.Decimal('-Infinity'), 'dnan': decimal.Decimal('NaN'), 'nan': float('nan'),"
        " 'big': decimal.Decimal('1e300'), 'tiny': decimal.Decimal('1e-400')}, step=0)\n"
    )
    done = run_script(code, {"MRUNNER_EXPERIMENT_DIR": str(tmp_path)}, tmp_path)
    assert done.returncode == 0, done.stderr
    found = json.loads((tmp_path / METRICS_FILE).read_text())["metrics"]
    assert math.isnan(found.pop("dnan")) and math.isnan(found.pop("nan"))
    assert found == {"inf": math.inf, "ninf": -math.inf, "f32": math.inf, "dinf": -math.inf, "big": 1e300, "tiny": 0.0}


def test_outside_mrunner_it_does_nothing_and_warns_once(tmp_path):
    done = run_script("import mrunner\nfor s in range(5): mrunner.report({'loss': 0.5}, step=s)", {}, tmp_path)
    assert done.returncode == 0
    assert done.stderr.splitlines() == [
        "mrunner: MRUNNER_EXPERIMENT_DIR is not set (not run by mrunner): mrunner.report() records nothing"
    ]
    assert list(tmp_path.iterdir()) == []


def test_a_torn_last_line_and_reports_without_steps(tmp_path):
    path = tmp_path / METRICS_FILE
    lines = [
        {"attempt": 0, "step": None, "time": 1.0, "metrics": {"loss": 3.0}},
        {"attempt": 0, "step": None, "time": 2.0, "metrics": {"loss": 2.0, "acc": 0.5}},
    ]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines) + '{"attempt": 0, "step": 7, "metr')
    assert metrics.read(str(path)) == {"loss": {0: 3.0, 1: 2.0}, "acc": {0: 0.5}}


def test_a_report_without_a_step_after_stepped_ones_comes_after_them(tmp_path):
    """A final value reported without a step after steps 0..2 is the metric's last value: it was put at the
    metric's first step without a step (0), over the value reported there, so `results` showed neither."""
    path = tmp_path / METRICS_FILE
    lines = [{"attempt": 0, "step": s, "time": 1.0 + s, "metrics": {"loss": 10.0 - s}} for s in range(3)]
    lines += [{"attempt": 0, "step": None, "time": 5.0, "metrics": {"loss": 0.5}}]
    lines += [{"attempt": 0, "step": 1, "time": 6.0, "metrics": {"loss": 7.0}}]  # back to an earlier step
    lines += [{"attempt": 0, "step": None, "time": 7.0, "metrics": {"loss": 0.25, "acc": 1.0}}]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    expected = {"loss": {0: 10.0, 1: 7.0, 2: 8.0, 3: 0.5, 4: 0.25}, "acc": {0: 1.0}}
    assert metrics.read(str(path)) == expected
    found = [(n, s, v) for _, n, s, v, _ in metrics.points(metrics.entries(path.read_bytes()), {})]
    assert found == [("loss", 0, 10.0), ("loss", 1, 9.0), ("loss", 2, 8.0), ("loss", 3, 0.5), ("loss", 1, 7.0)] + [
        ("loss", 4, 0.25),
        ("acc", 0, 1.0),
    ]


def test_an_attempt_after_a_torn_line_starts_on_a_line_of_its_own(tmp_path):
    (tmp_path / METRICS_FILE).write_text(json.dumps({"attempt": 0, "step": 0, "metrics": {"loss": 1.0}}) + '\n{"att')
    code = "import mrunner\nmrunner.report({'loss': 0.5}, step=1)"
    done = run_script(code, {"MRUNNER_EXPERIMENT_DIR": str(tmp_path), "MRUNNER_ATTEMPT": "1"}, tmp_path)
    assert done.returncode == 0, done.stderr
    assert metrics.read(str(tmp_path / METRICS_FILE)) == {"loss": {0: 1.0, 1: 0.5}}


@pytest.mark.parametrize(
    "lines, fast",
    [
        ([(0, s, {"loss": 1 / (1 + s), "acc": s, "lr": 0.001}) for s in range(50)], True),
        ([(2, s, {"loss": float("nan") if s == 3 else -s * 1e-9}) for s in range(9)], True),
        ([(0, s, {"loss": s}) for s in (0, 1, 1, 5, 2)], True),  # a step again (the later line), out of order
        ([(0, 0, {"loss": 1.0}), (0, 1, {"loss": 0.5, "acc": 0.1})], False),  # another metric joins
        ([(0, 0, {"loss": 1.0}), (1, 0, {"loss": 0.7}), (0, 1, {"loss": 0.2})], False),  # two attempts
        ([(0, None, {"loss": 1.0}), (0, None, {"loss": 0.5})], False),  # no steps
        ([(0, 0, {"a{b}": 1.0, 'c"d, e': 2})], True),  # names that JSON and the pattern escape
        ([(0, s, {"loss": 1.0, "acc": 0.5} if s != 1 else {"acc": 0.5, "loss": 1.0}) for s in range(3)], False),
        ([(0, 0, {"loss": 1.0}), (0, 1, {"loss": "1.5"})], False),  # a value that is no number
    ],
)
def test_the_fast_read_of_one_attempt_gives_what_the_general_read_gives(tmp_path, lines, fast):
    """`results` reads the common file (one attempt, every report with a step) by a faster path: the same
    curves, in the same step order, as the general path, and the general path for anything else."""
    path = tmp_path / METRICS_FILE
    text = "".join(
        json.dumps({"attempt": a, "step": s, "time": 1.5 + s if s else 1.0, "metrics": m}) + "\n" for a, s, m in lines
    )
    for content in (text, text + '{"attempt": 0, "step": 99, "tim'):  # whole, then with a torn last line
        path.write_text(content)
        general = metrics.curves(metrics.entries(content.encode()))
        found = metrics.read(str(path))
        assert json.dumps(found) == json.dumps(general)  # values, kinds and step order
        assert (metrics._one_attempt_curves(content.encode()) is not None) == (fast and content == text)


def test_values_and_steps_that_report_never_writes_are_skipped_by_every_reader(tmp_path):
    """A line by another hand (a string, null, a bool or a dict as a value; a step that is no int) would make
    `results` fail with a TypeError in its aggregates: the readers leave such values out, the rest of the
    line and the file stay."""
    path = tmp_path / METRICS_FILE
    good = [json.dumps({"attempt": 0, "step": s, "time": 1.0, "metrics": {"loss": 1.0 / (s + 1)}}) for s in range(3)]
    odd = [
        '{"attempt": 0, "step": 3, "time": 1.0, "metrics": {"loss": "x"}}',
        '{"attempt": 0, "step": 4, "time": 1.0, "metrics": {"loss": null, "acc": 0.5}}',
        '{"attempt": 0, "step": 5, "time": 1.0, "metrics": {"loss": true, "acc": {"a": 1}}}',
        '{"attempt": 0, "step": "6", "time": 1.0, "metrics": {"loss": 7.0}}',
        '{"attempt": 0, "step": 1.5, "time": 1.0, "metrics": {"loss": 7.0}}',
        "[1, 2]",
    ]
    path.write_text("\n".join(good + odd) + "\n")
    expected = {"loss": {0: 1.0, 1: 0.5, 2: 1 / 3}, "acc": {4: 0.5}}
    assert metrics.read(str(path)) == expected
    found = list(metrics.points(metrics.entries(path.read_bytes()), {}))
    assert [(name, step, value) for _, name, step, value, _ in found] == [
        ("loss", 0, 1.0),
        ("loss", 1, 0.5),
        ("loss", 2, 1 / 3),
        ("acc", 4, 0.5),
    ]
    path.write_text("\n".join(good + odd[:1]) + "\n")  # one attempt, every step an int: the fast path's file
    assert metrics.read(str(path)) == {"loss": {0: 1.0, 1: 0.5, 2: 1 / 3}}


@pytest.mark.parametrize(
    "lines",
    [
        [(0, s, {"loss": 1 / (1 + s), "acc": s, "lr": 0.001}) for s in range(50)],  # the fast path
        [(0, s, {"loss": s}) for s in (0, 1, 1, 5, 2)],  # a step again, out of order
        [(0, 0, {"loss": 1.0}), (1, 0, {"loss": 0.7}), (0, 1, {"loss": 0.2})],  # a later attempt's value counts
        [(0, None, {"loss": 1.0}), (0, None, {"loss": 0.5, "acc": 3})],  # no steps; a metric joins
        [(0, s, {"loss": [float("nan"), 1.0, float("inf"), -2, 3][s]}) for s in range(5)],
        [(0, 0, {"loss": float("inf")}), (0, 1, {"loss": float("-inf")})],  # no exact sum: what floats give
        [(0, 0, {"loss": 1e308}), (0, 1, {"loss": 1e308})],  # an overflowing sum
        [(0, s, {"loss": 10**6 + s}) for s in range(3)],  # ints stay ints
    ],
)
def test_a_files_summary_is_what_the_table_makes_of_its_curves(tmp_path, lines):
    """What the Slurm backend sends for `results`' table instead of a metrics file (made on the cluster):
    per metric the four aggregates of `--agg` exactly as `results` makes them of the file's curves, and the
    last step, whatever the file (a torn last line too)."""
    from mrunner import comparison

    text = "".join(json.dumps({"attempt": a, "step": s, "time": 1.5, "metrics": m}) + "\n" for a, s, m in lines)
    for content in (text, text + '{"attempt": 0, "step": 99, "tim'):
        data = content.encode()
        curves = metrics.curves_of(data)
        expected = {
            name: [comparison.aggregate(curve, how) for how in comparison.AGGREGATES] + [list(curve)[-1]]
            for name, curve in curves.items()
        }
        found = json.loads(metrics.summarised(data))  # as it crosses the network
        assert json.dumps(found) == json.dumps(expected)  # values, kinds (int or float) and metric order
        experiment = comparison.Experiment(0, "e", "completed", 0, {}, {}, found)
        for how in comparison.AGGREGATES:
            assert json.dumps(comparison.value(experiment, "loss", how)) == json.dumps(
                comparison.aggregate(curves["loss"], how)
            )


@pytest.mark.parametrize("at", [0, 1, 2])
def test_a_nan_anywhere_in_a_curve_makes_its_min_max_and_mean_nan_wherever_it_is(at):
    """A diverged loss (nan) is kept as given, and `--agg min|max` say so as `--agg mean` does, wherever the nan
    lies: Python's min and max keep a nan only when it comes first, so a nan after the first step was skipped
    and the table's min or max depended on the step it appeared at. The cluster's summary says the same."""
    from mrunner import comparison

    values = [1.0, 5.0, 3.0]
    values[at] = float("nan")
    curve = dict(enumerate(values))
    for how in ("min", "max", "mean"):
        assert math.isnan(comparison.aggregate(curve, how)), (how, values)
    text = "".join(
        json.dumps({"attempt": 0, "step": s, "time": 1.5, "metrics": {"loss": v}}) + "\n" for s, v in curve.items()
    )
    *_, lowest, highest, mean, step = metrics.summary(text.encode())["loss"]
    assert step == 2 and all(math.isnan(v) for v in (lowest, highest, mean))


def test_the_notes_of_live_forwarding_are_skipped_by_every_reader(tmp_path):
    """A live-tracked experiment's file holds its processes' forwarding notes (``metrics.FORWARDING``) among its
    reports, first of all: each reader (the fast path of one attempt's columns too) reads the reports as if the
    notes were not there."""
    reports = [
        {"attempt": 0, "step": s, "time": 1.0 + s, "metrics": {"loss": 1.0 / (1 + s), "acc": s / 10}} for s in range(5)
    ]
    notes = [
        {"attempt": 0, "time": 0.5, metrics.FORWARDING: "MLflow", "process": 12},
        {"attempt": 0, "time": 0.6, metrics.FORWARDING: "W&B", "process": 12},
        {"attempt": 0, "time": 9.0, metrics.FORWARDED: "MLflow", "process": 12},
    ]
    plain = "".join(json.dumps(line) + "\n" for line in reports).encode()
    noted = "".join(json.dumps(line) + "\n" for line in [*notes[:2], *reports[:3], notes[2], *reports[3:]]).encode()
    assert metrics._one_attempt_curves(noted) is not None  # the fast path
    assert metrics.curves_of(noted) == metrics.curves_of(plain) == metrics.curves(metrics.entries(noted))
    assert metrics.summary(noted) == metrics.summary(plain)
    from mrunner import sender, tracking, wandb_run

    names = (metrics.FORWARDING, metrics.FORWARDED)  # spelt out where metrics cannot be imported (a cycle)
    assert names == (sender.FORWARDING, sender.FORWARDED) == (wandb_run.FORWARDING, wandb_run.FORWARDED)
    assert names == (tracking.FORWARDING, tracking.FORWARDED)


@pytest.mark.parametrize("descending", [False, True])
def test_sort_puts_nan_after_every_number_and_orders_the_numbers(descending):
    """A diverged experiment's nan is no number to order by: it comes after the numbers either way, and before
    the rows without the metric. Python's sort with a nan among its keys leaves the numbers around it unordered
    (every comparison with nan is false): `--sort loss` showed 3, nan, 1, 2 as it found them."""
    from mrunner import comparison

    values = [3.0, math.nan, 1.0, None, 2.0, -math.inf, math.nan]
    found = [comparison.Row({"k": k}, {} if v is None else {"loss": v}, "", [k]) for k, v in enumerate(values)]
    shown = comparison.labels(["k"], ["loss"])
    ordered = comparison.sort(found, "-loss" if descending else "loss", ["k"], ["loss"], shown)
    numbers = [-math.inf, 1.0, 2.0, 3.0]
    expected = (numbers[::-1] if descending else numbers) + ["nan", "nan", None]
    assert ["nan" if (v := row.metrics.get("loss")) is not None and math.isnan(v) else v for row in ordered] == expected
