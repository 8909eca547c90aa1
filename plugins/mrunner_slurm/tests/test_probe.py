"""The admission's probe of each resource class (``remote_helper.probe``: ``sbatch --test-only``), in the test's
process with a fake ``sbatch`` and ``sinfo`` first on PATH (fakes: the shared test cluster's node cannot be
taken down for one test), for the one answer that depends on the nodes' state."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from mrunner_slurm import remote

UNFIT = "allocation failure: Requested node configuration is not available"


def helper():
    spec = importlib.util.spec_from_file_location("remote_helper", Path(remote.__file__).with_name("remote_helper.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def fake(folder: Path, name: str, text: str) -> None:
    (folder / name).write_text("#!/bin/sh\n" + text)
    (folder / name).chmod(0o755)


@pytest.mark.parametrize("down,refused", [("0", True), ("1", False)])
def test_no_node_fits_refuses_only_while_every_node_is_up(tmp_path, monkeypatch, down, refused):
    """`--test-only` says "node configuration is not available" both for a request no node has (a real
    sbatch refuses it too) and while the nodes are down or drained (a real sbatch queues it): with a node of
    the partition down the probe leaves the decision to the real sbatch instead of refusing the sweep."""
    fake(tmp_path, "sbatch", f'echo "{UNFIT}" >&2; exit 1\n')
    fake(tmp_path, "sinfo", f'echo "{down}"\n')
    monkeypatch.setenv("PATH", f"{tmp_path}:/usr/bin:/bin")
    answer = helper().probe({"argvs": [["sbatch", "--partition=debug", "--gres=gpu:9", "--wrap=true"]]})
    assert answer == {"refused": [0, UNFIT] if refused else None}


def test_an_invalid_partition_is_refused_whatever_the_nodes_state(tmp_path, monkeypatch):
    fake(tmp_path, "sbatch", 'echo "sbatch: error: invalid partition specified: nosuch" >&2; exit 1\n')
    fake(tmp_path, "sinfo", 'echo "1"\n')
    monkeypatch.setenv("PATH", f"{tmp_path}:/usr/bin:/bin")
    answer = helper().probe({"argvs": [["sbatch", "--partition=debug", "--wrap=true"], ["sbatch", "-p", "x"]]})
    assert answer == {"refused": [0, "sbatch: error: invalid partition specified: nosuch"]}
