"""The connection to a cluster's login node as the rest of the plugin sees it, whatever speaks SSH underneath.

Two transports implement it: ``openssh`` (the system ``ssh`` client with the user's own config, multiplexed over
one master connection: ``mrunner_slurm.openssh``) and ``paramiko`` (``mrunner_slurm.ssh``). The context key
``ssh`` chooses; without it, OpenSSH where an ``ssh`` client is installed, else paramiko. A command opens one
connection per cluster and reuses it for every call; this module keeps them (``connection``) and imports
neither transport before one is asked for.

What the plugin needs of a connection is small: start a remote command (a ``Call``) and stream bytes to and
from it, read a remote file from an offset (logs), and say who it is connected to for messages.
"""

from __future__ import annotations

import re
import shutil
import threading
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from mrunner.errors import BackendError, MrunnerError, NeedsUser

TRANSPORTS = ("openssh", "paramiko")
#: ``slurm_url`` as written: ``[user@]host[:port]`` (a numeric IPv6 address in brackets) or a Host alias.
SLURM_URL = re.compile(r"^(?:(?P<user>[^@]+)@)?(?P<host>\[[^\]]+\]|[^:]+)(?::(?P<port>\d+))?$")


@dataclass(frozen=True)
class Target:
    """Where to connect, after the ssh config was applied (the paramiko transport uses every field, the
    OpenSSH one leaves all but the first four to ``ssh`` itself)."""

    alias: str
    host: str
    port: int
    user: str
    identity_files: tuple[str, ...] = ()
    identities_only: bool = False
    known_hosts: tuple[str, ...] = ()
    proxy_jump: str | None = None
    config_path: str | None = None
    proxy_command: str | None = None
    bind_address: str | None = None  # BindAddress: the local address a direct connection leaves from

    @property
    def known_hosts_name(self) -> str:
        return self.host if self.port == 22 else f"[{self.host}]:{self.port}"


def unresolved(target: Target, reason: str) -> BackendError:
    """The host name did not resolve. When the ssh config gave no HostName (the host is the alias itself),
    the usual cause is a typo in ``slurm_url`` or a Host missing from the config, not DNS: say both."""
    config = target.config_path or "~/.ssh/config"
    if target.host != target.alias:
        return BackendError(
            f"the HostName {target.host} of Host {target.alias} in {config} does not resolve ({reason}): "
            f"fix its HostName in {config}"
        )
    return BackendError(
        f"{target.alias} is neither a Host in {config} nor a name that resolves ({reason}): "
        f"fix the context's slurm_url or add `Host {target.alias}` (with its HostName) to {config}"
    )


@dataclass
class Result:
    code: int
    stdout: bytes
    stderr: bytes

    @property
    def text(self) -> str:
        return self.stdout.decode(errors="replace")

    @property
    def error(self) -> str:
        """The remote's own complaint, as one line."""
        lines = [line.strip() for line in self.stderr.decode(errors="replace").splitlines() if line.strip()]
        return " / ".join(lines[-3:]) or f"exit status {self.code}"


class NeedsLogin(NeedsUser):
    """The cluster wants an interactive login (a passphrase, a one-time code) and this command cannot ask:
    it has no terminal, or it must not prompt (a background warm-up, gc over many clusters). Made by ``of``;
    the core may re-raise it with a longer message, which keeps the class."""

    target: Target | None = None
    reason = ""
    paramiko = False

    @classmethod
    def of(cls, target: Target, context_name: str | None, reason: str, paramiko: bool = False) -> NeedsLogin:
        name = context_name or "CONTEXT"
        if not paramiko:
            remedy = f"run `mrunner login {name}` in a terminal first"
        elif shutil.which("ssh"):
            remedy = (
                f"run it in a terminal, where the code is asked, or set ssh: openssh and run `mrunner login {name}`"
            )
        else:  # no OpenSSH client here to keep a login with
            remedy = "run it in a terminal, where the code is asked (once per command: `mrunner login` needs `ssh`)"
        error = cls(
            f"context {name}: {target.alias} ({target.user}@{target.host}:{target.port}) needs an interactive "
            f"login ({reason}) and this command cannot ask for it here: {remedy}"
        )
        error.target, error.reason, error.paramiko = target, reason, paramiko
        return error

    def named(self, context_name: str | None) -> NeedsLogin:
        if context_name and self.target is not None:
            return NeedsLogin.of(self.target, context_name, self.reason, self.paramiko)
        return self


