"""Context keys, declared once as dataclasses, and a context checked against them.

The core (``mrunner.builtin.CoreKeys``), each backend (``Backend.keys``) and each tracker
(``mrunner_context_keys``) declare their keys as a dataclass, the way Hydra's launchers declare their
config: the field's name is the key, its annotation the type (``Literal[...]`` for choices, ``X | None``
for a key that may stay unset), and ``key(...)`` gives the default, the help, the smallest sensible
value and the platform option the key becomes::

    @dataclass(frozen=True, kw_only=True)
    class SlurmKeys:
        slurm_url: str = key(help="login node to submit from")        # no default: required
        mem: str | None = key(None, help="memory per node, e.g. 8G", option="--mem")
        cmd_type: Literal["sbatch", "srun"] = key("sbatch", help="...")

Validation (types, ranges, choices), `mrunner context show --keys` and docs/context-keys.md
(``python -m mrunner.keys_doc``) all read that declaration.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from dataclasses import MISSING, dataclass
from typing import Any, Literal

from mrunner.errors import MrunnerError

_NOT_OVERRIDDEN = object()


def key(
    default: Any = MISSING,
    *,
    help: str,
    minimum: float | None = None,
    maximum: float | None = None,
    option: str | None = None,
    factory: Callable[[], Any] | None = None,
    shown: str | None = None,
    per_point: bool = False,
) -> Any:
    """One context key's declaration, as the default of a dataclass field.

    ``default``: its value when a context leaves it out (none given: the key is required; a list or dict is
    copied for each context). ``help``: one line saying what it does. ``minimum``: the smallest value that
    makes sense, for numbers (``max_parallel: 0`` does not); ``maximum``: the largest (a grace period of centuries
    overflows the timers that wait it out). ``option``: the platform option the key
    becomes (Slurm's ``mem`` is ``--mem``), shown in the docs. ``factory``: computes a default that depends
    on the machine (the running interpreter); ``shown``: how the docs write such a default. ``per_point``: a
    resource each grid point may ask for differently (``context.mem=8G,32G`` on the command line, a spec's
    per-experiment ``resources``); the backend then runs each distinct set of such values as its own class
    (a Slurm job array each), so only keys the backend can honour per experiment say so.
    """
    metadata = {
        "mrunner": {
            "help": help,
            "minimum": minimum,
            "maximum": maximum,
            "option": option,
            "shown": shown,
            "per_point": per_point,
        }
    }
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata=metadata)
    if isinstance(default, (list, dict)):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


@dataclass(frozen=True)
class ContextKey:
    """One key a context may set, as its declaration says (see ``key``)."""

    name: str
    annotation: Any
    default: Any = None
    help: str = ""
    required: bool = False
    minimum: float | None = None
    option: str | None = None
    shown: str | None = None
    maximum: float | None = None
    overrides: Any = _NOT_OVERRIDDEN  # the core's default, where a backend's declaration replaces it
    per_point: bool = False  # a grid point may set it (see ``key``)

    @property
    def type(self) -> str:
        """The type as the docs write it: ``int``, ``str|int``, ``list``, ``sbatch|srun`` (choices)."""
        return "|".join(_name(alternative) for alternative in _alternatives(self.annotation))

    @property
    def choices(self) -> tuple[Any, ...] | None:
        literal = [a for a in _alternatives(self.annotation) if typing.get_origin(a) is Literal]
        return tuple(value for a in literal for value in typing.get_args(a)) or None

    @property
    def overridden(self) -> bool:
        return self.overrides is not _NOT_OVERRIDDEN and self.overrides != self.default

    def default_text(self) -> str:
        """The default as `context show --keys` and the docs write it (empty: none)."""
        if self.required:
            return "required"
        return _value_text(self.default) if self.shown is None else self.shown

    def core_default_text(self) -> str | None:
        """The core's default this key overrides (``none`` for no default), or None where it overrides none."""
        return (_value_text(self.overrides) or "none") if self.overridden else None

    def kind(self) -> str:
        """The type with its range: ``int >= 1``, ``int 0 to 86400``."""
        if self.minimum is not None and self.maximum is not None:
            return f"{self.type} {self.minimum:g} to {self.maximum:g}"
        if self.maximum is not None:
            return f"{self.type} <= {self.maximum:g}"
        return self.type + (f" >= {self.minimum:g}" if self.minimum is not None else "")

    def check(self, value: Any, context_name: str) -> Any:
        """``value`` as the context holds it (a number written for a ``str`` key becomes text), or an error
        naming the key."""
        if value is None:
            return None
        where = f"context {context_name}: key {self.name!r}"
        alternatives = _alternatives(self.annotation)
        if not any(_accepts(alternative, value) for alternative in alternatives):
            if str in alternatives and isinstance(value, (int, float)) and not isinstance(value, bool):
                return str(value)  # `time: 60` or `mem: 4` written without quotes
            if self.choices and all(typing.get_origin(a) is Literal for a in alternatives):
                raise MrunnerError(
                    f"{where} must be one of {', '.join(map(str, self.choices))}, got {value!r} - {self.help}"
                )
            raise MrunnerError(f"{where} must be {self.type}, got {type(value).__name__} {value!r}")
        if self.minimum is not None and isinstance(value, (int, float)) and value < self.minimum:
            raise MrunnerError(f"{where} must be at least {self.minimum:g}, got {value!r} - {self.help}")
        if self.maximum is not None and isinstance(value, (int, float)) and value > self.maximum:
            raise MrunnerError(f"{where} must be at most {self.maximum:g}, got {value!r} - {self.help}")
        return value


def _value_text(value: Any) -> str:
    if value in (None, [], {}):
        return ""
    return value if isinstance(value, str) else json.dumps(value)


def _alternatives(annotation: Any) -> list[Any]:
    """The types a key accepts besides ``None`` (which leaves it unset)."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return [a for arg in typing.get_args(annotation) for a in _alternatives(arg) if a is not type(None)]
    return [annotation]


def _name(annotation: Any) -> str:
    if annotation is Any:
        return "any"
    if typing.get_origin(annotation) is Literal:
        return "|".join(map(str, typing.get_args(annotation)))
    origin = typing.get_origin(annotation) or annotation
    return getattr(origin, "__name__", str(origin))


def _accepts(annotation: Any, value: Any) -> bool:
    if annotation is Any:
        return True
    if typing.get_origin(annotation) is Literal:
        return any(value == choice and type(value) is type(choice) for choice in typing.get_args(annotation))
    origin = typing.get_origin(annotation) or annotation
    if origin is bool:
        return isinstance(value, bool)
    if isinstance(value, bool):
        return False  # `true` is no number
    if origin is float:
        return isinstance(value, (int, float))
    if origin is list:
        return isinstance(value, (list, tuple))
    return isinstance(value, origin)


def keys_of(declaration: type) -> dict[str, ContextKey]:
    """The keys a dataclass declares, by name, in the order it declares them."""
    hints = typing.get_type_hints(declaration)
    keys = {}
    for field in dataclasses.fields(declaration):
        meta = field.metadata.get("mrunner", {})
        if field.default is not MISSING:
            default, required = field.default, False
        elif field.default_factory is not MISSING:
            default, required = field.default_factory(), False
        else:
            default, required = None, True
        keys[field.name] = ContextKey(
            field.name,
            hints[field.name],
            default,
            meta.get("help", ""),
            required,
            meta.get("minimum"),
            meta.get("option"),
            meta.get("shown"),
            meta.get("maximum"),
            per_point=bool(meta.get("per_point")),
        )
    return keys


def merge_keys(shared: Iterable[Mapping[str, ContextKey]], backend: Mapping[str, ContextKey]) -> dict[str, ContextKey]:
    """The core's and the trackers' keys (``shared``, a later group's key replacing an earlier one of its
    name), then the backend's: a backend key of a shared key's name overrides it, and remembers the default
    it replaced."""
    keys: dict[str, ContextKey] = {}
    for group in shared:
        keys.update(group)
    for name, declared in backend.items():
        keys[name] = dataclasses.replace(declared, overrides=keys[name].default) if name in keys else declared
    return keys


def validate(context: Mapping[str, Any], keys: Mapping[str, ContextKey], context_name: str) -> dict[str, Any]:
    """Check ``context`` against ``keys``: unknown keys, wrong types, values out of range and choices not
    offered are errors; defaults fill the rest."""
    unknown = [name for name in context if name not in keys]
    if unknown:
        name = unknown[0]
        close = difflib.get_close_matches(name, keys, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise MrunnerError(
            f"context {context_name}: unknown key {name!r}{hint} for backend {context.get('backend')!r}; "
            f"valid keys: {', '.join(sorted(keys))}"
        )
    result = {}
    for name, declared in keys.items():
        if name in context and context[name] is not None:
            result[name] = declared.check(context[name], context_name)
        elif declared.required:
            raise MrunnerError(f"context {context_name}: key {name!r} is required ({declared.help})")
        else:
            result[name] = declared.default
    return result


def describe(declared: ContextKey) -> str:
    """One line for `mrunner context show --keys`: name, type and range, default (and the core's it
    overrides), the platform option, the help."""
    text = declared.default_text()
    default = "required" if declared.required else f"default {text}" if text else ""
    core = declared.core_default_text()
    if core is not None:
        default = f"{default or 'no default'}; the core's default: {core}"
    option = f" [{declared.option}]" if declared.option else ""
    per_point = " (may vary per point)" if declared.per_point else ""
    return (
        f"{declared.name}: {declared.kind()}{f' ({default})' if default else ''}{option} - {declared.help}{per_point}"
    )
