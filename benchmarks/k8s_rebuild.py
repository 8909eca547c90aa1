"""Second submission after a code-only change: build time and bytes pushed, against the first.

    /work/main/.venv/bin/python benchmarks/k8s_rebuild.py [--registry auth|plain] [--code-kib N]

Runs the real CLI in this process against the loopback cluster. The project's requirements file installs
a wheel of ``--payload-mb`` MB (random bytes; no network here) that a fresh local base image carries, so the
first submission runs pip, builds every layer and pushes everything the registry lacks (the new base layer,
the installed requirements, the code); the second changes one source line; the third changes nothing.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
import time
import uuid

from k8s_common import (
    WHEEL_PATH,
    delete_namespace,
    heavy_base,
    isolated_home,
    project,
    remove_images,
    service,
    write_context,
)


def submit(folder, *overrides) -> dict:
    from mrunner import cli
    from mrunner.store import Store

    stdout = io.StringIO()
    started = time.perf_counter()
    with contextlib.redirect_stdout(stdout):
        code = cli.main(["+context=bench-k8s", "--quiet", "exp.py", *overrides])
    seconds = time.perf_counter() - started
    if code != 0:
        raise SystemExit(f"mrunner exited {code}")
    sweep = Store().sweep(stdout.getvalue().split()[-1])
    return {"seconds": seconds, **sweep.package}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--registry", choices=("auth", "plain"), default="auth")
    parser.add_argument("--code-kib", type=int, default=512)
    parser.add_argument("--payload-mb", type=int, default=40, help="MB of the wheel the requirements install")
    options = parser.parse_args()
    k8s = service()
    home = isolated_home()
    namespace = f"mrb-{uuid.uuid4().hex[:6]}"
    keys = {"project": "bench-rebuild"}
    first = second = {}
    keys.update(
        base_image=heavy_base(k8s, options.payload_mb), requirements_file="requirements.txt", build_network="none"
    )
    if options.registry == "auth":
        import os

        os.environ["MRB_REGISTRY_PASSWORD"] = open(k8s["registry_password_file"]).read().strip()
        keys.update(
            registry_url=f"{k8s['auth_registry']}/mrunner-bench",
            registry_username=k8s["registry_username"],
            registry_password_env="MRB_REGISTRY_PASSWORD",
        )
    write_context(k8s, namespace, **keys)
    folder = project(home, options.code_kib)
    (folder / "requirements.txt").write_text(WHEEL_PATH + "\n")
    import os

    os.chdir(folder)
    try:
        first = submit(folder, "lr=0.1")
        module = folder / "lib" / "module.py"
        module.write_text(module.read_text() + "LEARNING_RATE_SCALE = 2\n")
        second = submit(folder, "lr=0.1")
        unchanged = submit(folder, "lr=0.2")
    finally:
        delete_namespace(k8s, namespace)
        remove_images(
            k8s,
            [
                keys["base_image"],
                *(f.get(key) for f in (first, second) for key in ("image", "timestamp_tag", "requirements_image")),
            ],
        )
    rows = [("first submission", first), ("after a code-only change", second), ("unchanged code", unchanged)]
    print(
        f"registry {options.registry}, project code {options.code_kib} KiB, base {k8s['base_image']} + a {options.payload_mb} MB wheel the requirements install"
    )
    print("| submission | wall s | build s | pushed MB | built |")
    print("|---|---|---|---|---|")
    for label, facts in rows:
        print(
            f"| {label} | {facts['seconds']:.2f} | {facts.get('build_seconds', 0):.2f} | "
            f"{facts['pushed_bytes'] / 1e6:.2f} | {facts['built']} |"
        )
    build_ratio = second.get("build_seconds", 0) / first["build_seconds"]
    push_ratio = second["pushed_bytes"] / first["pushed_bytes"]
    print(f"second/first: build {build_ratio:.0%}, bytes pushed {push_ratio:.0%}")
    json.dump({"first": first, "second": second, "unchanged": unchanged}, sys.stderr)
    print(file=sys.stderr)


if __name__ == "__main__":
    main()
