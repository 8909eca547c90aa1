"""`mrunner context ...` and `mrunner config ...` as a user types them."""

from __future__ import annotations

import json
import os
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from mrunner.testing import write_context


def context_file(home: Path, name: str) -> Path:
    return home / "config" / "mrunner" / "context" / f"{name}.yaml"


def test_add_show_use_copy_delete(mrunner, mrunner_home):
    listing = mrunner("context")
    assert listing.returncode == 0 and "* " in listing.stdout and "local" in listing.stdout  # local is the default
    added = mrunner(
        "context",
        "add",
        "--name",
        "box",
        "--type",
        "local",
        "--storage",
        "/data/runs",
        "--resources",
        "max_parallel=3",
        "gpus=[0,1]",
    )
    assert added.returncode == 0, added.stderr
    assert "active context: box (the first one added)" in added.stdout
    assert yaml.safe_load(context_file(mrunner_home, "box").read_text()) == {
        "backend": "local",
        "storage_dir": "/data/runs",
        "max_parallel": 3,
        "gpus": [0, 1],
    }
    assert "* " in [line for line in mrunner("context", "list").stdout.splitlines() if " box " in line][0]
    shown = mrunner("context", "show", "box", "--keys")
    assert "max_parallel: 3" in shown.stdout and "#   gpus_per_experiment: int" in shown.stdout
    assert mrunner("context", "copy", "box", "box2").returncode == 0
    assert mrunner("context", "use", "box2").returncode == 0
    assert "current_context: box2" in mrunner("config").stdout
    deleted = mrunner("context", "delete", "box2")
    assert deleted.returncode == 0 and "the active one" in deleted.stdout, deleted.stdout
    assert mrunner("context", "use", "box").returncode == 0
    refused = mrunner("context", "delete", "local")
    assert refused.returncode != 0 and "shipped with mrunner" in refused.stderr


def test_add_validates_against_the_backend_schema(mrunner, mrunner_home):
    result = mrunner("context", "add", "--name", "bad", "--backend", "local", "cpus=4")
    assert result.returncode != 0
    assert "unknown key 'cpus'" in result.stderr and "valid keys:" in result.stderr
    assert not context_file(mrunner_home, "bad").exists()


def test_edit_opens_the_editor_on_your_own_copy_and_validates(mrunner, mrunner_home, tmp_path):
    editor = tmp_path / "editor.py"
    editor.write_text(
        textwrap.dedent("""
        import sys
        with open(sys.argv[1], "a") as f:
            f.write("max_parallel: 7\\n")
    """)
    )
    result = mrunner("context", "edit", "local", env={"EDITOR": f"{sys.executable} {editor}"})
    assert result.returncode == 0, result.stderr
    assert yaml.safe_load(context_file(mrunner_home, "local").read_text()) == {"backend": "local", "max_parallel": 7}
    assert "at most 7 at a time" in "".join(mrunner("run", "x.py", "--dry-run", cwd=_script(tmp_path)).stdout)


def _script(folder: Path) -> Path:
    (folder / "x.py").write_text("print(1)\n")
    return folder


@pytest.mark.parametrize("missing", ["no-such-config.yaml", "no-such-folder/config.yaml"])
def test_import_of_a_file_that_does_not_exist_says_so(mrunner, tmp_path, missing):
    """Not "has no `contexts:` mapping", which sends the user looking inside a file that is not there."""
    result = mrunner("context", "import", str(tmp_path / missing))
    assert result.returncode == 2, result
    assert (
        result.stderr
        == f"mrunner: error: {tmp_path / missing} does not exist: name the original mrunner's config.yaml\n"
    )


