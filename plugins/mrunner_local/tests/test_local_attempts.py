"""Attempts on the local backend, as a user meets them: Ctrl-C during a checkpointing script then `resume`
continues from the checkpoint; `resume` with changed keys and the current code records what each attempt ran
with and never reruns a completed experiment; `logs --attempt` shows an earlier attempt's output."""

from __future__ import annotations

import json
import signal
from pathlib import Path

from mrunner.records import CANCELLED, COMPLETED, FAILED
from mrunner.testing import start_mrunner, wait_for

# Saves its step in the checkpoint folder after every step (atomically); SIGTERM saves and stops.
CHECKPOINTING = """
import json, os, signal, sys, time
import mrunner

config = mrunner.get_configuration()
path = os.path.join(mrunner.checkpoint_dir(), "state.json")
state = json.load(open(path)) if os.path.exists(path) else {"step": 0, "attempts": []}
state["attempts"].append(mrunner.attempt())

def save(*_):
    with open(path + ".tmp", "w") as out:
        json.dump(state, out)
    os.replace(path + ".tmp", path)

signal.signal(signal.SIGTERM, lambda *_: (save(), sys.exit(143)))
print("attempt", mrunner.attempt(), "from step", state["step"], flush=True)
while state["step"] < config.steps:
    state["step"] += 1
    save()
    if config.get("fail") and not os.path.exists(os.path.join(os.environ["STORAGE_DIR"], "..", "healed")):
        sys.exit(3)
    time.sleep(config.pause if mrunner.attempt() == 0 else 0)  # slow only until the interrupt: a resume runs on
print("done at step", state["step"], flush=True)
"""


def status(mrunner, ref: str) -> dict:
    result = mrunner("status", ref, "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def checkpoint(storage: Path) -> dict:
    (found,) = storage.glob("*/*/checkpoints/0-*/state.json")
    return json.loads(found.read_text())


def test_ctrl_c_during_a_checkpointing_script_then_resume_continues_from_its_checkpoint(mrunner, tmp_path: Path):
    (tmp_path / "train.py").write_text(CHECKPOINTING)
    storage = tmp_path / "storage"
    process = start_mrunner(
        tmp_path, "train.py", "steps=400", "pause=0.05", "context.grace_period=5", f"context.storage_dir={storage}"
    )
    wait_for(lambda: bool(list(storage.glob("*/*/checkpoints/0-*/state.json"))) and checkpoint(storage)["step"] >= 3)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=30)
    assert process.returncode == 130, stderr
    stopped_at = checkpoint(storage)["step"]
    sweep = json.loads(mrunner("status", "--json").stdout)[0]["sweep"]["id"]
    assert status(mrunner, f"{sweep}/0")["experiment"]["state"] == CANCELLED
    resumed = mrunner("resume", sweep, "context.pause=0", timeout=120)
    assert resumed.returncode != 0 and "pause" in resumed.stderr  # a parameter is no context key: refused
    resumed = mrunner("resume", sweep, timeout=120)
    assert resumed.returncode == 0, resumed.stderr
    state = checkpoint(storage)
    assert state["step"] == 400 and state["attempts"] == [0, 1]
    shown = status(mrunner, f"{sweep}/0")
    assert [(a["number"], a["cause"], a["end"]) for a in shown["attempts"]] == [
        (0, "submitted", CANCELLED),
        (1, "resumed", COMPLETED),
    ]
    second = mrunner("logs", f"{sweep}/0").stdout
    assert f"attempt 1 from step {stopped_at}" in second and "done at step 400" in second
    first = mrunner("logs", f"{sweep}/0", "--attempt", "0")
    assert first.returncode == 0 and "attempt 0 from step 0" in first.stdout and "done" not in first.stdout


def test_resume_with_changed_keys_and_the_current_code_reruns_only_what_did_not_complete(mrunner, tmp_path: Path):
    (tmp_path / "train.py").write_text(CHECKPOINTING)
    submitted = mrunner("train.py", "-m", "fail=0,1", "steps=2", "pause=0")
    assert submitted.returncode == 1, submitted.stderr
    sweep = json.loads(mrunner("status", "--json").stdout)[0]["sweep"]["id"]
    shown = status(mrunner, sweep)
    assert [e["state"] for e in shown["experiments"]] == [COMPLETED, FAILED]
    first_snapshot = shown["sweep"]["snapshot_digest"]
    refused = mrunner("resume", sweep, "context.backend=slurm")
    assert refused.returncode != 0 and "cannot change context.backend" in refused.stderr
    refused = mrunner("resume", sweep, "context.grace_period=-1")
    assert refused.returncode != 0 and "key 'grace_period' must be at least 0" in refused.stderr
    assert "Traceback" not in refused.stderr
    (tmp_path / "train.py").write_text(CHECKPOINTING.replace("sys.exit(3)", "pass"))  # the bug fixed
    resumed = mrunner("resume", sweep, "context.grace_period=7", "--current-code")
    assert resumed.returncode == 0, resumed.stderr
    shown = status(mrunner, sweep)
    assert [e["state"] for e in shown["experiments"]] == [COMPLETED, COMPLETED]
    assert [len(e["attempts"]) for e in shown["experiments"]] == [1, 2]  # the completed one never ran again
    first, second = shown["experiments"][1]["attempts"]
    assert (first["end"], first["exit_code"], first["snapshot_digest"]) == (FAILED, 3, first_snapshot)
    assert second["changes"] == {"grace_period": 7} and second["snapshot_digest"] != first_snapshot
    assert shown["sweep"]["context"]["grace_period"] == 7
    table = mrunner("status", f"{sweep}/1").stdout
    assert "resumed" in table and "grace_period=7" in table


def test_a_cancel_of_a_retried_experiment_stops_it_and_starts_no_further_attempt(mrunner, tmp_path: Path):
    (tmp_path / "flaky.py").write_text(
        "import sys, time, mrunner\n"
        "print('attempt', mrunner.attempt(), flush=True)\n"
        "if mrunner.attempt() == 0:\n    sys.exit(3)\n"
        "time.sleep(600)\n"
    )
    submitted = mrunner("flaky.py", "context.retry_failed=2", "context.grace_period=2", "--detach")
    assert submitted.returncode == 0, submitted.stderr
    sweep = submitted.stdout.strip().splitlines()[-1]
    wait_for(
        lambda: (
            status(mrunner, f"{sweep}/0")["experiment"]["state"] == "running"
            and status(mrunner, f"{sweep}/0")["experiment"]["attempt"] == 1
            # running is recorded as its wrapper starts it: the script's first line may come later (under load)
            and "attempt 1" in mrunner("logs", f"{sweep}/0").stdout
        )
    )
    cancelled = mrunner("cancel", f"{sweep}/0")
    assert cancelled.returncode == 0, cancelled.stderr
    shown = status(mrunner, f"{sweep}/0")
    assert (shown["experiment"]["state"], shown["experiment"]["attempt"]) == (CANCELLED, 1)
    assert [(a["number"], a["cause"], a["end"], a["exit_code"]) for a in shown["attempts"]] == [
        (0, "submitted", FAILED, 3),
        (1, "retried", CANCELLED, -15),  # the script's own end of the cancel: SIGTERM killed it
    ]
    assert "attempt 1" in mrunner("logs", f"{sweep}/0").stdout
    assert "attempt 0" in mrunner("logs", f"{sweep}/0", "--attempt", "0").stdout
