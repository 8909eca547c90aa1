"""`mrunner status` on a narrow terminal (``COLUMNS``, as when the output is not a terminal): every table line fits,
and what matters is still readable: columns that say little (the id, the job, the try) give way before the state,
the exit code and the parameters are cut to nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mrunner import table
from mrunner.testing import MrunnerCommand
from mrunner.testing.once import built_once
from mrunner.testing.plugin import use_home

STATES = {"completed", "failed"}


@pytest.fixture(scope="module")
def swept(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """One mrunner home holding a 30-experiment sweep run to its end (half failed), shared by the module's
    tests, which only read it: the sweep, not each test, pays for its 30 experiments."""

    def build(folder: Path) -> None:  # once per test run, for every pytest-xdist worker
        home, project = folder / "home", folder / "project"
        project.mkdir()
        (project / "pyproject.toml").write_text("[project]\nname = 'p'\n")
        (project / "train.py").write_text(
            "import sys\nfrom mrunner import get_configuration, report\ni = get_configuration().i\n"
            "report({'a_long_metric_name': i / 7}, step=0)\nsys.exit(i % 2)\n"
        )
        with pytest.MonkeyPatch.context() as patch:
            use_home(patch, home)
            ran = MrunnerCommand(project)("train.py", "-m", "i=range(30)", "a_long_parameter_name=1")
        assert ran.returncode == 1, ran.stderr
        (folder / "sweep").write_text(ran.stdout.strip().splitlines()[-1])

    folder = built_once(tmp_path_factory, "status-width-sweep", build)
    return folder / "home", (folder / "sweep").read_text()


@pytest.fixture
def sweep(swept: tuple[Path, str], mrunner_home: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """The shared sweep's id, the test's ``mrunner`` reading the home that holds it."""
    home, sweep_id = swept
    use_home(monkeypatch, home)
    return sweep_id


@pytest.mark.parametrize("columns", [30, 40, 80])
def test_status_of_a_sweep_fits_and_keeps_its_states_readable(mrunner, sweep, columns):
    shown = mrunner("status", sweep, env={"COLUMNS": str(columns)})
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    start = next(n for n, line in enumerate(lines) if line.startswith("#"))
    rows = [line for line in lines[start:] if line.split() and line.split()[0].isdigit()]
    assert rows and all(len(line) <= columns for line in lines), lines  # the header lines above the table too
    assert all(STATES & set(row.split()) for row in rows), lines  # each row's state whole
    assert "STATE" in lines[start].split(), lines[start]


@pytest.mark.parametrize("columns", [40, 50, 60, 80])
def test_the_list_of_sweeps_and_an_experiment_fit_and_stay_readable(mrunner, sweep, columns):
    listed = mrunner("status", env={"COLUMNS": str(columns)})
    assert listed.returncode == 0, listed.stderr
    assert all(len(line) <= columns for line in listed.stdout.splitlines()), listed.stdout
    header, row = listed.stdout.splitlines()[:2]
    assert header.split()[:1] == ["SWEEP"] and "STATES" in header.split() and row.split()[0] == sweep, listed.stdout
    assert "15 completed" in row, row
    # each state whole: a list too long for its column goes on below its row, broken between its items
    states = " ".join(line[header.index("STATES") :].strip() for line in listed.stdout.splitlines()[1:])
    assert states == "15 completed, 15 failed", listed.stdout
    if columns == 80:  # room for the states whole once the creation time, which says least, gives way
        assert "15 completed, 15 failed" in row and "CREATED" not in header.split(), listed.stdout
    one = mrunner("status", f"{sweep}/1", env={"COLUMNS": str(columns)})
    assert one.returncode == 0, one.stderr
    lines = one.stdout.splitlines()
    tries = lines[next(n for n, line in enumerate(lines) if line.startswith("TRY")) :]
    assert all(len(line) <= columns for line in lines), lines  # the lines above the tables too
    assert "END" in tries[0].split() and "failed" in tries[1].split(), tries
    # a long line (the output folder's path) is broken between words and folders, never inside the sweep's id
    assert one.stdout.count(sweep) == mrunner("status", f"{sweep}/1").stdout.count(sweep), one.stdout


@pytest.mark.parametrize("columns", [20, 30, 40, 60])
def test_every_line_of_status_and_results_fits_a_narrow_terminal(mrunner, sweep, columns):
    """The lines above the tables included, and a table whose first column alone is wider than the terminal."""
    for command in (["status"], ["status", sweep], ["status", f"{sweep}/1"], ["results", sweep]):
        shown = mrunner(*command, env={"COLUMNS": str(columns)})
        assert shown.returncode == 0, shown.stderr
        assert all(len(line) <= columns for line in shown.stdout.splitlines()), (command, shown.stdout)


def test_a_table_drops_the_columns_given_up_first_before_cutting_the_others_to_nothing():
    headers = ("#", "ID", "STATE", "PARAMETERS")
    rows = [(0, "0123456789ab", "completed", "lr=0.1 seed=1")]
    narrow = table.render(headers, rows, width=30, drop=(1,))
    assert narrow.splitlines() == ["#  STATE      PARAMETERS", "0  completed  lr=0.1 seed=1"]
    wide = table.render(headers, rows, width=80, drop=(1,))
    # a column that can give way goes whole before a column that cannot is cut
    assert table.render(headers, rows, width=36, drop=(1,)).splitlines()[1] == "0  completed  lr=0.1 seed=1"
    assert table.fit("created 2026-12-06 20:46:31, snapshot 0123456789ab, git 0123456789", 30).splitlines() == [
        "created 2026-12-06 20:46:31,",
        "  snapshot 0123456789ab, git",
        "  0123456789",
    ]
    assert wide.splitlines()[0].split() == list(headers)  # room for all: none dropped
    assert table.fit("output folder: /storage/project/calm-turing-1a2b3c/1-train", 40).splitlines() == [
        "output folder: /storage/project/",
        "  calm-turing-1a2b3c/1-train",
    ]


def test_a_list_of_states_goes_on_below_its_row_whole_instead_of_being_cut():
    rows = [("calm-turing-1a2b3c", "15 completed, 15 failed, 2 running")]
    assert table.render(("SWEEP", "STATES"), rows, width=40, wrap=(1,)).splitlines() == [
        "SWEEP               STATES",
        "calm-turing-1a2b3c  15 completed,",
        "                    15 failed,",
        "                    2 running",
    ]
    # too narrow beside the sweep even for one state: the states go under it, across the terminal
    assert table.render(("SWEEP", "STATES"), rows, width=28, wrap=(1,)).splitlines() == [
        "SWEEP",
        "calm-turing-1a2b3c",
        "  15 completed, 15 failed,",
        "  2 running",
    ]


def test_status_json_names_each_experiments_own_folder(mrunner, sweep):
    """The folders `status --json` names (made once per sweep and name, not a layout per run) are the ones
    the experiments ran in: each exists and holds what its experiment reported."""
    shown = mrunner("status", sweep, "--json")
    assert shown.returncode == 0, shown.stderr
    experiments = json.loads(shown.stdout)["experiments"]
    folders = [Path(experiment["output_dir"]) for experiment in experiments]
    assert len(set(folders)) == len(experiments) == 30, folders
    assert all((folder / "mrunner-metrics.jsonl").is_file() for folder in folders), folders
    assert [folder.name for folder in folders] == [f"{n}-train" for n in range(30)], folders
