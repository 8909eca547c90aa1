"""`mrunner gc` on the real loopback Slurm cluster: what a sweep leaves there beyond its results (the secrets
file, task bundles, batch scripts, submission markers, its code folder, file list and objects, the experiment
side) goes once no queued or running job needs it; results never do. Checked on the cluster's file tree
before and after."""

from __future__ import annotations

import json
import subprocess
import uuid
from pathlib import Path

import pytest

from mrunner.testing import wait_for, write_context
from plugins.mrunner_slurm.tests.test_slurm_cluster import transport_key

# Writes results in every folder of the layout's, then waits (while HOLD is set) for the test's go-ahead.
SCRIPT = """
import os, time
from mrunner import get_configuration
config = get_configuration()
os.makedirs("outputs", exist_ok=True)
open(os.path.join("outputs", "result.txt"), "w").write(str(config.seed))
open(os.path.join(os.environ["MRUNNER_CHECKPOINT_DIR"], "state"), "w").write("x")
print("secret seen:", bool(os.environ.get("MY_FAKE_TOKEN")), flush=True)
while config.get("hold") and not os.path.exists(os.path.join(os.environ["STORAGE_DIR"], "release")):
    time.sleep(0.1)
"""


class Cluster:
    def __init__(self, service: dict, storage: str) -> None:
        self.service, self.storage = service, storage

    def ssh(self, command: str) -> str:
        result = subprocess.run(
            ["ssh", "-F", self.service["ssh_config"], self.service["alias"], command],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, f"{command}: {result.stderr}"
        return result.stdout

    def tree(self) -> set[str]:
        """Every path below the storage folder, relative to it."""
        return set(self.ssh(f"cd {self.storage} && find . -mindepth 1 -printf '%P\\n'").split("\n")) - {""}


@pytest.fixture
def cluster(slurm_service: dict, mrunner_home: Path, tmp_path: Path, mrunner) -> Cluster:
    storage = f"{slurm_service['storage_dir']}/gc-{uuid.uuid4().hex[:10]}"
    write_context(
        mrunner_home,
        "gc-slurm",
        {
            "backend": "slurm",
            "slurm_url": slurm_service["alias"],
            "ssh_config": slurm_service["ssh_config"],
            "storage_dir": storage,
            "partition": slurm_service["partition"],
            "secrets": ["MY_FAKE_TOKEN"],
            "grace_period": 5,
            **transport_key(),
        },
    )
    (tmp_path / "project").mkdir()
    (tmp_path / "project" / "train.py").write_text(SCRIPT)
    mrunner.cwd = tmp_path / "project"
    return Cluster(slurm_service, storage)


def submit(mrunner, token: str, *args: str) -> str:
    result = mrunner("+context=gc-slurm", "train.py", *args, env={"MY_FAKE_TOKEN": token})
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().splitlines()[-1]


def status(mrunner, sweep: str) -> dict:
    result = mrunner("status", sweep, "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def all_in(state: str):
    """A ``wait_for`` condition on a sweep's status: every experiment is in ``state``."""
    return lambda document: all(run["state"] == state for run in document["experiments"])


def run_files(sweep_dir: str) -> set[str]:
    """The names what submitting a sweep writes to run it have in its folder (mrunner_slurm.batch)."""
    return {f"{sweep_dir}/.secrets.env", *(f"{sweep_dir}/{sub}/mrunner-" for sub in ("tasks", "slurm", "submitted"))}


def is_run_file(path: str, sweep_dir: str) -> bool:
    return any(path.startswith(prefix) for prefix in run_files(sweep_dir)) and not path.endswith(".out")


def test_gc_removes_what_ended_sweeps_left_to_run_and_keeps_results_and_what_a_running_sweep_needs(
    cluster, mrunner, tmp_path
):
    token = f"FAKE-{uuid.uuid4().hex}-TOKEN"
    ended = submit(mrunner, token, "-m", "seed=1,2", "--wait")
    first = wait_for(lambda: status(mrunner, ended), all_in("completed"), timeout=120, every=0.5)
    (tmp_path / "project" / "train.py").write_text(SCRIPT + "# changed: another code snapshot\n")
    running = submit(mrunner, token, "seed=3", "hold=1", "--detach")
    second = wait_for(lambda: status(mrunner, running), all_in("running"), timeout=120, every=0.5)
    project = first["sweep"]["project"]
    ended_dir, running_dir = f"{project}/{ended}", f"{project}/{running}"
    ended_code = f".mrunner/code/{first['sweep']['snapshot_digest']}"
    running_code = f".mrunner/code/{second['sweep']['snapshot_digest']}"
    before = cluster.tree()
    for sweep_dir in (ended_dir, running_dir):
        assert {f"{sweep_dir}/.secrets.env", f"{sweep_dir}/tasks", f"{sweep_dir}/submitted"} <= before, before
        assert any(is_run_file(path, sweep_dir) and "/tasks/" in path for path in before)
    assert token in cluster.ssh(f"cat {cluster.storage}/{ended_dir}/.secrets.env")

    dry = mrunner("gc", "--older-than", "0", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert f"secrets file {cluster.service['alias']}:{cluster.storage}/{ended_dir}/.secrets.env" in dry.stdout
    assert cluster.tree() == before  # a dry run removes nothing
    collected = mrunner("gc", "--older-than", "0")
    assert collected.returncode == 0 and "freed" in collected.stdout, collected.stdout + collected.stderr
    after = cluster.tree()

    gone = before - after
    assert after <= before
    expected = {path for path in before if is_run_file(path, ended_dir)}
    ended_digest, running_digest = first["sweep"]["snapshot_digest"], second["sweep"]["snapshot_digest"]
    for folder in ("code", "watched", "guards"):  # the code folder, and the watched copy jobs linked to
        ended_code = f".mrunner/{folder}/{ended_digest}"
        expected |= {path for path in before if path == ended_code or path.startswith(ended_code + "/")}
    assert f".mrunner/watched/{ended_digest}/train.py" in before and f".mrunner/guards/{running_digest}" in before
    expected.add(f".mrunner/trees/{first['sweep']['snapshot_digest']}.json")
    assert expected <= gone, sorted(expected - gone)
    stray = {p for p in gone - expected if not p.startswith(".mrunner/objects/")}  # unreferenced objects may go
    assert not stray, f"gc removed more than what the ended sweep left to run: {sorted(stray)}"
    for path in before:  # results stay, and all that the running sweep uses
        kept = (running_dir, running_code, f".mrunner/watched/{running_digest}", f".mrunner/guards/{running_digest}")
        if path.startswith(kept) or path.startswith(".mrunner/client"):
            assert path in after, path
        if path.startswith(ended_dir) and not is_run_file(path, ended_dir):
            assert path in after, path
    assert any(p.startswith(f"{ended_dir}/logs/") for p in after) and any("/checkpoints/" in p for p in after)
    assert any(p.startswith(f"{ended_dir}/slurm/") and p.endswith(".out") for p in after)

    cluster.ssh(f"touch {cluster.storage}/release")
    done = wait_for(lambda: status(mrunner, running), all_in("completed"), timeout=120, every=0.5)
    assert done["experiments"][0]["exit_code"] == 0
    pulled = mrunner("pull", ended, "--to", str(tmp_path / "results"))
    assert pulled.returncode == 0, pulled.stderr
    assert sorted(p.read_text() for p in (tmp_path / "results").glob("*/outputs/result.txt")) == ["1", "2"]

    # Once it ended, the second sweep's run files go too; the experiment side stays while it is younger than
    # gc's grace (a submission may be writing it), so it is aged here as a day-old one would be.
    cluster.ssh(f"find {cluster.storage}/.mrunner/client -exec touch -h -d '-1 day' {{}} +")
    again = mrunner("gc", "--older-than", "0")
    assert again.returncode == 0, again.stderr
    final = cluster.tree()
    assert not {p for p in final if is_run_file(p, running_dir) or p.startswith(".mrunner/client/")}, again.stdout
    assert {p for p in after if p.startswith(running_dir) and not is_run_file(p, running_dir)} <= final
    assert cluster.ssh(f"grep -r -l -F -- {token} {cluster.storage}; true").strip() == ""  # no secret left
