"""Context schemas: the keys a backend (or tracker) accepts in a context, and checking a context against them."""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from mrunner.errors import MrunnerError

_TYPES: dict[str, tuple[type, ...]] = {
    "str": (str,),
    "int": (int,),
    "float": (int, float),
    "bool": (bool,),
    "list": (list, tuple),
    "dict": (dict,),
    "str|int": (str, int),
    "any": (object,),
}


@dataclass(frozen=True)
class ContextKey:
    """One key a context may set: its type (a name from ``_TYPES``), default and a one-line description."""

    name: str
    type: str
    default: Any = None
    help: str = ""
    required: bool = False
    minimum: float | None = None  # for numbers: the smallest value that makes sense (`max_parallel: 0` does not)

    def __post_init__(self) -> None:
        if self.type not in _TYPES:
            raise ValueError(f"context key {self.name}: unknown type {self.type!r} (one of {', '.join(_TYPES)})")

    def check(self, value: Any, context_name: str) -> Any:
        if value is None:
            return None
        kinds = _TYPES[self.type]
        if self.type == "float" and isinstance(value, bool) or self.type == "int" and isinstance(value, bool):
            kinds = ()
        if self.type == "str" and isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)  # `time: 60` or `mem: 4` written without quotes
        if not isinstance(value, kinds):
            raise MrunnerError(
                f"context {context_name}: key {self.name!r} must be {self.type}, got {type(value).__name__} {value!r}"
            )
        if self.minimum is not None and isinstance(value, (int, float)) and value < self.minimum:
            raise MrunnerError(
                f"context {context_name}: key {self.name!r} must be at least {self.minimum:g}, got {value!r} "
                f"- {self.help}"
            )
        return value


def merge_keys(groups: Iterable[Iterable[ContextKey]]) -> dict[str, ContextKey]:
    """All plugins' keys by name; a later definition of a name (a backend's) replaces an earlier one (the core's)."""
    keys: dict[str, ContextKey] = {}
    for group in groups:
        for key in group:
            keys[key.name] = key
    return keys


def validate(context: Mapping[str, Any], keys: Mapping[str, ContextKey], context_name: str) -> dict[str, Any]:
    """Check ``context`` against ``keys``: unknown keys and wrong types are errors; defaults fill the rest."""
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
    for name, key in keys.items():
        if name in context and context[name] is not None:
            result[name] = key.check(context[name], context_name)
        elif key.required:
            raise MrunnerError(f"context {context_name}: key {name!r} is required ({key.help})")
        else:
            result[name] = key.default
    return result
