"""Neptune's catch-up from this machine: an experiment whose process lost its Neptune server (down at its
start, gone at its exit with operations unsent) has its reported metrics replayed into its run by
``mrunner.uploads``, when ``mrunner results``, ``pull`` or ``status --wait`` brings its metrics file back; and so
has an ended experiment one of whose processes was killed outright (SIGKILL, the OOM killer, a lost node) with
operations still in Neptune's queue: its file holds that process's ``forwarding`` note without the ``forwarded``
one its exit writes once Neptune took everything (``mrunner.tracking``, ``mrunner.metrics.FORWARDING``).

The run is the one live tracking made: Neptune gives the same run for the same ``custom_run_id`` in a project
(``mrunner.tracking`` derives it from the sweep and index), or makes it here, named, tagged and holding the
parameters, when the experiment never reached the server. All the experiment's lines are replayed; a float
series in Neptune takes only steps above its last one, so the points the experiment had sent itself are
refused there, and each point is in the run once (Neptune's client logs each refusal: kept out of sight
here). The API token stays on this machine, passed to the client in this process.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import Any

from mrunner import paths
from mrunner.layout import of_run
from mrunner.records import Run, Sweep
from mrunner.trackers import neptune as neptune_tracker

#: What one experiment's replay waits for Neptune to take its points; a server slow or gone by then fails the
#: upload of that experiment (its ledger entry not written), and the next call sends it again.
SEND_SECONDS = 60.0


class _Refusals(logging.Filter):
    """Neptune's error line for each point at a step its run already has: expected in a replay."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "must be strictly increasing" not in record.getMessage()


class Neptune:
    """One Neptune project on one server: each experiment's run continued by its custom run id."""

    name = "Neptune"
    workers = 1  # neptune.init_run and its queue on disk: one run at a time, in this thread

    def __init__(self, sweep: Sweep) -> None:
        found = neptune_tracker.credentials(sweep.context)
        self.token, self.project = found.token, found.project
        self.url = neptune_tracker.app_url()
        self.where = f"project {self.project} of {self.url}"

    def unanswered(self) -> str | None:
        """Why the server does not answer (checked first: Neptune's client retries a gone one for a minute)."""
        if not self.token or not self.project:
            return (
                f"no API token or project on this machine: export {neptune_tracker.TOKEN_VARIABLE} and set the project"
            )
        return neptune_tracker.unanswered(self.url)

    def prepare(self, sweep: Sweep, unknown: Sequence[Run]) -> None:
        """Nothing: each run is found by its custom run id."""

    def send(
        self, sweep: Sweep, run: Run, points: list[tuple[int, str, int, Any, float]], known: dict[str, Any]
    ) -> dict[str, Any]:
        """Replay ``points`` into the experiment's run; returns its ledger entry (the custom run id)."""
        import neptune
        from neptune.utils import stringify_unsupported

        from mrunner import tracking

        info = run.config_document(sweep)
        identity = tracking._custom_run_id(info)
        folder = paths.data_dir() / "neptune" / sweep.id / of_run("", sweep, run).folder_name
        folder.mkdir(parents=True, exist_ok=True)
        before = os.environ.get("NEPTUNE_DATA_DIRECTORY")
        os.environ["NEPTUNE_DATA_DIRECTORY"] = str(folder)  # Neptune's queue on disk: read at init only
        quiet = _Refusals()
        logger = logging.getLogger("neptune")
        logger.addFilter(quiet)
        try:
            live = neptune.init_run(
                project=self.project,
                api_token=self.token,
                custom_run_id=identity,
                name=run.name,
                tags=tracking.tags(info),
                git_ref=False,
                source_files=[],
                capture_stdout=False,
                capture_stderr=False,
                capture_hardware_metrics=False,
                capture_traceback=False,
            )
            try:
                parameters = info.get("parameters") or {}
                if parameters:
                    live["parameters"] = stringify_unsupported(dict(parameters))
                for _, name, step, value, at in points:
                    live[f"metrics/{name}"].append(value, step=step, timestamp=at)
            finally:
                live.stop(seconds=SEND_SECONDS)
            processor = getattr(live, "_op_processor", None)  # Neptune keeps no public count of what is unsent
            if processor is not None and hasattr(processor, "_queue") and processor._queue.size():
                raise TimeoutError(f"Neptune did not take the points within {SEND_SECONDS:g} s")
        finally:
            logger.removeFilter(quiet)
            if before is None:
                os.environ.pop("NEPTUNE_DATA_DIRECTORY", None)
            else:
                os.environ["NEPTUNE_DATA_DIRECTORY"] = before
        return {"run": identity}
