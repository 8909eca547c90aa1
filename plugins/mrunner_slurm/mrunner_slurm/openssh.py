"""The OpenSSH transport: every remote call is the system ``ssh`` client, multiplexed over one master connection.

``ssh`` runs with the user's own configuration (``~/.ssh/config``, or the context's ``ssh_config`` file), so
whatever OpenSSH understands works unchanged: ProxyJump, ProxyCommand, Match, Include, the agent, ``sk-``
keys, certificates, GSSAPI. Host keys are OpenSSH's own business (this module never weakens
StrictHostKeyChecking); a changed or unknown key becomes one line.

Each call is one ``ssh -o ControlMaster=no -o ControlPath=SOCKET`` process: through an open master it costs
a process start and a channel, no handshake. Which master (``masters.find``): the user's own (their config's
ControlPath, if one is up), else the one ``mrunner login`` keeps, else one this command opens and closes at
its end. A call never prompts (``BatchMode=yes``); only the opening of a master may, in a terminal.
"""

from __future__ import annotations

import atexit
import os
import pwd
import queue
import re
import shlex
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass

from mrunner.errors import BackendError, MrunnerError, NeedsUser
from mrunner_slurm import keyfiles
from mrunner_slurm.transport import DEFAULT_CONFIG, SLURM_URL, Call, Connection, NeedsLogin, Target, unresolved

CONNECT_TIMEOUT = 15
RETRIES = 3  # transient failures (refused, reset, banner timeouts) are retried with backoff: 0.5 s, 1 s, 2 s
COMMAND_PERSIST = 120  # seconds a master this command opened outlives it if the command is killed
_MISSING = 97  # the exit code of `read` for a file that does not exist
#: How ssh says that it, not the remote command, failed (a 255 exit is then a lost connection).
_SSH_FAILURE = re.compile(
    r"mux_client|[Cc]ontrol socket|closed by remote host|Connection to \S+ closed|Broken pipe|"
    r"Connection reset|kex_exchange_identification|^ssh: ",
    re.M,
)
#: How a shell says that a ProxyCommand cannot run (the command or a file it names is missing).
_NOT_RUNNABLE = re.compile(r"No such file or directory|command not found|: not found|Permission denied$")
_TRANSIENT = re.compile(
    r"Connection refused|Connection reset|timed out|kex_exchange_identification|Connection closed by|"
    r"No route to host|Network is unreachable|banner exchange"
)


#: What of the user's config is for their interactive sessions, not for mrunner's commands: a RemoteCommand
#: (ssh refuses one beside a command: "Cannot execute command-line and remote command"), a terminal, and port
#: forwardings: a master mrunner keeps for hours would hold the user's ports (their own `ssh ALIAS` then
#: cannot forward them) or fail where one is taken and ExitOnForwardFailure is set; a call through a master
#: would ask it for them too.
PLAIN = ("-o", "RemoteCommand=none", "-o", "RequestTTY=no", "-o", "ClearAllForwardings=yes")


#: A master's ``ssh`` runs with hangups ignored, as under nohup (OpenSSH keeps an ignored SIGHUP ignored).
#: After authenticating it forks into the background and stays in the terminal's session until it calls
#: setsid; a `mrunner login` that leads that session (a tmux window, `ssh -t HOST mrunner login`, a
#: pseudo-terminal) ends right after, and the terminal's hangup could end the master in between.
_NOHUP = ("/bin/sh", "-c", 'trap "" HUP; exec "$@"', "sh")


@dataclass(frozen=True)
class Destination:
    """How to name the host to ``ssh``: its arguments before the destination, and the destination."""

    arguments: tuple[str, ...]
    destination: str
    config_path: str | None

    def argv(self, *options: str) -> list[str]:
        return ["ssh", *self.arguments, *options, self.destination]