def test_import_the_original_config(mrunner, mrunner_home, tmp_path):
    original = tmp_path / "config.yaml"
    original.write_text(
        textwrap.dedent("""
        contexts:
          plgrid:
            context_name: plgrid
            backend_type: slurm
            slurm_url: user@pro.cyfronet.pl
            storage_dir: /net/scratch
            partition: plgrid
          workstation:
            type: local
            resources: "max_parallel=2"
        current_context: workstation
    """)
    )
    result = mrunner("context", "import", str(original))
    assert result.returncode == 0, result.stderr
    assert "imported workstation" in result.stdout
    assert yaml.safe_load(context_file(mrunner_home, "workstation").read_text()) == {
        "backend": "local",
        "max_parallel": 2,
    }
    assert yaml.safe_load(context_file(mrunner_home, "plgrid").read_text())["backend"] == "slurm"
    assert "current_context: workstation" in mrunner("config", "show").stdout


def test_user_context_shadows_the_shipped_one(mrunner, mrunner_home, tmp_path):
    context_file(mrunner_home, "local").parent.mkdir(parents=True)
    context_file(mrunner_home, "local").write_text("backend: local\nmax_parallel: 5\n")
    assert "at most 5 at a time" in mrunner("x.py", "--dry-run", cwd=_script(tmp_path)).stdout


def test_context_keys_for_one_run(mrunner, tmp_path):
    result = mrunner("x.py", "context.max_parallel=4", "--dry-run", cwd=_script(tmp_path))
    assert "at most 4 at a time" in result.stdout
    result = mrunner(
        "--context", "local", "x.py", "-m", "a=1,2,3", "context.max_parallel=9", "--dry-run", cwd=_script(tmp_path)
    )
    assert "3 experiments" in result.stdout and "at most 9 at a time" in result.stdout


def test_contexts_compose_as_hydra_configs_with_defaults_and_overrides(mrunner_home, monkeypatch):
    from mrunner import config
    from mrunner.errors import MrunnerError

    folder = mrunner_home / "config" / "mrunner" / "context"
    folder.mkdir(parents=True)
    (folder / "base.yaml").write_text("backend: slurm\nslurm_url: login\ntime: 5\nenv:\n  A: '1'\n")
    (folder / "child.yaml").write_text("defaults:\n  - base\n  - _self_\ntime: 7\nuser_home: ${oc.env:HOME}\n")
    monkeypatch.setenv("HOME", "/home/someone")
    assert config.compose("child", []) == (
        "child",
        {"backend": "slurm", "slurm_url": "login", "time": 7, "env": {"A": "1"}, "user_home": "/home/someone"},
    )
    assert config.compose("base", ["context.time=9", "~context.env", "+context.extra=x"])[1] == {
        "backend": "slurm",
        "slurm_url": "login",
        "time": 9,
        "extra": "x",
    }
    assert config.compose("base", ["context.env.B=2"])[1]["env"] == {"A": "1", "B": 2}
    with pytest.raises(MrunnerError, match="Ambiguous value for argument"):
        config.compose("base", ["context.time=1,2"])


def test_a_dangling_link_among_your_contexts_is_named_as_yours_and_can_be_deleted(mrunner, mrunner_home, tmp_path):
    """A context file that is a link to nothing (a dotfiles checkout moved away) is a broken context of yours:
    the list warns and shows the others, using it names the link, and `context delete` removes it (it was
    listed as an example shipped with mrunner, `use` took it, and `delete` refused it as shipped)."""
    folder = mrunner_home / "config" / "mrunner" / "context"
    folder.mkdir(parents=True)
    os.symlink(tmp_path / "moved-away.yaml", folder / "gone.yaml")
    listed = mrunner("context")
    assert listed.returncode == 0 and "local" in listed.stdout
    (row,) = [line for line in listed.stdout.splitlines() if " gone " in line]
    assert "(broken)" in row and "yours" in row
    assert "moved-away.yaml, which does not exist" in listed.stderr
    (tmp_path / "x.py").write_text("")
    for args in (("context", "use", "gone"), ("context", "show", "gone"), ("--context", "gone", "x.py")):
        refused = mrunner(*args, cwd=tmp_path)
        assert refused.returncode == 2 and refused.stderr.count("\n") == 1, refused.stderr
        assert "is a link to" in refused.stderr and "fix the link or delete it" in refused.stderr
    deleted = mrunner("context", "delete", "gone")
    assert deleted.returncode == 0, deleted.stderr
    assert not os.path.lexists(folder / "gone.yaml")


