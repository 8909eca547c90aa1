"""Built-in experiment trackers: plugins that answer the tracker hooks of ``mrunner.hookspecs`` for every
backend (context keys, credential checks, secrets, experiment environment, where to look after submitting).
"""
