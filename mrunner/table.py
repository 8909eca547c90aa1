"""Plain aligned text tables for the terminal (no colour library needed on these paths)."""

from __future__ import annotations

import os
import re
import shutil
import sys
import textwrap
from collections.abc import Iterable, Sequence

from mrunner.errors import mask_credentials

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
    wrap: Sequence[int] = (),
) -> str:
    """Columns padded to their widest cell; cells longer than ``max_width`` are cut with an ellipsis, and with
    ``width`` (default: ``terminal_width()``) the table is made to fit, so that the terminal never wraps a row:
    first the columns in ``drop`` are left out whole, in that order, until the others fit uncut (a column that
    says little gives way before one that says more is cut); then the widest columns but those in ``whole`` (by
    default the first, which names the row) are cut until a line fits; on a terminal too narrow even for
    those, they are cut as well. A cell of a column in ``wrap`` (a list, its items joined by ``", "``) is not cut
    but goes on, broken between its items, on the lines below its row: a state cut in the middle says nothing.
    A URL's credentials in a cell are masked (``errors.mask_credentials``)."""
    cells = [[_cut(mask_credentials(str(cell)), max_width) for cell in row] for row in [headers, *rows]]
    cells = [row + [""] * (len(headers) - len(row)) for row in cells]  # a short row: a mark between rows
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    width = terminal_width() if width is None else width
    if width is not None:
        kept = list(range(len(headers)))
        for column in drop:
            if _line(widths[i] for i in kept) <= width:
                break
            kept.remove(column)
        below = [
            i for i in kept if i in wrap and _narrowed(widths, kept, whole, width)[kept.index(i)] <= _item(cells, i)
        ]
        if below:  # too narrow beside the row even for its longest item: the list goes under the row, indented
            kept = [i for i in kept if i not in below]
        fitted = _narrowed(widths, kept, whole, width)
        wrapped = {n for n, i in enumerate(kept) if i in wrap}
        lines = []
        for row in cells:
            lines += _lines([row[i] for i in kept], fitted, wrapped)
            if row is not cells[0]:
                lines += [["  " + item] for i in below for item in _items(row[i], width - 2) if row[i]]
        cells, widths = lines, fitted
    return "\n".join(GAP.join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in cells)


def _narrowed(widths: list[int], kept: list[int], whole: Sequence[int], width: int) -> list[int]:
    """The widths of the ``kept`` columns narrowed to fit ``width``: first those not in ``whole``."""
    narrowed = [widths[i] for i in kept]
    _narrow(narrowed, [n for n, i in enumerate(kept) if i not in whole], width)
    _narrow(narrowed, range(len(kept)), width)  # still too wide: the columns kept whole are cut too
    return narrowed


def _item(cells: list[list[str]], column: int) -> int:
    """The length of the longest item of the lists in ``column`` (below its header)."""
    return max((len(item) for row in cells[1:] for item in row[column].split(", ")), default=0)


def _lines(row: list[str], widths: list[int], wrapped: set[int]) -> list[list[str]]:
    """One row of a table fitted to ``widths``: its cells cut, but those of the ``wrapped`` columns, which go on
    on the lines below (the other cells empty there)."""
    parts = [_items(cell, w) if n in wrapped else [_cut(cell, w)] for n, (cell, w) in enumerate(zip(row, widths))]
    return [[part[k] if k < len(part) else "" for part in parts] for k in range(max(map(len, parts)))]


def fit(text: str, width: int | None = None) -> str:
    """A line of prose (the lines above a table) broken between words to ``width`` (default:
    ``terminal_width()``), its continuation indented, so that the terminal does not break it mid-word."""
    text = mask_credentials(text)
    width = terminal_width() if width is None else width
    if width is None or len(text) <= width:
        return text
    return _wrapper(width, subsequent_indent="  ").fill(text)


def _items(text: str, width: int) -> list[str]:
    """A list (``"15 completed, 15 failed"``) broken into lines of ``width`` between its items; only an item
    wider than a line is broken within (between words where it can)."""
    if len(text) <= width:
        return [text]
    lines: list[str] = []
    room = max(width - 1, 1)  # a line that goes on ends in a comma
    for item in text.split(", "):
        if lines and len(lines[-1]) + len(", ") + len(item) <= room:
            lines[-1] += ", " + item
            continue
        if lines:
            lines[-1] += ","
        lines += _wrapper(room).wrap(item) if len(item) > room else [item]
    return lines or [""]


class _Wrapper(textwrap.TextWrapper):
    """Breaks between words, and a word longer than a line (a path) after one of its slashes: a path is broken
    between the folders it names, and a sweep's id in it stays whole (unless the line is narrower than it)."""

    wordsep_simple_re = re.compile(r"(\s+|(?<=/)(?=[^\s/]))")


def _wrapper(width: int, subsequent_indent: str = "") -> textwrap.TextWrapper:
    return _Wrapper(max(width, 1), subsequent_indent=subsequent_indent, break_on_hyphens=False)


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