@pytest.mark.parametrize(
    "given",
    [
        ["--cpu", "4", "cpu=8"],
        ["--resources", "cpu=4", "--cpu", "8"],
        ["--storage", "/a", "--storage_dir", "/b"],
        ["--storage", "/a", "--resources", "storage_dir=/b"],
    ],
)
def test_a_key_given_twice_with_two_values_is_refused(mrunner, mrunner_home, given):
    """Each form of `context add` names a key (`--KEY VALUE`, `KEY=VALUE`, `--resources`, `--storage`); the same
    key twice with two values kept one of them without a word."""
    added = mrunner("context", "add", "--name", "c", "--type", "slurm", "--slurm_url", "u@h", *given)
    assert added.returncode == 2 and added.stderr.count("\n") == 1, added.stderr
    assert "is given twice" in added.stderr and "keep one" in added.stderr
    assert not context_file(mrunner_home, "c").exists()
    same = mrunner("context", "add", "--name", "c", "--type", "slurm", "--slurm_url", "u@h", "--cpu", "4", "cpu=4")
    assert same.returncode == 0, same.stderr


_READ_WITHOUT_HYDRA = {
    "backend: local\nmax_parallel: 3\n": [[], ["context.max_parallel=2"], ["context.storage_dir=x", "context.n=1.5"]],
    "backend: slurm\nslurm_url: login\ntime: 5\nenv:\n  A: '1'\ngpus: [0, 1]\nnote: null\nflag: yes\nr: 0.5\n": [
        ["context.time=9", "context.partition=debug"]
    ],
    "base: &b {x: 1}\nbackend: local\ncopy: *b\nmerged:\n  <<: *b\n  y: 2\nbig: 0x10\nsexa: 1:30\n": [[]],
}
_LEFT_TO_HYDRA = [
    ("backend: local\nlr: 1e-3\n", []),  # OmegaConf's YAML reads a float where PyYAML reads a string
    ("backend: local\nwhen: 2024-01-01\n", []),  # a date for PyYAML, a string for OmegaConf
    ("backend: local\nhome: ${oc.env:HOME}\n", []),
    ("backend: local\nkey: ???\n", []),
    ("# @package _global_\nbackend: local\n", []),
    ("defaults:\n  - local\n  - _self_\nmax_parallel: 2\n", []),
    ("backend: local\nbackend: slurm\n", []),  # a duplicate key: OmegaConf refuses it
    ("backend: local\n1: one\n", []),
    ("backend: local\nenv: {A: b}\n", ["context.env=3"]),
    ("backend: local\n", ["+context.x=1"]),
    ("backend: local\n", ["context.a=1", "context.a=2"]),
    ("backend: local\n", ["context.a.b=1"]),
    ("backend: local\n", ["context.a=1,2"]),
    ("backend: local\n", ["context.a=true"]),
    ("", []),
    ("{}", []),
]


def test_a_context_read_without_hydra_is_the_context_hydra_composes(mrunner_home):
    """``config.plain`` (no Hydra) gives exactly Hydra's composition, or leaves the context to Hydra."""
    from mrunner import config

    folder = mrunner_home / "config" / "mrunner" / "context"
    folder.mkdir(parents=True)
    for number, (text, cases) in enumerate(_READ_WITHOUT_HYDRA.items()):
        (folder / f"c{number}.yaml").write_text(text)
        for overrides in cases:
            plain = config.plain(folder / f"c{number}.yaml", overrides)
            assert plain is not None, (text, overrides)
            assert plain == config.composed(f"c{number}", folder / f"c{number}.yaml", overrides), (text, overrides)
            assert repr(plain) == repr(config.composed(f"c{number}", folder / f"c{number}.yaml", overrides))
    for number, (text, overrides) in enumerate(_LEFT_TO_HYDRA):
        (folder / f"h{number}.yaml").write_text(text)
        assert config.plain(folder / f"h{number}.yaml", overrides) is None, (text, overrides)
    (folder.parent / "mrunner.yaml").write_text("defaults:\n  - _self_\n  - context: null\n")
    assert config.plain(folder / "c0.yaml", []) is None  # the user's own primary config is Hydra's to read


