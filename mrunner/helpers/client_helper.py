"""The original mrunner's experiment side: ``from mrunner.helpers.client_helper import get_configuration, logger``.

Old experiment scripts run unchanged: ``get_configuration(print_diagnostics=..., with_neptune=...,
inject_parameters_to_gin=..., nesting_prefixes=...)`` returns the parameters with attribute access (as the
original's ``Munch`` did), and ``logger(name, value)`` sends a value to the experiment's Neptune run, or
prints ``name:value`` without one. The parameters come from what mrunner gave this experiment
(``MRUNNER_CONFIG``), not from the original's pickled ``--config`` file. Run by hand, ``python train.py
--ex spec.py`` takes the first experiment of a spec file, as the original's README showed.

This module ships with every sweep (``mrunner.runtime``), so it imports only the standard library;
``gin``, ``absl`` and ``neptune`` are imported only when asked for.
"""

from __future__ import annotations

import os
import re
import socket
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from mrunner.client import CONFIG_VARIABLE, Config, _wrap, experiment_info

_run: Any = None  # the Neptune run get_configuration(with_neptune=...) started or joined: where `logger` sends


def get_configuration(
    print_diagnostics: bool = False,
    with_neptune: bool | str = False,
    inject_parameters_to_gin: bool = False,
    nesting_prefixes: Sequence[str] = (),
    env_to_properties_regexp: str = ".*PWD",
    config_file: str | None = None,
    inject_parameters_to_FLAGS: bool = False,
) -> Config:
    """The experiment's parameters, as the original mrunner's ``get_configuration`` returned them.

    - ``print_diagnostics``: print ``PYTHONPATH``, the working folder, the host and the parameters.
    - ``with_neptune``: start this experiment's Neptune run (``mrunner.get_configuration(with_neptune=True)``
      does the same; the context's ``neptune`` key decides whether it is on), or with a run id (a string)
      join that existing run. Environment variables matching ``env_to_properties_regexp`` go to the run's
      ``properties``. ``experiment_id`` in the result is the run's id (``None`` without a run).
    - ``inject_parameters_to_gin``: bind every parameter whose name has a dot (``"Agent.lr"``) in gin.
    - ``nesting_prefixes``: ``("opt_",)`` moves ``opt_lr`` to ``params.opt.lr``.
    - ``config_file``: read this mrunner config file instead of ``MRUNNER_CONFIG`` (then, as in the
      original, no nesting and no ``experiment_id``).
    - ``inject_parameters_to_FLAGS``: set every parameter on absl's ``flags.FLAGS``.
    """
    info = _experiment(config_file)
    params: Config = _wrap(dict(info.get("parameters") or {}))
    if inject_parameters_to_gin:
        inject_dict_to_gin({name: value for name, value in params.items() if "." in name})
    if with_neptune:
        _start_neptune(info, with_neptune, env_to_properties_regexp)
    if print_diagnostics:
        print(f"PYTHONPATH:{os.environ.get('PYTHONPATH', 'not_defined')}", flush=True)
        print(f"cd {os.getcwd()}", flush=True)
        print(socket.getfqdn(), flush=True)
        print(f"Params:{dict(params)}", flush=True)
    if inject_parameters_to_FLAGS:
        try:
            from absl import flags  # type: ignore[import-not-found]
        except ImportError:
            raise RuntimeError(
                "get_configuration(inject_parameters_to_FLAGS=True) needs absl: pip install absl-py"
            ) from None
        for name, value in params.items():
            setattr(flags.FLAGS, name, value)
    if config_file is None:
        nest_params(params, nesting_prefixes)
        params["experiment_id"] = _run["sys/id"].fetch() if _run is not None else None
    return params


def logger(m: str, v: Any, single_value: bool = False) -> None:
    """Send ``v`` to the Neptune run's series ``m`` (a list: each item; ``(step, value)`` pairs with their
    steps; ``single_value``: assign instead of append), or print ``m:v`` when no run was started."""
    if _run is None:
        print(f"{m}:{v}", flush=True)
        return
    field = _run[m.strip()]
    if single_value:
        _run[m.strip()] = v
    elif isinstance(v, list):
        for item in v:
            if isinstance(item, tuple):
                field.append(item[1], step=item[0])
            else:
                field.append(item)
    else:
        field.append(v)


def nest_params(params: dict[str, Any], prefixes: Sequence[str]) -> None:
    """Move the parameters named ``PREFIX...`` into a mapping under the prefix without its last character
    (``("opt_",)``: ``opt_lr`` becomes ``params["opt"]["lr"]``), in place, as the original did."""
    for prefix in prefixes:
        nested = Config()
        for name in list(params):
            if name.startswith(prefix):
                nested[name[len(prefix) :]] = params.pop(name)
        params[prefix[:-1]] = nested


def inject_dict_to_gin(bindings: Mapping[str, Any], scope: str | None = None) -> None:
    """Bind each ``"Configurable.parameter": value`` in gin (``imports``: modules to import first). A string
    is bound as a string unless it is a gin reference or literal (``@f``, ``%MACRO``, ``{``, ``(``, ``[``)."""
    try:
        import gin  # type: ignore[import-not-found]
    except ImportError:
        raise RuntimeError(
            "get_configuration(inject_parameters_to_gin=True) needs gin: pip install gin-config"
        ) from None
    lines = []
    prefix = f"{scope}/" if scope else ""
    for name, value in bindings.items():
        if name == "imports":
            lines += [f"import {module}" for module in value]
        elif isinstance(value, str) and not value.startswith(("@", "%", "{", "(", "[")):
            lines.append(f"{prefix}{name} = {value!r}")
        else:
            lines.append(f"{prefix}{name} = {value}")
    gin.parse_config(lines)


def _experiment(config_file: str | None) -> dict[str, Any]:
    """The experiment document: ``config_file``, else ``MRUNNER_CONFIG``, else (a script run by hand) the
    original's ``--ex SPEC`` or ``--config FILE`` flags."""
    if config_file is not None:
        return experiment_info(str(config_file))
    if os.environ.get(CONFIG_VARIABLE):
        return experiment_info()
    spec = _flag("--ex")
    if spec:
        return _first_of_spec(spec)
    return experiment_info(_flag("--config"))


def _flag(name: str) -> str | None:
    """The value of ``--name VALUE`` or ``--name=VALUE`` in the script's arguments (which stay untouched)."""
    args = sys.argv[1:]
    for position, arg in enumerate(args):
        if arg == "--":
            return None
        if arg == name and position + 1 < len(args):
            return args[position + 1]
        if arg.startswith(name + "="):
            return arg[len(name) + 1 :]
    return None


def _first_of_spec(path: str) -> dict[str, Any]:
    from pathlib import Path

    from mrunner.spec import load_spec  # only by hand, where mrunner is installed

    experiments = load_spec(Path(path))
    print(
        f"The specification file contains {len(experiments)} experiment configurations. The first one will be used.",
        flush=True,
    )
    first = experiments[0]
    return {"parameters": first.parameters, "name": first.name, "tags": first.tags, "project": first.project}


def _start_neptune(info: dict[str, Any], with_neptune: bool | str, properties_regexp: str) -> None:
    global _run
    if isinstance(with_neptune, str):  # the original's way to continue logging into an existing run
        import neptune  # type: ignore[import-not-found]

        _run = neptune.init_run(with_id=with_neptune)
        return
    from mrunner.tracking import start_neptune_run

    _run = start_neptune_run(info)
    if _run is not None:
        properties = {key: value for key, value in os.environ.items() if re.match(properties_regexp, key)}
        if properties:
            _run["properties"] = properties
