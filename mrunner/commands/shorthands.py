"""The original mrunner's shorthand options (``--cpu 4`` is ``context.cpu=4``) and where each is honoured.

Which backends honour a shorthand is read from the backends' own typed context keys (a backend honours
``--time`` when its context has a ``time`` key), never from a list written by hand: a plugin that adds a key
is offered its option, and ``--help`` never offers an option as if every backend honoured it. Only help and a
refused option ask: help reads every installed backend's key names (remembered between commands by ``keycache``
while the plugins' code stays the same), a refusal the chosen backend's keys.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from mrunner.errors import MrunnerError


def honouring(options: Sequence[str]) -> dict[str, list[str]]:
    """Which installed backends have each of these keys (a backend whose plugin fails to load is left out);
    the backends' key names are remembered between commands (``keycache``), read from the plugins only when
    their code changed."""
    from mrunner.commands import keycache

    keys = keycache.key_names(_key_names)
    return {option: [backend for backend, names in keys.items() if names and option in names] for option in options}


def _key_names() -> dict[str, list[str] | None]:
    from mrunner import planning, plugins  # pluggy, every plugin, yaml and the context machinery

    found: dict[str, list[str] | None] = {}
    for backend in plugins.backends():
        try:
            found[backend] = list(planning.context_keys(backend))
        except MrunnerError:
            found[backend] = None
    return found


def option_help(option: str, backends: Sequence[str], chosen: str | None = None, kind: str = "context") -> str:
    """An option's help: the key it sets, the backends that honour it, and, when the backend the command line
    chose is known (``chosen``: the backend of the named or current context, or of the sweep to resume),
    plainly that this one refuses it (the group's title names the context or sweep)."""
    where = ", ".join(backends) or "no installed backend"
    if chosen is not None and chosen not in backends:
        return f"same as context.{option}=VALUE (honoured by {where}; NOT by {chosen}, this {kind}'s backend: refused)"
    return f"same as context.{option}=VALUE (honoured by {where})"


def group_title(title: str, honoured: Mapping[str, Sequence[str]], chosen: str | None, whose: str) -> str:
    """The options' group title, saying which of them the chosen backend honours when it is known."""
    if chosen is None:
        return title
    own = [f"--{option}" for option, backends in honoured.items() if chosen in backends]
    said = "every one" if len(own) == len(honoured) else f"only {', '.join(own)}" if own else "none of them"
    return f"{title}; the {chosen} backend of {whose} honours {said}"


def chosen_context(args: Sequence[str]) -> str | None:
    """The context the command line names (``--context NAME``, ``--context=NAME``, ``+context=NAME``,
    ``context=NAME``), else the current one."""
    from mrunner import config

    named = None
    for position, arg in enumerate(args):
        if arg == "--":
            break
        if arg == "--context" and position + 1 < len(args):
            named = args[position + 1]
        elif arg.startswith("--context="):
            named = arg.split("=", 1)[1]
        elif arg.lstrip("+").startswith("context=") and not arg.startswith("++"):
            named = arg.split("=", 1)[1]
    return named or config.current_context()


def backend_of(context_name: str) -> str | None:
    """The backend of a context, or None when it cannot be read (help is still shown, without it)."""
    from mrunner import config

    try:
        backend = config.compose(context_name, [])[1].get("backend")
    except MrunnerError:
        return None
    return backend if isinstance(backend, str) else None


def described(options: Sequence[str], title: str, args: Sequence[str]) -> tuple[str, dict[str, str]]:
    """The group title and each option's help for ``mrunner ARGS --help``: which backends honour each option
    and, for the context the command line chose (else the current one), whether its backend does."""
    honoured = honouring(options)
    name = chosen_context(args)
    chosen = backend_of(name) if name else None
    whose = f"context {name}"
    helps = {option: option_help(option, honoured[option], chosen) for option in options}
    return group_title(title, honoured, chosen, whose), helps


def refuse_unhonoured(given: Sequence[str], options: Sequence[str], backend: str, whose: str) -> None:
    """Refuse, in one line, a shorthand option for a key ``backend`` (of ``whose``: "context local", "sweep
    S") does not have, naming those it has: not the backend's every key, as an unknown key would."""
    from mrunner import planning

    keys = planning.context_keys(backend)
    refused = [option for option in given if option not in keys]
    if refused:
        honoured = [f"--{option}" for option in options if option in keys]
        offer = f"its options are {', '.join(honoured)}" if honoured else "it takes none of these options"
        raise MrunnerError(
            f"--{refused[0]}: the {backend} backend of {whose} has no {refused[0]} key; {offer} "
            f"(or context.KEY=VALUE with a key of its context)"
        )
