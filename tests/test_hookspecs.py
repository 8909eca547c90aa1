"""Every hook is documented where it is declared, and every hook is exercised by some test."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

from mrunner import hookspecs

REPO = Path(__file__).resolve().parent.parent
HOOKS = sorted(name for name, _ in inspect.getmembers(hookspecs, inspect.isfunction) if name.startswith("mrunner_"))


def test_there_are_hooks():
    assert "mrunner_submit" in HOOKS and len(HOOKS) >= 12


@pytest.mark.parametrize("name", HOOKS)
def test_every_hook_says_when_it_is_called_and_is_typed(name):
    function = getattr(hookspecs, name)
    doc = inspect.getdoc(function) or ""
    assert doc.startswith("Called"), f"{name}: the docstring should start by saying when it is called"
    assert "return" in inspect.get_annotations(function), f"{name}: annotate the return type"
    first_result = function.mrunner_spec["firstresult"]
    assert ("First result" in doc) == first_result, f"{name}: say 'First result' exactly when firstresult=True"


@pytest.mark.parametrize("name", HOOKS)
def test_every_hook_is_implemented_and_tested(name):
    """Implemented by a plugin the manager really loads (the declaration in hookspecs.py does not count), and named
    by some test."""
    from mrunner import plugins

    implementations = plugins.manager().hook.__dict__[name].get_hookimpls()
    assert implementations, f"no installed plugin implements {name}"
    assert all(impl.plugin is not hookspecs for impl in implementations)
    tests = [p for p in REPO.rglob("test_*.py") if ".venv" not in p.parts] + sorted(
        (REPO / "mrunner" / "testing").glob("*.py")
    )
    assert any(name in p.read_text() for p in tests if p.name != Path(__file__).name), (
        f"no test names {name}: name the hook in the docstring of the test that exercises it"
    )


def test_the_required_hooks_exist():
    assert set(hookspecs.BACKEND_REQUIRED) <= set(HOOKS)
