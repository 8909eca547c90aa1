"""A Hydra app's overrides mean what they mean to Hydra, and what its config refuses is refused before submission."""

from __future__ import annotations

import json
import shlex
import textwrap
from pathlib import Path

import pytest

from mrunner import app_config, grid
from mrunner.errors import MrunnerError

APP = """
import json, os
import hydra
from omegaconf import OmegaConf

@hydra.main(config_path="conf", config_name="config", version_base=None)
def main(cfg):
    with open(os.path.join(os.environ["MRUNNER_EXPERIMENT_DIR"], "result.json"), "w") as out:
        json.dump(OmegaConf.to_container(cfg), out)

if __name__ == "__main__":
    main()
"""


@pytest.fixture
def app(tmp_path: Path, mrunner) -> Path:
    """An app whose config chooses ``db: mysql`` from the group ``db/{mysql,postgres}``."""
    (tmp_path / "conf" / "db").mkdir(parents=True)
    (tmp_path / "conf" / "config.yaml").write_text("defaults:\n  - db: mysql\n  - _self_\nlr: 0.1\nseed: 0\n")
    (tmp_path / "conf" / "db" / "mysql.yaml").write_text("driver: mysql\nuser: root\n")
    (tmp_path / "conf" / "db" / "postgres.yaml").write_text("driver: postgres\nuser: admin\ntimeout: 10\n")
    (tmp_path / "app.py").write_text(APP)
    return tmp_path / "app.py"


def results(home: Path) -> list[dict]:
    found = sorted((home / "data" / "mrunner" / "storage").rglob("result.json"), key=lambda p: p.parent.name)
    return [json.loads(path.read_text()) for path in found]


def test_group_choices_sweeps_adds_and_deletes_run_as_in_hydra(app, mrunner, mrunner_home):
    result = mrunner("app.py", "-m", "db=glob(*)", "lr=0.5", "+tag=x", "~seed")
    assert result.returncode == 0, result.stderr
    assert results(mrunner_home) == [
        {"db": {"driver": "mysql", "user": "root"}, "lr": 0.5, "tag": "x"},
        {"db": {"driver": "postgres", "user": "admin", "timeout": 10}, "lr": 0.5, "tag": "x"},
    ]
    listed = json.loads(mrunner("status", result.stdout.split()[-1], "--json").stdout)["experiments"]
    assert [e["parameters"] for e in listed] == [
        {"db": "mysql", "lr": 0.5, "tag": "x"},
        {"db": "postgres", "lr": 0.5, "tag": "x"},
    ]


def test_a_key_of_one_group_option_is_set_where_that_option_is_chosen(app, mrunner, mrunner_home):
    result = mrunner("app.py", "db=postgres", "db.timeout=3")
    assert result.returncode == 0, result.stderr
    assert results(mrunner_home)[0]["db"] == {"driver": "postgres", "user": "admin", "timeout": 3}


def test_dry_run_shows_each_points_exact_command(app, mrunner):
    result = mrunner("app.py", "-m", "db=mysql,postgres", "+extra='a b'", "--dry-run")
    assert result.returncode == 0, result.stderr
    commands = [shlex.split(line)[2:] for line in result.stdout.splitlines() if line.strip().startswith("$")]
    assert commands == [
        ["app.py", "db=mysql", "+extra='a b'", "hydra.run.dir=${oc.env:MRUNNER_EXPERIMENT_DIR}"],
        ["app.py", "db=postgres", "+extra='a b'", "hydra.run.dir=${oc.env:MRUNNER_EXPERIMENT_DIR}"],
    ]


@pytest.mark.parametrize(
    "overrides, reason",
    [
        (["lrr=3"], "Could not override 'lrr'. To append to your config use +lrr=3; Key 'lrr' is not in struct"),
        (
            ["-m", "lr=1,2", "db=nope"],
            "In 'config': Could not find 'db/nope'. Available options in 'db': mysql, postgres",
        ),
        (["+lr=2"], "Could not append to config. An item is already at 'lr'."),
        (["~nope"], "Could not delete from config. 'nope' does not exist."),
        (["++db=postgres"], "force-add of config groups is not supported: '++db=postgres'"),
        (
            ["-m", "db=mysql,postgres", "db.timeout=3"],
            "(with db=mysql) refuses an override: Could not override 'db.timeout'",
        ),
        (["-m", "hydra.job.chdir=true,maybe"], "Value 'maybe' is not a valid bool"),
    ],
)
def test_an_override_the_config_refuses_is_refused_before_anything_is_recorded(app, mrunner, overrides, reason):
    for extra in (["--dry-run"], []):
        result = mrunner("app.py", *overrides, *extra)
        assert result.returncode == 2
        assert reason in result.stderr and "app.py's config" in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
    assert json.loads(mrunner("status", "--json").stdout) == []  # nothing recorded


