"""Streaming reads of Parquet, JSONL and CSV files as Arrow record batches, with row numbers.

Bytes that are not UTF-8 are found before parsing, so the error names the row; JSONL/CSV are
read in blocks of lines, Parquet by row group, so memory does not grow with the file.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from storage.errors import InputValidationError, ValidationIssue

SUFFIXES = {".parquet": "parquet", ".pq": "parquet", ".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv"}


def file_format(path: Path) -> str:
    fmt = SUFFIXES.get(path.suffix.lower())
    if fmt is None:
        raise InputValidationError(
            [
                ValidationIssue(
                    str(path),
                    None,
                    None,
                    f"unsupported file type {path.suffix!r}: use .parquet, .jsonl or .csv",
                )
            ]
        )
    return fmt


def iter_rows(path: Path, batch_rows: int = 10_000) -> Iterator[tuple[int, list[dict], list[ValidationIssue]]]:
    """Yield ``(first_row_number, rows, issues)``; rows that cannot be decoded become issues."""
    path = Path(path)
    fmt = file_format(path)
    if not path.exists():
        raise InputValidationError([ValidationIssue(str(path), None, None, "file does not exist")])
    if fmt == "parquet":
        yield from _parquet_rows(path, batch_rows)
    elif fmt == "jsonl":
        yield from _jsonl_rows(path, batch_rows)
    else:
        yield from _csv_rows(path, batch_rows)


def _parquet_rows(path: Path, batch_rows: int):
    try:
        reader = pq.ParquetFile(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise InputValidationError(
            [ValidationIssue(str(path), None, None, f"not a readable Parquet file: {exc}")]
        ) from exc
    row = 1
    for batch in reader.iter_batches(batch_size=batch_rows):
        rows, issues = [], []
        for i, record in enumerate(batch.to_pylist()):
            for key, value in record.items():
                if isinstance(value, bytes):  # binary columns: must still be UTF-8 text
                    try:
                        record[key] = value.decode("utf-8")
                    except UnicodeDecodeError:
                        issues.append(ValidationIssue(str(path), row + i, key, "invalid UTF-8"))
                        record[key] = None
            rows.append(record)
        yield row, rows, issues
        row += batch.num_rows


def _jsonl_rows(path: Path, batch_rows: int):
    rows, issues, first, row = [], [], 1, 0
    with open(path, "rb") as fh:
        for raw in fh:
            if not raw.strip():
                continue
            row += 1
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                issues.append(ValidationIssue(str(path), row, None, "invalid UTF-8"))
                rows.append(None)
            else:
                try:
                    record = json.loads(text)
                except json.JSONDecodeError as exc:
                    issues.append(ValidationIssue(str(path), row, None, f"not valid JSON: {exc.msg}"))
                    rows.append(None)
                else:
                    if not isinstance(record, dict):
                        issues.append(ValidationIssue(str(path), row, None, "a line must be a JSON object"))
                        record = None
                    rows.append(record)
            if len(rows) >= batch_rows:
                yield first, rows, issues
                rows, issues, first = [], [], row + 1
    if rows or issues:
        yield first, rows, issues


class _BadBytesError(Exception):
    pass


def _decoded_lines(fh):
    for raw in fh:
        try:
            yield raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise _BadBytesError() from exc


def _csv_rows(path: Path, batch_rows: int):
    rows, first, row = [], 1, 0
    with open(path, "rb") as fh:
        reader = csv.DictReader(_decoded_lines(fh))
        try:
            for record in reader:
                row += 1
                rows.append(dict(record))
                if len(rows) >= batch_rows:
                    yield first, rows, []
                    rows, first = [], row + 1
        except _BadBytesError:
            raise InputValidationError([ValidationIssue(str(path), row + 1, None, "invalid UTF-8")]) from None
    if rows:
        yield first, rows, []
