"""Every spelling of one login node is one cluster (``mrunner_slurm.places``): an alias, ``user@alias`` with the
user its config gives, its HostName with an explicit default port, capitals and spaces; resolved as ssh
does for OpenSSH (``ssh -G``) and as paramiko's ``SSHConfig`` does, alike. No cluster is reached."""

from __future__ import annotations

import shutil
import textwrap
from pathlib import Path

import pytest
from mrunner_slurm import places

from mrunner.experiment import identity, target

SPELLINGS = [
    "cluster",
    "alice@cluster",
    "alice@cluster:2200",
    " cluster ",
    "alice@Login.Example.org:2200",
    "alice@login.example.org.:2200",
]
TRANSPORTS = ["paramiko", *(["openssh"] if shutil.which("ssh") else [])]


@pytest.fixture
def config(tmp_path: Path) -> str:
    path = tmp_path / "ssh_config"
    path.write_text(
        textwrap.dedent("""\
        Host cluster
            HostName login.example.org
            Port 2200
            User alice
        Host other
            HostName login.example.org
            User bob
        """)
    )
    return str(path)


def context(url: str, config: str, how: str) -> dict:
    return {"backend": "slurm", "slurm_url": url, "ssh_config": config, "ssh": how, "storage_dir": "/scratch/x"}


@pytest.mark.parametrize("how", TRANSPORTS)
def test_every_spelling_of_one_login_node_is_one_place(config, how):
    found = {places.place(context(url, config, how)) for url in SPELLINGS}
    assert found == {"alice@login.example.org:2200"}
    # another user, another port: another place
    assert places.place(context("other", config, how)) == "bob@login.example.org:22"
    assert places.place(context("alice@cluster:22", config, how)) == "alice@login.example.org:22"


def test_both_transports_resolve_alike(config):
    if len(TRANSPORTS) < 2:
        pytest.skip("no OpenSSH client here")
    for url in [*SPELLINGS, "other", "bob@other:2222", "[::1]:2200", "elsewhere"]:
        assert places.place(context(url, config, "openssh")) == places.place(context(url, config, "paramiko")), url


@pytest.mark.parametrize("how", TRANSPORTS)
def test_an_experiment_is_the_same_on_every_spelling_and_keeps_its_former_identity(config, how):
    """The identity takes the canonical target; the one an earlier mrunner gave (the spelled target) is kept
    as ``former_id`` for "already submitted" (``mrunner.planning._targets``)."""
    from mrunner.planning import _targets

    ids, formers = set(), set()
    for url in SPELLINGS:
        made, former = _targets(context(url, config, how))
        ids.add(identity(["python", "x.py"], {"a": 1}, {}, "digest", made))
        assert former == target(context(url, config, how))  # an earlier mrunner's: as the context spells it
        formers.add(identity(["python", "x.py"], {"a": 1}, {}, "digest", former))
    assert len(ids) == 1 and len(formers) == len(SPELLINGS)
