"""mrunner's command line.

    mrunner [OPTIONS] [+context=NAME | --context NAME] TARGET [-m] [OVERRIDE ...] [-- SCRIPT_ARGS ...]
    mrunner run ...                      (the same, as in the original mrunner)
    mrunner context|config|plugins|status|logs|cancel|resume|results|pull|gc|forget|login|logout ...

Only argparse is imported up front; each command imports what it needs, so `--help` stays fast.
"""

from __future__ import annotations

import argparse
import atexit
import gc
import os
import signal
import sys
import traceback
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

from mrunner import __version__, interrupts
from mrunner.commands import GROUP_OPTIONS
from mrunner.errors import Interrupted, MrunnerError, mask_credentials

SUBCOMMANDS = (
    "context",
    "config",
    "plugins",
    "status",
    "logs",
    "cancel",
    "resume",
    "results",
    "pull",
    "gc",
    "forget",
    "login",
    "logout",
)

RUN_USAGE = "mrunner [OPTIONS] [+context=NAME | --context NAME] TARGET [-m] [OVERRIDE ...] [-- SCRIPT_ARGS ...]"
RUN_DESCRIPTION = """\
Run an experiment script (or the experiments of a spec file) for every point of a parameter grid, on the
context's backend: this machine, a Slurm cluster over SSH, or Kubernetes.

TARGET is an experiment script (never run by mrunner itself, only by the backend) or a spec file, one
that assigns `experiments_list` at top level (recognised without running it; force with --spec).
OVERRIDEs use Hydra's grammar: `lr=0.1,0.01`, `seed=range(5)`, `opt=choice(adam,sgd)`, `+new=1`, `~key`,
`model.depth=3`. `context=NAME` picks a context, `context.KEY=VALUE` changes one of its keys for this run;
everything else is a parameter. Arguments after `--` reach the script verbatim.

examples:
  mrunner train.py lr=0.1                                   one run on this machine
  mrunner train.py -m lr=0.1,0.01 'seed=range(3)'           a grid of 6 points, as many at once as CPUs
  mrunner +context=cluster train.py -m 'lr=choice(0.1,0.01)' --wait   on Slurm, following it to the end
  mrunner spec.py --dry-run                                 what a spec file would run, submitting nothing
  mrunner status; mrunner logs SWEEP/0 -f; mrunner resume SWEEP --time 2:00:00

other commands:
  context   list, show, add, edit, delete, copy, use and import contexts
  config    show, set or unset mrunner's settings (current_context)
  plugins   the installed backends and trackers, their versions, hooks and methods
  status    the recorded sweeps, or one sweep's experiments
  logs      an experiment's output (-f to follow)
  cancel    cancel a sweep or one experiment
  resume    run again what of a sweep never started or failed
  results   a sweep's reported metrics as a table over its grid (--over seed, --plot, --json, --csv)
  pull      bring a sweep's output folders to this machine (only what changed)
  gc        remove code snapshots, code folders, environments mrunner left behind
  forget    remove the records of a sweep that never reached its backend
  login     log in to a context's cluster once (one-time codes); without CONTEXT, list open logins
  logout    close a context's login

`mrunner COMMAND --help` tells more. Records live in $XDG_DATA_HOME/mrunner, contexts in
$XDG_CONFIG_HOME/mrunner/context.
"""


_status: int | None = None  # what `main` returned, for `_skip_teardown`
GC_THRESHOLD = 100_000  # allocations between two runs of the youngest generation's cycle collection


def console() -> int:
    """The ``mrunner`` command (and ``python -m mrunner``): `main`, then an exit without the teardown.

    Freeing every module a dispatch imported (Hydra, omegaconf, paramiko, cryptography) takes the
    interpreter 50-100 ms, a tenth of a 1,000-experiment dispatch, and frees nothing the operating system
    would not. So once `main` has returned, and after the usual shutdown (threads joined, the libraries'
    exit handlers run), the process flushes its output and ends at once.
    """
    global _status
    atexit.register(_skip_teardown)  # before the libraries a command imports register theirs: runs last
    # A dispatch creates objects that nearly all live to the end (Hydra's, paramiko's modules): at the default
    # threshold of 700 the cycle collector runs ~130 times and spends 40 ms scanning them (measured). At
    # 100,000 it does not run in a dispatch, and still runs in long commands (--wait, logs -f, a local sweep).
    gc.set_threshold(GC_THRESHOLD, *gc.get_threshold()[1:])
    _status = main()
    return _status


