"""The MLflow tracker against a real `mlflow server` (tests/services/mlflow/start.sh): one run per experiment
across its attempts, parameters and reported metrics with their steps, the script's own `mlflow.start_run()`
joining it, credentials only as secrets, and a server that does not answer refused before anything is recorded."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from mrunner.testing import ended, write_context

SCRIPT = """
import hashlib, os, sys, mlflow, mrunner
c = mrunner.get_configuration()
with mlflow.start_run() as own:  # the script's own run: mrunner's, continued
    mlflow.log_param("own_param", "yes")
    for step in range(3):
        mrunner.report({"loss": c.lr * (3 - step) + mrunner.attempt()}, step=step + 2 * mrunner.attempt())
token = os.environ.get("MLFLOW_TRACKING_TOKEN")
print("TOKEN", hashlib.sha256(token.encode()).hexdigest() if token else None, "RUN", own.info.run_id)
if c.lr == 0.2 and mrunner.attempt() == 0:
    sys.exit(3)
"""


@pytest.fixture
def tracked(mlflow_service, mrunner_home, tmp_path, mrunner) -> tuple[str, str]:
    """A local context tracking into a fresh MLflow experiment; returns (context, experiment name)."""
    experiment = f"mrunner-test-{uuid.uuid4().hex[:8]}"
    keys = {
        "backend": "local",
        "mlflow": True,
        "mlflow_tracking_uri": mlflow_service["tracking_uri"],
        "mlflow_experiment": experiment,
        "retry_failed": 1,
    }
    (tmp_path / "train.py").write_text(SCRIPT)
    return write_context(mrunner_home, "tracked", keys), experiment


def runs_of(uri: str, experiment: str) -> list:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    found = client.get_experiment_by_name(experiment)
    return client.search_runs([found.experiment_id]) if found else []


def test_one_run_per_experiment_across_attempts_with_params_and_steps(tracked, mlflow_service, mrunner, mrunner_home):
    context, experiment = tracked
    token = "tok-" + uuid.uuid4().hex
    done = mrunner(
        f"+context={context}", "train.py", "-m", "lr=0.1,0.2", "--wait", env={"MLFLOW_TRACKING_TOKEN": token}
    )
    assert done.returncode in (0, 1), done.stderr
    sweep = done.stdout.strip().splitlines()[-1]
    states = json.loads(mrunner("status", sweep, "--json").stdout)["experiments"]
    assert [(e["state"], e["attempt"]) for e in states] == [("completed", 0), ("completed", 1)]
    uri = mlflow_service["tracking_uri"]
    found = sorted(runs_of(uri, experiment), key=lambda run: run.data.params["lr"])
    assert len(found) == 2  # the retried experiment continued its run
    assert [run.info.run_name for run in found] == ["train", "train"]
    assert all(run.data.tags["mrunner.sweep"] == sweep for run in found)
    assert [run.data.tags["mrunner.experiment"] for run in found] == [f"{sweep}/0", f"{sweep}/1"]
    assert [run.data.params["lr"] for run in found] == ["0.1", "0.2"]
    assert all(run.data.params["own_param"] == "yes" for run in found)  # logged through the script's start_run
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    history = sorted((m.step, round(m.value, 6)) for m in client.get_metric_history(found[1].info.run_id, "loss"))
    assert history == [(0, 0.6), (1, 0.4), (2, 0.2), (2, 1.6), (3, 1.4), (4, 1.2)]  # both attempts, by step
    for index in range(2):
        log = mrunner("logs", f"{sweep}/{index}").stdout
        assert f"TOKEN {hashlib.sha256(token.encode()).hexdigest()} RUN {found[index].info.run_id}" in log
    shown = [done.stdout, done.stderr, mrunner("status", sweep, "--json").stdout]
    assert not any(token in text for text in shown)
    for path in (mrunner_home / "data").rglob("*"):
        if path.is_file() and not path.is_symlink():
            assert token.encode() not in path.read_bytes(), f"the token was written into {path}"


def test_a_script_that_reports_before_its_own_start_run_joins_mrunners_run(tracked, mlflow_service, mrunner, tmp_path):
    """Without get_configuration(), the first report finds the run (on the sender's thread, the report waiting
    for it while the server answers), so the script's own mlflow.start_run() right after continues it."""
    context, experiment = tracked
    (tmp_path / "train.py").write_text(
        "import mlflow, mrunner\n"
        "mrunner.report({'loss': 1.0}, step=0)\n"
        "with mlflow.start_run():\n"
        "    mlflow.log_param('own_param', 'yes')\n"
        "mrunner.report({'loss': 0.5}, step=1)\n"
    )
    done = mrunner(f"+context={context}", "train.py", "lr=0.1", "--wait")
    assert done.returncode == 0, done.stderr
    (run,) = runs_of(mlflow_service["tracking_uri"], experiment)
    assert run.data.params["own_param"] == "yes" and run.data.params["lr"] == "0.1"
    from mlflow.tracking import MlflowClient

    history = MlflowClient(mlflow_service["tracking_uri"]).get_metric_history(run.info.run_id, "loss")
    assert sorted((point.step, point.value) for point in history) == [(0, 1.0), (1, 0.5)]


