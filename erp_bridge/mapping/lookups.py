"""CSV lookup tables: SKU -> system id, 100,000+ rows, loaded once, every bad row reported.

Cells stay text (CSV has no numbers, so "007" stays "007"). A duplicate SKU or an empty SKU or
code cell is an error with ``file:line``; the whole table is read before reporting so that an
integrator fixes every row in one pass.
"""
from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import Problem

#: report at most this many bad rows per table; past that the file is probably the wrong one
MAX_ROW_PROBLEMS = 50


@dataclass(frozen=True)
class LookupTable:
    file: str
    codes: dict[str, str]
    _skus: dict[str, str] | None = field(default=None, repr=False, compare=False)

    def sku_of(self, code: str) -> str | None:
        """Reverse lookup (system id -> SKU), built on first use."""
        if self._skus is None:
            object.__setattr__(self, "_skus", {c: s for s, c in self.codes.items()})
        return self._skus.get(code)  # type: ignore[union-attr]


def load_lookup(path: Path, display: str, sku_column: str, code_column: str) -> tuple[LookupTable | None, list[Problem]]:
    """Read one table; returns (table or None, problems)."""
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            return _read(csv.reader(handle), display, sku_column, code_column)
    except FileNotFoundError:
        return None, [Problem(display, None, None, "", "lookup table not found")]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        return None, [Problem(display, None, None, "", f"cannot read lookup table: {exc}")]


def _header(reader, display: str, sku_column: str, code_column: str):
    header = next(reader, None)
    if header is None:
        return None, [Problem(display, 1, None, "", "empty file: expected a header row")]
    missing = [c for c in (sku_column, code_column) if c not in header]
    if missing:
        found = ", ".join(header) or "nothing"
        return None, [Problem(display, 1, None, "", f"column '{c}' is not in the header (found: {found})") for c in missing]
    return (header.index(sku_column), header.index(code_column)), []


def _read(reader, display: str, sku_column: str, code_column: str):
    columns, problems = _header(reader, display, sku_column, code_column)
    if columns is None:
        return None, problems
    sku_at, code_at = columns
    width = max(sku_at, code_at) + 1
    codes: dict[str, str] = {}
    first_line: dict[str, int] = {}
    for row in reader:
        if not row:
            continue  # blank lines carry nothing; csv yields [] for them
        line = reader.line_num
        if len(row) >= width:
            sku, code = row[sku_at], row[code_at]
        else:  # a short row: whatever columns it has still count
            sku, code = (row[sku_at] if len(row) > sku_at else ""), (row[code_at] if len(row) > code_at else "")
        if not sku or not code:
            problems.append(Problem(display, line, None, "", _missing(sku, sku_column, code_column)))
        elif sku in codes:
            problems.append(Problem(display, line, None, sku_column,
                                    f"duplicate SKU '{sku}' (first on line {first_line[sku]})"))
        else:
            codes[sku] = code
            first_line[sku] = line
        if len(problems) >= MAX_ROW_PROBLEMS:
            problems.append(Problem(display, line, None, "", "too many bad rows; stopped reading here"))
            break
    return LookupTable(display, codes), problems


def _missing(sku: str, sku_column: str, code_column: str) -> str:
    empty = sku_column if not sku else code_column
    return f"row has no {empty}: every row needs both {sku_column} and {code_column}"
