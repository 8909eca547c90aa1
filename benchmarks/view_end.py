"""What ending an attempt's copy-on-write view costs the attempt's slot when the experiment renamed nothing
(``mrunner.codeview``): the wall time from the experiment's end to the point where the wrapper may write the
exit code, the way merged with e19 (``unmount``, then ``settle``) against ``codeview.finish`` (the view left
to the end of the mount namespace, only the settle mark taken off). Root only; prints its lines, for
benchmarks/results-core.md.

    uv run --no-sync python benchmarks/view_end.py [--experiments 100] [--files 0]

Each experiment is a forked process, as the attempt's wrapper is: it mounts the view over a folder of its
own, writes one output file (and ``--files`` more in a folder of its own, for an experiment folder to walk),
then ends the view one way or the other; the two ways alternate.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time

from mrunner import codeview


def end_once(way: str, code: str, base: str, index: int, files: int) -> float:
    """Seconds one forked 'wrapper' took to end its view ``way``."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        took = -1.0
        try:
            folder = os.path.join(base, f"{way}-{index}")
            os.mkdir(folder)
            codeview.mount(code, folder, os.path.join(base, f"work-{way}-{index}"))
            with open(os.path.join(folder, "out.txt"), "w") as stream:
                stream.write("result")
            if files:
                os.mkdir(os.path.join(folder, "outputs"))
                for number in range(files):
                    with open(os.path.join(folder, "outputs", f"{number}.txt"), "w") as stream:
                        stream.write("x")
            start = time.perf_counter()
            if way == "unmount and settle":
                codeview.unmount(folder)
                codeview.settle(folder)
            else:
                codeview.finish(folder)
            took = time.perf_counter() - start
        finally:
            os.write(write, repr(took).encode())
            os._exit(0)
    os.close(write)
    took = float(os.read(read, 64))
    os.close(read)
    os.waitpid(pid, 0)
    return took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experiments", type=int, default=100)
    parser.add_argument("--files", type=int, default=0)
    options = parser.parse_args()
    work = tempfile.mkdtemp(prefix="mrunner-view-end-")
    code = os.path.join(work, "code")
    for folder in ("data", "conf"):
        os.makedirs(os.path.join(code, folder))
        with open(os.path.join(code, folder, "file"), "w") as stream:
            stream.write("x")
    base = os.path.join(work, "experiments")
    os.mkdir(base)
    times: dict[str, list[float]] = {"unmount and settle": [], "codeview.finish": []}
    for index in range(options.experiments):
        for way, got in times.items():
            got.append(end_once(way, code, base, index, options.files))
    print(
        f"{options.experiments} experiments each way, {options.files} extra files, "
        f"load average {' '.join(f'{x:.1f}' for x in os.getloadavg())} at the end"
    )
    shutil.rmtree(work, ignore_errors=True)  # each view went with its process's namespace
    for way, got in times.items():
        tenths = statistics.quantiles(got, n=10)
        print(
            f"{way}: median {statistics.median(got) * 1e3:.2f} ms, 10th-90th percentile "
            f"{tenths[0] * 1e3:.2f}-{tenths[-1] * 1e3:.2f} ms, max {max(got) * 1e3:.2f} ms"
        )


if __name__ == "__main__":
    main()
