"""The original mrunner's import paths, kept so that old spec files and experiment scripts run unchanged.

``mrunner.helpers.specification_helper.create_experiments_helper`` (spec files) and
``mrunner.helpers.client_helper.get_configuration`` (experiment scripts) are thin layers over
``mrunner.create_experiments`` and ``mrunner.get_configuration``. ``client_helper`` ships with every sweep
(``mrunner.runtime``), so it imports only the standard library.
"""
