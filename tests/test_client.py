"""The experiment's side: get_configuration() and what importing mrunner costs there."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from mrunner.client import Config, get_configuration

HEAVY = {"hydra", "omegaconf", "yaml", "pluggy", "rich", "paramiko", "kubernetes", "docker", "neptune", "pathspec"}


def test_parameters_by_attribute_and_key(tmp_path, monkeypatch):
    path = tmp_path / "config.yaml"
    path.write_text(json.dumps({"parameters": {"lr": 0.1, "model": {"depth": 3}, "layers": [{"n": 1}]}, "name": "x"}))
    monkeypatch.setenv("MRUNNER_CONFIG", str(path))
    config = get_configuration()
    assert config.lr == config["lr"] == 0.1
    assert config.model.depth == 3 and config.layers[0].n == 1
    assert isinstance(config, dict) and isinstance(config.model, Config)
    with pytest.raises(AttributeError, match="no parameter 'nope'; parameters: lr, model, layers"):
        _ = config.nope


def test_a_hand_written_yaml_file_works(tmp_path, monkeypatch):
    path = tmp_path / "mine.yaml"
    path.write_text("parameters:\n  lr: 0.5\n  name: run one\n")
    monkeypatch.setenv("MRUNNER_CONFIG", str(path))
    assert get_configuration() == {"lr": 0.5, "name": "run one"}


def test_outside_mrunner_it_says_how_to_run(monkeypatch):
    monkeypatch.delenv("MRUNNER_CONFIG", raising=False)
    with pytest.raises(RuntimeError, match=r"MRUNNER_CONFIG is not set.*Run it with `mrunner"):
        get_configuration()


def test_reading_parameters_imports_nothing_heavy_and_leaves_flags_alone(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text(json.dumps({"parameters": {"lr": 0.1}}))
    code = (
        "import sys, mrunner; c = mrunner.get_configuration(); "
        "print(sorted({m.split('.')[0] for m in sys.modules} & %r), sys.argv[1:], c.lr)" % (HEAVY,)
    )
    result = subprocess.run(
        [sys.executable, "-c", code, "--lr", "7", "--flag"],
        env={"MRUNNER_CONFIG": str(path)},
        capture_output=True,
        text=True,
        check=True,
    )
    assert result.stdout.strip() == "[] ['--lr', '7', '--flag'] 0.1"


def test_reading_parameters_costs_little_more_than_json(tmp_path):
    """Every experiment pays for these imports: beyond ``json``'s own, none of the standard library's big
    modules (``dataclasses`` alone, with ``inspect``, costs about what Python's start-up does)."""
    path = tmp_path / "config.yaml"
    path.write_text(json.dumps({"parameters": {"lr": 0.1}}))
    code = (
        "import sys; import json; before = set(sys.modules); import mrunner; mrunner.get_configuration(); "
        "print(sorted(m for m in set(sys.modules) - before if not m.startswith('mrunner')))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], env={"MRUNNER_CONFIG": str(path)}, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "['__future__', 'collections.abc']"


def test_the_experiment_side_works_from_shipped_files_alone(tmp_path):
    """What a backend ships where mrunner is not installed: a folder on PYTHONPATH is enough."""
    from mrunner.runtime import experiment_side_files

    for name, data in experiment_side_files().items():
        (tmp_path / "ship" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "ship" / name).write_bytes(data)
    path = tmp_path / "config.yaml"
    path.write_text(json.dumps({"parameters": {"lr": 0.25}}))
    code = (
        "import mrunner, mrunner.attempt, mrunner.codeview, mrunner.treeguard  # the wrapper, whatever it loads\n"
        "print(mrunner.get_configuration().lr, mrunner.neptune_run(), mrunner.__file__)"
    )
    result = subprocess.run(
        [sys.executable, "-S", "-c", code],  # -S: no site-packages, so the installed mrunner is out of reach
        env={"MRUNNER_CONFIG": str(path), "PYTHONPATH": str(tmp_path / "ship")},
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[:2] == ["0.25", "None"]
    assert result.stdout.split()[2].startswith(str(tmp_path / "ship"))
