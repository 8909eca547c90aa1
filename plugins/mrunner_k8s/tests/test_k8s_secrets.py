"""A token in the requirements file (an index URL's password, a git URL's user) reaches pip and no pushed layer:
pip runs in a build of its own, never pushed (whose layers holding the file leave the engine: test_k8s_image), and the image holds the requirements file (at
``/mrunner/requirements.txt`` and in the code) with URL credentials masked. Every layer and the config of the
pushed image are read back from the registry and searched for the token, as are the submission's and
status's outputs and the experiment's log; the experiment runs with the requirements installed. On the
loopback cluster, dockerd and registry (tests/services/k8s); pip needs no network (the wheels are in the base)."""

from __future__ import annotations

import gzip
import io
import json
import re
import tarfile
import urllib.request
import uuid
from pathlib import Path

import pytest

from mrunner.testing import ended, logged, write_context
from plugins.mrunner_k8s.tests.test_k8s_cluster import k8s_context
from plugins.mrunner_k8s.tests.test_k8s_image import _wheel

TOKEN = "ghp_Zq8vT0kenK8sS3cret9xWimage"  # token-looking, and nowhere else
REQUIREMENTS = (
    f"--extra-index-url https://mrtest:{TOKEN}@127.0.0.1:9/simple\n"
    f"-i https://__token__:{TOKEN}@127.0.0.1:9/simple\n"
    f"# git+https://{TOKEN}@github.com/example/private.git\n"
    "/opt/tiny_dep-2.0-py3-none-any.whl\n"  # replaces the 1.0 the base image has installed
)
EXPERIMENT = """\
import importlib.metadata, tiny_dep
found = [d.version for d in importlib.metadata.distributions() if d.metadata["Name"] == "tiny-dep"]
shown = [open(path).read().count("****@") for path in ("/mrunner/requirements.txt", "/mrunner/code/requirements.txt")]
print("RAN", tiny_dep.VALUE, ",".join(found), *shown, flush=True)
"""


@pytest.fixture
def base(k8s_service):
    """A base image of this test alone, with tiny_dep 1.0 installed and the wheel of 2.0 at hand."""
    import docker

    client = docker.DockerClient(base_url=k8s_service["docker_host"])
    tag = f"mrunner-test/tiny-dep-base:{uuid.uuid4().hex[:8]}"
    dockerfile = (
        f"FROM {k8s_service['base_image']}\nLABEL org.mrunner.test.run={tag}\n"
        "COPY wheels/ /opt/\nRUN python3 -m pip install --no-index /opt/tiny_dep-1.0-py3-none-any.whl\n"
    )
    context = io.BytesIO()
    with tarfile.open(fileobj=context, mode="w") as tar:
        for name, data in (
            ("Dockerfile", dockerfile.encode()),
            ("wheels/tiny_dep-1.0-py3-none-any.whl", _wheel("1.0", 1)),
            ("wheels/tiny_dep-2.0-py3-none-any.whl", _wheel("2.0", 2)),
        ):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    context.seek(0)
    events = list(client.api.build(fileobj=context, custom_context=True, tag=tag, decode=True, network_mode="none"))
    assert not [event for event in events if "error" in event], events[-3:]
    yield tag
    client.images.remove(tag, force=True)


def pushed_blobs(registry: str, image: str) -> dict[str, bytes]:
    """The pushed image as the registry holds it: its manifest, its config, and each layer uncompressed."""
    repository, tag = image[len(registry) + 1 :].rsplit(":", 1)

    def get(path: str, accept: str = "") -> bytes:
        request = urllib.request.Request(f"http://{registry}/v2/{repository}/{path}", headers={"Accept": accept})
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.read()

    manifest = get(f"manifests/{tag}", "application/vnd.docker.distribution.manifest.v2+json")
    parsed = json.loads(manifest)
    blobs = {"manifest": manifest, "config": get(f"blobs/{parsed['config']['digest']}")}
    for layer in parsed["layers"]:
        blobs[layer["digest"]] = gzip.decompress(get(f"blobs/{layer['digest']}"))
    return blobs


def test_a_token_in_the_requirements_is_in_no_pushed_layer(
    mrunner, mrunner_home, tmp_path, k8s_service, namespace, own_images, base
):
    write_context(
        mrunner_home,
        "test-k8s",
        k8s_context(k8s_service, namespace, registry_url=own_images(namespace), base_image=base, build_network="none"),
    )
    (tmp_path / "requirements.txt").write_text(REQUIREMENTS)
    (tmp_path / "exp.py").write_text(EXPERIMENT)
    mrunner.cwd = tmp_path
    submitted = mrunner("+context=test-k8s", "exp.py", "-m", "i=range(2)")
    assert submitted.returncode == 0, submitted.stderr
    sweep = submitted.stdout.strip().splitlines()[-1]
    (image,) = re.findall(r"pushed (\S+) \(", submitted.stderr)
    found = ended(mrunner, sweep)
    assert [found[i]["state"] for i in range(2)] == ["completed"] * 2, found
    # pip installed the requirements (2.0 replaced the base's 1.0, whose metadata is gone too); both copies of
    # the file the experiment can read have their three URLs' credentials masked
    assert [logged(mrunner, f"{sweep}/{i}", "RAN") for i in range(2)] == [["2", "2.0", "3", "3"]] * 2

    layers = pushed_blobs(k8s_service["registry"], image)
    history = json.loads(layers["config"])["history"]
    steps = [step.get("created_by", "") for step in history]
    # the final stage's steps alone: its uninstall of what the requirements replaced, not the build stage's pip
    assert any("pip uninstall" in step for step in steps) and not any("--root" in step for step in steps), steps
    assert any(b"https://****@127.0.0.1:9/simple" in data for data in layers.values())  # the layers hold the file
    leaked = [name for name, data in layers.items() if TOKEN.encode() in data]
    assert leaked == [], leaked

    outputs = {"submission": submitted.stdout + submitted.stderr}
    for args in (("status",), ("status", "--json"), ("status", sweep, "--json"), ("logs", f"{sweep}/0")):
        shown = mrunner(*args)
        assert shown.returncode == 0, shown.stderr
        outputs[" ".join(args)] = shown.stdout + shown.stderr
    # equal requirements and code: the same image, found in the registry, nothing built
    again = mrunner("+context=test-k8s", "exp.py", "-m", "i=range(2,3)")
    assert again.returncode == 0, again.stderr
    outputs["second submission"] = again.stdout + again.stderr
    assert f"image {image} is already in the registry" in again.stderr and "building image" not in again.stderr
    assert [where for where, text in outputs.items() if TOKEN in text] == []
    # what mrunner wrote on this machine (no Dockerfile, no build context): the records alone, the user's alone
    holding = [p for p in Path(mrunner_home).rglob("*") if p.is_file() and TOKEN.encode() in p.read_bytes()]
    assert all(path.parent.stat().st_mode & 0o077 == 0 for path in holding), holding
