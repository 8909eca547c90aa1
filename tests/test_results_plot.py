"""`mrunner results --plot` and `--curves`: pictures written, log scales for geometric axes, and one line
telling how to install matplotlib where it is missing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mrunner import plot
from mrunner.testing import MrunnerCommand
from mrunner.testing.once import built_once
from mrunner.testing.plugin import use_home

TRAIN = """
import math, mrunner
c = mrunner.get_configuration()
for step in range(10):
    mrunner.report({"loss": (1 + 0.1 * c.seed) * math.exp(-c.lr * step) + c.width}, step=step)
"""
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def swept(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """One mrunner home holding a 12-experiment sweep with metrics, shared by the module's tests, which only
    read it (``results``): the sweep, not each test, pays for its experiments."""

    def build(folder: Path) -> None:  # once per test run, for every pytest-xdist worker
        home, project = folder / "home", folder / "project"
        project.mkdir()
        (project / "train.py").write_text(TRAIN)
        with pytest.MonkeyPatch.context() as patch:
            use_home(patch, home)
            grid = ["-m", "lr=0.001,0.01,0.1", "seed=0,1", "width=1,2", "--wait"]
            result = MrunnerCommand(project)("train.py", *grid)
        assert result.returncode == 0, result.stderr
        (folder / "sweep").write_text(result.stdout.strip().splitlines()[-1])

    folder = built_once(tmp_path_factory, "results-plot-sweep", build)
    return folder / "home", (folder / "sweep").read_text()


@pytest.fixture
def sweep(swept: tuple[Path, str], mrunner_home: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """The shared sweep's id, the test's ``mrunner`` reading the home that holds it."""
    home, sweep_id = swept
    use_home(monkeypatch, home)
    return sweep_id


def test_a_metric_against_an_axis_and_its_curves(sweep, mrunner, tmp_path):
    for args in (
        ["--plot", "loss", "--over", "seed"],
        ["--plot", "loss", "--x", "width"],
        ["--curves", "loss"],
        ["--curves", "loss", "--over", "seed"],
    ):
        target = tmp_path / "picture.png"
        drawn = mrunner("results", sweep, *args, "-o", str(target))
        assert drawn.returncode == 0 and drawn.stdout.strip() == f"wrote {target}", drawn.stderr
        assert target.read_bytes().startswith(PNG)
        target.unlink()


def test_a_picture_needs_a_file_and_an_axis_that_is_not_folded(sweep, mrunner):
    missing = mrunner("results", sweep, "--plot", "loss")
    assert missing.returncode != 0 and "add -o FILE.png" in missing.stderr
    folded = mrunner("results", sweep, "--plot", "loss", "--over", "seed", "--x", "seed", "-o", "x.png")
    assert folded.returncode != 0 and "cannot draw against 'seed'" in folded.stderr, folded.stderr
    every = mrunner("results", sweep, "--plot", "loss", "--over", "lr,seed,width", "-o", "x.png")
    assert every.returncode != 0 and every.stderr.strip().endswith("(--over lr,seed,width folds every axis)"), (
        every.stderr
    )


def test_without_matplotlib_one_line_says_how_to_install_it(sweep, mrunner, tmp_path):
    shim = tmp_path / "without-matplotlib"
    shim.mkdir()
    (shim / "matplotlib.py").write_text("raise ImportError('No module named matplotlib', name='matplotlib')\n")
    drawn = mrunner("results", sweep, "--plot", "loss", "-o", "x.png", env={"PYTHONPATH": str(shim)})
    assert drawn.returncode != 0
    assert drawn.stderr.strip() == "mrunner: error: pictures need matplotlib: pip install 'mrunner[plot]'"


def test_a_matplotlib_that_cannot_draw_is_one_line_too(sweep, mrunner, tmp_path):
    """matplotlib there, a package pyplot needs missing (a broken install): one line, no traceback."""
    shim = tmp_path / "broken-matplotlib"
    (shim / "matplotlib").mkdir(parents=True)
    (shim / "matplotlib" / "__init__.py").write_text("def use(name):\n    pass\n")
    (shim / "matplotlib" / "pyplot.py").write_text(
        "raise ImportError('No module named kiwisolver', name='kiwisolver')\n"
    )
    drawn = mrunner("results", sweep, "--curves", "loss", "-o", "x.png", env={"PYTHONPATH": str(shim)})
    assert drawn.returncode == 2 and drawn.stderr.strip() == (
        "mrunner: error: matplotlib is installed but cannot draw (No module named kiwisolver): "
        "pip install --force-reinstall 'mrunner[plot]'"
    )


def test_a_geometric_axis_is_drawn_on_a_log_scale():
    assert plot.geometric([0.0001, 0.001, 0.01, 0.1])
    assert not plot.geometric([1, 2, 3, 4])  # even steps
    assert not plot.geometric([0, 0.1, 1.0, 10.0])  # zero has no logarithm
    assert not plot.geometric(["adam", "sgd"])


def _categorical_grid(**grid: list[str]):
    """Experiments and rows of a grid of named (non-numeric) values, each with a short loss curve."""
    import itertools

    from mrunner.comparison import Experiment, Row

    experiments, rows = [], []
    for index, values in enumerate(itertools.product(*grid.values())):
        axes = dict(zip(grid, values))
        curve = {step: 1.0 / (1 + step + index % 7) for step in range(5)}
        experiments.append(Experiment(index, f"e{index}", "completed", 0, axes, {"loss": curve}))
        rows.append(Row(dict(axes), {"loss": curve[4]}, "completed", [index]))
    return experiments, rows, list(grid)


def test_past_twelve_lines_with_no_numeric_axis_each_line_has_a_style_of_its_own_with_a_legend(tmp_path):
    """20 lines told apart by named values only: a colour and a dash each, all different, each in the legend."""
    pyplot = plot._pyplot()
    experiments, rows, names = _categorical_grid(opt=["adam", "sgd", "rmsprop", "adagrad", "lion"], model=list("abcd"))
    figure, axis = pyplot.subplots()
    style, handles = plot._colouring(pyplot, figure, axis, [row.axes for row in rows], names)
    styles = [style(number, row.axes) for number, row in enumerate(rows)]
    pyplot.close(figure)
    assert handles is None and len({(s["color"], s["linestyle"]) for s in styles}) == 20
    assert [s["label"] for s in styles][:2] == ["opt=adam, model=a", "opt=adam, model=b"]
    target = tmp_path / "curves.png"
    plot.curves(experiments, rows, names, "loss", target, "s")
    assert target.read_bytes().startswith(PNG)


def test_a_thousand_lines_with_no_numeric_axis_are_coloured_and_dashed_by_axes_the_legend_names(tmp_path):
    """1,000 lines, named values only: colour by an axis of at most ten values, dash by one of at most four, and
    the legend lists those values (not a thousand lines)."""
    pyplot = plot._pyplot()
    grid = {"opt": ["adam", "sgd", "rmsprop", "adagrad", "lion"], "model": list("abcd"), "data": list("vwxyz")}
    experiments, rows, names = _categorical_grid(**grid, init=[f"i{k}" for k in range(10)])
    figure, axis = pyplot.subplots()
    style, handles = plot._colouring(pyplot, figure, axis, [row.axes for row in rows], names)
    pyplot.close(figure)
    assert [h.get_label() for h in handles] == [f"init=i{k}" for k in range(10)] + [f"model={m}" for m in "abcd"]
    colours = {row.axes["init"]: style(n, row.axes)["color"] for n, row in enumerate(rows)}
    dashes = {row.axes["model"]: style(n, row.axes)["linestyle"] for n, row in enumerate(rows)}
    assert len(set(colours.values())) == 10 and len(set(dashes.values())) == 4
    for n, row in enumerate(rows):
        assert style(n, row.axes)["color"] == colours[row.axes["init"]]
    target = tmp_path / "plot.png"
    plot.against_axis(experiments, rows, names, "loss", "opt", [], target, "s")
    assert target.read_bytes().startswith(PNG)


def test_a_groups_curve_over_unequal_step_grids_takes_each_member_between_its_reports():
    """Seeds that reported on different steps: a mean of whichever members reported at a step jumped between
    them (a zig-zag); each member is taken on the line between its reports, within its own range, and ``n``
    says how many members cover the step (the band only where two or more do)."""
    from mrunner.comparison import group_curve

    every_ten = {0: 1.0, 10: 0.8, 20: 0.6}  # both straight lines, 0.2 apart
    every_five = {0: 1.2, 5: 1.1, 15: 0.9, 25: 0.7}
    found = group_curve([every_ten, every_five])
    assert [(step, n) for step, _, _, n in found] == [(0, 2), (5, 2), (10, 2), (15, 2), (20, 2), (25, 1)]
    assert [mean for _, mean, _, _ in found] == pytest.approx([1.1, 1.0, 0.9, 0.8, 0.7, 0.7])
    assert [std for _, _, std, _ in found] == pytest.approx([0.2 / 2**0.5] * 5 + [0.0])
    assert group_curve([every_ten, {}]) == [(0, 1.0, 0.0, 1), (10, 0.8, 0.0, 1), (20, 0.6, 0.0, 1)]


def test_curves_over_seeds_on_unequal_step_grids_are_drawn(mrunner, tmp_path):
    (tmp_path / "train.py").write_text(
        "import mrunner\n"
        "c = mrunner.get_configuration()\n"
        "for step in ([0, 10, 20] if c.seed == 0 else [0, 5, 15, 25]):\n"
        "    mrunner.report({'loss': 1.0 - c.lr * step / 10 + 0.2 * c.seed}, step=step)\n"
    )
    done = mrunner("train.py", "-m", "lr=0.1,0.3", "seed=0,1", "--wait")
    assert done.returncode == 0, done.stderr
    sweep = done.stdout.strip().splitlines()[-1]
    target = tmp_path / "curves.png"
    drawn = mrunner("results", sweep, "--curves", "loss", "--over", "seed", "-o", str(target))
    assert drawn.returncode == 0 and drawn.stdout.strip() == f"wrote {target}", drawn.stderr
    assert target.read_bytes().startswith(PNG)


@pytest.fixture
def drawn(monkeypatch: pytest.MonkeyPatch) -> list:
    """The axes of each picture the test draws, kept as ``plot`` saves them (the figure closed, its axes still
    readable)."""
    kept: list = []
    save = plot._save

    def keep(pyplot, figure, axis, *args):
        kept.append(axis)
        return save(pyplot, figure, axis, *args)

    monkeypatch.setattr(plot, "_save", keep)
    return kept


def _grid(values: dict[tuple[int, int], list[float]]):
    """Experiments of axes (k, seed), each with a curve of ``values`` at steps 0, 1, ...; their rows."""
    from mrunner.comparison import Experiment, rows

    experiments = [
        Experiment(n, f"e{n}", "completed", 0, {"k": k, "seed": seed}, {"m": dict(enumerate(curve))})
        for n, ((k, seed), curve) in enumerate(values.items())
    ]
    return experiments, lambda over: rows(experiments, ["k", "seed"], ["m"], "last", over)


def test_values_near_a_floats_limits_are_drawn(mrunner, tmp_path):
    """matplotlib's linear ticks overflow near a float's maximum ("arange: cannot compute length"), and the line
    blamed the file ("cannot write x.png"): such values are drawn divided by a power of ten the axis names."""
    (tmp_path / "huge.py").write_text(
        "import mrunner\n"
        "c = mrunner.get_configuration()\n"
        "mrunner.report({'huge': c.k * (1 + c.seed * 0.7) * 1e308}, step=1)\n"
        "mrunner.report({'huge': c.k * 1e308}, step=2)\n"
    )
    done = mrunner("huge.py", "-m", "k=1,-1", "seed=0,1", "--wait")
    assert done.returncode == 0, done.stderr
    sweep = done.stdout.strip().splitlines()[-1]
    for args in (
        ["--curves", "huge"],
        ["--curves", "huge", "--over", "seed"],
        ["--curves", "huge", "--where", "k=1", "--where", "seed=0"],
        ["--plot", "huge"],
        ["--plot", "huge", "--over", "seed"],
    ):
        target = tmp_path / "huge.svg"
        shown = mrunner("results", sweep, *args, "-o", str(target))
        assert shown.returncode == 0 and shown.stdout.strip() == f"wrote {target}", (args, shown.stderr)
        assert shown.stderr == "", (args, shown.stderr)  # numpy's overflow warnings neither
        assert "huge (×1e308)" in target.read_text(), args
    shown = mrunner("results", sweep, "--over", "seed", "--agg", "mean", "--json")
    assert shown.returncode == 0, shown.stderr
    found = {r["k"]: r["huge"] for r in json.loads(shown.stdout)}  # the mean of 1e308 and 1.7e308 is no inf
    assert found == {1: pytest.approx(1.175e308), -1: pytest.approx(-1.175e308)}


def test_a_single_huge_point_is_drawn_on_whole_steps(drawn, tmp_path):
    experiments, rows = _grid({(1, 0): [1e308]})
    plot.curves(experiments, rows([]), ["k", "seed"], "m", tmp_path / "one.png", "s")
    (axis,) = drawn
    assert axis.get_ylabel() == "m (×1e308)" and axis.get_lines()[0].get_marker() == "o"
    assert all(tick == int(tick) for tick in axis.get_xticks())


def test_an_integer_axis_has_whole_ticks(drawn, tmp_path):
    """Seeds 0..5 on the horizontal of --plot: ticks at 0, 1, 2..., never 0.25 or 2.5."""
    experiments, rows = _grid({(k, seed): [0.1 * k + seed] for k in (1, 2) for seed in range(6)})
    plot.against_axis(experiments, rows([]), ["k", "seed"], "m", "seed", [], tmp_path / "seed.png", "s")
    plot.against_axis(experiments, rows([]), ["k", "seed"], "m", "k", [], tmp_path / "k.png", "s")
    for axis in drawn:
        low, high = axis.get_xlim()
        ticks = [tick for tick in axis.get_xticks() if low <= tick <= high]
        assert ticks and all(tick == int(tick) for tick in ticks), ticks


def test_grouped_curves_take_the_same_y_scale_as_their_experiments(drawn, tmp_path):
    """Members spanning 10,000x whose group means span under 1,000x: the ungrouped picture was on a log scale
    and the grouped one linear (the small groups squashed onto 0); both decide on every experiment's values."""
    curves = {(1, 0): [0.01, 0.001], (1, 1): [0.04, 0.02], (2, 0): [9.0, 5.0], (2, 1): [12.0, 10.0]}
    experiments, rows = _grid(curves)
    plot.curves(experiments, rows([]), ["k", "seed"], "m", tmp_path / "all.png", "s")
    plot.curves(experiments, rows(["seed"]), ["k"], "m", tmp_path / "groups.png", "s")
    assert [axis.get_yscale() for axis in drawn] == ["log", "log"]


def test_characters_the_font_lacks_are_one_warning_line_naming_them(tmp_path, capsys):
    """A metric named in a script the font has no glyphs for (matplotlib's DejaVu Sans has no CJK): the picture is
    written, with boxes for them, and one line says which characters and how to get them drawn; matplotlib's own
    warnings, a source line each with mrunner's file and line, do not reach the user."""
    import warnings

    from mrunner.comparison import Experiment, rows

    experiments = [Experiment(n, f"e{n}", "completed", 0, {"k": n}, {"损失": {0: 1.0, 1: 0.5}}) for n in (1, 2)]
    with warnings.catch_warnings(record=True) as escaped:
        warnings.simplefilter("always")
        plot.curves(experiments, rows(experiments, ["k"], ["损失"], "last", []), ["k"], "损失", tmp_path / "u.png", "s")
    assert (tmp_path / "u.png").read_bytes().startswith(PNG)
    assert [str(w.message) for w in escaped] == []
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("mrunner: warning: ") and "损" in line and "失" in line and "font" in line, line