class Call:
    """A command running on the login node: its stdin open for ``send``, its stdout read with ``recv``,
    its stderr collected aside. Transports implement the primitives; ``finish`` and ``lines`` are common."""

    connection: Connection

    def send(self, data: bytes) -> None:
        """Write to the command's stdin; ``OSError`` when the command stopped reading."""
        raise NotImplementedError

    def shutdown_write(self) -> None:
        """End the command's stdin."""
        raise NotImplementedError

    def recv(self, size: int) -> bytes:
        """Up to ``size`` bytes of stdout, ``b""`` at its end."""
        raise NotImplementedError

    def exit_status(self) -> int:
        """Wait for the command's exit code; -1 when the connection died instead."""
        raise NotImplementedError

    def stderr(self) -> bytes:
        """Everything the command wrote to stderr (call after ``exit_status``)."""
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def abandon(self) -> None:
        """End this call's connection at once, even from a signal handler (``mrunner.interrupts.held``'s
        ``stop``): the reader sees its output end, then a failed exit. The remote command is not killed; it
        finds its output gone."""
        raise NotImplementedError

    def feed(self, stdin: bytes | Iterable[bytes]) -> int:
        """Send ``stdin`` and end it; return how many bytes went."""
        if isinstance(stdin, (bytes, bytearray)):
            stdin = [bytes(stdin)]
        sent = 0
        for chunk in stdin:
            if chunk:
                self.send(chunk)
                sent += len(chunk)
        self.shutdown_write()
        return sent

    def finish(self, stdin: bytes | Iterable[bytes] = b"") -> Result:
        """Feed ``stdin``, then return the exit code and output."""
        self.connection.calls += 1
        try:
            self.connection.bytes_sent += self.feed(stdin)
        except (OSError, EOFError):
            pass  # the remote stopped reading: its exit status and stderr say why
        chunks = []
        while chunk := self.recv(1 << 16):
            chunks.append(chunk)
        code = self.exit_status()
        self.close()
        if code == -1:  # the connection (or the remote sshd) died before the command ended
            raise self.connection.lost()
        return Result(code, b"".join(chunks), self.stderr())

    def lines(self, stdin: bytes | Iterable[bytes] = b"") -> Iterator[str]:
        """Feed ``stdin``, then yield stdout line by line as it comes; raise on a non-zero exit."""
        self.connection.calls += 1
        self.connection.bytes_sent += self.feed(stdin)
        pending = b""
        while chunk := self.recv(1 << 16):
            pending += chunk
            *complete, pending = pending.split(b"\n")
            for line in complete:
                yield line.decode(errors="replace")
        if pending:
            yield pending.decode(errors="replace")
        code = self.exit_status()
        self.close()
        if code == -1:
            raise self.connection.lost()
        if code:
            raise BackendError(Result(code, b"", self.stderr()).error)


@dataclass(eq=False)
class Connection:
    """An open connection; ``facts`` caches what was learnt about the cluster (MaxArraySize, ...)."""

    target: Target
    facts: dict[str, Any] = field(default_factory=dict, kw_only=True)
    calls: int = field(default=0, kw_only=True)  # remote commands run (what `status` of a sweep must keep at one)
    spare: Call | None = field(default=None, kw_only=True)  # a helper started ahead of its command (`remote.prestart`)
    bytes_sent: int = field(default=0, kw_only=True)  # stdin bytes sent to remote commands (benchmarks compare them)

    @property
    def alive(self) -> bool:
        raise NotImplementedError

    def start(self, command: str) -> Call:
        """Start ``command`` (a shell line) without its stdin yet: a call counts (``calls``) once it is fed."""
        raise NotImplementedError

    def read(self, path: str, offset: int = 0) -> bytes | None:
        """The remote file's bytes from ``offset`` on; ``None`` when it does not exist."""
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def run(self, command: str, stdin: bytes | Iterable[bytes] = b"") -> Result:
        """Run ``command``, feed it ``stdin``, return its exit code and output."""
        return self.start(command).finish(stdin)

    def lines(self, command: str, stdin: bytes = b"") -> Iterator[str]:
        """Run ``command`` and yield its stdout line by line as it comes; raise on a non-zero exit."""
        return self.start(command).lines(stdin)

    def lost(self) -> BackendError:
        """The one line for a connection that dropped in the middle of a command."""
        t = self.target
        return BackendError(f"the SSH connection to {t.alias} ({t.host}:{t.port}) was lost in the middle of a command")


