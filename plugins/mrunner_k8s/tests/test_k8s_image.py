import io
import os
import tarfile

import pytest
from mrunner_k8s import image

from mrunner import snapshot as snapshots
from mrunner.errors import MrunnerError


def take(root):
    """The core's snapshot of ``root`` (manifest and sources; no frozen copy is made)."""
    return snapshots.take(root, store=root.parent / "store")


@pytest.fixture
def project(tmp_path):
    root = tmp_path / "project"
    (root / "src").mkdir(parents=True)
    (root / "src" / "train.py").write_text("print('hi')\n")
    (root / "run.sh").write_text("#!/bin/sh\n")
    (root / "run.sh").chmod(0o755)
    (root / "requirements.txt").write_text("numpy==1.26.4\n")
    return root


def test_dockerfile_requirements_layer_comes_before_the_code(make_sweep, project):
    sweep = make_sweep(base_image="python:3.11-slim", requirements_file="requirements.txt")
    recipe = image.recipe(sweep, take(project))
    # pip reads the requirements in a build of its own, named by their content; the image copies what it installed
    stage = recipe.requirements_dockerfile("b1").splitlines()
    assert stage[1:4] == [
        "FROM python:3.11-slim AS pip",
        "LABEL org.mrunner.requirements-build=b1",  # every layer holding the file: removed as the build ends
        "COPY requirements.txt /mrunner/requirements.txt",
    ]
    assert "-m pip install" in stage[4] and "--root /mrunner/staged" in stage[4]
    assert stage[5:] == ["FROM scratch", "COPY --from=pip /mrunner/replaced.txt /replaced.txt",
                         "COPY --from=pip /mrunner/staged/ /staged/"]  # fmt: skip
    assert recipe.requirements_image("sha256:b1").startswith("mrunner-requirements:r-")
    lines = recipe.dockerfile().splitlines()
    assert lines[1] == "FROM mrunner-requirements AS requirements"  # the content tag's; the build's names the image
    assert (
        recipe.dockerfile("mrunner-requirements:r-1").splitlines()[1] == "FROM mrunner-requirements:r-1 AS requirements"
    )
    final = lines.index("FROM python:3.11-slim")
    assert final == 2 and not [line for line in lines if line.startswith("COPY requirements.txt")]
    assert lines.index("COPY --from=requirements /staged/ /") < lines.index("COPY code/ /mrunner/code/")
    assert "COPY requirements-masked.txt /mrunner/requirements.txt" in lines[final:]
    assert "pip install" not in recipe.dockerfile()
    assert lines[-1] == "WORKDIR /mrunner/code/src"
    assert not any(line.startswith(("ARG", "ENV MY", "ENV REGISTRY")) for line in lines)
    # equal requirements on the same base (its image id: a tag pulled anew is another) share what pip
    # installed, whatever the code; others do not
    (project / "src" / "train.py").write_text("print('edited')\n")
    first = recipe.requirements_image("sha256:b1")
    assert image.recipe(sweep, take(project)).requirements_image("sha256:b1") == first
    assert recipe.requirements_image("sha256:b2") != first
    (project / "requirements.txt").write_text("numpy==2.0\n")
    assert image.recipe(sweep, take(project)).requirements_image("sha256:b1") != first


def test_without_requirements_there_is_no_run_step(make_sweep, project):
    recipe = image.recipe(make_sweep(), take(project))
    assert "RUN" not in recipe.dockerfile() and recipe.requirements == b""
    (project / "empty.txt").write_text("# nothing yet\n\n")
    assert "RUN" not in image.recipe(make_sweep(requirements_file="empty.txt"), take(project)).dockerfile()


def test_requirements_are_found_in_the_workdir_then_the_root(make_sweep, project):
    (project / "src" / "requirements.txt").write_text("torch\n")
    sweep = make_sweep(requirements_file="requirements.txt")  # the sweep's workdir is src
    assert image.recipe(sweep, take(project)).requirements == b"torch\n"
    (project / "src" / "requirements.txt").unlink()
    assert image.recipe(sweep, take(project)).requirements == b"numpy==1.26.4\n"


def test_tag_follows_content(make_sweep, project):
    sweep = make_sweep(requirements_file="requirements.txt")
    frozen = take(project)
    tag = image.recipe(sweep, frozen).tag
    assert tag == image.recipe(sweep, frozen).tag and tag.startswith("c-")
    sweep.snapshot_digest = "e" * 64
    assert image.recipe(sweep, frozen).tag != tag
    sweep.snapshot_digest = "d" * 64
    (project / "requirements.txt").write_text("numpy==2.0\n")
    changed = take(project)
    assert image.recipe(sweep, changed).tag != tag
    other_base = make_sweep(requirements_file="requirements.txt", base_image="other:1")
    assert image.recipe(other_base, changed).tag != image.recipe(sweep, changed).tag


