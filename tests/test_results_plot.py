"""`mrunner results --plot` and `--curves`: pictures written, log scales for geometric axes, and one line
telling how to install matplotlib where it is missing."""

from __future__ import annotations

from pathlib import Path

import pytest

from mrunner import plot
from mrunner.testing import MrunnerCommand
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
    home = tmp_path_factory.mktemp("mrunner-home")
    project = tmp_path_factory.mktemp("project")
    (project / "train.py").write_text(TRAIN)
    with pytest.MonkeyPatch.context() as patch:
        use_home(patch, home)
        result = MrunnerCommand(project)("train.py", "-m", "lr=0.001,0.01,0.1", "seed=0,1", "width=1,2", "--wait")
    assert result.returncode == 0, result.stderr
    return home, result.stdout.strip().splitlines()[-1]


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
