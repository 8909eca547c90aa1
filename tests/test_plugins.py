"""Plugin discovery with a third-party backend package really installed from a temporary folder."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from mrunner.testing import write_context

EXAMPLE_BACKEND = Path(__file__).resolve().parent.parent / "examples" / "backend"


def install(tmp_path: Path, name: str, module_text: str) -> Path:
    """Build and install a plugin distribution into a private site folder (as pip would for a user)."""
    package = tmp_path / name
    module = name.replace("-", "_")
    (package / module).mkdir(parents=True)
    (package / module / "__init__.py").write_text(module_text)
    (package / "pyproject.toml").write_text(
        textwrap.dedent(f"""
        [project]
        name = "{name}"
        version = "1.2.3"
        [project.entry-points.mrunner]
        {module.removeprefix("mrunner_")} = "{module}"
        [build-system]
        requires = ["hatchling"]
        build-backend = "hatchling.build"
    """)
    )
    return install_folder(package, tmp_path / f"site-{name}")


def install_folder(package: Path, site: Path) -> Path:
    """Install the distribution in folder ``package`` into the private site folder ``site``."""
    uv = shutil.which("uv")
    if uv is None:
        pytest.fail("uv is needed to install the test plugin (tests/run installs it)")
    subprocess.run(
        [uv, "pip", "install", "--quiet", "--no-deps", "--python", sys.executable, "--target", str(site), str(package)],
        check=True,
        capture_output=True,
    )
    return site


@pytest.fixture(scope="module")
def echo_site(tmp_path_factory) -> Path:
    """The README's example backend (examples/backend), installed from a temporary copy as a user would."""
    folder = tmp_path_factory.mktemp("process")
    shutil.copytree(EXAMPLE_BACKEND, folder / "backend", ignore=shutil.ignore_patterns("__pycache__"))
    return install_folder(folder / "backend", folder / "site")


