"""Per-point resources without a cluster: a swept resource key (``context.mem=8G,32G``) and a spec's
per-experiment resources are read, checked and refused as a user sees it, become each run's recorded
``resources`` and part of its identity, group into classes the dry run and the Slurm submission show, and a
database written before the column existed still opens. The real cluster's side is
plugins/mrunner_slurm/tests/test_slurm_resources.py."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from mrunner.planning import Plan, PlannedRuns, Request, new_sweep
from mrunner.records import Run
from mrunner.snapshot import scan
from mrunner.store import Store
from mrunner.testing import write_context
from tests.test_cli_errors import assert_one_line_error, recorded_sweeps

# The dry run and planning reach no cluster: this host is never contacted.
SLURM = {"backend": "slurm", "slurm_url": "nowhere.invalid", "storage_dir": "/tmp/nowhere", "partition": "debug"}
K8S = {"backend": "kubernetes", "registry_url": "registry.invalid/mrunner"}


@pytest.fixture
def project(tmp_path: Path, mrunner_home: Path) -> Path:
    (tmp_path / "train.py").write_text("print('hi')\n")
    write_context(mrunner_home, "cluster", SLURM)
    write_context(mrunner_home, "pods", K8S)
    return tmp_path


def plan(project: Path, *overrides: str, target: str = "train.py", spec: str | None = None) -> Plan:
    context = [o for o in overrides if o.startswith("context.")]
    grid = [o for o in overrides if not o.startswith("context.")]
    request = Request(
        project / target,
        grid,
        multirun=True,
        context_name="cluster",
        context_overrides=context,
        dry_run=True,
        spec_variable=spec,
    )
    return Plan(request, cwd=project)


def runs_of(planned: Plan) -> list[Run]:
    frozen = scan(planned.root)
    return list(PlannedRuns(planned, new_sweep(planned, frozen), frozen.digest))


def test_a_swept_resource_is_a_slowest_dimension_recorded_as_each_runs_resources(project):
    planned = plan(project, "context.mem=8G,32G", "lr=0.1,0.01")
    assert len(planned) == 4
    runs = runs_of(planned)
    assert [r.resources for r in runs] == [{"mem": "8G"}] * 2 + [{"mem": "32G"}] * 2
    assert [r.parameters for r in runs] == [{"lr": 0.1}, {"lr": 0.01}] * 2  # no `context.mem` among them
    assert planned.context["mem"] is None, "the sweep's context stays as composed"
    assert planned.resource_classes() == {"mem=8G": ({"mem": "8G"}, 2), "mem=32G": ({"mem": "32G"}, 2)}
    # checked and written as the context holds them: a number for a text key becomes text
    assert [r.resources for r in runs_of(plan(project, "context.time=30,120", "context.gpu=1,2"))] == [
        {"time": 30, "gpu": 1},
        {"time": 30, "gpu": 2},
        {"time": 120, "gpu": 1},
        {"time": 120, "gpu": 2},
    ]


def test_resources_are_part_of_the_identity_and_the_same_grid_is_recorded_once(project):
    runs = runs_of(plan(project, "context.mem=8G,32G", "lr=0.1,0.01"))
    assert len({r.id for r in runs}) == 4
    # a point of the 8G class is the experiment the same point is with mem=8G set once for the sweep
    once = runs_of(plan(project, "context.mem=8G", "lr=0.1,0.01"))
    assert [r.id for r in once] == [r.id for r in runs[:2]]
    assert [r.resources for r in once] == [{}, {}]
    store = Store()
    first = plan(project, "context.mem=8G,32G", "lr=0.1,0.01")
    frozen = scan(first.root)
    recorded = store.record_sweep(new_sweep(first, frozen), PlannedRuns(first, new_sweep(first, frozen), frozen.digest))
    assert recorded.count == 4
    sweep = store.sweeps(1)[0]
    assert [r.resources for r in store.runs(sweep.id)] == [r.resources for r in runs]
    assert store.resource_classes(sweep.id) == {"mem=8G": 2, "mem=32G": 2}
    again = plan(project, "context.mem=8G,32G", "lr=0.1,0.01")
    repeat = new_sweep(again, frozen)
    assert store.record_sweep(repeat, PlannedRuns(again, repeat, frozen.digest)).skipped == 4


def test_a_spec_experiment_carries_its_own_resources(project, mrunner):
    (project / "spec.py").write_text(
        "from mrunner import create_experiments\n"
        "experiments_list = create_experiments('train.py', params_grid={'size': [1, 2]}) + create_experiments(\n"
        "    'train.py', params_grid={'size': [3]}, resources={'mem': '32G', 'gpu': 2})\n"
    )
    planned = plan(project, target="spec.py", spec="experiments_list")
    assert [r.resources for r in runs_of(planned)] == [{}, {}, {"mem": "32G", "gpu": 2}]
    # a swept key goes over an experiment's own; the spec's experiments vary slowest
    swept = plan(project, "context.mem=1G,2G", target="spec.py", spec="experiments_list")
    assert [r.resources for r in runs_of(swept)] == [
        {"mem": "1G"},
        {"mem": "2G"},
        {"mem": "1G"},
        {"mem": "2G"},
        {"mem": "1G", "gpu": 2},
        {"mem": "2G", "gpu": 2},
    ]
    dry = mrunner("+context=cluster", "spec.py", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "  - 2 resource classes, each submitted on its own:" in dry.stdout
    assert "    - (the context as it is): 2 experiments" in dry.stdout
    assert "    - gpu=2 mem=32G: 1 experiment\n" in dry.stdout
    assert "sbatch --partition=debug --mem=32G --requeue --signal=B:USR1@30 --gres=gpu:2" in dry.stdout
    assert "[2] train: size=3 [gpu=2 mem=32G]" in dry.stdout
    (project / "bad.py").write_text(
        "from mrunner import create_experiments\n"
        "experiments_list = create_experiments('train.py', resources={'storage_dir': '/elsewhere'})\n"
    )
    assert_one_line_error(
        mrunner("+context=cluster", "bad.py", "--dry-run"),
        "experiment train (resources): 'storage_dir' cannot vary per point; keys of the slurm backend that may: "
        "cpu, gpu, mem, nodes, ntasks, partition, qos, time",
    )


def test_the_dry_run_shows_each_class_with_its_count_and_sbatch_options(project, mrunner):
    dry = mrunner("+context=cluster", "train.py", "-m", "context.mem=600M,1200M", "lr=0.1,0.01,0.001", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    lines = dry.stdout.splitlines()
    start = lines.index("plan:")
    assert lines[start + 1 : start + 10] == [
        "  - upload the code snapshot to nowhere.invalid:/tmp/nowhere (only files it lacks)",
        "  - 2 resource classes, each submitted on its own:",
        "    - mem=600M: 3 experiments",
        "      - submit 3 experiments as 1 job array (more if the cluster's MaxArraySize is below 1001)",
        "      - sbatch --partition=debug --mem=600M --requeue --signal=B:USR1@30",
        "    - mem=1200M: 3 experiments",
        "      - submit 3 experiments as 1 job array (more if the cluster's MaxArraySize is below 1001)",
        "      - sbatch --partition=debug --mem=1200M --requeue --signal=B:USR1@30",
        "first 5 of 6:",
    ]
    assert "  [3] train: lr=0.1 [mem=1200M]" in lines
    # Kubernetes: each pod's own requests
    pods = mrunner("+context=pods", "train.py", "-m", "context.mem=64Mi,128Mi", "--dry-run")
    assert pods.returncode == 0, pods.stderr
    assert "    - mem=64Mi: 1 experiment" in pods.stdout and "    - mem=128Mi: 1 experiment" in pods.stdout


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (
            ("+context=cluster", "-m", "context.storage_dir=/a,/b"),
            "'context.storage_dir=/a,/b': 'storage_dir' cannot vary per point; keys of the slurm backend that may: "
            "cpu, gpu, mem, nodes, ntasks, partition, qos, time",
        ),
        (("+context=cluster", "-m", "context.slurm_url=a,b"), "'slurm_url' cannot vary per point"),
        (("+context=cluster", "-m", "context.backend=slurm,local"), "'backend' cannot vary per point"),
        (("+context=cluster", "-m", "context.memory=1G,2G"), "the slurm backend has no context key 'memory'"),
        (("+context=cluster", "context.mem=1G,2G"), "override 'context.mem=1G,2G' is a sweep of 2 values: add -m"),
        (("+context=cluster", "-m", "context.mem=1G,2G", "--mem", "3G"), "context.mem is set more than once"),
        (("+context=cluster", "-m", "context.gpu=1,a:b"), "gpu must be a count or type:count"),
        (("+context=cluster", "-m", "context.nodes=1,x"), "key 'nodes' must be int, got str 'x'"),
        (
            ("-m", "context.storage_dir=/a,/b"),
            "'storage_dir' cannot vary per point; keys of the local backend that may: gpus_per_experiment",
        ),
    ],
)
def test_a_key_that_cannot_vary_per_point_is_refused_in_one_line(project, mrunner, mrunner_home, args, said):
    for dry in ([], ["--dry-run"]):
        assert_one_line_error(mrunner("train.py", *args, *dry), said)
    assert recorded_sweeps(mrunner_home) == 0


def test_a_backend_without_per_point_keys_refuses_any_swept_key():
    from mrunner import resources
    from mrunner.errors import MrunnerError
    from mrunner.schema import ContextKey

    keys = {"mem": ContextKey("mem", str), "storage_dir": ContextKey("storage_dir", str)}
    with pytest.raises(MrunnerError) as refused:
        resources.axes(["context.mem=1G,2G"], [], keys, "process", "c", multirun=True)
    assert str(refused.value) == (
        "'context.mem=1G,2G': the process backend takes no per-point resources, so context key 'mem' must be one "
        "value for the whole sweep"
    )


def test_a_database_from_before_per_point_resources_opens_with_none(mrunner_home):
    path = mrunner_home / "old.db"
    old = sqlite3.connect(path)
    old.executescript(
        "CREATE TABLE experiments (sweep_id TEXT NOT NULL, idx INTEGER NOT NULL, id TEXT NOT NULL, name TEXT NOT NULL,"
        " parameters TEXT NOT NULL, command TEXT NOT NULL, env TEXT NOT NULL, tags TEXT NOT NULL, state TEXT NOT NULL,"
        " attempt INTEGER NOT NULL, backend_ref TEXT, exit_code INTEGER, updated_at REAL NOT NULL,"
        " PRIMARY KEY (sweep_id, idx));"
        "INSERT INTO experiments VALUES ('s', 0, 'abc', 'n', '{}', '[]', '{}', '[]', 'completed', 0, NULL, 0, 1.0);"
    )
    old.commit()
    old.close()
    store = Store(path)
    assert store.run("s", 0).resources == {}
    assert store.resource_classes("s") == {"": 1}
    Store(path).close()  # opened again: the column is there already
