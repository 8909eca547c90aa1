"""The launcher's options, ``hydra.launcher.*``, with what each means.

Free of Hydra imports: mrunner loads this module (its entry point) at every command, and `mrunner plugins`
lists ``OPTIONS``. ``config.py`` registers ``MrunnerLauncherConf`` with Hydra.
"""

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional  # noqa: UP035  (OmegaConf reads these annotations)


@dataclass
class MrunnerLauncherConf:
    _target_: str = "hydra_plugins.mrunner_launcher.mrunner_launcher.MrunnerLauncher"
    context: Optional[str] = None  # noqa: UP045
    context_keys: Dict[str, Any] = field(default_factory=dict)  # noqa: UP006
    name: Optional[str] = None  # noqa: UP045
    tags: List[str] = field(default_factory=list)  # noqa: UP006
    shared_fs: Optional[bool] = None  # noqa: UP045
    poll_interval: Optional[float] = None  # noqa: UP045
    quiet: bool = False


HELP = {
    "context": "the mrunner context the jobs run on (default: mrunner's current_context, else local)",
    "context_keys": "context keys changed for this multirun: +hydra.launcher.context_keys.time=60 (mrunner's context.KEY=VALUE)",
    "name": "the mrunner sweep's and experiments' name (default: the job name, hydra.job.name)",
    "tags": "tags of every experiment of the sweep",
    "shared_fs": "whether the jobs see this machine's files at the same paths (null: on the local backend only)",
    "poll_interval": "seconds between two looks at the sweep's state while waiting for it to end (null: the backend's, 2 s on a cluster)",
    "quiet": "print nothing of mrunner's own progress",
}

#: (option, default, meaning) for `mrunner plugins`.
OPTIONS = [
    (
        f"hydra.launcher.{item.name}",
        item.default_factory() if item.default_factory is not dataclasses.MISSING else item.default,
        HELP[item.name],
    )
    for item in dataclasses.fields(MrunnerLauncherConf)
    if item.name in HELP
]
