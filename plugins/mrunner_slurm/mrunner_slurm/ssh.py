"""One SSH connection to the cluster's login node, reused for every exec channel and SFTP call of a command.

Hosts come from ``slurm_url`` (``[user@]host[:port]`` or a Host alias) resolved through the ssh config as
OpenSSH reads it (``Include`` followed by ``ssh_config``, ``Match`` by paramiko): HostName, User, Port,
IdentityFile, IdentitiesOnly, UserKnownHostsFile, ProxyJump, ProxyCommand, BindAddress. Host keys are checked
against known_hosts and never accepted on trust: an unknown or changed key is refused with its fingerprint
and the command that trusts it. TCP_NODELAY is set on the socket: without it Nagle's algorithm delays every
small round trip (measured 5x slower). This module imports paramiko, so only hooks import it.

paramiko imports ``invoke`` at start-up only to run ``Match exec`` lines of an ssh config; loading it
(asyncio, unittest.mock) costs ~0.1 s of CPU on start and ~20 ms at exit, a sixth of a whole dispatch. It
is therefore imported on first use, which only ``Match exec`` makes. (``importlib.util.LazyLoader`` does not
help: Python 3.11 loads a lazy module as soon as another ``import`` statement names it.)
"""

from __future__ import annotations

import base64
import contextlib
import functools
import hashlib
import importlib
import logging
import os
import shlex
import socket
import sys
import threading
import time
import types
from collections.abc import Iterator
from typing import Any

from mrunner.errors import BackendError, MrunnerError, NeedsUser
from mrunner_slurm.transport import SLURM_URL, Call, Connection, NeedsLogin, Target, unresolved


class _ImportedOnFirstUse(types.ModuleType):
    """Stands for a module that is imported but seldom used: the real one is imported when an attribute
    of it is first asked for."""

    def __getattr__(self, attribute: str) -> Any:
        return getattr(importlib.import_module(self.__name__), attribute)


@contextlib.contextmanager
def _deferred(name: str) -> Iterator[None]:
    """While the block imports modules, ``import name`` in them binds a stand-in (see above)."""
    if name in sys.modules:
        yield
        return
    sys.modules[name] = _ImportedOnFirstUse(name)
    try:
        yield
    finally:
        del sys.modules[name]  # only the modules imported in the block hold the stand-in


with _deferred("invoke"):
    import paramiko

# paramiko logs a failure of its transport thread (a banner that never came: a port whose listener hangs up)
# with a traceback; where the program set up no logging, Python's last-resort handler printed it on stderr
# beside the command's one line. mrunner says what failed itself (``connect``).
logging.getLogger("paramiko").addHandler(logging.NullHandler())

CONNECT_TIMEOUT = 15.0
RETRIES = 3  # transient failures (resets, banner timeouts) are retried with backoff: 0.5 s, 1 s, 2 s


def resolve(url: str, config_path: str | None) -> Target:
    """Apply ``~/.ssh/config`` (or ``config_path``) to ``slurm_url``."""
    match = SLURM_URL.match(url.strip())
    if not match:
        raise MrunnerError(f"slurm_url {url!r} is not [user@]host[:port] or a Host alias of your ssh config")
    alias = match["host"].strip("[]")
    path = os.path.expanduser(config_path or "~/.ssh/config")
    entry: dict[str, Any] = {}
    if os.path.exists(path):
        entry = _lookup(path, alias)
    elif config_path:
        raise MrunnerError(f"ssh_config {config_path} does not exist: fix the context's `ssh_config`")
    host = entry.get("hostname", alias)
    port = int(match["port"] or entry.get("port", 22))
    user = match["user"] or entry.get("user") or _local_user()
    files = tuple(os.path.expanduser(f) for f in entry.get("identityfile", []))
    known = entry.get("userknownhostsfile", "~/.ssh/known_hosts ~/.ssh/known_hosts2")
    known_files = tuple(os.path.expanduser(f) for f in shlex.split(known)) + ("/etc/ssh/ssh_known_hosts",)
    jump = entry.get("proxyjump")
    command = entry.get("proxycommand")
    return Target(
        alias,
        host,
        port,
        user,
        files,
        str(entry.get("identitiesonly", "no")).lower() == "yes",
        known_files,
        None if jump in (None, "none") else jump,
        path if os.path.exists(path) else None,
        None if command in (None, "none") else command,
        entry.get("bindaddress"),
    )


