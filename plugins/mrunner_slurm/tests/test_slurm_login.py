"""Reaching clusters as researchers have them (tests/services/sshd-mfa in front of the loopback Slurm): an MFA
login node that asks a one-time code after the key, a bastion reached with an agent's key, a changed host key.

Commands run "with no terminal" start in a session of their own (``setsid``: no controlling terminal), as
under cron or a launcher's background worker; a login runs in a pseudo-terminal, where the test types the code.
Every code the sshd accepts is a line of its log, which is how "asked exactly once" is counted. Other tests (of
other checkouts too) use the same sshd at the same time, so each test leaves from a loopback address of its own
(``BindAddress 127.X.Y.Z`` in its ssh config) and counts only the lines of that address.
"""

from __future__ import annotations

import fcntl
import hashlib
import hmac
import json
import os
import pty
import pwd
import select
import shutil
import struct
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pytest

from mrunner.testing import wait_for, write_context
from plugins.mrunner_slurm.tests.test_slurm_cluster import slurm_context

pytestmark = pytest.mark.slurm

SCRIPT = """
import os, sys, time
from mrunner import get_configuration
config = get_configuration()
print("experiment says", config.get("i"), flush=True)
with open(os.path.join(os.environ["MRUNNER_EXPERIMENT_DIR"], "out.txt"), "w") as out:
    out.write(f"i={config.get('i')}\\n")
time.sleep(float(config.get("sleep", 0)))
"""
PROMPT = b"One-time password"


def totp(secret_hex: str, step: int) -> str:
    """RFC 6238 (SHA-1, 30 s, 6 digits), as pam_oath checks it."""
    digest = hmac.new(bytes.fromhex(secret_hex), struct.pack(">Q", step), hashlib.sha1).digest()
    offset = digest[-1] & 0x0F
    return f"{(struct.unpack('>I', digest[offset : offset + 4])[0] & 0x7FFFFFFF) % 1_000_000:06d}"