def _skip_teardown() -> None:
    if _status is None:
        return  # `main` raised (argparse's exit, a bug): the ordinary teardown reports it
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass  # a closed pipe: nothing left to say
    os._exit(_status)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    before_separator = args[: args.index("--")] if "--" in args else args
    debug = "--debug" in before_separator
    # Stop as Ctrl-C does: what was done is recorded, the rest resumable. A signal ignored by whoever started
    # mrunner stays ignored, as Python leaves an ignored SIGINT: under `nohup`, closing the terminal must not
    # stop the sweep.
    interrupts.forget()
    try:
        # Ctrl-C while Python imported mrunner ended the process quietly (`mrunner_entry`); from here it stops as
        # Ctrl-C should, and is caught below, with the signal's own code (`interrupts.stopped_by`).
        handler = signal.getsignal(signal.SIGINT)
        if handler is signal.default_int_handler or getattr(handler, "mrunner_start_up", False):
            signal.signal(signal.SIGINT, interrupts.stopping)
        for number in (signal.SIGTERM, signal.SIGHUP):
            if signal.getsignal(number) is not signal.SIG_IGN:
                signal.signal(number, interrupts.stopping)
        interrupts.take_over()
        return _dispatch(args)
    except Interrupted as error:  # stopped, and the command said what was recorded: the signal's code
        print(f"mrunner: error: {one_line(str(error))}", file=sys.stderr)
        return interrupts.exit_code()
    except MrunnerError as error:
        if debug:
            traceback.print_exc()
        print(f"mrunner: error: {one_line(str(error))}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        print(f"mrunner: {interrupts.said()}", file=sys.stderr)
        return interrupts.exit_code()
    except RuntimeError as error:
        # Python before 3.12 turns an exception raised in a class's `__set_name__` (a dataclass field,
        # functools.cached_property) into a RuntimeError: a stop that lands there while a command imports a
        # module is still the stop, not a traceback
        if not isinstance(error.__cause__, KeyboardInterrupt):
            raise
        print(f"mrunner: {interrupts.said()}", file=sys.stderr)
        return interrupts.exit_code()
    except BrokenPipeError:
        return 0
    except OSError as error:  # a file-system failure no command turned into a sentence of its own
        from mrunner.errors import os_error

        if debug:
            traceback.print_exc()
        print(f"mrunner: error: {one_line(str(os_error(error, 'use')))}", file=sys.stderr)
        return 2


def one_line(message: str) -> str:
    """An error message as one line: a line break or other control character from the input (a file name,
    an override) is shown escaped instead of breaking the line, and a URL's credentials masked
    (``errors.mask_credentials``: an index URL, a tracker's URI or a tool's output quoted in it may hold one)."""
    message = mask_credentials(message)
    if message.isprintable():
        return message
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in message)


def _dispatch(args: list[str]) -> int:
    try:
        os.getcwd()
    except FileNotFoundError:
        raise MrunnerError(
            "the working directory was deleted (or moved away): cd into an existing folder and run mrunner again"
        ) from None
    before_separator = args[: args.index("--")] if "--" in args else args
    if any(arg == "--config" or arg.startswith("--config=") for arg in before_separator):
        raise MrunnerError(
            "--config FILE named the original mrunner's config.yaml: import its contexts once with "
            "`mrunner context import FILE`, then choose one with --context NAME"
        )
    command, position = _first_positional(args)
    if command in SUBCOMMANDS:
        return _subcommand(command, args[:position] + args[position + 1 :])
    if command == "run":
        args = args[:position] + args[position + 1 :]
    return _run(args)


def _first_positional(args: list[str]) -> tuple[str | None, int]:
    """The first word that is not an option or an option's value (``--debug``, ``--context X`` may precede it)."""
    takes_value = {"--context", "--name", "--tag", *(f"--{o}" for o in GROUP_OPTIONS)}
    skip = False
    for position, arg in enumerate(args):
        if arg == "--":
            break
        if skip:
            skip = False
        elif arg.startswith("-"):
            skip = arg in takes_value
        else:
            return arg, position
    return None, -1


# -- running an experiment grid ------------------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    """argparse's errors as mrunner's: one line (argparse prints the usage first), the same exit code."""

    def error(self, message: str) -> NoReturn:
        raise MrunnerError(f"{message} (see `{self.prog} --help`)")

    def _parse_known_args(self, arg_strings: list[str], *rest: Any) -> Any:
        return super()._parse_known_args(_values_joined(self, arg_strings), *rest)


