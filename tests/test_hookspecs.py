"""Every hook and every ``Backend`` method is documented where it is declared, and exercised by some test."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

from mrunner import hookspecs
from mrunner.backend import Backend

REPO = Path(__file__).resolve().parent.parent
HOOKS = sorted(name for name, _ in inspect.getmembers(hookspecs, inspect.isfunction) if name.startswith("mrunner_"))
METHODS = sorted(name for name, value in vars(Backend).items() if inspect.isfunction(value))
# Hooks no plugin shipped here implements: a test installs a plugin that does.
IMPLEMENTED_BY_A_TEST_PLUGIN = {"mrunner_warm_up"}


def _tests() -> list[Path]:
    found = [p for p in REPO.rglob("test_*.py") if ".venv" not in p.parts] + sorted(
        (REPO / "mrunner" / "testing").glob("*.py")
    )
    return [p for p in found if p.name != Path(__file__).name]


def test_there_are_hooks_and_methods():
    assert "mrunner_register_backends" in HOOKS and "mrunner_check" in HOOKS
    assert {"package", "submit", "status", "cancel", "logs", "pull"} == Backend.__abstractmethods__
    assert {"warm_up", "check", "plan", "render", "setup_resources", "output_dirs", "gc"} <= set(METHODS)


@pytest.mark.parametrize("name", HOOKS)
def test_every_hook_says_when_it_is_called_and_is_typed(name):
    function = getattr(hookspecs, name)
    doc = inspect.getdoc(function) or ""
    assert doc.startswith("Called"), f"{name}: the docstring should start by saying when it is called"
    assert "return" in inspect.get_annotations(function), f"{name}: annotate the return type"
    assert not function.mrunner_spec["firstresult"], f"{name}: every plugin answers a tracker hook"


@pytest.mark.parametrize("name", METHODS)
def test_every_backend_method_says_when_it_is_called_whether_it_is_required_and_is_typed(name):
    method = getattr(Backend, name)
    doc = inspect.getdoc(method) or ""
    first = doc.split("\n\n")[0]
    assert doc.startswith("Called"), f"Backend.{name}: the docstring should start by saying when it is called"
    required = name in Backend.__abstractmethods__
    assert first.endswith("Required." if required else "Optional."), f"Backend.{name}: say Required. or Optional."
    assert required or "The default" in doc, f"Backend.{name}: say what the default does"
    assert "Returns" in doc, f"Backend.{name}: say what it returns"
    annotations = inspect.get_annotations(method)
    assert "return" in annotations and set(inspect.signature(method).parameters) - {"self"} <= set(annotations)


@pytest.mark.parametrize("name", HOOKS)
def test_every_hook_is_implemented_and_tested(name):
    """Implemented by a plugin the manager really loads (or by a test's plugin), and named by some test."""
    from mrunner import plugins

    if name not in IMPLEMENTED_BY_A_TEST_PLUGIN:
        implementations = plugins.manager().hook.__dict__[name].get_hookimpls()
        assert implementations, f"no installed plugin implements {name}"
    assert any(name in p.read_text() for p in _tests()), (
        f"no test names {name}: name the hook in the docstring of the test that exercises it"
    )


@pytest.mark.parametrize("name", METHODS)
def test_every_backend_method_is_tested(name):
    assert any(f"Backend.{name}" in p.read_text() for p in _tests()), (
        f"no test names Backend.{name}: name it in the docstring of the test that exercises it"
    )
