"""A URL's credentials (its user and password, a token or signature in its query) never reach a line mrunner
prints: an error, a warning, a status table, `status --json`, a context shown (``errors.mask_credentials``)."""

from __future__ import annotations

import json

from mrunner.testing import write_context

SECRETS = ("pw", "SECRET", "SIG1", "SECRET2")


def unmasked(text: str) -> list[str]:
    return [secret for secret in SECRETS if f":{secret}@" in text or f"={secret}" in text]


def test_an_error_line_masks_a_tracker_uris_credentials(mrunner, mrunner_home, tmp_path):
    """A typo in the scheme of an MLflow URI that carries a token is refused in one line naming the URI,
    with its user, password and token masked."""
    (tmp_path / "train.py").write_text("import mrunner\n")
    uri = "htp://user:pw@127.0.0.1:5000/?token=SECRET&page=1"
    context = write_context(mrunner_home, "typo", {"backend": "local", "mlflow": True, "mlflow_tracking_uri": uri})
    refused = mrunner(f"+context={context}", "train.py", "lr=1")
    assert refused.returncode == 2 and len(refused.stderr.strip().splitlines()) == 1, refused.stderr
    assert "htp://****@127.0.0.1:5000/?token=****&page=1" in refused.stderr and not unmasked(refused.stderr)
    shown = mrunner("context", "show", "typo")
    assert shown.returncode == 0 and "?token=****" in shown.stdout and not unmasked(shown.stdout), shown.stdout


def test_status_tables_and_json_mask_a_presigned_url_among_parameters_and_tags(mrunner, mrunner_home, tmp_path):
    """A parameter that is a presigned URL (its signature a credential for an hour) and a tag holding an index
    URL with a password are recorded as given (the experiment receives them) but shown masked by every
    `status`, table or JSON, of the sweeps, of one sweep or of one experiment, and by a dry run."""
    (tmp_path / "train.py").write_text("from mrunner import get_configuration\nprint(get_configuration())\n")
    done = mrunner(
        "train.py",
        "data='https://b.s3.amazonaws.com/k?X-Amz-Date=1&X-Amz-Signature=SIG1'",
        "--tag",
        "https://u:pw@h/?token=SECRET2",
        "--wait",
    )
    assert done.returncode == 0, done.stderr
    listing = mrunner("status", "--json")
    sweep = json.loads(listing.stdout)[0]["sweep"]["id"]
    for args in (
        ("status",),
        ("status", "--json"),
        ("status", sweep),
        ("status", sweep, "--json"),
        ("status", f"{sweep}/0"),
        ("status", f"{sweep}/0", "--json"),
        ("train.py", "data='https://h/d?sig=SIG1'", "--dry-run"),
    ):
        shown = mrunner(*args)
        assert shown.returncode == 0, shown.stderr
        assert not unmasked(shown.stdout + shown.stderr), (args, shown.stdout)
    assert "data=https://h/d?sig=****" in mrunner("train.py", "data='https://h/d?sig=SIG1'", "--dry-run").stdout
    one = mrunner("status", sweep, "--json").stdout
    assert "X-Amz-Date=1&X-Amz-Signature=****" in one and "https://****@h/?token=****" in one, one
    assert "X-Amz-Signature=SIG1" in mrunner("logs", f"{sweep}/0").stdout  # the experiment got it whole