def _values_joined(parser: argparse.ArgumentParser, args: Sequence[str]) -> list[str]:
    """``--older-than -2d`` as ``--older-than=-2d``: argparse takes a value that starts with ``-`` for an option
    and says only "expected one argument"; joined, the option's own check names it and the form it takes."""
    joined: list[str] = []
    values = iter(args)
    for arg in values:
        action = parser._option_string_actions.get(arg)
        if arg == "--":
            joined += [arg, *values]
            break
        if action is not None and action.nargs is None and action.option_strings:
            value = next(values, None)
            if value not in (None, "--") and value.startswith("-") and value not in parser._option_string_actions:
                joined.append(f"{arg}={value}")
                continue
            joined.append(arg)
            if value is not None:
                joined.append(value)
            continue
        joined.append(arg)
    return joined


def run_parser(args: Sequence[str] = ()) -> argparse.ArgumentParser:
    """The parser of a run; when ``args`` ask for help, its shorthand options say which backends honour them
    (and whether the chosen context's does), which loads every backend's keys: only then."""
    parser = _Parser(
        prog="mrunner",
        usage=RUN_USAGE,
        description=RUN_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"mrunner {__version__}")
    parser.add_argument("items", nargs="*", help=argparse.SUPPRESS)
    parser.add_argument("-m", "--multirun", action="store_true", help="run every point of the grid (needed for sweeps)")
    parser.add_argument(
        "--context", metavar="NAME", help="the context to run on (default: current_context, else local)"
    )
    parser.add_argument(
        "--spec",
        nargs="?",
        const="experiments_list",
        metavar="VARIABLE",
        help="TARGET is a spec file; take the experiments from VARIABLE (default: experiments_list)",
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="print the count, the plan and the first experiments with their commands; submit and record nothing",
    )
    ending = parser.add_mutually_exclusive_group()  # both: the sweep detached and --wait went unsaid
    ending.add_argument("--detach", action="store_true", help="return at once; the sweep goes on in the background")
    ending.add_argument("--wait", action="store_true", help="wait until every experiment has ended, showing progress")
    parser.add_argument("--force", action="store_true", help="run experiments again even if already submitted")
    parser.add_argument(
        "-y", "--yes", action="store_true", help="submit a sweep larger than the context's max_experiments (10,000)"
    )
    parser.add_argument("--name", help="the sweep's and experiments' readable name (default: the script's name)")
    parser.add_argument("--tag", action="append", default=[], help="tag every experiment (repeatable)")
    parser.add_argument("--quiet", action="store_true", help="print only the sweep id")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    title = "context keys for this run (the original mrunner's options)"
    helps = {option: f"same as context.{option}=VALUE" for option in GROUP_OPTIONS}
    before_separator = args[: list(args).index("--")] if "--" in args else args
    if any(arg in ("-h", "--help") for arg in before_separator):
        from mrunner.commands import shorthands

        title, helps = shorthands.described(GROUP_OPTIONS, title, before_separator)
    group = parser.add_argument_group(title)
    for option in GROUP_OPTIONS:
        group.add_argument(f"--{option}", metavar="VALUE", help=helps[option])
    return parser


def _run(args: list[str]) -> int:
    script_args: list[str] = []
    if "--" in args:
        split = args.index("--")
        args, script_args = args[:split], args[split + 1 :]
    options = run_parser(args).parse_intermixed_args(args)
    target, overrides, context_name, context_overrides = _split_items(options.items)
    if options.spec and target is None and os.path.isfile(options.spec):
        target, options.spec = options.spec, "experiments_list"  # `mrunner --spec spec.py`
    if target is None:
        raise MrunnerError("no TARGET: give an experiment script or a spec file (see `mrunner --help`)")
    if options.context == "" or context_name == "":  # `+context=$CLUSTER` with the variable unset
        raise MrunnerError(
            "the context named is empty: give +context=NAME or --context NAME (`mrunner context list` shows "
            "them), or neither for the current context"
        )
    given = [option for option in GROUP_OPTIONS if getattr(options, option) is not None]
    if given and not any(o.lstrip("+~").startswith("context.backend") for o in context_overrides):
        from mrunner.commands import shorthands

        name = options.context or context_name or shorthands.chosen_context([])
        backend = shorthands.backend_of(name) if name else None
        if backend is not None:  # else the context's own error, when it is composed, says what is wrong
            shorthands.refuse_unhonoured(given, GROUP_OPTIONS, backend, f"context {name}")
    context_overrides += [f"context.{option}={getattr(options, option)}" for option in given]
    from mrunner.commands.run import RunArguments, run  # after parsing: `--help` and a refusal need none of it

    return run(
        RunArguments(
            target=target,
            overrides=overrides,
            multirun=options.multirun,
            context_name=options.context or context_name,
            context_overrides=context_overrides,
            script_args=script_args,
            spec_variable=options.spec,
            dry_run=options.dry_run,
            detach=options.detach,
            wait=options.wait,
            force=options.force,
            yes=options.yes,
            name=options.name,
            tags=options.tag,
            quiet=options.quiet,
        )
    )