def _lookup(path: str, alias: str) -> dict[str, Any]:
    """The ssh config's settings for ``alias``, with ``Include`` followed (``ssh_config``) and ``Match``
    applied (paramiko); what cannot be followed is one line naming the file."""
    from mrunner_slurm.ssh_config import ConfigError, flattened

    try:
        return dict(paramiko.SSHConfig.from_text(flattened(path)).lookup(alias))
    except ConfigError as error:
        raise MrunnerError(f"ssh config: {error}") from None
    except OSError as error:
        raise MrunnerError(f"cannot read the ssh config {error.filename or path}: {error.strerror}") from None
    except (paramiko.ConfigParseError, paramiko.CouldNotCanonicalize) as error:
        raise MrunnerError(f"the ssh config {path} cannot be read for {alias}: {error}") from None


def _local_user() -> str:
    import getpass

    return getpass.getuser()


def fingerprint(key: paramiko.PKey) -> str:
    return "SHA256:" + base64.b64encode(hashlib.sha256(key.asbytes()).digest()).decode().rstrip("=")


class _RefuseUnknown(paramiko.MissingHostKeyPolicy):
    """Refuse a host whose key is not in known_hosts, naming the key and how to trust it."""

    def __init__(self, target: Target) -> None:
        self.target = target

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> None:
        t = self.target
        known = next((f for f in t.known_hosts if not f.startswith("/etc/")), "~/.ssh/known_hosts")
        scan = f"ssh-keyscan {'-p ' + str(t.port) + ' ' if t.port != 22 else ''}{t.host} >> {known}"
        raise NeedsUser(
            f"the host key of {t.alias} ({t.known_hosts_name}) is unknown: {key.get_name()} {fingerprint(key)}; "
            f"if that is the cluster's key, trust it with `{scan}` (or log in once with ssh) and retry"
        )


class ParamikoConnection(Connection):
    """A paramiko client; its exec channels are the calls, SFTP reads the files."""

    def __init__(self, target: Target, client: paramiko.SSHClient, jump: ParamikoConnection | None = None) -> None:
        super().__init__(target)
        self.client = client
        self.jump = jump
        self._sftp: paramiko.SFTPClient | None = None

    @property
    def alive(self) -> bool:
        transport = self.client.get_transport()
        return bool(transport and transport.is_active())

    def sftp(self) -> paramiko.SFTPClient:
        if self._sftp is None:
            self._sftp = self.client.open_sftp()
        return self._sftp

    def read(self, path: str, offset: int = 0) -> bytes | None:
        try:
            with self.sftp().open(path, "rb") as stream:
                stream.seek(offset)
                return stream.read()
        except FileNotFoundError:
            return None

    def open(self, command: str, count: bool = True) -> paramiko.Channel:
        transport = self.client.get_transport()
        if transport is None or not transport.is_active():
            raise self.lost()
        try:
            channel = transport.open_session(timeout=CONNECT_TIMEOUT)
        except (paramiko.SSHException, EOFError, OSError):
            raise self.lost() from None
        channel.exec_command(command)
        self.calls += count
        return channel

    def start(self, command: str) -> ParamikoCall:
        channel = self.open(command, count=False)
        return ParamikoCall(self, channel, _drain_stderr(channel))

    def close(self) -> None:
        if self._sftp is not None:
            self._sftp.close()
        self.client.close()
        if self.jump is not None:
            self.jump.close()


