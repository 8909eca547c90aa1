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

ECHO_PLUGIN = '''
"""A third-party backend: "runs" each experiment by appending its parameters to a file."""
import json
from mrunner.hookspecs import BackendInfo, hookimpl
from mrunner.records import COMPLETED, SUBMITTED, RunUpdate
from mrunner.schema import ContextKey


@hookimpl
def mrunner_backends():
    return [BackendInfo("echo", "writes parameters to a file")]


@hookimpl
def mrunner_context_keys(backend):
    if backend == "echo":
        return [ContextKey("out_file", "str", required=True, help="where the parameters go")]


@hookimpl
def mrunner_plan(context, count):
    if context["backend"] == "echo":
        return [f"append {count} lines to {context['out_file']}"]


@hookimpl
def mrunner_package(sweep, snapshot, reporter):
    if sweep.backend == "echo":
        return {"files": len(snapshot.files)}


@hookimpl
def mrunner_setup_resources(sweep, secrets, reporter):
    if sweep.backend == "echo":
        return {}


@hookimpl
def mrunner_submit(sweep, runs, secrets, options, record, reporter):
    if sweep.backend != "echo":
        return None
    with open(sweep.context["out_file"], "a") as out:
        for run in runs:
            record([RunUpdate(run.index, SUBMITTED, backend_ref=f"echo-{run.index}")])
            out.write(json.dumps({"sweep": sweep.id, "index": run.index, "parameters": run.parameters}) + "\\n")
            record([RunUpdate(run.index, COMPLETED, exit_code=0)])
    return True
'''


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
    site = tmp_path / f"site-{name}"
    uv = shutil.which("uv")
    if uv is None:
        pytest.fail("uv is needed to install the test plugin (tests/run installs it)")
    subprocess.run([uv, "pip", "install", "--quiet", "--no-deps", "--python", sys.executable, "--target", str(site), str(package)],
                   check=True, capture_output=True)  # fmt: skip
    return site


@pytest.fixture(scope="module")
def echo_site(tmp_path_factory) -> Path:
    return install(tmp_path_factory.mktemp("echo"), "mrunner-echo", ECHO_PLUGIN)


def with_site(site: Path, **extra: str) -> dict:
    return {"PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]), **extra}


def test_an_installed_third_party_backend_is_found_listed_and_used(mrunner, mrunner_home, echo_site, tmp_path):
    listing = mrunner("plugins", "--json", env=with_site(echo_site))
    plugins = {p["name"]: p for p in json.loads(listing.stdout)}
    assert plugins["echo"]["distribution"] == "mrunner-echo" and plugins["echo"]["version"] == "1.2.3"
    assert plugins["echo"]["backends"] == ["echo"]
    assert "mrunner_submit" in plugins["echo"]["hooks"]
    assert plugins["local"]["distribution"] == "mrunner-local"

    (tmp_path / "x.py").write_text("print(1)\n")
    out = tmp_path / "out.jsonl"
    folder = mrunner_home / "config" / "mrunner" / "context"
    folder.mkdir(parents=True)
    (folder / "echo.yaml").write_text(f"backend: echo\nout_file: {out}\n")
    result = mrunner("x.py", "-m", "a=1,2", "+context=echo", env=with_site(echo_site))
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [line["parameters"] for line in lines] == [{"a": 1}, {"a": 2}]
    assert "2 completed" in mrunner("status", lines[0]["sweep"], env=with_site(echo_site)).stdout


def test_mrunner_plugins_restricts_what_loads(mrunner, echo_site):
    listing = mrunner("plugins", "--json", env=with_site(echo_site, MRUNNER_PLUGINS="local"))
    installed = {p["name"] for p in json.loads(listing.stdout) if not p["distribution"].endswith("(built-in)")}
    assert installed == {"local"}
    none = mrunner("plugins", "--json", env=with_site(echo_site, MRUNNER_PLUGINS=""))
    assert all(p["distribution"].endswith("(built-in)") for p in json.loads(none.stdout))


def test_a_plugin_that_fails_to_import_is_named(mrunner, tmp_path):
    site = install(tmp_path, "mrunner-broken", "import a_module_that_does_not_exist\n")
    result = mrunner("plugins", env=with_site(site))
    assert result.returncode != 0
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert "plugin 'broken' from distribution mrunner-broken 1.2.3 failed to import" in result.stderr
    assert "a_module_that_does_not_exist" in result.stderr
    assert mrunner("plugins", env=with_site(site, MRUNNER_PLUGINS="local")).returncode == 0