def test_a_report_without_a_step_is_logged_live_at_the_step_results_reads(tracked, mlflow_service, mrunner, tmp_path):
    """A report without a step goes, live, where `results` and the deferred upload put it: after the highest step
    its metric reached (0, 1, ... when none has one). Live MLflow logged each at step 0, so the same script gave
    another history live than deferred, and a catch-up replay sent those points again at other steps."""
    context, experiment = tracked
    (tmp_path / "train.py").write_text(
        "import mrunner\n"
        "for step in range(3):\n"
        "    mrunner.report({'loss': 10.0 - step}, step=step)\n"
        "mrunner.report({'loss': 0.5, 'acc': 0.25})\n"
        "mrunner.report({'acc': 0.75})\n"
    )
    done = mrunner(f"+context={context}", "train.py", "lr=0.1", "--wait")
    assert done.returncode == 0, done.stderr
    (run,) = runs_of(mlflow_service["tracking_uri"], experiment)
    from mlflow.tracking import MlflowClient

    tracker = MlflowClient(mlflow_service["tracking_uri"])
    logged = {
        key: sorted((point.step, point.value) for point in tracker.get_metric_history(run.info.run_id, key))
        for key in ("loss", "acc")
    }
    assert logged == {"loss": [(0, 10.0), (1, 9.0), (2, 8.0), (3, 0.5)], "acc": [(0, 0.25), (1, 0.75)]}
    table = json.loads(mrunner("results", done.stdout.strip().splitlines()[-1], "--json").stdout)
    assert [(row["loss"], row["acc"]) for row in table] == [(0.5, 0.75)]


def test_a_server_that_does_not_answer_is_refused_before_anything_is_recorded(mrunner_home, mrunner, tmp_path):
    context = write_context(
        mrunner_home, "down", {"backend": "local", "mlflow": True, "mlflow_tracking_uri": "http://127.0.0.1:9"}
    )
    (tmp_path / "train.py").write_text("import mrunner\n")
    refused = mrunner(f"+context={context}", "train.py", "lr=1")
    assert refused.returncode != 0 and "Traceback" not in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1, refused.stderr
    assert "the MLflow server http://127.0.0.1:9 of context down does not answer" in refused.stderr
    assert json.loads(mrunner("status", "--json").stdout) == []
    unnamed = write_context(mrunner_home, "unnamed", {"backend": "local", "mlflow": True})
    missing = mrunner(f"+context={unnamed}", "train.py", "lr=1", env={"MLFLOW_TRACKING_URI": ""})
    assert missing.returncode != 0 and "names no server: set mlflow_tracking_uri" in missing.stderr


@pytest.mark.parametrize("tracking", ["live", "deferred"])
def test_names_mlflow_refuses_are_logged_under_names_it_takes(
    mlflow_service, mrunner_home, mrunner, tmp_path, tracking
):
    """A metric `acc@1 (%)`, a tag with `@`, a metric `a//b`: MLflow refuses a whole request for one such name,
    so no metric of the experiment reached MLflow, live or by any catch-up (every `results` warned that a later
    one would upload them). Each is logged under a name MLflow takes; `results` keeps the names as reported."""
    uri = mlflow_service["tracking_uri"]
    experiment = f"mrunner-test-{uuid.uuid4().hex[:8]}"
    keys = {"backend": "local", "mlflow": True, "mlflow_tracking_uri": uri, "mlflow_experiment": experiment}
    context = write_context(mrunner_home, "named", {**keys, "tracking": tracking})
    (tmp_path / "train.py").write_text(
        "import mrunner\n"
        "mrunner.get_configuration()\n"
        "for step in range(2):\n"
        "    mrunner.report({'loss': 1.0 + step, 'acc@1 (%)': 50.0 + step, 'a//b': 3.0}, step=step)\n"
    )
    done = mrunner(f"+context={context}", "train.py", "lr=1", "--tag", "best@v1", "--wait")
    assert done.returncode == 0, done.stderr
    sweep = done.stdout.strip().splitlines()[-1]
    assert "refused" not in mrunner("logs", f"{sweep}/0").stdout
    shown = mrunner("results", sweep, "--json")
    assert shown.returncode == 0 and "warning" not in shown.stderr, shown.stderr
    assert json.loads(shown.stdout)[0]["acc@1 (%)"] == 51.0
    (run,) = runs_of(uri, experiment)
    assert run.data.metrics == {"loss": 2.0, "acc_1 ___": 51.0, "a__b": 3.0}
    assert run.data.params == {"lr": "1"} and run.data.tags["mrunner.tag.best_v1"] == "1"