class ParamikoCall(Call):
    """A command on its own exec channel, its stderr drained by a thread."""

    def __init__(self, connection: ParamikoConnection, channel: paramiko.Channel, errors: _Stderr) -> None:
        self.connection = connection
        self.channel = channel
        self.errors = errors

    def send(self, data: bytes) -> None:
        try:
            self.channel.sendall(data)
        except (EOFError, paramiko.SSHException) as error:
            raise OSError(str(error)) from None

    def shutdown_write(self) -> None:
        self.channel.shutdown_write()

    def recv(self, size: int) -> bytes:
        return self.channel.recv(size)

    def exit_status(self) -> int:
        code = self.channel.recv_exit_status()
        self.errors.join()
        return code

    def stderr(self) -> bytes:
        self.errors.join()
        return b"".join(self.errors.chunks)

    def close(self) -> None:
        self.channel.close()

    def abandon(self) -> None:
        self.channel.close()


class _Stderr(threading.Thread):
    def __init__(self, channel: paramiko.Channel) -> None:
        super().__init__(daemon=True)
        self.channel = channel
        self.chunks: list[bytes] = []

    def run(self) -> None:
        while chunk := self.channel.recv_stderr(65536):
            self.chunks.append(chunk)


def _drain_stderr(channel: paramiko.Channel) -> _Stderr:
    reader = _Stderr(channel)
    reader.start()
    return reader


def connect(target: Target, interactive: bool = False) -> ParamikoConnection:
    """Open and authenticate a connection, retrying transient failures with backoff. With ``interactive``
    (and a terminal), a server that wants a one-time code after the key (keyboard-interactive) asks for it
    in the terminal; otherwise such a server is ``NeedsLogin``."""
    delay = 0.5
    for attempt in range(RETRIES + 1):
        try:
            return _connect_once(target, interactive)
        except (BackendError, MrunnerError):
            raise
        except _NoTerminal as error:
            raise NeedsLogin.of(target, None, str(error), paramiko=True) from None
        except paramiko.BadHostKeyException as error:
            raise NeedsUser(
                f"the host key of {target.alias} ({target.known_hosts_name}) CHANGED: it offers "
                f"{error.key.get_name()} {fingerprint(error.key)} but known_hosts has {fingerprint(error.expected_key)}; "
                f"if the cluster's key really changed, remove the old line with "
                f"`ssh-keygen -R '{target.known_hosts_name}'` and trust the new one"
            ) from None
        except paramiko.AuthenticationException as error:
            raise _auth_failed(target, error) from None
        except socket.gaierror as error:
            raise unresolved(target, error.strerror or str(error)) from None
        except (OSError, EOFError, paramiko.SSHException) as error:
            if str(error) == "No authentication methods available":  # no key and no agent: no retry mends it
                raise _no_key(target) from None
            if attempt == RETRIES:
                reason = getattr(error, "strerror", None) or str(error) or type(error).__name__
                raise BackendError(
                    f"cannot reach {target.alias} at {target.host}:{target.port} over SSH after "
                    f"{RETRIES + 1} tries: {reason}"
                ) from None
            time.sleep(delay)
            delay *= 2
    raise AssertionError("unreachable")


def _auth_failed(target: Target, error: Exception) -> MrunnerError:
    """No key was accepted: a key locked by its passphrase (paramiko asks none), or keys the server refused,
    each named with its fix; no retry mends either."""
    from mrunner_slurm import keyfiles

    files = [f for f in target.identity_files if os.path.exists(f)]
    locked = keyfiles.locked(files)
    if locked is not None:
        return NeedsUser(
            f"SSH login as {target.user} on {target.alias}: the key {locked} is locked by its passphrase and no "
            f"ssh-agent holds it (the paramiko transport cannot ask for it): load it with `ssh-add {locked}`, or "
            "set ssh: openssh in the context and run `mrunner login` in a terminal"
        )
    if isinstance(error, paramiko.BadAuthenticationType) and "publickey" not in error.allowed_types:
        return BackendError(
            f"SSH login as {target.user} on {target.alias} failed: the server takes only "
            f"{', '.join(error.allowed_types)}, which mrunner does not answer without a terminal"
        )
    return NeedsUser(keyfiles.refused(target, files))


