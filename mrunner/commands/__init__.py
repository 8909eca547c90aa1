"""The implementations of mrunner's commands; ``mrunner.cli`` parses the command line and routes to them."""