def test_an_experiment_deleted_on_the_server_is_refused_before_anything_is_recorded(
    mlflow_service, mrunner_home, mrunner, tmp_path
):
    """An MLflow experiment in the server's trash takes no run: every experiment's first report was refused,
    and every catch-up upload after it, while the submission had said "MLflow: runs in experiment ..."."""
    from mlflow.tracking import MlflowClient

    uri = mlflow_service["tracking_uri"]
    name = f"mrunner-test-{uuid.uuid4().hex[:8]}"
    client = MlflowClient(uri)
    identity = client.create_experiment(name)
    client.delete_experiment(identity)
    keys = {"backend": "local", "mlflow": True, "mlflow_tracking_uri": uri, "mlflow_experiment": name}
    context = write_context(mrunner_home, "trashed", keys)
    (tmp_path / "train.py").write_text("import mrunner\nmrunner.report({'loss': 1.0})\n")
    refused = mrunner(f"+context={context}", "train.py", "lr=1")
    assert refused.returncode == 2 and len(refused.stderr.strip().splitlines()) == 1, refused.stderr
    assert (
        f"the MLflow experiment '{name}' of context trashed is deleted at {uri}: restore it "
        f"(`mlflow experiments restore --experiment-id {identity}`), or name another mlflow_experiment"
    ) in refused.stderr
    assert json.loads(mrunner("status", "--json").stdout) == []
    client.restore_experiment(identity)
    done = mrunner(f"+context={context}", "train.py", "lr=1", "--wait")
    assert done.returncode == 0, done.stderr
    assert [run.data.metrics for run in runs_of(uri, name)] == [{"loss": 1.0}]


@pytest.mark.parametrize("tracking", ["live", "deferred"])
def test_a_tracking_uri_mlflow_cannot_use_is_refused_before_anything_is_recorded(
    mrunner_home, mrunner, tmp_path, tracking
):
    """A scheme MLflow does not know (a typo such as htp://) is refused at submission: the experiments would
    only warn on their first report, and a deferred upload fail later."""
    (tmp_path / "train.py").write_text("import mrunner\n")
    for uri, source in (("htp://127.0.0.1:5000", "context"), ("bogus://tracking", "environment")):
        keys = {"backend": "local", "mlflow": True, "tracking": tracking}
        if source == "context":
            keys["mlflow_tracking_uri"] = uri
        context = write_context(mrunner_home, "typo", keys)
        refused = mrunner(f"+context={context}", "train.py", "lr=1", env={"MLFLOW_TRACKING_URI": uri})
        assert refused.returncode == 2 and len(refused.stderr.strip().splitlines()) == 1, refused.stderr
        scheme = uri.split(":")[0]
        assert f"MLflow knows no tracking URI scheme '{scheme}' ({uri}): use http://HOST:PORT" in refused.stderr
        assert json.loads(mrunner("status", "--json").stdout) == []
    for uri in ("sqlite:///mlflow.db", str(tmp_path / "mlruns"), "postgresql+psycopg2://u@db/mlflow"):
        dry = mrunner("+context=typo", "train.py", "lr=1", "--dry-run", env={"MLFLOW_TRACKING_URI": uri})
        assert dry.returncode == 0, dry.stderr


@pytest.mark.parametrize("tracking", ["live", "deferred"])
def test_a_malformed_tracking_uri_is_refused_in_one_line_before_anything_is_recorded(
    mrunner_home, mrunner, tmp_path, tracking
):
    """A URI that is no URI at all (an IPv6 address without its closing bracket) is refused like an unknown
    scheme: one line naming the fix, not the traceback of the parser that could not read it."""
    (tmp_path / "train.py").write_text("import mrunner\n")
    uri = "http://[::1:5000"
    context = write_context(
        mrunner_home, "broken", {"backend": "local", "mlflow": True, "tracking": tracking, "mlflow_tracking_uri": uri}
    )
    for dry in ([], ["--dry-run"]):
        refused = mrunner(f"+context={context}", "train.py", "lr=1", *dry)
        assert refused.returncode == 2 and len(refused.stderr.strip().splitlines()) == 1, refused.stderr
        assert (
            f"context broken: the MLflow tracking URI {uri} is malformed (Invalid IPv6 URL): use http://HOST:PORT"
            in refused.stderr
        )
    assert json.loads(mrunner("status", "--json").stdout) == []


