"""Experiments in code: create_experiments, the original helper, and spec files."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from mrunner import create_experiments
from mrunner.errors import MrunnerError
from mrunner.spec import is_spec_file, load_spec


def write(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text))
    return path


def test_grid_over_base_config():
    experiments = create_experiments(
        "train.py", name="My Exp_1", base_config={"lr": 1, "epochs": 3}, params_grid={"lr": [0.1, 0.01], "seed": [0, 1]}
    )
    assert [e.parameters for e in experiments] == [
        {"lr": 0.1, "epochs": 3, "seed": 0},
        {"lr": 0.1, "epochs": 3, "seed": 1},
        {"lr": 0.01, "epochs": 3, "seed": 0},
        {"lr": 0.01, "epochs": 3, "seed": 1},
    ]
    assert {e.name for e in experiments} == {"my-exp-1"}  # the original's naming rule


def test_a_list_of_grids_is_their_union():
    experiments = create_experiments("t.py", params_grid=[{"a": [1, 2]}, {"b": [3]}])
    assert [e.parameters for e in experiments] == [{"a": 1}, {"a": 2}, {"b": 3}]


def test_keys_varied_together():
    tupled = create_experiments("t.py", params_grid={("lr", "bs"): [(0.1, 32), (0.01, 64)], "seed": [0, 1]})
    assert [e.parameters for e in tupled] == [
        {"lr": 0.1, "bs": 32, "seed": 0}, {"lr": 0.1, "bs": 32, "seed": 1},
        {"lr": 0.01, "bs": 64, "seed": 0}, {"lr": 0.01, "bs": 64, "seed": 1},
    ]  # fmt: skip
    suffixed = create_experiments("t.py", params_grid={"lr___": [0.1, 0.01], "bs___": [32, 64]})
    assert [e.parameters for e in suffixed] == [{"lr": 0.1, "bs": 32}, {"lr": 0.01, "bs": 64}]
    mixed = create_experiments("t.py", params_grid={"lr___": [0.1, 0.01], "seed": [0, 1], "bs___": [32, 64]})
    assert [e.parameters for e in mixed] == [
        {"seed": 0, "lr": 0.1, "bs": 32}, {"seed": 0, "lr": 0.01, "bs": 64},
        {"seed": 1, "lr": 0.1, "bs": 32}, {"seed": 1, "lr": 0.01, "bs": 64},
    ]  # fmt: skip  # unlike the original's helper, `___` keys vary fastest here
    with pytest.raises(MrunnerError, match="same length"):
        create_experiments("t.py", params_grid={"lr___": [0.1], "bs___": [32, 64]})


def test_parameters_must_be_plain_data():
    with pytest.raises(MrunnerError, match="plain data"):
        create_experiments("t.py", params_grid={"f": [object()]})


@pytest.mark.parametrize("grid", [{"a": [1], 3: [4]}, {"a": [{1: 2, "b": 3}]}])
def test_parameter_names_of_mixed_types_in_one_mapping_are_refused_naming_them(grid):
    """An experiment's identity is its parameters as sorted JSON: names that do not sort against each other
    (3 beside 'a') ended the submission and its dry run with a traceback."""
    with pytest.raises(MrunnerError, match=r"experiment t: parameter names .*must all be strings"):
        create_experiments("t.py", name="t", params_grid=grid)


def test_spec_file_recognised_without_running_it(tmp_path):
    spec = write(tmp_path / "spec.py", "raise SystemExit('must not run')\nexperiments_list = []\n")
    assert is_spec_file(spec)
    annotated = write(tmp_path / "annotated.py", "experiments_list: list = []\n")
    assert is_spec_file(annotated)
    script = write(tmp_path / "train.py", "def f():\n    experiments_list = []\nprint('hi')\n")
    assert not is_spec_file(script)
    assert is_spec_file(write(tmp_path / "other.py", "grid = []\n"), variable="grid")


def test_load_spec(tmp_path):
    spec = write(
        tmp_path / "spec.py",
        """
        from mrunner import create_experiments
        experiments_list = create_experiments("train.py", params_grid={"lr": [1, 2]})
        """,
    )
    assert [e.parameters for e in load_spec(spec)] == [{"lr": 1}, {"lr": 2}]


@pytest.mark.parametrize(
    "body, message",
    [
        ("x = 1\n", "does not define experiments_list"),
        ("experiments_list = []\n", "is empty"),
        ("experiments_list = ['train.py']\n", r"experiments_list\[0\] is a str"),
        ("import sys\nsys.exit(3)\n", r"called exit\(3\)"),
        ("\n\nexperiments_list = 1 / 0\n", "raised ZeroDivisionError at line 3"),
    ],
)
def test_spec_errors_name_the_file_and_the_problem(tmp_path, body, message):
    with pytest.raises(MrunnerError, match=message):
        load_spec(write(tmp_path / "spec.py", body))
