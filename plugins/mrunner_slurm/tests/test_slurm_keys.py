"""Why an SSH login to the cluster failed, one accurate line per cause, over OpenSSH and paramiko: a key the
server refuses, a missing key, a key others may read, a key locked by its passphrase with no agent, no key at
all, a changed host key; and a server that really asks for a one-time code after the key (the MFA login node),
the only one of them that is "an interactive login". A refused key had read as that login to make, and
`mrunner login` then failed the same way. On the loopback cluster and MFA sshd (tests/services)."""

from __future__ import annotations

import re
import subprocess
import uuid
from pathlib import Path

import pytest

from mrunner.testing import write_context
from plugins.mrunner_slurm.tests.test_slurm_cluster import WRITER, slurm_context

CASES = ("refused", "missing", "loose", "locked", "no key", "host key", "code")


def keygen(path: Path, passphrase: str = "") -> Path:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", passphrase, "-f", str(path)], check=True)
    return path


def arrange(case: str, slurm: dict, mfa: dict, folder: Path) -> tuple[dict, str]:
    """The service (alias and ssh config) a context of ``case`` uses, and the key file the line must name."""
    config = Path(slurm["ssh_config"]).read_text()
    block = re.search(r"Host mrunner-test-slurm\n(?:    .*\n?)*", config)
    assert block is not None, config
    text, named = block[0], ""
    if case == "code":  # the key is accepted, then the server asks for a code
        return {**slurm, "alias": mfa["mfa_alias"], "ssh_config": mfa["ssh_config"]}, ""
    if case in ("refused", "missing", "loose", "locked"):
        key = folder / f"{case} key"
        if case == "refused":
            keygen(key)  # unencrypted, unknown to the server
        elif case == "loose":
            key.write_bytes(Path(slurm["key_file"]).read_bytes())
            key.chmod(0o644)
        elif case == "locked":
            keygen(key, "a passphrase")
        named = str(key)
        text = re.sub(r"IdentityFile .*", f'IdentityFile "{key}"', text)
    elif case == "no key":
        text = re.sub(r"    IdentityFile .*\n", "", text)
    elif case == "host key":
        other = keygen(folder / "other_host_key")
        known = folder / "known_hosts"
        known.write_text(f"[127.0.0.1]:2222 {' '.join(Path(f'{other}.pub').read_text().split()[:2])}\n")
        text = text.replace(slurm["known_hosts"], str(known))
    (folder / "ssh_config").write_text(text)
    return {**slurm, "ssh_config": str(folder / "ssh_config")}, named


EXPECTED = {
    ("refused", "openssh"): "did not accept the key",
    ("refused", "paramiko"): "did not accept the key",
    ("missing", "openssh"): "does not exist",
    ("missing", "paramiko"): "does not exist",
    ("loose", "openssh"): "chmod 600",
    ("loose", "paramiko"): None,  # paramiko uses a key others may read: the submission goes through
    ("locked", "openssh"): "is locked by its passphrase",
    ("locked", "paramiko"): "is locked by its passphrase",
    ("no key", "openssh"): "has no key to offer",
    ("no key", "paramiko"): "has no key to offer",
    ("host key", "openssh"): "CHANGED",
    ("host key", "paramiko"): "CHANGED",
    ("code", "openssh"): "needs an interactive login",
    ("code", "paramiko"): "needs an interactive login",
}


@pytest.mark.parametrize("transport", ["openssh", "paramiko"])
def test_every_failed_login_is_one_distinct_accurate_line(
    slurm_service, sshd_mfa_service, mrunner, mrunner_home, tmp_path, transport
):
    (tmp_path / "train.py").write_text(WRITER)
    lines = {}
    for case in CASES:
        folder = tmp_path / case.replace(" ", "-")
        folder.mkdir()
        service, named = arrange(case, slurm_service, sshd_mfa_service, folder)
        storage = f"{slurm_service['storage_dir']}/test-{uuid.uuid4().hex[:10]}"
        write_context(mrunner_home, "test-slurm", slurm_context(service, storage, ssh=transport))
        result = mrunner("+context=test-slurm", "train.py", env={"SSH_AUTH_SOCK": ""})
        expected = EXPECTED[(case, transport)]
        if expected is None:
            assert result.returncode == 0, (case, result.stderr)
            continue
        found = result.stderr.strip().splitlines()
        assert len(found) == 1 and found[0].startswith("mrunner: error: "), (case, result.stderr)
        line = lines[case] = found[0]
        assert result.returncode == 3 and expected in line and named in line, (case, line)
        if case not in ("code", "locked"):  # a passphrase or a code is asked by `mrunner login` in a terminal
            assert "interactive login" not in line, (case, line)
        if case in ("refused", "missing", "no key"):
            assert "IdentityFile" in line and "mrunner login" not in line, (case, line)
        if case == "locked":
            assert ("mrunner login" if transport == "openssh" else "ssh-add") in line, (case, line)
    assert len(set(lines.values())) == len(lines), lines  # one line per cause, none shared
