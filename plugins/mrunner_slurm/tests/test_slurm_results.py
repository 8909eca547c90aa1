"""`mrunner results` of a Slurm sweep through the cluster's summaries (``Backend.summaries``), while it runs and
after: the same table as the metrics files give, whatever `results` holds of them (a summary, a file, a file a
later summary replaced), every ``--agg``, a later attempt overriding a step, a torn last line, a failure."""

from __future__ import annotations

import json
import subprocess
import uuid
from pathlib import Path

import pytest

from mrunner import comparison, metrics, summaries
from mrunner.testing import wait_for, write_context
from plugins.mrunner_slurm.tests.test_slurm_cluster import slurm_context, status

# Reports x = 10 seed + step in phases, each after the test's go-ahead (a file in the sweep's folder); at the end
# a later attempt's line goes back a step (as a requeue that restarted from a checkpoint writes), seed 1 leaves
# a torn last line and fails.
SCRIPT = """
import json, os, sys, time
import mrunner
from mrunner import get_configuration
config = get_configuration()
here = os.environ["MRUNNER_EXPERIMENT_DIR"]
def go(name):
    while not os.path.exists(os.path.join(os.path.dirname(here), name)):
        time.sleep(0.1)
for step in range(3):
    mrunner.report({"x": 10 * config.seed + step, "y": 0.5 * step}, step=step)
go("go1")
for step in range(3, 5):
    mrunner.report({"x": 10 * config.seed + step, "y": 0.5 * step}, step=step)
go("go2")
with open(os.path.join(here, "mrunner-metrics.jsonl"), "a") as out:
    out.write(json.dumps({"attempt": 1, "step": 4, "time": 1.0, "metrics": {"x": -1.5}}) + "\\n")
    if config.seed == 1:
        out.write('{"attempt": 1, "step": 5, "ti')
sys.exit(3 if config.seed == 1 else 0)
"""


@pytest.fixture
def project(slurm_service: dict, mrunner_home: Path, tmp_path: Path, mrunner) -> Path:
    storage = f"{slurm_service['storage_dir']}/results-{uuid.uuid4().hex[:10]}"
    write_context(mrunner_home, "results-slurm", slurm_context(slurm_service, storage))
    (tmp_path / "project").mkdir()
    (tmp_path / "project" / "train.py").write_text(SCRIPT)
    mrunner.cwd = tmp_path / "project"
    return tmp_path / "project"


def results(mrunner, sweep: str, *options: str) -> list[dict]:
    shown = mrunner("results", sweep, "--json", *options)
    assert shown.returncode == 0, shown.stderr
    return json.loads(shown.stdout)


def results_once_reported(mrunner, sweep: str) -> list[dict]:
    """``results`` of a sweep whose tasks may still wait in the queue: no rows while it says, in its one line, that
    nothing was reported yet (a first look can come before any experiment started)."""
    shown = mrunner("results", sweep, "--json")
    if shown.returncode == 2 and f"sweep {sweep} has no reported metrics yet" in shown.stderr:
        return []
    assert shown.returncode == 0, shown.stderr
    return json.loads(shown.stdout)


def from_files(folder: Path, how: str) -> list[dict]:
    """What the metrics files pulled into ``folder`` give by ``how``: per experiment, each metric's aggregate."""
    found = []
    for path in sorted(folder.glob("*/mrunner-metrics.jsonl"), key=lambda p: int(p.parent.name.split("-")[0])):
        curves = metrics.read(str(path))
        found.append({name: comparison.aggregate(curve, how) for name, curve in curves.items()})
    return found