def destination(url: str, config_path: str | None) -> Destination:
    """``slurm_url`` (``[user@]host[:port]`` or a Host alias) as ``ssh`` arguments. ``-F`` only for a config
    file other than the one ssh reads by itself (``.ssh/config`` in the account's home, which is not always
    ``$HOME``): with ``-F`` OpenSSH skips ``/etc/ssh/ssh_config``, which ``ssh ALIAS`` reads."""
    match = SLURM_URL.match(url.strip())
    if not match:
        raise MrunnerError(f"slurm_url {url!r} is not [user@]host[:port] or a Host alias of your ssh config")
    arguments: list[str] = []
    path = os.path.expanduser(config_path) if config_path else None
    if path == os.path.join(pwd.getpwuid(os.getuid()).pw_dir, ".ssh", "config"):
        path = None  # what ssh reads anyway, with /etc/ssh/ssh_config
    elif path and not os.path.exists(path):
        if config_path != DEFAULT_CONFIG:  # the key's default may name no file ($HOME elsewhere)
            raise MrunnerError(f"ssh_config {config_path} does not exist: fix the context's `ssh_config`")
        path = None
    elif path and os.path.isdir(path):
        raise MrunnerError(f"ssh_config {config_path} is a folder, not a file: fix the context's `ssh_config`")
    if path:
        arguments += ["-F", path]
    if match["user"]:
        arguments += ["-l", match["user"]]
    if match["port"]:
        arguments += ["-p", match["port"]]
    return Destination(tuple(arguments), match["host"].strip("[]"), path)


