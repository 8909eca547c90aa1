"""A token in the requirements file (an index URL's password, as pip takes it) is recorded for a resume
(``Backend.identify``) but printed nowhere: not by `status` or `status --json` (the requirements show as their
digest and line count), not in an experiment's log, not in the batch scripts on the cluster; the copy pip reads
on the cluster is the user's alone. On the loopback cluster (tests/services/slurm)."""

from __future__ import annotations

import hashlib
import json
import uuid
from pathlib import Path

from mrunner.testing import ended, write_context
from plugins.mrunner_slurm.tests.test_slurm_cluster import Cluster, slurm_context

TOKEN = "glpat-Zq8vT0kenL00ksS3cret9xW"  # token-looking, and nowhere else
REQUIREMENTS = (
    f"--extra-index-url https://mrtest:{TOKEN}@127.0.0.1:9/simple\n"
    f"-i https://__token__:{TOKEN}@127.0.0.1:9/simple\n"
    "pip\n"  # already in every virtualenv: installed without asking either index
)


def test_a_token_in_the_requirements_is_shown_nowhere(slurm_service, mrunner, mrunner_home, tmp_path):
    storage = f"{slurm_service['storage_dir']}/test-{uuid.uuid4().hex[:10]}"
    write_context(
        mrunner_home, "test-slurm", slurm_context(slurm_service, storage, requirements_file="requirements.txt")
    )
    (tmp_path / "requirements.txt").write_text(REQUIREMENTS)
    (tmp_path / "exp.py").write_text("print('RAN', flush=True)\n")
    submitted = mrunner("+context=test-slurm", "exp.py", "-m", "i=range(2)")
    assert submitted.returncode == 0, submitted.stderr
    sweep = submitted.stdout.strip().splitlines()[-1]
    found = ended(mrunner, sweep)
    assert [found[i]["state"] for i in range(2)] == ["completed"] * 2, found
    outputs = {"submission": submitted.stdout + submitted.stderr}
    for args in (("status",), ("status", "--json"), ("status", sweep), ("status", sweep, "--json")):
        shown = mrunner(*args)
        assert shown.returncode == 0, shown.stderr
        outputs[" ".join(args)] = shown.stdout + shown.stderr
    for index in range(2):
        for args in (
            ("status", f"{sweep}/{index}"),
            ("status", f"{sweep}/{index}", "--json"),
            ("logs", f"{sweep}/{index}"),
        ):
            outputs[" ".join(args)] = mrunner(*args).stdout
    assert "RAN" in outputs[f"logs {sweep}/0"], outputs
    cluster = Cluster(slurm_service, storage)
    recorded = json.loads(outputs[f"status {sweep} --json"])["sweep"]
    outputs["the cluster's sweep folder"] = cluster.ssh(
        f"cat {recorded['detail']['sweep_dir']}/* 2>/dev/null", check=False
    )
    leaked = [where for where, text in outputs.items() if TOKEN in text]
    assert leaked == [], leaked
    digest = hashlib.sha256(REQUIREMENTS.encode()).hexdigest()
    assert recorded["detail"]["identified"]["requirements"].startswith(f"sha256:{digest} (3 lines"), recorded
    # what pip reads on the cluster, beside the virtualenv: the user's alone
    venv = recorded["detail"]["venv"]
    assert cluster.ssh(f"stat -c %a {venv}.requirements.txt").strip() == "600"
    # what mrunner wrote on this machine: only the records hold it (for a resume), and only the user reads them
    holding = [path for path in Path(mrunner_home).rglob("*") if path.is_file() and TOKEN.encode() in path.read_bytes()]
    assert holding and all(path.parent.stat().st_mode & 0o077 == 0 for path in holding), [
        (path, oct(path.parent.stat().st_mode)) for path in holding
    ]
