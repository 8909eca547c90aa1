"""Everything mrunner takes from Hydra beyond its public API, in one room.

Hydra's public API (its docs, and what its own launcher and sweeper plugins use) lets an app compose its
config (``hydra.compose``) and parse overrides (``OverridesParser``), but mrunner needs two things it does
not offer: the column of an override's syntax error, and Hydra's composition without running an app and
without Hydra's own ``hydra`` node (for contexts, and to check a Hydra app's overrides before submitting).
Both reach into ``hydra._internal`` and Hydra's generated grammar, which may change in any release of
Hydra: a test (``tests/test_hydra_internals.py``) keeps every other module of mrunner and of its plugins
to the public API, so an upgrade of Hydra is checked here and only here.

Importing this module imports Hydra's override grammar; the config loader is imported when a
``Composer`` is made.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.overrides_visitor import HydraErrorListener, HydraOverrideVisitor
from hydra.core.override_parser.types import Override
from hydra.grammar.gen.OverrideLexer import CommonTokenStream, InputStream, OverrideLexer  # type: ignore[attr-defined]
from hydra.grammar.gen.OverrideParser import OverrideParser

# -- parsing overrides ---------------------------------------------------------------------------------------


class OverrideSyntaxError(Exception):
    """An override that is not Hydra's grammar; ``column`` is where (0-based) it went wrong."""

    def __init__(self, message: str, column: int) -> None:
        super().__init__(message)
        self.column = column


class _PositionedErrorListener(HydraErrorListener):
    """Hydra's listener drops the column; keep it so the error can point at the bad character."""

    def syntaxError(self, recognizer: Any, offending_symbol: Any, line: Any, column: Any, msg: Any, e: Any) -> None:
        raise OverrideSyntaxError(str(msg if msg is not None else e), int(column))


class _Parser(OverridesParser):
    def parse_rule(self, s: str, rule_name: str) -> Any:
        listener = _PositionedErrorListener()
        lexer = OverrideLexer(InputStream(s))
        lexer.removeErrorListeners()
        lexer.addErrorListener(listener)
        parser = OverrideParser(CommonTokenStream(lexer))
        parser.removeErrorListeners()
        parser.addErrorListener(listener)
        result = HydraOverrideVisitor(self.functions).visit(getattr(parser, rule_name)())
        result.input_line = s
        result.validate()
        return result


_parser: OverridesParser | None = None


def parse_override(text: str) -> Override:
    """One override, as Hydra parses it; raises ``OverrideSyntaxError`` (with the column) for bad syntax
    and Hydra's ``HydraException`` for the rest (an unknown function, a bad range)."""
    global _parser
    if _parser is None:
        _parser = _Parser.create()
    return _parser.parse_rule(text, "override")


def plain(value: Any) -> Any:
    """A parsed value with Hydra's quoted strings as plain strings, as ``Override.value()`` gives it."""
    return Override._convert_value(value)


def deletes_whatever_value(override: Override) -> bool:
    """Whether the override is ``~key`` without a value (``~key=null`` deletes only a null)."""
    return override.is_delete() and override._value is None


# -- composing configs ---------------------------------------------------------------------------------------