def test_the_identified_requirements_decide_the_image_whatever_the_file_became(make_sweep, project, tmp_path):
    """A requirements file outside the snapshot (no edit of it shows as a changed snapshot): once ``identify``
    recorded it, an edit of the file changes neither the tag nor what the build installs, so a resume whose
    snapshot is intact builds or finds the image as submitted."""
    outside = tmp_path / "reqs.txt"
    outside.write_text("numpy==1.26.4\n")
    sweep = make_sweep(requirements_file=str(outside))
    frozen = take(project)
    identified = image.identity(sweep, frozen)
    assert identified == {
        "image": image.reference(sweep, image.recipe(sweep, frozen)),
        "requirements": "numpy==1.26.4\n",
    }
    sweep.detail["identified"] = identified
    outside.write_text("numpy==2.0\n")
    recipe = image.recipe(sweep, frozen)
    assert image.reference(sweep, recipe) == identified["image"] and recipe.requirements == b"numpy==1.26.4\n"
    with tarfile.open(fileobj=image.requirements_context(recipe, "b1")) as tar:
        assert tar.extractfile("requirements.txt").read() == b"numpy==1.26.4\n"
    del sweep.detail["identified"]  # as before it was recorded: the edited file
    assert image.reference(sweep, image.recipe(sweep, frozen)) != identified["image"]


def test_missing_requirements_file_is_a_user_error(make_sweep, project):
    with pytest.raises(MrunnerError, match="requirements_file nope.txt"):
        image.recipe(make_sweep(requirements_file="nope.txt"), take(project))


def test_mrunner_in_requirements_is_imported_but_the_wrapper_stays(make_sweep, project):
    (project / "requirements.txt").write_text("mrunner==0.2.0\n")
    frozen = take(project)
    recipe = image.recipe(make_sweep(requirements_file="requirements.txt"), frozen)
    assert not recipe.with_client and "PYTHONPATH" not in recipe.dockerfile()
    # The container starts through the shipped mrunner.attempt (run from its folder), whatever is installed.
    assert "COPY mrunner-client/ /mrunner/client/" in recipe.dockerfile().splitlines()
    with image.build_context(recipe, frozen) as archive, tarfile.open(fileobj=archive) as tar:
        assert b"def main" in tar.extractfile("mrunner-client/mrunner/attempt.py").read()


def test_build_context_is_deterministic_and_complete(make_sweep, project):
    frozen = take(project)
    recipe = image.recipe(make_sweep(requirements_file="requirements.txt"), frozen)
    with image.build_context(recipe, frozen) as first, image.build_context(recipe, frozen) as second:
        assert first.read() == second.read()
        first.seek(0)
        with tarfile.open(fileobj=first) as tar:
            members = {member.name: member for member in tar.getmembers()}
            assert tar.extractfile("Dockerfile").read().decode() == recipe.dockerfile()
            assert "requirements.txt" not in tar.getnames()  # only the requirements build reads it
            assert tar.extractfile("requirements-masked.txt").read() == b"numpy==1.26.4\n"
            assert b"def get_configuration" in tar.extractfile("mrunner-client/mrunner/client.py").read()
    assert {"code/src/train.py", "code/run.sh", "code/requirements.txt"} <= set(members)
    assert members["code/run.sh"].mode == 0o755 and members["code/src/train.py"].mode == 0o644
    assert {member.mtime for member in members.values()} == {0}
    assert not frozen.tree.exists()  # read straight from the project: no frozen copy was needed


def test_the_image_gets_the_requirements_with_url_credentials_masked(make_sweep, project):
    """What the build context holds for the final stage: the requirements file, and the code's copy of it,
    with every URL's user and password masked; the file as written only for the build stage's pip."""
    text = "--extra-index-url https://me:s3cret@pypi.example/simple\ngit+https://s3cret@github.com/o/r.git\nnumpy\n"
    (project / "requirements.txt").write_text(text)
    frozen = take(project)
    recipe = image.recipe(make_sweep(requirements_file="requirements.txt"), frozen)
    assert recipe.requirements_in_code == "requirements.txt"
    shown = b"--extra-index-url https://****@pypi.example/simple\ngit+https://****@github.com/o/r.git\nnumpy\n"
    with image.build_context(recipe, frozen) as archive, tarfile.open(fileobj=archive) as tar:
        assert tar.extractfile("requirements-masked.txt").read() == shown
        assert tar.extractfile("code/requirements.txt").read() == shown
        assert [m.name for m in tar.getmembers() if b"s3cret" in tar.extractfile(m).read()] == []
    with image.requirements_context(recipe, "b1") as archive, tarfile.open(fileobj=archive) as tar:
        assert tar.getnames() == ["Dockerfile", "requirements.txt"]  # pip's build alone reads the file as written
        assert b"s3cret" in tar.extractfile("requirements.txt").read()
    assert "s3cret" not in recipe.dockerfile() + recipe.requirements_dockerfile("b1")
    # the image is still named by the requirements as written: another token is another image
    (project / "requirements.txt").write_text(text.replace("s3cret", "other"))
    assert image.recipe(make_sweep(requirements_file="requirements.txt"), take(project)).tag != recipe.tag


