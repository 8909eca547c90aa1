"""Deferred tracking (``tracking: deferred``): this machine sends what the experiments reported to MLflow, W&B.

Compute nodes without network (many Slurm clusters, Kubernetes pods in their own network) cannot reach a
tracking server, so with ``tracking: deferred`` the experiments only write their metrics files
(``mrunner.metrics``), and whenever ``mrunner results``, ``pull`` or ``status --wait`` brings those files
back, ``upload`` sends the lines added since the last upload into each experiment's MLflow run (the run live
tracking would have made: found by its tag, else made here, named, tagged, holding the parameters) and W&B run
(its deterministic id, resumed). MLflow gets several experiments at once, over one client, the sweep's earlier
runs found by one search, each experiment's points in batches of a thousand; W&B one run after another.

Each line is sent once: a ledger per sweep (``ledger_path``, next to the records, rewritten atomically as
experiments finish sending, never before) keeps how many bytes of each experiment's file were sent to each
tracker, and the run's id.
A file that grew (a running experiment, a later attempt appending) sends only its new whole lines; a second
call with nothing new reads no file and calls no server. Each value goes to MLflow with the time it was
reported, so should the ledger lose an upload (a crash between the send and the write), MLflow's store drops
the repeated points (their key, time, step and value are the same). A server that does not answer is one
warning; the lines stay unsent, and the next call catches up.

With live tracking the same path catches up an experiment whose process stopped forwarding (its metrics file
notes it: the server was down at its start, at its exit, or refused a report): all its lines are replayed once
into its run, MLflow dropping the points it already holds, W&B leaving out the steps its resumed run has. An
MLflow run is made even for an experiment that reported nothing (its process gave up on a slow server before it
made the run, then ended or was killed): the run, with its parameters and end, is never lost to a slow server.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mrunner import ledger as ledger_file
from mrunner import metrics, mlflow_ends, paths
from mrunner.layout import METRICS_FILE, of_run, write_atomic
from mrunner.records import TERMINAL, Run, Sweep
from mrunner.reporter import Reporter
from mrunner.trackers import mlflow as mlflow_tracker
from mrunner.trackers import wandb as wandb_tracker
from mrunner.trackers.targets import told_from_here

TYPE_CHECKING = False
if TYPE_CHECKING:
    from mrunner.neptune_uploads import Neptune


def deferred(sweep: Sweep) -> bool:
    """Whether this machine uploads the sweep's metrics (its context defers tracking to a tracker)."""
    return any(target not in _LIVE for target in _targets(sweep))


def uploading(sweep: Sweep) -> bool:
    """Whether this machine may upload some of the sweep's metrics (deferred tracking, or live MLflow's
    catch-up of an experiment that stopped forwarding): it then needs the metrics files themselves."""
    return bool(_targets(sweep))


def _targets(sweep: Sweep) -> list[str]:
    """The trackers this machine uploads the sweep's metrics to, by their ledger names (``CATCH_UP``: only
    what live tracking could not send)."""
    live = {"mlflow": CATCH_UP, "wandb": WANDB_CATCH_UP, "neptune": NEPTUNE_CATCH_UP}
    return [tracker if deferred else live[tracker] for tracker, deferred in told_from_here(sweep.context).items()]


#: The ledger's names for live tracking: only an experiment whose process stopped forwarding (its metrics file
#: holds ``metrics.UNTRACKED``: the server was down) is uploaded from here, all its lines, into its run (MLflow's
#: store drops the points the experiment had sent itself: the same key, time, step and value; W&B's client
#: leaves out the steps the resumed run already has).
CATCH_UP, WANDB_CATCH_UP, NEPTUNE_CATCH_UP = "mlflow-live", "wandb-live", "neptune-live"
_LIVE = {CATCH_UP: "MLflow", WANDB_CATCH_UP: "W&B", NEPTUNE_CATCH_UP: "Neptune"}


def _mark(tracker: str) -> bytes:
    """The line's text that says a process stopped forwarding to ``tracker`` (a ledger name of ``_LIVE``)."""
    return b'"' + metrics.UNTRACKED.encode() + b'": "' + _LIVE[tracker].encode() + b'"'


def ledger_path(sweep_id: str) -> Path:
    """What was uploaded of a sweep: a small JSON file beside the records."""
    return paths.data_dir() / "uploads" / f"{sweep_id}.json"


