"""Every command that takes a sweep or an experiment, given an empty, blank or malformed reference: one line
asking for what is missing, a non-zero exit, nothing changed (never a sweep picked because every id starts
with nothing)."""

from __future__ import annotations

from pathlib import Path

import pytest

from mrunner.testing import MrunnerCommand
from mrunner.testing.once import built_once
from mrunner.testing.plugin import use_home

COMMANDS = [["status"], ["logs"], ["cancel"], ["resume"], ["results"], ["pull"], ["forget"]]


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    """One mrunner home holding two ended sweeps, shared by the module's tests: each gives a command a
    reference it refuses, so none changes it."""

    def build(folder: Path) -> None:  # once per test run, for every pytest-xdist worker
        home, project = folder / "home", folder / "project"
        project.mkdir()
        (project / "train.py").write_text("print('ran')\n")
        sweeps = []
        with pytest.MonkeyPatch.context() as patch:
            use_home(patch, home)
            for value in (1, 2):
                ran = MrunnerCommand(project)("train.py", f"a={value}")
                assert ran.returncode == 0, ran.stderr
                sweeps.append(ran.stdout.strip().splitlines()[-1])
        (folder / "sweeps").write_text("\n".join(sweeps))

    folder = built_once(tmp_path_factory, "odd-references-sweeps", build)
    return folder / "home", (folder / "sweeps").read_text().split("\n")


@pytest.fixture
def two_sweeps(shared: tuple[Path, list[str]], mrunner_home: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The shared sweeps' ids, the test's ``mrunner`` using the home that holds them."""
    home, sweeps = shared
    use_home(monkeypatch, home)
    return sweeps


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: c[0])
@pytest.mark.parametrize("ref", ["", "   ", "/", "/0", " /3"])
def test_an_empty_or_blank_reference_asks_for_a_sweep_id(mrunner, two_sweeps, command, ref):
    result = mrunner(*command, ref)
    assert result.returncode != 0, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mrunner: error: "), result.stderr
    assert "no sweep id given" in lines[0] and "ambiguous" not in lines[0], lines[0]
    assert "Traceback" not in result.stderr


def test_a_reference_with_spaces_around_it_names_the_sweep(mrunner, two_sweeps):
    shown = mrunner("status", f" {two_sweeps[0]} ")
    assert shown.returncode == 0, shown.stderr
    assert f"sweep {two_sweeps[0]} " in shown.stdout


@pytest.mark.parametrize("command", [["status"], ["logs"], ["cancel"]], ids=lambda c: c[0])
def test_an_index_out_of_range_names_the_sweeps_experiments(mrunner, tmp_path: Path, command):
    (tmp_path / "train.py").write_text("print('ran')\n")
    mrunner.cwd = tmp_path
    ran = mrunner("train.py", "-m", "a=range(12)")
    assert ran.returncode == 0, ran.stderr
    sweep = ran.stdout.strip().splitlines()[-1]
    result = mrunner(*command, f"{sweep}/12")
    assert result.returncode != 0 and "Traceback" not in result.stderr, result
    assert result.stderr.splitlines() == [
        f"mrunner: error: sweep {sweep} has no experiment 12: the sweep has experiments 0-11"
    ]
