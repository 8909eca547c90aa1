"""Resolving ``slurm_url`` through an ssh config, without a cluster: paramiko's ``invoke`` is loaded only
when a ``Match exec`` line needs it, and then it works."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from mrunner.testing import write_context


def test_importing_the_ssh_module_does_not_load_invoke():
    code = "import sys, mrunner_slurm.ssh; print(sorted(m for m in ('asyncio', 'unittest.mock', 'invoke.tasks') if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_match_exec_in_the_ssh_config_still_runs_its_command(tmp_path):
    config = tmp_path / "ssh_config"
    config.write_text(
        textwrap.dedent(f"""\
        Match host cluster exec "touch {tmp_path}/ran"
            HostName login.example.org
            Port 2200
            User alice
        """)
    )
    code = (
        f"from mrunner_slurm.ssh import resolve; t = resolve('cluster', {str(config)!r}); print(t.host, t.port, t.user)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["login.example.org", "2200", "alice"]
    assert (tmp_path / "ran").exists()


def _resolve(home, alias, config=None):
    """``resolve`` in a process whose home (``~/.ssh``) is ``home``."""
    code = (
        "import json; from mrunner_slurm.ssh import resolve; "
        f"t = resolve({alias!r}, {config!r}); print(json.dumps([t.host, t.port, t.user, t.proxy_command]))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
        env={**os.environ, "HOME": str(home)},
    )
    return done


def test_include_is_followed_relative_to_dot_ssh_with_globs_in_order(tmp_path):
    ssh = tmp_path / ".ssh"
    (ssh / "config.d").mkdir(parents=True)
    (ssh / "config").write_text(
        textwrap.dedent("""\
        Include config.d/*.conf
        Host other
            HostName other.example.org
        Host *
            User fallback
        """)
    )
    (ssh / "config.d" / "10-cluster.conf").write_text("Host cluster\n    HostName login.example.org\n    Port 2200\n")
    (ssh / "config.d" / "20-later.conf").write_text("Host cluster\n    Port 9999\n    User alice\n")
    (ssh / "config.d" / "ignored.txt").write_text("Host cluster\n    Port 1\n")
    done = _resolve(tmp_path, "cluster")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == ["login.example.org", 2200, "alice", None]  # first value wins, as in ssh
    assert json.loads(_resolve(tmp_path, "other").stdout)[:3] == ["other.example.org", 22, "fallback"]


def test_include_inside_a_block_applies_only_there_and_match_is_applied(tmp_path):
    (tmp_path / ".ssh").mkdir()
    (tmp_path / ".ssh" / "common").write_text("User shared\nPort 2022\n")
    config = tmp_path / "custom_config"
    config.write_text(
        textwrap.dedent(f"""\
        Host cluster
            Include ~/.ssh/common
            HostName login.example.org
        Match originalhost gateway user *
            HostName gw.example.org
            ProxyCommand {sys.executable} relay.py %h %p
        """)
    )
    assert json.loads(_resolve(tmp_path, "cluster", str(config)).stdout) == ["login.example.org", 2022, "shared", None]
    host, port, user, proxy = json.loads(_resolve(tmp_path, "gateway", str(config)).stdout)
    assert (host, port, user) == ("gw.example.org", 22, os.environ.get("USER") or user)
    assert proxy == f"{sys.executable} relay.py gw.example.org 22"


def test_what_cannot_be_followed_is_one_line(tmp_path):
    (tmp_path / ".ssh").mkdir()
    (tmp_path / ".ssh" / "blocks").write_text("Host inner\n    Port 1\n")
    (tmp_path / ".ssh" / "config").write_text("Host cluster\n    Include blocks\n")
    done = _resolve(tmp_path, "cluster")
    assert done.returncode == 1 and "Traceback" in done.stderr  # resolve raises; the CLI prints its line
    assert (
        done.stderr.strip()
        .splitlines()[-1]
        .endswith(
            f"ssh config: {tmp_path}/.ssh/blocks:1: a file included inside a Host/Match block has a Host block "
            f"of its own, which mrunner cannot follow: move its Include to the top of the config"
        )
    )
    (tmp_path / ".ssh" / "config").write_text("Include config\n")
    assert "Include nested too deeply" in _resolve(tmp_path, "cluster").stderr.strip().splitlines()[-1]
    (tmp_path / ".ssh" / "config").write_text("Match host cluster !localnetwork 10.0.0.0/8\n    Port 1\n")
    last = _resolve(tmp_path, "cluster").stderr.strip().splitlines()[-1]
    assert f"ssh config: {tmp_path}/.ssh/config:1: Match localnetwork is not supported" in last


def test_the_openssh_transport_imports_no_paramiko():
    """A context on OpenSSH never pays for paramiko (0.3 s): the transport modules import it only when chosen."""
    code = (
        "import sys; from mrunner_slurm import transport, openssh, logins, remote, jobs, submit, deploy, results; "
        "print('paramiko' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stdout.strip()) == (0, "False"), done.stderr


def test_an_unknown_transport_or_login_time_is_one_line(tmp_path, mrunner, mrunner_home):
    folder = mrunner_home / "config" / "mrunner" / "context"
    folder.mkdir(parents=True)
    (tmp_path / "train.py").write_text("print(1)\n")
    for key, value, expected in (
        ("ssh", "putty", "key 'ssh' must be one of openssh, paramiko, got 'putty'"),  # from SlurmKeys
        ("login_persist", "a day", "login_persist must be a time such as 30m, 10h or 1d, got 'a day'"),
    ):
        context = {"backend": "slurm", "slurm_url": "cluster", key: value}
        (folder / "c.yaml").write_text(json.dumps(context))
        result = mrunner("+context=c", "train.py", "--dry-run")
        lines = result.stderr.splitlines()
        assert result.returncode != 0 and len(lines) == 1, result.stderr
        assert lines[0].startswith(f"mrunner: error: context c: {expected}"), result.stderr


@pytest.mark.parametrize("transport", ["openssh", "paramiko"])
def test_a_proxy_command_that_cannot_run_is_one_line_at_once(tmp_path, mrunner, mrunner_home, transport):
    """A ProxyCommand whose program is missing: no retries (nothing mends it), one line with why and where to
    fix it. A master that persists sends its ProxyCommand's stderr to /dev/null, so OpenSSH's reason is asked
    from a plain ``ssh``."""
    config = tmp_path / "ssh_config"
    config.write_text("Host cluster\n    HostName 127.0.0.1\n    ProxyCommand /nonexistent/proxy %h %p\n")
    (tmp_path / "train.py").write_text("print(1)\n")
    context = {"backend": "slurm", "slurm_url": "cluster", "ssh_config": str(config), "ssh": transport}
    (mrunner_home / "config" / "mrunner" / "context").mkdir(parents=True)
    (mrunner_home / "config" / "mrunner" / "context" / "c.yaml").write_text(json.dumps(context))
    result = mrunner("+context=c", "train.py", env={"XDG_RUNTIME_DIR": str(tmp_path)})
    errors = [line for line in result.stderr.splitlines() if line.startswith("mrunner: error")]
    assert result.returncode != 0 and len(errors) == 1 and "Traceback" not in result.stderr, result.stderr
    assert errors[0].startswith("mrunner: error: the ProxyCommand of cluster cannot run ("), errors[0]
    # OpenSSH runs the ProxyCommand through the user's $SHELL, whose words differ: bash says "No such file or
    # directory", dash (CI's /bin/sh) "not found".
    reason = errors[0].split(" cannot run (", 1)[1].split("): fix", 1)[0]
    assert "No such file or directory" in reason or "not found" in reason, reason
    assert "/nonexistent/proxy" in errors[0], errors[0]
    assert f"in {config}" in errors[0], errors[0]


@pytest.mark.parametrize("transport", ["openssh", "paramiko"])
def test_an_alias_that_is_no_host_of_the_ssh_config_says_so_and_where_to_fix_it(
    tmp_path, mrunner, mrunner_home, transport
):
    """A typo in ``slurm_url`` (or a Host missing from the config) is neither a Host of the ssh config nor a
    name that resolves: the one line names the config file read and the two places to fix, not only the DNS
    failure."""
    config = tmp_path / "ssh_config"
    config.write_text("Host cluster\n    HostName 127.0.0.1\n")
    (tmp_path / "train.py").write_text("print(1)\n")
    alias = "nosuchalias.invalid"  # .invalid never resolves (RFC 2606)
    context = {"backend": "slurm", "slurm_url": alias, "ssh_config": str(config), "ssh": transport}
    (mrunner_home / "config" / "mrunner" / "context").mkdir(parents=True)
    (mrunner_home / "config" / "mrunner" / "context" / "c.yaml").write_text(json.dumps(context))
    result = mrunner("+context=c", "train.py", env={"XDG_RUNTIME_DIR": str(tmp_path)})
    errors = [line for line in result.stderr.splitlines() if line.startswith("mrunner: error")]
    assert result.returncode != 0 and len(errors) == 1 and "Traceback" not in result.stderr, result.stderr
    assert errors[0].startswith(f"mrunner: error: {alias} is neither a Host in {config} nor a name that resolves ("), (
        errors[0]
    )
    assert errors[0].endswith(f"fix the context's slurm_url or add `Host {alias}` (with its HostName) to {config}"), (
        errors[0]
    )


def test_the_runtime_folder_is_private(tmp_path, monkeypatch):
    """Login sockets live where only the user can reach them: created 0700; one others can enter is refused."""
    from mrunner import paths
    from mrunner.errors import MrunnerError

    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    assert paths.runtime_dir().stat().st_mode & 0o777 == 0o700
    (tmp_path / "mrunner").chmod(0o755)
    try:
        paths.runtime_dir()
    except MrunnerError as error:
        assert "only you can use (mode 0700)" in str(error)
    else:
        raise AssertionError("a folder others can enter was accepted")


def test_without_xdg_runtime_dir_the_logind_folder_is_used_as_a_terminal_has_it(tmp_path, monkeypatch):
    """cron starts commands without XDG_RUNTIME_DIR: they look where a terminal's XDG_RUNTIME_DIR points
    (logind's /run/user/UID), so a cron job finds the login a terminal opened; a folder others can enter is
    passed over."""
    from mrunner import paths

    session = tmp_path / f"user-{os.getuid()}"
    session.mkdir(mode=0o700)
    monkeypatch.setattr(paths, "SESSION_RUNTIME", str(tmp_path / "user-{uid}"))
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(session))
    in_terminal = paths.runtime_dir()
    monkeypatch.delenv("XDG_RUNTIME_DIR")
    assert paths.runtime_dir() == in_terminal == session / "mrunner"
    session.chmod(0o755)
    assert paths.runtime_dir() == Path(f"/tmp/mrunner-{os.getuid()}")


def test_an_ssh_config_that_is_no_readable_file_names_the_key(tmp_path):
    """A folder, or no file at all, as ``ssh_config``: one line naming the key (not ssh's words)."""
    import pytest
    from mrunner_slurm import openssh

    from mrunner.errors import MrunnerError

    for path, says in ((tmp_path, "is a folder"), (tmp_path / "missing", "does not exist")):
        with pytest.raises(MrunnerError, match=f"ssh_config {path} {says}.*fix the context's `ssh_config`"):
            openssh.destination("cluster", str(path))


def refused_before_recording(mrunner, *overrides: str) -> str:
    """The one line `mrunner +context=c train.py -m lr=1,2 OVERRIDES` is refused with (exit 2), the same for its
    dry run, with no sweep recorded."""
    said = set()
    for dry in (["--dry-run"], []):
        result = mrunner("+context=c", "train.py", "-m", "lr=1,2", *overrides, *dry)
        lines = result.stderr.splitlines()
        assert result.returncode == 2 and len(lines) == 1, result.stderr
        said.add(lines[0])
    assert "no sweeps recorded yet" in mrunner("status").stdout
    (line,) = said
    return line


@pytest.mark.parametrize(
    "overrides, expected",
    [
        (["context.mem=8G,8Q"], "mem must be a whole size such as 8G, 500M or 8192 (megabytes), got '8Q'"),
        (["context.mem=1.5G"], "mem must be a whole size such as 8G, 500M or 8192 (megabytes), got '1.5G'"),
        (["context.time=30,abc"], "time must be minutes (60) or a Slurm time such as 2:00:00 or 1-12:00:00, got 'abc'"),
        (["context.time=-5"], "time must be minutes (60) or a Slurm time such as 2:00:00 or 1-12:00:00, got -5"),
        (["context.cpu=0,2"], "cpu must be at least 1, got 0"),
        (["context.nodes=0"], "nodes must be at least 1, got 0"),
        (["context.ntasks=-1"], "ntasks must be at least 1, got -1"),
        (["context.time=abc", "context.points_per_task=2"], "time must be minutes (60)"),
    ],
)
def test_a_resource_sbatch_would_refuse_is_refused_before_anything_is_recorded(
    tmp_path, mrunner, mrunner_home, overrides, expected
):
    """A swept resource makes an array per class: a value sbatch refuses must not wait for its own array, after
    the first arrays were submitted (the sweep half-accepted)."""
    write_context(mrunner_home, "c", {"backend": "slurm", "slurm_url": "cluster"})
    (tmp_path / "train.py").write_text("print(1)\n")
    assert refused_before_recording(mrunner, *overrides).startswith(f"mrunner: error: context c: {expected}")


@pytest.mark.parametrize("value", ["8G", "8gb", "8192", "0", "500M"])
def test_a_memory_size_sbatch_takes_is_taken(tmp_path, mrunner, mrunner_home, value):
    folder = mrunner_home / "config" / "mrunner" / "context"
    folder.mkdir(parents=True)
    (folder / "c.yaml").write_text(json.dumps({"backend": "slurm", "slurm_url": "cluster", "time": "1-2:00"}))
    (tmp_path / "train.py").write_text("print(1)\n")
    result = mrunner("+context=c", "train.py", "-m", "lr=1,2", f"context.mem={value}", "--dry-run")
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("storage_dir", ["$SCRATCH/mrunner", "~/a/$USER"])
def test_a_storage_dir_naming_an_environment_variable_is_refused_before_anything_is_recorded(
    tmp_path, mrunner, mrunner_home, storage_dir
):
    """Nothing expands it on the cluster: `$SCRATCH/mrunner` had made a folder named `$SCRATCH` in the
    cluster user's home (on its quota), without a word."""
    write_context(mrunner_home, "c", {"backend": "slurm", "slurm_url": "cluster", "storage_dir": storage_dir})
    (tmp_path / "train.py").write_text("print(1)\n")
    line = refused_before_recording(mrunner)
    assert line.startswith(f"mrunner: error: context c: storage_dir {storage_dir!r} "), line
    assert "environment variable" in line and "~" in line, line


@pytest.mark.parametrize("slurm_url", ["cluster:99999", "me@cluster:0", "[::1]:70000"])
def test_a_slurm_url_port_out_of_range_names_the_key_before_anything_is_recorded(
    tmp_path, mrunner, mrunner_home, slurm_url
):
    """ssh said "Bad port '99999'" about its configuration, naming neither the context nor its key."""
    write_context(mrunner_home, "c", {"backend": "slurm", "slurm_url": slurm_url})
    (tmp_path / "train.py").write_text("print(1)\n")
    line = refused_before_recording(mrunner)
    assert line.startswith(f"mrunner: error: context c: slurm_url {slurm_url!r} names port "), line
    assert line.endswith("not 1-65535"), line