def test_a_file_edited_after_the_snapshot_is_never_sent(make_sweep, project, monkeypatch):
    frozen = take(project)
    (project / "src" / "train.py").write_text("print('edited')\n")
    with tarfile.open(fileobj=image.build_context(image.recipe(make_sweep(), frozen), frozen)) as tar:
        assert tar.extractfile("code/src/train.py").read() == b"print('hi')\n"  # the bytes that were hashed
    monkeypatch.setattr(snapshots, "KEPT_FILE_BYTES", 0)  # a file too large to keep in memory is read again
    frozen = take(project)
    (project / "src" / "train.py").write_text("print('edited again')\n")
    with pytest.raises(MrunnerError, match="changed while mrunner was submitting"):
        image.build_context(image.recipe(make_sweep(), frozen), frozen)


def test_password_comes_from_the_named_variable(make_sweep, monkeypatch):
    assert image.auth_config(make_sweep().context) is None
    sweep = make_sweep(registry_username="alice", registry_password_env="REGISTRY_PW")
    with pytest.raises(MrunnerError, match="REGISTRY_PW"):
        image.auth_config(sweep.context)
    monkeypatch.setenv("REGISTRY_PW", "pw")
    assert image.auth_config(sweep.context) == {"username": "alice", "password": "pw"}


WHEEL = "/opt/tiny_dep-1.0-py3-none-any.whl"


def wheel_context(dockerfile: str) -> io.BytesIO:
    """A build context of ``dockerfile`` and the tiny wheel as ``tiny.whl``, for a base image holding it."""
    context = io.BytesIO()
    with tarfile.open(fileobj=context, mode="w") as tar:
        for name, data in (("Dockerfile", dockerfile.encode()), ("tiny.whl", _wheel())):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    context.seek(0)
    return context


