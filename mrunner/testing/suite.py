"""The shared backend suite: what every backend must do, as a user sees it through the command line.

A backend's tests subclass ``BackendTestSuite`` and give a ``backend_context`` fixture that writes a context
file into the test's mrunner home and returns its name (as Hydra's launcher plugins subclass Hydra's
``LauncherTestSuite``)::

    class TestMyBackend(BackendTestSuite):
        @pytest.fixture
        def backend_context(self, mrunner_home, tmp_path):
            return write_context(mrunner_home, "mine", {"backend": "mine", "storage_dir": str(tmp_path)})

The ``mrunner`` and ``mrunner_home`` fixtures come from mrunner's pytest plugin (``mrunner.testing.plugin``),
which pytest loads by itself wherever mrunner is installed. Each experiment prints one ``PROBE`` line of JSON
that says what it saw, so the suite reads only what ``mrunner logs`` and ``mrunner status --json`` show: it
works for a backend whose experiments run on another machine.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import signal
import stat
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from mrunner.testing.commands import start_mrunner, stopped_after
from mrunner.testing.sweeps import experiments
from mrunner.testing.waiting import wait_for

PROBE = r"""
import hashlib, json, os, sys, time
from mrunner import get_configuration
import helper  # a module of the project: imports work from the experiment's folder

config = get_configuration()
fresh = not os.path.exists("out.txt") and not os.listdir("outputs")
with open("out.txt", "w") as out:
    out.write(str(config.i))
with open(os.path.join("outputs", "o.txt"), "w") as out:
    out.write(str(config.i))
done_file = os.path.join(os.environ["MRUNNER_CHECKPOINT_DIR"], "done")
if config.get("payload"):  # results in nested folders, one of 300 KB, for `mrunner pull`
    os.makedirs(os.path.join("outputs", "nested", "deep"), exist_ok=True)
    with open(os.path.join("outputs", "nested", "deep", "big.bin"), "wb") as out:
        out.write(hashlib.sha256(str(config.i).encode()).digest() * 9600)
if config.get("report"):  # metrics for `mrunner results`: score = 10 i + g + step
    import mrunner
    for step in range(3):
        mrunner.report({"score": 10 * config.i + config.get("g", 0) + step}, step=step)
for line in range(int(config.get("lines", 0))):
    print("line", line, flush=True)
    time.sleep(0.2)
while config.get("hold"):  # held until cancelled, its code read all along: a collection while it runs must leave it
    open("data/input.txt").read(), open("helper.py").read()
    time.sleep(0.1)
secret = os.environ.get("MRUNNER_SUITE_SECRET")
probe = {
    "i": config.i, "fresh": fresh, "data": open("data/input.txt").read().strip(), "helper": helper.VALUE,
    "cwd_is_experiment_dir": os.path.realpath(os.getcwd()) == os.path.realpath(os.environ["MRUNNER_EXPERIMENT_DIR"]),
    "attempt": int(os.environ["MRUNNER_ATTEMPT"]), "checkpoint_dir": os.environ["MRUNNER_CHECKPOINT_DIR"],
    "own_files": [open("out.txt").read(), open(os.path.join("outputs", "o.txt")).read()],
    "secret_sha": hashlib.sha256(secret.encode()).hexdigest() if secret else None,
}
if config.get("fail_first") == config.i and probe["attempt"] == 0 or config.get("fail_always") == config.i:
    print("PROBE " + json.dumps(probe), flush=True)
    sys.exit(3)
# Completing is one step: a stop that comes while it completes waits until the process is gone, and there is no
# interpreter teardown after the mark, so "done" counts the attempts that ended by themselves.
import signal
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT, signal.SIGHUP})
with open(done_file, "a") as done:
    done.write("x")