def _no_key(target: Target) -> BackendError:
    """paramiko found no key to offer (no IdentityFile that exists, no agent): named as such, with the files
    it looked for, instead of "cannot reach" after every retry."""
    missing = [f for f in target.identity_files if not os.path.exists(f)]
    looked = f"{', '.join(missing)} {'does' if len(missing) == 1 else 'do'} not exist and " if missing else ""
    return BackendError(
        f"SSH login as {target.user} on {target.alias} has no key to offer: {looked}no ssh-agent holds one; "
        f"fix IdentityFile in {target.config_path or '~/.ssh/config'}, or load a key with `ssh-add`"
    )


GCM = ("aes128-gcm@openssh.com", "aes256-gcm@openssh.com")


class _NoTerminal(Exception):
    """The server asked a keyboard-interactive question and there is no terminal to ask in."""


class _Prompter:
    """Answers a server's keyboard-interactive questions (a one-time code after the key) in the terminal, as
    ``ssh`` does: the server's name and instructions, then each prompt, hidden unless the server wants it
    echoed. paramiko's own fallback reads stdin with ``input()``, which hangs a command run without a
    terminal or eats its piped input; this refuses at once instead."""

    def __init__(self, target: Target, interactive: bool) -> None:
        self.target = target
        self.interactive = interactive
        self.refused: str | None = None  # why it could not ask (paramiko's thread turns the raise into a failure)

    def __call__(self, title: str, instructions: str, prompts: list[tuple[str, bool]]) -> list[str]:
        from mrunner_slurm import terminal

        if not prompts:
            return []
        if not (self.interactive and terminal.available()):
            self.refused = f"the server asks: {prompts[0][0].strip()}"
            raise _NoTerminal(self.refused)
        return terminal.ask([title, instructions], prompts)


class _Transport(paramiko.Transport):
    """Answers every global request of the server that wants no answer with an SSH_MSG_IGNORE.

    OpenSSH's sshd sends one (``hostkeys-00@openssh.com``) just after authentication, while its socket still
    has Nagle's algorithm on (sshd turns it off for interactive sessions only). Unanswered, this side's kernel
    delays its ACK of that packet (delayed ACK: 40 ms on Linux, up to 200 ms elsewhere), and the server's
    kernel holds back the server's next packet, the confirmation of the connection's first channel, until
    that ACK arrives: every command's first call waited for the timer. The ignored message carries the ACK.
    """

    def _parse_global_request(self, m: paramiko.Message) -> None:
        m.get_text()
        wants_reply = m.get_boolean()
        m.rewind()
        super()._parse_global_request(m)  # type: ignore[misc]  # paramiko has it (in its handler table); its stubs do not
        if not wants_reply:
            ignored = paramiko.Message()
            ignored.add_byte(paramiko.common.cMSG_IGNORE)
            ignored.add_string(b"")
            self._send_message(ignored)  # type: ignore[attr-defined]  # paramiko has it; its stubs do not

    prompter: _Prompter | None = None

    def auth_interactive_dumb(self, username: str, handler: Any = None, submethods: str = "") -> list[str]:
        """What ``SSHClient.connect`` calls when the key was accepted and the server wants a second factor."""
        from mrunner_slurm import terminal

        prompter = self.prompter
        if handler is not None or prompter is None:  # not made by `_transport`: paramiko's own behaviour
            return super().auth_interactive_dumb(username, handler, submethods)
        if not (prompter.interactive and terminal.available()):  # refused here, before the server asks
            prompter.refused = "the server wants a one-time code (keyboard-interactive) after the key"
            raise _NoTerminal(prompter.refused)
        return self.auth_interactive(username, prompter, submethods)


#: When this side starts a key re-exchange: OpenSSH's default for ciphers of 128-bit blocks, 2^32 blocks.
REKEY_BYTES = 2**36
REKEY_PACKETS = 2**31


