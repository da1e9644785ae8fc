"""CSV as every export of the project writes it.

A text cell that starts with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return opens
as a formula in a spreadsheet (a rater named ``=HYPERLINK(...)``, say); such cells are
written with a leading apostrophe, which spreadsheets show as text (OWASP's advice on CSV
injection). Numbers stay numbers. JSON exports keep the raw text. Written here because
the csv module has no such option.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, TextIO

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(value: Any) -> Any:
    """``value``, with an apostrophe before a text that a spreadsheet would evaluate."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def write_rows(
    handle: TextIO, rows: Iterable[Mapping[str, Any]], fieldnames: list[str] | None = None
) -> int:
    """Write ``rows`` (the header from ``fieldnames``, else from the first row; other keys
    ignored) to an open text handle; returns the row count."""
    writer: csv.DictWriter | None = None
    count = 0
    for row in rows:
        if writer is None:
            writer = csv.DictWriter(handle, list(fieldnames or row), extrasaction="ignore")
            writer.writeheader()
        writer.writerow({key: spreadsheet_safe(value) for key, value in row.items()})
        count += 1
    if writer is None and fieldnames:
        csv.DictWriter(handle, fieldnames).writeheader()
    return count


def csv_text(rows: Iterable[Mapping[str, Any]], fieldnames: list[str] | None = None) -> str:
    """The CSV of ``rows`` as a string (for a download button)."""
    buffer = io.StringIO()
    write_rows(buffer, rows, fieldnames)
    return buffer.getvalue()


def write_csv(
    path: Path, rows: Iterable[Mapping[str, Any]], fieldnames: list[str] | None = None
) -> int:
    """Write ``rows`` to a CSV file; returns the row count."""
    with open(path, "w", newline="", encoding="utf-8") as handle:
        return write_rows(handle, rows, fieldnames)