def next_code(service: dict) -> str:
    """A code pam_oath accepts now: it refuses a code it has seen (or an older one), so each login of the
    test session takes the next 30-second step not used yet (within pam_oath's window of 20 steps)."""
    state = Path(service["totp_secret_file"]).with_name("last_step")
    with open(state.with_name("last_step.lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two tests at once must not take the same step
        last = int(state.read_text()) if state.exists() else 0
        step = max(int(time.time()) // 30, last + 1)
        state.write_text(str(step))
    return totp(Path(service["totp_secret_file"]).read_text().strip(), step)


def accepted_codes(service: dict, source: str) -> int:
    """The codes the MFA sshd accepted from connections that left from ``source`` (this test's own)."""
    log = Path(service["mfa_log"]).read_text(errors="replace")
    return log.count(f"Accepted keyboard-interactive/pam for {service['user']} from {source} port ")


def connections(service: dict, source: str) -> int:
    """The connections the MFA sshd received from ``source``."""
    return Path(service["mfa_log"]).read_text(errors="replace").count(f"Connection from {source} port ")


class Environment:
    """The test's mrunner home plus a runtime folder of its own (short: it holds sockets)."""

    def __init__(self, tmp_path: Path) -> None:
        self.project = tmp_path / "project"
        self.project.mkdir()
        (self.project / "train.py").write_text(SCRIPT)
        self.runtime = tempfile.mkdtemp(prefix="mr", dir="/tmp")
        self.env = {**os.environ, "XDG_RUNTIME_DIR": self.runtime}

    def run(
        self, *args: str, timeout: float = 300, env: dict | None = None, prefix: tuple[str, ...] = ()
    ) -> subprocess.CompletedProcess:
        """``mrunner ARGS`` with no terminal at all (``prefix``: a command that runs it)."""
        return subprocess.run(
            [*prefix, sys.executable, "-m", "mrunner", *args],
            cwd=self.project,
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**self.env, **(env or {})},
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )

    def in_terminal(
        self, *args: str, answers: dict[bytes, str], timeout: float = 300, prefix: tuple[str, ...] = ()
    ) -> tuple[int, str, int]:
        """``mrunner ARGS`` in a pseudo-terminal, answering each prompt that contains a key of ``answers``
        with what its value (a function) gives: the exit code, the output and how many prompts came."""
        pid, terminal = pty.fork()
        if pid == 0:  # the child: its controlling terminal is the pty
            os.chdir(self.project)
            argv = [*prefix, sys.executable, "-m", "mrunner", *args]
            os.execvpe(argv[0], argv, self.env)
        output, asked, deadline = b"", 0, time.monotonic() + timeout
        while time.monotonic() < deadline:
            ready, _, _ = select.select([terminal], [], [], 0.5)
            if not ready:
                continue
            try:
                data = os.read(terminal, 4096)
            except OSError:  # the child closed the terminal
                break
            if not data:
                break
            output += data
            for prompt, answer in answers.items():
                if output.count(prompt) > asked:
                    asked += 1
                    os.write(terminal, answer().encode() + b"\n")
        else:  # still running at the deadline: stopped, so the test fails with its output instead of hanging
            os.kill(pid, 9)
        _, status = os.waitpid(pid, 0)
        os.close(terminal)
        return os.waitstatus_to_exitcode(status), output.decode(errors="replace"), asked

    def cleanup(self) -> None:
        shutil.rmtree(self.runtime, ignore_errors=True)


@pytest.fixture
def environment(tmp_path: Path) -> Environment:
    made = Environment(tmp_path)
    yield made
    made.cleanup()


def mfa_context(mrunner_home: Path, slurm: dict, mfa: dict, name: str = "mfa", **extra) -> str:
    """A context on the MFA login node whose connections leave from a loopback address of this test's own
    (written first in a copy of the service's ssh config: OpenSSH and paramiko take a setting's first value);
    that address, for counting this test's lines of the sshd's log."""
    source = "127." + ".".join(str(1 + byte % 254) for byte in uuid.uuid4().bytes[:3])
    config = mrunner_home / f"ssh_config_{name}"
    text = Path(mfa["ssh_config"]).read_text()
    config.write_text(f"Host {mfa['mfa_alias']}\n    BindAddress {source}\n{text}")
    service = {**slurm, "alias": mfa["mfa_alias"], "ssh_config": str(config)}
    write_context(
        mrunner_home, name, slurm_context(service, f"{slurm['storage_dir']}/login-{uuid.uuid4().hex[:10]}", **extra)
    )
    return source


def one_line(stderr: str) -> str:
    """The one error line (progress lines before it aside), with no traceback."""
    lines = [line for line in stderr.splitlines() if line.startswith("mrunner: error")]
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    return lines[0]


def test_one_code_for_a_whole_day_of_commands_without_a_terminal(
    slurm_service, sshd_mfa_service, mrunner_home, environment
):
    """Log in once in a terminal; then submit, wait, read logs, pull, cancel, list and collect with no terminal:
    the sshd accepted exactly one code. After logout the same command fails at once in one line. (Backend.login,
    Backend.logins and Backend.logout.)"""
    source = mfa_context(mrunner_home, slurm_service, sshd_mfa_service, ssh="openssh")
    before = accepted_codes(sshd_mfa_service, source)
    code, output, asked = environment.in_terminal("login", "mfa", answers={PROMPT: lambda: next_code(sshd_mfa_service)})
    assert (code, asked) == (0, 1), output
    assert "logged in to mrunner-test-mfa" in output

    submitted = environment.run("+context=mfa", "train.py", "-m", "i=0,1", "--wait")
    assert submitted.returncode == 0, submitted.stderr
    sweep = submitted.stdout.split()[-1]
    logs = environment.run("logs", f"{sweep}/1")
    assert logs.returncode == 0 and "experiment says 1" in logs.stdout, logs.stderr
    pulled = environment.run("pull", sweep)
    assert pulled.returncode == 0, pulled.stderr
    assert sorted(p.read_text() for p in environment.project.glob(f"**/{sweep}/**/out.txt")) == ["i=0\n", "i=1\n"]
    held = environment.run("+context=mfa", "train.py", "i=5", "sleep=600")
    assert held.returncode == 0, held.stderr
    cancelled = environment.run("cancel", held.stdout.split()[-1])
    assert cancelled.returncode == 0 and "cancelled 1 experiment" in cancelled.stdout, cancelled.stderr
    listed = environment.run("login")
    assert "mfa" in listed.stdout and "mrunner-test-mfa" in listed.stdout, listed.stdout
    assert accepted_codes(sshd_mfa_service, source) - before == 1, "one code for the whole sequence"

    out = environment.run("logout", "mfa")
    assert out.returncode == 0 and "logged out of mrunner-test-mfa" in out.stdout, out.stderr
    assert "no login is open" in environment.run("login").stdout
    started = time.monotonic()
    refused = environment.run("status", sweep)
    assert refused.returncode != 0 and time.monotonic() - started < 10
    line = one_line(refused.stderr)
    assert "context mfa" in line and "mrunner-test-mfa" in line and "`mrunner login mfa`" in line, line
    # following it waits for no login: asking again for minutes, as for a cluster that cannot be reached, would
    # only delay the same line
    started = time.monotonic()
    waited = environment.run("status", sweep, "--wait", timeout=60)
    assert waited.returncode == 3 and time.monotonic() - started < 10, waited.stderr
    assert one_line(waited.stderr) == line and "asking again" not in waited.stderr, waited.stderr
    # a submission: that one line alone, before a sweep is recorded (not "recorded", then forgotten)
    started = time.monotonic()
    submitting = environment.run("+context=mfa", "train.py", "i=9", "--detach")
    assert submitting.returncode == 3 and time.monotonic() - started < 10, submitting.stderr
    assert submitting.stderr.strip().splitlines() == [line], submitting.stderr
    # the list of sweeps comes from the records: it reaches no cluster, so it needs no login
    reached = connections(sshd_mfa_service, source)
    listing = environment.run("status")
    assert listing.returncode == 0 and sweep in listing.stdout and listing.stderr == "", listing.stderr
    assert connections(sshd_mfa_service, source) == reached, "the listing connected to the cluster"
    collected = environment.run("gc", "--dry-run")
    assert collected.returncode == 0, collected.stderr
    warnings = [line for line in collected.stderr.splitlines() if "warning" in line]
    assert len(warnings) == 1 and warnings[0].startswith("mrunner: warning: skipped mrunner-test-mfa"), collected.stderr
    assert accepted_codes(sshd_mfa_service, source) - before == 1


def test_a_submission_in_a_terminal_asks_once_and_keeps_the_connection(
    slurm_service, sshd_mfa_service, mrunner_home, environment
):
    """No login: the submission itself asks for the code once and uses that connection to the end (--wait)."""
    source = mfa_context(mrunner_home, slurm_service, sshd_mfa_service, ssh="openssh")
    before = accepted_codes(sshd_mfa_service, source)
    code, output, asked = environment.in_terminal(
        "+context=mfa", "train.py", "-m", "i=0,1", "--wait", answers={PROMPT: lambda: next_code(sshd_mfa_service)}
    )
    assert (code, asked) == (0, 1), output
    assert accepted_codes(sshd_mfa_service, source) - before == 1
    assert "no login is open" in environment.run("login").stdout  # its connection ended with the command


def test_paramiko_asks_for_the_code_in_the_terminal_once_and_refuses_without_one(
    slurm_service, sshd_mfa_service, mrunner_home, environment
):
    source = mfa_context(mrunner_home, slurm_service, sshd_mfa_service, ssh="paramiko")
    before = accepted_codes(sshd_mfa_service, source)
    code, output, asked = environment.in_terminal(
        "+context=mfa", "train.py", "-m", "i=0,1", "--wait", answers={PROMPT: lambda: next_code(sshd_mfa_service)}
    )
    assert (code, asked) == (0, 1), output
    assert accepted_codes(sshd_mfa_service, source) - before == 1
    started = time.monotonic()
    refused = environment.run("+context=mfa", "train.py", "i=7")
    assert refused.returncode != 0 and time.monotonic() - started < 10
    line = one_line(refused.stderr)
    assert "context mfa" in line and "needs an interactive login" in line and "one-time code" in line, line


@pytest.fixture
def agent(sshd_mfa_service, tmp_path):
    """An ssh-agent holding the bastion's encrypted key (its passphrase given once, by SSH_ASKPASS)."""
    socket = tempfile.mktemp(prefix="agent", dir="/tmp")
    process = subprocess.Popen(["ssh-agent", "-D", "-a", socket], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while not os.path.exists(socket):
        assert time.monotonic() < deadline, "ssh-agent did not start"
        time.sleep(0.05)
    askpass = tmp_path / "askpass"
    askpass.write_text(f"#!/bin/sh\ncat {sshd_mfa_service['passphrase_file']}\n")
    askpass.chmod(0o700)
    env = {
        **os.environ,
        "SSH_AUTH_SOCK": socket,
        "SSH_ASKPASS": str(askpass),
        "SSH_ASKPASS_REQUIRE": "force",
        "DISPLAY": "none",
    }
    added = subprocess.run(
        ["ssh-add", sshd_mfa_service["encrypted_key"]],
        env=env,
        capture_output=True,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
        timeout=30,
    )
    assert added.returncode == 0, added.stderr
    yield socket
    process.terminate()
    process.wait(timeout=10)


@pytest.mark.parametrize("transport", ["openssh", "paramiko"])
def test_a_cluster_behind_a_bastion_with_the_key_in_an_agent(
    slurm_service, sshd_mfa_service, mrunner_home, environment, agent, transport
):
    service = {
        **slurm_service,
        "alias": sshd_mfa_service["behind_bastion_alias"],
        "ssh_config": sshd_mfa_service["ssh_config"],
    }
    write_context(
        mrunner_home,
        "test-slurm",
        slurm_context(service, f"{slurm_service['storage_dir']}/jump-{uuid.uuid4().hex[:10]}", ssh=transport),
    )
    bastion_before = Path(sshd_mfa_service["bastion_log"]).read_text(errors="replace").count("Accepted publickey")
    done = environment.run("+context=test-slurm", "train.py", "-m", "i=0,1", "--wait", env={"SSH_AUTH_SOCK": agent})
    assert done.returncode == 0, done.stderr
    sweep = done.stdout.split()[-1]
    logs = environment.run("logs", f"{sweep}/0", env={"SSH_AUTH_SOCK": agent})
    assert "experiment says 0" in logs.stdout, logs.stderr
    assert (
        Path(sshd_mfa_service["bastion_log"]).read_text(errors="replace").count("Accepted publickey") > bastion_before
    )
    started = time.monotonic()
    without = environment.run("logs", f"{sweep}/0", env={"SSH_AUTH_SOCK": ""})  # no agent: the key is locked
    assert without.returncode == 3 and len(without.stderr.strip().splitlines()) == 1, without.stderr
    line = one_line(without.stderr)
    if transport == "openssh":  # the bastion's refusal, not "cannot reach" after retries: a login asks for it
        assert "`mrunner login test-slurm`" in line and time.monotonic() - started < 10, line
    else:  # paramiko asks no passphrase: the agent's
        assert "id_encrypted is locked by its passphrase" in line and "ssh-agent" in line, line


def context_with_known_hosts(mrunner_home: Path, slurm_service: dict, known: Path, name: str, transport: str) -> None:
    """The context ``test-slurm`` on the test cluster through an ssh config that trusts the host keys in
    ``known`` (a file the test may change), with a storage folder of its own named after ``name``."""
    config = Path(slurm_service["ssh_config"]).read_text()
    own_config = known.with_name("ssh_config")
    own_config.write_text(config.replace(slurm_service["known_hosts"], str(known)))
    service = {**slurm_service, "ssh_config": str(own_config)}
    storage = f"{slurm_service['storage_dir']}/{name}-{uuid.uuid4().hex[:10]}"
    write_context(mrunner_home, "test-slurm", slurm_context(service, storage, ssh=transport))


@pytest.mark.parametrize("transport", ["openssh", "paramiko"])
def test_a_changed_host_key_is_refused_in_one_line(slurm_service, mrunner_home, environment, tmp_path, transport):
    other = tmp_path / "other_host_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    known = tmp_path / "known_hosts"
    known.write_text(f"[127.0.0.1]:2222 {' '.join(Path(f'{other}.pub').read_text().split()[:2])}\n")
    context_with_known_hosts(mrunner_home, slurm_service, known, "key", transport)
    refused = environment.run("+context=test-slurm", "train.py")
    assert refused.returncode == 3
    line = one_line(refused.stderr)
    assert "CHANGED" in line and slurm_service["host_key_fingerprint"] in line, line
    assert "ssh-keygen -R '[127.0.0.1]:2222'" in line, line
    assert len(known.read_text().splitlines()) == 1, "known_hosts untouched"


def own_home_ssh(folder: Path) -> tuple[str, ...]:
    """A command prefix that runs the command with ``folder`` as the account's ``~/.ssh`` (which OpenSSH reads
    from the account's home, not ``$HOME``): mounted there in a mount namespace of the command's own, so no
    other process, nor another test, sees it. Skips where this cannot be done (not root, no ``unshare``)."""
    home_ssh = Path(pwd.getpwuid(os.getuid()).pw_dir, ".ssh")
    prefix = ("unshare", "-m", "--propagation", "private", "sh", "-c", 'mount --bind "$1" "$2" && shift 2 && exec "$@"')
    prefix += ("sh", str(folder), str(home_ssh))
    if os.getuid() != 0 or not shutil.which("unshare") or not home_ssh.is_dir():
        pytest.skip("needs root, unshare and ~/.ssh to give the command a ~/.ssh of the test's own")
    tried = subprocess.run([*prefix, "true"], capture_output=True, text=True, timeout=30)
    if tried.returncode:
        pytest.skip(f"cannot mount a ~/.ssh of the test's own: {tried.stderr.strip()}")
    return prefix


def test_a_context_on_the_users_own_ssh_config_reuses_the_login_and_opens_no_other_connection(
    slurm_service, sshd_mfa_service, mrunner_home, environment, tmp_path
):
    """The context docs/your-cluster.md makes: `slurm_url: ALIAS` and no `ssh_config` key, the alias in
    ~/.ssh/config. After `mrunner login`, a submission reaches the cluster only through the login: before,
    the connection started as the context was read (without the key's default filled in) was another one,
    which looked for another login socket and tried to log in by itself, refused by the cluster, every
    command (a site counting failed logins may lock the user out)."""
    source = "127." + ".".join(str(1 + byte % 254) for byte in uuid.uuid4().bytes[:3])
    folder = tmp_path / "dot-ssh"
    folder.mkdir(mode=0o700)
    (folder / "config").write_text(
        f"Host {sshd_mfa_service['mfa_alias']}\n    BindAddress {source}\n{Path(sshd_mfa_service['ssh_config']).read_text()}"
    )
    (folder / "config").chmod(0o600)
    prefix = own_home_ssh(folder)
    service = {**slurm_service, "alias": sshd_mfa_service["mfa_alias"]}
    keys = slurm_context(service, f"{slurm_service['storage_dir']}/home-{uuid.uuid4().hex[:10]}", ssh="openssh")
    del keys["ssh_config"]
    write_context(mrunner_home, "mfa", keys)
    before = accepted_codes(sshd_mfa_service, source)
    code, output, asked = environment.in_terminal(
        "login", "mfa", answers={PROMPT: lambda: next_code(sshd_mfa_service)}, prefix=prefix
    )
    assert (code, asked) == (0, 1), output
    try:
        reached = connections(sshd_mfa_service, source)
        done = environment.run("+context=mfa", "train.py", "i=4", "--wait", prefix=prefix)
        assert done.returncode == 0, done.stderr
        logs = environment.run("logs", f"{done.stdout.split()[-1]}/0", prefix=prefix)
        assert "experiment says 4" in logs.stdout, logs.stderr
        assert connections(sshd_mfa_service, source) == reached, "a connection besides the login's"
        assert accepted_codes(sshd_mfa_service, source) - before == 1
    finally:
        environment.run("logout", "mfa", prefix=prefix)


@pytest.mark.parametrize("transport", ["openssh", "paramiko"])
def test_a_host_that_drops_every_connection_is_tried_one_round_per_command(
    slurm_service, mrunner_home, environment, transport
):
    """A wrong port whose listener hangs up at once (what a load balancer or a firewall does): a submission
    tries one round (the first try and its retries), then says so in one line. Before, each of the command's
    background connects (the one started as the context is read, the submission's, the site limits'
    reading) tried a round of its own, one after another, before the line."""
    import socket
    import threading

    listener = socket.create_server(("127.0.0.1", 0))
    accepted = []

    def hang_up() -> None:
        while True:
            try:
                peer, _ = listener.accept()
            except OSError:  # closed: the test is over
                return
            accepted.append(1)
            peer.close()

    threading.Thread(target=hang_up, daemon=True).start()
    try:
        url = f"{slurm_service['user']}@127.0.0.1:{listener.getsockname()[1]}"
        keys = slurm_context(slurm_service, f"{slurm_service['storage_dir']}/drop", ssh=transport, slurm_url=url)
        write_context(mrunner_home, "test-slurm", keys)
        refused = environment.run("+context=test-slurm", "train.py", "i=0")
        assert refused.returncode == 3, refused.stderr
        assert "after 4 tries" in one_line(refused.stderr), refused.stderr
        assert len(accepted) == 4, f"{len(accepted)} connections: one round of 4 tries"
    finally:
        listener.close()


@pytest.mark.parametrize("transport", ["openssh", "paramiko"])
def test_a_host_key_that_changed_under_a_sweep_ends_its_wait_at_once(
    slurm_service, mrunner_home, environment, tmp_path, transport
):
    """The cluster's key changes after a submission: `status SWEEP --wait` says so in one line at once (as
    `status` does), instead of asking again for minutes as it does a cluster that cannot be reached."""
    known = tmp_path / "known_hosts"
    known.write_text(Path(slurm_service["known_hosts"]).read_text())
    context_with_known_hosts(mrunner_home, slurm_service, known, "moved", transport)
    submitted = environment.run("+context=test-slurm", "train.py", "i=0", "sleep=600")
    assert submitted.returncode == 0, submitted.stderr
    sweep = submitted.stdout.split()[-1]
    other = tmp_path / "other_host_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    known.write_text(f"[127.0.0.1]:2222 {' '.join(Path(f'{other}.pub').read_text().split()[:2])}\n")
    try:
        started = time.monotonic()
        waited = environment.run("status", sweep, "--wait", timeout=60)
        assert waited.returncode == 3 and time.monotonic() - started < 10, waited.stderr
        line = one_line(waited.stderr)
        assert "CHANGED" in line and slurm_service["host_key_fingerprint"] in line, line
        assert "asking again" not in waited.stderr, waited.stderr
    finally:
        known.write_text(Path(slurm_service["known_hosts"]).read_text())
        environment.run("cancel", sweep)


def test_the_users_own_master_connection_is_used(slurm_service, mrunner_home, environment, tmp_path):
    """A ~/.ssh/config with ControlMaster/ControlPath: mrunner goes through the user's master, opens none."""
    path = tempfile.mktemp(prefix="cm", dir="/tmp")
    config = Path(slurm_service["ssh_config"]).read_text() + f"    ControlMaster auto\n    ControlPath {path}\n"
    (tmp_path / "ssh_config").write_text(config)
    service = {**slurm_service, "ssh_config": str(tmp_path / "ssh_config")}
    write_context(
        mrunner_home,
        "test-slurm",
        slurm_context(service, f"{slurm_service['storage_dir']}/own-{uuid.uuid4().hex[:10]}", ssh="openssh"),
    )
    ssh = ["ssh", "-F", str(tmp_path / "ssh_config"), slurm_service["alias"]]
    subprocess.run(
        [*ssh[:-1], "-f", "-N", "-o", "ControlPersist=60", ssh[-1]], check=True, timeout=30, stdin=subprocess.DEVNULL
    )
    try:
        said = environment.run("login", "test-slurm")
        assert said.returncode == 0 and "your own ssh master" in said.stdout, said.stderr
        done = environment.run("+context=test-slurm", "train.py", "i=0", "--wait")
        assert done.returncode == 0, done.stderr
        sockets = list(Path(environment.runtime, "mrunner", "ssh").glob("*"))
        assert sockets == [], "no master of mrunner's own"
        sweep = done.stdout.split()[-1]
        timings = []
        for _ in range(3):  # through an open master, asking the cluster about the sweep
            started = time.monotonic()
            assert environment.run("status", sweep).returncode == 0
            timings.append(time.monotonic() - started)
        print("mrunner status SWEEP through the user's master:", json.dumps([round(t, 3) for t in timings]))
        out = environment.run("logout", "test-slurm")
        assert f"close it with `{' '.join(ssh[:-1])} -O exit {ssh[-1]}`" in out.stdout, out.stdout  # their config
    finally:
        subprocess.run([*ssh[:-1], "-O", "exit", ssh[-1]], capture_output=True, timeout=30)


def test_a_login_without_a_terminal_refuses_in_one_line_naming_the_context(
    slurm_service, sshd_mfa_service, mrunner_home, environment
):
    """`mrunner login mfa` under cron or setsid: nothing to ask the code in; the line names the context (not a
    placeholder) and says to run the login in a terminal."""
    mfa_context(mrunner_home, slurm_service, sshd_mfa_service, ssh="openssh")
    started = time.monotonic()
    refused = environment.run("login", "mfa")
    assert refused.returncode != 0 and time.monotonic() - started < 10
    line = one_line(refused.stderr)
    assert "context mfa:" in line and "no terminal" in line and "`mrunner login mfa` in a terminal" in line, line
    assert "no login is open" in environment.run("login").stdout


def test_a_login_whose_master_was_killed_opens_a_new_one(slurm_service, mrunner_home, environment):
    """A master killed (kill -9, the OOM killer) leaves its socket behind: the next login replaces it and the
    login works, instead of saying "logged in" while ssh, finding the socket in the way, kept no master."""
    write_context(
        mrunner_home,
        "test-slurm",
        slurm_context(slurm_service, f"{slurm_service['storage_dir']}/stale-{uuid.uuid4().hex[:10]}", ssh="openssh"),
    )
    assert environment.run("login", "test-slurm").returncode == 0  # a key-only cluster: no terminal needed
    (socket,) = [p for p in Path(environment.runtime, "mrunner", "ssh").iterdir() if p.suffix != ".json"]
    ssh = ["ssh", "-F", slurm_service["ssh_config"], "-o", f"ControlPath={socket}"]
    checked = subprocess.run([*ssh, "-O", "check", slurm_service["alias"]], capture_output=True, text=True, timeout=30)
    pid = int(checked.stderr.split("pid=")[1].split(")")[0])
    os.kill(pid, 9)
    wait_for(lambda: not Path(f"/proc/{pid}").exists(), timeout=10, what="the killed master to end")
    assert socket.exists(), "the killed master's socket is left behind"
    assert "no login is open" in environment.run("login").stdout
    again = environment.run("login", "test-slurm")
    assert again.returncode == 0, again.stderr
    try:
        listed = environment.run("login")
        assert "test-slurm" in listed.stdout, listed.stdout
        checked = subprocess.run([*ssh, "-O", "check", slurm_service["alias"]], capture_output=True, timeout=30)
        assert checked.returncode == 0, checked.stderr
    finally:
        environment.run("logout", "test-slurm")


def test_a_runtime_folder_too_long_for_a_socket_keeps_the_logins_in_tmp(
    slurm_service, mrunner_home, environment, tmp_path
):
    """An ``$XDG_RUNTIME_DIR`` too long for a unix socket's path (ssh: "too long for Unix domain socket"):
    logins and submissions work, their sockets in ``/tmp/mrunner-UID``."""
    long = Path(environment.runtime, "x" * 60)
    long.mkdir(mode=0o700)
    config = tmp_path / "ssh_config"  # a file of this test's own: its login socket is named after it
    config.write_text(Path(slurm_service["ssh_config"]).read_text())
    service = {**slurm_service, "ssh_config": str(config)}
    storage = f"{slurm_service['storage_dir']}/long-{uuid.uuid4().hex[:10]}"
    write_context(mrunner_home, "test-slurm", slurm_context(service, storage, ssh="openssh"))
    env = {"XDG_RUNTIME_DIR": str(long)}
    logged = environment.run("login", "test-slurm", env=env)
    assert logged.returncode == 0, logged.stderr
    try:
        assert "test-slurm" in environment.run("login", env=env).stdout
        assert any(Path(f"/tmp/mrunner-{os.getuid()}/ssh").glob("*.json")), "the login's note in /tmp/mrunner-UID"
        done = environment.run("+context=test-slurm", "train.py", "i=2", "--wait", env=env)
        assert done.returncode == 0, done.stderr
    finally:
        environment.run("logout", "test-slurm", env=env)


def test_a_hydra_multirun_in_the_background_without_a_login_fails_at_once_in_one_line(
    slurm_service, sshd_mfa_service, mrunner_home, environment
):
    """`python app.py -m hydra/launcher=mrunner` with no terminal and no login: Hydra's one line names the
    context, the host and `mrunner login CONTEXT`, within seconds (no traceback, no prompt waited on)."""
    from plugins.hydra_mrunner_launcher.tests.apps import APP

    mfa_context(mrunner_home, slurm_service, sshd_mfa_service, ssh="openssh")
    (environment.project / "app.py").write_text(APP)
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "app.py", "-m", "hydra/launcher=mrunner", "hydra.launcher.context=mfa", "+x=1,2"],
        cwd=environment.project,
        capture_output=True,
        text=True,
        timeout=120,
        env=environment.env,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    assert done.returncode == 1 and time.monotonic() - started < 10 and "Traceback" not in done.stderr, done.stderr
    (line,) = [line for line in done.stderr.splitlines() if "mrunner-test-mfa" in line]
    assert line.startswith("context mfa: mrunner-test-mfa") and "`mrunner login mfa`" in line, done.stderr


def test_a_machine_without_an_ssh_client_falls_back_to_paramiko(
    slurm_service, sshd_mfa_service, mrunner_home, environment, tmp_path
):
    """No ``ssh`` on the PATH and no ``ssh`` key: paramiko reaches the cluster; with no terminal the one line
    says to run the command in one, not to log in with an OpenSSH this machine lacks."""
    mfa_context(mrunner_home, slurm_service, sshd_mfa_service, ssh=None)  # the default transport
    refused = environment.run("+context=mfa", "train.py", "i=7", env={"PATH": str(tmp_path / "empty")})
    line = one_line(refused.stderr)
    assert "the server wants a one-time code (keyboard-interactive) after the key" in line, line  # paramiko's words
    assert "run it in a terminal, where the code is asked" in line and "ssh: openssh" not in line, line


def test_a_second_login_keeps_the_first_and_says_since_when(slurm_service, mrunner_home, environment):
    write_context(
        mrunner_home,
        "test-slurm",
        slurm_context(slurm_service, f"{slurm_service['storage_dir']}/twice-{uuid.uuid4().hex[:10]}", ssh="openssh"),
    )
    first = environment.run("login", "test-slurm")
    assert first.returncode == 0 and first.stdout.startswith("logged in to mrunner-test-slurm"), first.stderr
    try:
        (note,) = Path(environment.runtime, "mrunner", "ssh").glob("*.json")
        opened = json.loads(note.read_text())["opened_at"]
        second = environment.run("login", "test-slurm")
        assert second.returncode == 0 and second.stdout.startswith("already logged in to mrunner-test-slurm"), second
        assert json.loads(note.read_text())["opened_at"] == opened, "the login's opening time is kept"
    finally:
        environment.run("logout", "test-slurm")


def test_every_spelling_of_the_cluster_shares_one_login(slurm_service, sshd_mfa_service, mrunner_home, environment):
    """A login made through the alias serves ``user@alias``, ``alias:PORT`` and the HostName with its port: ssh
    resolves them to one user, host and port, and so does the master's name; no second code is asked."""
    source = mfa_context(mrunner_home, slurm_service, sshd_mfa_service, ssh="openssh")
    context_file = mrunner_home / "config" / "mrunner" / "context" / "mfa.yaml"
    context = json.loads(context_file.read_text())
    resolved = subprocess.run(
        ["ssh", "-F", context["ssh_config"], "-G", context["slurm_url"]], capture_output=True, text=True, check=True
    ).stdout
    found = dict(line.partition(" ")[::2] for line in resolved.splitlines())
    spellings = [
        f"{found['user']}@{context['slurm_url']}",
        f"{context['slurm_url']}:{found['port']}",
        f" {found['user']}@{context['slurm_url']}:{found['port']} ",
    ]
    for number, spelling in enumerate(spellings):
        write_context(mrunner_home, f"spelled{number}", {**context, "slurm_url": spelling})
    before = accepted_codes(sshd_mfa_service, source)
    code, output, asked = environment.in_terminal("login", "mfa", answers={PROMPT: lambda: next_code(sshd_mfa_service)})
    assert (code, asked) == (0, 1), output
    try:
        for number, spelling in enumerate(spellings):
            listed = environment.run("context", "show", f"spelled{number}")
            assert listed.returncode == 0, listed.stderr
            held = environment.run(f"+context=spelled{number}", "train.py", f"i={number}", "--wait")
            assert held.returncode == 0, (spelling, held.stderr)
            again = environment.run("login", f"spelled{number}")
            assert again.returncode == 0 and again.stdout.startswith("already logged in"), (spelling, again)
        assert accepted_codes(sshd_mfa_service, source) - before == 1, "one code for every spelling"
    finally:
        environment.run("logout", "mfa")
    assert "no login is open" in environment.run("login").stdout


def test_a_config_made_for_interactive_sessions_works_and_its_ports_stay_free(
    slurm_service, mrunner_home, environment, tmp_path
):
    """A Host block as researchers write them for their own terminal: a RemoteCommand (a login shell, tmux),
    RequestTTY, a port forwarding with ExitOnForwardFailure. mrunner's commands run (ssh refused a command
    beside a RemoteCommand), and its login master holds none of the user's ports for its hours."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = tmp_path / "ssh_config"
    config.write_text(
        Path(slurm_service["ssh_config"])
        .read_text()
        .replace(
            f"Host {slurm_service['alias']}\n",
            f"Host {slurm_service['alias']}\n    RemoteCommand exec bash -l\n    RequestTTY yes\n"
            f"    LocalForward 127.0.0.1:{port} 127.0.0.1:22\n    ExitOnForwardFailure yes\n",
            1,
        )
    )
    assert "RemoteCommand" in config.read_text()
    service = {**slurm_service, "ssh_config": str(config)}
    storage = f"{slurm_service['storage_dir']}/interactive-{uuid.uuid4().hex[:10]}"
    write_context(mrunner_home, "test-slurm", slurm_context(service, storage, ssh="openssh"))
    assert environment.run("login", "test-slurm").returncode == 0
    try:
        done = environment.run("+context=test-slurm", "train.py", "i=3", "--wait")
        assert done.returncode == 0, done.stderr
        logs = environment.run("logs", f"{done.stdout.split()[-1]}/0")
        assert "experiment says 3" in logs.stdout, logs.stderr
        with socket.socket() as mine:
            mine.bind(("127.0.0.1", port))  # the user's own `ssh ALIAS` can still forward it
    finally:
        environment.run("logout", "test-slurm")


def test_a_hangup_does_not_end_a_login(slurm_service, mrunner_home, environment):
    """A login's master outlives the terminal it was opened in: a hangup (the terminal closed, or `mrunner
    login` leading a tmux window that closes as it ends, before the master has left the terminal's session)
    leaves it up."""
    write_context(
        mrunner_home,
        "test-slurm",
        slurm_context(slurm_service, f"{slurm_service['storage_dir']}/hup-{uuid.uuid4().hex[:10]}", ssh="openssh"),
    )
    assert environment.run("login", "test-slurm").returncode == 0
    try:
        (socket,) = [p for p in Path(environment.runtime, "mrunner", "ssh").iterdir() if p.suffix != ".json"]
        check = ["ssh", "-F", slurm_service["ssh_config"], "-o", f"ControlPath={socket}", "-O", "check"]
        checked = subprocess.run([*check, slurm_service["alias"]], capture_output=True, text=True, timeout=30)
        pid = int(checked.stderr.split("pid=")[1].split(")")[0])
        os.kill(pid, 1)  # SIGHUP
        assert "test-slurm" in environment.run("login").stdout  # `ssh -O check` answered after the signal
        assert Path(f"/proc/{pid}").exists()
    finally:
        environment.run("logout", "test-slurm")
