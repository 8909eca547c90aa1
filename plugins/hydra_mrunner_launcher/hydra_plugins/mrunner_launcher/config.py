"""Registers the launcher's options with Hydra as ``hydra/launcher=mrunner``."""

from hydra.core.config_store import ConfigStore
from hydra_plugins.mrunner_launcher.options import MrunnerLauncherConf

ConfigStore.instance().store(group="hydra/launcher", name="mrunner", node=MrunnerLauncherConf, provider="mrunner")
