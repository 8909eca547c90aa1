"""Plain aligned text tables for the terminal (no colour library needed on these paths)."""

from __future__ import annotations

import os
import shutil
import sys
import textwrap
from collections.abc import Iterable, Sequence

GAP = "  "


def terminal_width() -> int | None:
    """The width tables must fit: the terminal's when stdout is one, else ``COLUMNS`` when set, else none
    (a table written to a file or a pipe keeps its full cells)."""
    if sys.stdout.isatty():
        return shutil.get_terminal_size().columns
    columns = os.environ.get("COLUMNS", "")
    return int(columns) if columns.isdigit() and int(columns) > 0 else None


def render(
    headers: Sequence[str],
    rows: Sequence[Sequence[object]],
    max_width: int = 60,
    width: int | None = None,
    whole: Sequence[int] = (0,),
    drop: Sequence[int] = (),
) -> str:
    """Columns padded to their widest cell; cells longer than ``max_width`` are cut with an ellipsis, and with
    ``width`` (default: ``terminal_width()``) the table is made to fit, so that the terminal never wraps a row:
    first the columns in ``drop`` are left out whole, in that order, until the others fit uncut (a column that
    says little gives way before one that says more is cut); then the widest columns but those in ``whole`` (by
    default the first, which names the row) are cut until a line fits; on a terminal too narrow even for
    those, they are cut as well."""
    cells = [[_cut(str(cell), max_width) for cell in row] for row in [headers, *rows]]
    cells = [row + [""] * (len(headers) - len(row)) for row in cells]  # a short row: a mark between rows
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    width = terminal_width() if width is None else width
    if width is not None:
        kept = list(range(len(headers)))
        for column in drop:
            if _line(widths[i] for i in kept) <= width:
                break
            kept.remove(column)
        cells = [[row[i] for i in kept] for row in cells]
        widths = [widths[i] for i in kept]
        _narrow(widths, [n for n, i in enumerate(kept) if i not in whole], width)
        _narrow(widths, range(len(kept)), width)  # still too wide: the columns kept whole are cut too
        cells = [[_cut(cell, w) for cell, w in zip(row, widths)] for row in cells]
    return "\n".join(GAP.join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in cells)


def fit(text: str, width: int | None = None) -> str:
    """A line of prose (the lines above a table) broken between words to ``width`` (default:
    ``terminal_width()``), its continuation indented, so that the terminal does not break it mid-word."""
    width = terminal_width() if width is None else width
    if width is None or len(text) <= width:
        return text
    return textwrap.fill(text, width, subsequent_indent="  ", break_on_hyphens=False)


def _narrow(widths: list[int], columns: Iterable[int], width: int) -> None:
    """Take a character at a time from the widest of ``columns`` until a line fits ``width`` (or each is one
    character wide)."""
    columns = list(columns)
    while columns and _line(widths) > width:
        widest = max(columns, key=lambda n: widths[n])
        if widths[widest] <= 1:
            break
        widths[widest] -= 1


def _line(widths: Iterable[int]) -> int:
    """The length of a line of columns this wide."""
    widths = list(widths)
    return sum(widths) + len(GAP) * (len(widths) - 1)


def _cut(text: str, width: int) -> str:
    text = text.replace("\n", " ")
    return text if len(text) <= width else text[: width - 1] + "\u2026"