def test_a_plain_dry_run_imports_no_hydra(tmp_path, mrunner_home):
    """Hydra's import is most of a dry run's start; a plain command line and context need none of it (a new
    interpreter, as a user's command is: the test kit's warm launcher has Hydra loaded)."""
    (tmp_path / "exp.py").write_text("from mrunner import get_configuration\nget_configuration()\n")
    probe = (
        "import sys\nfrom mrunner.cli import main\ntry:\n    main(sys.argv[1:])\nexcept SystemExit as end:\n"
        "    assert not end.code, end.code\nassert 'hydra' not in sys.modules and 'omegaconf' not in sys.modules\n"
    )
    args = ["exp.py", "-m", "i=range(3)", "lr=0.1,0.01", "context.max_parallel=2", "--dry-run"]
    import subprocess

    result = subprocess.run([sys.executable, "-c", probe, *args], cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "6 experiments" in result.stdout


def test_only_the_first_context_added_becomes_active(mrunner, mrunner_home):
    """A user who unset current_context (to run on this machine by default) and adds another context keeps
    that choice: only the very first context added becomes active, as the command says."""
    assert "active context: one" in mrunner("context", "add", "--name", "one", "--type", "local").stdout
    assert mrunner("config", "unset", "current_context").returncode == 0
    added = mrunner("context", "add", "--name", "two", "--type", "local")
    assert added.returncode == 0 and "active context" not in added.stdout, added.stdout
    listing = mrunner("context", "list").stdout.splitlines()
    assert [line.split()[1] for line in listing if line.startswith("*")] == ["local"], listing


def test_a_deleted_active_context_is_refused_by_name_not_replaced_by_local(mrunner, mrunner_home, tmp_path):
    """The active context deleted (`context delete`, or its file removed by hand): every command that would
    use it refuses in one line naming it and `mrunner context use`, nothing recorded; a researcher who thought
    they submit to a cluster does not run on this machine unawares. The list still shows the others, warning
    why none is marked; a context named on the command line still works."""
    (tmp_path / "train.py").write_text("print('ran')\n")
    for recorded, removed_by in enumerate(("delete", "hand")):
        write_context(mrunner_home, "cluster", {"backend": "local", "max_parallel": 1})
        assert mrunner("context", "use", "cluster").returncode == 0
        if removed_by == "delete":
            deleted = mrunner("context", "delete", "cluster")
            assert deleted.returncode == 0 and "`mrunner context use NAME`" in deleted.stdout, deleted.stdout
        else:
            context_file(mrunner_home, "cluster").unlink()
        for args in (("train.py",), ("train.py", "--dry-run"), ("run", "train.py", "--detach"), ("context", "show")):
            refused = mrunner(*args)
            lines = refused.stderr.strip().splitlines()
            assert refused.returncode == 2 and len(lines) == 1 and "Traceback" not in refused.stderr, (args, lines)
            assert "the active context 'cluster' no longer exists" in lines[0], (args, lines)
            assert "`mrunner context use NAME`" in lines[0] and "ran" not in refused.stdout, (args, lines)
        assert len(json.loads(mrunner("status", "--json").stdout)) == recorded  # nothing recorded
        listing = mrunner("context", "list")
        assert listing.returncode == 0 and " local " in listing.stdout and "* " not in listing.stdout
        assert "warning: the active context 'cluster' no longer exists" in listing.stderr
        assert mrunner("train.py", f"n={recorded}", "--context", "local", "--wait").returncode == 0
        assert len(json.loads(mrunner("status", "--json").stdout)) == recorded + 1
