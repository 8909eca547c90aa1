"""Which cases of Hydra's launcher suites the fast tier (``tests/run --fast``) leaves to the whole run.

Each case of the suites is a sweep whose jobs are new interpreters importing Hydra (and, for the integration
suite, an app started as a script too), so the suites were the largest share of the tier's CPU
(benchmarks/test-tiers.md). The cases named here repeat, for the launcher, what a case the tier keeps already
does (the kept case is named beside each): they are marked ``slow``, and the whole run runs them all.
"""

from __future__ import annotations

import pytest

#: the case left to the whole run -> the case of the fast tier that covers the same behaviour of the launcher
COVERED_BY = {
    # a sweep's jobs run and return their values, in their own folders
    "TestMrunnerLauncher::test_sweep_1_job[mrunner-overrides0]": "test_sweep_2_jobs",
    "TestMrunnerLauncher::test_sweep_1_job_strict[mrunner-overrides0]": "test_sweep_2_jobs",  # the same code
    # each job composes its own config group choice
    "TestMrunnerLauncher::test_sweep_2_optimizers[mrunner-overrides0]": "test_sweep_and_override",
    "TestMrunnerLauncher::test_sweep_over_unspecified_mandatory_default[mrunner-overrides0]": (
        "test_sweep_and_override"
    ),
    # the job's name reaches the job (from the script's file, its config, the command line: the last wins)
    "TestMrunnerLauncherIntegration::test_custom_task_name[no_config-task_launcher_cfg0-extra_flags0]": (
        "test_custom_task_name[different_filename_and_config_file_name_override_and_command_line_override]"
    ),
    "TestMrunnerLauncherIntegration::test_custom_task_name[different_filename-task_launcher_cfg0-extra_flags0]": (
        "test_custom_task_name[different_filename_and_config_file_name_override_and_command_line_override]"
    ),
    "TestMrunnerLauncherIntegration::test_custom_task_name"
    "[different_filename_and_config_file_name_override-task_launcher_cfg0-extra_flags0]": (
        "test_custom_task_name[different_filename_and_config_file_name_override_and_command_line_override]"
    ),
    # the sweep's folder and each job's subfolder (from the config, the command line: the last wins)
    "TestMrunnerLauncherIntegration::test_custom_sweeper_run_workdir"
    "[sweep_dir_config_override-task_launcher_cfg0-extra_flags0]": (
        "test_custom_sweeper_run_workdir[sweep_dir_cli_overridding_config]"
    ),
    "TestMrunnerLauncherIntegration::test_custom_sweeper_run_workdir"
    "[sweep_dir_cli_override-task_launcher_cfg0-extra_flags0]": (
        "test_custom_sweeper_run_workdir[sweep_dir_cli_overridding_config]"
    ),
    "TestMrunnerLauncherIntegration::test_custom_sweeper_run_workdir"
    "[subdir:override_dirname-task_launcher_cfg0-extra_flags0]": (
        "test_custom_sweeper_run_workdir[subdir:custom_override_dirname]"
    ),
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.path.name == "test_mrunner_launcher.py" and item.nodeid.split("::", 1)[-1] in COVERED_BY:
            item.add_marker(pytest.mark.slow)