def chosen(context: Mapping[str, Any]) -> str:
    """The context's transport: its ``ssh`` key, else OpenSSH where an ``ssh`` client is installed."""
    value = context.get("ssh")
    if value in (None, ""):
        return "openssh" if shutil.which("ssh") else "paramiko"
    if value not in TRANSPORTS:
        raise MrunnerError(f"the context key ssh must be openssh or paramiko, got {value!r}")
    if value == "openssh" and not shutil.which("ssh"):
        raise MrunnerError("ssh: openssh needs the OpenSSH client (`ssh`) on the PATH; install it or set ssh: paramiko")
    return str(value)


#: The context key ``ssh_config``'s default (``keys.SlurmKeys``).
DEFAULT_CONFIG = "~/.ssh/config"


def _key(context: Mapping[str, Any]) -> tuple[str, str | None, str]:
    """One cluster, one key: a context as composed (``Backend.warm_up``'s, without the key's default) and as
    validated (the default filled in) name the same connection, so a command opens one, and finds the
    login (whose socket is named after ``ssh_config``) either way."""
    return str(context["slurm_url"]), context.get("ssh_config") or DEFAULT_CONFIG, chosen(context)


_CACHE: dict[tuple[str, str | None, str], Connection] = {}
_FAILED: dict[tuple[str, str | None, str], Exception] = {}  # what a background connect (see `warm`) ran into
_GAVE_UP: set[tuple[str, str | None, str]] = set()  # where one did, for the command's life: `warm` tries once
_LOCK = threading.Lock()


def connection(context: Mapping[str, Any], context_name: str | None = None) -> Connection:
    """The process's connection for the context's ``slurm_url`` (opened on first use, then reused).

    With OpenSSH and a terminal, a cluster that asks for a passphrase or a code asks here, once; without a
    terminal it is one line naming ``mrunner login`` (``context_name`` is for that line)."""
    key = _key(context)
    with _LOCK:
        failed = _FAILED.pop(key, None)
        if failed is not None and not (isinstance(failed, NeedsLogin) and _can_prompt()):
            raise failed.named(context_name) if isinstance(failed, NeedsLogin) else failed
        return _reused_or_opened(key, context_name, interactive=True)


def batch_connection(context: Mapping[str, Any], context_name: str | None = None) -> Connection:
    """Like ``connection`` but never prompting, even in a terminal: for commands that visit many clusters
    (gc) and skip one that needs a login."""
    with _LOCK:
        return _reused_or_opened(_key(context), context_name, interactive=False)


def _reused_or_opened(key: tuple[str, str | None, str], context_name: str | None, interactive: bool) -> Connection:
    """The cached connection for ``key`` while it lives, else a new one, cached (called holding ``_LOCK``)."""
    existing = _CACHE.get(key)
    if existing is not None and existing.alive:
        return existing
    try:
        opened = _open(key, interactive=interactive)
    except NeedsLogin as error:
        raise error.named(context_name) from None
    _CACHE[key] = opened
    return opened


def _can_prompt() -> bool:
    from mrunner_slurm import terminal

    return terminal.available()


def _open(key: tuple[str, str | None, str], interactive: bool) -> Connection:
    url, config, transport = key
    if transport == "openssh":
        from mrunner_slurm import openssh

        return openssh.open_connection(url, config, interactive)
    from mrunner_slurm import ssh

    return ssh.connect(ssh.resolve(url, config), interactive=interactive)


def warm(context: Mapping[str, Any]) -> Connection | None:
    """Open the context's connection without prompting, keeping a failure for the next `connection` call to
    raise (so a dead host is reported once, not retried twice). Run in background threads by the plugin (the
    connection's and the site limits' reading): one that finds another's failure kept tries no more, else an
    unreachable host would cost each of them a round of retries before the command's one line."""
    key = _key(context)
    with _LOCK:
        existing = _CACHE.get(key)
        if existing is not None and existing.alive:
            return existing
        if key in _GAVE_UP:
            return None
        try:
            return _reused_or_opened(key, None, interactive=False)
        except Exception as error:
            _FAILED[key] = error
            _GAVE_UP.add(key)
            return None


def close_all() -> None:
    with _LOCK:
        for opened in _CACHE.values():
            opened.close()
        _CACHE.clear()
