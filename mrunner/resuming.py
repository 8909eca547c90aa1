"""Resuming a sweep: submit again, as their next attempt, exactly the runs that never started or ended
without completing, optionally with changed resources and limits or the current code.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mrunner import plugins
from mrunner.backend import SubmitOptions
from mrunner.errors import MrunnerError
from mrunner.following import counts_text, looked_counts
from mrunner.planning import validated_context
from mrunner.records import PLANNED, RESUMABLE, Run, Sweep
from mrunner.reporter import Reporter
from mrunner.store import Store
from mrunner.submission import hand_over

if TYPE_CHECKING:
    from mrunner.snapshot import Snapshot

#: Context keys a resume may not change: they say where the sweep's records and files are, or are part of
#: its experiments' identities.
FIXED_ON_RESUME = ("backend", "project", "env", "secrets", "tags")


def resume(
    sweep: Sweep,
    store: Store,
    reporter: Reporter,
    options: SubmitOptions,
    context_overrides: Sequence[str] = (),
    current_code: bool = False,
) -> list[Run]:
    """Submit again exactly the runs that never started or ended without completing (a completed run never
    runs again), as their next attempt. ``context_overrides`` (``context.KEY=VALUE``) change the resources and
    limits the new attempts get, validated as a submission's context is; ``current_code`` runs the project
    folder's code as it is now (a new snapshot) instead of the recorded one. Each run keeps its own
    per-point resources (``Run.resources``) unless ``context_overrides`` change that key. The attempt
    records say what each attempt ran with."""
    from mrunner import snapshot

    plugins.backend(sweep.backend)
    changes = context_changes(sweep, context_overrides)
    counts = looked_counts(sweep, store)  # the sweep's ended runs stay undecoded: only the resumable are read
    chosen = store.runs(sweep.id, RESUMABLE)
    if not chosen:
        reporter.step(f"sweep {sweep.id}: nothing to resume ({counts_text(counts, [])})")
        return []
    context = validated_context(sweep.context_name, {**sweep.context, **changes})
    plugins.check(context, sweep.context_name, False)
    # what a refused hand-over puts back: a refused change must not stay recorded for the next resume
    before, since = copy.deepcopy(sweep), time.time()
    packaged: dict[str, Any] | None = None
    if current_code:
        frozen = snapshot.take(Path(sweep.project_dir))
        reporter.step(f"sweep {sweep.id}: running the current code of {sweep.project_dir} ({frozen.digest[:12]})")
        sweep.snapshot_digest, sweep.git_commit, sweep.git_dirty = frozen.digest, frozen.git_commit, frozen.git_dirty
        sweep.package = {}  # new code: named again (``Backend.identify``) and packaged from the project as it is
        sweep.detail.pop("identified", None)
    else:
        frozen = snapshot.load(sweep.snapshot_digest, root=Path(sweep.project_dir))
        packaged = _still_packaged(sweep, frozen, reporter)
    sweep.context = context
    # each keeps the resources it asked for (its class), except those this resume changes for all of them
    changed_own = {
        run.index: {**run.resources, **{key: context[key] for key in changes if key in run.resources}}
        for run in chosen
        if any(key in run.resources for key in changes)
    }
    earlier = chosen
    taken: list[str | None] = []  # who handed the sweep over before, once this resume has taken its runs

    def begin() -> list[Run]:
        """The resume's own records, in one transaction, inside the hand-over's handling: a failure of the
        records or a stop at any moment before anything reached the backend leaves the runs as they were."""
        restarted = [run.index for run in earlier if run.state != PLANNED]
        expected = {run.index: (run.state, run.attempt) for run in earlier}
        taken.append(store.start_resume(sweep, restarted, changes, changed_own, expected))
        return [store.run(sweep.id, run.index) for run in earlier]

    changed = ", ".join(f"{key}={value}" for key, value in changes.items())
    # said once the backend has accepted all but the submission itself: a refusal before is not a resume
    resuming = f"sweep {sweep.id}: resuming {len(chosen)} of {sum(counts.values())} experiments" + (
        f" with {changed}" if changed else ""
    )
    handed = hand_over(
        sweep,
        chosen,
        frozen,
        store,
        reporter,
        options,
        undo=lambda: store.undo_resume(before, earlier, since, taken[0]) if taken else None,
        begin=begin,
        announce=resuming,
        packaged=packaged,
    )
    return list(handed)


def _still_packaged(sweep: Sweep, frozen: Snapshot, reporter: Reporter) -> dict[str, Any] | None:
    """What the backend packaged of the sweep's snapshot, when this machine can no longer read that snapshot
    (its frozen copy was collected, or never made, and the project moved on): the image or code folder the
    submission left where the experiments run holds exactly the submitted code, so the new attempts run it
    (``Backend.packaged``). None when this machine still has the snapshot (``package`` runs as at submission).
    Refused in one line naming ``--current-code`` when neither holds it any more."""
    changed = frozen.changed_since()
    if not changed:
        return None
    try:
        facts = plugins.backend(sweep.backend).packaged(sweep, frozen, reporter)
    except MrunnerError as error:  # the platform could not be asked: said, with nothing recorded
        raise type(error)(f"{error} (nothing was resumed)") from None
    if facts is None:
        raise MrunnerError(
            f"sweep {sweep.id}: its code snapshot {sweep.snapshot_digest[:12]} is no longer on this machine nor "
            f"kept by the {sweep.backend} backend, "
            f"and {changed} changed since in {sweep.project_dir}: `mrunner resume {sweep.id} --current-code` runs "
            f"the code as it is now (nothing was resumed)"
        )
    reporter.step(
        f"sweep {sweep.id}: {changed} changed since the submission: the new attempts run the code as submitted "
        f"(snapshot {sweep.snapshot_digest[:12]}; `--current-code` runs the code as it is now)"
    )
    return facts


def context_changes(sweep: Sweep, overrides: Sequence[str]) -> dict[str, Any]:
    """``context.KEY=VALUE`` overrides as ``{KEY: VALUE}``, values read as `mrunner run` reads them (Hydra's
    grammar). A key the sweep's backend does not accept is refused by the validation that follows."""
    changes: dict[str, Any] = {}
    for text in overrides:
        key, value = _read(text)
        name = key[len("context.") :]
        if name in FIXED_ON_RESUME:
            raise MrunnerError(
                f"resume cannot change context.{name} of sweep {sweep.id}: submit a new sweep for that "
                f"(keys a resume may change: resources and limits such as time, mem, gpu, cpu, max_requeue)"
            )
        changes[name] = value
    return changes


def _read(text: str) -> tuple[str, Any]:
    """The key and value of one ``context.KEY=VALUE``: a plain one without Hydra (``grid.plain_axis``)."""
    from mrunner import grid

    known = grid.plain_axis(text.lstrip("+"))
    if known is not None and not known[1] and known[0].key.startswith("context."):
        return known[0].key, known[0].values[0]
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    try:
        (override,) = OverridesParser.create().parse_overrides([text.lstrip("+")])
    except HydraException as error:
        raise MrunnerError(f"cannot read {text!r}: {' '.join(str(error).split())}") from None
    key = override.key_or_group
    if not key.startswith("context.") or override.is_delete() or override.is_sweep_override():
        raise MrunnerError(f"resume changes one context key at a time as context.KEY=VALUE, got {text!r}")
    return key, override.value()
