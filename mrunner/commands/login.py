"""`mrunner login [CONTEXT]` and `mrunner logout CONTEXT`: one authentication a day for clusters that ask for a
one-time code, kept by the context's backend (the Slurm backend: an OpenSSH master connection)."""

from __future__ import annotations

import argparse
import time


def login_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Log in to the context's cluster once (in this terminal, as ssh asks: key passphrase, one-time code); "
        "every later mrunner command in any shell reuses that connection without asking, until the context's "
        "login_persist (default 10h) after its last use. Without CONTEXT: the logins that are open."
    )
    parser.add_argument("context", nargs="?", metavar="CONTEXT", help="the context whose cluster to log in to")


def logout_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = "Close the connection `mrunner login CONTEXT` opened."
    parser.add_argument("context", metavar="CONTEXT", help="the context whose login to close")


def _context(name: str) -> dict:
    from mrunner import config, planning

    chosen, context = config.compose(name, [])
    return planning.validated_context(chosen, context)


def login_command(options: argparse.Namespace) -> int:
    from mrunner import plugins

    if options.context is None:
        return _list()
    context = _context(options.context)
    print(plugins.backend(context["backend"]).login(context, options.context))
    return 0


def logout_command(options: argparse.Namespace) -> int:
    from mrunner import plugins

    context = _context(options.context)
    print(plugins.backend(context["backend"]).logout(context, options.context))
    return 0


def _list() -> int:
    from mrunner import plugins, table

    rows = [
        (
            login.context_name,
            login.where,
            time.strftime("%Y-%m-%d %H:%M", time.localtime(login.opened_at)),
            f"{login.persist} after last use",
        )
        for backend in plugins.backends().values()
        for login in backend.logins()
    ]
    if not rows:
        print("no login is open (`mrunner login CONTEXT` opens one)")
        return 0
    print(table.render(("CONTEXT", "CONNECTION", "OPENED", "KEPT"), rows))
    return 0