def test_deferred_tracking_without_a_tracker_warns_that_nothing_is_uploaded(mrunner_home, mrunner, tmp_path):
    context = write_context(mrunner_home, "nowhere", {"backend": "local", "tracking": "deferred"})
    (tmp_path / "train.py").write_text("import mrunner\n")
    done = mrunner(f"+context={context}", "train.py", "lr=1", "--wait")
    assert done.returncode == 0, done.stderr
    assert (
        "mrunner: warning: context nowhere has tracking: deferred but enables no tracker to upload to "
        "(mlflow: true or wandb: true)" in done.stderr
    )


def test_the_token_under_env_is_refused(mrunner_home, mrunner, tmp_path):
    context = write_context(mrunner_home, "leaky", {"backend": "local", "env": {"MLFLOW_TRACKING_TOKEN": "x"}})
    (tmp_path / "train.py").write_text("import mrunner\n")
    refused = mrunner(f"+context={context}", "train.py", "lr=1")
    assert refused.returncode != 0 and "sets MLFLOW_TRACKING_TOKEN under `env`" in refused.stderr


def test_a_tracked_dry_run_does_not_import_mlflow(mrunner_home, tmp_path):
    write_context(
        mrunner_home, "dry", {"backend": "local", "mlflow": True, "mlflow_tracking_uri": "http://127.0.0.1:9"}
    )
    (tmp_path / "train.py").write_text("import mrunner\n")
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "mrunner", "+context=dry", "train.py", "-m", "lr=1,2", "--dry-run"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    imported = {line.rsplit("|", 1)[1].strip() for line in done.stderr.splitlines() if line.startswith("import time:")}
    assert "mrunner.trackers.mlflow" in imported
    assert not {name for name in imported if name.split(".")[0] == "mlflow"}


def test_batches_keep_within_mlflows_limits_and_bring_the_tags_with_the_last_parameters():
    from mrunner.mlflow_run import batches

    metrics, params, tags = [("m", n) for n in range(2500)], [("p", n) for n in range(250)], [("t", 0)]
    sent = list(batches(metrics, params, tags))
    for some_metrics, some_params, some_tags in sent:
        assert len(some_metrics) <= 1000 and len(some_params) <= 100 and len(some_tags) <= 100
        assert len(some_metrics) + len(some_params) + len(some_tags) <= 1000
    assert [m for batch in sent for m in batch[0]] == metrics
    assert [p for batch in sent for p in batch[1]] == params
    assert [bool(batch[2]) for batch in sent] == [False, False, True]  # with the parameters' last hundred
    assert len(sent) == 3  # 2,751 entities: no request more than the limit of a thousand needs
    assert list(batches([("m", 0)], [], tags)) == [([("m", 0)], [], tags)]
    assert list(batches([], [], [])) == []


class Relay:
    """A loopback TCP relay in front of the real MLflow server: stopping it is the server going down for the
    experiment (connections cut, new ones refused); starting it again on the same port, the server back."""

    def __init__(self, target: tuple[str, int]) -> None:
        import socket

        self.target = target
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        self.port = probe.getsockname()[1]
        probe.close()
        self.sockets: list = []
        self.held: bytes | None = None  # a request path to hold, the first time it is asked for
        self.holding = __import__("threading").Event()  # set while it is held
        self.released = __import__("threading").Event()

    def hold_first(self, path: bytes) -> None:
        """Hold the first request for ``path`` on its way to the server (``holding`` set) until ``released``
        is set: a request sent in time that lands late."""
        self.held = path

    def start(self) -> None:
        import socket
        import threading

        listener = socket.create_server(("127.0.0.1", self.port))
        self.sockets = [listener]

        def cut(*ends) -> None:
            for end in ends:
                try:
                    end.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

        def back(upstream, client, current: list) -> None:
            try:
                while data := upstream.recv(65536):
                    client.sendall(data)
            except OSError:
                pass
            if current[0] is upstream:  # the server closed it: the client's goes too, as a proxy's would
                cut(upstream, client)

        def serve(client) -> None:
            current: list = [None]  # this client's connection to the server, made when a request comes
            try:
                while data := client.recv(65536):
                    if self.held is not None and self.held in data:
                        self.held = None
                        current[0] = None  # the server closes the idle one meanwhile: it lands on a new one
                        self.holding.set()
                        self.released.wait()
                    if current[0] is None:
                        current[0] = socket.create_connection(self.target)
                        self.sockets.append(current[0])
                        threading.Thread(target=back, args=(current[0], client, current), daemon=True).start()
                    current[0].sendall(data)
            except OSError:
                pass
            # the client's end only: a request it sent whole (one held, its process gone since) still reaches
            # the server and is answered; ``back`` closes the server's end then
            cut(client)

        def accept() -> None:
            while True:
                try:
                    client, _ = listener.accept()
                except OSError:
                    return
                self.sockets.append(client)
                threading.Thread(target=serve, args=(client,), daemon=True).start()

        threading.Thread(target=accept, daemon=True).start()

    def stop(self) -> None:
        import socket

        for end in self.sockets:
            try:
                end.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            end.close()


