"""Resolving ``slurm_url`` through an ssh config, without a cluster: paramiko's ``invoke`` is loaded only
when a ``Match exec`` line needs it, and then it works."""

from __future__ import annotations

import subprocess
import sys
import textwrap


def test_importing_the_ssh_module_does_not_load_invoke():
    code = "import sys, mrunner_slurm.ssh; print(sorted(m for m in ('asyncio', 'unittest.mock', 'invoke.tasks') if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_match_exec_in_the_ssh_config_still_runs_its_command(tmp_path):
    config = tmp_path / "ssh_config"
    config.write_text(textwrap.dedent(f"""\
        Match host cluster exec "touch {tmp_path}/ran"
            HostName login.example.org
            Port 2200
            User alice
        """))  # fmt: skip
    code = (
        f"from mrunner_slurm.ssh import resolve; t = resolve('cluster', {str(config)!r}); print(t.host, t.port, t.user)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["login.example.org", "2200", "alice"]
    assert (tmp_path / "ran").exists()
