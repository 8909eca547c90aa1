"""The launcher's flow: compose each job's config as Hydra's launchers do, hand the jobs to mrunner as one
sweep (``planning.Request`` -> ``Plan`` -> ``submission.submit`` -> ``following.wait``), tell the sweep's trackers
how it ended (as ``mrunner`` does for a sweep it waited for), then make each experiment's end a ``JobReturn``.

A job reaches its backend in one of two ways:
- **a command** (an app started as ``python app.py -m ...``): the job runs the app's own script from the
  code snapshot with its overrides, as ``python app.py OVERRIDES`` would, on any backend. It composes its
  config there, and reports that config and how it ended through a Hydra callback (``mrunner.hydra_job``)
  on its output, which the backend's logs bring back: the launcher composes nothing itself (composing
  costs about a tenth of a second per job), except for a job that never got to report.
- **a task function** that no command reaches (Hydra's in-process API, a notebook): it is pickled with the
  job's config, like Hydra's joblib and submitit launchers do, and runs on the local backend only, since
  a pickle ties the job to this machine's Python.
"""

from __future__ import annotations

import copy
import logging
import os
import shlex
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, JobStatus, configure_log, filter_overrides, setup_globals
from hydra.errors import CompactHydraException
from hydra_plugins.mrunner_launcher import _job
from hydra_plugins.mrunner_launcher.mrunner_launcher import MrunnerLauncher
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

from mrunner import config as mrunner_config
from mrunner import following, grid, hydra_job, interrupts, planning, snapshot, submission
from mrunner.commands.run import tell_trackers
from mrunner.errors import Interrupted, MrunnerError, mask_credentials
from mrunner.experiment import Experiment
from mrunner.naming import experiment_name
from mrunner.records import COMPLETED, PLANNED, Run, Sweep
from mrunner.reporter import Reporter
from mrunner.store import Store

log = logging.getLogger(__name__)

CALLBACK = "mrunner.hydra_job.JobReport"
# Hydra overrides that stay with the multirun: a job runs alone, in the folder it is given (hydra.run.dir).
NOT_FOR_JOBS = (
    "hydra/launcher",
    "hydra.launcher",
    "hydra/sweeper",
    "hydra.sweeper",
    "hydra.mode",
    "hydra.run.",
    "hydra.sweep.dir",
)


class JobFailed(MrunnerError, CompactHydraException):
    """A job that did not complete; Hydra raises it when the sweeper reads the job's return value, and
    prints it as one line (a compact Hydra error) after the job's overrides."""


@dataclass
class Job:
    index: int
    overrides: list[str]


@dataclass
class Composed:
    """A job's config as Hydra's basic launcher composes it before ``run_job``."""

    config: DictConfig  # with its hydra node
    hydra_cfg: DictConfig
    output_dir: str  # absolute: hydra.sweep.dir / hydra.sweep.subdir


class LaunchFailed(MrunnerError, CompactHydraException):
    """What stopped the launch (an unknown context, a cluster that wants `mrunner login` while the app has no
    terminal): Hydra prints it as one line, as mrunner's command line does, not as a traceback through both."""