def relayed_context(mlflow_service: dict, mrunner_home, name: str) -> tuple[Relay, str]:
    """A started relay in front of the real server, and context ``name`` tracking live through it into a new
    MLflow experiment (returned with the relay)."""
    from urllib.parse import urlsplit

    served = urlsplit(mlflow_service["tracking_uri"])
    relay = Relay((served.hostname, served.port))
    relay.start()
    experiment = f"mrunner-test-{uuid.uuid4().hex[:8]}"
    keys = {
        "backend": "local",
        "mlflow": True,
        "mlflow_tracking_uri": f"http://127.0.0.1:{relay.port}",
        "mlflow_experiment": experiment,
    }
    write_context(mrunner_home, name, keys)
    return relay, experiment


def ended_while_the_server_is_away(mrunner, sweep: str, relay: Relay, gate: Path) -> str:
    """The server gone (the relay stopped), then the experiment let on (its gate opened): its log once it
    completed, which says once, not per report, that the process stopped sending metrics."""
    relay.stop()
    gate.write_text("")
    (entry,) = ended(mrunner, sweep, timeout=120).values()
    assert entry["state"] == "completed", entry
    log = mrunner("logs", f"{sweep}/0").stdout
    assert log.count("this process stops sending it metrics") == 1, log
    return log


def test_a_server_down_during_a_run_the_experiment_goes_on_and_results_uploads_the_rest_once(
    mlflow_service, mrunner, mrunner_home, tmp_path
):
    """Live tracking whose server goes away mid-run, MLflow's own retries (about four minutes) left as they are:
    the reports that meet the dead server return at once (a sender thread waits on it, not the experiment), the
    process exits within the sender's exit bound, warning once, its file noting that it stopped forwarding; the
    next `mrunner results` (the server back) uploads the experiment's metrics into its run, each point once
    (those it had sent itself not repeated), and a later call sends nothing again."""

    from mlflow.tracking import MlflowClient

    from mrunner.sender import EXIT_SECONDS
    from mrunner.testing import wait_for

    relay, experiment = relayed_context(mlflow_service, mrunner_home, "cut")
    gate = tmp_path / "gate"
    # The experiment's process of interest is a child (a rank, as it were), so that its exit is timed from its
    # last statement to its end by waiting on it.
    (tmp_path / "rank.py").write_text(
        "import os, time, mrunner\n"
        "mrunner.get_configuration()\n"
        "mrunner.report({'loss': 1.0}, step=0)\n"
        f"while not os.path.exists({str(gate)!r}):\n"
        "    time.sleep(0.05)\n"
        "slowest = 0.0\n"
        "for step in (1, 2):\n"
        "    started = time.monotonic()\n"
        "    mrunner.report({'loss': 1.0 / (1 + step)}, step=step)\n"
        "    slowest = max(slowest, time.monotonic() - started)\n"
        "print('REPORT', slowest, flush=True)\n"
        "print('went on', flush=True)\n"
    )
    (tmp_path / "train.py").write_text(
        "import subprocess, sys, time\n"
        "rank = subprocess.Popen([sys.executable, 'rank.py'], stdout=subprocess.PIPE, text=True)\n"
        "for line in rank.stdout:\n"
        "    print(line, end='', flush=True)\n"
        "    if line.startswith('went on'):\n"
        "        break\n"
        "last = time.monotonic()\n"
        "assert rank.wait() == 0\n"
        "print('EXIT', time.monotonic() - last, flush=True)\n"
    )
    submitted = mrunner("+context=cut", "train.py", "--detach")
    assert submitted.returncode == 0, submitted.stderr
    sweep = submitted.stdout.strip().splitlines()[-1]
    client = MlflowClient(mlflow_service["tracking_uri"])

    def history() -> list[tuple[int, float]]:
        found = client.get_experiment_by_name(experiment)
        runs = client.search_runs([found.experiment_id]) if found else []
        points = client.get_metric_history(runs[0].info.run_id, "loss") if len(runs) == 1 else []
        return sorted((point.step, point.value) for point in points)

    wait_for(history, lambda points: points == [(0, 1.0)], what="the live point of step 0", timeout=120)
    while_live = mrunner("results", sweep, "--json")  # looks at the file, uploads nothing: tracking is live
    assert while_live.returncode == 0 and json.loads(while_live.stdout)[0]["loss"] == 1.0, while_live.stderr
    log = ended_while_the_server_is_away(mrunner, sweep, relay, gate)
    assert "went on" in log
    assert f"MLflow: the last reports were not sent within {EXIT_SECONDS:g} s of the exit" in log, log
    assert "`mrunner results` uploads them later" in log
    # A report is a line written and a put on a queue: a second is ample on a loaded machine, where the one that
    # met the dead server used to wait out MLflow's retries (minutes). The exit waits EXIT_SECONDS for the
    # sender, then the interpreter's end: 5 s more is ample, where MLflow's retries would hold it minutes.
    slowest = float(log.split("REPORT ")[1].split()[0])
    exit_seconds = float(log.split("EXIT ")[1].split()[0])
    assert slowest < 1.0 and exit_seconds < EXIT_SECONDS + 5, log
    assert history() == [(0, 1.0)]

    relay.start()  # the server is back
    shown = mrunner("results", sweep, "--json")
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)[0]["loss"] == pytest.approx(1 / 3)
    assert history() == [(0, 1.0), (1, 0.5), (2, pytest.approx(1 / 3))]
    again = mrunner("results", sweep)
    assert again.returncode == 0 and "uploaded" not in again.stderr, again.stderr
    assert history() == [(0, 1.0), (1, 0.5), (2, pytest.approx(1 / 3))]
    relay.stop()


