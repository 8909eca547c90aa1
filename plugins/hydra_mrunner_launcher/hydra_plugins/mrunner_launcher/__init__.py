"""Hydra's ``mrunner`` launcher (``hydra/launcher=mrunner``). Nothing is imported here: Hydra imports every
module of ``hydra_plugins`` when it looks for plugins, and mrunner loads ``options`` at every command."""

__version__ = "0.2.0"
