"""A sweep larger than the context's max_experiments is refused before anything is recorded, with its count
and the two ways to go on."""

from __future__ import annotations

import json

from tests.test_cli_errors import SCRIPT, assert_one_line_error, recorded_sweeps


def test_a_huge_sweep_is_refused_before_recording(mrunner, tmp_path, mrunner_home):
    (tmp_path / "train.py").write_text(SCRIPT)
    result = mrunner("train.py", "-m", "a=range(1000000)")
    assert_one_line_error(
        result,
        "the sweep has 1,000,000 experiments, more than max_experiments (10,000) of context local",
        "add --yes",
        "context.max_experiments=1000000",
    )
    assert recorded_sweeps(mrunner_home) == 0
    dry = mrunner("train.py", "-m", "a=range(1000000)", "--dry-run")
    assert dry.returncode == 0 and "refused without --yes: the sweep has 1,000,000 experiments" in dry.stdout


def test_the_limit_is_a_context_key_and_yes_goes_past_it(mrunner, tmp_path, mrunner_home):
    (tmp_path / "train.py").write_text(SCRIPT)
    assert_one_line_error(mrunner("train.py", "-m", "a=range(3)", "context.max_experiments=2"), "--yes")
    assert recorded_sweeps(mrunner_home) == 0
    result = mrunner("train.py", "-m", "a=range(3)", "context.max_experiments=2", "--yes")
    assert result.returncode == 0, result.stderr
    status = json.loads(mrunner("status", result.stdout.split()[0], "--json").stdout)
    assert [run["state"] for run in status["experiments"]] == ["completed"] * 3
    assert_one_line_error(
        mrunner("train.py", "context.max_experiments=0"), "key 'max_experiments' must be at least 1, got 0"
    )
