"""Following a sweep once it is handed over: refresh its runs from the backend, wait for them, read an
ended experiment's output, summarise, cancel. Every change a backend reports goes through the store.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence

from mrunner import interrupts, plugins
from mrunner.errors import BackendError, Interrupted, MrunnerError, NeedsUser
from mrunner.records import ACTIVE, CANCELLED, CANNOT_RUN, PENDING, PLANNED, TERMINAL, Run, RunUpdate, Sweep
from mrunner.reporter import Reporter
from mrunner.states import UNFINISHED
from mrunner.store import Store


def refresh(sweep: Sweep, store: Store) -> list[Run]:
    """Ask the backend about the sweep's unfinished runs (one call), record what changed, return all runs."""
    ask(sweep, store)
    return store.runs(sweep.id)


def looked_counts(sweep: Sweep, store: Store) -> dict[str, int]:
    """How many runs of the sweep are in each state once the backend has been asked about its unfinished runs
    (``ask``): what a caller that decides by the states alone (gc, cancel, resume) needs, without decoding the
    sweep's ended runs."""
    ask(sweep, store)
    return store.counts(sweep.id)


def ask(sweep: Sweep, store: Store, index: int | None = None) -> None:
    """Ask the backend about the sweep's unfinished runs, or about run ``index`` alone, in one call and record
    what changed. Only the runs the backend is asked about are read from the records (the unfinished ones, and
    those it may have started again: ``Backend.restarts_within``), so a look at a large sweep that has ended
    decodes none of its runs, and a caller that shows every run streams them from the records afterwards."""
    backend = plugins.backend(sweep.backend)
    since = time.time() - backend.restarts_within
    if index is not None:
        run = store.run(sweep.id, index)
        active = [run] if run.state in ACTIVE else []
        ended = [run] if run.state in _RESTARTABLE and backend.restarts_within and run.updated_at >= since else []
    else:
        active = store.runs(sweep.id, ACTIVE)
        restartable = backend.restarts_within > 0
        ended = store.runs(sweep.id, _RESTARTABLE, handed=True, since=since) if restartable else []
    if active or ended:
        updates = backend.status(sweep, active, ended)
        require_answer(updates, sweep, "status")
        store.apply(sweep.id, updates)  # a pending run's new reason is an event: its row stays


#: The ended runs a platform may start again by itself: all but the cancelled ones.
_RESTARTABLE = TERMINAL - {CANCELLED}


#: How long `--wait` goes on asking a backend that cannot be reached (an API server restarting, a dropped
#: connection) before it gives up.
WAIT_RETRY_SECONDS = 300.0


def wait(sweep: Sweep, store: Store, reporter: Reporter, interval: float | None = None) -> dict[str, int]:
    """Follow the sweep until every run has ended, with a progress display (without a terminal, a line
    each time the states or the reasons runs wait change; the final line is the caller's to say, once), and
    return how many runs ended in each state (``Store.counts``). Each look reads only what it needs: the runs
    the backend is asked about (``ask``), the counts, and why the pending runs wait, so a look at a sweep
    of 50,000 costs what its unfinished runs cost; a caller that needs every run reads them once, at the end.
    A backend that cannot be reached is asked again for ``WAIT_RETRY_SECONDS`` (not one that waits for its
    user: ``NeedsUser``, a login or a changed host key, ends the wait at once); a run the platform says can
    never run as asked (``records.CANNOT_RUN``) ends the wait with one line. Ctrl-C stops the following, not
    the sweep (its experiments run on their platform, or under their own supervisor): the line says so.
    ``interval``: seconds between two looks, by default the backend's (``Backend.look_every``)."""
    if interval is None:
        interval = plugins.backend(sweep.backend).look_every
    try:
        return _wait(sweep, store, reporter, interval)
    except KeyboardInterrupt:
        raise Interrupted(
            f"{interrupts.said()}: stopped following sweep {sweep.id}, which goes on: `mrunner status {sweep.id} --wait` follows it "
            f"again, `mrunner cancel {sweep.id}` stops it"
        ) from None


