"""Reading what ``--dry-run`` prints of ``Backend.render``: each rendering is a ``--- TITLE`` line, its exact
text, then a ``---`` line (``mrunner.dry_run.rendered``)."""

from __future__ import annotations


def renderings(stdout: str) -> dict[str, str]:
    """Title -> text of every rendering in a dry run's output, in order."""
    found: dict[str, str] = {}
    title: str | None = None
    lines: list[str] = []
    for line in stdout.splitlines():
        if title is None and line.startswith("--- "):
            title, lines = line[4:], []
        elif title is not None and line == "---":
            found[title] = "\n".join(lines)
            title = None
        elif title is not None:
            lines.append(line)
    assert title is None, f"rendering {title!r} has no end mark"
    return found


def one(found: dict[str, str], prefix: str) -> tuple[str, str]:
    """The (title, text) of the only rendering whose title starts with ``prefix``."""
    matching = [(title, text) for title, text in found.items() if title.startswith(prefix)]
    assert len(matching) == 1, f"{len(matching)} renderings start with {prefix!r}: {list(found)}"
    return matching[0]