def test_the_config_is_composed_once_per_combination_of_group_choices(app):
    axes = grid.grid(["db=mysql,postgres", "lr=range(0,500)", "seed=1,2"], multirun=True).axes
    assert app_config.check(app, [[]], axes) == 2
    with pytest.raises(MrunnerError, match="Value 'maybe' is not a valid bool"):
        app_config.check(app, [[]], grid.grid(["lr=range(0,500)", "hydra.job.chdir=true,maybe"], True).axes)


def test_a_spec_s_parameters_reach_a_hydra_app_as_key_value(app, mrunner, mrunner_home):
    (app.parent / "spec.py").write_text(
        textwrap.dedent("""
        from mrunner import create_experiments
        experiments_list = create_experiments("app.py", name="s", base_config={"lr": 0.25},
                                              params_grid={"db": ["postgres"], "+note": ["n"]})
    """)
    )
    result = mrunner("spec.py", "seed=7")
    assert result.returncode == 0, result.stderr
    assert results(mrunner_home) == [
        {"db": {"driver": "postgres", "user": "admin", "timeout": 10}, "lr": 0.25, "seed": 7, "note": "n"}
    ]
    (app.parent / "spec.py").write_text(
        "from mrunner import create_experiments\n"
        "experiments_list = create_experiments('app.py', name='s', base_config={'lrr': 1})\n"
    )
    refused = mrunner("spec.py")
    assert refused.returncode == 2 and "Could not override 'lrr'" in refused.stderr


def test_an_app_that_registers_configs_in_code_is_not_checked_and_runs(tmp_path, mrunner, mrunner_home):
    (tmp_path / "schema.py").write_text(
        textwrap.dedent("""
        from dataclasses import dataclass
        from hydra.core.config_store import ConfigStore

        @dataclass
        class Config:
            lr: float = 0.1

        ConfigStore.instance().store(name="config", node=Config)
    """)
    )
    (tmp_path / "app.py").write_text(
        "import schema\n"
        + APP.replace('config_path="conf", config_name="config"', 'config_path=None, config_name="config"')
    )
    assert app_config.main_arguments(tmp_path / "app.py") is None
    result = mrunner("app.py", "lr=0.5")
    assert result.returncode == 0, result.stderr
    assert results(mrunner_home) == [{"lr": 0.5}]


def test_a_plain_script_keeps_its_parameters_and_gets_no_overrides(tmp_path, mrunner):
    (tmp_path / "exp.py").write_text("from mrunner import get_configuration\nget_configuration()\n")
    result = mrunner("exp.py", "-m", "lr=1,2", "model.depth=3", "--dry-run")
    assert result.returncode == 0, result.stderr
    assert "[0] exp: lr=1 model.depth=3" in result.stdout
    assert [line.split()[-1] for line in result.stdout.splitlines() if line.strip().startswith("$")] == ["exp.py"] * 2


def test_main_arguments_follow_hydra_s_defaults(tmp_path):
    script = tmp_path / "a.py"
    script.write_text("import hydra\n@hydra.main(config_name='c')\ndef f(cfg): pass\n")
    assert app_config.main_arguments(script) == app_config.MainArguments(f"file://{tmp_path}", "c", "1.1")
    script.write_text("import hydra\n@hydra.main(version_base='1.3')\ndef f(cfg): pass\n")
    assert app_config.main_arguments(script) == app_config.MainArguments(None, None, "1.3")
    script.write_text("import hydra\n@hydra.main('conf', 'c', None)\ndef f(cfg): pass\n")
    assert app_config.main_arguments(script) == app_config.MainArguments(f"file://{tmp_path}/conf", "c", None)
    script.write_text("import hydra\nPATH = 'conf'\n@hydra.main(config_path=PATH)\ndef f(cfg): pass\n")
    assert app_config.main_arguments(script) is None  # not a literal: only running it would tell


def test_hydra_s_warning_about_the_config_is_said_once_in_one_line(app, mrunner):
    """Composing the config to check the grid made Hydra warn (a defaults list without ``_self_``) once per
    composition, each as two lines of Python's warning format naming Hydra's own file: a newcomer's sweep over
    ``db=mysql,postgres`` printed four lines about Hydra's internals before anything else."""
    config = app.parent / "conf" / "config.yaml"
    config.write_text(config.read_text().replace("  - _self_\n", ""))
    for args in (("--dry-run",), ()):
        ran = mrunner("app.py", "-m", "db=mysql,postgres", "lr=0.1,0.2", *args)
        assert ran.returncode == 0, ran.stderr
        said = [line for line in ran.stderr.splitlines() if "_self_" in line]
        assert len(said) == 1 and said[0].startswith("mrunner: warning: app.py's config: "), ran.stderr
        assert "warnings.warn" not in ran.stderr and "hydra/_internal" not in ran.stderr, ran.stderr