def test_a_server_down_at_the_start_the_experiment_starts_within_the_bound_and_results_makes_its_run_once(
    mlflow_service, mrunner, mrunner_home, tmp_path
):
    """Live tracking whose server does not answer when the experiment starts (it answered at submission), MLflow's
    own retries left as they are: ``get_configuration()`` returns within the sender's start bound, warning once,
    the experiment trains and completes without its run; the next `mrunner results` (the server back) makes the
    run, named, tagged and holding the parameters, uploads every point once, and a later call sends nothing."""

    from mlflow.tracking import MlflowClient

    from mrunner.sender import START_SECONDS

    relay, experiment = relayed_context(mlflow_service, mrunner_home, "gone")
    gate = tmp_path / "gate"
    (tmp_path / "train.py").write_text(
        "import os, time, mlflow, mrunner\n"  # the client imported first, as a script using MLflow does
        f"while not os.path.exists({str(gate)!r}):\n"
        "    time.sleep(0.05)\n"
        "started = time.monotonic()\n"
        "c = mrunner.get_configuration()\n"
        "print('CONFIG', time.monotonic() - started, os.environ.get('MLFLOW_RUN_ID'), flush=True)\n"
        "for step in range(3):\n"
        "    mrunner.report({'loss': c.lr * (3 - step)}, step=step)\n"
        "print('trained', flush=True)\n"
    )
    submitted = mrunner("+context=gone", "train.py", "-m", "lr=0.5", "--detach")
    assert submitted.returncode == 0, submitted.stderr
    sweep = submitted.stdout.strip().splitlines()[-1]
    log = ended_while_the_server_is_away(mrunner, sweep, relay, gate)  # after the submission's check, before the start
    assert "trained" in log
    assert f"MLflow: the server did not answer within {START_SECONDS:g} s of the experiment's start" in log, log
    # The bound, plus the start of the sender's thread and a loaded machine's scheduling; MLflow's retries
    # would hold it minutes.
    waited, run_id = log.split("CONFIG ")[1].split()[:2]
    assert float(waited) < START_SECONDS + 2 and run_id == "None", log
    client = MlflowClient(mlflow_service["tracking_uri"])
    assert client.get_experiment_by_name(experiment) is None  # nothing made while the server was away

    relay.start()  # the server is back
    shown = mrunner("results", sweep, "--json")
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)[0]["loss"] == pytest.approx(0.5)
    (run,) = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    assert run.info.run_name == "train" and run.data.params["lr"] == "0.5"
    assert run.data.tags["mrunner.experiment"] == f"{sweep}/0" and run.data.tags["mrunner.sweep"] == sweep
    points = sorted((m.step, m.value) for m in client.get_metric_history(run.info.run_id, "loss"))
    assert points == [(0, 1.5), (1, 1.0), (2, 0.5)]
    again = mrunner("results", sweep)
    assert again.returncode == 0 and "uploaded" not in again.stderr, again.stderr
    assert len(client.search_runs([run.info.experiment_id])) == 1
    assert sorted((m.step, m.value) for m in client.get_metric_history(run.info.run_id, "loss")) == points
    relay.stop()


