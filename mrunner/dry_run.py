"""The dry run (``--dry-run``): what a submission of a plan would do, shown and nothing more. The code is
snapshotted as a submission does it (the same size limit) but nothing is stored, recorded or handed over.
"""

from __future__ import annotations

import shlex

from mrunner import plugins
from mrunner.planning import Plan, PlannedRuns, new_sweep, too_large
from mrunner.records import resource_label
from mrunner.snapshot import Snapshot
from mrunner.store import Store, default_path
from mrunner.submission import collect_secrets, tally

DRY_RUN_SHOWN = 5
#: The largest grid whose points the dry run walks to count what a submission would record (repeats once,
#: points already submitted skipped): the walk costs each point's identity, and a dry run of a larger grid
#: answers at once with the grid's size instead.
DRY_RUN_COUNTED = 10_000

#: How the dry run shows its own sweep id in what it renders: a submission gets a new one.
SWEEP_ID_PLACEHOLDER = "<sweep id>"


def describe(plan: Plan) -> list[str]:
    """The dry run's report: count, backend plan, the first experiments with their exact commands, and what
    the backend would be handed (``Backend.render``)."""
    from mrunner import snapshot

    excluded, extra = plan.snapshot_patterns
    frozen = snapshot.scan(plan.root, excluded, extra, max_bytes=plan.context["max_snapshot_mb"] * 2**20)
    counted = len(plan) <= DRY_RUN_COUNTED
    classes, repeated, skipped, first = _submitted(plan, frozen) if counted else (plan.resource_classes(), 0, 0, [])
    count = sum(number for _, number in classes.values())
    lines = [
        "dry run: nothing submitted, nothing recorded",
        f"{count} experiment{'s' * (count != 1)} on context {plan.context_name} (backend {plan.context['backend']}), "
        f"project {plan.project}, code from {plan.root}",
    ]
    if not counted:
        lines.append(
            f"a grid of more than {DRY_RUN_COUNTED:,} points: the submission counts which repeat another or were "
            f"already submitted (each runs once)"
        )
    if repeated:
        lines.append(
            f"{repeated} experiment{'s' * (repeated != 1)} of the grid repeat{'s' * (repeated == 1)} another "
            f"exactly; each runs once"
        )
    if skipped:
        lines.append(
            f"{skipped} of {len(plan) - repeated} experiments were already submitted on context {plan.context_name} "
            f"and would be skipped (--force runs them again)"
        )
    lines += ["plan:", *planned_steps(plan, classes)]
    if too_large(plan) and not plan.request.yes:
        lines.append(f"refused without --yes: {too_large(plan)}")
    from mrunner import grid

    points = first if counted else list(range(min(len(plan), DRY_RUN_SHOWN)))
    if counted and not points:
        lines.append("experiments: none (every point was submitted already)")
    else:
        total = count if counted else len(plan)
        lines.append(f"first {len(points)} of {total}:" if len(points) < total else "experiments:")
    for index, point in enumerate(points):
        experiment = plan.experiment(point)
        own = f" [{resource_label(experiment.resources)}]" if experiment.resources else ""
        lines.append(f"  [{index}] {experiment.name}: {grid.describe(experiment.parameters) or '(no parameters)'}{own}")
        lines.append(f"      $ {shlex.join(plan.command(experiment))}")
    return lines + rendered(plan, frozen)


def _submitted(plan: Plan, frozen: Snapshot) -> tuple[dict[str, tuple[dict, int]], int, int, list[int]]:
    """What a submission of ``plan`` would record, as ``submission.to_record`` counts it, in one walk of the
    grid (``submission.tally``): its resource classes, how many points repeat another of the grid, how many
    were already submitted on the context (read from the records if there are any, without ``--force``;
    nothing is written), and the grid positions of the first ``DRY_RUN_SHOWN`` experiments it records, in
    order: a point that repeats another, or that was submitted already, takes no index there, so the dry
    run numbers what it lists as the records will."""
    store = None if plan.request.force or not default_path().exists() else Store()
    counted = tally(plan, new_sweep(plan, frozen), frozen, store, skip=store is not None, shown=DRY_RUN_SHOWN)
    repeated = len(plan) - sum(number for _, number in counted.distinct.values())
    skipped = len(plan) - repeated - sum(number for _, number in counted.classes.values())
    return counted.classes, repeated, skipped, counted.first


def planned_steps(plan: Plan, classes: dict[str, tuple[dict, int]]) -> list[str]:
    """The backend's plan (``Backend.plan``), once per resource class when experiments ask for different
    resources: the steps every class shares once, then each class with its count and its own steps (a
    Slurm job array of its own, with its own sbatch options). ``classes``: those of the runs a submission
    would record (a grid's repeats once, none already submitted)."""
    backend = plugins.backend(plan.context["backend"])
    # the project as the sweep records it (its folder's name when the context names none): a plan that
    # names images or namespaces after it then names the ones the submission uses
    context = {**plan.context, "project": plan.context.get("project") or plan.project}
    if not classes:
        return ["  - nothing: every experiment was submitted already"]
    if len(classes) == 1:
        ((own, count),) = classes.values()
        return [f"  - {step}" for step in backend.plan({**context, **own}, count)]
    steps = {label: backend.plan({**context, **own}, count) for label, (own, count) in classes.items()}
    # shared: what the whole sweep's plan says too (so neither the count nor a class's resources changed it)
    whole = backend.plan(context, sum(number for _, number in classes.values()))
    shared = [step for step in whole if all(step in each for each in steps.values())]
    lines = [f"  - {step}" for step in shared]
    lines.append(f"  - {len(classes)} resource classes, each submitted on its own:")
    for label, (_, count) in classes.items():
        lines.append(f"    - {label or '(the context as it is)'}: {count} experiment{'s' * (count != 1)}")
        lines += [f"      - {step}" for step in steps[label] if step not in shared]
    return lines


def rendered(plan: Plan, frozen: Snapshot) -> list[str]:
    """What the backend's ``Backend.render`` shows, each as a title line and its exact text between marks.
    The backend gets the secrets' names alone, so no value can be shown."""
    sweep = new_sweep(plan, frozen)
    secret_names = sorted(collect_secrets(plan.context))
    renderings = plugins.backend(plan.context["backend"]).render(
        sweep, PlannedRuns(plan, sweep, frozen.digest), frozen, secret_names
    )
    lines: list[str] = []
    for rendering in renderings:
        lines += [
            f"--- {rendering.title.replace(sweep.id, SWEEP_ID_PLACEHOLDER)}",
            *rendering.text.replace(sweep.id, SWEEP_ID_PLACEHOLDER).rstrip("\n").splitlines(),
            "---",
        ]
    return lines
