"""Every hook and every ``Backend`` method is documented where it is declared, and implemented by a plugin
the manager loads. That each is exercised by some test is checked by the whole suite's run itself
(``tests/run`` passes the test kit's ``--mrunner-check-called``, tested in tests/test_testing_kit.py)."""

from __future__ import annotations

import inspect

import pytest

from mrunner import hookspecs
from mrunner.backend import Backend

HOOKS = sorted(name for name, _ in inspect.getmembers(hookspecs, inspect.isfunction) if name.startswith("mrunner_"))
METHODS = sorted(name for name, value in vars(Backend).items() if inspect.isfunction(value))
# Hooks no plugin shipped here implements: a test installs a plugin that does.
IMPLEMENTED_BY_A_TEST_PLUGIN = {"mrunner_warm_up"}


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
def test_every_hook_is_implemented(name):
    """Implemented by a plugin the manager really loads (or by a test's plugin)."""
    from mrunner import plugins

    if name not in IMPLEMENTED_BY_A_TEST_PLUGIN:
        implementations = plugins.manager().hook.__dict__[name].get_hookimpls()
        assert implementations, f"no installed plugin implements {name}"
