"""`mrunner --help` offers the original mrunner's shorthand options (``--cpu``, ``--time``, ...) saying which
backends honour each, read from the backends' own context keys, and says plainly which ones the backend of the
chosen context (``+context=NAME``, ``--context NAME``, else the current one) refuses."""

from __future__ import annotations

import pytest

from mrunner import planning, plugins
from mrunner.commands import GROUP_OPTIONS


def _help(mrunner, *args: str) -> dict[str, str]:
    """Each shorthand option's help (its wrapped lines joined), and the group's title under ``title``."""
    shown = mrunner(*args, "--help")
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("context keys for this run"))
    found = {"title": lines[start]}
    option = None
    for line in lines[start + 1 :]:
        words = line.split()
        if words and words[0].startswith("--"):
            option = words[0][2:]
            found[option] = " ".join(words[2:])
        elif option and words:
            found[option] += " " + " ".join(words)
    return found


def _honouring() -> dict[str, list[str]]:
    """The truth, from each installed backend's typed context keys."""
    keys = {backend: planning.context_keys(backend) for backend in plugins.backends()}
    return {option: [b for b in plugins.backends() if option in keys[b]] for option in GROUP_OPTIONS}


def test_each_shorthand_option_names_the_backends_whose_keys_have_it(mrunner, mrunner_home):
    shown = _help(mrunner)
    for option, backends in _honouring().items():
        assert f"(honoured by {', '.join(backends) or 'no installed backend'}" in shown[option], shown[option]
    assert "local" not in _honouring()["time"]  # the case the help misled on: `--time` is Slurm's only


@pytest.mark.parametrize(
    "args, context",
    [
        (["+context=gke.sandbox", "exp.py"], "gke.sandbox"),
        (["--context", "gke.sandbox"], "gke.sandbox"),
        (["--context=slurm.example"], "slurm.example"),
        (["context=local"], "local"),
        ([], "local"),  # the current context
    ],
)
def test_the_chosen_contexts_backend_says_plainly_which_options_it_refuses(mrunner, mrunner_home, args, context):
    backend = {"gke.sandbox": "kubernetes", "slurm.example": "slurm", "local": "local"}[context]
    shown = _help(mrunner, *args)
    honoured = _honouring()
    own = [option for option in GROUP_OPTIONS if backend in honoured[option]]
    assert f"the {backend} backend of context {context} honours" in shown["title"], shown["title"]
    for option in GROUP_OPTIONS:
        refused = f"NOT by {backend}, this context's backend: refused" in shown[option]
        assert refused == (option not in own), (option, shown[option])
    if backend == "local":
        assert "honours none of them" in shown["title"]
    refused_options = [option for option in GROUP_OPTIONS if option not in own]
    if refused_options:  # and using one is refused in one line, naming the options that backend has
        (mrunner.cwd / "exp.py").write_text("print('ran')\n")
        option = refused_options[0]
        refused = mrunner(*[a for a in args if a != "exp.py"], "exp.py", f"--{option}", "5", "--dry-run")
        assert refused.returncode == 2 and len(refused.stderr.strip().splitlines()) == 1, refused.stderr
        offer = f"its options are {', '.join('--' + o for o in own)}" if own else "it takes none of these options"
        said = f"--{option}: the {backend} backend of context {context} has no {option} key; {offer}"
        assert said in refused.stderr, refused.stderr


def test_the_backends_key_names_are_read_again_exactly_when_the_plugins_code_or_installs_change(
    mrunner_home, tmp_path, monkeypatch
):
    from mrunner.commands import keycache

    site = tmp_path / "site"
    (site / "fake_backend").mkdir(parents=True)
    (site / "fake_backend" / "__init__.py").write_text("KEYS = 1\n")
    (site / "fake_backend-1.0.dist-info").mkdir()
    (site / "fake_backend-1.0.dist-info" / "entry_points.txt").write_text("[mrunner]\nfake = fake_backend\n")
    monkeypatch.syspath_prepend(str(site))
    reads: list[int] = []

    def read() -> dict[str, list[str] | None]:
        reads.append(1)
        return {"fake": ["cpu"]}

    assert keycache.key_names(read) == {"fake": ["cpu"]} and len(reads) == 1
    (site / "unrelated.txt").write_text("a file beside the installs changes the folder, not the plugins")
    assert keycache.key_names(read) == {"fake": ["cpu"]} and len(reads) == 1  # remembered
    (site / "fake_backend" / "__init__.py").write_text("KEYS = 22\n")  # the plugin's code changed
    keycache.key_names(read)
    assert len(reads) == 2
    (site / "other-2.0.dist-info").mkdir()  # a distribution installed beside it
    keycache.key_names(read)
    assert len(reads) == 3
    monkeypatch.setenv("MRUNNER_PLUGINS", "fake")
    keycache.key_names(read)
    assert len(reads) == 4
    keycache.key_names(read)
    assert len(reads) == 4


def test_a_backend_whose_keys_cannot_be_read_is_not_remembered(mrunner_home):
    from mrunner.commands import keycache

    reads: list[int] = []

    def read() -> dict[str, list[str] | None]:
        reads.append(1)
        return {"local": ["backend"], "broken": None}

    assert keycache.key_names(read) == {"local": ["backend"], "broken": None}
    keycache.key_names(read)
    assert len(reads) == 2  # read again: the failure may have been the moment's
