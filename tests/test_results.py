"""`mrunner results` on the local backend, through the real command line: the table over the grid, its
options, and the one-line refusals."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import pytest

from mrunner.testing import ended, wait_for

TRAIN = """
import math, os, time, mrunner
c = mrunner.get_configuration()
for step in range(5):
    mrunner.report({"loss": round((1 + c.seed) * c.lr * (5 - step), 6), "acc": step / 4}, step=step)
if c.get("torn") == c.seed:  # a process killed mid-line leaves this
    with open(os.path.join(os.environ["MRUNNER_EXPERIMENT_DIR"], "mrunner-metrics.jsonl"), "a") as out:
        out.write('{"attempt": 0, "step": 9, "metrics": {"loss": 12')
if c.get("fail") == c.seed:
    raise SystemExit(3)
while c.get("gate") and not os.path.exists(c.gate):
    time.sleep(0.05)
"""


@pytest.fixture
def project(tmp_path: Path, mrunner) -> Path:
    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "train.py").write_text(TRAIN)
    mrunner.cwd = folder
    return folder


def submit(mrunner, *args: str) -> str:
    result = mrunner("train.py", "-m", *args)
    assert result.stdout.strip(), result.stderr
    return result.stdout.strip().splitlines()[-1]


def records(mrunner, *args: str) -> list[dict]:
    result = mrunner("results", *args, "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_the_table_shows_axes_constants_metrics_and_what_did_not_complete(mrunner, project):
    sweep = submit(mrunner, "lr=0.1,1.0", "seed=range(3)", "width=8", "fail=2", "torn=1", "--wait")
    shown = mrunner("results", sweep)
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert lines[1] == "constant: fail=2, torn=1, width=8"
    assert lines[2].split() == ["#", "lr", "seed", "loss", "acc", "state"]
    rows = {int(line.split()[0]): line.split() for line in lines[3:]}
    assert rows[0] == ["0", "0.1", "0", "0.1", "1"]  # the last step's values, completed: no state shown
    assert rows[1] == ["1", "0.1", "1", "0.2", "1"]  # its torn last line is skipped
    assert rows[2] == ["2", "0.1", "2", "0.3", "1", "failed", "(3)"]
    assert rows[5] == ["5", "1.0", "2", "3", "1", "failed", "(3)"]
    assert [r["loss"] for r in records(mrunner, sweep, "--agg", "max")] == [0.5, 1.0, 1.5, 5.0, 10.0, 15.0]
    assert [r["acc"] for r in records(mrunner, sweep, "--agg", "mean")] == [0.5] * 6
    assert [r["index"] for r in records(mrunner, sweep, "--sort", "-loss")] == [5, 4, 3, 2, 1, 0]
    assert [r["index"] for r in records(mrunner, sweep, "--sort", "loss", "--where", "lr=1")] == [3, 4, 5]
    # several values as the grid writes them: any of them (was refused: "no experiment has it; lr is 0.1, 1.0")
    assert [r["index"] for r in records(mrunner, sweep, "--where", "lr=0.1,1.0", "--where", "seed=0,2")] == [0, 2, 3, 5]
    first = records(mrunner, sweep)[0]
    assert first == {
        "index": 0,
        "width": 8,
        "fail": 2,
        "torn": 1,
        "lr": 0.1,
        "seed": 0,
        "loss": 0.1,
        "acc": 1.0,
        "state": "completed",
    }


def test_over_an_axis_gives_mean_std_and_count(mrunner, project, tmp_path):
    sweep = submit(mrunner, "lr=0.1,1.0", "seed=range(3)", "--wait")
    shown = mrunner("results", sweep, "--over", "seed", "--sort", "-loss")
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert "mean ± std over seed" in lines[0]
    assert lines[1].split() == ["lr", "loss", "acc", "n", "state"]
    assert lines[2].split() == ["1.0", "2", "±", "1", "1", "±", "0", "3"]
    assert lines[3].split() == ["0.1", "0.2", "±", "0.1", "1", "±", "0", "3"]
    target = tmp_path / "grid.csv"
    written = mrunner("results", sweep, "--over", "seed", "--csv", str(target))
    assert written.returncode == 0 and f"wrote 2 rows to {target}" in written.stdout, written.stderr
    with open(target, newline="") as stream:
        table = list(csv.DictReader(stream))
    assert [(row["lr"], float(row["loss"]), float(row["loss_std"]), row["n"]) for row in table] == [
        ("0.1", pytest.approx(0.2), pytest.approx(0.1), "3"),
        ("1.0", pytest.approx(2.0), pytest.approx(1.0), "3"),
    ]
    # an axis the rows no longer have: refused, as --x is (it left the rows in their order, as if sorted)
    assert_refused(
        mrunner("results", sweep, "--over", "seed", "--sort", "-seed"),
        "cannot sort by 'seed': it is folded by --over; the axes left are lr and the metrics loss, acc",
    )


def test_a_running_experiment_shows_what_it_reported_so_far(mrunner, project, tmp_path):
    gate = tmp_path / "gate"
    sweep = submit(mrunner, "lr=0.5", "seed=range(2)", f"gate={gate}", "--detach")
    wait_for(
        lambda: mrunner("results", sweep, "--json"),
        lambda found: found.returncode == 0 and all(r["loss"] is not None for r in json.loads(found.stdout)),
        every=0.2,
        what="a result of each experiment",
    )
    table = mrunner("results", sweep).stdout.splitlines()
    assert table[2].split()[-1] == "state" and [line.split()[-1] for line in table[3:]] == ["running", "running"]
    gate.write_text("")
    assert {run["state"] for run in ended(mrunner, sweep, timeout=60, every=0.2).values()} == {"completed"}
    assert [line.split()[-1] for line in mrunner("results", sweep).stdout.splitlines()[3:]] == [
        "1",
        "1",
    ]  # acc, no state


def test_results_of_a_spec_file_sweep(mrunner, project):
    (project / "spec.py").write_text(
        "from mrunner.experiment import Experiment\n"
        "experiments_list = [Experiment(name='t', script='python train.py', parameters={'lr': lr, 'seed': 0})"
        " for lr in (0.1, 0.2)]\n"
    )
    result = mrunner("spec.py", "--wait")
    assert result.returncode == 0, result.stderr
    sweep = result.stdout.strip().splitlines()[-1]
    assert [(r["lr"], r["loss"]) for r in records(mrunner, sweep)] == [(0.1, 0.1), (0.2, 0.2)]


def test_results_of_a_hydra_app_has_its_overrides_and_group_choices_as_axes(mrunner, project):
    (project / "conf" / "opt").mkdir(parents=True)
    (project / "conf" / "config.yaml").write_text("defaults:\n  - opt: sgd\n  - _self_\nlr: 0.1\n")
    (project / "conf" / "opt" / "sgd.yaml").write_text("name: sgd\nscale: 1\n")
    (project / "conf" / "opt" / "adam.yaml").write_text("name: adam\nscale: 2\n")
    (project / "app.py").write_text(
        "import hydra, mrunner\n"
        "@hydra.main(config_path='conf', config_name='config', version_base=None)\n"
        "def main(cfg):\n"
        "    mrunner.report({'loss': cfg.lr * cfg.opt.scale})\n"
        "main()\n"
    )
    result = mrunner("app.py", "-m", "opt=glob(*)", "lr=0.1,0.3", "--wait")
    assert result.returncode == 0, result.stderr
    sweep = result.stdout.strip().splitlines()[-1]
    found = sorted((r["opt"], r["lr"], r["loss"]) for r in records(mrunner, sweep))
    assert found == [("adam", 0.1, 0.2), ("adam", 0.3, 0.6), ("sgd", 0.1, 0.1), ("sgd", 0.3, 0.3)]
    header = mrunner("results", sweep).stdout.splitlines()[1].split()
    assert header == ["#", "opt", "lr", "loss", "state"] or header == ["#", "lr", "opt", "loss", "state"]


def assert_refused(result, *parts: str) -> None:
    assert result.returncode != 0 and "Traceback" not in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    for part in parts:
        assert part in result.stderr, result.stderr


def test_refusals_name_what_exists(mrunner, project):
    assert_refused(mrunner("results", "nosuchsweep"), "no sweep 'nosuchsweep'", "recent sweeps: none")
    sweep = submit(mrunner, "lr=0.1,1.0", "seed=0", "--wait")
    assert_refused(mrunner("results", "nosuchsweep"), f"recent sweeps: {sweep}")
    assert_refused(mrunner("results", sweep, "--over", "sed"), "'sed'", "axes are lr")
    assert_refused(mrunner("results", sweep, "--sort", "-los"), "'los'", "metrics loss, acc")
    assert_refused(mrunner("results", sweep, "--where", "seeds=0"), "no parameter 'seeds'", "parameters: lr, seed")
    assert_refused(mrunner("results", sweep, "--plot", "los", "-o", "x.png"), "no metric 'los'", "loss, acc")
    assert_refused(mrunner("results", sweep, "--over", "sed"), "cannot fold over 'sed': the sweep's axes are lr\n")
    assert_refused(
        mrunner("results", sweep, "--where", "lr=0.5"), "--where 'lr=0.5': no experiment has it; lr is 0.1, 1.0"
    )
    assert_refused(
        mrunner("results", sweep, "--where", "lr=0.1", "--where", "lr=1.0"),
        "--where 'lr=1.0': no experiment of those with lr=0.1 has it; lr is 0.1",
    )
    assert_refused(mrunner("results", sweep, "--where", "lr"), "--where 'lr': expected KEY=VALUE")
    assert_refused(mrunner("results", f"{sweep}/0"), f"results shows a whole sweep: `mrunner results {sweep}`")
    (project / "quiet.py").write_text("import mrunner\nmrunner.get_configuration()\n")
    quiet = mrunner("quiet.py", "-m", "a=1,2", "--wait")
    silent = quiet.stdout.strip().splitlines()[-1]
    assert_refused(mrunner("results", silent), f"sweep {silent} has no reported metrics yet", "2 completed")


@pytest.mark.parametrize(
    "args, message",
    [
        (["-o", "x.png"], "-o goes with --plot METRIC or --curves METRIC: add it, or leave -o out"),
        (["--x", "lr"], "--x goes with --plot METRIC: add it, or leave --x out"),
        (["--curves", "loss", "--x", "lr", "-o", "x.png"], "--curves draws against the step: leave --x out"),
        (["--plot", "loss", "-o", "picture"], "-o picture: the file's extension says its format: add one"),
        (["--plot", "loss", "-o", "."], "-o . is a folder: name the picture's file, e.g. -o loss.png"),
        (["--curves", "loss", "--agg", "min", "-o", "x.png"], "--curves draws every step, no summary of them: leave"),
        (["--plot", "loss", "--sort", "-loss", "-o", "x.png"], "--sort orders the rows of a table, and --plot draws"),
        (["--curves", "loss", "--sort", "lr", "-o", "x.png"], "--sort orders the rows of a table, and --curves draws"),
    ],
)
def test_picture_options_that_would_be_ignored_or_write_elsewhere_are_refused(mrunner, project, args, message):
    """Before any sweep is looked up: -o or --x that nothing draws, a file name matplotlib would change (no
    extension: it appends .png and the picture is not where `wrote FILE` says), and options a picture would
    ignore (--agg of --curves, which draws every step; --sort, which orders a table's rows)."""
    assert_refused(mrunner("results", "anysweep", *args), message)
    assert sorted(os.listdir(project)) == ["train.py"]


def test_the_metrics_come_back_into_mrunners_data_folder_not_the_project(mrunner, project, mrunner_home):
    sweep = submit(mrunner, "lr=0.1", "seed=range(2)", "--wait")
    assert mrunner("results", sweep).returncode == 0
    cached = sorted(
        p.relative_to(mrunner_home / "data" / "mrunner" / "metrics" / sweep).as_posix()
        for p in (mrunner_home / "data" / "mrunner" / "metrics" / sweep).rglob("*")
        if p.is_file()
    )
    assert cached == [
        ".curves.marshal",
        ".fetched.json",
        "0-train/mrunner-metrics.jsonl",
        "1-train/mrunner-metrics.jsonl",
    ]
    assert sorted(os.listdir(project)) == ["train.py"]


def test_a_second_call_on_an_ended_sweep_pulls_nothing(mrunner, project, mrunner_home, tmp_path):
    """An experiment that had ended (a minute before) when its file came back is not asked for again: the
    second call reaches no backend's pull, and shows the same table from the cache."""
    import sqlite3

    sweep = submit(mrunner, "lr=0.1", "seed=range(2)", "--wait")
    with sqlite3.connect(mrunner_home / "data" / "mrunner" / "records.db") as db:  # it ended two minutes ago
        db.execute("UPDATE experiments SET updated_at = updated_at - 120 WHERE sweep_id = ?", (sweep,))
    shown = []
    for call in ("first", "second"):
        traces = tmp_path / f"traces-{call}"
        traces.mkdir()
        result = mrunner("results", sweep, "--json", env={"MRUNNER_TRACE_CALLS": str(traces)})
        assert result.returncode == 0, result.stderr
        shown.append(result.stdout)
        assert ("Backend.pull" in os.listdir(traces)) == (call == "first"), sorted(os.listdir(traces))
    assert shown[0] == shown[1] and len(json.loads(shown[1])) == 2


def test_over_an_axis_with_missing_points_says_how_many_values_each_mean_holds(mrunner, project):
    """A seed that failed before it reported, or a metric one seed never reported: the group's n counts the
    experiments, so a mean over fewer of them says over how many, in the table as in the records."""
    (project / "gappy.py").write_text(
        "import sys, mrunner\n"
        "c = mrunner.get_configuration()\n"
        "if c.lr == 0.1 and c.seed == 2:\n"
        "    sys.exit(3)\n"
        "metrics = {'loss': c.lr * (c.seed + 1)}\n"
        "if not (c.lr == 1.0 and c.seed == 1):\n"
        "    metrics['acc'] = 0.5\n"
        "mrunner.report(metrics, step=0)\n"
    )
    result = mrunner("gappy.py", "-m", "lr=0.1,1.0", "seed=range(3)", "--wait")
    sweep = result.stdout.strip().splitlines()[-1]
    shown = mrunner("results", sweep, "--over", "seed")
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert lines[1].split() == ["lr", "loss", "acc", "n", "state"]
    assert lines[2].split() == [
        "0.1",
        "0.15",
        "±",
        "0.07071",
        "(2",
        "of",
        "3)",
        "0.5",
        "±",
        "0",
        "(2",
        "of",
        "3)",
        "3",
        "1",
        "failed",
    ]
    assert lines[3].split() == ["1.0", "2", "±", "1", "0.5", "±", "0", "(2", "of", "3)", "3"]
    found = {r["lr"]: (r["n"], r["loss_n"], r["acc_n"]) for r in records(mrunner, sweep, "--over", "seed")}
    assert found == {0.1: (3, 2, 2), 1.0: (3, 3, 2)}


def test_a_metric_named_like_a_parameter_or_a_column_of_mrunners_keeps_every_column_apart(mrunner, project):
    """A metric `lr` beside the axis `lr`, a metric `index`, a parameter `n` beside `--over`'s count: each
    column once, under its own label (the metric's value overwrote the axis's in --json and --csv)."""
    (project / "clash.py").write_text(
        "import mrunner\n"
        "c = mrunner.get_configuration()\n"
        "mrunner.report({'lr': c.lr * 10, 'index': 7, 'acc': c.seed}, step=0)\n"
    )
    result = mrunner("clash.py", "-m", "lr=0.1,1.0", "seed=range(2)", "n=3", "--wait")
    sweep = result.stdout.strip().splitlines()[-1]
    shown = mrunner("results", sweep)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.splitlines()[2].split() == ["#", "lr", "seed", "metric:lr", "metric:index", "acc", "state"]
    assert records(mrunner, sweep)[1] == {
        "index": 1,
        "n": 3,
        "lr": 0.1,
        "seed": 1,
        "metric:lr": 1.0,
        "metric:index": 7,
        "acc": 1,
        "state": "completed",
    }
    assert records(mrunner, sweep, "--over", "seed")[0] == {
        "mrunner:n": 2,
        "n": 3,
        "lr": 0.1,
        "metric:lr": 1.0,
        "metric:lr_std": 0.0,
        "metric:lr_n": 2,
        "metric:index": 7.0,
        "metric:index_std": 0.0,
        "metric:index_n": 2,
        "acc": 0.5,
        "acc_std": pytest.approx(0.7071, abs=1e-4),
        "acc_n": 2,
        "state": "completed",
    }
    # a column as the table heads it: the axis by its name, the metric by its label
    assert [r["index"] for r in records(mrunner, sweep, "--sort", "-metric:lr")][:2] == [2, 3]
    assert [r["index"] for r in records(mrunner, sweep, "--sort", "-lr")][:2] == [2, 3]
    assert [r["index"] for r in records(mrunner, sweep, "--sort", "-acc")][:2] == [1, 3]
    written = mrunner("results", sweep, "--csv", "-")
    assert next(csv.reader(written.stdout.splitlines())) == list(records(mrunner, sweep)[0])
    pytest.importorskip("matplotlib")
    (project / "matplotlibrc").write_text("svg.fonttype: none\n")  # the picture's words as text, to read here
    for args, title in (
        (["--plot", "metric:lr", "--x", "seed"], "metric:lr against seed"),
        (["--curves", "lr"], "metric:lr per step"),
    ):
        drawn = mrunner("results", sweep, *args, "-o", str(project / "p.svg"), env={"MATPLOTLIBRC": str(project)})
        assert drawn.returncode == 0, drawn.stderr
        assert f"sweep {sweep}: {title}" in (project / "p.svg").read_text()


def test_a_whole_number_beyond_64_bits_reaches_pandas_as_a_number(mrunner, project):
    """report keeps an int as given, up to a float's range; pandas reads no integer beyond 64 bits: read_json
    refused the whole --json ("Value is too big!") and read_csv made the column text."""
    import io

    import pandas

    (project / "big.py").write_text(
        "import mrunner\nc = mrunner.get_configuration()\nmrunner.report({'count': 10**30 * c.k, 'small': c.k}, step=0)\n"
    )
    sweep = mrunner("big.py", "-m", "k=1,2", "--wait").stdout.strip().splitlines()[-1]
    shown = mrunner("results", sweep, "--json")
    assert shown.returncode == 0, shown.stderr
    frame = pandas.read_json(io.StringIO(shown.stdout))
    assert frame["count"].tolist() == [1e30, 2e30] and frame["small"].tolist() == [1, 2]
    written = mrunner("results", sweep, "--csv", "-")
    frame = pandas.read_csv(io.StringIO(written.stdout))
    assert frame["count"].dtype == "float64" and frame["count"].tolist() == [1e30, 2e30]
    assert frame["small"].dtype == "int64"


def test_where_takes_a_value_as_the_grid_wrote_it(mrunner, project):
    """`--where` with the spelling of the override that made the grid: a bool (`true`), a null, a list, a quoted
    string with a comma, 1e-1 for 0.1. Each was refused ("no experiment has it; flag is True, False"), and the
    refusal named a null as `-`, which no --where takes."""
    (project / "kinds.py").write_text("import mrunner\nmrunner.get_configuration()\nmrunner.report({'loss': 1.0})\n")
    result = mrunner("kinds.py", "-m", "flag=true,false", "x=null,0.1", "l=[1,2],[3]", "s='x,y',z", "--wait")
    sweep = result.stdout.strip().splitlines()[-1]

    def chosen(*conditions: str) -> list[int]:
        return [r["index"] for r in records(mrunner, sweep, *(f"--where={c}" for c in conditions))]

    assert chosen("flag=true", "x=null", "l=[1,2]") == [0, 1]
    assert chosen("flag=false", "x=1e-1", "l=[3]", "s='x,y'") == [14]
    assert chosen("flag=True", "x=None", "l=[1, 2]", "s=x,y") == [0]  # as the table and --json show them
    assert chosen("s='x,y',z", "flag=false", "x=0.1", "l=[1,2]") == [12, 13]
    assert_refused(mrunner("results", sweep, "--where", "flag=1"), "no experiment has it; flag is true, false")
    assert_refused(mrunner("results", sweep, "--where", "x=0"), "no experiment has it; x is null, 0.1")


def test_where_an_empty_value_is_the_empty_string_not_a_null(mrunner, project):
    """`--where s=` is the empty string, as the override `s=` that made the grid: it chose the experiment with
    `s=null` too (a null's text, for the comparison, was the empty string)."""
    (project / "kinds.py").write_text("import mrunner\nmrunner.get_configuration()\nmrunner.report({'loss': 1.0})\n")
    result = mrunner("kinds.py", "-m", "s='',null", "--wait")
    sweep = result.stdout.strip().splitlines()[-1]

    def chosen(condition: str) -> list[int]:
        return [r["index"] for r in records(mrunner, sweep, f"--where={condition}")]

    assert chosen("s=") == [0]
    assert chosen("s=''") == [0]
    assert chosen("s=null") == [1]


def test_experiments_of_a_spec_file_told_apart_by_name_and_tags_are_rows_apart(mrunner, project):
    """A spec file's `ppo` and `sac` with equal parameters: their name and tags are axes of the table, so
    `--over seed` means each over its own seeds (it folded both into one row, 56 ± 49.3 over n=6)."""
    (project / "algo.py").write_text(
        "import sys, mrunner\nc = mrunner.get_configuration()\n"
        "mrunner.report({'ret': (100 if sys.argv[1] == 'sac' else 10) + c.seed}, step=0)\n"
    )
    (project / "spec.py").write_text(
        "from mrunner.experiment import Experiment\n"
        "experiments_list = [\n"
        "    Experiment(name=algo, script=f'python algo.py {algo}', parameters={'lr': 0.1, 'seed': seed}, tags=[algo])\n"
        "    for algo in ('ppo', 'sac') for seed in range(2)\n"
        "]\n"
    )
    result = mrunner("spec.py", "--wait")
    assert result.returncode == 0, result.stderr
    sweep = result.stdout.strip().splitlines()[-1]
    shown = mrunner("results", sweep, "--over", "seed")
    assert shown.returncode == 0, shown.stderr
    assert [line.split() for line in shown.stdout.splitlines()[2:]] == [
        ["name", "tags", "ret", "n", "state"],
        ["ppo", '["ppo"]', "10.5", "±", "0.7071", "2"],
        ["sac", '["sac"]', "100.5", "±", "0.7071", "2"],
    ]
    assert [(r["name"], r["tags"], r["seed"]) for r in records(mrunner, sweep, "--where", "name=sac")] == [
        ("sac", ["sac"], 0),
        ("sac", ["sac"], 1),
    ]


def test_names_made_of_the_parameters_are_no_axis(mrunner, project):
    """A spec file naming each experiment after its parameters (`lr0.1_seed0`): the parameters tell them apart
    already, so `--over seed` still folds the seeds (a name axis would leave every row alone)."""
    (project / "spec.py").write_text(
        "from mrunner.experiment import Experiment\n"
        "experiments_list = [\n"
        "    Experiment(name=f'lr{lr}_seed{seed}', script='python train.py', parameters={'lr': lr, 'seed': seed})\n"
        "    for lr in (0.1, 1.0) for seed in range(2)\n"
        "]\n"
    )
    result = mrunner("spec.py", "--wait")
    assert result.returncode == 0, result.stderr
    sweep = result.stdout.strip().splitlines()[-1]
    assert [(r["lr"], r["n"]) for r in records(mrunner, sweep, "--over", "seed")] == [(0.1, 2), (1.0, 2)]


def test_a_group_of_one_value_shows_no_spread(mrunner, project):
    """A standard deviation of one value is undefined: a group whose metric one member holds shows its mean
    without ``± 0``, and ``NAME_std`` is null in the records (it was 0, as if the seeds had agreed)."""
    (project / "one.py").write_text(
        "import mrunner\n"
        "c = mrunner.get_configuration()\n"
        "if not (c.lr == 1.0 and c.seed == 1):\n"
        "    mrunner.report({'loss': c.lr * (c.seed + 1)}, step=0)\n"
    )
    sweep = mrunner("one.py", "-m", "lr=0.1,1.0", "seed=0,1", "--wait").stdout.strip().splitlines()[-1]
    shown = mrunner("results", sweep, "--over", "seed")
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert lines[2].split() == ["0.1", "0.15", "±", "0.07071", "2"]
    assert lines[3].split() == ["1.0", "1", "(1", "of", "2)", "2"]
    found = {r["lr"]: (r["loss"], r["loss_std"], r["loss_n"]) for r in records(mrunner, sweep, "--over", "seed")}
    assert found == {0.1: (pytest.approx(0.15), pytest.approx(0.0707106781), 2), 1.0: (1.0, None, 1)}


def test_json_is_strict_nan_and_infinities_are_null_and_csv_keeps_them(mrunner, project):
    """Python's json writes ``NaN`` and ``Infinity``, which strict readers (jq, JSON.parse, most languages')
    refuse: --json writes null for them, which jq and ``pandas.read_json`` read as a missing number, and says
    on stderr which columns held one; --csv keeps them as pandas reads them (inf, -inf, nan)."""
    import io
    import math
    import shutil
    import subprocess

    import pandas

    (project / "edge.py").write_text(
        "import mrunner\n"
        "c = mrunner.get_configuration()\n"
        "mrunner.report({'up': float('inf') if c.k == 1 else 1.0, 'down': -float('inf'), 'odd': float('nan'),"
        " 'fine': c.k}, step=0)\n"
    )
    sweep = mrunner("edge.py", "-m", "k=1,2", "--wait").stdout.strip().splitlines()[-1]
    for args in ([], ["--over", "k"]):
        shown = mrunner("results", sweep, "--json", *args)
        assert shown.returncode == 0, shown.stderr

        def refuse(constant: str) -> None:
            raise AssertionError(f"--json wrote {constant}")

        found = json.loads(shown.stdout, parse_constant=refuse)
        assert [(r["up"], r["down"], r["odd"]) for r in found][:1] == [(None, None, None)], found
        named = shown.stderr.split("numbers): ")[-1].split(";")[0].split(", ")
        assert "as null" in shown.stderr and {"up", "down", "odd"} <= set(named) and "fine" not in named, shown.stderr
        if shutil.which("jq"):
            read = subprocess.run(["jq", "-c", ".[0].down"], input=shown.stdout, capture_output=True, text=True)
            assert read.returncode == 0 and read.stdout.strip() == "null", read.stderr
    frame = pandas.read_json(io.StringIO(mrunner("results", sweep, "--json").stdout))
    assert frame["up"].isna().tolist() == [True, False] and frame["up"].dtype == "float64"
    assert frame["fine"].tolist() == [1, 2]
    written = pandas.read_csv(io.StringIO(mrunner("results", sweep, "--csv", "-").stdout))
    assert written["up"].tolist() == [math.inf, 1.0] and written["down"].tolist() == [-math.inf] * 2
    assert written["odd"].isna().all() and written["odd"].dtype == "float64"
