import tarfile

import pytest

from mrunner.errors import MrunnerError
from mrunner_k8s import image


@pytest.fixture
def snapshot(tmp_path):
    root = tmp_path / "snapshot"
    (root / "src").mkdir(parents=True)
    (root / "src" / "train.py").write_text("print('hi')\n")
    (root / "run.sh").write_text("#!/bin/sh\n")
    (root / "run.sh").chmod(0o755)
    (root / "requirements.txt").write_text("numpy==1.26.4\n")
    return root


def test_dockerfile_requirements_layer_comes_before_the_code(make_sweep, snapshot):
    sweep = make_sweep(base_image="python:3.11-slim", requirements_file="requirements.txt")
    recipe = image.recipe(sweep, snapshot)
    lines = recipe.dockerfile().splitlines()
    assert lines[1] == "FROM python:3.11-slim"
    assert lines.index("COPY requirements.txt /mrunner/requirements.txt") < lines.index("COPY code/ /mrunner/code/")
    assert any(line.startswith("RUN python3 -m pip install") for line in lines)
    assert lines[-1] == "WORKDIR /mrunner/code/src"
    assert not any(line.startswith(("ARG", "ENV MY", "ENV REGISTRY")) for line in lines)


def test_without_requirements_there_is_no_run_step(make_sweep, snapshot):
    recipe = image.recipe(make_sweep(), snapshot)
    assert "RUN" not in recipe.dockerfile() and recipe.requirements == b""
    (snapshot / "empty.txt").write_text("# nothing yet\n\n")
    assert "RUN" not in image.recipe(make_sweep(requirements_file="empty.txt"), snapshot).dockerfile()


def test_tag_follows_content(make_sweep, snapshot):
    sweep = make_sweep(requirements_file="requirements.txt")
    tag = image.recipe(sweep, snapshot).tag
    assert tag == image.recipe(sweep, snapshot).tag and tag.startswith("c-")
    sweep.snapshot_digest = "e" * 64
    assert image.recipe(sweep, snapshot).tag != tag
    sweep.snapshot_digest = "d" * 64
    (snapshot / "requirements.txt").write_text("numpy==2.0\n")
    assert image.recipe(sweep, snapshot).tag != tag
    assert image.recipe(make_sweep(requirements_file="requirements.txt", base_image="other:1"), snapshot).tag != image.recipe(sweep, snapshot).tag


def test_missing_requirements_file_is_a_user_error(make_sweep, snapshot):
    with pytest.raises(MrunnerError, match="requirements_file nope.txt"):
        image.recipe(make_sweep(requirements_file="nope.txt"), snapshot)


def test_mrunner_in_requirements_replaces_the_client_copy(make_sweep, snapshot):
    (snapshot / "requirements.txt").write_text("mrunner==0.2.0\n")
    recipe = image.recipe(make_sweep(requirements_file="requirements.txt"), snapshot)
    assert not recipe.with_client and "PYTHONPATH" not in recipe.dockerfile()


def test_build_context_is_deterministic_and_complete(make_sweep, snapshot):
    recipe = image.recipe(make_sweep(requirements_file="requirements.txt"), snapshot)
    with image.build_context(recipe, snapshot) as first, image.build_context(recipe, snapshot) as second:
        assert first.read() == second.read()
        first.seek(0)
        with tarfile.open(fileobj=first) as tar:
            members = {member.name: member for member in tar.getmembers()}
            assert tar.extractfile("Dockerfile").read().decode() == recipe.dockerfile()
            assert tar.extractfile("requirements.txt").read() == b"numpy==1.26.4\n"
            assert b"def get_configuration" in tar.extractfile("mrunner-client/mrunner/client.py").read()
    assert {"code/src/train.py", "code/run.sh", "code/requirements.txt"} <= set(members)
    assert members["code/run.sh"].mode == 0o755 and members["code/src/train.py"].mode == 0o644
    assert {member.mtime for member in members.values()} == {0}


def test_password_comes_from_the_named_variable(make_sweep, monkeypatch):
    assert image.auth_config(make_sweep().context) is None
    sweep = make_sweep(registry_username="alice", registry_password_env="REGISTRY_PW")
    with pytest.raises(MrunnerError, match="REGISTRY_PW"):
        image.auth_config(sweep.context)
    monkeypatch.setenv("REGISTRY_PW", "pw")
    assert image.auth_config(sweep.context) == {"username": "alice", "password": "pw"}