class Composer:
    """Hydra's composition of configs found on ``search_path`` (``(provider, "file://...")`` pairs, searched
    in order), for mrunner's contexts and for a Hydra app's own config alike.

    ``compose`` takes Hydra's own steps (search path, defaults list, merge, overrides) but not Hydra's
    ``load_configuration``: that also composes Hydra's ``hydra`` node (launcher, logging, help, ...) and runs
    its search path plugins, three quarters of the time and nothing a context or a check of an app's own
    keys uses. ``compose_with_hydra`` is Hydra's whole way, for overrides of the ``hydra`` node itself.
    """

    def __init__(self, search_path: Sequence[tuple[str, str]]) -> None:
        from hydra._internal.config_loader_impl import ConfigLoaderImpl
        from hydra._internal.config_repository import CachingConfigRepository
        from hydra._internal.config_search_path_impl import ConfigSearchPathImpl
        from hydra._internal.core_plugins.file_config_source import FileConfigSource
        from hydra._internal.core_plugins.importlib_resources_config_source import ImportlibResourcesConfigSource
        from hydra._internal.core_plugins.structured_config_source import StructuredConfigSource
        from hydra._internal.sources_registry import SourcesRegistry

        for source in (FileConfigSource, ImportlibResourcesConfigSource, StructuredConfigSource):
            SourcesRegistry.instance().register(source)  # what Hydra's plugin discovery would register
        path = ConfigSearchPathImpl()
        for provider, location in search_path:
            path.append(provider, location)
        path.append("schema", "structured://")  # Hydra requires it, last
        self.loader = ConfigLoaderImpl(config_search_path=path)
        self.repository = CachingConfigRepository(self.loader.repository)  # files are read once for every compose

    def compose(self, config_name: str | None, overrides: Sequence[str], refuse_sweeps: bool = False) -> Any:
        """The config ``config_name`` with ``overrides``, a ``DictConfig`` in struct mode; Hydra's and
        OmegaConf's errors as they raise them. ``refuse_sweeps``: a sweep is an error, as in a single run."""
        from hydra._internal.config_loader_impl import ConfigLoaderImpl
        from hydra._internal.defaults_list import create_defaults_list
        from hydra.types import RunMode
        from omegaconf import OmegaConf

        parsed = OverridesParser.create().parse_overrides(list(overrides))
        if refuse_sweeps:
            ConfigLoaderImpl.validate_sweep_overrides_legal(parsed, run_mode=RunMode.RUN, from_shell=True)
        defaults = create_defaults_list(
            repo=self.repository,
            config_name=config_name,
            overrides_list=parsed,
            prepend_hydra=False,
            skip_missing=False,
        )
        config = self.loader._compose_config_from_defaults_list(defaults=defaults.defaults, repo=self.repository)
        OmegaConf.set_struct(config, True)
        ConfigLoaderImpl._apply_overrides_to_config(defaults.config_overrides, config)
        return config

    def compose_with_hydra(self, config_name: str | None, overrides: Sequence[str]) -> Any:
        """Hydra's ``load_configuration``: the config and Hydra's ``hydra`` node with its plugins' configs."""
        from hydra.core.plugins import Plugins
        from hydra.types import RunMode

        Plugins.instance()  # Hydra's own configs of its plugins (launchers, sweepers): its whole way needs them
        return self.loader.load_configuration(config_name, list(overrides), RunMode.RUN)

    def apply(self, config: Any, override: str) -> None:
        """Apply one value override (a valid one: see ``parse_override``) to a composed config, as Hydra
        does after composing."""
        from hydra._internal.config_loader_impl import ConfigLoaderImpl

        ConfigLoaderImpl._apply_overrides_to_config([parse_override(override)], config)

    def group_exists(self, group: str) -> bool:
        return bool(self.loader.repository.group_exists(group))

    def group_options(self, group: str) -> list[str]:
        """The options of config group ``group``, as ``glob()`` sees them in Hydra."""
        from hydra.core.object_type import ObjectType

        return list(self.loader.get_group_options(group, results_filter=ObjectType.CONFIG))


@contextlib.contextmanager
def app_runtime(job_name: str, version_base: str | None) -> Iterator[None]:
    """Hydra's runtime state while composing an app's config: its job name (``${hydra:job.name}``) and the
    ``version_base`` the app names, which changes how defaults lists compose; the version base is restored."""
    from hydra.core.utils import JobRuntime
    from hydra.version import VersionBase, setbase

    JobRuntime.instance().set("name", job_name)
    previous = VersionBase.instance().getbase()
    setbase(version_base)
    try:
        yield
    finally:
        VersionBase.instance().version_base = previous
