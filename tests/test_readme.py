"""Every command in the README (and the other documents: docs/, the plugins' READMEs) can be pasted into
bash as it is: each shell block's commands pass `bash -n`, and each `mrunner ...` among them parses with
mrunner's own parsers (every option and subcommand exists)."""

from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path

import pytest

from mrunner import cli
from mrunner.errors import MrunnerError

REPO = Path(__file__).resolve().parent.parent
DOCUMENTS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md")), *sorted(REPO.glob("plugins/*/README.md"))]
SHELL_LANGUAGES = ("bash", "sh", "shell", "console")
FENCE = re.compile(r"^```([A-Za-z]*)\n(.*?)^```$", re.S | re.M)


def shell_commands(text: str) -> list[tuple[int, str]]:
    """(line number, command) of every command in the shell blocks: a ``console`` block's ``$ `` lines (the
    others are output), every line of the others; a line ending in a backslash continues on the next."""
    commands = []
    for block in FENCE.finditer(text):
        language, body = block.group(1), block.group(2)
        if language not in SHELL_LANGUAGES:
            continue
        first_line = text[: block.start(2)].count("\n") + 1
        pending, start = "", 0
        for offset, line in enumerate(body.splitlines()):
            if not pending:
                if language == "console" and not line.startswith("$ "):
                    continue
                start = first_line + offset
                line = line[2:] if language == "console" else line
            pending += line
            if pending.endswith("\\"):
                pending = pending[:-1]
                continue
            if pending.strip():
                commands.append((start, pending))
            pending = ""
        assert not pending, f"line {start}: the command continues past the end of its block"
    return commands


def mrunner_invocations(command: str) -> list[list[str]]:
    """The arguments of each ``mrunner`` (also ``uv run mrunner``, ``python -m mrunner``) in a command line."""
    lexer = shlex.shlex(command, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    words, segments = list(lexer), [[]]
    for word in words:
        if word in ("&&", "||", ";", "|", "&"):
            segments.append([])
        else:
            segments[-1].append(word)
    found = []
    for segment in segments:
        for position, word in enumerate(segment):
            if word == "mrunner" and (position == 0 or segment[:position] in (["uv", "run"], ["python", "-m"])):
                found.append(segment[position + 1 :])
    return found


def check_arguments(args: list[str]) -> None:
    """Parse ``args`` as `mrunner` would, without running anything: an unknown option, subcommand or a
    missing argument raises (``MrunnerError`` from mrunner's parsers, ``SystemExit`` from argparse's)."""
    command, position = cli._first_positional(args)
    if command in cli.SUBCOMMANDS:
        parser, _ = cli.subcommand_parser(command)
        parser.parse_args(cli.subcommand_arguments(command, args[:position] + args[position + 1 :]))
        return
    if command == "run":
        args = args[:position] + args[position + 1 :]
    if "--" in args:
        args = args[: args.index("--")]
    options = cli.run_parser().parse_intermixed_args(args)
    target, *_ = cli._split_items(options.items)
    assert target is not None, "no TARGET"


#: The backend of ``examples/backend``, which a document installs before its commands use it.
EXAMPLE_BACKEND = "process"

COMMANDS = [
    (f"{document.relative_to(REPO)}:{line}", command)
    for document in DOCUMENTS
    for line, command in shell_commands(document.read_text())
]


def test_the_documents_have_shell_blocks_and_every_code_block_names_its_language():
    assert len(COMMANDS) >= 30 and sum(len(mrunner_invocations(command)) for _, command in COMMANDS) >= 25
    for document in DOCUMENTS:
        text = document.read_text()
        assert all(block.group(1) for block in FENCE.finditer(text)), f"{document}: a ``` block without a language"
        indented = [line for line in text.splitlines() if re.match(r"^ {4}\$? ?mrunner ", line)]
        assert not indented, f"{document}: commands in an indented block, which no test reads: {indented}"


@pytest.mark.parametrize(("where", "command"), COMMANDS, ids=[where for where, _ in COMMANDS])
def test_each_command_is_valid_bash_and_its_mrunner_options_exist(where, command):
    syntax = subprocess.run(["bash", "-n"], input=command, capture_output=True, text=True)
    assert syntax.returncode == 0, f"{where}: {command}\n{syntax.stderr}"
    for args in mrunner_invocations(command):
        try:
            check_arguments(args)
        except (MrunnerError, SystemExit) as error:
            if str(error).startswith(f"backend {EXAMPLE_BACKEND!r} is not installed"):
                continue  # docs/write-a-backend.md installs the example backend first; these tests do not
            pytest.fail(f"{where}: mrunner {shlex.join(args)}: {error}")
