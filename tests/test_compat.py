"""The original mrunner's users: spec files and experiment scripts written as its README and examples wrote
them run unchanged, through the real command line on the local backend."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mrunner import create_experiments_helper
from mrunner.errors import MrunnerError
from mrunner.helpers.specification_helper import get_combinations

HEAVY = {"hydra", "omegaconf", "yaml", "pluggy", "rich", "paramiko", "kubernetes", "docker", "neptune", "pathspec"}

# The original's examples/experiment_basic.py, as it was written.
EXPERIMENT_BASIC = """\
from mrunner.helpers.client_helper import get_configuration, logger


def main():
  params = get_configuration(print_diagnostics=True, with_neptune=False)
  for x in range(params.param1):
    logger("test channel1", x)

  if "param3" in params:
    print("param3 is", params["param3"], "param2 is", params.param2)
  print("experiment_id", params["experiment_id"])


if __name__ == '__main__':
  main()
"""

# The original's examples/experiment_helper_conf.py, with plain data for param3 (the original pickled
# lambdas; parameters travel as JSON now) and no Neptune account required.
EXPERIMENT_HELPER_CONF = """\
# Usually instead of defining spec function manually it is easier to use create_experiments_spec.
from mrunner.helpers.specification_helper import create_experiments_helper
import os

# These values will be used as defaults
base_config = dict(param1=3, param2="string", param3=None)

# These will be gridded
params_grid = dict(param2=["exp1", "exp2"], param3=[1, 2])


experiments_list = create_experiments_helper(experiment_name='Grid experiment',
                                            project_name="my-workspace/beautiful-project",
                                            script='python experiment_basic.py',
                                            python_path='.:libs',
                                            tags=[globals()['script'][:-3], "whoami"],
                                            base_config=base_config, params_grid=params_grid)