def launch(launcher: MrunnerLauncher, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> list[JobReturn]:
    interrupts.forget()
    try:
        return _launch(launcher, job_overrides, initial_job_idx)
    except LaunchFailed:
        raise
    except Interrupted as error:
        # stopped by a signal (Ctrl-C; SIGTERM, SIGHUP while the sweep is handed over): what was done is recorded.
        # The app ends as mrunner's command line does, with 128 + the signal, which Hydra's exit 1 for a failed
        # launch would hide from a shell, `timeout` or a scheduler.
        print(mask_credentials(f"mrunner: error: {error}"), file=sys.stderr)
        raise SystemExit(interrupts.exit_code()) from None
    except MrunnerError as error:
        raise LaunchFailed(mask_credentials(str(error))) from None


def _launch(launcher: MrunnerLauncher, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> list[JobReturn]:
    setup_globals()
    assert launcher.config is not None and launcher.hydra_context is not None and launcher.task_function is not None
    options = launcher.options
    configure_log(launcher.config.hydra.hydra_logging, launcher.config.hydra.verbose)
    sweep_dir = Path(str(launcher.config.hydra.sweep.dir)).absolute()
    sweep_dir.mkdir(parents=True, exist_ok=True)
    jobs = [Job(initial_job_idx + i, list(overrides)) for i, overrides in enumerate(job_overrides)]
    log.info(f"mrunner launcher: {len(jobs)} jobs, sweep output dir {sweep_dir}")
    for job in jobs:
        log.info(f"\t#{job.index} : {' '.join(filter_overrides(job.overrides))}")

    context_name = options.get("context") or mrunner_config.current_context()
    keys = options.get("context_keys") or {}
    backend = keys.get("backend") or mrunner_config.read_context(context_name).get("backend")
    shared = options.get("shared_fs")
    shared = backend == "local" if shared is None else bool(shared)
    script = _script(launcher.task_function)
    if script is None and backend != "local":
        raise MrunnerError(
            f"this multirun's task function is not a script's @hydra.main (it runs through Hydra's in-process "
            f"API): only a context on this machine (backend local) can run it, and {context_name!r} is {backend!r}; "
            f"start the app as `python app.py -m ...`"
        )
    name = experiment_name(options.get("name") or str(launcher.config.hydra.job.name))
    if script is not None:
        experiments = [_command_job(job, script, name, launcher.config, sweep_dir, shared) for job in jobs]
    else:
        experiments = [_function_job(job, launcher, sweep_dir, name) for job in jobs]
    root = snapshot.project_root(Path.cwd()).resolve()
    if sweep_dir.resolve().is_relative_to(root):  # the jobs write there while the code is snapshotted
        for experiment in experiments:
            experiment.exclude = [f"/{sweep_dir.resolve().relative_to(root)}/"]
    request = planning.Request(
        target=None,
        experiments=experiments,
        context_name=context_name,
        name=name,
        context_overrides=[f"context.{k}={grid.format_value(v)}" for k, v in keys.items()],
        tags=[str(t) for t in options.get("tags") or []],
        force=True,
        argv=[Path(sys.executable).name, *sys.argv],
    )
    plan = planning.Plan(request)
    if plan.context["backend"] != backend:
        raise MrunnerError(f"context {context_name}: context_keys may not change its backend ({backend!r})")
    store = Store()
    reporter = Reporter(quiet=bool(options.get("quiet")))
    sweep, runs = submission.submit(plan, store, reporter)
    interval = float(options["poll_interval"]) if options.get("poll_interval") else None  # None: the backend's
    following.wait(sweep, store, reporter, interval=interval)
    tell_trackers(store, sweep, reporter)  # as `mrunner` does: no MLflow run of an ended job reads RUNNING
    runs = store.runs(sweep.id)  # every run as it ended: each job's return is made of its run
    reporter.step(f"sweep {sweep.id}: {following.summary(runs)} (`mrunner status {sweep.id}`)")
    if script is not None:
        return [_command_return(launcher, job, run, sweep, sweep_dir, shared) for job, run in zip(jobs, runs)]
    return [_function_return(launcher, job, run, sweep_dir) for job, run in zip(jobs, runs)]


def _compose(launcher: MrunnerLauncher, job: Job) -> Composed:
    """The job's config exactly as Hydra's basic launcher makes it before ``run_job``."""
    assert launcher.hydra_context is not None and launcher.config is not None
    before = HydraConfig.instance().cfg
    try:
        config = launcher.hydra_context.config_loader.load_sweep_config(launcher.config, job.overrides)
        with open_dict(config):
            config.hydra.job.id = f"{config.hydra.job.name}_{job.index}"
            config.hydra.job.num = job.index
        HydraConfig.instance().set_config(config)  # ${hydra:...} in the sweep folders resolves against this job
        output_dir = os.path.abspath(os.path.join(str(config.hydra.sweep.dir), str(config.hydra.sweep.subdir)))
        with read_write(config.hydra.runtime), open_dict(config.hydra.runtime):
            config.hydra.runtime.output_dir = output_dir
        HydraConfig.instance().set_config(config)
        hydra_cfg = copy.deepcopy(HydraConfig.instance().cfg)
    finally:
        HydraConfig.instance().cfg = before
    return Composed(config, hydra_cfg, output_dir)  # type: ignore[arg-type]


def _script(task_function: Any) -> str | None:
    """The script whose ``@hydra.main`` is the task function, when the app was started as a script."""
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    if getattr(task_function, "__module__", None) != "__main__" or not path or not path.endswith(".py"):
        return None
    return os.path.abspath(path)


def _parameters(overrides: list[str]) -> dict[str, Any]:
    return grid.hydra_point({}, grid.grid(overrides, multirun=False, hydra_app=True), 0)[0] if overrides else {}


def _command_job(job: Job, script: str, name: str, master: DictConfig, sweep_dir: Path, shared: bool) -> Experiment:
    """The job as ``python app.py OVERRIDES``: the sweeper's overrides, the multirun's own Hydra overrides,
    its number, and where it runs (its Hydra output folder when it shares this machine's files; the job
    resolves ``hydra.sweep.subdir`` itself, as Hydra's launchers do)."""
    given = OmegaConf.to_container(master.hydra.overrides.hydra)  # as written: ${...} stays unresolved
    assert isinstance(given, list)
    passed = [str(o) for o in given if not str(o).lstrip("+~").startswith(NOT_FOR_JOBS)]
    own = [
        f"hydra.sweep.dir={grid.format_value(str(sweep_dir))}",
        f"hydra.job.num={job.index}",
        f"hydra.job.id={grid.format_value(f'{master.hydra.job.name}_{job.index}')}",
        f"++hydra.callbacks.mrunner_job._target_={CALLBACK}",
    ]
    if shared:
        own += [
            "hydra.run.dir=${hydra.sweep.dir}/${hydra.sweep.subdir}",
            f"++hydra.callbacks.mrunner_job.original_cwd={grid.format_value(os.getcwd())}",
        ]
    return Experiment(
        script=os.path.relpath(script),
        name=name,
        parameters=_parameters(job.overrides),
        overrides=[*job.overrides, *passed, *own],
    )


def _function_job(job: Job, launcher: MrunnerLauncher, sweep_dir: Path, name: str) -> Experiment:
    """The job as a pickle of its task function and config, run by ``_job`` on this machine."""
    import cloudpickle

    config = _compose(launcher, job).config
    with read_write(config.hydra):
        config.hydra.sweep.dir = str(sweep_dir)  # the job starts in its own folder: make it absolute
    job_file = _job_file(sweep_dir, job)
    job_file.parent.mkdir(exist_ok=True)
    state = {
        "config": config,
        "hydra_context": launcher.hydra_context,
        "task_function": launcher.task_function,
        "singleton_state": Singleton.get_state(),
    }
    job_file.write_bytes(cloudpickle.dumps(state))
    Path(_job.result_path(str(job_file))).unlink(missing_ok=True)
    script = shlex.join([sys.executable, "-m", _job.__name__, str(job_file)])
    return Experiment(script=script, name=name, parameters=_parameters(job.overrides))


def _job_file(sweep_dir: Path, job: Job) -> Path:
    return sweep_dir / ".mrunner" / f"job-{job.index}.pickle"


# -- what each job returned ------------------------------------------------------------------------------


def _command_return(
    launcher: MrunnerLauncher, job: Job, run: Run, sweep: Sweep, sweep_dir: Path, shared: bool
) -> JobReturn:
    output = following.output(sweep, run) if run.state != PLANNED else ""
    report = hydra_job.read_report(output)
    if report is not None and "config" in report:  # the config the job composed and ran with
        returned = _job_return(job, OmegaConf.create(report["config"]), OmegaConf.create(report["hydra"]))
        output_dir = str(sweep_dir / report["subdir"])
    else:  # it never got to report: its config as Hydra would have made it
        composed = _compose(launcher, job)
        returned = _job_return(job, _task_config(composed.config), composed.hydra_cfg)
        output_dir = composed.output_dir
    if not shared:  # Hydra's outputs of the job, here as well: its .hydra/ and its log
        _write_outputs(returned, output_dir, output)
    returned.working_dir = report["cwd"] if shared and report else output_dir
    if report is not None and report.get("status") == "FAILED":
        returned.status = JobStatus.FAILED
        returned.return_value = JobFailed(
            f"job #{job.index} ({run.ref}) failed: {report.get('error')} (its output: `mrunner logs {run.ref}`)"
        )
    elif run.state != COMPLETED:
        returned.status = JobStatus.FAILED
        returned.return_value = JobFailed(_ended(job, run))
    else:
        returned.status = JobStatus.COMPLETED
        if report is None:
            log.warning(f"job #{job.index} ({run.ref}) completed without reporting its return value")
        elif "repr" in report:
            log.warning(f"job #{job.index} returned a value that is not plain data: it is reported as its repr")
        returned.return_value = None if report is None else report.get("value", report.get("repr"))
    return returned


def _function_return(launcher: MrunnerLauncher, job: Job, run: Run, sweep_dir: Path) -> JobReturn:
    import cloudpickle

    result = Path(_job.result_path(str(_job_file(sweep_dir, job))))
    if result.exists():
        returned = cloudpickle.loads(result.read_bytes())
        if run.state == COMPLETED or returned.status == JobStatus.FAILED:
            return returned  # type: ignore[no-any-return]
    composed = _compose(launcher, job)
    returned = _job_return(job, _task_config(composed.config), composed.hydra_cfg)
    returned.working_dir = composed.output_dir
    returned.status = JobStatus.FAILED
    returned.return_value = JobFailed(_ended(job, run))
    return returned


def _task_config(config: DictConfig) -> DictConfig:
    task_cfg = copy.deepcopy(config)
    with read_write(task_cfg), open_dict(task_cfg):
        del task_cfg["hydra"]
    return task_cfg


def _job_return(job: Job, task_cfg: Any, hydra_cfg: Any) -> JobReturn:
    returned = JobReturn()
    returned.overrides = job.overrides
    returned.cfg = task_cfg
    returned.hydra_cfg = hydra_cfg
    returned.task_name = str(hydra_cfg.hydra.job.name)
    return returned


def _ended(job: Job, run: Run) -> str:
    code = "" if run.exit_code is None else f", exit code {run.exit_code}"
    return f"job #{job.index} ({run.ref}) ended {run.state}{code}: see `mrunner logs {run.ref}`"


def _write_outputs(returned: JobReturn, output_dir: str, output: str) -> None:
    assert returned.hydra_cfg is not None
    folder = Path(output_dir)
    folder.mkdir(parents=True, exist_ok=True)
    subdir = returned.hydra_cfg.hydra.output_subdir
    if subdir is not None:
        (folder / str(subdir)).mkdir(parents=True, exist_ok=True)
        # what Hydra's own run_job writes (with its private _save_config), through OmegaConf's public API
        configs = {"config.yaml": returned.cfg, "hydra.yaml": returned.hydra_cfg}
        configs["overrides.yaml"] = returned.hydra_cfg.hydra.overrides.task
        for name, config in configs.items():
            (folder / str(subdir) / name).write_text(OmegaConf.to_yaml(config), encoding="utf-8")
    (folder / f"{returned.task_name}.log").write_text(output, encoding="utf-8")
