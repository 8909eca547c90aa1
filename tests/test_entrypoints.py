"""mrunner.entrypoints finds what importlib.metadata finds, without importing it where the path is plain."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

import pytest

from mrunner import entrypoints


def as_metadata(group: str) -> list[tuple[str, str, str | None]]:
    return [(e.name, e.value, e.dist.name if e.dist else None) for e in entry_points(group=group)]


def as_ours(group: str) -> list[tuple[str, str, str | None]]:
    return [(e.name, e.value, e.distribution[0] if e.distribution else None) for e in entrypoints.of_group(group)]


def dist_info(site: Path, folder: str, name: str, version: str, entries: str) -> None:
    (site / folder).mkdir(parents=True)
    (site / folder / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n\nText\n")
    (site / folder / "entry_points.txt").write_text(entries)


@pytest.mark.parametrize("group", ["mrunner", "console_scripts", "pytest11"])
def test_the_installed_entry_points_are_those_importlib_metadata_finds(group):
    assert as_ours(group) == as_metadata(group)  # read from the folders, or (after an import such as mlflow's,
    # which puts importlib_metadata's finder on sys.meta_path) through importlib.metadata: the same either way


def test_the_first_distribution_of_a_name_on_the_path_wins_and_loads(tmp_path, monkeypatch):
    first, second = tmp_path / "first", tmp_path / "second"
    entries = "# a comment\n[mrunner]\n  fake = json.decoder:JSONDecoder \n\n[other]\nnot = ours\n"
    dist_info(first, "Mrunner.Fake-2.0.dist-info", "mrunner-fake", "2.0", entries)
    dist_info(second, "mrunner_fake-1.0.dist-info", "mrunner-fake", "1.0", "[mrunner]\nold = json\n")
    monkeypatch.syspath_prepend(str(second))
    monkeypatch.syspath_prepend(str(first))
    assert as_ours("mrunner") == as_metadata("mrunner")
    (found,) = [e for e in entrypoints.of_group("mrunner") if e.name in ("fake", "old")]
    assert (found.name, found.where, found.distribution) == ("fake", "mrunner-fake 2.0", ("mrunner-fake", "2.0"))
    import json.decoder

    assert found.load() is json.decoder.JSONDecoder


def test_a_path_this_does_not_read_is_left_to_importlib_metadata(tmp_path, monkeypatch):
    site = tmp_path / "site"
    (site / "old_style.egg-info").mkdir(parents=True)
    (site / "old_style.egg-info" / "PKG-INFO").write_text("Metadata-Version: 1.1\nName: old-style\nVersion: 0.1\n")
    (site / "old_style.egg-info" / "entry_points.txt").write_text("[mrunner]\nold = json\n")
    monkeypatch.syspath_prepend(str(site))
    assert entrypoints._scanned("mrunner") is None
    assert ("old", "json", "old-style") in as_ours("mrunner")
    assert as_ours("mrunner") == as_metadata("mrunner")


def test_an_egg_folder_on_the_path_is_left_to_importlib_metadata(tmp_path, monkeypatch):
    """``setup.py install`` / easy_install put ``NAME-VERSION-pyX.Y.egg`` folders on the path (through
    easy-install.pth), their metadata in ``EGG-INFO``."""
    egg = tmp_path / "old_style-0.1-py3.egg"
    (egg / "EGG-INFO").mkdir(parents=True)
    (egg / "EGG-INFO" / "PKG-INFO").write_text("Metadata-Version: 1.1\nName: old-style\nVersion: 0.1\n")
    (egg / "EGG-INFO" / "entry_points.txt").write_text("[mrunner]\nold = json\n")
    monkeypatch.syspath_prepend(str(egg))
    assert ("old", "json", "old-style") in as_ours("mrunner")
    assert as_ours("mrunner") == as_metadata("mrunner")


def test_a_dist_info_not_in_lower_case_is_left_to_importlib_metadata(tmp_path, monkeypatch):
    """importlib.metadata names a ``.DIST-INFO`` folder by its METADATA, not by the folder's name."""
    dist_info(tmp_path / "first", "odd_folder-1.0.DIST-INFO", "mrunner-fake", "1.0", "[mrunner]\nnew = json\n")
    dist_info(tmp_path / "second", "mrunner_fake-0.9.dist-info", "mrunner-fake", "0.9", "[mrunner]\nold = json\n")
    monkeypatch.syspath_prepend(str(tmp_path / "second"))
    monkeypatch.syspath_prepend(str(tmp_path / "first"))
    assert [e for e in as_ours("mrunner") if e[0] in ("new", "old")] == [("new", "json", "mrunner-fake")]
    assert as_ours("mrunner") == as_metadata("mrunner")


def test_section_headers_are_read_as_importlib_metadata_reads_them(tmp_path, monkeypatch):
    entries = "[ mrunner ]\nspaced = json\n[[mrunner]]\ndoubled = json\n"
    dist_info(tmp_path, "mrunner_fake-1.0.dist-info", "mrunner-fake", "1.0", entries)
    monkeypatch.syspath_prepend(str(tmp_path))
    assert as_ours("mrunner") == as_metadata("mrunner")
    assert ("doubled", "json", "mrunner-fake") in as_ours("mrunner")


def test_two_versions_in_one_folder_and_a_pth_path_agree_with_importlib_metadata(tmp_path, monkeypatch):
    import site

    target = tmp_path / "through-pth"
    dist_info(target, "mrunner_fake-2.0.dist-info", "mrunner-fake", "2.0", "[mrunner]\nnew = json\n")
    dist_info(target, "mrunner_fake-1.0.dist-info", "mrunner-fake", "1.0", "[mrunner]\nold = json\n")
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "fake.pth").write_text(f"{target}\n")
    monkeypatch.setattr(sys, "path", list(sys.path))
    site.addsitedir(str(tmp_path / "site"))
    assert str(target) in sys.path
    assert len([e for e in as_ours("mrunner") if e[0] in ("new", "old")]) == 1
    assert as_ours("mrunner") == as_metadata("mrunner")


def test_the_cli_builds_its_plugins_without_importing_importlib_metadata():
    code = (
        "import sys; from mrunner import entrypoints, plugins; plugins.manager(); "
        "print('importlib.metadata' in sys.modules, entrypoints._scanned('mrunner') is None)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["False", "False"]