"""


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


def logs(mrunner, sweep: str, count: int) -> list[str]:
    outputs = []
    for index in range(count):
        result = mrunner("logs", f"{sweep}/{index}")
        assert result.returncode == 0, result.stderr
        outputs.append(result.stdout)
    return outputs


def test_an_old_spec_file_and_script_run_unchanged(mrunner, tmp_path):
    write(tmp_path, "experiment_basic.py", EXPERIMENT_BASIC)
    write(tmp_path, "experiment_helper_conf.py", EXPERIMENT_HELPER_CONF)
    result = mrunner("run", "experiment_helper_conf.py")  # `mrunner run SPEC`, as the original's examples
    assert result.returncode == 0, result.stderr
    sweep = result.stdout.split()[0]
    status = json.loads(mrunner("status", sweep, "--json").stdout)
    runs = status["experiments"]
    assert [run["state"] for run in runs] == ["completed"] * 4
    assert [run["parameters"] for run in runs] == [
        {"param1": 3, "param2": p2, "param3": p3} for p2 in ("exp1", "exp2") for p3 in (1, 2)
    ]
    first = runs[0]
    assert first["name"] == "grid-experiment"
    assert first["tags"][:2] == ["experiment_helper_conf", "whoami"] and len(first["tags"]) == 3  # + a random tag
    assert first["env"]["PYTHONPATH"] == ".:libs"
    assert first["env"]["NEPTUNE_PROJECT"] == "my-workspace/beautiful-project"
    assert status["sweep"]["project"] == "beautiful-project"
    output = logs(mrunner, sweep, 4)
    assert "test channel1:0\ntest channel1:1\ntest channel1:2\n" in output[0]
    assert "param3 is 1 param2 is exp1" in output[0] and "param3 is 2 param2 is exp2" in output[3]
    assert "experiment_id None" in output[0]
    assert "PYTHONPATH:.:libs" in output[0] and "Params:{'param1': 3" in output[0]


def test_a_script_runs_by_hand_with_the_first_experiment_of_a_spec(tmp_path):
    """The original's README: `python3 experiment_basic.py --ex experiment_helper_conf.py`."""
    write(tmp_path, "experiment_basic.py", EXPERIMENT_BASIC)
    write(tmp_path, "experiment_helper_conf.py", EXPERIMENT_HELPER_CONF)
    env = {key: value for key, value in __import__("os").environ.items() if key != "MRUNNER_CONFIG"}
    result = subprocess.run(
        [sys.executable, "experiment_basic.py", "--ex", "experiment_helper_conf.py"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert "contains 4 experiment configurations. The first one will be used." in result.stdout
    assert "param3 is 1 param2 is exp1" in result.stdout


def test_the_original_client_works_from_the_shipped_files_alone(tmp_path):
    """On a cluster without mrunner: the files a backend ships hold client_helper, and it imports nothing heavy."""
    from mrunner.runtime import experiment_side_files

    for name, data in experiment_side_files().items():
        (tmp_path / "ship" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "ship" / name).write_bytes(data)
    config = tmp_path / "config.yaml"
    config.write_text(json.dumps({"parameters": {"lr": 0.5, "opt_beta": 0.9, "opt_eps": 1e-8}}))
    code = (
        "import sys\n"
        "from mrunner.helpers.client_helper import get_configuration\n"
        "params = get_configuration(nesting_prefixes=('opt_',))\n"
        "print(params.lr, params.opt.beta, params.opt['eps'], params.experiment_id, sys.argv[1:])\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & %r))\n" % (HEAVY,)
    )
    result = subprocess.run(
        [sys.executable, "-S", "-c", code, "--lr", "3"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={"MRUNNER_CONFIG": str(config), "PYTHONPATH": str(tmp_path / "ship")},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["0.5 0.9 1e-08 None ['--lr', '3']", "[]"]


def test_every_parameter_of_the_original_helper(tmp_path, monkeypatch):
    ignore = write(tmp_path, "ignore.txt", "data/\n# a comment\n*.ckpt\n")
    seen = {}

    def callback(**names):  # the original called callbacks with its local variables
        seen.update(names)
        names["params_configurations"].append({"y": 3})
        names["tags"].append("from-callback")

    experiments = create_experiments_helper(
        "old",
        {"x": 1, "nested": {"a": 1}},
        {"y": [1, 2]},
        "python3 run.py",
        "lib:",
        ["t"],
        add_random_tag=False,
        env={"A": "b", "PYTHONPATH": "base"},
        project_name="proj",
        exclude=["logs"],
        with_neptune=True,
        display_neptune_link=False,
        copy_neptune_link=False,
        paths_to_dump="a b",
        callbacks=[callback],
        update_lambda=lambda config, point: config.update(point, seen=True),
        _script_name="specs/my_spec.py",
        mrunner_ignore=str(ignore),
    )
    assert [e.parameters for e in experiments] == [
        {"x": 1, "nested": {"a": 1}, "y": y, "seen": True} for y in (1, 2, 3)
    ]
    first = experiments[0]
    assert first.env == {"A": "b", "PYTHONPATH": "base:lib"}  # no NEPTUNE_PROJECT: "proj" is no WORKSPACE/NAME
    assert first.project == "proj" and first.tags == ["t", "my_spec", "from-callback"]
    assert first.exclude == ["logs", ".git", ".gitignore", ".gitmodules", "data/", "*.ckpt"]
    assert first.paths_to_copy == ["a", "b"]
    assert {"base_config", "params_grid", "random_name", "experiments", "env", "exclude"} <= set(seen)
    monkeypatch.setenv("NEPTUNE_PROJECT_NAME", "ws/from-env")
    tracked = create_experiments_helper("e", {}, {}, "run.py", exclude_git_files=False)
    assert len(tracked) == 1 and tracked[0].env == {"NEPTUNE_PROJECT": "ws/from-env"} and tracked[0].exclude == []
    assert tracked[0].project == "from-env" and len(tracked[0].tags) == 1  # the random tag


def test_grids_expand_in_the_original_order_and_numpy_values_become_plain():
    numpy = pytest.importorskip("numpy")
    assert get_combinations({"a___": [1, 2], "b___": [3, 4], "c": [5, 6]}) == [
        {"a": 1, "b": 3, "c": 5},
        {"a": 1, "b": 3, "c": 6},
        {"a": 2, "b": 4, "c": 5},
        {"a": 2, "b": 4, "c": 6},
    ]
    assert get_combinations([{"a": [1]}, {}], limit=5) == [{"a": 1}, {}]
    experiments = create_experiments_helper(
        "np", {"w": numpy.float32(0.5)}, {"lr": numpy.array([0.1, 0.2])}, "t.py", with_neptune=False
    )
    assert [e.parameters for e in experiments] == [{"w": 0.5, "lr": 0.1}, {"w": 0.5, "lr": 0.2}]
    assert all(type(e.parameters["lr"]) is float for e in experiments)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"params_grid": {"lr": 0.1}}, r"params_grid\['lr'\] must be a list"),
        ({"with_mpi": True}, r"with_mpi=True\) is not supported: start MPI in the script itself"),
        ({"mrunner_ignore": "/nonexistent/ignore"}, "mrunner_ignore='/nonexistent/ignore': cannot read it"),
        ({"base_config": {"f": object()}}, "must be plain data"),
    ],
)
def test_what_cannot_work_is_one_clear_line(kwargs, message):
    arguments = {"experiment_name": "e", "base_config": {}, "params_grid": {}, "script": "t.py", **kwargs}
    with pytest.raises(MrunnerError, match=message):
        create_experiments_helper(**arguments)


