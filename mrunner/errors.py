"""Errors a user can fix. The CLI prints them as one line and exits non-zero, without a traceback."""


class MrunnerError(Exception):
    """Something the user can fix: bad input, a missing plugin, a refusal from a cluster.

    The message must name the thing to fix. ``exit_code`` is what the CLI exits with.
    """

    exit_code = 2


class BackendError(MrunnerError):
    """The compute side refused or failed (Slurm's, Kubernetes' or SSH's own message is in the text)."""

    exit_code = 3


class NotFound(MrunnerError):
    """The records hold no sweep or experiment of that name."""


class Interrupted(MrunnerError):
    """The user pressed Ctrl-C; what was done is recorded."""

    exit_code = 130
