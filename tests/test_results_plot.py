"""`mrunner results --plot` and `--curves`: pictures written, log scales for geometric axes, and one line
telling how to install matplotlib where it is missing."""

from __future__ import annotations

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