def upload(sweep: Sweep, runs: Sequence[Run], folder: Path, reporter: Reporter, mlflow: bool = True) -> int:
    """Send the lines of each run's metrics file in ``folder`` (``INDEX-NAME/mrunner-metrics.jsonl``, as a
    pull lays them out) that no earlier upload sent, to each tracker the sweep defers to (not MLflow where
    ``mlflow`` is False: it did not answer just before, and said so); returns how many experiments sent
    something. Does nothing for a sweep that does not defer tracking."""
    targets = [t for t in _targets(sweep) if mlflow or t not in ("mlflow", CATCH_UP)]
    if not targets:
        return 0
    path = ledger_path(sweep.id)
    done = 0
    with ledger_file.locked(path):
        ledger = ledger_file.read(path)
        for tracker in targets:
            done += _upload_to(tracker, sweep, runs, folder, ledger, path, reporter)
    return done


def _upload_to(
    tracker: str,
    sweep: Sweep,
    runs: Sequence[Run],
    folder: Path,
    ledger: dict[str, Any],
    path: Path,
    reporter: Reporter,
) -> int:
    sent = ledger.setdefault(tracker, {})
    pending = []
    for run in runs:
        file = folder / of_run("", sweep, run).folder_name / METRICS_FILE
        try:
            size = file.stat().st_size
        except FileNotFoundError:
            continue
        known = sent.get(str(run.index), {})
        if size > known.get("offset", 0) or (known.get("open") and run.state in TERMINAL):
            pending.append((run, file))  # grown, or a process that vanished seen while the experiment ran
    reasons: dict[int, Any] = {}
    if tracker in _LIVE:
        pending = _untracked(pending, sent, path, ledger, tracker, reasons)
        if not pending and tracker == CATCH_UP:
            _late_creates(sweep, runs, sent)
    if not pending:
        return 0
    target: _Mlflow | _Wandb | Neptune
    if tracker == NEPTUNE_CATCH_UP:
        from mrunner.neptune_uploads import Neptune

        target = Neptune(sweep)
    else:
        target = _Wandb(sweep) if tracker in ("wandb", WANDB_CATCH_UP) else _Mlflow(sweep)
    reason = target.unanswered()
    if reason is not None:
        reporter.warn(_waiting(sweep, target, reason, len(pending)))
        return 0

    def one(run: Run, file: Path) -> tuple[dict[str, Any], bool]:
        """Send the new whole lines of one experiment's file; its ledger entry, and whether it sent any."""
        known = sent.get(str(run.index), {})
        offset = known.get("offset", 0)
        data = file.read_bytes()
        end = data.rfind(b"\n") + 1  # a line still being written (or torn) waits
        if offset > len(data) or (tracker in _LIVE and not known.get("untracked")):
            offset = 0  # the file was replaced (a folder removed and run again), or live tracking stopped: all new
        new = _new_points(data, offset, end)
        if new:
            entry = target.send(sweep, run, new, known)
        elif isinstance(target, _Mlflow) and "run" not in known:
            # nothing reported, but a process of the experiment started (its file's notes): its run is made all
            # the same, with its parameters and its end, as live tracking would have (its process may have given
            # up on a slow server before it made it, then been killed)
            entry = target.send(sweep, run, [], known, began=_began(data[:end]))
        else:
            entry = dict(known)
        entry.pop("open", None)
        if tracker in _LIVE and reasons.get(run.index) is None:
            entry["untracked"] = True
        elif tracker in _LIVE:  # the vanished processes now caught up: only another one replays the file again
            entry["unclean"] = reasons[run.index]
        return {**entry, "offset": max(end, offset)}, bool(new)

    done = recorded = 0
    failure: str | None = None
    try:
        target.prepare(sweep, [run for run, _ in pending if "run" not in sent.get(str(run.index), {})])
    except Exception as error:  # the server went away (or refused) between its health check and the search
        failure = f"{type(error).__name__}: {error}"
    if failure is None and target.workers == 1:  # one after another, in this thread
        for run, file in pending:
            try:
                entry, new = one(run, file)
            except Exception as error:  # the server went away (or refused): the rest waits for the next call
                failure = f"{type(error).__name__}: {error}"
                break
            sent[str(run.index)] = entry
            write_atomic(str(path), json.dumps(ledger))
            done, recorded = done + new, recorded + 1
    elif failure is None:
        from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait  # here: most calls upload nothing

        with ThreadPoolExecutor(target.workers, thread_name_prefix="mrunner-upload") as pool:
            futures = {pool.submit(one, run, file): run for run, file in pending}
            waiting = set(futures)
            try:
                while waiting:
                    finished, waiting = wait(waiting, return_when=FIRST_COMPLETED)
                    for future in finished:
                        if future.cancelled():
                            continue
                        raised = future.exception()
                        if raised is not None:
                            if failure is None:  # the rest waits for the next call; what is under way ends
                                failure = f"{type(raised).__name__}: {raised}"
                                for later in waiting:
                                    later.cancel()
                            continue
                        entry, new = future.result()
                        sent[str(futures[future].index)] = entry
                        done, recorded = done + new, recorded + 1
                    write_atomic(str(path), json.dumps(ledger))  # once for all that ended meanwhile
            finally:  # an interruption: what was under way ends, and is not recorded (so it goes again)
                for later in waiting:
                    later.cancel()
    if failure is not None:
        reporter.warn(_waiting(sweep, target, failure, len(pending) - recorded))
    if done:
        reporter.step(f"{target.name}: uploaded the new metrics of {done} experiment{'s' * (done != 1)} of {sweep.id}")
    if tracker == CATCH_UP and failure is None:
        _late_creates(sweep, runs, sent)
    return done