probe["done"] = len(open(done_file).read())
print("PROBE " + json.dumps(probe), flush=True)
os._exit(0)
"""


class BackendTestSuite:
    """Every backend passes these tests against its real platform."""

    #: Seconds a small sweep may take from submission to its end on this backend.
    timeout: float = 300.0

    @pytest.fixture
    def backend_context(self) -> str:
        raise NotImplementedError("a backend's suite gives a `backend_context` fixture returning a context name")

    @pytest.fixture
    def project(self, tmp_path: Path, mrunner) -> Path:
        folder = tmp_path / "project"
        (folder / "data").mkdir(parents=True)
        (folder / "outputs").mkdir()
        (folder / "probe.py").write_text(PROBE)
        (folder / "helper.py").write_text("VALUE = 42\n")
        (folder / "data" / "input.txt").write_text("project data\n")
        (folder / "outputs" / ".gitkeep").write_text("")
        mrunner.cwd = folder
        return folder

    # -- helpers -----------------------------------------------------------------------------------------

    def submit(self, mrunner, context: str, *args: str, env: dict | None = None) -> str:
        result = mrunner(f"+context={context}", "probe.py", *args, env=env, timeout=self.timeout)
        assert result.stdout.strip(), result.stderr
        return result.stdout.strip().splitlines()[-1]

    def status(self, mrunner, sweep: str) -> dict[int, dict]:
        return experiments(mrunner, sweep, timeout=self.timeout)

    def while_waiting(self, mrunner, sweep: str, states: dict[int, dict]) -> None:
        """Called at each look while a test waits for a state: a backend's suite may hurry its platform along
        here where it waits on purpose (Slurm holds a requeued task for two minutes)."""

    def wait_for(self, mrunner, sweep: str, condition: Callable[[dict[int, dict]], bool]) -> dict[int, dict]:
        """The sweep's states (``status``) once ``condition`` holds for them."""

        def look() -> dict[int, dict]:
            states = self.status(mrunner, sweep)
            if not condition(states):
                self.while_waiting(mrunner, sweep, states)
            return states

        return wait_for(look, condition, timeout=self.timeout, every=0.5, what=f"sweep {sweep} to reach the state")

    def ended(self, mrunner, sweep: str) -> dict[int, dict]:
        terminal = {"completed", "failed", "cancelled", "timeout", "preempted", "lost"}
        return self.wait_for(mrunner, sweep, lambda s: all(e["state"] in terminal for e in s.values()))

    def probe(self, mrunner, sweep: str, index: int) -> dict:
        text = mrunner("logs", f"{sweep}/{index}", timeout=self.timeout).stdout
        lines = [line for line in text.splitlines() if line.startswith("PROBE ")]
        assert lines, f"experiment {sweep}/{index} printed no probe: {text!r}"
        return json.loads(lines[-1][len("PROBE ") :])

    # -- the contract ------------------------------------------------------------------------------------

    def test_a_grid_runs_each_point_once_in_its_own_folder(self, mrunner, backend_context, project):
        sweep = self.submit(mrunner, backend_context, "-m", "i=range(3)", "--wait")
        states = self.ended(mrunner, sweep)
        assert [states[i]["state"] for i in range(3)] == ["completed"] * 3
        for index in range(3):
            seen = self.probe(mrunner, sweep, index)
            assert seen["i"] == index and seen["fresh"] and seen["own_files"] == [str(index)] * 2
            assert seen["cwd_is_experiment_dir"] and seen["attempt"] == 0 and seen["done"] == 1
            assert seen["data"] == "project data" and seen["helper"] == 42
        checkpoints = {self.probe(mrunner, sweep, index)["checkpoint_dir"] for index in range(3)}
        assert len(checkpoints) == 3
        again = self.submit(mrunner, backend_context, "-m", "i=range(2)", "+second=1", "--wait")
        assert again != sweep
        self.ended(mrunner, again)
        for index in range(2):  # a later sweep of the same code finds none of the first one's files
            seen = self.probe(mrunner, again, index)
            assert seen["fresh"] and seen["own_files"] == [str(index)] * 2

    def test_failure_then_resume_runs_exactly_the_failed(self, mrunner, backend_context, project):
        sweep = self.submit(mrunner, backend_context, "-m", "i=range(3)", "fail_first=1", "--wait")
        states = self.ended(mrunner, sweep)
        assert [states[i]["state"] for i in range(3)] == ["completed", "failed", "completed"]
        assert states[1]["exit_code"] == 3
        resumed = mrunner("resume", sweep, "--wait", timeout=self.timeout)
        assert resumed.returncode == 0, resumed.stderr
        states = self.ended(mrunner, sweep)
        assert [states[i]["state"] for i in range(3)] == ["completed"] * 3
        assert [states[i]["attempt"] for i in range(3)] == [0, 1, 0]
        seen = self.probe(mrunner, sweep, 1)
        assert seen["attempt"] == 1 and seen["done"] == 1
        first = self.probe(mrunner, sweep, 0)
        assert seen["checkpoint_dir"] != first["checkpoint_dir"]

    def test_a_failure_is_retried_as_the_next_attempt_within_retry_failed(self, mrunner, backend_context, project):
        """retry_failed=1: a script that fails once completes in attempt 1, from the same folders, its first
        log kept; one that always fails ends failed with its exit code once the retry is spent."""
        retry = ["fail_first=1", "fail_always=2", "context.retry_failed=1"]
        sweep = self.submit(mrunner, backend_context, "-m", "i=range(3)", *retry, "--detach")
        states = self.ended(mrunner, sweep)
        shown = [(states[i]["state"], states[i]["exit_code"], states[i]["attempt"]) for i in range(3)]
        assert shown == [("completed", 0, 0), ("completed", 0, 1), ("failed", 3, 1)], states
        ends = {i: [(a["number"], a["cause"], a["end"], a["exit_code"]) for a in states[i]["attempts"]] for i in (1, 2)}
        assert ends[1] == [(0, "submitted", "failed", 3), (1, "retried", "completed", 0)]
        assert ends[2] == [(0, "submitted", "failed", 3), (1, "retried", "failed", 3)]
        assert [a["end"] for a in states[0]["attempts"]] == ["completed"]  # its neighbours ran once
        second = self.probe(mrunner, sweep, 1)
        assert second["attempt"] == 1 and not second["fresh"] and second["done"] == 1  # its own folder, again
        first = mrunner("logs", f"{sweep}/1", "--attempt", "0", timeout=self.timeout)
        assert first.returncode == 0, first.stderr
        (line,) = [line for line in first.stdout.splitlines() if line.startswith("PROBE ")]
        earlier = json.loads(line[len("PROBE ") :])
        assert earlier["attempt"] == 0 and earlier["checkpoint_dir"] == second["checkpoint_dir"]

    def test_cancel_of_one_then_of_all(self, mrunner, backend_context, project):
        sweep = self.submit(mrunner, backend_context, "-m", "i=range(2)", "hold=1", "--detach")
        self.wait_for(mrunner, sweep, lambda s: all(e["state"] == "running" for e in s.values()))
        one = mrunner("cancel", f"{sweep}/0", timeout=self.timeout)
        assert one.returncode == 0, one.stderr
        states = self.status(mrunner, sweep)
        assert states[0]["state"] == "cancelled" and states[1]["state"] == "running"
        everything = mrunner("cancel", sweep, timeout=self.timeout)
        assert everything.returncode == 0, everything.stderr
        states = self.ended(mrunner, sweep)
        assert [states[i]["state"] for i in range(2)] == ["cancelled", "cancelled"]
        if self.stopped_exit_codes:  # beside `cancelled`, what the script did with the stop: SIGTERM killed it
            wait_for(lambda: [e["exit_code"] for e in self.status(mrunner, sweep).values()] == [-15, -15])

    def test_logs_follow_until_the_end(self, mrunner, backend_context, project):
        sweep = self.submit(mrunner, backend_context, "i=0", "lines=5", "--detach")
        followed = mrunner("logs", f"{sweep}/0", "-f", timeout=self.timeout)
        assert followed.returncode == 0, followed.stderr
        assert [f"line {n}" for n in range(5)] == [
            line for line in followed.stdout.splitlines() if line.startswith("line")
        ]
        assert "PROBE " in followed.stdout
        # `logs -f` ends at the experiment's end (its exit code), which its backend may record a moment later
        assert self.ended(mrunner, sweep)[0]["state"] == "completed"

    def test_an_interrupted_submission_then_resume_runs_each_once(self, mrunner, backend_context, project):
        process = start_mrunner(project, f"+context={backend_context}", "probe.py", "-m", "i=range(4)", "lines=3")
        deadline = time.monotonic() + self.timeout
        sweep = None
        while sweep is None:  # interrupt as soon as the sweep is recorded: mid-submission on a remote backend
            assert time.monotonic() < deadline, "the submission recorded no sweep"
            listing = json.loads(mrunner("status", "--json").stdout)
            sweep = listing[0]["sweep"]["id"] if listing else None
        process.send_signal(signal.SIGINT)  # a fast backend may have handed everything over already
        out, err = process.communicate(timeout=self.timeout)
        assert "Traceback" not in err, err
        resumed = mrunner("resume", sweep, "--wait", timeout=self.timeout)
        assert resumed.returncode == 0, resumed.stderr
        states = self.ended(mrunner, sweep)
        assert [states[i]["state"] for i in range(4)] == ["completed"] * 4
        for index in range(4):  # none completed twice, none lost
            seen = self.probe(mrunner, sweep, index)
            assert seen["done"] == 1, (index, seen, states[index], out, err)

    def test_an_interrupted_submission_resumed_after_an_edit_runs_the_submitted_code_once(
        self, mrunner, mrunner_home, backend_context, project
    ):
        """Stopped (as by Ctrl-C) once the backend packaged and prepared the sweep, before anything was handed
        over; the project then edited, and the context file too (left unreadable). `resume` without
        ``--current-code`` runs every experiment once, with the code and the context as submitted (the
        records', never the file's): from this machine's copy of the snapshot, or, where the backend made
        none, from what it packaged (``Backend.packaged``: an image in a registry, a folder in the cluster's
        storage)."""
        args = (f"+context={backend_context}", "probe.py", "-m", "i=range(2)")
        sweep, _ = stopped_after(mrunner, "mrunner.plugins.sweep_submitted", *args, timeout=self.timeout)
        assert {entry["state"] for entry in self.status(mrunner, sweep).values()} == {"cancelled"}
        (project / "helper.py").write_text("VALUE = 43  # edited after the submission\n")
        context_file = mrunner_home / "config" / "mrunner" / "context" / f"{backend_context}.yaml"
        context_file.write_text("backend: [an edit left half done\n")
        resumed = mrunner("resume", sweep, "--wait", timeout=self.timeout)
        assert resumed.returncode == 0, resumed.stderr
        states = self.ended(mrunner, sweep)
        assert [states[i]["state"] for i in range(2)] == ["completed"] * 2, states
        for index in range(2):
            seen = self.probe(mrunner, sweep, index)
            assert (seen["helper"], seen["done"], seen["i"]) == (42, 1, index), seen

    def test_two_identical_submissions_at_once_run_each_experiment_once(self, mrunner, backend_context, project):
        both = [
            start_mrunner(project, f"+context={backend_context}", "probe.py", "-m", "i=range(3)", "--wait")
            for _ in range(2)
        ]
        outputs = [process.communicate(timeout=self.timeout) for process in both]
        assert all(process.returncode == 0 for process in both), outputs
        sweeps = {out.strip().splitlines()[-1] for out, _ in outputs if out.strip()}
        ran: list[int] = []
        for sweep in sweeps:
            for entry in self.ended(mrunner, sweep).values():
                ran.append(entry["parameters"]["i"])
        assert sorted(ran) == [0, 1, 2]

    def test_a_secret_reaches_the_experiment_and_nothing_else(self, mrunner, mrunner_home, backend_context, project):
        value = "s3cr3t-" + hashlib.sha256(os.urandom(16)).hexdigest()[:20]
        env = {"MRUNNER_SUITE_SECRET": value}
        secrets = ["context.secrets=[MRUNNER_SUITE_SECRET]"]
        dry = mrunner(f"+context={backend_context}", "probe.py", "i=0", *secrets, "--dry-run", env=env)
        assert dry.returncode == 0, dry.stderr
        result = mrunner(
            f"+context={backend_context}", "probe.py", "i=0", *secrets, "--wait", env=env, timeout=self.timeout
        )
        sweep = result.stdout.strip().splitlines()[-1]
        self.ended(mrunner, sweep)
        assert self.probe(mrunner, sweep, 0)["secret_sha"] == hashlib.sha256(value.encode()).hexdigest()
        shown = [dry.stdout, dry.stderr, result.stdout, result.stderr, mrunner("status", sweep, "--json").stdout]
        shown.append(mrunner("logs", f"{sweep}/0").stdout)
        assert not any(value in text for text in shown)
        for path in (mrunner_home / "data").rglob("*"):
            if path.is_file():
                assert value.encode() not in path.read_bytes(), f"the secret was written into {path}"

    # -- results back and clean-up -------------------------------------------------------------------------

    def code_folder_exists(self, mrunner, sweep: str) -> bool | None:
        """Whether the sweep's code folder is still on the backend (``None``: this suite cannot tell)."""
        return None

    #: Whether the backend shows a cancelled experiment's own exit code (-N for a death by signal N), as its
    #: attempt wrapper notes it (``mrunner.layout.read_stopped_code``); the cancel test then checks it.
    stopped_exit_codes: bool = False

    #: Whether the backend's pull streams files and writes each aside (``mrunner.transfer.Receiver``), which
    #: the interrupted-pull test relies on; a backend that links or copies local files atomically says False.
    pull_streams: bool = True

    def interrupt_a_pull(self, sweep: str, folder: Path, project: Path) -> None:
        """Interrupt `mrunner pull` with Ctrl-C's SIGINT while it writes ``folder/big.bin``: a FIFO stands where the
        receiver writes that file aside, so the pull blocks there until the test reads it."""
        import threading

        folder.mkdir(parents=True)
        fifo = folder / ".big.bin.mrunner-part"
        os.mkfifo(fifo)
        process = start_mrunner(project, "pull", sweep, "--to", str(folder.parents[3]))
        opened: list = []
        reader = threading.Thread(target=lambda: opened.append(fifo.open("rb")), daemon=True)
        reader.start()  # returns once the pull opens the file to write it
        reader.join(self.timeout)
        if reader.is_alive():  # the pull never came to it: let the reader go, then fail
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
            process.kill()
            raise AssertionError(f"the pull never wrote big.bin: {process.communicate()}")
        with opened[0] as stream:  # read to its end: the pull is cut off by Ctrl-C, never by a closed pipe
            assert stream.read(1000), "the pull wrote nothing of big.bin"
            process.send_signal(signal.SIGINT)
            threading.Thread(target=stream.read, daemon=True).start()  # what it flushes as it stops
            _, err = process.communicate(timeout=self.timeout)
        assert process.returncode == 130 and "Traceback" not in err, err
        fifo.unlink()
        fifo.write_bytes(b"half a file")  # what a cut-off pull leaves on a disk: the next one replaces it

    @staticmethod
    def pulled(folder: Path) -> dict[str, tuple[int, int]]:
        """Every file below ``folder``: relative path -> (inode, mtime_ns)."""
        found = {}
        for path in folder.rglob("*"):
            if path.is_file() or path.is_symlink():
                info = path.lstat()
                found[path.relative_to(folder).as_posix()] = (info.st_ino, info.st_mtime_ns)
        return found

    def test_pull_brings_outputs_once_and_completes_an_interrupted_pull(
        self, mrunner, backend_context, project, tmp_path
    ):
        """Backend.pull and Backend.output_dirs: nested folders, a 300 KB file, only whole files after an interrupt,
        then a complete pull, then one that transfers and rewrites nothing."""
        sweep = self.submit(mrunner, backend_context, "-m", "i=range(2)", "payload=1", "--wait")
        states = self.ended(mrunner, sweep)
        names = {i: f"{i}-{states[i]['name']}" for i in range(2)}
        shown = self.status(mrunner, sweep)
        assert all(shown[i]["output_dir"] for i in range(2)), shown
        detail = mrunner("status", f"{sweep}/1", timeout=self.timeout)
        assert "output folder: " in detail.stdout, detail.stdout
        big = {i: hashlib.sha256(str(i).encode()).digest() * 9600 for i in range(2)}
        target = tmp_path / "results"
        if self.pull_streams:
            self.interrupt_a_pull(sweep, target / names[1] / "outputs" / "nested" / "deep", project)
            assert not (target / names[1] / "outputs" / "nested" / "deep" / "big.bin").exists()
            for path in target.rglob("*"):  # what is in place is whole
                if path.name == "out.txt":
                    assert path.read_text() == path.parent.name.split("-", 1)[0]
                if path.name == "big.bin":
                    assert path.read_bytes() == big[int(path.relative_to(target).parts[0].split("-")[0])]
        first = mrunner("pull", sweep, "--to", str(target), timeout=self.timeout)
        assert first.returncode == 0, first.stderr
        deep = target / names[1] / "outputs" / "nested" / "deep"
        assert stat.S_ISREG((deep / "big.bin").lstat().st_mode) and not (deep / ".big.bin.mrunner-part").exists()
        for index in range(2):
            folder = target / names[index]
            assert (folder / "out.txt").read_text() == str(index)
            assert (folder / "outputs" / "o.txt").read_text() == str(index)
            assert (folder / "outputs" / "nested" / "deep" / "big.bin").read_bytes() == big[index]
            assert not (folder / "probe.py").exists() and not (folder / "data").exists()  # links to the code
        before = self.pulled(target)
        again = mrunner("pull", sweep, "--to", str(target), timeout=self.timeout)
        assert again.returncode == 0 and "pulled 0 files" in again.stdout, again.stdout + again.stderr
        assert self.pulled(target) == before  # nothing rewritten
        default = mrunner("pull", f"{sweep}/0", "--include", "*.bin", timeout=self.timeout)
        assert default.returncode == 0, default.stderr
        only = self.pulled(project / "mrunner-results" / sweep)
        assert list(only) == [f"{names[0]}/outputs/nested/deep/big.bin"], only
        none = mrunner("pull", sweep, "--include", "*.ckpt", "--include", "*.bin", timeout=self.timeout)
        assert none.returncode == 0 and "--include '*.ckpt' matched no file" in none.stderr, none.stderr
        assert "'*.bin'" not in none.stderr, none.stderr  # matched, if only files found unchanged

    def test_results_bring_back_only_the_metrics_and_only_once(
        self, mrunner, mrunner_home, backend_context, project, tmp_path
    ):
        """`mrunner results` through the backend's pull (or its summaries, ``Backend.summaries``): the table's
        numbers, only the metrics files (or their summaries) in mrunner's data folder, and a second call that
        rewrites none of them; then `--curves` brings the files back and every aggregate stays the same."""
        sweep = self.submit(mrunner, backend_context, "-m", "i=range(2)", "g=0,1", "report=1", "payload=1", "--wait")
        self.ended(mrunner, sweep)
        shown = mrunner("results", sweep, "--over", "g", "--json", timeout=self.timeout)
        assert shown.returncode == 0, shown.stderr
        assert [(r["i"], r["score"], r["score_std"], r["n"]) for r in json.loads(shown.stdout)] == [
            (0, 2.5, pytest.approx(0.7071, abs=1e-4), 2),
            (1, 12.5, pytest.approx(0.7071, abs=1e-4), 2),
        ]
        table = {how: self.results(mrunner, sweep, "--agg", how) for how in ("last", "min", "max", "mean")}
        assert [row["score"] for row in table["mean"]] == [1.0, 2.0, 11.0, 12.0], table
        cache = mrunner_home / "data" / "mrunner" / "metrics" / sweep
        first = self.pulled(cache)
        files = sorted(path.split("/", 1)[1] for path in first if not path.startswith("."))
        summaries = self.summarised(cache)
        assert files == ["mrunner-metrics.jsonl"] * 4 or (not files and len(summaries) == 4), first
        again = mrunner("results", sweep, "--sort=-score", timeout=self.timeout)
        assert again.returncode == 0, again.stderr
        assert [line.split()[0] for line in again.stdout.splitlines()[3:]] == ["3", "2", "1", "0"], again.stdout
        kept = {path: mark for path, mark in self.pulled(cache).items() if path != ".fetched.json"}
        assert kept == {path: mark for path, mark in first.items() if path != ".fetched.json"}  # nothing rewritten
        if importlib.util.find_spec("matplotlib") is None:
            return  # the curves need mrunner[plot]: a backend's own suite may run without it
        drawn = mrunner("results", sweep, "--curves", "score", "-o", str(tmp_path / "curves.png"), timeout=self.timeout)
        assert drawn.returncode == 0 and (tmp_path / "curves.png").stat().st_size, drawn.stderr
        files = sorted(path.split("/", 1)[1] for path in self.pulled_metrics(cache))
        assert files == ["mrunner-metrics.jsonl"] * 4 and not self.summarised(cache), self.pulled(cache)
        assert {how: self.results(mrunner, sweep, "--agg", how) for how in table} == table

    def results(self, mrunner, sweep: str, *options: str) -> list[dict]:
        shown = mrunner("results", sweep, "--json", *options, timeout=self.timeout)
        assert shown.returncode == 0, shown.stderr
        return json.loads(shown.stdout)

    @staticmethod
    def summarised(cache: Path) -> dict:
        """The experiments whose metrics file `results` holds as a summary (``mrunner.summaries``)."""
        from mrunner import summaries

        return summaries.load(cache)

    def pulled_metrics(self, cache: Path) -> dict[str, tuple[int, int]]:
        """The experiments' files in ``results``' cache of a sweep: every file but what mrunner keeps there about
        them (``.fetched.json``, ``.curves.marshal``, ``.summaries.marshal``: names starting with a dot at the top)."""
        return {path: mark for path, mark in self.pulled(cache).items() if not path.startswith(".")}

    def test_pull_of_an_unknown_sweep_or_an_experiment_never_started(self, mrunner, backend_context, project):
        unknown = mrunner("pull", "nosuchsweep", timeout=self.timeout)
        assert unknown.returncode != 0 and "no sweep or experiment" in unknown.stderr
        assert "Traceback" not in unknown.stderr

    def test_gc_while_a_sweep_runs_keeps_it_and_the_ended_results(self, mrunner, backend_context, project, tmp_path):
        """Backend.gc: what a running sweep needs stays, the ended sweeps' code goes, their results stay. The running
        experiment is held until cancelled, not timed, so that a slow collection cannot outlast it."""
        ended = self.submit(mrunner, backend_context, "-m", "i=range(2)", "--wait")
        self.ended(mrunner, ended)
        (project / "helper.py").write_text("VALUE = 42  # changed: another code snapshot\n")
        running = self.submit(mrunner, backend_context, "i=0", "hold=1", "--detach")
        self.wait_for(mrunner, running, lambda s: s[0]["state"] == "running")
        dry = mrunner("gc", "--older-than", "0", "--dry-run", timeout=self.timeout)
        assert dry.returncode == 0 and "would free" in dry.stdout, dry.stdout + dry.stderr
        if self.code_folder_exists(mrunner, ended) is not None:
            assert self.code_folder_exists(mrunner, ended)
        collected = mrunner("gc", "--older-than", "0", timeout=self.timeout)
        assert collected.returncode == 0 and "freed" in collected.stdout, collected.stdout + collected.stderr
        assert self.status(mrunner, running)[0]["state"] == "running"
        if self.code_folder_exists(mrunner, ended) is not None:
            assert not self.code_folder_exists(mrunner, ended)
            assert self.code_folder_exists(mrunner, running)
        # held, it reads its data and code until the cancel: it failed if the collection took either
        cancelled = mrunner("cancel", running, timeout=self.timeout)
        assert cancelled.returncode == 0, cancelled.stderr
        assert self.ended(mrunner, running)[0]["state"] == "cancelled"
        pulled = mrunner("pull", ended, "--to", str(tmp_path / "after-gc"), timeout=self.timeout)
        assert pulled.returncode == 0, pulled.stderr
        assert sorted(p.name for p in (tmp_path / "after-gc").glob("*/out.txt")) == ["out.txt", "out.txt"]