def test_an_old_spec_error_is_one_line_on_the_command_line(mrunner, tmp_path):
    write(tmp_path, "train.py", "print(1)\n")
    write(
        tmp_path,
        "spec.py",
        """
        from mrunner.helpers.specification_helper import create_experiments_helper
        experiments_list = create_experiments_helper(
            experiment_name="e", base_config={}, params_grid={"lr": 0.1}, script="python train.py",
            python_path="", tags=[])
        """,
    )
    result = mrunner("run", "spec.py")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "mrunner: error: spec spec.py: params_grid['lr'] must be a list of values, got float 0.1: "
        "write [0.1] for a single value (or set it in base_config)"
    ]


def test_the_original_config_option_says_how_to_bring_its_contexts(mrunner, tmp_path):
    write(tmp_path, "train.py", "print(1)\n")
    result = mrunner("--config", "/tmp/mrunner_config.yaml", "--context", "x", "run", "train.py")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "mrunner: error: --config FILE named the original mrunner's config.yaml: import its contexts once with "
        "`mrunner context import FILE`, then choose one with --context NAME"
    ]


# An experiment configured with gin, the way the original's users wrote them: parameters named
# "Configurable.argument" in the spec, `get_configuration(inject_parameters_to_gin=True)` in the script.
GIN_EXPERIMENT = """\
import json
import gin
from mrunner.helpers.client_helper import get_configuration


@gin.configurable
def relu(x):
    return max(x, 0)


@gin.configurable
class Agent:
    def __init__(self, lr=None, name=None, activation=None, layers=None):
        self.lr, self.name, self.activation, self.layers = lr, name, activation, layers


params = get_configuration(inject_parameters_to_gin=True)
agent = Agent()
print("GIN " + json.dumps({
    "lr": agent.lr, "name": agent.name, "activation": agent.activation(-2), "layers": agent.layers,
    "steps": params.steps, "bound": gin.query_parameter("Agent.lr"),
}), flush=True)
"""

GIN_SPEC = """\
from mrunner.helpers.specification_helper import create_experiments_helper

experiments_list = create_experiments_helper(
    experiment_name="gin agent", project_name="my-workspace/gin", script="python train_gin.py",
    python_path="", tags=["gin"], with_neptune=False,
    base_config={"steps": 3, "Agent.name": "Bob's agent", "Agent.activation": "@relu", "Agent.layers": "(64, 32)"},
    params_grid={"Agent.lr": [0.1, 0.01]},
)
"""


