"""Plain aligned text tables for the terminal (no colour library needed on these paths)."""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Sequence

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
    first the columns in ``drop`` are left out, in that order, while the rest cannot each keep ``READABLE``
    characters (a column cut to one letter and an ellipsis says nothing); then the widest columns but those in
    ``whole`` (by default the first, which names the row) are cut further until a line fits."""
    cells = [[_cut(str(cell), max_width) for cell in row] for row in [headers, *rows]]
    cells = [row + [""] * (len(headers) - len(row)) for row in cells]  # a short row: a mark between rows
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    width = terminal_width() if width is None else width
    if width is not None:
        kept = list(range(len(headers)))
        for column in drop:
            if _least(kept, widths, whole) <= width:
                break
            kept.remove(column)
        cells = [[row[i] for i in kept] for row in cells]
        widths = [widths[i] for i in kept]
        cuttable = [n for n, i in enumerate(kept) if i not in whole]
        while cuttable and sum(widths) + len(GAP) * (len(widths) - 1) > width:
            widest = max(cuttable, key=lambda n: widths[n])
            if widths[widest] <= 1:
                break
            widths[widest] -= 1
        cells = [[_cut(cell, w) for cell, w in zip(row, widths)] for row in cells]
    return "\n".join(GAP.join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in cells)


#: the fewest characters a cut column keeps before ``render`` leaves out a column it may drop
READABLE = 9


def _least(kept: Sequence[int], widths: Sequence[int], whole: Sequence[int]) -> int:
    """The width of the columns ``kept`` with each cuttable one cut to ``READABLE`` characters at most."""
    least = [widths[i] if i in whole else min(widths[i], READABLE) for i in kept]
    return sum(least) + len(GAP) * (len(least) - 1)


def _cut(text: str, width: int) -> str:
    text = text.replace("\n", " ")
    return text if len(text) <= width else text[: width - 1] + "\u2026"
