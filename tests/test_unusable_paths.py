"""A path given on the command line that cannot be used (a file where a folder is wanted, a folder where a file
is, a place that cannot be created or written): one line naming the option to fix, a non-zero exit, before
anything is fetched or written."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def sweep(mrunner, tmp_path: Path) -> str:
    (tmp_path / "train.py").write_text('from mrunner.metrics import report\nreport({"loss": 1.0})\n')
    mrunner.cwd = tmp_path
    ran = mrunner("train.py", "a=1")
    assert ran.returncode == 0, ran.stderr
    return ran.stdout.strip().splitlines()[-1]


def one_line(result, *fragments: str) -> str:
    assert result.returncode != 0, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mrunner: error: "), result.stderr
    assert all(fragment in lines[0] for fragment in fragments), lines[0]
    return lines[0]


@pytest.mark.parametrize(
    ("to", "says"),
    [("/etc/passwd", "is a file, not a folder"), ("/proc/mrunner-results", "cannot create"), ("/proc", "cannot write")],
)
def test_pull_to_a_place_that_is_no_writable_folder_names_the_option(mrunner, sweep, to, says):
    one_line(mrunner("pull", sweep, "--to", to), "--to", to, says)


@pytest.mark.parametrize(
    ("args", "option"),
    [
        (["--csv", "/etc"], "--csv"),
        (["--csv", "/no/such/folder/rows.csv"], "--csv"),
        (["--csv", "/proc/rows.csv"], "--csv"),
        (["--plot", "loss", "-o", "/proc/loss.png"], "-o"),
        (["--plot", "loss", "-o", "/etc"], "-o"),
    ],
)
def test_results_into_a_file_that_cannot_be_written_names_the_option(mrunner, sweep, tmp_path, args, option):
    one_line(mrunner("results", sweep, *args), option, args[-1])
    assert not (tmp_path / "results").exists()