def test_results_of_a_running_sweep_from_summaries_files_and_both_are_those_of_the_files(
    mrunner, mrunner_home, slurm_service, project, tmp_path
):
    submitted = mrunner("+context=results-slurm", "train.py", "-m", "seed=0,1", "--detach")
    assert submitted.returncode == 0, submitted.stderr
    sweep = submitted.stdout.strip().splitlines()[-1]
    cache = mrunner_home / "data" / "mrunner" / "metrics" / sweep
    sweep_dir = status(mrunner, sweep)["experiments"][0]["output_dir"].split(":", 1)[1].rsplit("/", 1)[0]

    def go(name: str) -> None:
        target = ["ssh", "-F", slurm_service["ssh_config"], slurm_service["alias"]]
        subprocess.run([*target, f"touch {sweep_dir}/{name}"], check=True, timeout=60)

    def xs(rows: list[dict]) -> list:
        return [row.get("x") for row in rows]

    # running, three steps each: the table from the cluster's summaries, no file brought back
    rows = wait_for(lambda: results_once_reported(mrunner, sweep), lambda r: xs(r) == [2, 12], timeout=120, every=0.5)
    assert [row["state"] for row in rows] == ["running", "running"] and [row["y"] for row in rows] == [1.0, 1.0]
    assert not list(cache.glob("*/mrunner-metrics.jsonl")) and len(summaries.load(cache)) == 2
    go("go1")
    wait_for(lambda: results(mrunner, sweep), lambda r: xs(r) == [4, 14], timeout=120, every=0.5)
    assert results(mrunner, sweep, "--agg", "mean") == [
        {**row, "x": 10 * seed + 2.0, "y": 1.0} for seed, row in enumerate(results(mrunner, sweep))
    ]
    # the curves need the files: they come, and stand for the summaries
    drawn = mrunner("results", sweep, "--curves", "x", "-o", str(tmp_path / "x.png"))
    assert drawn.returncode == 0, drawn.stderr
    assert len(list(cache.glob("*/mrunner-metrics.jsonl"))) == 2 and not summaries.load(cache)
    go("go2")
    ended = wait_for(
        lambda: status(mrunner, sweep), lambda s: all(r["state"] in ("completed", "failed") for r in s["experiments"])
    )
    assert [r["state"] for r in ended["experiments"]] == ["completed", "failed"]
    # the files changed since: their new summaries replace them here
    final = {how: results(mrunner, sweep, "--agg", how) for how in comparison.AGGREGATES}
    assert not list(cache.glob("*/mrunner-metrics.jsonl")) and len(summaries.load(cache)) == 2
    pulled = mrunner("pull", sweep, "--include", "mrunner-metrics.jsonl", "--to", str(tmp_path / "files"))
    assert pulled.returncode == 0, pulled.stderr
    for how, rows in final.items():
        assert [{"x": row["x"], "y": row["y"]} for row in rows] == from_files(tmp_path / "files", how), how
    assert xs(final["last"]) == [-1.5, -1.5] and [row["state"] for row in final["last"]] == ["completed", "failed (3)"]
    # the same table from the files brought back for the curves again
    assert mrunner("results", sweep, "--curves", "y", "-o", str(tmp_path / "y.png")).returncode == 0
    assert {how: results(mrunner, sweep, "--agg", how) for how in comparison.AGGREGATES} == final


def test_a_swept_resource_is_an_axis_of_the_table(project, mrunner):
    """`context.mem=100M,200M` is a dimension of the grid, as the parameters are: a column of its own, `--where`
    takes it, and `--over seed` keeps its values apart (it folded both memories into one row of n=4)."""
    (project / "small.py").write_text(
        "import mrunner\nc = mrunner.get_configuration()\nmrunner.report({'loss': 1.0 + c.seed}, step=0)\n"
    )
    done = mrunner("+context=results-slurm", "small.py", "-m", "context.mem=100M,200M", "seed=0,1", "--wait")
    assert done.returncode == 0, done.stderr
    sweep = done.stdout.strip().splitlines()[-1]
    folded = results(mrunner, sweep, "--over", "seed")
    assert [(r["context.mem"], r["loss"], r["n"]) for r in folded] == [("100M", 1.5, 2), ("200M", 1.5, 2)]
    chosen = results(mrunner, sweep, "--where", "context.mem=200M")
    assert [(r["index"], r["seed"]) for r in chosen] == [(2, 0), (3, 1)]