def _wheel(version: str = "1.0", value: int = 42) -> bytes:
    """A tiny pure-Python wheel pip can install without a network (``tiny_dep.VALUE`` is ``value``)."""
    import base64
    import hashlib
    import zipfile

    files = {
        "tiny_dep/__init__.py": f"VALUE = {value}\n".encode(),
        f"tiny_dep-{version}.dist-info/METADATA": f"Metadata-Version: 2.1\nName: tiny-dep\nVersion: {version}\n".encode(),
        f"tiny_dep-{version}.dist-info/WHEEL": b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = "".join(
        f"{name},sha256={base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b'=').decode()},{len(data)}\n"
        for name, data in files.items()
    )
    files[f"tiny_dep-{version}.dist-info/RECORD"] = (record + f"tiny_dep-{version}.dist-info/RECORD,,\n").encode()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def test_requirements_layer_is_reused_after_a_code_change(mrunner_home, k8s_service, make_sweep, project, tmp_path):
    """Built on the service's dockerd: pip runs once; a code change rebuilds only the code layer; and the
    requirements file, which holds an index's token, is nowhere on the engine's disk once the image is built
    (no layer, no config, no build cache), though pip read it there.

    The dockerd, its build cache and the registry outlive the test and are shared with every other test run
    on the machine: the base image carries this run's own label, so that no layer of the first image can come
    from an earlier run's cache (its push would then send next to nothing), and only this test's own images
    are removed at its end, also when it fails. mrunner's home is the test's own (``note`` writes there what
    `mrunner gc` may remove)."""
    import subprocess
    import uuid

    import docker

    from mrunner.reporter import Reporter

    client = docker.DockerClient(base_url=k8s_service["docker_host"])
    run = uuid.uuid4().hex[:8]
    base = f"mrunner-test/tiny-dep-base:{run}"
    dockerfile = f"FROM {k8s_service['base_image']}\nLABEL org.mrunner.test.run={run}\nCOPY tiny.whl {WHEEL}\n"
    context = wheel_context(dockerfile)
    made = [base]
    try:
        events = list(
            client.api.build(fileobj=context, custom_context=True, tag=base, decode=True, network_mode="none")
        )
        assert not [event for event in events if "error" in event], events[-3:]
        token = f"ghp_{uuid.uuid4().hex}"  # this run's alone: no earlier run can have left it on the disk
        (project / "requirements.txt").write_text(f"--extra-index-url https://me:{token}@127.0.0.1:9/simple\n{WHEEL}\n")
        (project / "src" / "train.py").write_text(f"# {uuid.uuid4().hex}\nimport tiny_dep\nprint(tiny_dep.VALUE)\n")
        sweep = make_sweep(
            base_image=base,
            requirements_file="requirements.txt",
            build_network="none",
            registry_url=f"{k8s_service['registry']}/mrunner-tests",
            docker_host=k8s_service["docker_host"],
        )
        frozen = take(project)
        sweep.snapshot_digest = frozen.digest
        first = image.ensure(sweep, frozen, Reporter(quiet=True))
        made += [first["image"], first.get("timestamp_tag"), first["requirements_image"]]
        root = client.info()["DockerRootDir"]
        holding = subprocess.run(["grep", "-rlsF", token, root], capture_output=True, text=True).stdout.split()
        assert holding == [], holding
        (project / "src" / "train.py").write_text("import tiny_dep\nprint(tiny_dep.VALUE + 1)\n")
        frozen = take(project)
        sweep.snapshot_digest = frozen.digest
        second = image.ensure(sweep, frozen, Reporter(quiet=True))
        made += [second["image"], second.get("timestamp_tag")]
        assert second["requirements_image"] == first["requirements_image"]  # found: pip did not run again
        assert first["built"] and second["built"] and first["image"] != second["image"]

        def layers(reference):
            return [entry["Id"] for entry in client.api.history(reference)]

        # Every layer up to the installed requirements (copied from the build stage, then the masked file) is
        # shared; only the code (and what follows it) differs.
        first_layers, second_layers = layers(first["image"])[::-1], layers(second["image"])[::-1]
        shared = next(i for i, (a, b) in enumerate(zip(first_layers, second_layers)) if a != b)
        steps = [entry["CreatedBy"] for entry in client.api.history(first["image"])[::-1]]
        installed = next(i for i, step in enumerate(steps) if step.endswith(" in / "))  # COPY --from=requirements
        assert steps[installed + 1].endswith(" in /mrunner/requirements.txt "), steps
        assert shared > installed + 1, steps
        assert second["pushed_bytes"] < first["pushed_bytes"]
        output = client.containers.run(second["image"], ["python3", "train.py"], network_mode="none", remove=True)
        assert output.strip() == b"43"
    finally:
        for reference in filter(None, made):
            try:
                client.images.remove(reference, force=True)
            except docker.errors.ImageNotFound:
                pass


@pytest.fixture
def gone_engine():
    """A docker client of an engine that answered its ping and then died (a test's own dockerd, killed)."""
    import shutil

    if shutil.which("dockerd") is None:
        message = "no dockerd on this machine"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    import docker

    from tests.own_dockerd import OwnDockerd

    engine = OwnDockerd()
    try:
        engine.start()
        client = docker.DockerClient(base_url=engine.url)
        client.ping()
        engine.kill()
        yield client
    finally:
        engine.close()


def test_an_engine_gone_before_the_push_or_the_registry_check_is_named_as_docker(gone_engine):
    from mrunner.errors import BackendError
    from mrunner.reporter import Reporter

    with pytest.raises(BackendError, match=r"^the connection to docker was lost while pushing 127\.0\.0\.1:1/p:t: "):
        image._push(gone_engine, "127.0.0.1:1/p", "t", None, Reporter(quiet=True))
    with pytest.raises(BackendError, match=r"^the connection to docker was lost while building or pushing x: "):
        with image._engine("building or pushing x"):
            image._in_registry(gone_engine, "127.0.0.1:1/p:t", None)


@pytest.mark.parametrize(
    ("written", "read"),
    [
        ("-e git+https://github.com/o/r.git#egg=r\n", "git+https://github.com/o/r.git#egg=r\n"),
        ("  --editable=hg+https://h/r#egg=r\n", "  hg+https://h/r#egg=r\n"),
        ("--editable  svn+https://s/r#egg=r\nnumpy\n", "svn+https://s/r#egg=r\nnumpy\n"),
        ("-e ./local\n-e .\n", "-e ./local\n-e .\n"),  # not a checkout: pip reads it as written
        ("numpy\n# -e git+https://x/y\n", "numpy\n# -e git+https://x/y\n"),
    ],
)
def test_an_editable_vcs_requirement_is_installed_plain_by_the_build_stage(make_sweep, project, written, read):
    """Editable, pip would keep the checkout outside what the final stage copies: the image would lack it."""
    (project / "requirements.txt").write_text(written)
    frozen = take(project)
    recipe = image.recipe(make_sweep(requirements_file="requirements.txt"), frozen)
    with image.requirements_context(recipe, "b1") as archive, tarfile.open(fileobj=archive) as tar:
        assert tar.extractfile("requirements.txt").read().decode() == read
    with image.build_context(recipe, frozen) as archive, tarfile.open(fileobj=archive) as tar:
        assert tar.extractfile("code/requirements.txt").read().decode() == written  # the code as it was
