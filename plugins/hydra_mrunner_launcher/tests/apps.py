"""The app the launcher's own tests run, and how they run it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

# `python app.py -m ...` runs it as usual. `python app.py drive OVERRIDES` runs the same multirun in its own
# process and prints what the launcher returned (JobReturn), which a script's multirun never shows; the
# jobs still run `python app.py OVERRIDES`, the task function being the script's @hydra.main.
APP = """
import json, sys
import hydra

@hydra.main(config_path=None, config_name=None, version_base=None)
def main(cfg):
    if cfg.x == "boom":
        raise ValueError("boom is not a number")
    return {"twice": cfg.x * 2}


def drive(overrides):
    from hydra import version
    from hydra._internal.hydra import Hydra

    version.setbase(None)
    app = Hydra.create_main_hydra_file_or_module(calling_file=__file__, calling_module=None, config_path=None,
                                                 job_name="app")
    returns = app.multirun(config_name=None, task_function=main.__wrapped__, overrides=overrides)
    print(json.dumps([{"status": r.status.name, "value": r.return_value, "overrides": r.overrides,
                       "num": r.hydra_cfg.hydra.job.num} for batch in returns for r in batch]))


if __name__ == "__main__":
    if sys.argv[1:2] == ["drive"]:
        drive(sys.argv[2:])
    else:
        main()
"""


def run_app(folder: Path, *arguments: str) -> subprocess.CompletedProcess:
    (folder / "app.py").write_text(APP)
    return subprocess.run(
        [sys.executable, "app.py", *arguments], cwd=folder, capture_output=True, text=True, timeout=600
    )


def returned(result: subprocess.CompletedProcess) -> list[dict]:
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def failed_sweep(result: subprocess.CompletedProcess, index: int) -> tuple[str, str]:
    """The sweep id and the one-line failure Hydra printed for job ``index``."""
    assert result.returncode == 1, result.stderr
    line = next(line for line in result.stderr.splitlines() if line.startswith(f"job #{index} "))
    return line.split("(")[1].split("/")[0], line
