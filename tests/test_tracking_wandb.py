"""The W&B tracker in offline mode: one run per experiment (a deterministic id every attempt resumes), grouped by
the sweep, parameters as its config, reported metrics logged; the run's files in the experiment's folder."""

from __future__ import annotations

import hashlib
import json
import struct

import pytest

from mrunner.testing import write_context

SCRIPT = """
import sys, mrunner
c = mrunner.get_configuration()
for step in range(3):
    mrunner.report({"loss": c.lr * (3 - step)}, step=step + 3 * mrunner.attempt())
if c.lr == 0.2 and mrunner.attempt() == 0:
    sys.exit(3)
"""


def records(path) -> list[tuple[str, object]]:
    """The records of a W&B offline run file, as (kind, record). The file is W&B's "datastore": a 7-byte header,
    then LevelDB's log format (32 KiB blocks; each chunk a 7-byte header of CRC, length and type: 1 whole,
    2 first, 3 middle, 4 last) around protobuf ``Record``s."""
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    assert data[:4] == b":W&B", data[:8]
    position, pending, found = 7, b"", []
    while position + 7 <= len(data):
        room = 32768 - position % 32768
        if room < 7:  # a block's tail too short for a header is padding
            position += room
            continue
        length, kind = struct.unpack("<HB", data[position + 4 : position + 7])
        chunk = data[position + 7 : position + 7 + length]
        position += 7 + length
        if kind == 0 and length == 0:
            break
        pending = chunk if kind in (1, 2) else pending + chunk
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            found.append((record.WhichOneof("record_type"), record))
    return found


@pytest.fixture
def context(mrunner_home, tmp_path) -> str:
    pytest.importorskip("wandb")
    (tmp_path / "train.py").write_text(SCRIPT)
    keys = {"backend": "local", "wandb": True, "wandb_mode": "offline", "wandb_project": "p", "retry_failed": 1}
    return write_context(mrunner_home, "wb", keys)


def test_offline_runs_in_the_experiments_folders_one_id_across_attempts(context, mrunner, mrunner_home):
    done = mrunner(f"+context={context}", "train.py", "-m", "lr=0.1,0.2", "--wait", env={"WANDB_API_KEY": ""})
    assert done.returncode in (0, 1), done.stderr
    sweep = done.stdout.strip().splitlines()[-1]
    states = json.loads(mrunner("status", sweep, "--json").stdout)["experiments"]
    assert [(e["state"], e["attempt"]) for e in states] == [("completed", 0), ("completed", 1)]
    for index, attempts in ((0, 1), (1, 2)):
        (folder,) = (mrunner_home / "data").rglob(f"{sweep}/{index}-train")
        identity = hashlib.sha256(f"{sweep}/{index}".encode()).hexdigest()[:32]
        runs = sorted((folder / "wandb").glob("offline-run-*"))
        assert len(runs) == attempts and all(run.name.endswith(f"-{identity}") for run in runs), runs
        history: list[tuple[int, float]] = []
        for run in runs:
            found = records(run / f"run-{identity}.wandb")
            (started,) = [record.run for kind, record in found if kind == "run"]
            assert started.run_id == identity and started.run_group == sweep and started.display_name == "train"
            config = {item.key: json.loads(item.value_json) for item in started.config.update}
            assert config["lr"] == pytest.approx(0.1 * (index + 1))
            for kind, record in found:
                if kind == "history":
                    items = {
                        item.key or "/".join(item.nested_key): json.loads(item.value_json)
                        for item in record.history.item
                    }
                    history.append((items["_step"], round(items["loss"], 6)))
        lr = 0.1 * (index + 1)
        expected = [(s, round(lr * (3 - s), 6)) for s in range(3)]
        if index == 1:
            expected += [(3 + s, round(lr * (3 - s), 6)) for s in range(3)]
        assert history == expected


def test_online_without_a_key_is_refused_in_one_line(mrunner_home, mrunner, tmp_path):
    write_context(mrunner_home, "online", {"backend": "local", "wandb": True, "wandb_mode": "online"})
    (tmp_path / "train.py").write_text("import mrunner\n")
    refused = mrunner("+context=online", "train.py", "lr=1", env={"WANDB_API_KEY": ""})
    assert refused.returncode != 0 and len(refused.stderr.strip().splitlines()) == 1, refused.stderr
    assert "WANDB_API_KEY is not set: export it, or set wandb_mode: offline" in refused.stderr


def test_a_mode_wandb_does_not_have_is_refused_naming_where_it_came_from(mrunner_home, mrunner, tmp_path):
    (tmp_path / "train.py").write_text("import mrunner\n")
    write_context(mrunner_home, "moded", {"backend": "local", "wandb": True, "wandb_mode": "offlne"})
    refused = mrunner("+context=moded", "train.py", "lr=1")
    assert refused.returncode == 2 and refused.stderr.strip() == (
        "mrunner: error: context moded: wandb_mode 'offlne' is not one of online, offline"
    )
    write_context(mrunner_home, "inherited", {"backend": "local", "wandb": True})
    refused = mrunner("+context=inherited", "train.py", "lr=1", env={"WANDB_MODE": "disabled"})
    assert refused.returncode == 2 and refused.stderr.strip() == (
        "mrunner: error: context inherited: $WANDB_MODE (the default of wandb_mode) 'disabled' is not one of "
        "online, offline"
    )
    assert json.loads(mrunner("status", "--json").stdout) == []