def settings(where: Destination) -> dict[str, str]:
    """What ``ssh -G`` says it would use for the destination (hostname, port, user, controlpath, ...)."""
    done = subprocess.run(where.argv("-G"), capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
    if done.returncode:
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        raise MrunnerError(f"ssh cannot read its configuration for {where.destination}: {' / '.join(lines[-2:])}")
    found: dict[str, str] = {}
    identities = []  # every IdentityFile, in order (ssh offers each)
    for line in done.stdout.splitlines():
        key, _, value = line.partition(" ")
        found.setdefault(key, value)
        if key == "identityfile":
            identities.append(value)
    found["identityfiles"] = "\n".join(identities)
    return found


def target_of(where: Destination, found: dict[str, str]) -> Target:
    return Target(
        where.destination,
        found.get("hostname", where.destination),
        int(found.get("port", 22)),
        found.get("user", ""),
        config_path=where.config_path,
    )


class OpenSSHConnection(Connection):
    """Calls as ``ssh`` processes through the master at ``control_path``; ``owned``: this command opened
    that master and closes it at its end."""

    def __init__(self, target: Target, where: Destination, control_path: str, owned: bool) -> None:
        super().__init__(target)
        self.where = where
        self.control_path = control_path
        self.owned = owned

    @property
    def alive(self) -> bool:
        return os.path.exists(self.control_path)

    def argv(self, command: str) -> list[str]:
        options = [
            "-T",
            *PLAIN,
            "-o",
            "ControlMaster=no",
            "-o",
            f"ControlPath={self.control_path}",
            "-o",
            "BatchMode=yes",
        ]
        return [*self.where.argv(*options), command]

    def start(self, command: str) -> OpenSSHCall:
        try:
            process = subprocess.Popen(
                self.argv(command),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                # its own session: a terminal's Ctrl-C reaches mrunner alone, which decides what to cut
                # (mrunner.interrupts) instead of losing the call in the middle of a hand-over
                start_new_session=True,
            )
        except OSError as error:
            raise BackendError(f"cannot run ssh: {error.strerror}") from None
        return OpenSSHCall(self, process)

    def read(self, path: str, offset: int = 0) -> bytes | None:
        quoted = shlex.quote(path)
        result = self.run(f"test -e {quoted} || exit {_MISSING}; exec tail -c +{offset + 1} {quoted}")
        if result.code == _MISSING:
            return None
        if result.code:
            raise BackendError(f"cannot read {path} on {self.target.alias}: {result.error}")
        return result.stdout

    def close(self) -> None:
        if self.owned:
            self.owned = False
            masters.close(self.where, self.control_path)


class OpenSSHCall(Call):
    """One ``ssh`` process: stdout and stderr read by threads (so a command that answers before it has read
    all its input never blocks on a full pipe), stdout handed out in order with a bounded queue."""

    def __init__(self, connection: OpenSSHConnection, process: subprocess.Popen[bytes]) -> None:
        self.connection = connection
        self.process = process
        self._chunks: queue.Queue[bytes] = queue.Queue(maxsize=64)
        self._errors: list[bytes] = []
        self._threads = [
            threading.Thread(target=self._read_stdout, daemon=True),
            threading.Thread(target=self._read_stderr, daemon=True),
        ]
        for thread in self._threads:
            thread.start()
        self._ended = False

    def _read_stdout(self) -> None:
        stream = self.process.stdout
        assert stream is not None
        while chunk := os.read(stream.fileno(), 1 << 16):
            self._chunks.put(chunk)
        self._chunks.put(b"")

    def _read_stderr(self) -> None:
        stream = self.process.stderr
        assert stream is not None
        while chunk := os.read(stream.fileno(), 1 << 16):
            self._errors.append(chunk)

    def send(self, data: bytes) -> None:
        stdin = self.process.stdin
        if stdin is None or stdin.closed:
            raise OSError("the remote command's input is closed")
        stdin.write(data)
        stdin.flush()

    def shutdown_write(self) -> None:
        stdin = self.process.stdin
        if stdin is not None and not stdin.closed:
            try:
                stdin.close()
            except OSError:
                pass  # the remote stopped reading: its exit status says why

    def recv(self, size: int) -> bytes:
        if self._ended:
            return b""
        chunk = self._chunks.get()
        if not chunk:
            self._ended = True
        return chunk

    def exit_status(self) -> int:
        code = self.process.wait()
        self._threads[1].join()
        if code == 255 and _SSH_FAILURE.search(self.stderr().decode(errors="replace")):
            return -1
        return code

    def stderr(self) -> bytes:
        return b"".join(self._errors)

    def abandon(self) -> None:
        try:
            self.process.kill()  # the reader threads then find the end of its output
        except ProcessLookupError:
            pass

    def close(self) -> None:
        self.shutdown_write()
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        for stream in (self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()


class Masters:
    """The master connections of this process: found (the user's, a login's) or opened here."""

    def __init__(self) -> None:
        self.opened: list[tuple[Destination, str]] = []
        atexit.register(self.close_all)

    def check(self, where: Destination, path: str) -> bool:
        """Whether a master answers at ``path``."""
        if not os.path.exists(path):
            return False
        done = subprocess.run(
            where.argv("-o", f"ControlPath={path}", "-O", "check"),
            capture_output=True,
            timeout=30,
            stdin=subprocess.DEVNULL,
        )
        return done.returncode == 0

    def open(
        self, where: Destination, target: Target, path: str, persist: str, interactive: bool, found: dict[str, str]
    ) -> None:
        """Open a master at ``path`` that stays ``persist`` after its last use; ``interactive``: prompts (a
        passphrase, a one-time code, an unknown host key) go to the terminal as ``ssh`` asks them."""
        if os.path.exists(path) and not self.check(where, path):
            # left by a master that was killed: ssh would find it in the way, keep no master ("ControlSocket
            # already exists, disabling multiplexing") and stay in the background as a plain connection
            os.unlink(path)
        options = [*PLAIN, "-o", "ControlMaster=yes", "-o", f"ControlPath={path}", "-o", f"ControlPersist={persist}"]
        if found.get("connecttimeout", "none") == "none":
            options += ["-o", f"ConnectTimeout={CONNECT_TIMEOUT}"]
        if found.get("serveraliveinterval", "0") == "0":
            options += ["-o", "ServerAliveInterval=30"]  # a dead link is found within minutes, not hours
        if not interactive:
            options += ["-o", "BatchMode=yes"]
        delay = 0.5
        for attempt in range(RETRIES + 1):
            with tempfile.TemporaryFile() as errors:  # not a pipe: the master inherits it in the background
                done = subprocess.run(
                    [*_NOHUP, *where.argv(*options, "-N", "-f")],
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=errors,
                )
                errors.seek(0)
                text = errors.read().decode(errors="replace")
            if done.returncode == 0:
                return
            if attempt == 0 and "UNKNOWN port 65535" in text:
                text += _proxy_complaint(where, found)
            if not _TRANSIENT.search(text) or attempt == RETRIES or _broken_proxy(text, found) or _denied(text):
                raise failure(target, text, batch=not interactive, tries=attempt + 1, found=found)
            time.sleep(delay)
            delay *= 2

    def close(self, where: Destination, path: str) -> None:
        subprocess.run(
            where.argv("-o", f"ControlPath={path}", "-O", "exit"),
            capture_output=True,
            timeout=30,
            stdin=subprocess.DEVNULL,
        )
        self.opened = [(w, p) for w, p in self.opened if p != path]

    def close_all(self) -> None:
        for where, path in list(self.opened):
            self.close(where, path)


masters = Masters()


def open_connection(url: str, config_path: str | None, interactive: bool) -> OpenSSHConnection:
    """A connection through a master that is up (the user's own, a login's), else through one opened for
    this command: without prompting first; with ``interactive`` and a terminal, prompting if the cluster
    wants it (a passphrase, a code)."""
    from mrunner_slurm import logins, terminal

    where = destination(url, config_path)
    found = settings(where)
    target = target_of(where, found)
    for path in (found.get("controlpath"), logins.socket_path(found)):
        if path and masters.check(where, path):
            return OpenSSHConnection(target, where, path, owned=False)
    path = logins.command_socket_path(found)
    try:
        masters.open(where, target, path, str(COMMAND_PERSIST), interactive=False, found=found)
    except NeedsLogin:
        if not (interactive and terminal.available()):
            raise
        masters.open(where, target, path, str(COMMAND_PERSIST), interactive=True, found=found)
    masters.opened.append((where, path))
    return OpenSSHConnection(target, where, path, owned=True)


def _denied(text: str) -> bool:
    """Whether a hop refused the login (a key locked by its passphrase, a code wanted): no retry mends that;
    the jump host's refusal reads "Connection closed by UNKNOWN port 65535" too, which alone is transient."""
    return any("Permission denied" in line or "passphrase" in line.lower() for line in text.splitlines())


def _key_refused(denied: str) -> bool:
    """Whether ssh's "Permission denied (METHODS)" says no key offered was accepted and nothing but a key
    would be: publickey alone. A server that accepted the key and wants a code next lists only what is left
    (keyboard-interactive); one that takes a password too is a login to make in a terminal."""
    methods = re.search(r"Permission denied \(([^)]*)\)", denied)
    return methods is not None and methods[1].split(",") == ["publickey"]


def _proxy_complaint(where: Destination, found: dict[str, str]) -> str:
    """What the ProxyCommand or ProxyJump says when run by a plain ``ssh``: a master that persists sends its
    stderr to /dev/null, so the connection that failed through it ("UNKNOWN port 65535") did not say why (a
    bastion that refused the key: it was not "cannot reach"). In a session of its own: a ProxyCommand that is
    itself an ``ssh`` (to a bastion) has no terminal to prompt in."""
    if found.get("proxycommand", "none") == "none" and found.get("proxyjump", "none") == "none":
        return ""
    options = ["-T", *PLAIN, "-o", "ControlMaster=no", "-o", "ControlPath=none", "-o", "BatchMode=yes"]
    options += ["-o", f"ConnectTimeout={CONNECT_TIMEOUT}"]
    try:
        done = subprocess.run(
            [*where.argv(*options), "true"],
            capture_output=True,
            timeout=2 * CONNECT_TIMEOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    except subprocess.TimeoutExpired:
        return ""
    return "\n" + done.stderr.decode(errors="replace")


def _broken_proxy(text: str, found: dict[str, str] | None) -> str | None:
    """The shell's line saying the context's ProxyCommand cannot run (no retry mends that), if it said so."""
    if (found or {}).get("proxycommand", "none") == "none":
        return None
    return next((line.strip() for line in text.splitlines() if _NOT_RUNNABLE.search(line.strip())), None)


def _offered_key(target: Target) -> str:
    """The type and fingerprint of the key the host offers, for the user to compare (trusting nothing)."""
    try:
        scan = subprocess.run(
            ["ssh-keyscan", "-T", "5", "-p", str(target.port), target.host],
            capture_output=True,
            timeout=10,
            stdin=subprocess.DEVNULL,
        )
        listed = subprocess.run(["ssh-keygen", "-l", "-f", "-"], input=scan.stdout, capture_output=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "its key could not be read"
    keys = [line.split() for line in listed.stdout.decode(errors="replace").splitlines() if line.strip()]
    preferred = sorted(keys, key=lambda fields: "ED25519" not in fields[-1])  # the type OpenSSH asks first
    return f"{preferred[0][-1].strip('()')} {preferred[0][1]}" if preferred else "its key could not be read"


def _unusable_key(text: str, config: str) -> str | None:
    """The key file OpenSSH could not use, and the fix, when it said why: one readable by others (it ignores
    it) or one that does not exist. Without this the refusal that follows reads as a login to make, and
    `mrunner login` fails the same way."""
    loose = re.search(r'Load key "(.+)": bad permissions', text)
    if loose:
        return f"OpenSSH ignores the key {loose[1]}, which others may read: `chmod 600 {shlex.quote(loose[1])}`"
    missing = re.search(r"no such identity: (.+): No such file or directory", text)
    if missing:
        return f"the key {missing[1]} does not exist: fix IdentityFile in {config}, or make the key"
    return None


def failure(
    target: Target, text: str, batch: bool, tries: int = 1, found: dict[str, str] | None = None
) -> BackendError:
    """ssh's complaint about opening a connection as one line that says what to do; a host key to check or a
    login to make is ``NeedsUser`` (no retry, no `--wait`, mends it)."""
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("@")]
    name = target.known_hosts_name
    if "REMOTE HOST IDENTIFICATION HAS CHANGED" in text:
        offered = re.search(r"(SHA256:[A-Za-z0-9+/=]+)", text)
        offending = re.search(r"Offending \S+ key in (\S+)", text)
        return NeedsUser(
            f"the host key of {target.alias} ({name}) CHANGED: it offers {offered[1] if offered else 'another key'}"
            f" but {offending[1] if offending else 'known_hosts'} has another; if the cluster's key really changed, "
            f"remove the old line with `ssh-keygen -R '{name}'` and trust the new one (log in once with ssh)"
        )
    if "Host key verification failed" in text:
        known = (found or {}).get("userknownhostsfile", "~/.ssh/known_hosts").split()[0]
        port = f"-p {target.port} " if target.port != 22 else ""
        return NeedsUser(
            f"the host key of {target.alias} ({name}) is unknown: {_offered_key(target)}; if that is the cluster's "
            f"key, trust it with `ssh-keyscan {port}{target.host} >> {known}` (or log in once with ssh) and retry"
        )
    denied = next((line for line in lines if "Permission denied" in line or "passphrase" in line.lower()), None)
    unusable = _unusable_key(text, target.config_path or "~/.ssh/config")
    if denied is not None and unusable is not None:
        return NeedsUser(f"SSH login as {target.user} on {target.alias} refused: {unusable}")
    direct = all((found or {}).get(hop, "none") == "none" for hop in ("proxyjump", "proxycommand"))
    if denied is not None and direct and _key_refused(denied):  # through a hop, the refusal may be the hop's
        files = [os.path.expanduser(f) for f in (found or {}).get("identityfiles", "").splitlines() if f]
        files = [f for f in files if os.path.exists(f)]
        locked = keyfiles.locked(files)
        if locked is not None and batch:  # skipped unasked: a login in a terminal asks its passphrase
            return NeedsLogin.of(
                target, None, f"the key {locked} is locked by its passphrase and no ssh-agent holds it"
            )
        if locked is None:
            return NeedsUser(keyfiles.refused(target, files))
    if denied is not None:
        reason = denied.removeprefix(f"{target.user}@{target.host}: ")
        if batch:
            return NeedsLogin.of(target, None, reason)
        return BackendError(
            f"SSH authentication as {target.user} on {target.alias} failed ({reason}); check the key "
            f"(IdentityFile in {target.config_path or '~/.ssh/config'}, or ssh-agent), the code and the user"
        )
    broken = _broken_proxy(text, found)
    if broken is not None:
        assert found is not None
        return BackendError(
            f"the ProxyCommand of {target.alias} cannot run ({broken}): fix `ProxyCommand "
            f"{found['proxycommand']}` in {target.config_path or '~/.ssh/config'}"
        )
    if "Could not resolve hostname" in text:
        said = next((line for line in lines if "Could not resolve hostname" in line), "")
        return unresolved(target, said.rsplit(": ", 1)[-1] or "no reason given")
    if _TRANSIENT.search(text):
        return BackendError(
            f"cannot reach {target.alias} at {target.host}:{target.port} over SSH after {tries} "
            f"tr{'ies' if tries > 1 else 'y'}: {lines[-1] if lines else 'no answer'}"
        )
    return BackendError(f"ssh to {target.alias} failed: {' / '.join(lines[-2:]) or 'no reason given'}")