def with_site(site: Path, **extra: str) -> dict:
    return {"PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]), **extra}


def test_an_installed_third_party_backend_is_found_listed_and_used(mrunner, mrunner_home, echo_site, tmp_path):
    """The example backend's mrunner_register_backends, and its Backend.package, submit, status and logs, as a
    user installs and uses it."""
    listing = mrunner("plugins", "--json", env=with_site(echo_site))
    plugins = {p["name"]: p for p in json.loads(listing.stdout)}
    assert plugins["process"]["distribution"] == "mrunner-process" and plugins["process"]["version"] == "1.0.0"
    assert plugins["process"]["backends"] == ["process"]
    assert plugins["process"]["hooks"] == ["mrunner_register_backends"]
    assert {"package", "submit", "status", "output_dirs"} <= set(plugins["process"]["methods"])
    assert "gc" not in plugins["process"]["methods"]  # left to Backend's default
    assert plugins["local"]["distribution"] == "mrunner-local"

    (tmp_path / "x.py").write_text("from mrunner import get_configuration\nprint('a is', get_configuration().a)\n")
    write_context(mrunner_home, "proc", {"backend": "process", "storage_dir": str(tmp_path / "storage")})
    result = mrunner("x.py", "-m", "a=1,2", "+context=proc", "--wait", env=with_site(echo_site))
    assert result.returncode == 0, result.stderr
    sweep = result.stdout.strip().splitlines()[-1]
    assert "2 completed" in mrunner("status", sweep, env=with_site(echo_site)).stdout
    assert mrunner("logs", f"{sweep}/1", env=with_site(echo_site)).stdout == "a is 2\n"
    shown = mrunner("context", "show", "proc", "--keys", env=with_site(echo_site)).stdout
    assert "#   storage_dir: str (required) [STORAGE_DIR] - where the experiments' folders go" in shown


MISSPELLED = """
from mrunner.hookspecs import hookimpl

@hookimpl
def mrunner_stauts(sweep, runs):
    return []
"""

INCOMPLETE = """
from mrunner import Backend, hookimpl

class HalfBackend(Backend):
    name = "half"

    def package(self, sweep, snapshot, reporter):
        return {}

    def submit(self, sweep, runs, secrets, options, record, reporter):
        pass

@hookimpl
def mrunner_register_backends(register):
    register(HalfBackend())
"""

OLD_SHAPE = """
from mrunner.hookspecs import hookimpl

@hookimpl
def mrunner_backends():
    return []

@hookimpl
def mrunner_submit(sweep, runs, secrets, options, record, reporter):
    return True
"""

NOT_A_BACKEND = """
from mrunner import hookimpl

@hookimpl
def mrunner_register_backends(register):
    register("odd")
"""


@pytest.mark.parametrize(
    ("name", "text", "said"),
    [
        (
            "mrunner-typo",
            MISSPELLED,
            "plugin 'typo' from mrunner-typo 1.2.3 implements mrunner_stauts, which is not an mrunner hook",
        ),
        (
            "mrunner-half",
            INCOMPLETE,
            "backend plugin 'half' from mrunner-half 1.2.3: HalfBackend does not implement cancel, logs, pull, "
            "status, which every mrunner.Backend must",
        ),
        (
            "mrunner-old",
            OLD_SHAPE,
            "plugin 'old' from mrunner-old 1.2.3 is a backend of the old shape (module-level hooks such as "
            "mrunner_backends): a backend is now one mrunner.Backend subclass registered through "
            "mrunner_register_backends (docs/write-a-backend.md)",
        ),
        (
            "mrunner-odd",
            NOT_A_BACKEND,
            "backend plugin 'odd' from mrunner-odd 1.2.3 registers 'odd', which is not an mrunner.Backend",
        ),
    ],
)
def test_a_misspelled_hook_an_incomplete_or_old_backend_is_refused_when_the_plugin_loads(
    mrunner, tmp_path, name, text, said
):
    site = install(tmp_path, name, text)
    (tmp_path / "x.py").write_text("print(1)\n")
    for command in (["plugins"], ["x.py", "--dry-run"]):
        result = mrunner(*command, env=with_site(site))
        assert result.returncode != 0
        assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr, result.stderr
        assert said in result.stderr


TRACKER = """
import json, os
from mrunner import hookimpl

@hookimpl
def mrunner_warm_up(context):
    with open(os.environ["WARMED"], "w") as out:
        json.dump(dict(context), out)
"""


def test_a_tracker_hears_the_context_file_first(mrunner, mrunner_home, tmp_path):
    """mrunner_warm_up: a tracker plugin gets the context file's own keys before the context is composed (at
    a submission: a dry run reaches nothing)."""
    site = install(tmp_path, "mrunner-warm", TRACKER)
    (tmp_path / "x.py").write_text("print(1)\n")
    write_context(mrunner_home, "warm", {"backend": "local", "max_parallel": 3})
    warmed = tmp_path / "warmed.json"
    result = mrunner("+context=warm", "x.py", "--dry-run", env=with_site(site, WARMED=str(warmed)))
    assert result.returncode == 0 and not warmed.exists(), result.stderr
    result = mrunner("+context=warm", "x.py", "--wait", env=with_site(site, WARMED=str(warmed)))
    assert result.returncode == 0, result.stderr
    assert json.loads(warmed.read_text()) == {"backend": "local", "max_parallel": 3}


def test_mrunner_plugins_restricts_what_loads(mrunner, echo_site):
    listing = mrunner("plugins", "--json", env=with_site(echo_site, MRUNNER_PLUGINS="local"))
    installed = {p["name"] for p in json.loads(listing.stdout) if not p["distribution"].endswith("(built-in)")}
    assert installed == {"local"}
    none = mrunner("plugins", "--json", env=with_site(echo_site, MRUNNER_PLUGINS=""))
    assert all(p["distribution"].endswith("(built-in)") for p in json.loads(none.stdout))


@pytest.mark.parametrize("allowed", ["nosuch", "slurm", ""])
def test_a_backend_mrunner_plugins_leaves_out_is_named_so(mrunner, tmp_path, allowed):
    """Installed but left out (a typo in MRUNNER_PLUGINS, say) is not "not installed: pip install it"."""
    (tmp_path / "x.py").write_text("print(1)\n")
    mrunner.cwd = tmp_path
    result = mrunner("x.py", "--dry-run", env={"MRUNNER_PLUGINS": allowed})
    assert result.returncode == 2, result
    assert result.stderr.count("\n") == 1 and "pip install" not in result.stderr, result.stderr
    assert f"backend 'local' is installed but MRUNNER_PLUGINS={allowed!r} leaves it out" in result.stderr


def test_a_plugin_that_fails_to_import_is_named(mrunner, tmp_path):
    site = install(tmp_path, "mrunner-broken", "import a_module_that_does_not_exist\n")
    result = mrunner("plugins", env=with_site(site))
    assert result.returncode != 0
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert "plugin 'broken' from distribution mrunner-broken 1.2.3 failed to import" in result.stderr
    assert "a_module_that_does_not_exist" in result.stderr
    assert mrunner("plugins", env=with_site(site, MRUNNER_PLUGINS="local")).returncode == 0