def _split_items(items: list[str]) -> tuple[str | None, list[str], str | None, list[str]]:
    """TARGET, parameter overrides, the chosen context, and ``context.*`` overrides."""
    target = None
    overrides: list[str] = []
    context_name = None
    context_overrides: list[str] = []
    for item in items:
        looks_like_override = "=" in item or item.startswith("~")
        key = item.split("=", 1)[0].lstrip("+~")
        if target is None and (not looks_like_override or os.path.isfile(item)):
            target = item
        elif key == "context" and "=" in item:
            context_name = item.split("=", 1)[1]
        elif key.startswith("context."):
            context_overrides.append(item)
        elif not looks_like_override:
            raise MrunnerError(f"unexpected {item!r} after TARGET {target}: overrides look like KEY=VALUE")
        else:
            overrides.append(item)
    return target, overrides, context_name, context_overrides


# -- the other commands --------------------------------------------------------------------------------------


#: Options whose value may start with a dash (`results --sort -acc`: descending), which argparse would take
#: for an option of its own.
DASHED_VALUES = ("--sort",)


def _subcommand(command: str, args: list[str]) -> int:
    parser, handle = subcommand_parser(command)
    return handle(parser.parse_args(subcommand_arguments(command, args)))


def subcommand_arguments(command: str, args: list[str]) -> list[str]:
    """``args`` as the parser of ``mrunner COMMAND`` reads them: a value that starts with a dash glued to its
    option (``--sort=-acc``), and the original mrunner's ``context add --KEY VALUE`` for a key of the backend
    as ``KEY=VALUE``."""
    glued: list[str] = []
    for arg in args:
        if glued and glued[-1] in DASHED_VALUES and arg.startswith("-") and arg != "--":
            glued[-1] = f"{glued[-1]}={arg}"
        else:
            glued.append(arg)
    if command != "context":
        return glued
    from mrunner.commands.contexts import key_options

    return key_options(glued)


def subcommand_parser(command: str) -> tuple[argparse.ArgumentParser, Callable[[argparse.Namespace], int]]:
    """The parser of ``mrunner COMMAND`` (one of ``SUBCOMMANDS``) and the function that runs what it parsed."""
    import importlib

    commands = {  # command -> (module, its arguments function, its command function); only its module is imported
        "context": ("contexts", "context_arguments", "context_command"),
        "config": ("contexts", "config_arguments", "config_command"),
        "plugins": ("plugins", "plugins_arguments", "plugins_command"),
        "status": ("sweeps", "status_arguments", "status_command"),
        "logs": ("sweeps", "logs_arguments", "logs_command"),
        "cancel": ("sweeps", "cancel_arguments", "cancel_command"),
        "resume": ("sweeps", "resume_arguments", "resume_command"),
        "results": ("report", "results_arguments", "results_command"),
        "pull": ("results", "pull_arguments", "pull_command"),
        "gc": ("results", "gc_arguments", "gc_command"),
        "forget": ("results", "forget_arguments", "forget_command"),
        "login": ("login", "login_arguments", "login_command"),
        "logout": ("login", "logout_arguments", "logout_command"),
    }
    name, arguments, handler = commands[command]
    module = importlib.import_module(f"mrunner.commands.{name}")
    configure, handle = getattr(module, arguments), getattr(module, handler)
    parser = _Parser(prog=f"mrunner {command}", conflict_handler="resolve")  # a command's own --help wins
    parser.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    configure(parser)
    return parser, handle


if __name__ == "__main__":
    sys.exit(main())