#: How long after an experiment's end the catch-up still looks for a run its process asked MLflow for before
#: it stopped forwarding, held on the way and made after the process had ended (nobody else deletes it).
WATCH_SECONDS = 3600.0


def _late_creates(sweep: Sweep, runs: Sequence[Run], sent: dict[str, Any]) -> None:
    """Delete the runs without parameters that a caught-up experiment's process asked for and MLflow made
    after the catch-up's run (a create held on the way past the process's end): the experiment keeps one run,
    the catch-up's, with its points. Looked for, by one search of the sweep's runs, while such an experiment
    runs and for ``WATCH_SECONDS`` after its end; a server that does not answer is looked at next time."""
    import time

    from mrunner import mlflow_run

    now = time.time()
    kept = {}
    for run in runs:
        entry = sent.get(str(run.index), {})
        if (
            entry.get("untracked")
            and entry.get("run")
            and (run.state not in TERMINAL or now - run.updated_at < WATCH_SECONDS)
        ):
            kept[f"{sweep.id}/{run.index}"] = entry["run"]
    if not kept:
        return
    target = _Mlflow(sweep)
    if target.unanswered() is not None:
        return
    try:
        from mlflow.tracking import MlflowClient

        client = MlflowClient(target.where)
        experiment_id = mlflow_run.experiment_of(client, target.experiment)
        for key, run_id in mlflow_run.empty_runs_of_sweep(client, experiment_id, sweep.id):
            if key in kept and run_id != kept[key]:
                client.delete_run(run_id)
    except Exception:  # the server went away meanwhile: the next call looks again
        return


def _untracked(
    pending: list[tuple[Run, Path]],
    sent: dict[str, Any],
    path: Path,
    ledger: dict[str, Any],
    tracker: str,
    reasons: dict[int, Any],
) -> list:
    """Of the grown files of a live-tracked sweep, those to upload: an experiment that stopped forwarding
    (its file notes it), now or before; or an ended one of whose processes one ended without mrunner's tracker
    exit (``_vanished``), its count put in ``reasons``. The others' new lengths are recorded without asking
    any server, and whether a process may have vanished (``open``: looked at again once the experiment ends)."""
    chosen, passed = [], False
    mark = _mark(tracker)
    for run, file in pending:
        known = sent.get(str(run.index), {})
        data = file.read_bytes()
        end = data.rfind(b"\n") + 1
        scanned = known.get("offset", 0) if known.get("offset", 0) <= end else 0  # the lines before, looked at
        vanished = _vanished(data[:end], tracker) if not known.get("untracked") else 0
        if known.get("untracked") or mark in data[scanned:end]:
            chosen.append((run, file))
        elif vanished > known.get("unclean", 0) and run.state in TERMINAL:
            chosen.append((run, file))
            reasons[run.index] = vanished
        else:
            sent[str(run.index)] = {**known, "offset": end}
            if vanished > known.get("unclean", 0):
                sent[str(run.index)]["open"] = True
            else:
                sent[str(run.index)].pop("open", None)
            passed = True
    if passed:
        write_atomic(str(path), json.dumps(ledger))
    return chosen


def _vanished(data: bytes, tracker: str) -> int:
    """How many processes of the experiment started forwarding to ``tracker`` (a ledger name of ``_LIVE``) and
    did not end through mrunner's tracker exit (``metrics.FORWARDING``): each process writes one opening, and
    one closing when its exit saw every point taken. While the experiment runs, those are its live processes
    too; once it has ended, each is one that was killed outright (SIGKILL, the OOM killer, a lost node), whose
    last points the tracker may lack."""
    name = json.dumps(_LIVE[tracker]).encode()
    opened = data.count(b'"' + metrics.FORWARDING.encode() + b'": ' + name)
    return opened - data.count(b'"' + metrics.FORWARDED.encode() + b'": ' + name) if opened else 0