def test_a_run_create_that_lands_after_the_catch_up_made_the_run_leaves_one_run(
    mlflow_service, mrunner, mrunner_home, tmp_path
):
    """The experiment's own create of its run is sent in time but held on the way past the sender's start bound:
    forwarding stops, `mrunner results` (the catch-up) makes the run and uploads the points; then the held create
    lands. The experiment's process sees it landed after it stopped, finds the catch-up's run, and deletes its own
    (empty): one live run, holding every point once, and a later `results` makes no other."""

    from mlflow.entities import ViewType
    from mlflow.tracking import MlflowClient

    from mrunner.records import TERMINAL
    from mrunner.testing import wait_for

    relay, experiment = relayed_context(mlflow_service, mrunner_home, "late")
    relay.hold_first(b"/runs/create")
    gate = tmp_path / "gate"
    (tmp_path / "train.py").write_text(
        "import os, time, mrunner\n"
        "c = mrunner.get_configuration()\n"
        "for step in range(3):\n"
        "    mrunner.report({'loss': c.lr * (3 - step)}, step=step)\n"
        "print('trained', flush=True)\n"
        f"while not os.path.exists({str(gate)!r}):\n"  # alive while its held create lands
        "    time.sleep(0.05)\n"
    )
    submitted = mrunner("+context=late", "train.py", "-m", "lr=0.5", "--detach")
    assert submitted.returncode == 0, submitted.stderr
    sweep = submitted.stdout.strip().splitlines()[-1]
    try:
        assert relay.holding.wait(120), "the experiment's create never came"
        wait_for(lambda: mrunner("logs", f"{sweep}/0").stdout, lambda log: "trained" in log, what="training")
        shown = mrunner("results", sweep, "--json")  # the catch-up: makes the run, uploads the points
        assert shown.returncode == 0 and "uploaded the new metrics of 1 experiment" in shown.stderr, shown.stderr
        client = MlflowClient(mlflow_service["tracking_uri"])
        experiment_id = client.get_experiment_by_name(experiment).experiment_id
        (made,) = client.search_runs([experiment_id])
    finally:
        relay.released.set()  # the held create lands now
    deleted = wait_for(
        lambda: client.search_runs([experiment_id], run_view_type=ViewType.DELETED_ONLY),
        lambda found: len(found) == 1,
        what="the late run deleted by the experiment's process",
        timeout=120,
    )
    assert deleted[0].info.run_id != made.info.run_id and deleted[0].data.tags["mrunner.experiment"] == f"{sweep}/0"
    gate.write_text("")

    def state() -> str:
        return json.loads(mrunner("status", sweep, "--json").stdout)["experiments"][0]["state"]

    assert wait_for(state, lambda found: found in TERMINAL, timeout=120) == "completed"
    again = mrunner("results", sweep)
    assert again.returncode == 0, again.stderr
    (run,) = client.search_runs([experiment_id])
    assert run.info.run_id == made.info.run_id and run.data.params["lr"] == "0.5"
    points = sorted((m.step, m.value) for m in client.get_metric_history(run.info.run_id, "loss"))
    assert points == [(0, 1.5), (1, 1.0), (2, 0.5)]
    relay.stop()


def test_the_experiment_side_reads_the_note_the_catch_up_reads():
    """``mlflow_run`` and ``wandb_run`` spell out the note's bytes (importing ``mrunner.metrics`` would be a
    cycle): the same as what ``metrics.untracked`` writes and ``uploads`` looks for."""
    import json

    from mrunner import metrics, mlflow_run, uploads, wandb_run

    for side, tracker, ledger in ((mlflow_run, "MLflow", uploads.CATCH_UP), (wandb_run, "W&B", uploads.WANDB_CATCH_UP)):
        assert side.UNTRACKED_MARK == uploads._mark(ledger)
        assert side.UNTRACKED_MARK in json.dumps({"attempt": 0, metrics.UNTRACKED: tracker}).encode()


