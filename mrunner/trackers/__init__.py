"""Built-in experiment trackers: plugins that answer the tracker hooks of ``mrunner.hookspecs`` for every
backend (context keys, credential checks, secrets, experiment environment, where to look after submitting).
"""

from __future__ import annotations


def unanswered(url: str, timeout: float, *, errors_answer: bool = True) -> str | None:
    """Why the server does not answer a GET of ``url`` within ``timeout`` seconds, or ``None`` when it answers:
    a tracker's check at submission, before anything is recorded. With ``errors_answer`` an HTTP error is an
    answer too (the server is there, whatever it thinks of a request without credentials); without it only a
    success is (a health check's URL)."""
    import urllib.error  # with http.client and ssl: only where a server is checked
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=timeout):
            return None
    except (urllib.error.URLError, OSError, ValueError) as error:
        if errors_answer and isinstance(error, urllib.error.HTTPError):
            return None  # it answered
        return str(getattr(error, "reason", error))