def _wait(sweep: Sweep, store: Store, reporter: Reporter, interval: float) -> dict[str, int]:
    counts = _looked_patiently(sweep, store, reporter, interval)
    shown = ""
    ended = sum(n for state, n in counts.items() if state in TERMINAL)
    with reporter.progress(sum(counts.values()), f"sweep {sweep.id}", ended) as progress:
        while True:
            ended = sum(n for state, n in counts.items() if state in TERMINAL)
            waiting = store.details(sweep.id, [PENDING]) if PENDING in counts else {}
            states = counts_text(counts, list(dict.fromkeys(waiting.values())))
            line = f"sweep {sweep.id}: {states}"
            done = not UNFINISHED & set(counts)
            # the final counts are the caller's line to say, once: not also below the bar left on the screen
            progress.update(ended, detail="" if done else states)
            if done:
                return counts
            if line != shown and not reporter.interactive:
                reporter.step(line)
            shown = line
            hopeless = [index for index, detail in waiting.items() if CANNOT_RUN in detail]
            if hopeless:
                more = f" (and {len(hopeless) - 1} more)" if len(hopeless) > 1 else ""
                raise MrunnerError(
                    f"experiment {sweep.id}/{hopeless[0]}{more} waits for ever: {waiting[hopeless[0]]}; "
                    f"`mrunner cancel {sweep.id}`"
                )
            time.sleep(interval)
            counts = _looked_patiently(sweep, store, reporter, interval)


def _looked_patiently(sweep: Sweep, store: Store, reporter: Reporter, interval: float) -> dict[str, int]:
    """``ask`` and the counts after it, asking again while the backend cannot be reached, for up to
    ``WAIT_RETRY_SECONDS``."""
    deadline = None
    while True:
        try:
            # the sweep as recorded now: what its backend recorded meanwhile (why a supervisor stopped) counts
            ask(store.sweep(sweep.id), store)
        except NeedsUser:  # a login or a host key to check: nobody answers it by waiting
            raise
        except BackendError as error:
            if deadline is None:
                deadline = time.monotonic() + WAIT_RETRY_SECONDS
                reporter.warn(f"{error}; asking again for up to {WAIT_RETRY_SECONDS / 60:g} minutes")
            if time.monotonic() > deadline:
                raise BackendError(f"{error} (asked again for {WAIT_RETRY_SECONDS / 60:g} minutes)") from None
            time.sleep(interval)
            continue
        if deadline is not None:
            reporter.step(f"sweep {sweep.id}: the backend answers again")
        return store.counts(sweep.id)


def output(sweep: Sweep, run: Run) -> str:
    """An ended experiment's output, as `mrunner logs` shows it."""
    chunks = plugins.backend(sweep.backend).logs(sweep, run, False, lambda: True)
    require_answer(chunks, sweep, "logs")
    return "".join(chunks)


def summary(runs: Sequence[Run]) -> str:
    """``3 completed, 2 pending``: the count of each state among ``runs``, in the order they first appear."""
    counts: dict[str, int] = {}
    for run in runs:
        counts[run.state] = counts.get(run.state, 0) + 1
    return counts_text(counts, [])


def counts_text(counts: Mapping[str, int], reasons: Sequence[str]) -> str:
    """``3 completed, 2 pending (Resources)``: the count of each state, and why runs wait."""
    parts = []
    for state, count in counts.items():
        why = reasons if state == PENDING else []
        more = f"; {len(why) - 2} more reasons" if len(why) > 2 else ""
        parts.append(f"{count} {state}" + (f" ({'; '.join(why[:2])}{more})" if why else ""))
    return ", ".join(parts) or "no experiments"


def cancel(sweep: Sweep, runs: Sequence[Run], store: Store) -> list[RunUpdate]:
    """Cancel ``runs``: planned ones in the records alone, the others through the backend."""
    planned = [
        RunUpdate(run.index, CANCELLED, detail="cancelled before submission", attempt=run.attempt)
        for run in runs
        if run.state == PLANNED
    ]
    handed = [run for run in runs if run.state in ACTIVE]
    updates = list(planned)
    if handed:
        result = plugins.backend(sweep.backend).cancel(sweep, handed, lambda changes: store.apply(sweep.id, changes))
        require_answer(result, sweep, "cancel")
        updates += result
    store.apply(sweep.id, updates)
    return updates


def require_answer(result: object, sweep: Sweep, hook_name: str) -> None:
    """Refuse a backend's ``None`` where its hook must answer: a bug in its plugin, named as such."""
    if result is None:
        raise BackendError(
            f"backend {sweep.backend!r} answered nothing to {hook_name} for sweep {sweep.id}: a bug in its plugin "
            f"({plugins.serving_distribution(sweep.backend)}); report it to its authors"
        )