def test_parameters_with_a_dot_reach_gin_bindings_as_in_the_original(mrunner, tmp_path):
    """get_configuration(inject_parameters_to_gin=True) with the real gin-config: every parameter named
    ``Configurable.argument`` is bound (a string as a string, quotes and all; ``@name`` as a reference; a
    literal such as ``(64, 32)`` as its value), as the original's inject_dict_to_gin did."""
    pytest.importorskip("gin")
    write(tmp_path, "train_gin.py", GIN_EXPERIMENT)
    write(tmp_path, "spec.py", GIN_SPEC)
    result = mrunner("run", "spec.py")
    assert result.returncode == 0, result.stderr
    sweep = result.stdout.split()[0]
    seen = [json.loads(output.split("GIN ", 1)[1].splitlines()[0]) for output in logs(mrunner, sweep, 2)]
    assert seen == [
        {"lr": lr, "name": "Bob's agent", "activation": 0, "layers": [64, 32], "steps": 3, "bound": lr}
        for lr in (0.1, 0.01)
    ]


ABSL_EXPERIMENT = """\
from absl import app, flags
from mrunner.helpers.client_helper import get_configuration

flags.DEFINE_float("learning_rate", 0.0, "the learning rate")
flags.DEFINE_integer("batch", 1, "the batch size")
flags.DEFINE_string("run_mode", "learner", "as seed_rl's scripts, which used mrunner this way")
FLAGS = flags.FLAGS


def main(argv):
    get_configuration(inject_parameters_to_FLAGS=True)
    print("FLAGS", FLAGS.learning_rate, FLAGS.batch, FLAGS.run_mode, argv[1:], flush=True)


app.run(main)
"""


def test_parameters_reach_absl_flags_as_in_the_original(mrunner, tmp_path):
    """get_configuration(inject_parameters_to_FLAGS=True) with the real absl-py: every parameter is set on
    absl's FLAGS, after absl parsed the script's own command line (the original's option, used by seed_rl)."""
    pytest.importorskip("absl")
    write(tmp_path, "train_absl.py", ABSL_EXPERIMENT)
    result = mrunner("train_absl.py", "-m", "learning_rate=0.5,0.25", "batch=64", "--", "--run_mode=actor")
    assert result.returncode == 0, result.stderr
    sweep = result.stdout.split()[0]
    lines = [output.split("FLAGS ", 1)[1].splitlines()[0] for output in logs(mrunner, sweep, 2)]
    assert lines == ["0.5 64 actor []", "0.25 64 actor []"]


def original_get_combinations(param_grids, limit=None):
    """The original mrunner's get_combinations (specification_helper.py), as it was written, minus its
    container-type assertion (the helper refuses those with a clear line instead)."""
    from itertools import product

    if isinstance(param_grids, dict):
        param_grids = [param_grids]
    combinations = []
    for param_grid in param_grids:
        items = param_grid.items()
        if not items:
            combinations.append({})
        else:
            keys___, grids___, keys, grids = [], [], [], []
            for key, grid in items:
                if "___" in key:
                    keys___.append(key[:-3])
                    grids___.append(grid)
                else:
                    keys.append(key)
                    grids.append(grid)
            if grids___:
                for param_values___ in zip(*grids___):
                    for param_values in product(*grids):
                        combinations.append(dict(zip(keys___ + keys, param_values___ + param_values)))
            else:
                for param_values in product(*grids):
                    combinations.append(dict(zip(keys, param_values)))
    if limit:
        combinations = combinations[:limit]
    return combinations


grid_keys = st.sampled_from(["a", "b", "c", "a___", "b___", "c___", "x___y", "a.b"])
one_grid = st.dictionaries(grid_keys, st.lists(st.integers(0, 9), max_size=3), max_size=4)


@settings(max_examples=300, deadline=None)
@given(st.one_of(one_grid, st.lists(one_grid, max_size=3)), st.none() | st.integers(0, 5))
def test_grids_expand_as_the_original_expanded_them(params_grid, limit):
    """The helper's grids, now the same lazy grid as the command line's, keep the original's every point in
    its order: ``___`` keys zipped (to the shortest) and varied slowest, lists of grids one after the other."""
    assert get_combinations(params_grid, limit) == original_get_combinations(params_grid, limit)
