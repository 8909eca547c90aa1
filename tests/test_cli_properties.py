"""Generated input never makes mrunner crash: override strings, context files and spec files, fed to the
command line, end in exit 0 or in exactly one error line, never in a traceback.

The command line runs in this process (``mrunner.cli.main``), so hundreds of inputs take seconds; an
exception that escapes ``main`` is exactly what a user would see as a traceback. Dry runs exercise
parsing, composing the context, reading the spec, checking and expanding the grid; a few generated
overrides are also submitted for real on the local backend.
"""

from __future__ import annotations

import string
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mrunner import cli
from mrunner.testing import MrunnerCommand

SCRIPT = "from mrunner import get_configuration\nprint(get_configuration())\n"
#: Examples per property: 50 in the fast tier and 100 more in the whole run (``slow``), 150 in all.
EXAMPLES = [pytest.param(50, id="50 examples"), pytest.param(100, id="100 examples", marks=pytest.mark.slow)]


def examples(count: int) -> settings:
    """Hypothesis's settings for ``count`` examples of a property checked in a test's own process."""
    return settings(
        max_examples=count,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )


# Pieces of Hydra's override grammar and of what people type, so most examples get past the first character.
KEYS = st.sampled_from(["lr", "model.depth", "a.b.c", "+extra", "++forced", "~lr", "seed", "db", "name", "x_1"])
VALUES = st.one_of(
    st.sampled_from(
        [
            "0.1",
            "1,2",
            "range(3)",
            "range(5,1)",
            "choice(a,b)",
            "glob(*)",
            "interval(0,1)",
            "null",
            "[1,2]",
            "{a:1}",
            "'a b'",
            '"q"',
            "${oc.env:HOME}",
            "shuffle(range(3))",
            "1e-3",
            "true",
            "",
        ]
    ),
    st.text(alphabet=string.printable + "ąé€\u200b", max_size=12),
)
OVERRIDES = st.one_of(st.builds(lambda k, v: f"{k}={v}", KEYS, VALUES), st.text(max_size=15))
CONTEXT_KEYS = [
    "backend",
    "max_parallel",
    "gpus",
    "gpus_per_experiment",
    "storage_dir",
    "python",
    "env",
    "secrets",
    "tags",
    "max_experiments",
    "max_snapshot_mb",
    "grace_period",
    "project",
    "nonsense",
]
PLAIN = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-3, 10**6), st.floats(allow_nan=True), st.text(max_size=8)),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=5), inner, max_size=3)),
    max_leaves=6,
)
CONTEXTS = st.one_of(
    st.dictionaries(st.sampled_from(CONTEXT_KEYS), PLAIN, max_size=5).map(
        lambda d: yaml.safe_dump({"backend": "local", **d} if "backend" not in d else d)
    ),
    PLAIN.map(yaml.safe_dump),
    st.text(max_size=40),
)
SCRIPTS = st.one_of(
    st.sampled_from(
        ["train.py", "python3 train.py", "missing.py", "./run.sh", "bash run.sh", "it's.py", "", " ", "-m"]
    ),
    st.text(max_size=12),
    PLAIN,
)
GRIDS = st.one_of(
    st.dictionaries(st.sampled_from(["a", "b___", "c___", "d.e"]), st.lists(PLAIN, max_size=3) | PLAIN, max_size=3),
    st.lists(st.dictionaries(st.sampled_from(["a", "b"]), st.lists(PLAIN, max_size=2), max_size=2), max_size=2),
    PLAIN,
)


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "pyproject.toml").write_text("")
    (tmp_path / "train.py").write_text(SCRIPT)
    (tmp_path / "run.sh").write_text("#!/bin/sh\necho hi\n")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def outcome(capsys: pytest.CaptureFixture, *args: str) -> tuple[int, str]:
    """Run the command line in this process: (exit code, stderr). An escaping exception fails the test."""
    try:
        code = cli.main(list(args))
    except SystemExit as leaving:  # --help and --version print and leave
        code = leaving.code if isinstance(leaving.code, int) else 1
    return code, capsys.readouterr().err


def assert_clean(code: int, err: str, args: tuple[str, ...]) -> None:
    assert "Traceback" not in err, (args, err)
    if code != 0:
        errors = [line for line in err.splitlines() if line.startswith("mrunner: error: ")]
        assert len(errors) == 1 and err.strip().splitlines()[-1] == errors[0], (args, err)


@pytest.mark.parametrize("count", EXAMPLES)
def test_generated_overrides(project, capsys, count):
    @examples(count)
    @given(overrides=st.lists(OVERRIDES, max_size=3), multirun=st.booleans())
    def check(overrides, multirun):
        args = ("train.py", *(["-m"] if multirun else []), *overrides, "--dry-run")
        assert_clean(*outcome(capsys, *args), args)

    check()


@pytest.mark.parametrize("count", EXAMPLES)
def test_generated_context_files(project, mrunner_home, capsys, count):
    folder = mrunner_home / "config" / "mrunner" / "context"
    folder.mkdir(parents=True, exist_ok=True)

    @examples(count)
    @given(
        text=CONTEXTS,
        overrides=st.lists(
            st.builds(lambda k, v: f"context.{k}={v}", st.sampled_from(CONTEXT_KEYS), VALUES), max_size=2
        ),
    )
    def check(text, overrides):
        (folder / "generated.yaml").write_text(text)
        for args in (
            ("train.py", "+context=generated", *overrides, "--dry-run"),
            ("context", "show", "generated"),
            ("context",),
            ("context", "show", "generated", "--keys"),
        ):
            assert_clean(*outcome(capsys, *args), args)

    check()


@pytest.mark.parametrize("count", EXAMPLES)
def test_generated_spec_files(project, capsys, count):
    @examples(count)
    @given(script=SCRIPTS, grid=GRIDS, base=PLAIN, helper=st.booleans(), overrides=st.lists(OVERRIDES, max_size=2))
    def check(script, grid, base, helper, overrides):
        if helper:  # the original's helper, as old spec files call it
            call = (
                "from mrunner.helpers.specification_helper import create_experiments_helper\n"
                f"experiments_list = create_experiments_helper(experiment_name='g', base_config={base!r}, "
                f"params_grid={grid!r}, script={script!r}, python_path='', tags=[])\n"
            )
        else:
            call = (
                "from mrunner import create_experiments\n"
                f"experiments_list = create_experiments({script!r}, base_config={base!r}, params_grid={grid!r})\n"
            )
        (project / "spec.py").write_text(call)  # nan and inf print as names the spec lacks: an error of the spec
        args = ("spec.py", "-m", *overrides, "--dry-run")
        assert_clean(*outcome(capsys, *args), args)

    check()


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(overrides=st.lists(st.builds(lambda k, v: f"{k}={v}", KEYS, VALUES), max_size=2))
def test_generated_overrides_submitted_for_real(project, overrides):
    """The whole way, in a process of its own: records, snapshot, the local backend, the experiment."""
    done = MrunnerCommand(project)("train.py", "-m", *overrides, timeout=120)
    assert done.returncode in (0, 1, 2, 3) and "Traceback" not in done.stderr, (overrides, done.stderr)
    if done.returncode != 1:  # 1: an experiment itself failed, and said why in its log
        assert_clean(done.returncode, done.stderr, tuple(overrides))