def _began(data: bytes) -> float | None:
    """When the experiment's file got its first whole line (its first process's start, or its first report)."""
    first = metrics.entries(data[: data.find(b"\n") + 1])
    return float(first[0]["time"]) if first and isinstance(first[0], dict) and "time" in first[0] else None


def _new_points(data: bytes, offset: int, end: int) -> list[tuple[int, str, int, Any, float]]:
    """The reported values of the whole lines of ``data`` between ``offset`` and ``end``, their implicit steps
    numbered on from the lines before."""
    implicit: dict[tuple[int, str], int] = {}
    for _ in metrics.points(metrics.entries(data[:offset]), implicit):
        pass  # counts the reports without a step that came before, to continue their numbering
    return list(metrics.points(metrics.entries(data[offset:end]), implicit))


def _waiting(sweep: Sweep, target: _Mlflow | _Wandb | Neptune, reason: str, count: int) -> str:
    first = reason.splitlines()[0] if reason else "no answer"
    whose = "1 experiment's" if count == 1 else f"{count} experiments'"
    return (
        f"{target.name} at {target.where} does not take sweep {sweep.id}'s metrics ({first[:200]}); {whose} "
        f"new metrics wait, and a later `mrunner results {sweep.id}` uploads them"
    )


class _Mlflow:
    """One MLflow server: one client (one HTTP session, its connections kept) for the whole upload, the sweep's
    runs found with one search, the experiments sent side by side (``workers``), each in as few requests
    as MLflow's batch limits allow."""

    name = "MLflow"
    #: Experiments sent at once: a request's round trip is mostly the server's work and the wire, so several
    #: under way keep the server busy (it takes them side by side) instead of idle between them.
    workers = 8

    def __init__(self, sweep: Sweep) -> None:
        self.where = mlflow_tracker.tracking_uri(sweep.context) or ""
        self.experiment = mlflow_tracker.experiment_name(sweep.context, sweep.project)
        self.client: Any = None
        self.experiment_id = ""
        self.found: dict[str, tuple[str, bool]] = {}  # SWEEP/INDEX -> (run id, whether it holds parameters)
        #: Whether the experiments' processes track live (this is the catch-up): they may make runs too.
        self.live = not mlflow_tracker.deferred(sweep.context)

    def unanswered(self) -> str | None:
        if not self.where:  # MLflow would write into ./mlruns of the current folder
            return f"no server named: set mlflow_tracking_uri or export {mlflow_tracker.URI_VARIABLE}"
        return mlflow_tracker.unanswered(self.where)

    def prepare(self, sweep: Sweep, unknown: Sequence[Run]) -> None:
        """The client; for the experiments the ledger knows no run of (``unknown``), the runs made for the
        sweep before (by live tracking, or an upload cut off before it wrote the ledger): one search."""
        from mlflow.tracking import MlflowClient

        from mrunner import mlflow_run

        self.client = MlflowClient(self.where)
        if unknown:
            self.experiment_id = mlflow_run.experiment_of(self.client, self.experiment)
            self.found = mlflow_run.runs_of_sweep(self.client, self.experiment_id, sweep.id)

    def send(
        self,
        sweep: Sweep,
        run: Run,
        points: list[tuple[int, str, int, Any, float]],
        known: dict[str, Any],
        began: float | None = None,
    ) -> dict[str, Any]:
        """Log ``points`` to the experiment's run (found or made); returns its ledger entry (the run's id).
        ``began``: when the experiment started, for a run made here without points (else its first point's)."""
        from mlflow.entities import Metric

        from mrunner import mlflow_run

        batch = [Metric(mlflow_run.name(key), float(value), int(at * 1000), step) for _, key, step, value, at in points]
        run_id = known.get("run")
        first: tuple[list[Any], list[Any]] = ([], [])  # parameters and tags the first request carries
        if run_id is None:
            info = run.config_document(sweep)
            run_id, complete = self.found.get(mlflow_run.key_of(info), (None, False))
            if run_id is None:
                # started when it first reported (not now: a run made after its end would end before it began)
                first_report = min(at for *_, at in points) if points else began
                started = int(first_report * 1000) if first_report is not None else None
                run_id = mlflow_run.create(self.client, self.experiment_id, info, started)
            if not complete:  # a new run, or one whose parameters an interruption kept from it
                first = mlflow_run.first_batch(info)
        for some_metrics, params, tags in mlflow_run.batches(batch, *first):
            self.client.log_batch(run_id, metrics=some_metrics, params=params, tags=tags)
        if known.get("run") is None and run.state in TERMINAL:
            # made here after its end (mlflow_ends.settle looked for it before), or made by a create of the
            # experiment's that landed after settle looked: RUNNING until told
            mlflow_ends.set_status(self.client, run_id, run)
        if self.live and known.get("run") is None:
            self._one_run(sweep, run, run_id)
        return {"run": run_id}

    def _one_run(self, sweep: Sweep, run: Run, chosen: str) -> None:
        """Delete the experiment's other runs that hold no parameters: runs an experiment's process made with
        a create that landed after it had stopped forwarding (held on the way), after this upload's search, so
        that the experiment has one run (``mlflow_run._find_or_create`` deletes its own when it sees ours)."""
        from mrunner import mlflow_run

        key = mlflow_run.key_of(run.config_document(sweep))
        for other in mlflow_run.runs_tagged(self.client, self.experiment_id, key):
            if other.info.run_id != chosen and mlflow_run.ATTEMPT_TAG not in other.data.tags:
                self.client.delete_run(other.info.run_id)


