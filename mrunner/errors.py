"""Errors a user can fix. The CLI prints them as one line and exits non-zero, without a traceback."""

import errno
import re


class MrunnerError(Exception):
    """Something the user can fix: bad input, a missing plugin, a refusal from a cluster.

    The message must name the thing to fix. ``exit_code`` is what the CLI exits with.
    """

    exit_code = 2


class BackendError(MrunnerError):
    """The compute side refused or failed (Slurm's, Kubernetes' or SSH's own message is in the text)."""

    exit_code = 3


class Refused(BackendError):
    """The backend refused the whole submission before handing anything over (a site's job limits): a new
    sweep is forgotten, as if it had never been submitted."""


class RefusedAsPlanned(Refused):
    """``Backend.ready``'s refusal of the experiments a plan holds for their number alone (beyond a site's job
    allowance): the records may take fewer (a repeated submission skips those already submitted on the
    context, a grid's repeats run once), so the core counts the runs it would record, without recording, and
    asks ``ready`` again of those."""


class NeedsUser(BackendError):
    """The backend cannot go on until its user does what only they can: log in where the cluster asks a
    one-time code and this command has no terminal to ask in, or check a host key that changed. Asking again,
    as `--wait` does while a backend cannot be reached, cannot mend that, so it is said at once."""


class NotFound(MrunnerError):
    """The records hold no sweep or experiment of that name."""


class NotRecorded(MrunnerError):
    """The records cannot be written (a full disk, a read-only folder); reading them still works."""


class NoLog(MrunnerError):
    """A backend's ``logs`` found no log of an attempt that has ended (it never started, or its log could not be
    written): `mrunner logs` adds why, as the records say, instead of printing nothing."""


class Interrupted(MrunnerError):
    """The user pressed Ctrl-C (or mrunner got SIGTERM, SIGHUP); what was done is recorded. The command line
    exits with 128 + the signal (``interrupts.exit_code``); ``exit_code`` is Ctrl-C's, for a caller without it."""

    exit_code = 130


def os_error(error: OSError, doing: str, path: object = None, advice: str = "") -> MrunnerError:
    """One line for a failure of the file system: what mrunner was doing, on which path, the system's
    reason and what to do (``advice``, else a remedy for the kind of failure)."""
    where = path if path is not None else (error.filename or "?")
    reason = error.strerror or str(error)
    remedy = advice or _REMEDIES.get(error.errno or 0, "")
    return MrunnerError(f"cannot {doing} {where}: {reason}" + (f"; {remedy}" if remedy else ""))


_SPACE = "free some space on that file system, or point XDG_DATA_HOME at another one"
_OWNER = "check its permissions and owner"
_REMEDIES = {
    errno.ENOSPC: _SPACE,
    errno.EDQUOT: _SPACE,
    errno.EFBIG: "the file is larger than this process may write (see `ulimit -f`)",
    errno.EACCES: _OWNER,
    errno.EPERM: _OWNER,
    errno.EROFS: "that file system is read-only: point XDG_DATA_HOME (records) or XDG_CONFIG_HOME (contexts) "
    "at a writable folder",
    errno.ELOOP: "it is a loop of symbolic links: remove the link",
    errno.ENAMETOOLONG: "shorten the name",
    errno.EIO: "the device reported an error",
}


# CSI sequences (colours, cursor moves) and the few other escapes tools print to a terminal
_ANSI = re.compile(r"\x1b(\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(\x07|\x1b\\)|[@-Z\\-_])")
# lines that say nothing of the failure: blank, rules, pip's hint and notice lines, a traceback's frames
_NOISE = re.compile(
    r"^\s*$|^[\s=\-*#│╰╭─]+$|^[\s│╰╭─>]*(See above|\[\d+ lines? of output\]|\[end of output\])"
    r"|^\s*((hint|note):|\[notice\])|^\s*Traceback \(most recent call last\)|^\s+File \"",
    re.I,
)


_URL_CREDENTIALS = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/@\s'\"]+@")
# a query parameter that carries a credential: a token, key, secret, password or signature by any spelling
# (`access_token`, `api_key`, `apikey`, `client_secret`, `sig` of an Azure SAS, `X-Amz-Signature`,
# `X-Amz-Credential` and `X-Amz-Security-Token` of an S3 presigned URL, `X-Goog-Signature`, `auth`)
_QUERY_CREDENTIALS = re.compile(
    r"(?i)([?&;][\w.\-]*?(?:token|key|secret|password|passwd|pwd|pass|sig|signature|credential|auth|"
    r"authorization|session)=)[^&#;\s'\"<>]+"
)


def mask_credentials(text: str) -> str:
    """``text`` with the credentials of every URL masked: its user and password (``https://****@host``) and
    the values of its query parameters that carry one (``?token=****``, ``&X-Amz-Signature=****``). A tool's
    output, an index URL of a requirements file, a tracker's URI or a presigned URL may carry a token, and
    every line mrunner prints passes through here."""
    return _QUERY_CREDENTIALS.sub(r"\1****", _URL_CREDENTIALS.sub(r"\1****@", text))


def cut_output(text: str, lines: int = 3, width: int = 200) -> str:
    """What matters of a subprocess's output for a one-line error: without colour codes, the last ``lines``
    lines that say something (not blank, not rules, hints or traceback frames), each cut to ``width``
    characters, joined with `` / ``. Tools (pip, docker) print pages of progress and colour; the cause is
    in their last words."""
    plain = mask_credentials(_ANSI.sub("", text)).replace("\r\n", "\n")
    kept = [line.strip() for line in plain.replace("\r", "\n").splitlines() if not _NOISE.match(line)]
    if not kept:
        kept = [line.strip() for line in plain.splitlines() if line.strip()]
    cut = [line if len(line) <= width else line[: width - 3] + "..." for line in kept[-lines:]]
    return " / ".join(cut)
