"""The user's SSH key files, read only to say why a login with them failed: a server that answers "Permission
denied (publickey)" refused every key offered, or none could be offered (a key locked by its passphrase with
no agent to hold it unlocked is silently skipped by a client that cannot ask). Each case has its own fix, and
none of them is the "interactive login" a server that wants a one-time code needs. Standard library only."""

from __future__ import annotations

import base64
import binascii
import os
import subprocess

from mrunner_slurm.transport import Target

_OPENSSH_HEADER = "-----BEGIN OPENSSH PRIVATE KEY-----"
_MAGIC = b"openssh-key-v1\0"


def encrypted(path: str) -> bool:
    """Whether the private key file is locked by a passphrase (OpenSSH's own format, or PEM); False when it
    cannot be read or parsed (then the server's refusal is named instead)."""
    try:
        with open(path, encoding="ascii", errors="replace") as stream:
            text = stream.read(1 << 16)
    except OSError:
        return False
    if "ENCRYPTED" in text:  # PEM: "Proc-Type: 4,ENCRYPTED" or "BEGIN ENCRYPTED PRIVATE KEY"
        return True
    if _OPENSSH_HEADER not in text:
        return False
    body = "".join(line for line in text.split(_OPENSSH_HEADER, 1)[1].splitlines() if not line.startswith("-----"))
    try:
        data = base64.b64decode(body.strip(), validate=False)
    except (binascii.Error, ValueError):
        return False
    if not data.startswith(_MAGIC) or len(data) < len(_MAGIC) + 4:
        return False
    length = int.from_bytes(data[len(_MAGIC) : len(_MAGIC) + 4], "big")
    cipher = data[len(_MAGIC) + 4 : len(_MAGIC) + 4 + length]
    return cipher != b"none"


def in_agent(path: str) -> bool:
    """Whether a running ssh-agent holds the key (its ``.pub`` beside it, compared with ``ssh-add -L``)."""
    if not os.environ.get("SSH_AUTH_SOCK"):
        return False
    try:
        with open(f"{path}.pub", encoding="ascii", errors="replace") as stream:
            public = stream.read().split()[:2]
        listed = subprocess.run(["ssh-add", "-L"], capture_output=True, text=True, timeout=10, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return any(line.split()[:2] == public for line in listed.stdout.splitlines() if line.strip())


def locked(files: list[str]) -> str | None:
    """The first of the key files that is locked by its passphrase with no agent holding it unlocked."""
    return next((path for path in files if encrypted(path) and not in_agent(path)), None)


def agent_has_keys() -> bool:
    if not os.environ.get("SSH_AUTH_SOCK"):
        return False
    try:
        listed = subprocess.run(["ssh-add", "-L"], capture_output=True, text=True, timeout=10, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return listed.returncode == 0 and any(line.strip() for line in listed.stdout.splitlines())


def refused(target: Target, files: list[str]) -> str:
    """The server accepted none of the keys offered: which ones, and what to change."""
    config = target.config_path or "~/.ssh/config"
    if not files and not agent_has_keys():
        return (
            f"SSH login as {target.user} on {target.alias} has no key to offer: no IdentityFile that exists and no "
            f"ssh-agent holding a key; fix IdentityFile of {target.alias} in {config} (the context's ssh_config), "
            "or load a key with `ssh-add`"
        )
    offered = f"the key{'s' * (len(files) > 1)} {', '.join(files)}" if files else "the keys of the ssh-agent"
    return (
        f"SSH login as {target.user} on {target.alias} refused: the server did not accept {offered}; "
        f"fix IdentityFile of {target.alias} in {config} (the context's ssh_config) to name a key the cluster "
        f"accepts, or add the key's .pub to ~/.ssh/authorized_keys of {target.user} there"
    )