class _Wandb:
    """W&B, replayed into each experiment's run (the id live tracking would use, resumed): online (at the
    context's ``WANDB_BASE_URL``, else the shell's), or with ``wandb_mode: offline`` into run files below the
    sweep's metrics cache, for `wandb sync`."""

    name = "W&B"
    workers = 1  # wandb.init and its run files: one run at a time, in this thread

    def __init__(self, sweep: Sweep) -> None:
        self.mode = wandb_tracker.mode(sweep.context)
        self.project = str(sweep.context.get("wandb_project") or sweep.project)
        self.entity = sweep.context.get("wandb_entity")
        self.url = wandb_tracker.base_url(sweep.context)
        self.where = f"project {self.project}" + (" (offline)" if self.mode == "offline" else f" of {self.url}")

    def unanswered(self) -> str | None:
        """Why the server does not answer (checked first: ``wandb.init`` would wait 90 s for it)."""
        return None if self.mode == "offline" else wandb_tracker.unanswered(self.url)

    def prepare(self, sweep: Sweep, unknown: Sequence[Run]) -> None:
        """Nothing: each run's id is known (deterministic)."""

    def send(
        self, sweep: Sweep, run: Run, points: list[tuple[int, str, int, Any, float]], known: dict[str, Any]
    ) -> dict[str, Any]:
        """Log ``points`` to the experiment's run (resumed by its id); returns its ledger entry (the id, and the
        latest step: W&B keeps a run's steps increasing, so a value at an earlier step, such as an attempt's
        restarting from an earlier checkpoint, is left out, as W&B leaves it out of live tracking)."""
        import wandb

        from mrunner import wandb_run

        info = run.config_document(sweep)
        identity = known.get("run") or wandb_run.run_id(info)
        folder = paths.data_dir() / "metrics" / sweep.id / of_run("", sweep, run).folder_name
        folder.mkdir(parents=True, exist_ok=True)
        if self.mode == "offline":
            _after_the_last_offline_run(folder / "wandb", identity)
        live = wandb.init(
            id=identity,
            resume="allow",
            project=self.project,
            entity=self.entity,
            group=sweep.id,
            name=run.name,
            config=dict(info.get("parameters") or {}),
            tags=[str(t) for t in info.get("tags") or []],
            mode="offline" if self.mode == "offline" else "online",
            dir=str(folder),
            settings=wandb.Settings(silent=True, console="off", base_url=self.url),
            reinit="create_new",
        )
        latest: int = known.get("step", -1)
        try:
            values: dict[str, Any] = {}
            for _, name, at, value, _ in points:  # a step's values go in one log call
                if at < latest:
                    continue
                if values and at != latest:
                    live.log(values, step=latest)
                    values = {}
                latest, values[name] = at, value
            if values:
                live.log(values, step=latest)
        finally:
            live.finish()
        return {"run": identity, "step": latest}


def _after_the_last_offline_run(folder: Path, identity: str) -> None:
    """W&B names an offline run's folder after the second it starts (``offline-run-YYYYmmdd_HHMMSS-ID``) and
    writes its run file there afresh: a second upload of the same run within that second would overwrite the
    first's points before `wandb sync` sent them. Wait for the next second while that folder exists."""
    import datetime
    import time

    while (folder / f"offline-run-{datetime.datetime.now():%Y%m%d_%H%M%S}-{identity}").exists():
        time.sleep(0.05)


def remove(sweep_id: str) -> None:
    """Forget what was uploaded of a forgotten sweep."""
    ledger_file.remove(ledger_path(sweep_id))
