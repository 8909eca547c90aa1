"""Context keys declared once (mrunner.schema): validation, `context show --keys` and docs/context-keys.md all
come from the declaration."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pytest

from mrunner.errors import MrunnerError
from mrunner.schema import key, keys_of, merge_keys, validate

REPO = Path(__file__).resolve().parent.parent


def test_the_committed_keys_page_is_generated_from_the_declarations():
    """docs/context-keys.md is what `python -m mrunner.keys_doc` prints (every backend installed)."""
    page = subprocess.run(
        [sys.executable, "-m", "mrunner.keys_doc"],
        capture_output=True,
        text=True,
        check=True,
        env={k: v for k, v in os.environ.items() if k != "MRUNNER_PLUGINS"},
    ).stdout
    assert page == (REPO / "docs" / "context-keys.md").read_text(), (
        "docs/context-keys.md is stale: python -m mrunner.keys_doc > docs/context-keys.md"
    )
    for backend in ("local", "slurm", "kubernetes"):
        assert f"## Backend `{backend}`" in page
    assert "| `mem` | str |  | --mem | memory per node, e.g. 8G *(per point)* |" in page


@dataclass(frozen=True, kw_only=True)
class Core:
    backend: str = key(help="which backend")
    grace_period: int = key(30, minimum=0, help="seconds to save")


@dataclass(frozen=True, kw_only=True)
class Mine:
    grace_period: int = key(10, minimum=0, help="seconds to save")
    mode: Literal["fast", "slow"] = key("fast", help="how")
    size: int | None = key(None, minimum=1, option="--size", help="how big")
    label: str | None = key(None, help="a label")
    extra: list[str] | dict[str, str] = key([], help="more")


KEYS = merge_keys([keys_of(Core)], keys_of(Mine))


@pytest.mark.parametrize(
    ("context", "said"),
    [
        ({"size": 0}, "context c: key 'size' must be at least 1, got 0 - how big"),
        ({"grace_period": -1}, "key 'grace_period' must be at least 0, got -1"),
        ({"mode": "medium"}, "key 'mode' must be one of fast, slow, got 'medium' - how"),
        ({"size": True}, "key 'size' must be int, got bool True"),
        ({"extra": "x"}, "key 'extra' must be list|dict, got str 'x'"),
        ({"sizes": 1}, "unknown key 'sizes' (did you mean 'size'?)"),
        ({"backend": None}, "key 'backend' is required (which backend)"),
    ],
)
def test_types_ranges_and_choices_are_checked_from_the_declaration(context, said):
    with pytest.raises(MrunnerError) as raised:
        validate({"backend": "mine", **context}, KEYS, "c")
    assert said in str(raised.value)


def test_defaults_fill_the_rest_and_a_backend_overrides_a_core_default_visibly():
    assert validate({"backend": "mine", "label": 7}, KEYS, "c") == {
        "backend": "mine",
        "grace_period": 10,
        "mode": "fast",
        "size": None,
        "label": "7",
        "extra": [],
    }
    assert KEYS["grace_period"].core_default_text() == "30" and KEYS["mode"].core_default_text() is None
    assert list(KEYS) == ["backend", "grace_period", "mode", "size", "label", "extra"]  # the core's place kept


def test_context_show_keys_prints_the_declaration(mrunner, mrunner_home):
    shown = mrunner("context", "show", "local", "--keys").stdout
    assert "#   backend: str (required) - which backend runs the experiments" in shown
    assert "#   grace_period: int 0 to 86400 (default 10; the core's default: 30) - seconds" in shown
    assert "#   gpus: list [CUDA_VISIBLE_DEVICES] - GPU ids" in shown
    assert "#   neptune: bool (default false) - track every experiment" in shown


def test_the_slurm_options_come_from_the_declaration():
    """One list of Slurm keys: the sbatch options are the declared ``option``s, in the declared order."""
    from mrunner_slurm.keys import SlurmKeys, resource_options

    context = {name: declared.default for name, declared in keys_of(SlurmKeys).items()}
    context.update(grace_period=30, partition="gpu", mem="8G", cpu=4, gpu="a100:1", time=60)
    assert resource_options(context) == [
        "--partition=gpu",
        "--time=60",
        "--cpus-per-task=4",
        "--mem=8G",
        "--requeue",
        "--signal=B:USR1@30",
        "--gres=gpu:a100:1",
    ]
