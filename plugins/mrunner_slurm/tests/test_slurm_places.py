"""On the real loopback cluster, ``slurm_url`` spelled as its Host alias, as ``user@alias`` (the user the alias's
config gives), with the port its config gives and with spaces around is one cluster: a repeated submission is "already
submitted" whichever spelling each used, and ``gc`` visits the cluster once (``mrunner_slurm.places``)."""

from __future__ import annotations

import uuid
from pathlib import Path

from mrunner.testing import write_context
from plugins.mrunner_slurm.tests.test_slurm_cluster import WRITER, Cluster, slurm_context, status


def spellings(service: dict) -> list[str]:
    return [
        service["alias"],
        f"{service['user']}@{service['alias']}",
        f"{service['alias']}:{service['port']}",  # the port its config gives
        f" {service['user']}@{service['alias']}:{service['port']} ",
    ]


def test_every_spelling_of_the_cluster_is_one_target(slurm_service, tmp_path: Path, mrunner_home: Path, mrunner):
    storage = f"{slurm_service['storage_dir']}/test-{uuid.uuid4().hex[:10]}"
    cluster = Cluster(slurm_service, storage)
    (tmp_path / "train.py").write_text(WRITER)
    try:
        first, *others = spellings(slurm_service)
        write_context(mrunner_home, "test-slurm", slurm_context(slurm_service, storage, slurm_url=first))
        done = mrunner("+context=test-slurm", "train.py", "-m", "lr=0.1,0.2", "--wait")
        assert done.returncode == 0, done.stdout + done.stderr
        sweep = done.stdout.strip().splitlines()[-1]
        assert [run["state"] for run in status(mrunner, sweep)["experiments"]] == ["completed"] * 2
        for url in others:  # the same context, its cluster spelled otherwise: nothing runs again
            write_context(mrunner_home, "test-slurm", slurm_context(slurm_service, storage, slurm_url=url))
            again = mrunner("+context=test-slurm", "train.py", "-m", "lr=0.1,0.2")
            assert again.returncode != 0 or "already submitted" in again.stderr, again.stdout + again.stderr
            assert "2 of 2 experiments were already submitted" in again.stderr, url + again.stderr
        write_context(mrunner_home, "test-slurm", slurm_context(slurm_service, storage, slurm_url=others[-1]))
        later = mrunner("+context=test-slurm", "train.py", "lr=0.3", "--wait")  # recorded with another spelling
        assert later.returncode == 0, later.stdout + later.stderr
        swept = mrunner("gc", "--dry-run")
        assert swept.returncode == 0, swept.stdout + swept.stderr
        visits = [line for line in swept.stderr.splitlines() if f":{storage}" in line and "collecting in" in line]
        assert len(visits) == 1, swept.stderr  # one cluster, whichever spelling each sweep's records hold
    finally:
        cluster.ssh(f"chmod -R u+w {storage} && rm -rf {storage}")
