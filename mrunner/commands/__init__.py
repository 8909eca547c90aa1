"""The implementations of mrunner's commands; ``mrunner.cli`` parses the command line and routes to them.

A command may import any room of the core, never ``mrunner.cli`` (which imports the commands).
"""

#: Options of the original mrunner that override one context key for one run (``--gpu 1`` is ``context.gpu=1``),
#: taken by `mrunner` and `mrunner resume`.
GROUP_OPTIONS = ("cpu", "gpu", "mem", "time", "nodes", "ntasks", "partition", "cmd_type")
