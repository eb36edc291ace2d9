"""One reader and writer of the tables every tool exchanges: CSV, TSV and JSON lines, chosen by the file's suffix.

Writes are atomic (a temporary name beside the target, flushed to disk, then renamed over it), so a table on disk
is never half written. Imports only the standard library.
"""

from __future__ import annotations

import csv
import json
import math
import os
from pathlib import Path
from typing import Any, Sequence

from .vocabulary import TABLE_SUFFIXES


def table_format(path: str | os.PathLike) -> str:
    """`csv`, `tsv` or `jsonl` for a table path (`.json` files are read and written as JSON lines)."""
    suffix = Path(path).suffix.lower()
    if suffix not in TABLE_SUFFIXES:
        raise ValueError(f"{path}: unknown table type {suffix or '(no suffix)'!r}; use {', '.join(TABLE_SUFFIXES)}")
    return {".csv": "csv", ".tsv": "tsv"}.get(suffix, "jsonl")


def to_float(value: Any) -> float | None:
    """A table cell as a number: NaN for a missing one (None, empty), None for one that is not a number."""
    if value is None or (isinstance(value, str) and value.strip() == ""):
        return math.nan
    if isinstance(value, bool):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def read_jsonl(path: str | os.PathLike, required: str | None = None) -> list[dict[str, Any]]:
    """Rows of a JSON-lines file; an incomplete or unparsable line (a torn write) is ignored, as is a row without
    the `required` key."""
    rows = []
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            if not line.endswith("\n"):
                break
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(row, dict) and (required is None or required in row):
                rows.append(row)
    return rows


def read_table(path: str | os.PathLike, required: str | None = None) -> list[dict[str, Any]]:
    """Rows of a table (CSV / TSV: cells as strings; JSON lines: typed). With `required`, rows whose `required`
    cell is empty are left out."""
    path = Path(path)
    kind = table_format(path)
    if kind == "jsonl":
        return read_jsonl(path, required)
    with open(path, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t" if kind == "tsv" else ","))
    return [row for row in rows if required is None or row.get(required)]


def table_columns(path: str | os.PathLike) -> list[str]:
    """The column names of a table: a CSV / TSV header, or the keys of a JSON-lines table's first row."""
    path = Path(path)
    kind = table_format(path)
    with open(path, newline="", encoding="utf-8", errors="replace") as handle:
        if kind == "jsonl":
            line = handle.readline()
            try:
                row = json.loads(line) if line.strip() else {}
            except json.JSONDecodeError:
                return []
            return list(row) if isinstance(row, dict) else []
        return next(csv.reader(handle, delimiter="\t" if kind == "tsv" else ","), [])


def csv_cell(value: Any) -> str:
    """A value as a CSV cell: empty for None (and NaN), JSON for lists and dicts, full precision for floats."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, (list, dict)):
        return json.dumps(value)
    if isinstance(value, float):
        return repr(value)
    return str(value)


def write_table(path: str | os.PathLike, rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> Path:
    """Write `rows` (only `columns`, in that order) as CSV / TSV / JSON lines by suffix, atomically; returns path."""
    path = Path(path)
    kind = table_format(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    with open(temporary, "w", newline="", encoding="utf-8") as handle:
        if kind == "jsonl":
            for row in rows:
                handle.write(json.dumps({column: row.get(column) for column in columns}) + "\n")
        else:
            writer = csv.writer(handle, delimiter="\t" if kind == "tsv" else ",")
            writer.writerow(columns)
            writer.writerows([csv_cell(row.get(column)) for column in columns] for row in rows)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write `text` to `path` through a hidden partial file and a rename: readers see the old file or the new one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.part")
    partial.write_text(text)
    os.replace(partial, path)
    return path


def columns_of(rows: Sequence[dict[str, Any]]) -> list[str]:
    """Every key of `rows`, in first-seen order."""
    return list(dict.fromkeys(key for row in rows for key in row))


def write_dataset(dataset, path: str | os.PathLike) -> Path:
    """A `datasets.Dataset` as CSV / TSV / JSON lines by suffix, else as a `save_to_disk` folder; atomically."""
    path = Path(path)
    temporary = path.with_name(f".{path.name}.tmp")
    suffix = path.suffix.lower()
    if suffix in TABLE_SUFFIXES:
        kind = table_format(path)
        if kind == "jsonl":
            dataset.to_json(str(temporary), lines=True)
        else:
            dataset.to_csv(str(temporary), index=False, sep="\t" if kind == "tsv" else ",")
    else:
        dataset.save_to_disk(str(temporary))
    os.replace(temporary, path)
    return path


__all__ = ["table_format", "to_float", "read_table", "read_jsonl", "table_columns", "csv_cell", "write_table",
           "columns_of", "write_dataset"]