def _transport(sock: Any, prompter: _Prompter | None = None, **options: Any) -> paramiko.Transport:
    """A transport that offers AES-GCM first (the client's order decides among what both sides have): one
    pass over each packet where AES-CTR needs a second for its HMAC, and decrypting is most of what a pull's
    stream costs this side. A server without GCM gets paramiko's usual order.

    paramiko starts a key re-exchange every 512 MiB; when the server closes a channel while one is under way,
    paramiko's transport thread waits for the exchange it should itself complete (paramiko issue 822): the
    command hung 30 s, then the connection failed ("Key-exchange timed out"), e.g. a pull whose stream ended
    near 512 MiB. So this side re-keys at OpenSSH's own limit instead, and a server re-keys at its own.
    """
    transport = _Transport(sock, **options)
    transport.prompter = prompter
    transport.packetizer.REKEY_BYTES = REKEY_BYTES
    transport.packetizer.REKEY_PACKETS = REKEY_PACKETS
    security = transport.get_security_options()
    security.ciphers = GCM + tuple(cipher for cipher in security.ciphers if cipher not in GCM)
    return transport


def _load_known_hosts(keys: paramiko.HostKeys, path: str) -> None:
    """Add every well-formed line of a known_hosts file, as OpenSSH reads it: a malformed line (a key pasted
    wrong) is skipped alone, where paramiko's own loader raises InvalidHostKey out of the connection, a
    traceback. An unreadable or missing file is treated as empty."""
    try:
        with open(path, encoding="utf-8", errors="replace") as file:
            lines = file.read().splitlines()
    except OSError:
        return
    for number, line in enumerate(lines, 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        try:
            entry = paramiko.hostkeys.HostKeyEntry.from_line(line, number)
        except (paramiko.SSHException, paramiko.hostkeys.InvalidHostKey):
            continue
        if entry is not None and entry.key is not None:
            for name in entry.hostnames:
                keys.add(name, entry.key.get_name(), entry.key)


def _connect_once(target: Target, interactive: bool) -> ParamikoConnection:
    jump = None
    if target.proxy_jump:
        hop = target.proxy_jump.split(",")[0]
        jump = connect(resolve(hop, target.config_path), interactive)
        sock: Any = jump.client.get_transport().open_channel(  # type: ignore[union-attr]
            "direct-tcpip", (target.host, target.port), ("127.0.0.1", 0), timeout=CONNECT_TIMEOUT
        )
    elif target.proxy_command:  # its %h, %p, ... were expanded by paramiko's lookup
        try:
            sock = paramiko.ProxyCommand(target.proxy_command)
        except OSError as error:  # the program is missing: no retry mends that
            raise BackendError(
                f"the ProxyCommand of {target.alias} cannot run ({error.strerror}): fix `ProxyCommand "
                f"{target.proxy_command}` in {target.config_path or '~/.ssh/config'}"
            ) from None
    else:
        source = (target.bind_address, 0) if target.bind_address else None
        sock = socket.create_connection((target.host, target.port), timeout=CONNECT_TIMEOUT, source_address=source)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    client = paramiko.SSHClient()
    for known in target.known_hosts:
        _load_known_hosts(client.get_host_keys(), known)
    client.set_missing_host_key_policy(_RefuseUnknown(target))
    key_files = [f for f in target.identity_files if os.path.exists(f)]
    prompter = _Prompter(target, interactive)
    try:
        client.connect(
            target.host,
            target.port,
            username=target.user,
            sock=sock,
            key_filename=key_files or None,  # type: ignore[arg-type]  # paramiko takes a list too
            timeout=CONNECT_TIMEOUT,
            banner_timeout=CONNECT_TIMEOUT,
            auth_timeout=CONNECT_TIMEOUT,
            allow_agent=True,
            look_for_keys=not target.identities_only,
            transport_factory=functools.partial(_transport, prompter=prompter),
        )
    except BaseException:
        client.close()
        if jump is not None:
            jump.close()
        if prompter.refused:
            raise _NoTerminal(prompter.refused) from None
        raise
    transport = client.get_transport()
    if transport is not None:
        transport.set_keepalive(30)
    return ParamikoConnection(target, client, jump)
