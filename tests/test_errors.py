"""One-line errors from tools' output: colour codes gone, the last words that say something kept."""

from __future__ import annotations

from mrunner.errors import cut_output, mask_credentials

PIP_NOT_FOUND = (
    "\x1b[33mWARNING: Retrying (Retry(total=4, connect=None, read=None, redirect=None, status=None))\x1b[0m\n"
    "\x1b[31mERROR: Could not find a version that satisfies the requirement nosuchpkg==9 (from versions: none)"
    "\x1b[0m\n\x1b[31mERROR: No matching distribution found for nosuchpkg==9\x1b[0m\n"
    "\n\x1b[1m[\x1b[0m\x1b[34;49mnotice\x1b[0m\x1b[1;39;49m]\x1b[0m A new release of pip is available: 23.0 -> 24.0\n"
)

PIP_BUILD_FAILED = """  error: subprocess-exited-with-error

  × python setup.py egg_info did not run successfully.
  │ exit code: 1
  ╰─> [6 lines of output]
      Traceback (most recent call last):
        File "<string>", line 2, in <module>
      ModuleNotFoundError: No module named 'numpy'
      [end of output]

  note: This error originates from a subprocess, and is likely not a problem with pip.
error: metadata-generation-failed

× Encountered error while generating package metadata.
╰─> See above for output.

note: This is an issue with the package mentioned above, not pip.
hint: See above for details.
"""


def test_pip_output_loses_its_colour_codes_and_notices_and_keeps_its_last_errors():
    line = cut_output(PIP_NOT_FOUND, lines=2)
    assert "\x1b" not in line and "notice" not in line
    assert line == (
        "ERROR: Could not find a version that satisfies the requirement nosuchpkg==9 (from versions: none) / "
        "ERROR: No matching distribution found for nosuchpkg==9"
    )


def test_a_build_failure_keeps_what_failed_not_hints_rules_or_traceback_frames():
    line = cut_output(PIP_BUILD_FAILED)
    assert "note:" not in line and "hint:" not in line and "See above" not in line and 'File "' not in line
    assert line == (
        "ModuleNotFoundError: No module named 'numpy' / error: metadata-generation-failed / "
        "× Encountered error while generating package metadata."
    )


def test_long_lines_are_cut_and_output_of_only_noise_still_says_something():
    line = cut_output("x" * 5000, width=100)
    assert len(line) == 100 and line.endswith("...")
    assert cut_output("hint: nothing else\n") == "hint: nothing else"
    assert cut_output("") == ""
    progress = "".join(f"\r\x1b[2K{i}% done" for i in range(100)) + "\nfailed: disk\n"
    assert cut_output(progress, lines=2) == "99% done / failed: disk"


def test_credentials_in_urls_are_masked_in_a_tools_output():
    """pip quotes an index URL or a `git+https://TOKEN@...` requirement in its errors: the token is not repeated."""
    said = (
        "Looking in indexes: https://user:s3cr3t@pypi.example/simple\n"
        "Cloning git+https://ghp_t0ken@github.com/org/repo.git to /tmp/x\n"
        "ERROR: Could not find a version that satisfies the requirement x (from -i http://__token__:pypi-AgE@h/s)\n"
    )
    line = cut_output(said)
    assert "s3cr3t" not in line and "ghp_t0ken" not in line and "pypi-AgE" not in line, line
    assert "https://****@pypi.example/simple" in line and "git+https://****@github.com/org/repo.git" in line, line


def test_credentials_in_a_urls_query_are_masked_and_its_other_parameters_kept():
    """An index URL's `?token=`, an API's `access_token`/`api_key`, an S3 or GCS presigned URL's signature,
    credential and session token, an Azure SAS's `sig`: each value masked, whatever the case of the name;
    what carries no credential (a page, a date, an algorithm) stays readable."""
    said = (
        "pip: https://pypi.example/simple/?token=T1 and https://h/api?page=2&access_token=T2;api_key=T3 "
        "https://b.s3.amazonaws.com/k?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=T4%2F2024&"
        "X-Amz-Date=20240101T000000Z&X-Amz-Security-Token=T5&X-Amz-Signature=T6 "
        "https://storage.googleapis.com/b/o?X-Goog-Credential=T7&X-Goog-Signature=T8 "
        "https://a.blob.core.windows.net/c/f?sv=2020-08-04&sig=T9%3D&se=2030 "
        "'http://mlflow:5000/?Password=T10' \"http://h/?client_secret=T11#frag\" http://h/?apikey=T12&secret=T13"
    )
    masked = mask_credentials(said)
    assert not any(f"T{n}" in masked for n in range(1, 14)), masked
    for kept in ("page=2", "X-Amz-Algorithm=AWS4-HMAC-SHA256", "X-Amz-Date=20240101T000000Z", "sv=2020-08-04"):
        assert kept in masked, masked
    assert "?token=****" in masked and "&X-Amz-Signature=****" in masked and "#frag" in masked, masked
    assert mask_credentials("https://u:pw@h/x?token=T&v=1") == "https://****@h/x?token=****&v=1"
    # cut to one line, a tool's output loses them too
    assert "T1" not in cut_output("ERROR: 403 for https://pypi.example/simple/?token=T1\n")
