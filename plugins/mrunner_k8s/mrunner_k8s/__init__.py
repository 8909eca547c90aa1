"""mrunner backend plugin (see the package README)."""