def test_a_run_create_that_lands_after_the_experiments_process_ended_leaves_one_run(
    mlflow_service, mrunner, mrunner_home, tmp_path
):
    """The experiment's own create of its run is held on the way past the sender's start bound and past the
    process's end: `mrunner results` (the catch-up) makes the run with the points; then the held create lands,
    an empty run that no process of the experiment is left to delete. The next `results` deletes it: one run,
    the catch-up's, with each point once."""
    from mlflow.entities import ViewType
    from mlflow.tracking import MlflowClient

    from mrunner.records import TERMINAL
    from mrunner.testing import wait_for

    relay, experiment = relayed_context(mlflow_service, mrunner_home, "ended")
    relay.hold_first(b"/runs/create")
    (tmp_path / "train.py").write_text(
        "import mrunner\n"
        "c = mrunner.get_configuration()\n"
        "for step in range(3):\n"
        "    mrunner.report({'loss': c.lr * (3 - step)}, step=step)\n"
    )
    submitted = mrunner("+context=ended", "train.py", "-m", "lr=0.5", "--detach")
    assert submitted.returncode == 0, submitted.stderr
    sweep = submitted.stdout.strip().splitlines()[-1]
    client = MlflowClient(mlflow_service["tracking_uri"])

    def state() -> str:
        return json.loads(mrunner("status", sweep, "--json").stdout)["experiments"][0]["state"]

    try:
        assert relay.holding.wait(120), "the experiment's create never came"
        assert wait_for(state, lambda found: found in TERMINAL, timeout=120) == "completed"  # its create still held
        shown = mrunner("results", sweep, "--json")  # the catch-up: makes the run, uploads the points
        assert shown.returncode == 0 and "uploaded the new metrics of 1 experiment" in shown.stderr, shown.stderr
        experiment_id = client.get_experiment_by_name(experiment).experiment_id
        (made,) = client.search_runs([experiment_id])
    finally:
        relay.released.set()  # the held create lands now, its process long gone
    wait_for(lambda: client.search_runs([experiment_id]), lambda found: len(found) == 2, what="the late run")
    again = mrunner("results", sweep)
    assert again.returncode == 0 and "uploaded" not in again.stderr, again.stderr
    (run,) = client.search_runs([experiment_id])
    assert run.info.run_id == made.info.run_id and run.data.params["lr"] == "0.5"
    (late,) = client.search_runs([experiment_id], run_view_type=ViewType.DELETED_ONLY)
    assert late.data.tags["mrunner.experiment"] == f"{sweep}/0" and not late.data.params
    points = sorted((m.step, m.value) for m in client.get_metric_history(run.info.run_id, "loss"))
    assert points == [(0, 1.5), (1, 1.0), (2, 0.5)]
    relay.stop()


@pytest.mark.parametrize("tracking", ["live", "deferred"])
def test_credentials_in_an_http_tracking_uri_are_refused_without_showing_them(
    mrunner_home, mrunner, tmp_path, tracking
):
    """`http://user:password@host:port`: the context (or the shell's MLFLOW_TRACKING_URI, which reaches the
    experiments as plain environment) would record and show the password, and the server check, which cannot
    send them, said "Name or service not known" of a server that answers. One line, the password not in it,
    naming the variables that carry credentials as secrets; nothing recorded. A token in the URI's query is
    a credential too."""
    (tmp_path / "train.py").write_text("import mrunner\n")
    for uri, source in (
        ("http://me:s3cret@127.0.0.1:5055", "context"),
        ("http://me:s3cret@127.0.0.1:5055", "environment"),
        ("http://127.0.0.1:5055/?access_token=s3cret", "context"),
    ):
        keys = {"backend": "local", "mlflow": True, "tracking": tracking}
        if source == "context":
            keys["mlflow_tracking_uri"] = uri
        context = write_context(mrunner_home, "userinfo", keys)
        for dry in ([], ["--dry-run"]):
            refused = mrunner(f"+context={context}", "train.py", "lr=1", *dry, env={"MLFLOW_TRACKING_URI": uri})
            assert refused.returncode == 2 and len(refused.stderr.strip().splitlines()) == 1, refused.stderr
            assert "s3cret" not in refused.stderr + refused.stdout
            assert f"{uri.replace('me:s3cret@', '****@').replace('s3cret', '****')} holds credentials" in refused.stderr
            assert "MLFLOW_TRACKING_USERNAME" in refused.stderr
            assert json.loads(mrunner("status", "--json").stdout) == []
