"""Neptune takes seconds to import: only an experiment that asks for it may pay. The submitting side
(`mrunner --help`, a dry run of a tracked context) and an untracked experiment never import it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from mrunner.testing import write_context


def imported_modules(args: list[str], cwd: Path, env: dict | None = None) -> set[str]:
    """Every module ``python -X importtime ARGS`` imported (read from its import-time report)."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return {line.rsplit("|", 1)[1].strip() for line in done.stderr.splitlines() if line.startswith("import time:")} - {
        "package"
    }


def neptune_modules(modules: set[str]) -> set[str]:
    return {name for name in modules if name == "neptune" or name.startswith("neptune.")}


def test_help_and_a_tracked_dry_run_do_not_import_neptune(tmp_path, mrunner_home, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    write_context(mrunner_home, "tracked", {"backend": "local", "neptune": True, "neptune_project": "w/p"})
    (tmp_path / "train.py").write_text("import mrunner\nmrunner.get_configuration(with_neptune=True)\n")
    (tmp_path / ".mrunnerignore").write_text("")  # HOME is the project here: a home folder needs a marker
    help_modules = imported_modules(["-m", "mrunner", "--help"], tmp_path)
    assert "mrunner.cli" in help_modules  # the report is read correctly
    assert neptune_modules(help_modules) == set()
    dry = ["-m", "mrunner", "+context=tracked", "train.py", "-m", "lr=1,2", "--dry-run"]
    dry_modules = imported_modules(dry, tmp_path, env={"NEPTUNE_API_TOKEN": "t"})
    assert "mrunner.trackers.neptune" in dry_modules
    assert neptune_modules(dry_modules) == set()


def test_get_configuration_without_neptune_imports_neither_neptune_yaml_nor_hydra(tmp_path):
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"parameters": {"lr": 0.1}, "name": "x", "sweep": "s", "tags": []}))
    script = textwrap.dedent("""
        import sys
        import mrunner
        config = mrunner.get_configuration()
        assert config.lr == 0.1 and mrunner.neptune_run() is None
        heavy = sorted(name for name in sys.modules if name.split(".")[0] in ("neptune", "yaml", "hydra", "omegaconf", "pluggy"))
        print(",".join(heavy))
    """)
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "MRUNNER_CONFIG": str(config)},
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == ""
